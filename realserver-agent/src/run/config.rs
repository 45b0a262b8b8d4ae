//! `/etc/xvs/agent.toml`: what `xvs-agent run` reports, to whom, signed
//! with which key. Unknown keys are errors; every error names the file,
//! the line and the field, and says what to do.
//!
//! ```toml
//! directors = ["192.0.2.1:7405", "[2001:db8::1]:7405"]  # port optional: 7405
//! address = "192.0.2.11"           # the real server these reports are for
//! key_file = "/etc/xvs/agent.key"  # 16+ random bytes, mode 0600
//! key_id = 1
//! # identity = "rs1"               # default: the host name
//! # interval = 1.0                 # seconds between reports (0.1–60)
//! # service_ports = [80, 443]      # established connections counted
//! # scope = "host"                 # or a cgroup path: "/system.slice/nginx.service"
//! # state = "ready"                # at start: ready, drain or maint
//! # state_file = "/run/xvs-agent/state"  # `xvs-agent state` writes it
//!
//! # [haproxy]                      # HAProxy agent-check answers, off unless set
//! # listen = "192.0.2.11:5555"
//! # cpu_weight = 1                 # the capacity formula (xvs-sched feedback)
//! # memory_weight = 0
//! # connections_weight = 0
//! # connections_full = 0
//! # min_fraction = 0.5
//! ```

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xvs_packet::load_report::{AgentState, Identity, MIN_KEY_LEN, ReportKey};
use xvs_sched::feedback::CapacityFormula;

/// The UDP port directors listen on for reports unless told otherwise.
pub const DEFAULT_REPORT_PORT: u16 = 7405;
/// Where `xvs-agent run` and `xvs-agent state` look without `--config`.
pub const DEFAULT_CONFIG: &str = "/etc/xvs/agent.toml";
/// Where the run-time state is kept unless the config says otherwise.
pub const DEFAULT_STATE_FILE: &str = "/run/xvs-agent/state";

/// Why the configuration or the key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a wrong type (toml names the line).
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// toml's message, with line, column and the field.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{file}: `{field}`: {message}")]
    Value {
        /// The file.
        file: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The key file is readable by others than its owner.
    #[error(
        "{file}: the key is readable by its group or by anyone (mode {mode:03o}): run `chmod 600 {file}`, and make a new key if others may have read it"
    )]
    KeyExposed {
        /// The key file.
        file: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    directors: Vec<String>,
    address: IpAddr,
    key_file: PathBuf,
    key_id: u32,
    identity: Option<String>,
    #[serde(default = "default_interval")]
    interval: f64,
    #[serde(default)]
    service_ports: Vec<u16>,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default = "default_state")]
    state: String,
    #[serde(default = "default_state_file")]
    state_file: PathBuf,
    haproxy: Option<RawHaproxy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    listen: SocketAddr,
    #[serde(default = "one")]
    cpu_weight: u32,
    #[serde(default)]
    memory_weight: u32,
    #[serde(default)]
    connections_weight: u32,
    #[serde(default)]
    connections_full: u32,
    #[serde(default = "half")]
    min_fraction: f64,
}

fn default_interval() -> f64 {
    1.0
}
fn default_scope() -> String {
    "host".to_owned()
}
fn default_state() -> String {
    "ready".to_owned()
}
fn default_state_file() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_FILE)
}
fn one() -> u32 {
    1
}
fn half() -> f64 {
    0.5
}

/// The HAProxy agent-check face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    /// Where to listen (TCP).
    pub listen: SocketAddr,
    /// The capacity formula of its answer.
    pub formula: CapacityFormula,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where reports go.
    pub directors: Vec<SocketAddr>,
    /// The real server's address, inside every report.
    pub address: IpAddr,
    /// The key file.
    pub key_file: PathBuf,
    /// Its id.
    pub key_id: u32,
    /// The agent's name.
    pub identity: Identity,
    /// Between reports.
    pub interval: Duration,
    /// Ports whose established connections are counted.
    pub service_ports: Vec<u16>,
    /// `None`: the host; else a cgroup path.
    pub cgroup: Option<String>,
    /// The state at start, when the state file says nothing.
    pub state: AgentState,
    /// The run-time state, written by `xvs-agent state`.
    pub state_file: PathBuf,
    /// The HAProxy face, if asked for.
    pub haproxy: Option<HaproxyConfig>,
}

