//! `[ha]`: a primary and a backup director electing one master by VRRP
//! version 3 (RFC 9568), off unless the table is present. Every key says
//! which ha.cf directive or keepalived keyword it stands for, so that an
//! operator moving from Heartbeat or keepalived finds theirs (CONFIG.md
//! lists them side by side).
//!
//! One virtual router per pair: its adverts go over one family (`family`)
//! and list that family's VIPs; the VIPs of the other family and the VS/NAT
//! real servers' gateway addresses (`gateways`) move with it, as
//! keepalived's `virtual_ipaddress_excluded` do: every address moves
//! together or not at all.
//!
//! Durations are written as in `health` tables (`5`, `"500ms"`, `"5s"`). The
//! key file is read (and refused when group- or world-readable, or not 32
//! to 64 bytes) when the file is loaded, so that a key the director could
//! not use is an error of the file, with its line.

use core::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use xvs_packet::vrrp::{AuthKey, Family, MAX_INTERVAL_CS, MAX_KEY_LEN, MIN_KEY_LEN};

use super::values::{millis_text, opt_millis_text};
use crate::ha::machine::{GarpSchedule, Settings};
use crate::types::IpNet;

/// `[ha]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// This director's name in logs, status and hooks (ha.cf `node`);
    /// default: the host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The virtual router id, the same on both directors (keepalived
    /// `virtual_router_id`).
    #[serde(deserialize_with = "de_vrid")]
    pub vrid: u8,
    /// 1–254; 255 claims the addresses at once (keepalived `priority`).
    #[serde(default = "default_priority", deserialize_with = "de_priority")]
    pub priority: u8,
    /// Where adverts are sent and heard (keepalived `interface`); default:
    /// the client-side interface, which also receives the VIPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The family of the adverts.
    #[serde(default)]
    pub family: HaFamily,
    /// Advert interval, 10 ms to 40.95 s in 10 ms steps (ha.cf
    /// `keepalive`, keepalived `advert_int`).
    #[serde(default = "default_advert_interval", with = "millis_text")]
    pub advert_interval: u64,
    /// How long a backup waits without adverts before it takes over (ha.cf
    /// `deadtime`); absent: VRRP's Master_Down_Interval.
    #[serde(
        default,
        with = "opt_millis_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub dead_time: Option<u64>,
    /// Silence after which a backup logs and counts a late advert (ha.cf
    /// `warntime`); 0: never.
    #[serde(default, with = "millis_text")]
    pub warn_time: u64,
    /// At start-up a backup waits at least this long for a master (ha.cf
    /// `initdead`).
    #[serde(default, with = "millis_text")]
    pub initdead: u64,
    /// A higher priority takes the addresses back from a lower one (ha.cf
    /// `auto_failback on`; keepalived's `nopreempt` is `false`).
    #[serde(default = "yes")]
    pub preempt: bool,
    /// How long a backup waits before it preempts (keepalived
    /// `preempt_delay`).
    #[serde(default, with = "millis_text")]
    pub preempt_delay: u64,
    /// Unicast peers (keepalived `unicast_peer`); empty: multicast to
    /// 224.0.0.18 / ff02::12.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IpAddr>,
    /// The adverts' source (keepalived `mcast_src_ip` / `unicast_src_ip`);
    /// default: the interface's first IPv4 address, or its IPv6 link-local
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// `hmac` (keepalived's `auth_hmac`, the default) or `none`.
    #[serde(default)]
    pub auth: HaAuth,
    /// The shared key, 32 to 64 bytes, mode 0600 (with `auth = "hmac"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The key's id on the wire (0–255).
    #[serde(default = "default_key_id")]
    pub key_id: u8,
    /// VS/NAT: the real servers' gateway addresses, with their prefix
    /// length, moved to the server-side interface with the VIPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IpNet>,
    /// Delay of the second burst of gratuitous ARPs / NAs after becoming
    /// master (keepalived `garp_master_delay`); 0: none.
    #[serde(default = "default_garp_delay", with = "millis_text")]
    pub garp_master_delay: u64,
    /// Announcements per address in each burst (keepalived
    /// `garp_master_repeat`).
    #[serde(default = "default_garp_repeat")]
    pub garp_master_repeat: u32,
    /// Period of refresh bursts while master (keepalived
    /// `garp_master_refresh`); 0: none.
    #[serde(default, with = "millis_text")]
    pub garp_master_refresh: u64,
    /// Announcements per address in a refresh burst (keepalived
    /// `garp_master_refresh_repeat`).
    #[serde(default = "default_refresh_repeat")]
    pub garp_master_refresh_repeat: u32,
    /// Announcements per address when a master hears a lower priority
    /// (keepalived `garp_lower_prio_repeat`).
    #[serde(default = "default_garp_repeat")]
    pub garp_lower_prio_repeat: u32,
    /// A master hearing a higher priority sends one advert before it goes
    /// backup, so that the winner re-announces the addresses (keepalived
    /// `higher_prio_send_advert`).
    #[serde(default = "yes")]
    pub higher_prio_send_advert: bool,
    /// Run (with `sh -c`) on becoming master (keepalived `notify_master`,
    /// Heartbeat's resource scripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<String>,
    /// Run on becoming backup (keepalived `notify_backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<String>,
    /// Run on entering fault (keepalived `notify_fault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<String>,
    /// A command whose failure puts the director in fault (keepalived
    /// `track_script`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_script: Option<TrackScript>,
}

