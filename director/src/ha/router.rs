//! One virtual router at work: the election ([`Machine`]) fed with the
//! adverts this director hears, and its actions carried out on a [`Wire`]:
//! adverts signed and sent, the addresses added and announced or removed,
//! the notify hooks run. The daemon part (`daemon::ha`) owns the thread,
//! the sockets and the clock; the tests drive a [`Router`] over a wire that
//! records.
//!
//! # What moves
//! The addresses move as one group (keepalived's sync group): the VIPs of
//! every service on the client-side interface (/32 and /128) and the
//! gateways (VS/NAT: the real servers' default route) on the server-side
//! interface, with their prefix. The adverts list the VIPs of the adverts'
//! family; the others move with them (keepalived's
//! `virtual_ipaddress_excluded`). A VIP added while master (a service added
//! by `xvsadm -A` or a reload) is added and announced at once; one removed
//! is released.
//!
//! # What is refused
//! Every advert is checked before the election sees it, and a refused one
//! changes nothing but its counter ([`Rejection`]): not a well-formed VRRP
//! version 3 advert (length, version, type, address count), TTL / hop
//! limit not 255, a bad checksum, another family, a sender that is not a
//! configured unicast peer, an advert interval of 0, and with `auth =
//! "hmac"` no trailer, an unknown key id, a bad tag, a stale timestamp or a
//! replayed sequence. Adverts for another VRID are counted apart (other
//! routers share the segment; they are not an attack). Replay marks are
//! kept per sender in a table of at most [`MAX_SENDERS`]: the least
//! recently accepted is forgotten first, so spoofed sources cannot grow it
//! (a forged advert never reaches it: the tag is checked first).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use xvs_packet::vrrp::{
    self, Addresses, Advert, AntiReplay, AuthError, AuthKey, Family, ReplayGuard, SequenceSource,
    Signing, VrrpError, WallClock,
};

use super::machine::{Action, Event, Fault, Machine, Reason, State};
use crate::types::IpNet;

/// Replay marks kept at most (one per sender heard).
pub const MAX_SENDERS: usize = 16;

/// The largest advert this router sends: 255 IPv6 addresses and a trailer.
const ADVERT_BUF: usize = vrrp::HEADER_LEN + 255 * 16 + vrrp::TRAILER_LEN;

/// What the router does to the world.
pub trait Wire {
    /// Sends a VRRP message (no IP header) from `src` to `dst`.
    ///
    /// # Errors
    /// The socket's.
    fn send_advert(&mut self, src: IpAddr, dst: IpAddr, message: &[u8]) -> io::Result<()>;
    /// Adds `net` to interface `ifindex`: `Ok(false)` if it was there.
    ///
    /// # Errors
    /// The kernel's.
    fn add_address(&mut self, ifindex: u32, net: IpNet) -> io::Result<bool>;
    /// Removes `net` from `ifindex`: `Ok(false)` if it was not there.
    ///
    /// # Errors
    /// The kernel's.
    fn remove_address(&mut self, ifindex: u32, net: IpNet) -> io::Result<bool>;
    /// Sends one gratuitous ARP (IPv4) or unsolicited NA (IPv6) for `addr`
    /// from `mac` on `ifindex`.
    ///
    /// # Errors
    /// The socket's.
    fn announce(&mut self, ifindex: u32, mac: [u8; 6], addr: IpAddr) -> io::Result<()>;
    /// Runs a notify hook (without waiting for it).
    fn notify(&mut self, command: &str, env: &[(&str, String)]);
}

/// One of the director's links as the router uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub ifindex: u32,
    /// Its MAC address (the announcements' sender).
    pub mac: [u8; 6],
}

/// What a router is built from.
#[derive(Debug, Clone)]
pub struct Setup {
    /// This director's name (logs, hooks).
    pub node: String,
    /// The virtual router id.
    pub vrid: u8,
    /// The adverts' family.
    pub family: Family,
    /// The adverts' source: this director's primary address.
    pub source: IpAddr,
    /// Unicast peers; empty: multicast to the family's group.
    pub peers: Vec<IpAddr>,
    /// The key, with `auth = "hmac"`.
    pub key: Option<AuthKey>,
    /// The client-side link: the VIPs and the adverts.
    pub client: Link,
    /// The server-side link: the gateways.
    pub server: Link,
    /// The gateways moved with the VIPs.
    pub gateways: Vec<IpNet>,
    /// `notify_master`, `notify_backup`, `notify_fault`.
    pub notify_master: Option<String>,
    /// See `notify_master`.
    pub notify_backup: Option<String>,
    /// See `notify_master`.
    pub notify_fault: Option<String>,
    /// The freshness window of signed adverts.
    pub anti_replay: AntiReplay,
}