fn value(file: &Path, field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        file: file.to_path_buf(),
        field,
        message: message.into(),
    }
}

impl Config {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text, file, hostname)
    }

    /// Checks the text of `file`; `hostname` gives the default identity.
    pub fn parse(
        text: &str,
        file: &Path,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if raw.directors.is_empty() {
            return Err(value(
                file,
                "directors",
                "list at least one director (\"ADDRESS:PORT\")",
            ));
        }
        let mut directors = Vec::new();
        for d in &raw.directors {
            directors.push(parse_director(d).ok_or_else(|| {
                value(
                    file,
                    "directors",
                    format!("\"{d}\" is not ADDRESS, ADDRESS:PORT or [IPv6]:PORT"),
                )
            })?);
        }
        let name = match raw.identity {
            Some(n) => n,
            None => hostname().ok_or_else(|| {
                value(
                    file,
                    "identity",
                    "the host name cannot be read: set identity",
                )
            })?,
        };
        let identity = Identity::new(&name)
            .map_err(|e| value(file, "identity", format!("\"{name}\": {e}")))?;
        if !(0.1..=60.0).contains(&raw.interval) {
            return Err(value(
                file,
                "interval",
                format!("{} s is outside 0.1–60 s", raw.interval),
            ));
        }
        let cgroup = match raw.scope.as_str() {
            "host" => None,
            p if p.starts_with('/') => Some(p.to_owned()),
            other => {
                return Err(value(
                    file,
                    "scope",
                    format!("\"{other}\" is neither \"host\" nor a cgroup path starting with /"),
                ));
            }
        };
        let state = raw
            .state
            .parse()
            .map_err(|e| value(file, "state", format!("\"{}\": {e}", raw.state)))?;
        let haproxy = match raw.haproxy {
            None => None,
            Some(h) => {
                if !(0.0..=1.0).contains(&h.min_fraction) {
                    return Err(value(
                        file,
                        "haproxy.min_fraction",
                        "a fraction from 0 to 1",
                    ));
                }
                Some(HaproxyConfig {
                    listen: h.listen,
                    formula: CapacityFormula {
                        cpu_weight: h.cpu_weight,
                        memory_weight: h.memory_weight,
                        connections_weight: h.connections_weight,
                        connections_full: h.connections_full,
                        min_fraction_permille: (h.min_fraction * 1000.0).round() as u16,
                        ..CapacityFormula::default()
                    },
                })
            }
        };
        Ok(Self {
            directors,
            address: raw.address,
            key_file: raw.key_file,
            key_id: raw.key_id,
            identity,
            interval: Duration::from_secs_f64(raw.interval),
            service_ports: raw.service_ports,
            cgroup,
            state,
            state_file: raw.state_file,
            haproxy,
        })
    }

    /// Reads the key file once: refused when group- or world-readable
    /// (or -writable), or shorter than the minimum. Never logged.
    pub fn read_key(&self) -> Result<ReportKey, ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| ConfigError::Read {
            file: self.key_file.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.key_file).map_err(read_err)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::KeyExposed {
                file: self.key_file.clone(),
                mode,
            });
        }
        let secret = std::fs::read(&self.key_file).map_err(read_err)?;
        ReportKey::new(self.key_id, &secret).map_err(|_| ConfigError::Value {
            file: self.key_file.clone(),
            field: "key_file",
            message: format!(
                "the key is {} bytes, fewer than {MIN_KEY_LEN}: make one with `head -c 32 /dev/urandom > {file}; chmod 600 {file}`",
                secret.len(),
                file = self.key_file.display()
            ),
        })
    }
}

