//! `[agents]`: the real-server agents' load reports (`xvs-agent run`),
//! off unless the table is present. Where the director listens, which
//! keys it accepts, how much clock difference it allows, and the weight
//! policy's inputs ([`xvs_sched::feedback`]), with the defaults chosen
//! there.
//!
//! Fractions are written as in the agent's `[haproxy]` table (`0.5` for
//! half) and kept in permille, the policy's integer unit; durations as in
//! `health` tables (`5`, `"500ms"`, `"5s"`).
//!
//! Key files are read (and refused when group- or world-readable, or
//! shorter than [`MIN_KEY_LEN`]) when the file is loaded, so that a key the
//! receiver could not use is an error of the file, with its line; the
//! receiver reads them again (once) when it starts or a reload applies.

use core::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use xvs_packet::load_report::{MIN_KEY_LEN, ReportKey};
use xvs_sched::feedback::{CapacityFormula, OnSilence, WeightPolicy};

use super::values::millis_text;

/// The UDP port agents report to unless `listen` names another (the
/// agent's default too).
pub const DEFAULT_REPORT_PORT: u16 = 7405;

/// `[agents]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Where reports are received: `ADDRESS` or `ADDRESS:PORT` (`[v6]:PORT`);
    /// the port defaults to [`DEFAULT_REPORT_PORT`]. Default `[::]:7405`,
    /// which takes IPv4 reports too.
    #[serde(
        default = "default_listen",
        with = "listen_text",
        skip_serializing_if = "is_default_listen"
    )]
    pub listen: SocketAddr,
    /// The keys reports may be signed with, each with its id (two during a
    /// rotation).
    #[serde(default)]
    pub keys: Vec<AgentKey>,
    /// How far a report's timestamp may be from the director's clock.
    #[serde(default = "default_max_skew", with = "millis_text")]
    pub max_skew: u64,
    /// After this long without a report an agent counts as silent.
    #[serde(default = "default_timeout", with = "millis_text")]
    pub timeout: u64,
    /// What a silent agent's servers get: `restore` (their configured
    /// weight) or `quiesce` (weight 0).
    #[serde(default)]
    pub on_silence: SilenceAction,
    /// Importance of CPU utilisation in the capacity formula.
    #[serde(default = "default_cpu_weight")]
    pub cpu_weight: u32,
    /// Importance of memory utilisation.
    #[serde(default)]
    pub memory_weight: u32,
    /// Importance of established connections (needs `connections_full`).
    #[serde(default)]
    pub connections_weight: u32,
    /// CPU utilisation that counts as fully loaded (0 < x ≤ 1).
    #[serde(default = "full", with = "positive_fraction")]
    pub cpu_full: u16,
    /// Memory utilisation that counts as fully loaded (0 < x ≤ 1).
    #[serde(default = "full", with = "positive_fraction")]
    pub memory_full: u16,
    /// Established connections that count as fully loaded (0: connections
    /// do not count).
    #[serde(default)]
    pub connections_full: u32,
    /// The lowest capacity, a fraction of the configured weight (0–1).
    #[serde(default = "default_min_fraction", with = "fraction")]
    pub min_fraction: u16,
    /// EWMA weight of the newest report (0 < x ≤ 1; 1: no smoothing).
    #[serde(default = "default_smoothing", with = "positive_fraction")]
    pub smoothing: u16,
    /// The most the capacity moves per report, a fraction of the
    /// configured weight (0 < x ≤ 1).
    #[serde(default = "default_max_step", with = "positive_fraction")]
    pub max_step: u16,
}

/// One accepted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentKey {
    /// The id agents put in their reports (`key_id` in the agent's file).
    pub id: u32,
    /// The file holding the secret (16 or more bytes, mode 0600).
    pub file: PathBuf,
}

