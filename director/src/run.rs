//! The live director: worker threads (each serving one or more receive
//! queues) moving frames between the I/O backend and the pipeline, a
//! housekeeping thread expiring connections, and the counters the operator
//! reads.
//!
//! # Poll modes
//! `adaptive` (the default) spins for a short while after the last frame,
//! then sleeps in `poll()` until a frame arrives: an idle director costs
//! nothing, which matters on small machines where the real servers share
//! the cores. `busy` never sleeps: lowest latency, one core per worker.
//!
//! # Counters
//! Workers count in plain integers and publish a copy every
//! [`PUBLISH_EVERY`]; readers sum the copies. Nothing is shared per packet.

use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use xvs_packet::IpProtocol;

use crate::ForwardMethod;
use crate::conn::Millis;
use crate::io::packet::{FilterInterface, FilterRule};
use crate::io::xdp::RedirectFilter;
use crate::io::{IoError, IoStats, WorkerIo};
use crate::pipeline::{
    DestIndex, Director, DropReason, Iface, MAX_BURST, Outcome, Snapshot, TrafficCounters, Verdict,
    WorkerCounters,
};

/// Frames a worker takes from its sockets per round.
pub const BURST: usize = MAX_BURST;

/// How often a worker publishes its counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Empty rounds an adaptive worker spins before it sleeps.
const SPIN_ROUNDS: u32 = 200;

/// The longest an adaptive worker sleeps before it looks at its stop flag.
const SLEEP: Duration = Duration::from_millis(50);

/// Connections the housekeeping thread reclaims per run at most.
const EXPIRE_BUDGET: usize = 200_000;

/// How often housekeeping runs.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);

/// Busy-poll or sleep when idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// Spin briefly, then sleep in `poll()` until frames arrive.
    #[default]
    Adaptive,
    /// Never sleep.
    Busy,
}

/// Milliseconds since the director started: the pipeline's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock starting now.
    #[must_use]
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Now, in milliseconds since the start (never 0).
    #[must_use]
    pub fn now(&self) -> Millis {
        Millis::try_from(self.start.elapsed().as_millis()).unwrap_or(Millis::MAX) + 1
    }
}

/// What the XDP program must redirect for `state`: every service, the
/// replies of NAT real servers, nothing addressed to the director itself.
#[must_use]
pub fn redirect_filter(state: &Snapshot) -> RedirectFilter {
    let mut filter = RedirectFilter::default();
    for svc in &state.services {
        filter.services.push((svc.proto, svc.vip, svc.port));
    }
    for dest in &state.dests {
        if dest.method != ForwardMethod::Nat {
            continue;
        }
        let proto = state.services[dest.service as usize].proto;
        let entry = (proto, dest.addr, dest.port);
        if !filter.nat_real_servers.contains(&entry) {
            filter.nat_real_servers.push(entry);
        }
    }
    for iface in &state.interfaces {
        filter
            .local_addresses
            .extend(iface.addresses.iter().map(|n| n.addr));
    }
    filter
}

/// What the AF_PACKET backend's kernel filter must drop for `state` (the
/// same traffic the XDP program would redirect), and on which interfaces.
#[must_use]
pub fn kernel_filter_rules(state: &Snapshot) -> (Vec<FilterInterface>, Vec<FilterRule>) {
    let ifaces = state
        .interfaces
        .iter()
        .map(|i| FilterInterface {
            name: i.name.clone(),
            role: i.role,
        })
        .collect();
    let redirect = redirect_filter(state);
    let mut rules: Vec<FilterRule> = redirect
        .services
        .iter()
        .map(|&(proto, vip, port)| FilterRule::ToService { proto, vip, port })
        .collect();
    rules.extend(
        redirect
            .nat_real_servers
            .iter()
            .map(|&(proto, addr, port)| FilterRule::FromRealServer { proto, addr, port }),
    );
    rules.push(FilterRule::LocalAddresses(redirect.local_addresses));
    (ifaces, rules)
}

/// Holds `/run/xvs/<netns>-<iface>.lock` for the life of the director: a
/// second director on the same interface (in the same network namespace)
/// is refused with a clear message, whatever the backend.
#[derive(Debug)]
pub struct InterfaceLock {
    _file: File,
}

