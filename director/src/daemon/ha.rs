//! The HA part (`[ha]`): this director's virtual router ([`Router`]) on a
//! thread of its own, which owns the VRRP socket, the frame senders for the
//! gratuitous ARPs / NAs and the clock. It sleeps in the socket until the
//! next advert or the router's next deadline, whichever comes first, so the
//! timers keep the RFC's precision whatever the main loop does.
//!
//! The main thread tells it what changed (`Command`): the services' VIPs
//! after every published snapshot, and the workers' health (a worker whose
//! poll count has not moved for [`STALL_AFTER`] is stalled: a fault). The
//! thread itself watches the links of the director's interfaces (every
//! [`LINK_CHECK_EVERY`]; one down is a fault) and runs the track script.
//!
//! Starting: addresses of the group left on the interfaces by a previous
//! run that was killed (SIGKILL leaves them, as it does keepalived's) are
//! removed first, so a director starts holding nothing. Stopping: a master
//! sends priority 0 (the backup takes over after its skew time) and
//! releases every address before the workers stop.

use std::net::IpAddr;
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, Sender, TryRecvError, unbounded};
use log::{error, info, warn};
use serde_json::{Value, json};
use xvs_packet::vrrp::{AntiReplay, Family, WallClock};

use crate::config::{HaConfig, TrackScript};
use crate::ha::machine::{Fault, Machine, State};
use crate::ha::router::{Link, Router, Setup, Shared, Wire};
use crate::io::announce::FrameSender;
use crate::io::vrrp_socket::VrrpSocket;
use crate::kernel::addresses;
use crate::pipeline::Snapshot;
use crate::sync::shared::SyncShared;
use crate::types::{InterfaceRole, IpNet};

use super::Error;
use super::part::{Part, Running};

/// A worker whose poll count has not moved for this long is stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// How often the links are looked at.
pub const LINK_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The longest the thread sleeps before it looks at its commands.
const TURN: Duration = Duration::from_millis(50);

/// What the main thread tells the router's thread.
#[derive(Debug)]
enum Command {
    /// The services' VIPs now.
    Vips(Vec<IpAddr>),
    /// The workers stalled (true) or run again (false).
    Workers(bool),
}

/// One interface of the director as the part needs it.
#[derive(Debug, Clone)]
pub struct HaInterface {
    /// Kernel name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Client or server side.
    pub role: InterfaceRole,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its configured addresses.
    pub addresses: Vec<IpNet>,
}

/// The HA part.
#[derive(Debug)]
pub struct HaPart {
    config: HaConfig,
    interfaces: Vec<HaInterface>,
    shared: Arc<Shared>,
    /// What was resolved at start: node, interface, source, mode.
    resolved: Option<Resolved>,
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    vips: Vec<IpAddr>,
    stall: StallWatch,
    /// With the sync's backup role: its "in sync" flag, and how long a
    /// preemption waits for it.
    sync_gate: Option<(Arc<SyncShared>, Duration)>,
}

/// What the part resolved when it started.
#[derive(Debug, Clone)]
struct Resolved {
    node: String,
    interface: String,
    source: IpAddr,
}

