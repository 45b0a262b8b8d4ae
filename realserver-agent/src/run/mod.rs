//! `xvs-agent run`: every interval, one sample of this server's load
//! ([`crate::load`]), signed into one report ([`xvs_packet::load_report`])
//! and sent over UDP to each director. Foreground, logs through `RUST_LOG`,
//! stops cleanly on SIGTERM or SIGINT (flags the loop reads, checked at
//! least every 100 ms).
//!
//! The state the agent asks for (`ready`, `drain`, `maint`) is the state
//! file's when it holds one (`xvs-agent state drain` writes it; the daemon
//! reads it before every report, so a change is sent within one interval
//! and survives a restart of the daemon, not a reboot: it lives under
//! /run), else the configuration's `state`.
//!
//! The sequence number starts at the start time in microseconds since the
//! epoch and grows by one per report, so that a restarted agent goes on
//! above the last number a director accepted from it.

pub mod config;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xvs_packet::load_report::{AgentState, LoadFigures, LoadReport, REPORT_LEN};

use self::config::{Config, ConfigError};
use crate::load::cgroup::{Cgroup, CgroupNotFound};
use crate::load::{HostFiles, Sampler, Scope};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration or the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The scope's cgroup.
    #[error(transparent)]
    Cgroup(#[from] CgroupNotFound),
    /// A socket.
    #[error("{what}: {source}")]
    Socket {
        /// Which socket, where.
        what: String,
        /// Why.
        source: io::Error,
    },
}

/// What the report loop last measured, for the HAProxy face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    /// The figures.
    pub load: LoadFigures,
    /// The state asked for.
    pub state: AgentState,
}

/// The latest sample, shared with the HAProxy listener.
pub type SharedLatest = Arc<Mutex<Latest>>;