impl InterfaceLock {
    /// Takes the lock for `iface`.
    ///
    /// # Errors
    /// Another process holds it, or `/run/xvs` cannot be written.
    pub fn take(iface: &str) -> Result<Self, IoError> {
        let dir = PathBuf::from("/run/xvs");
        std::fs::create_dir_all(&dir).map_err(|e| IoError::Os {
            what: "creating the lock directory /run/xvs",
            iface: iface.to_owned(),
            source: e,
            hint: ". The director needs root",
        })?;
        let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
        let path = dir.join(format!("{netns}-{iface}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| IoError::Os {
                what: "opening the interface lock",
                iface: iface.to_owned(),
                source: e,
                hint: ". The director needs root",
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(IoError::Other(format!(
                "another xvs-director is already driving {iface} (it holds {}); \
                 stop it first",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(IoError::Os {
                what: "locking the interface",
                iface: iface.to_owned(),
                source: e,
                hint: "",
            }),
        }
    }
}

/// What a worker shares with the rest of the director.
#[derive(Debug, Default)]
struct Published {
    counters: Mutex<WorkerCounters>,
    polls: std::sync::atomic::AtomicU64,
    io: Mutex<IoStats>,
    failure: Mutex<Option<String>>,
}

/// A running worker.
#[derive(Debug)]
struct WorkerThread {
    published: Arc<Published>,
    handle: Option<JoinHandle<()>>,
}

/// The running data plane.
#[derive(Debug)]
pub struct Live {
    director: Arc<Director>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    workers: Vec<WorkerThread>,
    housekeeping: Option<JoinHandle<()>>,
    descriptions: Vec<String>,
}

/// Options of the worker threads.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Busy-poll or adaptive.
    pub poll: PollMode,
    /// CPUs to pin workers to, in worker order (empty: no pinning).
    pub cpus: Vec<usize>,
}

/// Why the director could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The control plane's parts the first state depends on.
    #[error(transparent)]
    ControlPlane(#[from] crate::control::plane::StartError),
    /// A worker or housekeeping thread.
    #[error(transparent)]
    Workers(#[from] IoError),
}

/// Starts the director in the order its pipeline's contract needs: first
/// everything the workers' first state depends on — the health checks,
/// with the real servers configured to start down (`alpha`,
/// `check = "off"`) already out of rotation, and the passive reports wired
/// to the director — then the workers. A worker that took a frame before
/// that would schedule a connection to a server that is meant to be down.
///
/// # Errors
/// The health checker or the first state's filters failed (no worker was
/// started), or a thread could not be spawned.
pub fn start(
    plane: &mut crate::control::plane::ControlPlane,
    config: &crate::config::ClusterConfig,
    health_sink: Arc<dyn crate::health::HealthSink>,
    hooks: &mut dyn crate::control::plane::DataPlaneHooks,
    clock: Clock,
    ios: Vec<Box<dyn WorkerIo>>,
    options: &WorkerOptions,
) -> Result<Live, StartError> {
    plane.start(config, health_sink, hooks)?;
    Ok(Live::start(
        Arc::clone(plane.director()),
        clock,
        ios,
        options,
    )?)
}

impl Live {
    /// Starts one worker per I/O handle, and the housekeeping thread.
    ///
    /// # Errors
    /// A thread could not be spawned.
    pub fn start(
        director: Arc<Director>,
        clock: Clock,
        ios: Vec<Box<dyn WorkerIo>>,
        options: &WorkerOptions,
    ) -> Result<Self, IoError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(ios.len());
        let mut descriptions = Vec::with_capacity(ios.len());
        for (index, io) in ios.into_iter().enumerate() {
            descriptions.push(io.describe());
            let published = Arc::new(Published::default());
            *published.counters.lock() = director.worker(0).counters;
            let ctx = WorkerContext {
                director: Arc::clone(&director),
                clock,
                stop: Arc::clone(&stop),
                published: Arc::clone(&published),
                poll: options.poll,
                cpu: options.cpus.get(index).copied(),
                seed: 0x9e37_79b9_7f4a_7c15 ^ index as u64,
            };
            let handle = std::thread::Builder::new()
                .name(format!("xvs-worker-{index}"))
                .spawn(move || ctx.run(io))
                .map_err(|e| IoError::Other(format!("starting worker {index}: {e}")))?;
            workers.push(WorkerThread {
                published,
                handle: Some(handle),
            });
        }
        let hk_director = Arc::clone(&director);
        let hk_stop = Arc::clone(&stop);
        let housekeeping = std::thread::Builder::new()
            .name("xvs-housekeeping".to_owned())
            .spawn(move || {
                while !hk_stop.load(Ordering::Relaxed) {
                    hk_director.housekeeping(clock.now(), EXPIRE_BUDGET);
                    std::thread::sleep(HOUSEKEEPING_EVERY);
                }
            })
            .map_err(|e| IoError::Other(format!("starting housekeeping: {e}")))?;
        Ok(Self {
            director,
            clock,
            stop,
            workers,
            housekeeping: Some(housekeeping),
            descriptions,
        })
    }

    /// One line per worker saying what it drives.
    #[must_use]
    pub fn descriptions(&self) -> &[String] {
        &self.descriptions
    }

    /// The first worker failure, if a worker has stopped on an error.
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        self.workers
            .iter()
            .find_map(|w| w.published.failure.lock().clone())
    }

    /// Each worker's frames, polls and sleeps, in worker order.
    #[must_use]
    pub fn worker_counters(&self) -> Vec<crate::control::metrics::WorkerFigures> {
        self.workers
            .iter()
            .map(|w| crate::control::metrics::WorkerFigures {
                frames: w.published.counters.lock().frames,
                polls: w.published.polls.load(Ordering::Relaxed),
                sleeps: w.published.io.lock().sleeps,
            })
            .collect()
    }

    /// Every worker's counters, summed.
    #[must_use]
    pub fn counters(&self) -> (WorkerCounters, IoStats) {
        let mut total = self.director.worker(0).counters;
        let mut io = IoStats::default();
        for w in &self.workers {
            add_counters(&mut total, &w.published.counters.lock());
            io += *w.published.io.lock();
        }
        (total, io)
    }

    /// The counters as the stats file and the periodic log show them.
    #[must_use]
    pub fn stats_json(&self) -> Value {
        let (c, io) = self.counters();
        stats_json(&self.director, &c, &io, self.clock.now())
    }

    /// Stops the workers and housekeeping and waits for them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop();
    }
}

struct WorkerContext {
    director: Arc<Director>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    published: Arc<Published>,
    poll: PollMode,
    cpu: Option<usize>,
    seed: u64,
}

impl WorkerContext {
    fn run(self, mut io: Box<dyn WorkerIo>) {
        if let Some(cpu) = self.cpu
            && let Err(e) = crate::io::pin_to_cpu(cpu)
        {
            log::warn!("worker not pinned to CPU {cpu}: {e}");
        }
        let director = &*self.director;
        let mut worker = director.worker(self.seed);
        let mut idle = 0u32;
        let mut outcomes = [Outcome {
            verdict: Verdict::PassToKernel,
            dest: None,
        }; MAX_BURST];
        let mut published_at = Instant::now();
        let mut polls = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            polls += 1;
            let now = self.clock.now();
            let received = io.run_burst(BURST, &mut |burst, verdicts| {
                let n = director.process_burst(&mut worker, burst, now, &mut outcomes);
                for (v, o) in verdicts.iter_mut().zip(&outcomes[..n]) {
                    *v = o.verdict;
                }
            });
            match received {
                Ok(0) => {
                    idle += 1;
                    if self.poll == PollMode::Adaptive && idle >= SPIN_ROUNDS {
                        idle = 0;
                        if let Err(e) = io.wait(SLEEP) {
                            *self.published.failure.lock() = Some(e.to_string());
                            break;
                        }
                    }
                }
                Ok(_) => idle = 0,
                Err(e) => {
                    *self.published.failure.lock() = Some(e.to_string());
                    break;
                }
            }
            if published_at.elapsed() >= PUBLISH_EVERY {
                published_at = Instant::now();
                self.published.counters.lock().clone_from(&worker.counters);
                *self.published.io.lock() = io.stats();
                self.published.polls.store(polls, Ordering::Relaxed);
            }
        }
        self.published.polls.store(polls, Ordering::Relaxed);
        self.published.counters.lock().clone_from(&worker.counters);
        *self.published.io.lock() = io.stats();
    }
}