/// The family of the adverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaFamily {
    /// VRRP over IPv4 (protocol 112 to 224.0.0.18).
    #[default]
    Ipv4,
    /// VRRP over IPv6 (next header 112 to ff02::12, from the link-local
    /// address).
    Ipv6,
}

impl HaFamily {
    /// The codec's family.
    #[must_use]
    pub const fn family(self) -> Family {
        match self {
            Self::Ipv4 => Family::V4,
            Self::Ipv6 => Family::V6,
        }
    }

    /// Whether `addr` is of this family.
    #[must_use]
    pub const fn holds(self, addr: IpAddr) -> bool {
        matches!(
            (self, addr),
            (Self::Ipv4, IpAddr::V4(_)) | (Self::Ipv6, IpAddr::V6(_))
        )
    }

    /// `ipv4` or `ipv6`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
        }
    }
}

/// How adverts are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaAuth {
    /// keepalived's `auth_hmac` trailer (HMAC-SHA256/128 with a replay
    /// window); unsigned, forged, replayed and stale adverts are refused.
    #[default]
    Hmac,
    /// No authentication, for a peer without `auth_hmac` (Debian's
    /// keepalived 2.2.7, routers).
    None,
}

impl HaAuth {
    /// `hmac` or `none`, as written in the file.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::None => "none",
        }
    }
}

/// `track_script`: a command run every `interval`; `fall` failures in a
/// row raise a fault, `rise` successes in a row clear it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// Run with `sh -c`; exit status 0 is success.
    pub command: String,
    /// How often it runs.
    #[serde(default = "default_track_interval", with = "millis_text")]
    pub interval: u64,
    /// How long it may run before it is killed and counted as a failure;
    /// default: its interval.
    #[serde(
        default,
        with = "opt_millis_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<u64>,
    /// Failures in a row that raise the fault (keepalived `fall`).
    #[serde(default = "one")]
    pub fall: u32,
    /// Successes in a row that clear it (keepalived `rise`).
    #[serde(default = "one")]
    pub rise: u32,
}

impl HaConfig {
    /// The advert interval in centiseconds.
    #[must_use]
    pub fn advert_interval_cs(&self) -> u16 {
        u16::try_from(self.advert_interval / 10).unwrap_or(u16::MAX)
    }

    /// The state machine's settings, with the advert source as primary
    /// address.
    #[must_use]
    pub fn settings(&self, primary_address: IpAddr) -> Settings {
        Settings {
            priority: self.priority,
            advert_interval_cs: self.advert_interval_cs(),
            preempt: self.preempt,
            preempt_delay: Duration::from_millis(self.preempt_delay),
            primary_address,
            garp: GarpSchedule {
                master_repeat: self.garp_master_repeat,
                master_delay: Duration::from_millis(self.garp_master_delay),
                master_refresh: Duration::from_millis(self.garp_master_refresh),
                refresh_repeat: self.garp_master_refresh_repeat,
                lower_prio_repeat: self.garp_lower_prio_repeat,
            },
            initdead: Duration::from_millis(self.initdead),
            warntime: Duration::from_millis(self.warn_time),
            higher_prio_send_advert: self.higher_prio_send_advert,
            dead_time: self.dead_time.map(Duration::from_millis),
            sync_wait: Duration::ZERO,
        }
    }

    /// The key, read from `key_file` (`None` with `auth = "none"`).
    ///
    /// # Errors
    /// Why the key cannot be used: which file, what is wrong, what to do.
    pub fn read_key(&self) -> Result<Option<AuthKey>, HaKeyProblem> {
        if self.auth == HaAuth::None {
            return Ok(None);
        }
        let Some(file) = &self.key_file else {
            return Err(HaKeyProblem::Missing);
        };
        let secret = super::agents::read_private(file).map_err(HaKeyProblem::File)?;
        AuthKey::new(self.key_id, &secret)
            .map(Some)
            .map_err(|_| HaKeyProblem::Length {
                file: file.clone(),
                len: secret.len(),
            })
    }