/// Why an advert was refused: the metrics' `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not a well-formed VRRP version 3 advertisement.
    Malformed,
    /// TTL / hop limit not 255 (it crossed a router).
    Ttl,
    /// The checksum does not match.
    Checksum,
    /// Not from a configured unicast peer.
    NotPeer,
    /// An advert interval of 0.
    Interval,
    /// No `auth_hmac` trailer where one is required.
    Unsigned,
    /// A key id this director does not hold, or an unknown scheme.
    KeyId,
    /// The tag does not match: forged or corrupted.
    Forged,
    /// The timestamp is outside the freshness window.
    Stale,
    /// The sequence is not above the sender's last.
    Replayed,
}

impl Rejection {
    /// Every reason, in the metrics' order.
    pub const ALL: [Self; 10] = [
        Self::Malformed,
        Self::Ttl,
        Self::Checksum,
        Self::NotPeer,
        Self::Interval,
        Self::Unsigned,
        Self::KeyId,
        Self::Forged,
        Self::Stale,
        Self::Replayed,
    ];

    /// The label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Ttl => "ttl",
            Self::Checksum => "checksum",
            Self::NotPeer => "not_peer",
            Self::Interval => "interval",
            Self::Unsigned => "unsigned",
            Self::KeyId => "key_id",
            Self::Forged => "forged",
            Self::Stale => "stale",
            Self::Replayed => "replayed",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// The router's counters, shared with the metrics and the stats file.
#[derive(Debug, Default)]
pub struct Counters {
    /// Adverts sent.
    pub sent: AtomicU64,
    /// Adverts that failed to send.
    pub send_errors: AtomicU64,
    /// Adverts accepted (of this VRID).
    pub received: AtomicU64,
    /// Adverts of other VRIDs.
    pub other_vrid: AtomicU64,
    /// Adverts whose address list differs from ours (accepted, logged).
    pub address_mismatch: AtomicU64,
    /// Refused, by [`Rejection`].
    pub rejected: [AtomicU64; Rejection::ALL.len()],
    /// Changes of state.
    pub transitions: AtomicU64,
    /// Late adverts (`warn_time`).
    pub late: AtomicU64,
    /// Gratuitous ARPs / NAs sent.
    pub announcements: AtomicU64,
    /// Address changes or announcements that failed.
    pub address_errors: AtomicU64,
}

impl Counters {
    /// Adverts refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }
}

/// What an operator sees of the router.
#[derive(Debug, Clone)]
pub struct View {
    /// The current state.
    pub state: State,
    /// Since when.
    pub since: Instant,
    /// Why it entered it.
    pub reason: String,
    /// The master heard last (its address and priority), when backup.
    pub master: Option<(IpAddr, u8)>,
    /// When the last accepted advert arrived.
    pub last_advert: Option<Instant>,
    /// The addresses held now.
    pub held: Vec<IpNet>,
}

/// Shared between the router's thread and the rest of the director.
#[derive(Debug)]
pub struct Shared {
    /// The counters.
    pub counters: Counters,
    /// The operator's view.
    pub view: Mutex<View>,
}

impl Shared {
    /// A router in Init since `now`.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            counters: Counters::default(),
            view: Mutex::new(View {
                state: State::Init,
                since: now,
                reason: "not started".to_owned(),
                master: None,
                last_advert: None,
                held: Vec::new(),
            }),
        }
    }
}

