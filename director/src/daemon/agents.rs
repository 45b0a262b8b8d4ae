//! The agents' receiver, as a part: a UDP socket (`[agents] listen`, IPv4
//! or IPv6; `[::]` takes both) read by its own thread, which checks each
//! datagram ([`Receiver`]: length, magic and version, key id, MAC, the
//! report's address against the configured real servers, replay and
//! skew) and hands the accepted reports to the main thread as
//! [`ControlMsg::AgentReport`]; the control plane turns them into weights
//! (`control::agents` says why the thread does not aggregate).
//!
//! Work per datagram is bounded: one `recv_from` into a buffer on the
//! thread's stack, checks over fixed-size fields, one hash lookup for the
//! server and one for the replay guard, one message. A refused report
//! changes nothing but its counter; it is logged at most once a minute per
//! source address, and the table of sources logged is bounded, so that a
//! flood from spoofed addresses costs counting only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::Sender;
use log::{info, warn};
use serde_json::{Value, json};

use crate::control::agents::{AgentShared, Receiver, Rejection};
use crate::control::plane::ControlMsg;

use super::Error;
use super::part::{Part, Running};

/// How long the thread waits for a datagram before it looks at the stop
/// flag.
const POLL: Duration = Duration::from_millis(200);

/// One log line per source address at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Sources remembered for the log's rate limit at most.
const LOG_SOURCES: usize = 4096;

/// The receiver's socket and thread.
#[derive(Debug)]
pub struct AgentPart {
    listen: SocketAddr,
    shared: Arc<AgentShared>,
    to_main: Sender<ControlMsg>,
    bound: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentPart {
    /// A receiver on `listen` checking with `shared` (which the control
    /// plane keeps up to date) and sending to `to_main`.
    #[must_use]
    pub fn new(listen: SocketAddr, shared: Arc<AgentShared>, to_main: Sender<ControlMsg>) -> Self {
        Self {
            listen,
            shared,
            to_main,
            bound: None,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }
}

impl Part for AgentPart {
    fn name(&self) -> &'static str {
        "agents"
    }

    fn start(&mut self) -> Result<(), Error> {
        let bind = |e| Error::AgentReceiver {
            listen: self.listen,
            source: e,
        };
        let socket = UdpSocket::bind(self.listen).map_err(bind)?;
        socket.set_read_timeout(Some(POLL)).map_err(bind)?;
        let bound = socket.local_addr().map_err(bind)?;
        self.stop.store(false, Ordering::Relaxed);
        let receiver = Receiver::new(Arc::clone(&self.shared));
        let to_main = self.to_main.clone();
        let stop = Arc::clone(&self.stop);
        let thread = std::thread::Builder::new()
            .name("xvs-agents".to_owned())
            .spawn(move || serve(&socket, receiver, &to_main, &stop))
            .map_err(bind)?;
        info!("agents: load reports received on UDP {bound}");
        self.bound = Some(bound);
        self.thread = Some(thread);
        Ok(())
    }

    fn status(&self) -> Value {
        let mut status = json!({
            "running": self.thread.is_some(),
            "listen": self.bound.unwrap_or(self.listen).to_string(),
        });
        status["reports"] = self.shared.counters.json();
        status
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.bound = None;
    }
}

/// The thread: receive, check, hand over, until told to stop.
fn serve(
    socket: &UdpSocket,
    mut receiver: Receiver,
    to_main: &Sender<ControlMsg>,
    stop: &AtomicBool,
) {
    let mut buf = [0u8; 512];
    let mut limiter = LogLimiter::default();
    while !stop.load(Ordering::Relaxed) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                warn!("agents: receiving a report: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match receiver.receive(&buf[..len], now_ms) {
            Ok(report) => {
                if to_main.send(ControlMsg::AgentReport(report)).is_err() {
                    return;
                }
            }
            Err(reason) => {
                if limiter.may_log(from.ip(), Instant::now()) {
                    log_refused(from, len, reason);
                }
            }
        }
    }
}

fn log_refused(from: SocketAddr, len: usize, reason: Rejection) {
    warn!(
        "agents: refused a {len}-byte report from {from}: {} (counted as {}; further refusals from {} are counted, and logged again after a minute)",
        reason.describe(),
        reason.name(),
        from.ip()
    );
}

/// At most one line per source address a minute, for a bounded number of
/// sources. Keyed by source addresses anyone can forge, so the map uses
/// std's randomly keyed hasher (not Fx, which is for keys from the
/// configuration), and a full table is swept at most once a second, so that
/// a flood of new sources costs a lookup each, not a sweep each.
#[derive(Debug, Default)]
struct LogLimiter {
    last: HashMap<IpAddr, Instant>,
    swept_at: Option<Instant>,
}

impl LogLimiter {
    fn may_log(&mut self, source: IpAddr, now: Instant) -> bool {
        if let Some(at) = self.last.get(&source) {
            if now.duration_since(*at) < LOG_EVERY {
                return false;
            }
        } else if self.last.len() >= LOG_SOURCES {
            if self
                .swept_at
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
            {
                return false;
            }
            self.swept_at = Some(now);
            self.last
                .retain(|_, at| now.duration_since(*at) < LOG_EVERY);
            if self.last.len() >= LOG_SOURCES {
                return false;
            }
        }
        self.last.insert(source, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_once_a_minute_and_the_table_is_bounded() {
        let mut limiter = LogLimiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.11".parse().unwrap();
        assert!(limiter.may_log(a, t0));
        assert!(!limiter.may_log(a, t0 + Duration::from_secs(59)));
        assert!(limiter.may_log(a, t0 + Duration::from_secs(60)));
        for i in 0..LOG_SOURCES as u32 * 2 {
            let source = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.may_log(source, t0 + Duration::from_secs(60));
        }
        assert!(limiter.last.len() <= LOG_SOURCES);
        // A minute later the old entries make room.
        assert!(limiter.may_log(
            "198.51.100.7".parse().unwrap(),
            t0 + Duration::from_secs(121)
        ));
    }

    #[test]
    fn a_full_table_is_swept_once_a_second_at_most() {
        let mut limiter = LogLimiter::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let source = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        // Two entries that expire a little apart, then a full table.
        assert!(limiter.may_log(source(0), at(0)));
        assert!(limiter.may_log(source(1), at(1_200)));
        for i in 2..LOG_SOURCES as u32 {
            assert!(limiter.may_log(source(i), at(30_000)));
        }
        let (x, y): (IpAddr, IpAddr) = (
            "198.51.100.7".parse().unwrap(),
            "198.51.100.8".parse().unwrap(),
        );
        // The first sweep makes room (source 0 expired).
        assert!(limiter.may_log(x, at(61_000)));
        // Source 1 has expired too, but the table was swept half a second
        // ago: a flood of new sources must not cost a sweep each.
        assert!(!limiter.may_log(y, at(61_500)));
        assert!(limiter.may_log(y, at(62_100)));
    }
}