impl HaPart {
    /// A part for `config` over the director's `interfaces`, announcing
    /// the VIPs of `snapshot`, showing its state in `shared`.
    #[must_use]
    pub fn new(
        config: HaConfig,
        interfaces: Vec<HaInterface>,
        snapshot: &Snapshot,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            config,
            interfaces,
            shared,
            resolved: None,
            commands: None,
            thread: None,
            vips: vips_of(snapshot),
            stall: StallWatch::default(),
            sync_gate: None,
        }
    }

    /// With `gate`: a preemption waits, at most the duration, until the
    /// connection sync holds the peer's table.
    #[must_use]
    pub fn with_sync_gate(mut self, gate: Option<(Arc<SyncShared>, Duration)>) -> Self {
        self.sync_gate = gate;
        self
    }

    fn interface(&self, role: InterfaceRole) -> Option<&HaInterface> {
        self.interfaces.iter().find(|i| i.role == role)
    }

    /// Builds the router's setup: which interface, which source, which key.
    fn setup(&self) -> Result<(Setup, HaInterface), Error> {
        let fail = |what: String| Error::Ha(what);
        let client = self
            .interface(InterfaceRole::Client)
            .ok_or_else(|| {
                fail("the director has no client-side interface to hold the VIPs".into())
            })?
            .clone();
        let server = self
            .interface(InterfaceRole::Server)
            .unwrap_or(&client)
            .clone();
        let advert = match &self.config.interface {
            Some(name) => self
                .interfaces
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| {
                    fail(format!(
                        "[ha] interface \"{name}\" is not one of the director's"
                    ))
                })?
                .clone(),
            None => client.clone(),
        };
        let family = self.config.family.family();
        let source = match self.config.source {
            Some(source) => source,
            None => match family {
                Family::V4 => advert
                    .addresses
                    .iter()
                    .map(|n| n.addr)
                    .find(IpAddr::is_ipv4)
                    .ok_or_else(|| {
                        fail(format!(
                            "interface {} has no IPv4 address to send adverts from: give it one or set [ha] source",
                            advert.name
                        ))
                    })?,
                Family::V6 => addresses::link_local(advert.ifindex)
                    .map_err(|e| fail(format!("reading {}'s link-local address: {e}", advert.name)))?
                    .map(IpAddr::V6)
                    .ok_or_else(|| {
                        fail(format!(
                            "interface {} has no IPv6 link-local address to send adverts from (RFC 9568): bring IPv6 up on it or set [ha] source",
                            advert.name
                        ))
                    })?,
            },
        };
        let key = self
            .config
            .read_key()
            .map_err(|e| fail(format!("[ha] key_file: {e}")))?;
        let window_s = u32::try_from((3 * self.config.advert_interval).div_ceil(1000))
            .unwrap_or(300)
            .clamp(5, 300);
        let node = self.config.node.clone().unwrap_or_else(host_name);
        Ok((
            Setup {
                node,
                vrid: self.config.vrid,
                family,
                source,
                peers: self.config.peers.clone(),
                key,
                client: Link {
                    ifindex: client.ifindex,
                    mac: client.mac,
                },
                server: Link {
                    ifindex: server.ifindex,
                    mac: server.mac,
                },
                gateways: self.config.gateways.clone(),
                notify_master: self.config.notify_master.clone(),
                notify_backup: self.config.notify_backup.clone(),
                notify_fault: self.config.notify_fault.clone(),
                anti_replay: AntiReplay::Time { window_s },
            },
            advert,
        ))
    }
}

