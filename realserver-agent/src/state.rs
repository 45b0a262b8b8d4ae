//! What `setup` changed, and how to change it back: the state file
//! (`/run/xvs-agent/state.json`). `teardown` undoes exactly what is listed
//! there, newest first, and nothing else; `setup` skips what is listed, so
//! running it twice is running it once.
//!
//! The file lives under `/run`, which is emptied at boot together with
//! everything it describes (addresses, sysctls, tunnels and XDP programs
//! do not survive a reboot either).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Action, Decap};

/// How to take back one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// Remove an address we added.
    DeleteAddress {
        /// The device.
        dev: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// Write back a sysctl's value from before set-up.
    RestoreSysctl {
        /// Path under `/proc/sys`.
        path: String,
        /// The value it had.
        value: String,
    },
    /// Delete a device we created.
    DeleteLink {
        /// Its name.
        name: String,
    },
    /// Detach our XDP program.
    DetachXdp {
        /// The device.
        dev: String,
        /// Whether it was attached natively (`xdp`) or in generic mode
        /// (`xdpgeneric`).
        generic: bool,
    },
}

/// One action that was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// What was asked.
    pub action: Action,
    /// How to take it back; `None` when the host already was that way
    /// (an address someone else had put there, a sysctl already at the
    /// value): teardown leaves such things alone.
    pub undo: Option<Undo>,
}

/// The state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// The decapsulation in use, once TUN was set up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decap: Option<Decap>,
    /// Everything done, oldest first.
    pub done: Vec<Done>,
}

/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a state file of this version.
    #[error(
        "{path} is not a state file this xvs-agent understands ({reason}); undo its changes by hand \
         and remove it"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl State {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: VERSION,
            decap: None,
            done: Vec::new(),
        }
    }

    /// Whether `action` was done already.
    #[must_use]
    pub fn has(&self, action: &Action) -> bool {
        self.done.iter().any(|d| &d.action == action)
    }

    /// Parses a state file's text.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, StateError> {
        let invalid = |reason: String| StateError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let state: State = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if state.version != VERSION {
            return Err(invalid(format!(
                "version {}, this build knows {VERSION}",
                state.version
            )));
        }
        Ok(state)
    }

    /// The state file's text.
    #[must_use]
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and enums always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Reads the state at `path`; no file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_json(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(source) => Err(StateError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the state to `path` atomically (a crash leaves the old file
    /// or the new one, never half of one); an empty state removes the file.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        if self.done.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TunnelKind;

    fn sample() -> State {
        State {
            version: VERSION,
            decap: Some(Decap::Xdp),
            done: vec![
                Done {
                    action: Action::SetSysctl {
                        path: "net/ipv4/conf/all/arp_ignore".into(),
                        value: "1".into(),
                    },
                    undo: Some(Undo::RestoreSysctl {
                        path: "net/ipv4/conf/all/arp_ignore".into(),
                        value: "0".into(),
                    }),
                },
                Done {
                    action: Action::AddAddress {
                        dev: "lo".into(),
                        addr: "2001:db8::100".parse().unwrap(),
                        prefix_len: 128,
                    },
                    undo: None,
                },
                Done {
                    action: Action::CreateTunnel {
                        name: "xvs-tun4".into(),
                        kind: TunnelKind::Ipip,
                    },
                    undo: Some(Undo::DeleteLink {
                        name: "xvs-tun4".into(),
                    }),
                },
                Done {
                    action: Action::AttachXdp { dev: "eth0".into() },
                    undo: Some(Undo::DetachXdp {
                        dev: "eth0".into(),
                        generic: true,
                    }),
                },
            ],
        }
    }

    #[test]
    fn round_trips_through_json_and_the_file() {
        let state = sample();
        let path = Path::new("state.json");
        assert_eq!(State::from_json(&state.to_json(), path).unwrap(), state);

        let dir = std::env::temp_dir().join(format!("xvs-agent-state-{}", std::process::id()));
        let file = dir.join("state.json");
        assert_eq!(
            State::load(&file).unwrap(),
            State::new(),
            "no file: nothing done"
        );
        state.save(&file).unwrap();
        assert_eq!(State::load(&file).unwrap(), state);
        State::new().save(&file).unwrap();
        assert!(!file.exists(), "an empty state leaves no file behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_reads_like_what_was_done() {
        let json = sample().to_json();
        assert!(json.contains(r#""action": "set_sysctl""#), "{json}");
        assert!(json.contains(r#""undo": "detach_xdp""#), "{json}");
    }

    #[test]
    fn a_foreign_or_damaged_file_is_refused_with_its_path() {
        let path = Path::new("/run/xvs-agent/state.json");
        let bad = State::from_json("{not json", path).unwrap_err();
        assert!(
            bad.to_string().contains("/run/xvs-agent/state.json"),
            "{bad}"
        );
        let future = r#"{"version": 99, "done": []}"#;
        let err = State::from_json(future, path).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
    }

    #[test]
    fn has_matches_whole_actions() {
        let state = sample();
        assert!(state.has(&Action::AttachXdp { dev: "eth0".into() }));
        assert!(!state.has(&Action::AttachXdp { dev: "eth1".into() }));
    }
}