impl Shared {
    /// The view and the counters as JSON (the stats file, the part's
    /// status, `xvsadm -L --daemon`).
    #[must_use]
    pub fn json(&self, now: Instant) -> serde_json::Value {
        let view = self.view.lock().clone();
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let rejected: serde_json::Map<String, serde_json::Value> = Rejection::ALL
            .iter()
            .map(|r| (r.as_str().to_owned(), c.rejected(*r).into()))
            .collect();
        serde_json::json!({
            "state": view.state.as_str().to_lowercase(),
            "since_ms": age(view.since, now).as_millis() as u64,
            "reason": view.reason,
            "master": view.master.map(|(a, p)| serde_json::json!({ "address": a.to_string(), "priority": p })),
            "last_advert_ms": view.last_advert.map(|t| age(t, now).as_millis() as u64),
            "held": view.held.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "adverts": {
                "sent": load(&c.sent),
                "send_errors": load(&c.send_errors),
                "received": load(&c.received),
                "other_vrid": load(&c.other_vrid),
                "address_mismatch": load(&c.address_mismatch),
                "rejected": rejected,
                "late": load(&c.late),
            },
            "transitions": load(&c.transitions),
            "announcements": load(&c.announcements),
            "address_errors": load(&c.address_errors),
        })
    }
}

/// The virtual router of this director.
pub struct Router<W: Wire> {
    setup: Setup,
    machine: Machine,
    wire: W,
    shared: Arc<Shared>,
    /// Every service's VIP (the client-side group).
    vips: Vec<IpAddr>,
    /// What this router added and has not removed: (ifindex, address).
    held: Vec<(u32, IpNet)>,
    sequence: SequenceSource,
    /// Replay marks per sender, with when each last accepted.
    guards: HashMap<IpAddr, (ReplayGuard, Instant)>,
    /// The sender whose address list differs, logged once.
    mismatch_logged: Option<IpAddr>,
}

impl<W: Wire> std::fmt::Debug for Router<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("node", &self.setup.node)
            .field("vrid", &self.setup.vrid)
            .field("state", &self.machine.state())
            .finish_non_exhaustive()
    }
}