/// `ADDRESS`, `ADDRESS:PORT` or `[IPv6]:PORT` (a host name is resolved).
fn parse_director(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DEFAULT_REPORT_PORT));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let with_port = if s.contains(':') {
        s.to_owned()
    } else {
        format!("{s}:{DEFAULT_REPORT_PORT}")
    };
    with_port.to_socket_addrs().ok()?.next()
}

/// This host's name (the kernel's, as `uname -n`).
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
directors = ["192.0.2.1", "[2001:db8::1]:9000"]
address = "192.0.2.11"
key_file = "/etc/xvs/agent.key"
key_id = 3
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("agent.toml"), || Some("rs1".to_owned()))
    }

    #[test]
    fn minimal_file_has_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.directors,
            vec![
                "192.0.2.1:7405".parse().unwrap(),
                "[2001:db8::1]:9000".parse().unwrap()
            ]
        );
        assert_eq!(c.identity.as_str(), "rs1");
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.cgroup, None);
        assert_eq!(c.state, AgentState::Ready);
        assert_eq!(c.state_file, PathBuf::from(DEFAULT_STATE_FILE));
        assert_eq!(c.haproxy, None);
    }

    #[test]
    fn full_file() {
        let text = format!(
            "{MINIMAL}identity = \"web-7\"\ninterval = 0.5\nservice_ports = [80, 443]\nscope = \"/system.slice/nginx.service\"\nstate = \"drain\"\n[haproxy]\nlisten = \"127.0.0.1:5555\"\nconnections_weight = 2\nconnections_full = 500\nmin_fraction = 0.25\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.identity.as_str(), "web-7");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.cgroup.as_deref(), Some("/system.slice/nginx.service"));
        assert_eq!(c.state, AgentState::Drain);
        let h = c.haproxy.unwrap();
        assert_eq!(h.formula.connections_weight, 2);
        assert_eq!(h.formula.cpu_weight, 1);
        assert_eq!(h.formula.min_fraction_permille, 250);
    }

    #[test]
    fn errors_say_where_and_what_to_do() {
        let cases = [
            (format!("{MINIMAL}colour = 1\n"), "line 6"),
            (format!("{MINIMAL}colour = 1\n"), "colour"),
            (MINIMAL.replace("key_id = 3", "key_id = \"x\""), "line 5"),
            (
                MINIMAL.replace("\"192.0.2.1\", ", "\"nonsense:x:y\", "),
                "`directors`",
            ),
            (
                MINIMAL.replace(
                    "directors = [\"192.0.2.1\", \"[2001:db8::1]:9000\"]",
                    "directors = []",
                ),
                "at least one",
            ),
            (format!("{MINIMAL}interval = 0\n"), "0.1–60"),
            (format!("{MINIMAL}scope = \"nginx\"\n"), "cgroup path"),
            (format!("{MINIMAL}state = \"up\"\n"), "ready, drain, maint"),
            (
                format!("{MINIMAL}identity = \"{}\"\n", "x".repeat(40)),
                "at most 32",
            ),
            (
                format!("{MINIMAL}[haproxy]\nlisten = \"127.0.0.1:1\"\nmin_fraction = 2\n"),
                "0 to 1",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("agent.toml: "), "{err}");
            assert!(err.contains(want), "{want:?} not in {err}");
        }
        let none = Config::parse(MINIMAL, Path::new("a.toml"), || None).unwrap_err();
        assert!(none.to_string().contains("set identity"), "{none}");
    }

    #[test]
    fn key_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xvs-agent-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("agent.key");
        let mut c = parse(MINIMAL).unwrap();
        c.key_file = key.clone();
        std::fs::write(&key, [7u8; 32]).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = c.read_key().unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.read_key().unwrap().id(), 3);
        std::fs::write(&key, [7u8; 8]).unwrap();
        let err = c.read_key().unwrap_err().to_string();
        assert!(err.contains("head -c 32 /dev/urandom"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