fn add_counters(total: &mut WorkerCounters, c: &WorkerCounters) {
    total.frames += c.frames;
    total.transmitted += c.transmitted;
    total.passed += c.passed;
    total.stateless += c.stateless;
    total.too_big_sent += c.too_big_sent;
    for (t, n) in total
        .partial_checksum_completed
        .iter_mut()
        .zip(&c.partial_checksum_completed)
    {
        *t += n;
    }
    for (t, d) in total.drops.iter_mut().zip(&c.drops) {
        *t += d;
    }
    for (t, d) in total.dests.iter_mut().zip(&c.dests) {
        *t += *d;
    }
}

fn proto_name(p: IpProtocol) -> &'static str {
    match p {
        IpProtocol::Tcp => "tcp",
        IpProtocol::Udp => "udp",
        _ => "other",
    }
}

fn method_name(m: ForwardMethod) -> &'static str {
    match m {
        ForwardMethod::Nat => "nat",
        ForwardMethod::DirectRouting => "dr",
        ForwardMethod::Tunnel => "tun",
    }
}

fn traffic_json(t: &TrafficCounters) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("conns".into(), t.conns.into());
    m.insert("packets_in".into(), t.packets_in.into());
    m.insert("packets_out".into(), t.packets_out.into());
    m.insert("bytes_in".into(), t.bytes_in.into());
    m.insert("bytes_out".into(), t.bytes_out.into());
    m
}