/// What a silent agent's servers get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceAction {
    /// Their configured weight, as if they had no agent.
    #[default]
    Restore,
    /// Weight 0 until the agent reports again.
    Quiesce,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        let policy = WeightPolicy::default();
        let f = policy.formula;
        Self {
            listen: default_listen(),
            keys: Vec::new(),
            max_skew: default_max_skew(),
            timeout: policy.timeout,
            on_silence: SilenceAction::Restore,
            cpu_weight: f.cpu_weight,
            memory_weight: f.memory_weight,
            connections_weight: f.connections_weight,
            cpu_full: f.cpu_full_permille,
            memory_full: f.memory_full_permille,
            connections_full: f.connections_full,
            min_fraction: f.min_fraction_permille,
            smoothing: policy.smoothing_permille,
            max_step: policy.max_step_permille,
        }
    }
}

impl AgentsConfig {
    /// The weight policy these inputs describe.
    #[must_use]
    pub fn policy(&self) -> WeightPolicy {
        WeightPolicy {
            formula: CapacityFormula {
                cpu_weight: self.cpu_weight,
                memory_weight: self.memory_weight,
                connections_weight: self.connections_weight,
                cpu_full_permille: self.cpu_full,
                memory_full_permille: self.memory_full,
                connections_full: self.connections_full,
                min_fraction_permille: self.min_fraction,
            },
            smoothing_permille: self.smoothing,
            max_step_permille: self.max_step,
            timeout: self.timeout,
            on_silence: match self.on_silence {
                SilenceAction::Restore => OnSilence::Configured,
                SilenceAction::Quiesce => OnSilence::Quiesce,
            },
        }
    }

    /// Reads every key file once.
    ///
    /// # Errors
    /// The first key that cannot be used, and why.
    pub fn read_keys(&self) -> Result<Vec<ReportKey>, KeyProblem> {
        self.keys.iter().map(AgentKey::read).collect()
    }
}

impl AgentKey {
    /// Reads the key file: refused when group- or world-readable (or
    /// -writable), or shorter than [`MIN_KEY_LEN`]. Never logged.
    ///
    /// # Errors
    /// [`KeyProblem`]: which file, what is wrong and what to do.
    pub fn read(&self) -> Result<ReportKey, KeyProblem> {
        let secret = read_private(&self.file)?;
        ReportKey::new(self.id, &secret).map_err(|_| KeyProblem::TooShort {
            file: self.file.clone(),
            len: secret.len(),
        })
    }
}

/// A secret's bytes, from a file only its owner may read (the agents'
/// keys, the VRRP key): refused when group- or world-readable (or
/// -writable). Never logged.
///
/// # Errors
/// [`KeyProblem::Unreadable`] or [`KeyProblem::Exposed`].
pub fn read_private(file: &std::path::Path) -> Result<Vec<u8>, KeyProblem> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| KeyProblem::Unreadable {
        file: file.to_path_buf(),
        error: e.to_string(),
    };
    let meta = std::fs::metadata(file).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyProblem::Exposed {
            file: file.to_path_buf(),
            mode,
        });
    }
    std::fs::read(file).map_err(unreadable)
}

/// Why a key file cannot be used (the same rules and words as the
/// agent's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// It cannot be read.
    #[error("{}: {error}", file.display())]
    Unreadable {
        /// The key file.
        file: PathBuf,
        /// The system's answer.
        error: String,
    },
    /// Readable by others than its owner.
    #[error(
        "{}: the key is readable by its group or by anyone (mode {mode:03o}): run `chmod 600 {}`, and make a new key if others may have read it",
        file.display(), file.display()
    )]
    Exposed {
        /// The key file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Too short to be a key.
    #[error(
        "{}: the key is {len} bytes, fewer than {MIN_KEY_LEN}: make one with `head -c 32 /dev/urandom > {}; chmod 600 {}`",
        file.display(), file.display(), file.display()
    )]
    TooShort {
        /// The key file.
        file: PathBuf,
        /// Its length.
        len: usize,
    },
}

fn default_listen() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED),
        DEFAULT_REPORT_PORT,
    )
}

fn is_default_listen(a: &SocketAddr) -> bool {
    *a == default_listen()
}

