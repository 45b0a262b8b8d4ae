//! `[sync]`: connection-state sync between the two directors of an HA pair
//! (issue #18), off unless the table is present. The keys are ipvsadm's
//! `--start-daemon` options under their config names (CONFIG.md lists them
//! side by side), plus what ipvsadm's daemon never had: a key (the sync is
//! always authenticated), unicast peers, the refresh of long-lived idle
//! connections, and the bound on how long a preempting master waits for
//! the peer's table.
//!
//! The key file is read (and refused when group- or world-readable, or not
//! 32 to 64 bytes) when the file is loaded, as `[ha]`'s is; without a
//! `key_file` of its own the sync uses `[ha]`'s key, and with neither the
//! file is refused: IPVS's sync is unauthenticated multicast that anyone on
//! the segment can fill a backup's table with, ours is not.

use core::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use xvs_packet::sync::{AuthKey, MaxLen};

use super::ha::{HaConfig, HaKeyProblem};
use super::values::millis_text;

/// `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The roles this director runs (ipvsadm `--start-daemon master`,
    /// `--start-daemon backup`): `master` sends this director's
    /// connections, `backup` receives the peer's. Both (the default) on
    /// both directors, so that the state flows back after a failback.
    #[serde(default = "both_roles")]
    pub roles: Vec<SyncRole>,
    /// The interface the sync runs on (`--mcast-interface`); default:
    /// `[ha]`'s interface, else the client-side one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Tags every message; a director takes only its own syncid's
    /// (`--syncid`, 0–255).
    #[serde(default)]
    pub syncid: u8,
    /// The largest message, bytes (`--sync-maxlen`, 256–65507).
    #[serde(default = "default_maxlen")]
    pub maxlen: usize,
    /// The multicast group (`--mcast-group`, IPv4 or IPv6).
    #[serde(default = "default_group")]
    pub group: IpAddr,
    /// The UDP port (`--mcast-port`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The multicast TTL / hop limit (`--mcast-ttl`, 1–255).
    #[serde(default = "default_ttl")]
    pub ttl: u8,
    /// Unicast to these addresses instead of multicast (one peer: the
    /// other director of the pair).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
    /// The address messages are sent from; default: the interface's first
    /// address of the group's (or the peer's) family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// The shared key, 32 to 64 bytes, mode 0600; default: `[ha]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The key's id on the wire (with `key_file`; else `[ha]`'s).
    #[serde(default = "default_key_id")]
    pub key_id: u8,
    /// Every connection this director forwards is sent again this often,
    /// so that a long-lived idle one does not expire on the peer before it
    /// does here (IPVS's `sync_refresh_period`); 0: never.
    #[serde(default = "default_refresh", with = "millis_text")]
    pub refresh_interval: u64,
    /// With `[ha]`: a director that would preempt a live master first
    /// waits for the peer's whole table, at most this long.
    #[serde(default = "default_transfer_timeout", with = "millis_text")]
    pub transfer_timeout: u64,
}

/// A role of the sync (ipvsadm's daemon state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRole {
    /// Sends this director's connections.
    Master,
    /// Receives the peer's.
    Backup,
}

impl SyncRole {
    /// ipvsadm's word for it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Backup => "backup",
        }
    }
}

/// What is wrong with `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncProblem {
    /// No role.
    #[error(
        "no role: list \"master\" (send this director's connections), \"backup\" (receive the peer's) or both (the default)"
    )]
    NoRole,
    /// `maxlen` out of range.
    #[error("{0} bytes is not a message length: use 256 to 65507 (1472 fits a 1500-byte link)")]
    MaxLen(usize),
    /// `ttl` 0.
    #[error("a TTL of 0 never leaves the director: use 1 (the local segment) to 255")]
    Ttl,
    /// A group that is not multicast.
    #[error(
        "{0} is not a multicast address: use one such as 224.0.0.81 (IPVS's) or ff02::81, or list the peer in peers"
    )]
    NotMulticast(IpAddr),
    /// The interface is not one of the director's.
    #[error("interface \"{name}\" is not one of the director's ({known})")]
    UnknownInterface {
        /// The name given.
        name: String,
        /// The director's.
        known: String,
    },
    /// More than one unicast peer.
    #[error("the sync runs between the two directors of a pair: list one peer")]
    Peers,
    /// Source and destination of different families.
    #[error("{0} and {1} are of different families: give the source and the peer one family")]
    FamilyMismatch(IpAddr, IpAddr),
    /// No key anywhere.
    #[error(
        "the sync is always authenticated and there is no key: set key_file (make one with `head -c 32 /dev/urandom > /etc/xvs/sync.key; chmod 600 /etc/xvs/sync.key` and copy it to the peer), or give [ha] one"
    )]
    NoKey,
    /// The key file cannot be used.
    #[error("{0}")]
    Key(HaKeyProblem),
}

impl SyncConfig {
    /// Runs `role`.
    #[must_use]
    pub fn has(&self, role: SyncRole) -> bool {
        self.roles.contains(&role)
    }

    /// The message length limit.
    #[must_use]
    pub fn max_len(&self) -> MaxLen {
        MaxLen::new(self.maxlen).unwrap_or_default()
    }

