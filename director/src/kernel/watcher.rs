//! The neighbour watcher: one thread that keeps the workers' neighbour
//! table equal to the kernel's for the director's interfaces, and asks the
//! kernel to resolve the next hops the workers miss.
//!
//! One socket carries everything: the initial dump (RTM_GETNEIGH), the
//! RTNLGRP_NEIGH notifications, and the resolution requests (RTM_NEWNEIGH
//! with NTF_USE; the kernel answers only errors, which are counted). The
//! group is joined before the dump is asked for, so no change falls
//! between the two. A notification overflow (ENOBUFS) triggers a new dump;
//! at its end, entries the watcher had learned that the kernel no longer
//! has are removed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NetlinkPayload};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rustc_hash::{FxHashMap, FxHashSet};
use xvs_packet::ethernet::MacAddr;

use super::KernelError;
use super::socket::{Netlink, timed_out};
use crate::pipeline::{IfaceId, NeighbourChange, Neighbours};

/// The rtnetlink multicast group of neighbour changes.
const RTNLGRP_NEIGH: u32 = 3;

/// How long one receive waits: the bound on how late `stop()` and a
/// worker's resolution request are seen.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Socket receive buffer for notification bursts.
const RX_BUFFER: usize = 1 << 20;

/// The kernel is asked to resolve one address at most this often.
const REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Neighbour states with a usable link-layer address: REACHABLE, STALE,
/// DELAY, PROBE, NOARP, PERMANENT.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// What the watcher has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatcherCounters {
    /// Table changes applied (learned, changed or forgotten entries).
    pub updates_applied: u64,
    /// Resolution requests sent to the kernel.
    pub resolutions_requested: u64,
    /// Full dumps of the kernel's table (1 at start, more after overflows).
    pub dumps: u64,
    /// Messages that did not parse, and errors the kernel returned.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct SharedCounters {
    updates_applied: AtomicU64,
    resolutions_requested: AtomicU64,
    dumps: AtomicU64,
    errors: AtomicU64,
}

/// A running neighbour watcher; stops on [`NeighbourWatcher::stop`] or drop.
#[derive(Debug)]
pub struct NeighbourWatcher {
    stop: Arc<AtomicBool>,
    counters: Arc<SharedCounters>,
    thread: Option<JoinHandle<()>>,
}