const fn default_max_skew() -> u64 {
    5_000
}

fn default_timeout() -> u64 {
    WeightPolicy::default().timeout
}

fn default_cpu_weight() -> u32 {
    CapacityFormula::default().cpu_weight
}

const fn full() -> u16 {
    1000
}

fn default_min_fraction() -> u16 {
    CapacityFormula::default().min_fraction_permille
}

fn default_smoothing() -> u16 {
    WeightPolicy::default().smoothing_permille
}

fn default_max_step() -> u16 {
    WeightPolicy::default().max_step_permille
}

/// `ADDRESS`, `ADDRESS:PORT` or `[IPv6]:PORT`.
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DEFAULT_REPORT_PORT))
    })
}

mod listen_text {
    use super::*;

    pub(super) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        parse_listen(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "\"{text}\" is not an address to listen on: write an IP address, with a port if not {DEFAULT_REPORT_PORT} (\"192.0.2.1\", \"192.0.2.1:7405\", \"[2001:db8::1]:7405\")"
            ))
        })
    }
}

fn permille_of<'de, D: Deserializer<'de>>(d: D, zero_ok: bool) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Int(i64),
        Float(f64),
    }
    let v = match Written::deserialize(d)? {
        Written::Int(i) => i as f64,
        Written::Float(f) => f,
    };
    let permille = (v * 1000.0).round();
    let low = if zero_ok { 0.0 } else { 1.0 };
    if !v.is_finite() || permille < low || permille > 1000.0 {
        let range = if zero_ok {
            "from 0 to 1"
        } else {
            "above 0, at most 1"
        };
        return Err(de::Error::custom(format!(
            "{v} is not a valid fraction here: use a number {range} (0.5 for half), to three decimals"
        )));
    }
    Ok(permille as u16)
}

fn write_permille<S: Serializer>(p: u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(p) / 1000.0)
}

/// A fraction from 0 to 1, kept in permille.
mod fraction {
    use super::*;

    pub(super) fn serialize<S: Serializer>(p: &u16, s: S) -> Result<S::Ok, S::Error> {
        write_permille(*p, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        permille_of(d, true)
    }
}

/// A fraction above 0, at most 1, kept in permille.
mod positive_fraction {
    use super::*;

    pub(super) fn serialize<S: Serializer>(p: &u16, s: S) -> Result<S::Ok, S::Error> {
        write_permille(*p, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        permille_of(d, false)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_defaults_are_the_policys() {
        let c = AgentsConfig::default();
        assert_eq!(c.policy(), WeightPolicy::default());
        assert_eq!(c.listen, "[::]:7405".parse().unwrap());
    }

    #[test]
    fn listen_takes_an_address_with_or_without_port() {
        for (text, want) in [
            ("192.0.2.1", "192.0.2.1:7405"),
            ("192.0.2.1:9000", "192.0.2.1:9000"),
            ("2001:db8::1", "[2001:db8::1]:7405"),
            ("[2001:db8::1]:9000", "[2001:db8::1]:9000"),
        ] {
            assert_eq!(parse_listen(text), Some(want.parse().unwrap()), "{text}");
        }
        assert_eq!(parse_listen("director.example"), None);
    }

    #[test]
    fn a_key_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("xvs-agent-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("k");
        std::fs::write(&file, [7u8; 32]).unwrap();
        let key = AgentKey {
            id: 3,
            file: file.clone(),
        };
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = key.read().unwrap_err();
            assert!(matches!(e, KeyProblem::Exposed { .. }), "{e}");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(key.read().unwrap().id(), 3);
        std::fs::write(&file, [7u8; 8]).unwrap();
        let e = key.read().unwrap_err();
        assert_eq!(
            e,
            KeyProblem::TooShort {
                file: file.clone(),
                len: 8
            }
        );
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(key.read(), Err(KeyProblem::Unreadable { .. })));
        let _ = std::fs::remove_dir(&dir);
    }
}