impl Part for HaPart {
    fn name(&self) -> &'static str {
        "ha"
    }

    fn start(&mut self) -> Result<(), Error> {
        let (setup, advert) = self.setup()?;
        let mut settings = self.config.settings(setup.source);
        if let Some((_, wait)) = &self.sync_gate {
            settings.sync_wait = *wait;
        }
        let machine = Machine::new(settings).map_err(|e| Error::Ha(format!("[ha]: {e}")))?;
        let socket = VrrpSocket::open(
            setup.family,
            &advert.name,
            advert.ifindex,
            setup.peers.is_empty(),
        )
        .map_err(|e| {
            Error::Ha(format!(
                "opening the VRRP socket on {}: {e} (VRRP needs raw sockets: run as root or with CAP_NET_RAW)",
                advert.name
            ))
        })?;
        let mut senders = Vec::new();
        for link in [setup.client, setup.server] {
            if senders.iter().any(|(i, _)| *i == link.ifindex) {
                continue;
            }
            let sender = FrameSender::open(link.ifindex).map_err(|e| {
                Error::Ha(format!(
                    "opening the packet socket for gratuitous ARPs on interface {}: {e}",
                    link.ifindex
                ))
            })?;
            senders.push((link.ifindex, sender));
        }
        let wire = KernelWire {
            socket,
            senders,
            hooks: Vec::new(),
        };
        let resolved = Resolved {
            node: setup.node.clone(),
            interface: advert.name.clone(),
            source: setup.source,
        };
        let links: Vec<(String, u32)> = self
            .interfaces
            .iter()
            .map(|i| (i.name.clone(), i.ifindex))
            .collect();
        let track = self.config.track_script.clone();
        let gate = self
            .sync_gate
            .as_ref()
            .map(|(shared, _)| Arc::clone(shared));
        let router = Router::new(setup, machine, wire, Arc::clone(&self.shared));
        let (to_thread, commands) = unbounded();
        let vips = self.vips.clone();
        let thread = std::thread::Builder::new()
            .name("xvs-ha".to_owned())
            .spawn(move || serve(router, vips, &commands, &links, track, gate.as_deref()))
            .map_err(|e| Error::Ha(format!("starting the HA thread: {e}")))?;
        info!(
            "ha: node {} vrid {} priority {} on {} ({}, {}{}), auth {}",
            resolved.node,
            self.config.vrid,
            self.config.priority,
            resolved.interface,
            self.config.family.as_str(),
            if self.config.peers.is_empty() {
                "multicast".to_owned()
            } else {
                format!("unicast to {:?}", self.config.peers)
            },
            format_args!(", from {}", resolved.source),
            self.config.auth.as_str()
        );
        self.resolved = Some(resolved);
        self.commands = Some(to_thread);
        self.thread = Some(thread);
        Ok(())
    }

    fn reconfigure(&mut self, snapshot: &Snapshot) {
        let vips = vips_of(snapshot);
        if vips != self.vips {
            self.vips.clone_from(&vips);
            if let Some(commands) = &self.commands {
                let _ = commands.send(Command::Vips(vips));
            }
        }
    }

    fn tick(&mut self, running: &mut Running<'_>) {
        let Some(live) = running.live else {
            return;
        };
        let polls: Vec<u64> = live.worker_counters().iter().map(|f| f.polls).collect();
        if let Some(stalled) = self.stall.observe(&polls, Instant::now()) {
            if stalled {
                error!(
                    "ha: a worker has not polled for {} s: the data path is stalled",
                    STALL_AFTER.as_secs()
                );
            } else {
                info!("ha: the workers poll again");
            }
            if let Some(commands) = &self.commands {
                let _ = commands.send(Command::Workers(stalled));
            }
        }
    }

    fn status(&self) -> Value {
        let mut status = self.shared.json(Instant::now());
        let extra = json!({
            "running": self.thread.is_some(),
            "node": self.resolved.as_ref().map(|r| r.node.clone()),
            "vrid": self.config.vrid,
            "priority": self.config.priority,
            "family": self.config.family.as_str(),
            "interface": self.resolved.as_ref().map(|r| r.interface.clone()),
            "source": self.resolved.as_ref().map(|r| r.source.to_string()),
            "mode": if self.config.peers.is_empty() { "multicast" } else { "unicast" },
            "peers": self.config.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "auth": self.config.auth.as_str(),
            "advert_interval_ms": self.config.advert_interval,
            "preempt": self.config.preempt,
        });
        if let (Value::Object(status), Value::Object(extra)) = (&mut status, extra) {
            status.extend(extra);
        }
        status
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        // Dropping the sender tells the thread to stop.
        self.commands = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("ha: the HA thread panicked");
        }
    }
}

/// Whether the workers make progress: each one's poll count must move
/// within [`STALL_AFTER`].
#[derive(Debug, Default)]
struct StallWatch {
    /// Each worker's poll count, and when it last moved.
    polls: Vec<(u64, Instant)>,
    stalled: bool,
}

impl StallWatch {
    /// The workers' poll counts at `now`; `Some(stalled)` when the verdict
    /// changes.
    fn observe(&mut self, polls: &[u64], now: Instant) -> Option<bool> {
        if self.polls.len() != polls.len() {
            self.polls = polls.iter().map(|&p| (p, now)).collect();
            return None;
        }
        let mut stalled = false;
        for (seen, &count) in self.polls.iter_mut().zip(polls) {
            if count != seen.0 {
                *seen = (count, now);
            } else if now.duration_since(seen.1) >= STALL_AFTER {
                stalled = true;
            }
        }
        (stalled != self.stalled).then(|| {
            self.stalled = stalled;
            stalled
        })
    }
}