impl NeighbourWatcher {
    /// Opens the netlink socket (in the calling thread's network
    /// namespace), joins the neighbour group, asks for the kernel's table,
    /// and starts the thread that applies it to `neighbours`.
    ///
    /// `interfaces` maps the director's interfaces to kernel indexes (see
    /// [`super::KernelInterface`]); `prefetch` lists next hops to resolve
    /// at once (real servers, gateways: [`crate::pipeline::Snapshot::next_hops`]).
    ///
    /// # Errors
    /// No netlink socket, or the thread could not be started.
    pub fn spawn(
        neighbours: Arc<Neighbours>,
        interfaces: Vec<(IfaceId, u32)>,
        prefetch: Vec<(IfaceId, IpAddr)>,
    ) -> Result<Self, KernelError> {
        let socket_err = |source| KernelError::Socket { source };
        let nl = Netlink::open(RECV_TIMEOUT).map_err(socket_err)?;
        nl.subscribe(RTNLGRP_NEIGH, RX_BUFFER)
            .map_err(|source| KernelError::Netlink {
                what: "neighbour notifications",
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::default());
        let mut state = Watch {
            nl,
            neighbours,
            ifindex_of: interfaces.iter().map(|&(id, ix)| (id, ix)).collect(),
            iface_of: interfaces.iter().map(|&(id, ix)| (ix, id)).collect(),
            counters: Arc::clone(&counters),
            learned: FxHashSet::default(),
            dump: None,
            asked: HashMap::new(),
        };
        state.start_dump();
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xvs-neighbours".into())
            .spawn(move || {
                for (iface, ip) in prefetch {
                    state.resolve(iface, ip, Instant::now());
                }
                while !thread_stop.load(Ordering::Relaxed) {
                    state.turn();
                }
            })
            .map_err(|source| KernelError::Thread { source })?;
        Ok(Self {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// What the watcher has done so far.
    #[must_use]
    pub fn counters(&self) -> WatcherCounters {
        let c = &self.counters;
        WatcherCounters {
            updates_applied: c.updates_applied.load(Ordering::Relaxed),
            resolutions_requested: c.resolutions_requested.load(Ordering::Relaxed),
            dumps: c.dumps.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Stops the thread and waits for it (at most about one receive
    /// timeout, 100 ms).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic in the thread is a bug already reported on stderr.
            let _ = thread.join();
        }
    }
}

impl Drop for NeighbourWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The watcher thread's state.
struct Watch {
    nl: Netlink,
    neighbours: Arc<Neighbours>,
    ifindex_of: FxHashMap<IfaceId, u32>,
    iface_of: FxHashMap<u32, IfaceId>,
    counters: Arc<SharedCounters>,
    /// Entries this watcher put in the table (static seeds are not in it).
    learned: FxHashSet<(IfaceId, IpAddr)>,
    /// The running dump: its sequence number and what it (or a later
    /// notification) has confirmed so far.
    dump: Option<(u32, FxHashSet<(IfaceId, IpAddr)>)>,
    /// When each address was last asked for.
    asked: HashMap<(IfaceId, IpAddr), Instant>,
}

impl Watch {
    fn start_dump(&mut self) {
        match self.nl.send(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            NLM_F_DUMP,
        ) {
            Ok(seq) => {
                self.dump = Some((seq, FxHashSet::default()));
                self.counters.dumps.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("neighbour watcher: cannot ask the kernel for its neighbour table: {e}");
            }
        }
    }

    /// One round: pending requests, then one receive (or its timeout).
    fn turn(&mut self) {
        let now = Instant::now();
        while let Some((iface, ip)) = self.neighbours.next_request() {
            self.resolve(iface, ip, now);
        }
        if self.asked.len() > 4096 {
            self.asked
                .retain(|_, at| now.duration_since(*at) < REQUEST_INTERVAL);
        }
        match self.nl.recv() {
            Ok(received) => {
                if received.undecodable > 0 {
                    self.counters
                        .errors
                        .fetch_add(received.undecodable as u64, Ordering::Relaxed);
                }
                self.apply(received.messages);
            }
            Err(e) if timed_out(&e) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                // Notifications were lost: the table may be wrong; read it
                // all again.
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.start_dump();
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!("neighbour watcher: receive failed: {e}");
                std::thread::sleep(RECV_TIMEOUT);
            }
        }
    }

    fn apply(&mut self, messages: Vec<netlink_packet_core::NetlinkMessage<RouteNetlinkMessage>>) {
        let mut changes = Vec::new();
        let mut dump_done = false;
        for message in messages {
            let seq = message.header.sequence_number;
            match message.payload {
                NetlinkPayload::InnerMessage(inner) => {
                    if let Some(change) = neighbour_change(&inner, &self.iface_of) {
                        changes.push(change);
                    }
                }
                NetlinkPayload::Done(_) => {
                    dump_done |= self.dump.as_ref().is_some_and(|(s, _)| *s == seq);
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if self.dump.as_ref().is_some_and(|(s, _)| *s == seq) {
                        // The dump failed (interrupted): ask again.
                        self.dump = None;
                        self.start_dump();
                    }
                }
                _ => {}
            }
        }
        for change in &changes {
            match *change {
                NeighbourChange::Learned { iface, ip, .. } => {
                    self.learned.insert((iface, ip));
                    if let Some((_, seen)) = &mut self.dump {
                        seen.insert((iface, ip));
                    }
                }
                NeighbourChange::Forgotten { iface, ip } => {
                    self.learned.remove(&(iface, ip));
                    if let Some((_, seen)) = &mut self.dump {
                        seen.insert((iface, ip));
                    }
                }
            }
        }
        if dump_done && let Some((_, seen)) = self.dump.take() {
            // What the watcher had learned and the kernel no longer has.
            let gone: Vec<(IfaceId, IpAddr)> = self
                .learned
                .iter()
                .filter(|k| !seen.contains(k))
                .copied()
                .collect();
            for (iface, ip) in gone {
                self.learned.remove(&(iface, ip));
                changes.push(NeighbourChange::Forgotten { iface, ip });
            }
        }
        if !changes.is_empty() {
            let applied = self.neighbours.apply(changes);
            self.counters
                .updates_applied
                .fetch_add(applied as u64, Ordering::Relaxed);
        }
    }

    /// Asks the kernel to resolve `ip` on `iface`, unless it was asked
    /// less than a second ago.
    fn resolve(&mut self, iface: IfaceId, ip: IpAddr, now: Instant) {
        let Some(&ifindex) = self.ifindex_of.get(&iface) else {
            return;
        };
        if let Some(at) = self.asked.get(&(iface, ip))
            && now.duration_since(*at) < REQUEST_INTERVAL
        {
            return;
        }
        self.asked.insert((iface, ip), now);
        match self.nl.send(
            RouteNetlinkMessage::NewNeighbour(resolve_request(ifindex, ip)),
            NLM_F_CREATE,
        ) {
            Ok(_) => {
                self.counters
                    .resolutions_requested
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// RTM_NEWNEIGH with NTF_USE: "use" the entry as a packet would, which
/// makes the kernel create it if needed and send ARP / NS for it.
pub(crate) fn resolve_request(ifindex: u32, ip: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = crate::kernel::family_of(ip);
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::None;
    m.header.flags = NeighbourFlags::Use;
    m.attributes = vec![NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    })];
    m
}

/// The table change a neighbour message means for the watched interfaces
/// (`iface_of`: kernel index → director interface), if any.
pub(crate) fn neighbour_change(
    message: &RouteNetlinkMessage,
    iface_of: &FxHashMap<u32, IfaceId>,
) -> Option<NeighbourChange> {
    let (m, deleted) = match message {
        RouteNetlinkMessage::NewNeighbour(m) => (m, false),
        RouteNetlinkMessage::DelNeighbour(m) => (m, true),
        _ => return None,
    };
    // Bridge FDB entries come as neighbours of family AF_BRIDGE; proxy
    // entries answer for others and carry no MAC of theirs.
    if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6)
        || m.header.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let iface = *iface_of.get(&m.header.ifindex)?;
    let mut ip = None;
    let mut mac = None;
    for attr in &m.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            _ => {}
        }
    }
    let ip = ip?;
    let usable = u16::from(m.header.state) & NUD_USABLE != 0;
    match (deleted, usable, mac) {
        (false, true, Some(mac)) => Some(NeighbourChange::Learned { iface, ip, mac }),
        // Usable but without an Ethernet address: nothing we can send to.
        (false, true, None) => None,
        _ => Some(NeighbourChange::Forgotten { iface, ip }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::socket::{parse_messages, serialize_all};

    const ETH0: IfaceId = IfaceId(0);

    fn ifaces() -> FxHashMap<u32, IfaceId> {
        [(7, ETH0), (8, IfaceId(1))].into_iter().collect()
    }

    fn neighbour(
        family: AddressFamily,
        ifindex: u32,
        ip: &str,
        state: NeighbourState,
        mac: Option<[u8; 6]>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = ifindex;
        m.header.state = state;
        m.attributes = vec![NeighbourAttribute::Destination(
            match ip.parse::<IpAddr>().unwrap() {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            },
        )];
        if let Some(mac) = mac {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    /// The messages after a trip through bytes, as the kernel sends them.
    fn changes(messages: Vec<RouteNetlinkMessage>) -> Vec<Option<NeighbourChange>> {
        let bytes = serialize_all(&messages.into_iter().map(|m| (0, m)).collect::<Vec<_>>());
        let received = parse_messages(&bytes);
        assert_eq!(received.undecodable, 0);
        received
            .messages
            .into_iter()
            .map(|m| match m.payload {
                NetlinkPayload::InnerMessage(inner) => neighbour_change(&inner, &ifaces()),
                other => panic!("not an inner message: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn usable_states_with_a_mac_teach_failed_and_deleted_ones_forget() {
        let mac = [2, 0, 0, 0, 0, 0x11];
        let ip: IpAddr = "192.0.2.11".parse().unwrap();
        let learned = Some(NeighbourChange::Learned {
            iface: ETH0,
            ip,
            mac: MacAddr(mac),
        });
        let forgotten = Some(NeighbourChange::Forgotten { iface: ETH0, ip });
        let new = |state| {
            RouteNetlinkMessage::NewNeighbour(neighbour(
                AddressFamily::Inet,
                7,
                "192.0.2.11",
                state,
                Some(mac),
            ))
        };
        use NeighbourState as S;
        let got = changes(vec![
            new(S::Reachable),
            new(S::Stale),
            new(S::Delay),
            new(S::Probe),
            new(S::Permanent),
            new(S::Noarp),
            new(S::Failed),
            new(S::Incomplete),
            RouteNetlinkMessage::DelNeighbour(neighbour(
                AddressFamily::Inet,
                7,
                "192.0.2.11",
                S::Reachable,
                Some(mac),
            )),
        ]);
        assert_eq!(
            got,
            [
                learned, learned, learned, learned, learned, learned, forgotten, forgotten,
                forgotten
            ]
        );
    }

    #[test]
    fn foreign_interfaces_bridge_entries_proxies_and_macless_entries_are_ignored() {
        let mac = Some([2, 0, 0, 0, 0, 0x11]);
        let mut proxy = neighbour(
            AddressFamily::Inet,
            7,
            "192.0.2.12",
            NeighbourState::Reachable,
            mac,
        );
        proxy.header.flags = NeighbourFlags::Proxy;
        let got = changes(vec![
            RouteNetlinkMessage::NewNeighbour(neighbour(
                AddressFamily::Inet,
                9,
                "192.0.2.11",
                NeighbourState::Reachable,
                mac,
            )),
            RouteNetlinkMessage::NewNeighbour(proxy),
            RouteNetlinkMessage::NewNeighbour(neighbour(
                AddressFamily::Inet,
                7,
                "192.0.2.13",
                NeighbourState::Noarp,
                None,
            )),
        ]);
        assert_eq!(got, [None, None, None]);
    }

    #[test]
    fn ipv6_neighbours_map_to_their_interface() {
        let got = changes(vec![RouteNetlinkMessage::NewNeighbour(neighbour(
            AddressFamily::Inet6,
            8,
            "2001:db8::11",
            NeighbourState::Stale,
            Some([2, 0, 0, 0, 0, 0x61]),
        ))]);
        assert_eq!(
            got,
            [Some(NeighbourChange::Learned {
                iface: IfaceId(1),
                ip: "2001:db8::11".parse().unwrap(),
                mac: MacAddr([2, 0, 0, 0, 0, 0x61]),
            })]
        );
    }

    #[test]
    fn a_resolution_request_is_a_use_of_the_address_on_its_interface() {
        let m = resolve_request(7, "2001:db8::11".parse().unwrap());
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.ifindex, 7);
        assert!(m.header.flags.contains(NeighbourFlags::Use));
        let bytes = serialize_all(&[(0, RouteNetlinkMessage::NewNeighbour(m.clone()))]);
        let back = parse_messages(&bytes);
        assert!(matches!(
            &back.messages[0].payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) if *n == m
        ));
    }

    #[test]
    fn garbage_and_truncated_buffers_are_counted_never_a_panic() {
        let good = serialize_all(&[(
            0,
            RouteNetlinkMessage::NewNeighbour(neighbour(
                AddressFamily::Inet,
                7,
                "192.0.2.11",
                NeighbourState::Reachable,
                Some([2, 0, 0, 0, 0, 0x11]),
            )),
        )]);
        for cut in 0..good.len() {
            let r = parse_messages(&good[..cut]);
            assert!(r.messages.len() <= 1);
        }
        let mut lying = good.clone();
        lying[0] = 0xff; // length beyond the buffer
        assert_eq!(parse_messages(&lying).messages.len(), 0);
        let r = parse_messages(&[0xff; 64]);
        assert!(r.messages.is_empty());
    }
}