    /// What is wrong with the values that the types do not already refuse
    /// (the field and why), given the director's interface names.
    pub(super) fn check(&self, interfaces: &[&str]) -> Result<(), (&'static str, HaProblem)> {
        if !self.advert_interval.is_multiple_of(10)
            || self.advert_interval < 10
            || self.advert_interval > u64::from(MAX_INTERVAL_CS) * 10
        {
            return Err((
                "advert_interval",
                HaProblem::AdvertInterval(self.advert_interval),
            ));
        }
        if let Some(name) = &self.interface
            && !interfaces.contains(&name.as_str())
        {
            return Err((
                "interface",
                HaProblem::UnknownInterface {
                    name: name.clone(),
                    known: interfaces.join(", "),
                },
            ));
        }
        if let Some(source) = self.source
            && !self.family.holds(source)
        {
            return Err(("source", HaProblem::FamilyMismatch(source, self.family)));
        }
        if let Some(&peer) = self.peers.iter().find(|p| !self.family.holds(**p)) {
            return Err(("peers", HaProblem::FamilyMismatch(peer, self.family)));
        }
        if self.garp_master_refresh != 0 && self.garp_master_refresh_repeat == 0 {
            return Err(("garp_master_refresh_repeat", HaProblem::EmptyRefresh));
        }
        if let Some(track) = &self.track_script
            && track.interval == 0
        {
            return Err(("track_script", HaProblem::ZeroTrackInterval));
        }
        if let Some(ms) = self.dead_time
            && ms < self.advert_interval
        {
            return Err((
                "dead_time",
                HaProblem::DeadTimeTooShort(ms, self.advert_interval),
            ));
        }
        self.read_key()
            .map_err(|e| ("key_file", HaProblem::Key(e)))?;
        Ok(())
    }
}

impl super::ClusterConfig {
    /// With `[ha]`, the VIPs and the `[ha]` gateways belong to the pair,
    /// not to this director: they are taken out of the interfaces'
    /// addresses (where kernel discovery finds them on a master, or left
    /// by a run that was killed), so that the director never counts them
    /// as its own (its own addresses' traffic is left to the kernel).
    /// Returns what was taken out, for the log.
    pub fn drop_floating_addresses(&mut self) -> Vec<(String, IpNet)> {
        let Some(ha) = &self.ha else {
            return Vec::new();
        };
        let floating: Vec<IpAddr> = self
            .services
            .iter()
            .map(|s| s.vip)
            .chain(ha.gateways.iter().map(|g| g.addr))
            .collect();
        let mut dropped = Vec::new();
        for iface in &mut self.interfaces {
            iface.addresses.retain(|net| {
                let keep = !floating.contains(&net.addr);
                if !keep {
                    dropped.push((iface.name.clone(), *net));
                }
                keep
            });
        }
        dropped
    }
}

/// What is wrong in `[ha]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaProblem {
    /// Not a VRRP advert interval.
    #[error(
        "{0} ms is not a VRRP advert interval: use 10 ms to 40.95 s in steps of 10 ms (\"100ms\", \"1s\")"
    )]
    AdvertInterval(u64),
    /// `interface` names none of the director's interfaces.
    #[error("no interface \"{name}\" in [[interfaces]] ({known}): name one of them")]
    UnknownInterface {
        /// The name given.
        name: String,
        /// The director's interfaces.
        known: String,
    },
    /// An address of the other family.
    #[error(
        "{0} is not of the adverts' family (family = \"{family}\"): use an address of that family or change family",
        family = .1.as_str()
    )]
    FamilyMismatch(IpAddr, HaFamily),
    /// A refresh period without announcements.
    #[error("garp_master_refresh is set but garp_master_refresh_repeat is 0: use 1 or more")]
    EmptyRefresh,
    /// A track script run never.
    #[error("track_script interval is 0: give it a period (\"2s\")")]
    ZeroTrackInterval,
    /// A dead time shorter than one advert interval.
    #[error(
        "dead_time of {0} ms is shorter than the advert interval ({1} ms): a backup would take over between two adverts; use 3 intervals or more, or leave it out"
    )]
    DeadTimeTooShort(u64, u64),
    /// The key cannot be used.
    #[error("{0}")]
    Key(HaKeyProblem),
}