fn addr_string(a: IpAddr) -> String {
    a.to_string()
}

/// The stats document: totals, drops by reason, I/O counters, and per
/// service and real server what `ipvsadm -L --stats` shows.
#[must_use]
pub fn stats_json(director: &Director, c: &WorkerCounters, io: &IoStats, now: Millis) -> Value {
    let state = director.state();
    let mut drops = serde_json::Map::new();
    for &reason in DropReason::ALL {
        let n = c.dropped(reason);
        if n > 0 {
            drops.insert(reason.name().to_owned(), n.into());
        }
    }
    let mut services = Vec::with_capacity(state.services.len());
    for (si, svc) in state.live_services() {
        // The service's totals keep every destination it ever had (as
        // IPVS keeps a deleted server's counters in its service's); the
        // servers listed are those `xvsadm -L --stats` lists, and the
        // current fallback.
        let mut total = TrafficCounters::default();
        for (di, dest) in state.dests.iter().enumerate() {
            if dest.service == si {
                total += c.dests.get(di as DestIndex).copied().unwrap_or_default();
            }
        }
        // The numbers come from this snapshot, which has them all.
        let dest_json = |di: DestIndex| {
            let dest = state.dests.get(di)?;
            let mut m = traffic_json(&c.dests.get(di).copied().unwrap_or_default());
            m.insert("address".into(), addr_string(dest.addr).into());
            m.insert("port".into(), dest.port.into());
            m.insert("method".into(), method_name(dest.method).into());
            Some(m)
        };
        let mut servers = Vec::new();
        for (di, rs) in state.listed_servers(si) {
            let Some(mut m) = dest_json(di) else { continue };
            m.insert("weight".into(), rs.weight().into());
            m.insert("active_conns".into(), rs.active_conns().into());
            m.insert("inactive_conns".into(), rs.inactive_conns().into());
            m.insert("fallback".into(), false.into());
            servers.push(Value::Object(m));
        }
        if let Some(mut m) = svc.fallback.and_then(dest_json) {
            m.insert("fallback".into(), true.into());
            servers.push(Value::Object(m));
        }
        let mut m = traffic_json(&total);
        m.insert("proto".into(), proto_name(svc.proto).into());
        m.insert("vip".into(), addr_string(svc.vip).into());
        m.insert("port".into(), svc.port.into());
        m.insert("scheduler".into(), svc.sched.scheduler().name().into());
        m.insert("real_servers".into(), Value::Array(servers));
        services.push(Value::Object(m));
    }
    let mut partial = serde_json::Map::new();
    for (iface, n) in state.interfaces.iter().zip(&c.partial_checksum_completed) {
        if *n > 0 {
            partial.insert(iface.name.clone(), (*n).into());
        }
    }
    json!({
        "time_ms": now,
        "frames": c.frames,
        "transmitted": c.transmitted,
        "passed": c.passed,
        "stateless": c.stateless,
        "too_big_sent": c.too_big_sent,
        "partial_checksum_completed": c.partial_checksums_completed(),
        "partial_checksum_completed_by_interface": partial,
        "drops": drops,
        "connections": director.table().len(),
        "io": {
            "rx_frames": io.rx_frames,
            "tx_frames": io.tx_frames,
            "tx_dropped": io.tx_dropped,
            "pass_unreachable": io.pass_unreachable,
            "sleeps": io.sleeps,
            "kernel_rx_dropped": io.kernel_rx_dropped,
            "stats_read_failures": io.stats_read_failures,
        },
        "services": services,
    })
}