    /// The key: `key_file`'s, else `[ha]`'s.
    ///
    /// # Errors
    /// Why there is no usable key.
    pub fn read_key(&self, ha: Option<&HaConfig>) -> Result<AuthKey, SyncProblem> {
        if let Some(file) = &self.key_file {
            let secret = super::agents::read_private(file)
                .map_err(|e| SyncProblem::Key(HaKeyProblem::File(e)))?;
            return AuthKey::new(self.key_id, &secret).map_err(|_| {
                SyncProblem::Key(HaKeyProblem::Length {
                    file: file.clone(),
                    len: secret.len(),
                })
            });
        }
        match ha.map(HaConfig::read_key) {
            Some(Ok(Some(key))) => Ok(key),
            Some(Err(e)) => Err(SyncProblem::Key(e)),
            Some(Ok(None)) | None => Err(SyncProblem::NoKey),
        }
    }

    /// What is wrong with the values that the types do not already refuse
    /// (the field and why), given the director's interface names and its
    /// `[ha]`.
    pub(super) fn check(
        &self,
        interfaces: &[&str],
        ha: Option<&HaConfig>,
    ) -> Result<(), (&'static str, SyncProblem)> {
        if self.roles.is_empty() {
            return Err(("roles", SyncProblem::NoRole));
        }
        self.check_values()?;
        if let Some(name) = &self.interface
            && !interfaces.contains(&name.as_str())
        {
            return Err((
                "interface",
                SyncProblem::UnknownInterface {
                    name: name.clone(),
                    known: interfaces.join(", "),
                },
            ));
        }
        self.read_key(ha).map(|_| ()).map_err(|e| ("key_file", e))
    }

    /// What is wrong with the values themselves, whatever the director
    /// (the field and why): also what `xvsadm --start-daemon`'s options
    /// are checked with.
    pub fn check_values(&self) -> Result<(), (&'static str, SyncProblem)> {
        if MaxLen::new(self.maxlen).is_err() {
            return Err(("maxlen", SyncProblem::MaxLen(self.maxlen)));
        }
        if self.ttl == 0 {
            return Err(("ttl", SyncProblem::Ttl));
        }
        if self.peers.is_empty() && !self.group.is_multicast() {
            return Err(("group", SyncProblem::NotMulticast(self.group)));
        }
        if self.peers.len() > 1 {
            return Err(("peers", SyncProblem::Peers));
        }
        let dest = self.destination();
        if let Some(source) = self.source
            && source.is_ipv4() != dest.is_ipv4()
        {
            return Err(("source", SyncProblem::FamilyMismatch(source, dest)));
        }
        Ok(())
    }

    /// Where messages go: the peer, else the group.
    #[must_use]
    pub fn destination(&self) -> IpAddr {
        self.peers.first().copied().unwrap_or(self.group)
    }

    /// ipvsadm's daemon line options: `mcast=IF, syncid=N, maxlen=…`.
    #[must_use]
    pub fn describe(&self, interface: &str) -> String {
        let to = if self.peers.is_empty() {
            format!("group={}", self.group)
        } else {
            format!("peer={}", self.peers[0])
        };
        format!(
            "mcast={interface}, syncid={}, maxlen={}, {to}, port={}, ttl={}",
            self.syncid, self.maxlen, self.port, self.ttl
        )
    }
}

fn both_roles() -> Vec<SyncRole> {
    vec![SyncRole::Master, SyncRole::Backup]
}

const fn default_maxlen() -> usize {
    MaxLen::DEFAULT.get()
}

const fn default_group() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81))
}

const fn default_port() -> u16 {
    8848
}

const fn default_ttl() -> u8 {
    1
}

const fn default_key_id() -> u8 {
    1
}

const fn default_refresh() -> u64 {
    10_000
}

const fn default_transfer_timeout() -> u64 {
    30_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SyncConfig, String> {
        toml::from_str(body).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_ipvsadm_s_with_both_roles() {
        let c = parse("").unwrap();
        assert_eq!(c.roles, [SyncRole::Master, SyncRole::Backup]);
        assert_eq!(c.group, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81)));
        assert_eq!((c.port, c.ttl, c.syncid, c.maxlen), (8848, 1, 0, 1472));
        assert_eq!(c.refresh_interval, 10_000);
        assert_eq!(c.transfer_timeout, 30_000);
        assert_eq!(
            c.describe("eth0"),
            "mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1"
        );
    }

    #[test]
    fn values_out_of_range_are_refused_with_what_to_use() {
        let names = ["eth0"];
        let key = std::env::temp_dir().join(format!("xvs-sync-key-{}", std::process::id()));
        std::fs::write(&key, [7u8; 32]).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let with_key = |body: &str| format!("key_file = \"{}\"\n{body}", key.display());
        let check = |body: &str| parse(&with_key(body)).unwrap().check(&names, None);
        assert_eq!(check(""), Ok(()));
        for (body, field, words) in [
            ("roles = []", "roles", "no role"),
            ("maxlen = 100", "maxlen", "256 to 65507"),
            ("ttl = 0", "ttl", "1 (the local segment)"),
            ("group = \"192.0.2.9\"", "group", "not a multicast"),
            ("interface = \"eth9\"", "interface", "eth0"),
            (
                "peers = [\"192.0.2.2\", \"192.0.2.3\"]",
                "peers",
                "one peer",
            ),
            (
                "peers = [\"192.0.2.2\"]\nsource = \"2001:db8::1\"",
                "source",
                "different families",
            ),
        ] {
            let (f, problem) = check(body).unwrap_err();
            assert_eq!(f, field, "{body}");
            assert!(problem.to_string().contains(words), "{body}: {problem}");
        }
        // Without a key of its own or [ha]'s: refused, with how to make one.
        let (f, problem) = parse("").unwrap().check(&names, None).unwrap_err();
        assert_eq!(f, "key_file");
        assert!(problem.to_string().contains("head -c 32"), "{problem}");
        assert!(parse("roles = [\"primary\"]").is_err());
        std::fs::remove_file(&key).unwrap();
    }
}