/// Every service's VIP, sorted, once each.
fn vips_of(snapshot: &Snapshot) -> Vec<IpAddr> {
    let mut vips: Vec<IpAddr> = snapshot.services.iter().map(|s| s.vip).collect();
    vips.sort_unstable();
    vips.dedup();
    vips
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "director".to_owned())
}

fn wall_clock() -> WallClock {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    WallClock {
        secs: d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// The thread: the router until the part's sender is dropped.
fn serve(
    mut router: Router<KernelWire>,
    vips: Vec<IpAddr>,
    commands: &Receiver<Command>,
    links: &[(String, u32)],
    track: Option<TrackScript>,
    sync_gate: Option<&SyncShared>,
) {
    let mut buf = vec![0u8; 65_536];
    router.set_vips(vips, wall_clock());
    // Leftovers of a run that was killed: a director starts holding
    // nothing.
    router.remove_leftovers();
    router.start(Instant::now(), wall_clock());
    let mut links_down: Vec<String> = Vec::new();
    let mut link_checked = Instant::now() - LINK_CHECK_EVERY;
    let mut tracker = track.map(Tracker::new);
    loop {
        match commands.try_recv() {
            Ok(Command::Vips(vips)) => {
                router.set_vips(vips, wall_clock());
                continue;
            }
            Ok(Command::Workers(stalled)) => {
                router.fault(Fault::WorkersStalled, stalled, Instant::now(), wall_clock());
                continue;
            }
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => break,
        }
        let now = Instant::now();
        if now.duration_since(link_checked) >= LINK_CHECK_EVERY {
            link_checked = now;
            let down: Vec<String> = links
                .iter()
                .filter(|(name, ifindex)| match addresses::link_is_up(*ifindex) {
                    Ok(up) => !up,
                    Err(e) => {
                        warn!("ha: reading the state of {name}: {e}");
                        false
                    }
                })
                .map(|(name, _)| name.clone())
                .collect();
            if down.is_empty() != links_down.is_empty() {
                if down.is_empty() {
                    info!("ha: every interface is up again");
                } else {
                    error!("ha: interface {} is down", down.join(", "));
                }
                router.fault(Fault::InterfaceDown, !down.is_empty(), now, wall_clock());
            }
            links_down = down;
        }
        if let Some(tracker) = &mut tracker
            && let Some(failing) = tracker.poll(now)
        {
            router.fault(Fault::TrackScript, failing, now, wall_clock());
        }
        if let Some(gate) = sync_gate {
            router.set_sync_pending(!gate.in_sync());
        }
        router.wire_mut().reap();
        let wait = router
            .next_deadline()
            .map_or(TURN, |d| d.saturating_duration_since(now).min(TURN));
        match router.wire().socket.recv(&mut buf, wait) {
            Ok(Some((len, _ifindex))) => router.receive(&buf[..len], Instant::now(), wall_clock()),
            Ok(None) => {}
            Err(e) => {
                warn!("ha: receiving adverts: {e}");
                std::thread::sleep(TURN);
            }
        }
        router.timer(Instant::now(), wall_clock());
    }
    router.shutdown(Instant::now(), wall_clock());
    if let Some(tracker) = &mut tracker {
        tracker.kill();
    }
    router.wire_mut().reap();
    if router.state() != State::Init {
        warn!("ha: stopped in state {}", router.state());
    }
}

/// The real wire: the VRRP socket, a frame sender per interface, the
/// kernel's addresses, hooks as child processes.
struct KernelWire {
    socket: VrrpSocket,
    senders: Vec<(u32, FrameSender)>,
    hooks: Vec<(String, Child, Instant)>,
}

/// How long a notify hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

impl KernelWire {
    /// Collects the hooks that ended; kills the ones over their time.
    fn reap(&mut self) {
        self.hooks
            .retain_mut(|(command, child, started)| match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        warn!("ha: notify hook `{command}` ended with {status}");
                    }
                    false
                }
                Ok(None) if started.elapsed() > HOOK_TIMEOUT => {
                    warn!(
                        "ha: notify hook `{command}` ran over {} s: killed",
                        HOOK_TIMEOUT.as_secs()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            });
    }
}

impl Wire for KernelWire {
    fn send_advert(&mut self, src: IpAddr, dst: IpAddr, message: &[u8]) -> std::io::Result<()> {
        self.socket.send(src, dst, message)
    }

    fn add_address(&mut self, ifindex: u32, net: IpNet) -> std::io::Result<bool> {
        addresses::add_address(ifindex, net)
    }

    fn remove_address(&mut self, ifindex: u32, net: IpNet) -> std::io::Result<bool> {
        addresses::remove_address(ifindex, net)
    }

    fn announce(&mut self, ifindex: u32, mac: [u8; 6], addr: IpAddr) -> std::io::Result<()> {
        let sender = self
            .senders
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                std::io::Error::other(format!("no packet socket on interface {ifindex}"))
            })?;
        match addr {
            IpAddr::V4(a) => sender.send(&xvs_packet::announce::gratuitous_arp(mac, a)),
            IpAddr::V6(a) => sender.send(&xvs_packet::announce::unsolicited_na(mac, a)),
        }
    }

    fn notify(&mut self, command: &str, env: &[(&str, String)]) {
        let mut process = Process::new("/bin/sh");
        process
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in env {
            process.env(k, v);
        }
        match process.spawn() {
            Ok(child) => self.hooks.push((command.to_owned(), child, Instant::now())),
            Err(e) => error!("ha: running notify hook `{command}`: {e}"),
        }
    }
}