/// Which interfaces the log has named as bringing partial checksums: the
/// pipeline completes them silently (it never logs), and an operator
/// learns once per interface that a sender there has checksum offload on.
#[derive(Debug, Default)]
pub struct PartialChecksumNotice {
    told: Vec<bool>,
}

impl PartialChecksumNotice {
    /// The interfaces whose `partial_checksum_completed` counter in `c`
    /// moved since start and that were not named before.
    pub fn news<'a>(&mut self, c: &WorkerCounters, interfaces: &'a [Iface]) -> Vec<&'a Iface> {
        self.told.resize(interfaces.len(), false);
        interfaces
            .iter()
            .zip(&c.partial_checksum_completed)
            .zip(self.told.iter_mut())
            .filter_map(|((iface, n), told)| {
                let new = *n > 0 && !*told;
                *told |= new;
                new.then_some(iface)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::config::ClusterConfig;
    use crate::io::{Burst, RxFrame};
    use crate::pipeline::{HEADROOM, IfaceId};
    use crate::test_support::two_interfaces;

    const CONFIG: &str = concat!(
        two_interfaces!(),
        r#"
[[services]]
proto = "udp"
vip = "203.0.113.10"
port = 53
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"

[[neighbours]]
interface = "s0"
address = "192.0.2.11"
mac = "02:00:00:00:00:11"
"#
    );

    /// A UDP datagram from client port `sport` to the service.
    fn datagram(sport: u16) -> Vec<u8> {
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 1, 1])
            .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 64)
            .udp(sport, 53)
            .write(&mut f, b"query")
            .unwrap();
        f
    }

    /// A frame the fake backend transmitted, and where.
    type Sent = (IfaceId, Vec<u8>);

    /// A backend fed from a queue: every frame arrives on interface 0,
    /// transmits are recorded.
    #[derive(Default)]
    struct FakeIo {
        inbox: Arc<Mutex<VecDeque<Vec<u8>>>>,
        sent: Arc<Mutex<Vec<Sent>>>,
        stats: IoStats,
    }

    struct FakeBurst {
        bufs: Vec<Vec<u8>>,
        lens: Vec<usize>,
    }

    impl Burst for FakeBurst {
        fn len(&self) -> usize {
            self.bufs.len()
        }
        fn frame(&mut self, i: usize) -> RxFrame<'_> {
            RxFrame {
                buf: &mut self.bufs[i],
                start: HEADROOM,
                len: self.lens[i],
                rx: IfaceId(0),
            }
        }
    }

    impl WorkerIo for FakeIo {
        fn run_burst(
            &mut self,
            burst: usize,
            decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
        ) -> Result<usize, IoError> {
            let mut b = FakeBurst {
                bufs: Vec::new(),
                lens: Vec::new(),
            };
            {
                let mut inbox = self.inbox.lock();
                while b.bufs.len() < burst
                    && let Some(f) = inbox.pop_front()
                {
                    let mut buf = vec![0; HEADROOM + 2048];
                    buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(&f);
                    b.lens.push(f.len());
                    b.bufs.push(buf);
                }
            }
            let n = b.bufs.len();
            let mut verdicts = vec![Verdict::PassToKernel; n];
            decide(&mut b, &mut verdicts);
            for (i, v) in verdicts.iter().enumerate() {
                if let Verdict::Transmit { iface, start, len } = *v {
                    self.sent
                        .lock()
                        .push((iface, b.bufs[i][start..start + len].to_vec()));
                    self.stats.tx_frames += 1;
                }
            }
            self.stats.rx_frames += n as u64;
            Ok(n)
        }
        fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
            self.stats.sleeps += 1;
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            Ok(())
        }
        fn stats(&self) -> IoStats {
            self.stats
        }
        fn describe(&self) -> String {
            "fake".to_owned()
        }
    }

    #[test]
    fn workers_forward_publish_their_counters_and_stop() {
        let config = ClusterConfig::parse("run.toml", CONFIG).unwrap();
        let clock = Clock::start();
        let director = Arc::new(Director::new(&config, clock.now(), 1).unwrap());
        let io = FakeIo::default();
        let (inbox, sent) = (Arc::clone(&io.inbox), Arc::clone(&io.sent));
        inbox.lock().extend((0..100).map(|i| datagram(40_000 + i)));
        let mut live = Live::start(
            Arc::clone(&director),
            clock,
            vec![Box::new(io)],
            &WorkerOptions::default(),
        )
        .unwrap();
        assert_eq!(live.descriptions(), ["fake"]);
        // Published within a few PUBLISH_EVERY periods; bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while live.counters().0.transmitted < 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (c, io) = live.counters();
        assert_eq!((c.frames, c.transmitted), (100, 100));
        assert_eq!((io.rx_frames, io.tx_frames), (100, 100));
        assert_eq!(sent.lock().len(), 100);
        assert!(sent.lock().iter().all(|(iface, _)| *iface == IfaceId(1)));
        let stats = live.stats_json();
        assert_eq!(stats["services"][0]["conns"], 100);
        assert_eq!(stats["services"][0]["real_servers"][0]["packets_in"], 100);
        assert_eq!(stats["connections"], 100);
        live.stop();
        assert!(live.failure().is_none());
        // Stopped workers take no more frames.
        inbox.lock().push_back(datagram(1));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(inbox.lock().len(), 1);
    }

    /// The UDP service with a second real server that is configured to
    /// start down (its health check is `off`).
    fn config_with_a_server_down_at_start() -> ClusterConfig {
        let text = format!(
            "{CONFIG}{}",
            r#"
[[neighbours]]
interface = "s0"
address = "192.0.2.12"
mac = "02:00:00:00:00:12"
"#
        )
        .replace(
            "scheduler = \"rr\"\n",
            "scheduler = \"rr\"\n[services.health]\ncheck = \"on\"\n",
        )
        .replace(
            "address = \"192.0.2.11\"\nmethod = \"nat\"\n",
            "address = \"192.0.2.11\"\nmethod = \"nat\"\n[[services.real_servers]]\naddress = \"192.0.2.12\"\nmethod = \"nat\"\n[services.real_servers.health]\ncheck = \"off\"\n",
        );
        ClusterConfig::parse("run.toml", &text).unwrap()
    }

    /// A backend that notes, when `Live` takes it, whether `down` could be
    /// scheduled in the state the workers then read.
    struct Watching {
        inner: FakeIo,
        director: Arc<Director>,
        down: IpAddr,
        schedulable: Arc<Mutex<Option<bool>>>,
    }

    impl WorkerIo for Watching {
        fn run_burst(
            &mut self,
            burst: usize,
            decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
        ) -> Result<usize, IoError> {
            self.inner.run_burst(burst, decide)
        }
        fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
            self.inner.wait(timeout)
        }
        fn stats(&self) -> IoStats {
            self.inner.stats()
        }
        fn describe(&self) -> String {
            let state = self.director.state();
            let schedulable = state.live_services().any(|(slot, _)| {
                state
                    .listed_servers(slot)
                    .any(|(_, rs)| rs.addr() == self.down && rs.weight() > 0)
            });
            *self.schedulable.lock() = Some(schedulable);
            self.inner.describe()
        }
    }

    #[test]
    fn a_server_that_starts_down_gets_no_connection_from_the_first_frame_on() {
        use crate::control::plane::{ControlPlane, NoHooks};
        use crate::control::table::ServiceTable;
        use crate::pipeline::Neighbours;

        struct NoSink;
        impl crate::health::HealthSink for NoSink {
            fn transition(&self, _: &crate::health::TargetKey, _: bool, _: &crate::health::Reason) {
            }
        }

        let config = config_with_a_server_down_at_start();
        let clock = Clock::start();
        let table = ServiceTable::from_config(&config, clock.now()).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            1,
            Arc::new(Neighbours::new()),
        ));
        // Frames are waiting before anything starts, as they do in the
        // rings of a live director: the workers' very first burst decides.
        let io = FakeIo::default();
        let (inbox, sent) = (Arc::clone(&io.inbox), Arc::clone(&io.sent));
        inbox.lock().extend((0..64).map(|i| datagram(40_000 + i)));
        // Which state the workers are handed their sockets with (`Live`
        // asks each for its description then, before the thread starts):
        // unlike the frames' fate, this does not depend on thread timing.
        let down: IpAddr = "192.0.2.12".parse().unwrap();
        let at_handover = Arc::new(Mutex::new(None));
        let io = Watching {
            inner: io,
            director: Arc::clone(&director),
            down,
            schedulable: Arc::clone(&at_handover),
        };
        let mut plane = ControlPlane::new(table, Arc::clone(&director), 4096);
        let mut live = start(
            &mut plane,
            &config,
            Arc::new(NoSink),
            &mut NoHooks,
            clock,
            vec![Box::new(io)],
            &WorkerOptions::default(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sent.lock().len() < 64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        live.stop();
        assert_eq!(
            *at_handover.lock(),
            Some(false),
            "the workers started while the server meant to start down was in rotation"
        );
        let sent = sent.lock();
        assert_eq!(sent.len(), 64);
        // IPv4 destination address: bytes 30..34 of the Ethernet frame.
        let to_down = sent
            .iter()
            .filter(|(_, f)| f[30..34] == [192, 0, 2, 12])
            .count();
        assert_eq!(
            to_down, 0,
            "connections scheduled to the server that starts down"
        );
    }

    #[test]
    fn partial_checksums_are_summed_shown_per_interface_and_told_once() {
        let config = ClusterConfig::parse("run.toml", CONFIG).unwrap();
        let director = Director::new(&config, 1, 1).unwrap();
        let mut total = director.worker(0).counters;
        let mut one = director.worker(1).counters;
        one.partial_checksum_completed[0] = 3;
        add_counters(&mut total, &one);
        add_counters(&mut total, &one);
        let stats = stats_json(&director, &total, &IoStats::default(), 5);
        assert_eq!(stats["partial_checksum_completed"], 6);
        assert_eq!(
            stats["partial_checksum_completed_by_interface"],
            json!({ "c0": 6 }),
            "interfaces without any are left out"
        );
        let state = director.state();
        let mut notice = PartialChecksumNotice::default();
        let names = |n: Vec<&Iface>| n.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(notice.news(&total, &state.interfaces)), ["c0"]);
        assert!(
            notice.news(&total, &state.interfaces).is_empty(),
            "said once"
        );
        total.partial_checksum_completed[1] = 1;
        assert_eq!(names(notice.news(&total, &state.interfaces)), ["s0"]);
    }

    #[test]
    fn a_worker_that_fails_says_why() {
        struct Broken;
        impl WorkerIo for Broken {
            fn run_burst(
                &mut self,
                _: usize,
                _: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
            ) -> Result<usize, IoError> {
                Err(IoError::Other("the socket went away".to_owned()))
            }
            fn wait(&mut self, _: Duration) -> Result<(), IoError> {
                Ok(())
            }
            fn stats(&self) -> IoStats {
                IoStats::default()
            }
            fn describe(&self) -> String {
                "broken".to_owned()
            }
        }
        let config = ClusterConfig::parse("run.toml", CONFIG).unwrap();
        let clock = Clock::start();
        let director = Arc::new(Director::new(&config, clock.now(), 1).unwrap());
        let live = Live::start(
            director,
            clock,
            vec![Box::new(Broken)],
            &WorkerOptions::default(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while live.failure().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(live.failure().as_deref(), Some("the socket went away"));
    }

    #[test]
    fn the_redirect_filter_names_services_nat_servers_and_local_addresses() {
        let config = ClusterConfig::parse("run.toml", CONFIG).unwrap();
        let director = Director::new(&config, 1, 1).unwrap();
        let f = redirect_filter(&director.state());
        let vip: IpAddr = "203.0.113.10".parse().unwrap();
        let rs: IpAddr = "192.0.2.11".parse().unwrap();
        assert_eq!(f.services, [(IpProtocol::Udp, vip, 53)]);
        assert_eq!(f.nat_real_servers, [(IpProtocol::Udp, rs, 53)]);
        assert_eq!(f.local_addresses.len(), 2);
        let (ifaces, rules) = kernel_filter_rules(&director.state());
        assert_eq!(ifaces.len(), 2);
        assert_eq!(rules.len(), 3);
    }
}