/// Why the VRRP key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaKeyProblem {
    /// `auth = "hmac"` without a key file.
    #[error(
        "auth = \"hmac\" (the default) needs key_file: make one with `head -c 32 /dev/urandom > /etc/xvs/vrrp.key; chmod 600 /etc/xvs/vrrp.key` and copy it to the peer, or set auth = \"none\" for a peer without auth_hmac"
    )]
    Missing,
    /// It cannot be read, or others than its owner may read it.
    #[error("{0}")]
    File(super::agents::KeyProblem),
    /// Not 32 to 64 bytes.
    #[error(
        "{}: the key is {len} bytes; a VRRP key is {MIN_KEY_LEN} to {MAX_KEY_LEN}: make one with `head -c 32 /dev/urandom > {}; chmod 600 {}`",
        file.display(), file.display(), file.display()
    )]
    Length {
        /// The key file.
        file: PathBuf,
        /// Its length.
        len: usize,
    },
}

fn de_vrid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    super::values::int_in(d, 1, 255, "virtual router id").map(|v| v as u8)
}

fn de_priority<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    super::values::int_in(
        d,
        1,
        255,
        "VRRP priority (0 is what a stopping master sends)",
    )
    .map(|v| v as u8)
}

const fn default_priority() -> u8 {
    100
}

const fn default_advert_interval() -> u64 {
    1_000
}

const fn yes() -> bool {
    true
}

const fn default_key_id() -> u8 {
    1
}

const fn default_garp_delay() -> u64 {
    5_000
}

const fn default_garp_repeat() -> u32 {
    5
}

const fn default_refresh_repeat() -> u32 {
    1
}

const fn default_track_interval() -> u64 {
    1_000
}

const fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<HaConfig, String> {
        toml::from_str::<HaConfig>(body).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_keepalived_s() {
        let c = parse("vrid = 51\nauth = \"none\"").unwrap();
        assert_eq!(c.priority, 100);
        assert_eq!(c.advert_interval, 1_000);
        assert_eq!(c.family, HaFamily::Ipv4);
        assert!(c.preempt && c.higher_prio_send_advert);
        let s = c.settings("192.0.2.2".parse().unwrap());
        assert_eq!(s.advert_interval_cs, 100);
        assert_eq!(s.garp, GarpSchedule::default());
        assert_eq!(s.dead_time, None);
        assert_eq!(c.check(&["eth0"]), Ok(()));
    }

    #[test]
    fn values_out_of_range_are_refused_with_what_to_use() {
        assert!(parse("vrid = 0").unwrap_err().contains("from 1 to 255"));
        assert!(
            parse("vrid = 1\npriority = 0")
                .unwrap_err()
                .contains("stopping master")
        );
        let check = |body: &str| parse(body).unwrap().check(&["d-cli", "d-srv"]);
        let none = "vrid = 1\nauth = \"none\"\n";
        for (body, field) in [
            ("advert_interval = \"15ms\"", "advert_interval"),
            ("advert_interval = \"41s\"", "advert_interval"),
            ("interface = \"eth9\"", "interface"),
            ("source = \"2001:db8::1\"", "source"),
            ("peers = [\"192.0.2.3\", \"2001:db8::3\"]", "peers"),
            ("dead_time = \"50ms\"", "dead_time"),
            (
                "garp_master_refresh = \"10s\"\ngarp_master_refresh_repeat = 0",
                "garp_master_refresh_repeat",
            ),
        ] {
            let got = check(&format!("{none}{body}"));
            assert_eq!(got.map_err(|e| e.0), Err(field), "{body}");
        }
        assert_eq!(
            check("vrid = 1"),
            Err(("key_file", HaProblem::Key(HaKeyProblem::Missing)))
        );
    }

    #[test]
    fn the_key_must_be_private_and_32_to_64_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xvs-ha-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vrrp.key");
        let with = |bytes: usize, mode: u32| {
            std::fs::write(&file, vec![7u8; bytes]).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            parse(&format!("vrid = 1\nkey_file = \"{}\"", file.display()))
                .unwrap()
                .read_key()
        };
        assert_eq!(with(32, 0o600).unwrap().unwrap().id(), 1);
        assert!(matches!(
            with(31, 0o600),
            Err(HaKeyProblem::Length { len: 31, .. })
        ));
        assert!(matches!(
            with(65, 0o600),
            Err(HaKeyProblem::Length { len: 65, .. })
        ));
        assert!(matches!(
            with(32, 0o640),
            Err(HaKeyProblem::File(crate::config::KeyProblem::Exposed {
                mode: 0o640,
                ..
            }))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