/// keepalived's `track_script`: the command every interval, `fall`
/// failures in a row raise the fault, `rise` successes clear it.
struct Tracker {
    script: TrackScript,
    running: Option<(Child, Instant)>,
    next_at: Instant,
    failures: u32,
    successes: u32,
    failing: bool,
}

impl Tracker {
    fn new(script: TrackScript) -> Self {
        Self {
            script,
            running: None,
            next_at: Instant::now(),
            failures: 0,
            successes: 0,
            failing: false,
        }
    }

    /// Starts or collects the command; `Some(failing)` when the verdict
    /// changes.
    fn poll(&mut self, now: Instant) -> Option<bool> {
        let timeout = Duration::from_millis(self.script.timeout.unwrap_or(self.script.interval));
        let outcome = match &mut self.running {
            Some((child, started)) => match child.try_wait() {
                Ok(Some(status)) => Some(status.success()),
                Ok(None) if now.duration_since(*started) > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    warn!("ha: track script `{}` timed out", self.script.command);
                    Some(false)
                }
                Ok(None) => None,
                Err(_) => Some(false),
            },
            None => {
                if now >= self.next_at {
                    self.next_at = now + Duration::from_millis(self.script.interval);
                    match Process::new("/bin/sh")
                        .arg("-c")
                        .arg(&self.script.command)
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                    {
                        Ok(child) => self.running = Some((child, now)),
                        Err(e) => {
                            warn!("ha: running track script `{}`: {e}", self.script.command);
                            return self.count(false);
                        }
                    }
                }
                None
            }
        };
        let ok = outcome?;
        self.running = None;
        self.count(ok)
    }

    fn count(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.failing && self.successes >= self.script.rise.max(1) {
                self.failing = false;
                info!("ha: track script `{}` succeeds again", self.script.command);
                return Some(false);
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if !self.failing && self.failures >= self.script.fall.max(1) {
                self.failing = true;
                error!(
                    "ha: track script `{}` failed {} times in a row",
                    self.script.command, self.failures
                );
                return Some(true);
            }
        }
        None
    }

    fn kill(&mut self) {
        if let Some((mut child, _)) = self.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_whose_polls_stand_still_is_a_stall_until_it_moves() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut watch = StallWatch::default();
        assert_eq!(watch.observe(&[10, 20], at(0)), None);
        assert_eq!(watch.observe(&[11, 20], at(1_000)), None);
        // Worker 1 has not moved for 2 s: stalled, said once.
        assert_eq!(watch.observe(&[12, 20], at(2_000)), Some(true));
        assert_eq!(watch.observe(&[13, 20], at(2_500)), None);
        // It moves again.
        assert_eq!(watch.observe(&[14, 21], at(2_600)), Some(false));
        assert_eq!(watch.observe(&[15, 22], at(9_000)), None);
    }
}