impl<W: Wire> Router<W> {
    /// A router in Init; [`Router::start`] starts the election.
    pub fn new(setup: Setup, machine: Machine, wire: W, shared: Arc<Shared>) -> Self {
        Self {
            setup,
            machine,
            wire,
            shared,
            vips: Vec::new(),
            held: Vec::new(),
            sequence: SequenceSource::new(),
            guards: HashMap::new(),
            mismatch_logged: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// When [`Router::timer`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.machine.next_deadline()
    }

    /// The wire (the tests read what it recorded).
    pub fn wire(&self) -> &W {
        &self.wire
    }

    /// The wire, to look after it (the daemon reaps its hooks).
    pub fn wire_mut(&mut self) -> &mut W {
        &mut self.wire
    }

    /// The services' VIPs changed: a master adds and announces the new
    /// ones and releases the ones gone.
    pub fn set_vips(&mut self, mut vips: Vec<IpAddr>, wall: WallClock) {
        vips.sort_unstable();
        vips.dedup();
        if vips == self.vips {
            return;
        }
        self.vips = vips;
        if self.machine.state() == State::Master {
            let want = self.group();
            let gone: Vec<(u32, IpNet)> = self
                .held
                .iter()
                .filter(|h| !want.contains(h))
                .copied()
                .collect();
            for (ifindex, net) in gone {
                self.remove(ifindex, net);
            }
            let new: Vec<(u32, IpNet)> = want
                .into_iter()
                .filter(|w| !self.held.contains(w))
                .collect();
            for (ifindex, net) in new {
                if self.add(ifindex, net) {
                    self.announce_one(
                        ifindex,
                        net.addr,
                        self.machine.settings().garp.master_repeat,
                    );
                }
            }
            // The advert lists the new set at once.
            self.send_advert(self.machine.settings().priority, wall);
            self.publish_held();
        }
    }

    /// Removes the group's addresses wherever they are found on their
    /// interfaces though this router holds none (a run that was killed
    /// left them), before the election starts.
    pub fn remove_leftovers(&mut self) {
        for (ifindex, net) in self.group() {
            if self.held.contains(&(ifindex, net)) {
                continue;
            }
            match self.wire.remove_address(ifindex, net) {
                Ok(true) => {
                    log::info!("ha: removed {net}, left on interface {ifindex} by an earlier run");
                }
                Ok(false) => {}
                Err(e) => {
                    log::warn!("ha: removing a leftover {net} from interface {ifindex}: {e}");
                }
            }
        }
    }

    /// Starts the election.
    pub fn start(&mut self, now: Instant, wall: WallClock) {
        self.handle(Event::Startup, now, wall);
    }

    /// Stops it: a master sends priority 0 and releases the addresses.
    pub fn shutdown(&mut self, now: Instant, wall: WallClock) {
        self.handle(Event::Shutdown, now, wall);
        // Whatever the state, nothing stays behind.
        self.release();
    }

    /// The deadline came.
    pub fn timer(&mut self, now: Instant, wall: WallClock) {
        if self.machine.next_deadline().is_some_and(|d| d <= now) {
            self.handle(Event::Timer, now, wall);
        }
    }

    /// Whether the connection sync still lacks the peer's table (a
    /// preemption waits for it: `Settings::sync_wait`).
    pub fn set_sync_pending(&mut self, pending: bool) {
        self.machine.set_sync_pending(pending);
    }

    /// A fault began or ended.
    pub fn fault(&mut self, fault: Fault, raised: bool, now: Instant, wall: WallClock) {
        let event = if raised {
            Event::FaultRaised(fault)
        } else {
            Event::FaultCleared(fault)
        };
        self.handle(event, now, wall);
    }

    /// One datagram from the socket (a whole IP datagram).
    pub fn receive(&mut self, datagram: &[u8], now: Instant, wall: WallClock) {
        match self.check(datagram, now, wall) {
            Ok(Some(event)) => {
                self.shared
                    .counters
                    .received
                    .fetch_add(1, Ordering::Relaxed);
                if let Event::Advert {
                    priority, sender, ..
                } = event
                {
                    let mut view = self.shared.view.lock();
                    view.last_advert = Some(now);
                    if priority != 0 {
                        view.master = Some((sender, priority));
                    }
                }
                self.handle(event, now, wall);
            }
            Ok(None) => {}
            Err(reason) => {
                self.shared.counters.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The receive checks; `Ok(None)`: not for us (another VRID, our own).
    fn check(
        &mut self,
        datagram: &[u8],
        now: Instant,
        wall: WallClock,
    ) -> Result<Option<Event>, Rejection> {
        let received = vrrp::receive(datagram).map_err(|e| match e {
            VrrpError::BadTtl(_) => Rejection::Ttl,
            VrrpError::BadChecksum => Rejection::Checksum,
            _ => Rejection::Malformed,
        })?;
        let packet = &received.packet;
        if Family::of(received.src) != self.setup.family {
            return Err(Rejection::Malformed);
        }
        if packet.vrid() != self.setup.vrid {
            self.shared
                .counters
                .other_vrid
                .fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if received.src == self.setup.source {
            return Ok(None);
        }
        if !self.setup.peers.is_empty() && !self.setup.peers.contains(&received.src) {
            return Err(Rejection::NotPeer);
        }
        if packet.max_advert_interval() == 0 {
            return Err(Rejection::Interval);
        }
        if let Some(key) = &self.setup.key {
            authenticate(
                &mut self.guards,
                self.setup.anti_replay,
                packet,
                received.src,
                key,
                now,
                wall,
            )?;
        }
        let listed: Vec<IpAddr> = packet.addresses().collect();
        let ours: Vec<IpAddr> = self.advertised();
        let mut sorted = listed;
        sorted.sort_unstable();
        if sorted != ours {
            self.shared
                .counters
                .address_mismatch
                .fetch_add(1, Ordering::Relaxed);
            if self.mismatch_logged != Some(received.src) {
                self.mismatch_logged = Some(received.src);
                log::warn!(
                    "ha: {} advertises VRID {} with addresses {:?}, this director {:?}: the two configurations differ (logged once per sender)",
                    received.src,
                    self.setup.vrid,
                    sorted,
                    ours
                );
            }
        }
        Ok(Some(Event::Advert {
            priority: packet.priority(),
            max_advert_interval_cs: packet.max_advert_interval(),
            sender: received.src,
        }))
    }

    /// The VIPs the adverts list (the adverts' family), sorted.
    fn advertised(&self) -> Vec<IpAddr> {
        self.vips
            .iter()
            .copied()
            .filter(|a| Family::of(*a) == self.setup.family)
            .collect()
    }

    /// Every address of the group: (interface, address).
    fn group(&self) -> Vec<(u32, IpNet)> {
        let mut group: Vec<(u32, IpNet)> = self
            .vips
            .iter()
            .map(|&addr| {
                let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
                (self.setup.client.ifindex, IpNet { addr, prefix_len })
            })
            .collect();
        group.extend(
            self.setup
                .gateways
                .iter()
                .map(|&net| (self.setup.server.ifindex, net)),
        );
        group
    }

    fn handle(&mut self, event: Event, now: Instant, wall: WallClock) {
        for action in self.machine.handle(event, now) {
            self.act(action, now, wall);
        }
    }

    fn act(&mut self, action: Action, now: Instant, wall: WallClock) {
        match action {
            Action::SendAdvert { priority } => self.send_advert(priority, wall),
            Action::TakeAddresses => {
                for (ifindex, net) in self.group() {
                    if !self.held.contains(&(ifindex, net)) {
                        self.add(ifindex, net);
                    }
                }
                self.publish_held();
            }
            Action::Announce { repeat } => {
                let held = self.held.clone();
                for (ifindex, net) in held {
                    self.announce_one(ifindex, net.addr, repeat);
                }
            }
            Action::ReleaseAddresses => self.release(),
            Action::Notify(state) => self.notify(state),
            Action::Transition { from, to, reason } => {
                self.shared
                    .counters
                    .transitions
                    .fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "ha: {from} -> {to}: {reason} (node {}, vrid {}, priority {})",
                    self.setup.node,
                    self.setup.vrid,
                    self.machine.settings().priority
                );
                let mut view = self.shared.view.lock();
                view.state = to;
                view.since = now;
                view.reason = reason.to_string();
                if to != State::Backup {
                    view.master = None;
                }
                if let Reason::HigherPriority { priority, sender } = reason {
                    view.master = Some((sender, priority));
                }
            }
            Action::WaitForSync { up_to } => {
                log::info!(
                    "ha: would preempt the lower-priority master, but the connection sync does not hold its table yet: waiting for it (at most {} s)",
                    up_to.as_secs()
                );
            }
            Action::SyncWaitOver { waited, complete } => {
                if complete {
                    log::info!(
                        "ha: the connection sync holds the peer's table after {} ms: preempting",
                        waited.as_millis()
                    );
                } else {
                    log::warn!(
                        "ha: the peer's table did not arrive within {} ms: preempting without it (connections it did not send are lost)",
                        waited.as_millis()
                    );
                }
            }
            Action::LateAdvert { silent_for } => {
                self.shared.counters.late.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "ha: no advert from the master for {} ms (warn_time); it is declared down after {} ms",
                    silent_for.as_millis(),
                    self.machine.master_down_interval().as_millis()
                );
            }
        }
    }

    fn send_advert(&mut self, priority: u8, wall: WallClock) {
        // The advertised VIPs are all of the adverts' family; an advert
        // lists 255 at most.
        let advertised = self.advertised();
        let v4: Vec<Ipv4Addr> = advertised
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .take(255)
            .collect();
        let v6: Vec<Ipv6Addr> = advertised
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .take(255)
            .collect();
        let addresses = match self.setup.family {
            Family::V4 => Addresses::V4(&v4),
            Family::V6 => Addresses::V6(&v6),
        };
        let advert = Advert {
            vrid: self.setup.vrid,
            priority,
            max_advert_interval: self.machine.settings().advert_interval_cs,
            addresses,
        };
        let signing = match &self.setup.key {
            Some(key) => Signing::Hmac {
                key,
                sequence: self.sequence.next(wall, self.setup.anti_replay),
            },
            None => Signing::None,
        };
        let destinations = if self.setup.peers.is_empty() {
            vec![match self.setup.family {
                Family::V4 => IpAddr::V4(vrrp::MULTICAST_V4),
                Family::V6 => IpAddr::V6(vrrp::MULTICAST_V6),
            }]
        } else {
            self.setup.peers.clone()
        };
        let mut buf = [0u8; ADVERT_BUF];
        for dst in destinations {
            let len = match advert.emit(self.setup.source, dst, &signing, &mut buf) {
                Ok(len) => len,
                Err(e) => {
                    log::error!("ha: building an advert to {dst}: {e}");
                    continue;
                }
            };
            match self.wire.send_advert(self.setup.source, dst, &buf[..len]) {
                Ok(()) => {
                    self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let errors = self
                        .shared
                        .counters
                        .send_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if errors.is_power_of_two() || errors == 0 {
                        log::warn!(
                            "ha: sending an advert to {dst}: {e} ({} so far)",
                            errors + 1
                        );
                    }
                }
            }
        }
    }

    /// Adds one address; true if it is held now.
    fn add(&mut self, ifindex: u32, net: IpNet) -> bool {
        match self.wire.add_address(ifindex, net) {
            Ok(added) => {
                if added {
                    log::info!("ha: took {net} (interface {ifindex})");
                } else {
                    log::info!("ha: {net} was already on interface {ifindex}: kept");
                }
                self.held.push((ifindex, net));
                true
            }
            Err(e) => {
                self.shared
                    .counters
                    .address_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("ha: adding {net} to interface {ifindex}: {e}");
                false
            }
        }
    }

    fn remove(&mut self, ifindex: u32, net: IpNet) {
        match self.wire.remove_address(ifindex, net) {
            Ok(_) => log::info!("ha: released {net} (interface {ifindex})"),
            Err(e) => {
                self.shared
                    .counters
                    .address_errors
                    .fetch_add(1, Ordering::Relaxed);
                log::error!("ha: removing {net} from interface {ifindex}: {e}");
            }
        }
        self.held.retain(|h| *h != (ifindex, net));
    }

    fn release(&mut self) {
        let held = self.held.clone();
        for &(ifindex, net) in held.iter().rev() {
            self.remove(ifindex, net);
        }
        self.publish_held();
    }

    fn announce_one(&mut self, ifindex: u32, addr: IpAddr, repeat: u32) {
        let mac = if ifindex == self.setup.client.ifindex {
            self.setup.client.mac
        } else {
            self.setup.server.mac
        };
        for _ in 0..repeat {
            match self.wire.announce(ifindex, mac, addr) {
                Ok(()) => {
                    self.shared
                        .counters
                        .announcements
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.shared
                        .counters
                        .address_errors
                        .fetch_add(1, Ordering::Relaxed);
                    log::warn!("ha: announcing {addr} on interface {ifindex}: {e}");
                    break;
                }
            }
        }
    }

    fn publish_held(&self) {
        self.shared.view.lock().held = self.held.iter().map(|h| h.1).collect();
    }

    fn notify(&mut self, state: State) {
        let command = match state {
            State::Master => self.setup.notify_master.clone(),
            State::Backup => self.setup.notify_backup.clone(),
            State::Fault => self.setup.notify_fault.clone(),
            State::Init => None,
        };
        if let Some(command) = command {
            let reason = self.shared.view.lock().reason.clone();
            self.wire.notify(
                &command,
                &[
                    ("XVS_HA_STATE", state.as_str().to_owned()),
                    ("XVS_HA_NODE", self.setup.node.clone()),
                    ("XVS_HA_VRID", self.setup.vrid.to_string()),
                    ("XVS_HA_REASON", reason),
                ],
            );
        }
    }
}

/// The `auth_hmac` checks of one advert from `src`, with its sender's
/// replay mark in `guards` (at most [`MAX_SENDERS`]: the least recently
/// accepted is forgotten first); the mark is kept only once the advert
/// verified.
fn authenticate(
    guards: &mut HashMap<IpAddr, (ReplayGuard, Instant)>,
    anti_replay: AntiReplay,
    packet: &vrrp::Packet<&[u8]>,
    src: IpAddr,
    key: &AuthKey,
    now: Instant,
    wall: WallClock,
) -> Result<(), Rejection> {
    let mut guard = guards
        .get(&src)
        .map_or(ReplayGuard::new(anti_replay), |g| g.0);
    guard
        .verify(packet, src, key, wall.secs)
        .map_err(|e| match e {
            AuthError::Missing => Rejection::Unsigned,
            AuthError::Malformed | AuthError::UnknownKey(_) => Rejection::KeyId,
            AuthError::BadHmac => Rejection::Forged,
            AuthError::Stale => Rejection::Stale,
            AuthError::Replayed => Rejection::Replayed,
        })?;
    if !guards.contains_key(&src)
        && guards.len() >= MAX_SENDERS
        && let Some(oldest) = guards
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(a, _)| *a)
    {
        guards.remove(&oldest);
    }
    guards.insert(src, (guard, now));
    Ok(())
}

/// How long since `at`, for the status (zero for a time in the future).
#[must_use]
pub fn age(at: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(at)
}

#[cfg(test)]
mod tests;