/// The state in force: the state file's, else `configured`.
pub fn current_state(state_file: &Path, configured: AgentState) -> Result<AgentState, String> {
    match std::fs::read_to_string(state_file) {
        Ok(text) => text.trim().parse().map_err(|e| {
            format!(
                "{}: \"{}\": {e}; using {configured} (rewrite it with `xvs-agent state`)",
                state_file.display(),
                text.trim()
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(configured),
        Err(e) => Err(format!("{}: {e}; using {configured}", state_file.display())),
    }
}

/// Writes `state` to `state_file` (atomically: a new file renamed over it).
pub fn write_state(state_file: &Path, state: AgentState) -> io::Result<()> {
    if let Some(dir) = state_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = state_file.with_extension("new");
    std::fs::write(&tmp, format!("{state}\n"))?;
    std::fs::rename(&tmp, state_file)
}

fn epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One director and whether the last send to it failed (logged once per
/// failure streak).
struct Director {
    addr: SocketAddr,
    failing: bool,
}

/// Runs until `stop` is set.
pub fn run(config: &Config, stop: &AtomicBool) -> Result<(), RunError> {
    let key = config.read_key()?;
    let scope = match &config.cgroup {
        None => Scope::Host,
        Some(path) => Scope::Cgroup(Cgroup::find(Path::new("/sys/fs/cgroup"), path)?),
    };
    let bind = |any: &str| {
        UdpSocket::bind(any).map_err(|source| RunError::Socket {
            what: format!("cannot open a UDP socket on {any}"),
            source,
        })
    };
    let v4 = config
        .directors
        .iter()
        .any(SocketAddr::is_ipv4)
        .then(|| bind("0.0.0.0:0"))
        .transpose()?;
    let v6 = config
        .directors
        .iter()
        .any(SocketAddr::is_ipv6)
        .then(|| bind("[::]:0"))
        .transpose()?;
    let mut directors: Vec<Director> = config
        .directors
        .iter()
        .map(|&addr| Director {
            addr,
            failing: false,
        })
        .collect();

    let mut state = match current_state(&config.state_file, config.state) {
        Ok(s) => s,
        Err(problem) => {
            log::warn!("{problem}");
            config.state
        }
    };
    let latest: SharedLatest = Arc::new(Mutex::new(Latest {
        load: LoadFigures::default(),
        state,
    }));
    if let Some(h) = &config.haproxy {
        let listener =
            std::net::TcpListener::bind(h.listen).map_err(|source| RunError::Socket {
                what: format!("cannot listen for HAProxy agent checks on {}", h.listen),
                source,
            })?;
        log::info!("answering HAProxy agent checks on {}", h.listen);
        let (formula, latest) = (h.formula, Arc::clone(&latest));
        std::thread::Builder::new()
            .name("haproxy-agent".into())
            .spawn(move || crate::haproxy::serve(&listener, &formula, &latest))
            .map_err(|source| RunError::Socket {
                what: "cannot start the HAProxy agent-check thread".into(),
                source,
            })?;
    }

    let clock = Instant::now();
    let now_ms = || clock.elapsed().as_millis() as u64;
    let mut sampler = Sampler::new(scope, "/proc", config.service_ports.clone());
    sampler.sample(&HostFiles, now_ms());
    let mut sequence = epoch().as_micros() as u64;
    let interval_ms = config.interval.as_millis() as u32;
    let mut state_problem = false;
    log::info!(
        "reporting for {} as \"{}\" every {} ms to {} (key id {}, state {state})",
        config.address,
        config.identity,
        interval_ms,
        config
            .directors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        key.id()
    );
    let mut next = clock + config.interval;
    let mut buf = [0u8; REPORT_LEN];
    loop {
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                log::info!("stopping");
                return Ok(());
            }
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(100)));
        }
        let load = sampler.sample(&HostFiles, now_ms());
        let asked = match current_state(&config.state_file, config.state) {
            Ok(s) => {
                state_problem = false;
                s
            }
            Err(problem) => {
                if !state_problem {
                    log::warn!("{problem}");
                    state_problem = true;
                }
                config.state
            }
        };
        if asked != state {
            log::info!("state {state} → {asked}");
            state = asked;
        }
        if let Ok(mut l) = latest.lock() {
            *l = Latest { load, state };
        }
        sequence += 1;
        let report = LoadReport {
            key_id: key.id(),
            identity: config.identity,
            address: config.address,
            timestamp_ms: epoch().as_millis() as u64,
            sequence,
            interval_ms,
            state,
            load,
        };
        let len = match report.encode(&key, &mut buf) {
            Ok(len) => len,
            Err(e) => {
                log::error!("cannot encode a report: {e}");
                continue;
            }
        };
        for d in &mut directors {
            let socket = if d.addr.is_ipv4() { &v4 } else { &v6 };
            let result = match socket {
                Some(s) => s.send_to(&buf[..len], d.addr).map(drop),
                None => Err(io::Error::other("no socket of its family")),
            };
            match (result, d.failing) {
                (Err(e), false) => {
                    log::warn!(
                        "cannot send to {}: {e} (logged again once it works)",
                        d.addr
                    );
                    d.failing = true;
                }
                (Ok(()), true) => {
                    log::info!("sending to {} again", d.addr);
                    d.failing = false;
                }
                _ => {}
            }
        }
        log::debug!("report {sequence}: {state} {load:?}");
        next += config.interval;
        let now = Instant::now();
        if next < now {
            next = now + config.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_overrides_the_configured_state() {
        let dir = std::env::temp_dir().join(format!("xvs-agent-state-{}", std::process::id()));
        let file = dir.join("sub/state");
        assert_eq!(
            current_state(&file, AgentState::Ready),
            Ok(AgentState::Ready)
        );
        write_state(&file, AgentState::Drain).unwrap();
        assert_eq!(
            current_state(&file, AgentState::Ready),
            Ok(AgentState::Drain)
        );
        write_state(&file, AgentState::Maint).unwrap();
        assert_eq!(
            current_state(&file, AgentState::Ready),
            Ok(AgentState::Maint)
        );
        std::fs::write(&file, "sideways\n").unwrap();
        let err = current_state(&file, AgentState::Ready).unwrap_err();
        assert!(err.contains("xvs-agent state"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
