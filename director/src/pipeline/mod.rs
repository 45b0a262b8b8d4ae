//! The per-frame pipeline: (frame, receiving interface, time, state,
//! worker) → [`Verdict`]. Live workers and `xvs-replay` call the same
//! [`Director::process`], so captures exercise exactly the production code.
//!
//! # What happens to a frame
//! 1. It is parsed ([`xvs_packet::parse()`]); a malformed frame is dropped
//!    with the parse error's own [`DropReason`], a non-IP frame goes to the
//!    kernel.
//! 2. An ICMP error is steered by the packet it quotes to that packet's
//!    connection (NAT rewrites the quote too); an error for no connection
//!    of ours goes to the kernel when it is addressed to the director
//!    itself, and is dropped otherwise.
//! 3. On a server-side interface a packet that matches a NAT connection's
//!    reply index is a reply: rewritten back to the VIP and sent towards the
//!    client. Anything else from the server side (health-check replies,
//!    the real servers' own traffic) goes to the kernel.
//! 4. A packet that matches a connection follows it: the TCP state machine
//!    moves, the real server's active/inactive counts follow, and the
//!    packet is forwarded by the method stored with the connection.
//! 5. Otherwise, a packet for a virtual service that may open a connection
//!    (a TCP SYN without RST — any segment without RST for a `sloppy`
//!    service —, any UDP datagram) is scheduled; others are dropped
//!    (`no_connection`). Packets for no service go to the kernel: ICMP echo
//!    to a VIP among them, answered by the director's own stack.
//!
//! # Decisions
//! - **Later fragments** carry no ports: they are dropped and counted
//!   (`later_fragment`) when addressed to a VIP. First fragments follow
//!   their flow. Reassembly is left to the endpoints' path MTU discovery.
//! - **Too big**: when a packet (plus the tunnel header for VS/TUN) exceeds
//!   the egress MTU and may not be fragmented (IPv4 DF, or IPv6), the
//!   director answers with ICMP fragmentation-needed / packet-too-big,
//!   rate-limited per worker to [`TOO_BIG_PER_SECOND`]; without DF it drops
//!   the packet (`too_big_without_df`): the director never fragments.
//! - **TTL**: every forwarded packet has its TTL / hop limit decremented
//!   (IPVS does the same for every method); one that would reach 0 is
//!   dropped (`ttl_expired`).
//! - **Partial checksums**: a frame a local stack sent into a veth with
//!   checksum offload carries in its TCP/UDP checksum field only the
//!   pseudo-header sum, and loses the kernel's "finish me" mark on its way
//!   through us. Every forwarded frame whose field holds exactly that sum
//!   has its checksum completed before the rewrites
//!   ([`xvs_packet::offload`]), counted per receiving interface
//!   (`partial_checksum_completed`); whoever reads the counters says so
//!   once per interface.
//! - **Full table**: nothing is evicted. For VS/DR and VS/TUN, whose replies
//!   bypass the director, a new flow is forwarded without an entry to a real
//!   server chosen by a hash of the flow among the usable ones, and so are
//!   its later packets while the table stays full (counted as `stateless`).
//!   A VS/NAT flow needs its entry to rewrite the replies, so it is dropped
//!   (`conn_table_full`) and the client retries.
//! - **Next hops**: each destination's route (interface, next-hop IP) is
//!   fixed when the snapshot is built; the next hop's MAC is looked up per
//!   packet in the shared [`Neighbours`] table, so a neighbour the kernel
//!   re-learns is followed at once. A miss drops the frame
//!   (`neighbour_unresolved`) and queues a resolution request for the
//!   kernel side; the sender's retransmission then goes.
//! - **Persistence templates** live in the scheduler crate's [`Templates`],
//!   one per persistent service behind a mutex taken only when a
//!   persistent service schedules a new connection or the control thread
//!   expires templates.
//! - **State sync**: a connection the sync copied from the peer director
//!   ([`crate::conn::ConnFlags::SYNCED`]) is forwarded like any other but
//!   counts in no real server's `activeconns`/`inactconns` until this
//!   director forwards a packet on it: that packet binds it (IPVS leaves
//!   synced connections out of scheduling the same way). While sync is on
//!   ([`Director::set_feed`]), workers report connections created, TCP
//!   state changes and removals into the bounded [`ConnFeed`] (dropped and
//!   counted when full); while it is off, the event sites cost a test of
//!   one worker field, and an established flow's ACK reports nothing.
//! - **Changes at run time**: the state is an immutable [`Snapshot`] that
//!   the control plane replaces ([`Director::publish`]). A worker checks
//!   one counter per call and picks the new snapshot up at its next frame
//!   (at its next burst in [`Director::process_burst`]); destination
//!   numbers never change, so connections go on. Workers switch at
//!   different times, so a worker still on an older snapshot can meet a
//!   connection another worker opened on a newer one, to a destination
//!   its snapshot lacks: arrays by destination are [`DestArray`]s with only
//!   checked access, the worker's counters span every number the service
//!   table can hand out (`[conn_table] max_destinations`, fixed at start),
//!   and the destination itself (its route, its real server's counts) is
//!   taken from the newest state, which has every number ever handed out.
//!   A number no state has (never expected) drops the frame
//!   (`dest_unknown`). A deleted
//!   real server gets no new connections; its established ones keep going
//!   to it (IPVS's `expire_nodest_conn` = 0), or, with
//!   `expire_nodest_conn` on, are expired at their next packet
//!   (`dest_deleted`).

pub mod neighbours;
pub mod snapshot;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use xvs_packet::ethernet::{self, MacAddr};
use xvs_packet::icmp_error::{build_too_big, nat_error_inbound, nat_error_outbound};
use xvs_packet::offload::complete_partial_checksum;
use xvs_packet::parse::{Fragment, IcmpKind, IpFrame, IpVersion};
use xvs_packet::rewrite::{RewriteError, decrement_hop_limit, nat_inbound, nat_outbound};
use xvs_packet::tunnel::{OuterSource, Tunnel, encapsulate, outer_len};
use xvs_packet::{FlowKey, FlowOrigin, FrameKind, IpProtocol, ParseError, parse_into};
use xvs_packet::{ipv4, ipv6};
use xvs_sched::{NotScheduled, SchedContext, SplitMix64, TemplateId, Templates};

use crate::conn::{
    ActivityChange, ConnEvent, ConnEventKind, ConnFeed, ConnFlags, ConnHandle, ConnTable,
    Connection, FirstPacket, ForwardMethod, InboundHash, InsertError, Millis, NewConnection,
    PacketDirection, PendingReply, ReplyHash, TcpEvent, TcpState,
};
pub use crate::types::{DestIndex, DropReason, IfaceId, InterfaceRole, Verdict};
pub use neighbours::{NeighbourCache, NeighbourChange, Neighbours};
pub use snapshot::{DEFAULT_MAX_DESTINATIONS, Dest, DestArray, Iface, Snapshot, VirtualService};

/// Where the data path reports what it sees of real servers' health (a
/// NAT real server answering a client's SYN with a SYN-ACK, or refusing it
/// with a RST): passive health checks. Called from workers: must never
/// block.
pub trait PassiveSink: Send + Sync + std::fmt::Debug {
    /// The connection to destination `dest` was refused (`failed`) or
    /// accepted.
    fn report(&self, dest: DestIndex, failed: bool);
}

/// What a worker last reported for a destination (reports are sent only
/// when the outcome differs from the last one, or for every failure).
const PASSIVE_UNKNOWN: u8 = 0;
const PASSIVE_OK: u8 = 1;
const PASSIVE_FAILED: u8 = 2;

/// Frames [`Director::process_burst`] decides in one call at most.
pub const MAX_BURST: usize = 64;

/// One received frame, lent to the pipeline for the length of one call.
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The buffer holding the frame, with [`HEADROOM`] bytes in front of
    /// it and room behind it for a frame that grows (an ICMP reply).
    pub buf: &'a mut [u8],
    /// First byte of the frame in `buf` (at least [`HEADROOM`]).
    pub start: usize,
    /// Length of the frame.
    pub len: usize,
    /// The interface it arrived on.
    pub rx: IfaceId,
}

/// A receive burst, as the I/O layer holds it: frames by position, each
/// lent out as often as the pipeline asks (it reads every frame once to
/// parse it, then once to decide it).
pub trait Burst {
    /// Frames in the burst.
    fn len(&self) -> usize;
    /// True when the burst holds no frame.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Frame `i` (`i < len()`).
    fn frame(&mut self, i: usize) -> RxFrame<'_>;
}

/// Bytes a caller must leave free in front of every frame: room for the
/// largest outer header (IPv6, 40 bytes), rounded up.
pub const HEADROOM: usize = 64;

/// ICMP too-big replies a worker sends per second at most.
pub const TOO_BIG_PER_SECOND: u32 = 100;

/// How long a worker waits before asking again to resolve the same next
/// hop it asked for last (the kernel side rate-limits per address too).
const NEIGHBOUR_REQUEST_INTERVAL_MS: Millis = 1_000;

/// Marks "no template" in the per-connection template side table.
const NO_TEMPLATE: u32 = u32::MAX;

/// Counters ipvsadm shows for a service or a real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub packets_in: u64,
    /// Packets server → client (NAT only: DR/TUN replies bypass us).
    pub packets_out: u64,
    /// Bytes client → server (IP length).
    pub bytes_in: u64,
    /// Bytes server → client.
    pub bytes_out: u64,
}

impl std::ops::AddAssign for TrafficCounters {
    fn add_assign(&mut self, o: Self) {
        self.conns += o.conns;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

/// One worker's counters: plain integers, summed by the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames seen.
    pub frames: u64,
    /// Frames transmitted (rewritten, or an ICMP reply).
    pub transmitted: u64,
    /// Frames handed to the kernel.
    pub passed: u64,
    /// Drops, by [`DropReason`] index.
    pub drops: Vec<u64>,
    /// Packets forwarded without a connection entry (full table, DR/TUN).
    pub stateless: u64,
    /// ICMP fragmentation-needed / packet-too-big replies sent.
    pub too_big_sent: u64,
    /// Frames forwarded whose TCP/UDP checksum was partial (left by the
    /// sender's checksum offload) and was completed, by receiving
    /// interface ([`IfaceId`]).
    pub partial_checksum_completed: Vec<u64>,
    /// Per destination, by [`DestIndex`]: the snapshot's full
    /// [`Snapshot::dest_capacity`], allocated once.
    pub dests: DestArray<TrafficCounters>,
}

impl WorkerCounters {
    fn new(dests: usize, interfaces: usize) -> Self {
        Self {
            drops: vec![0; DropReason::COUNT],
            dests: DestArray::filled(dests, TrafficCounters::default()),
            partial_checksum_completed: vec![0; interfaces],
            ..Self::default()
        }
    }

    /// Frames whose partial checksum was completed, on every interface.
    #[must_use]
    pub fn partial_checksums_completed(&self) -> u64 {
        self.partial_checksum_completed.iter().sum()
    }

    /// Completes the partial checksum of a frame about to be forwarded, if
    /// it holds one, and counts it against the interface it came from.
    #[inline(always)]
    fn complete_partial_checksum(&mut self, frame: &mut [u8], ip: &IpFrame, rx: IfaceId) {
        if complete_partial_checksum(frame, ip)
            && let Some(n) = self.partial_checksum_completed.get_mut(usize::from(rx.0))
        {
            *n += 1;
        }
    }

    /// Drops for one reason.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

/// What one worker owns: counters, a scratch buffer for ICMP replies, the
/// random source for `twos`, the too-big rate limiter, its reader of the
/// neighbour table.
#[derive(Debug)]
pub struct Worker {
    /// This worker's counters.
    pub counters: WorkerCounters,
    neighbours: NeighbourCache,
    /// The last next hop this worker asked to resolve, and when: a burst
    /// of packets towards one unresolved neighbour asks once.
    last_request: Option<(IfaceId, IpAddr, Millis)>,
    scratch: Vec<u8>,
    random: SplitMix64,
    /// Always empty: what services without persistence schedule with, so
    /// that a SYN builds and drops no template store.
    no_templates: Templates,
    too_big_tokens: u32,
    too_big_refill: Millis,
    ip_ident: u16,
    /// The time of the frame being processed.
    now: Millis,
    /// The snapshot this worker reads (taken out for the length of a call).
    snapshot: Option<Arc<Snapshot>>,
    /// The generation of `snapshot`.
    generation: u64,
    /// Per destination, the last passive outcome reported.
    passive_last: DestArray<u8>,
    /// Per destination, the MAC of its next hop: valid for the snapshot of
    /// `generation` and the neighbour table `dest_macs_of`, emptied when
    /// either changes. Saves the neighbour lookup on every packet.
    dest_macs: DestArray<Option<MacAddr>>,
    dest_macs_of: usize,
    /// Inside [`Director::process_burst`]: new NAT connections enter the
    /// reply index together at the end of the burst (`pending_replies`).
    in_burst: bool,
    pending_replies: Vec<PendingReply>,
    /// Where connection events go while the state sync is on (picked up
    /// with the snapshot); `None` while it is off.
    feed: Option<Arc<ConnFeed>>,
}

/// A frame's index hashes, where its burst computed them already (each
/// is computed once per frame: for the warm-up, then the lookup).
#[derive(Debug, Clone, Copy, Default)]
struct FrameHashes {
    inbound: Option<InboundHash>,
    reply: Option<ReplyHash>,
}

/// What happened to one frame, for logs and `--verdicts` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub verdict: Verdict,
    /// The destination the frame went to, when it went to one.
    pub dest: Option<DestIndex>,
}

impl Outcome {
    fn of(verdict: Verdict) -> Self {
        Self {
            verdict,
            dest: None,
        }
    }
}

/// The director's data plane: state, neighbours, connection table,
/// templates.
#[derive(Debug)]
pub struct Director {
    state: ArcSwap<Snapshot>,
    /// Bumped by every [`Director::publish`]: workers compare it with the
    /// generation of the snapshot they hold, once per call.
    generation: AtomicU64,
    neighbours: Arc<Neighbours>,
    table: ConnTable,
    conn_template: Box<[AtomicU32]>,
    passive: std::sync::OnceLock<Arc<dyn PassiveSink>>,
    /// The state sync's connection events ([`Director::set_feed`]).
    feed: ArcSwapOption<ConnFeed>,
    /// The first snapshot's [`Snapshot::dest_capacity`]: the length of
    /// every worker's per-destination arrays.
    dest_capacity: usize,
}

/// The frame being decided: its buffer, where in it the frame lies, and
/// the interface it arrived on.
#[derive(Debug)]
struct Received<'b> {
    buf: &'b mut [u8],
    start: usize,
    len: usize,
    rx: IfaceId,
}

impl Received<'_> {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// The connection a frame belongs to, whichever way it was found.
#[derive(Debug, Clone, Copy)]
struct Target {
    dest: DestIndex,
    addr: IpAddr,
    port: u16,
    method: ForwardMethod,
}

impl Target {
    /// The target a connection entry names.
    fn of_conn(conn: &Connection) -> Self {
        Self {
            dest: conn.server_id,
            addr: conn.real_server,
            port: conn.rport,
            method: conn.method,
        }
    }

    /// A destination, for a packet to `dport` (a port-0 destination keeps it).
    fn of_dest(index: DestIndex, dest: &Dest, dport: u16) -> Self {
        Self {
            dest: index,
            addr: dest.addr,
            port: if dest.port == 0 { dport } else { dest.port },
            method: dest.method,
        }
    }
}

impl Director {
    /// A data plane running `state`, with a connection table of
    /// `conn_capacity` entries keyed by `seed` (use a random one in
    /// production) and the shared neighbour table. Its state is built by
    /// the control plane (the service table; [`Director::new`] builds both
    /// from a config file), which then keeps publishing new ones.
    #[must_use]
    pub fn from_parts(
        state: Snapshot,
        conn_capacity: u32,
        seed: u64,
        neighbours: Arc<Neighbours>,
    ) -> Self {
        let conn_template = crate::io::mem::huge_boxed_slice(conn_capacity as usize, |_| {
            AtomicU32::new(NO_TEMPLATE)
        });
        let dest_capacity = state.dest_capacity as usize;
        Self {
            dest_capacity,
            state: ArcSwap::from_pointee(state),
            generation: AtomicU64::new(0),
            neighbours,
            table: ConnTable::new(conn_capacity, seed),
            conn_template,
            passive: std::sync::OnceLock::new(),
            feed: ArcSwapOption::empty(),
        }
    }

    /// Where passive health reports go (set once, before the workers
    /// start; a second call is ignored).
    pub fn set_passive_sink(&self, sink: Arc<dyn PassiveSink>) {
        let _ = self.passive.set(sink);
    }

    /// Turns the connection events for the state sync on (`Some`) or off:
    /// each worker picks the change up at its next frame, as it picks up
    /// a new snapshot. See [`crate::conn::feed`].
    pub fn set_feed(&self, feed: Option<Arc<ConnFeed>>) {
        self.feed.store(feed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The connection events' queues, while the state sync is on.
    #[must_use]
    pub fn feed(&self) -> Option<Arc<ConnFeed>> {
        self.feed.load_full()
    }

    /// Makes `state` the one every worker reads from its next frame on.
    /// Destination numbers must be those of the state it replaces (the
    /// service table keeps them): established connections go on as before.
    /// A worker still on an older state may meet a connection to a number
    /// only `state` has: it takes that destination from the newest state.
    pub fn publish(&self, state: Snapshot) {
        self.state.store(Arc::new(state));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The state workers read now.
    #[must_use]
    pub fn state(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// The worker's snapshot, refreshed when a newer one was published.
    #[inline]
    fn acquire(&self, w: &mut Worker) -> Arc<Snapshot> {
        let generation = self.generation.load(Ordering::Acquire);
        let neighbours = w.neighbours.table_id();
        let st = match w.snapshot.take() {
            Some(st) if w.generation == generation => st,
            _ => {
                let st = self.state.load_full();
                w.generation = generation;
                w.feed = self.feed.load_full();
                // Routes may have changed with the snapshot.
                w.dest_macs_of = 0;
                st
            }
        };
        if w.dest_macs_of != neighbours {
            w.dest_macs.fill(None);
            w.dest_macs_of = neighbours;
        }
        st
    }

    /// The neighbour table: workers read it, the kernel watcher writes it
    /// and drains its resolution requests.
    #[must_use]
    pub fn neighbours(&self) -> &Arc<Neighbours> {
        &self.neighbours
    }

    /// The connection table.
    #[must_use]
    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    /// A new worker context. `seed` feeds the `twos` scheduler's draws.
    #[must_use]
    pub fn worker(&self, seed: u64) -> Worker {
        let st = self.state.load_full();
        Worker {
            counters: WorkerCounters::new(self.dest_capacity, st.interfaces.len()),
            generation: self.generation.load(Ordering::Acquire),
            passive_last: DestArray::filled(self.dest_capacity, PASSIVE_UNKNOWN),
            snapshot: Some(st),
            neighbours: self.neighbours.reader(),
            last_request: None,
            scratch: vec![0; HEADROOM + 2048],
            random: SplitMix64::new(seed),
            no_templates: Templates::new(),
            too_big_tokens: TOO_BIG_PER_SECOND,
            too_big_refill: 0,
            ip_ident: 0,
            now: 0,
            dest_macs: DestArray::filled(self.dest_capacity, None),
            dest_macs_of: 0,
            in_burst: false,
            pending_replies: Vec::with_capacity(MAX_BURST),
            feed: self.feed.load_full(),
        }
    }

    /// The control thread's periodic work at `now`: reclaims up to `budget`
    /// expired connections (unbinding each from its real server and
    /// template), expires persistence templates, runs scheduler timers.
    /// Returns how many connections were reclaimed. An expiry is not
    /// reported to the state sync: the peer's copy carries the time it had
    /// left when last sent, and expires on its own no later than this one.
    pub fn housekeeping(&self, now: Millis, budget: usize) -> usize {
        let st = self.state.load_full();
        let reclaimed = self.table.expire(now, budget, |conn| {
            self.unbind(&st, conn, None);
        });
        for svc in &st.services {
            svc.templates.lock().expire(now, svc.sched.servers());
            svc.sched.run_timers(now);
        }
        reclaimed
    }

    /// Removes a connection now (the state sync applying the peer's
    /// deletion) and unbinds it from its real server as an expiry would.
    /// Reports no event: the change came from the peer. Returns the
    /// connection as it was, or `None` when it was gone already.
    pub fn remove_connection(&self, handle: ConnHandle) -> Option<Connection> {
        let old = self.table.remove(handle)?;
        let newest = self.state.load_full();
        self.unbind(&newest, &old, None);
        Some(old)
    }

    /// A removed connection leaves its real server's counters (unless it
    /// was a synced one never bound) and its template; `feed` hears of it.
    fn unbind(&self, st: &Snapshot, conn: &Connection, feed: Option<&ConnFeed>) {
        if let Some(feed) = feed {
            feed.report(ConnEvent::of(ConnEventKind::Removed, conn, conn.tcp_state));
        }
        let Some(dest) = st.dests.get(conn.server_id) else {
            return;
        };
        let svc = &st.services[dest.service as usize];
        if let Some(server) = dest.server
            && !conn.is_synced()
        {
            svc.sched.servers().unbind_conn(server, conn.is_active());
        }
        let slot = &self.conn_template[conn.handle.index() as usize];
        let tpl = slot.swap(NO_TEMPLATE, Ordering::Relaxed);
        if tpl != NO_TEMPLATE {
            svc.templates.lock().release(TemplateId(tpl));
        }
    }

    /// Decides the fate of the frame at `buf[start..start + len]`, received
    /// on `rx` at `now`, rewriting it in place. `start` must leave
    /// [`HEADROOM`] bytes in front of the frame for VS/TUN.
    pub fn process(
        &self,
        worker: &mut Worker,
        buf: &mut [u8],
        start: usize,
        len: usize,
        rx: IfaceId,
        now: Millis,
    ) -> Outcome {
        worker.now = now;
        let st = self.acquire(worker);
        let mut frame = Received {
            buf,
            start,
            len,
            rx,
        };
        let outcome = self.count(worker, |this, w| this.decide(&st, w, &mut frame, now));
        worker.snapshot = Some(st);
        outcome
    }

    /// Decides the fate of a whole receive burst: `out[i]` gets the outcome
    /// of `burst.frame(i)`, for the first `min(burst.len(), out.len(),
    /// MAX_BURST)` frames; returns how many were decided. Same decisions as
    /// [`Director::process`] frame by frame, but every frame is parsed
    /// first and the connection-table reads of the whole burst are issued
    /// together, so that their cache misses overlap instead of queueing.
    pub fn process_burst(
        &self,
        worker: &mut Worker,
        burst: &mut dyn Burst,
        now: Millis,
        out: &mut [Outcome],
    ) -> usize {
        let n = burst.len().min(out.len()).min(MAX_BURST);
        let st = self.acquire(worker);
        let mut parsed = [IpFrame::default(); MAX_BURST];
        let mut kinds = [Ok(FrameKind::Ip); MAX_BURST];
        let mut hashes = [FrameHashes::default(); MAX_BURST];
        let mut inbound = [InboundHash::default(); MAX_BURST];
        let mut replies = [ReplyHash::default(); MAX_BURST];
        let (mut n_in, mut n_reply) = (0, 0);
        for i in 0..n {
            let f = burst.frame(i);
            kinds[i] = match f.buf.get(f.start..f.start + f.len) {
                Some(bytes) => parse_into(bytes, &mut parsed[i]),
                None => Err(ParseError::Ethernet(ethernet::EthernetError::Truncated)),
            };
            if kinds[i] == Ok(FrameKind::Ip) {
                // A frame from the server side is looked up as a reply
                // first, and nearly always found there: warming its inbound
                // lines too would only spend memory bandwidth.
                if st.iface(f.rx).role == InterfaceRole::Server {
                    let hash = self.table.reply_hash(&parsed[i].flow);
                    hashes[i].reply = Some(hash);
                    replies[n_reply] = hash;
                    n_reply += 1;
                } else {
                    let hash = self.table.inbound_hash(&parsed[i].flow);
                    hashes[i].inbound = Some(hash);
                    inbound[n_in] = hash;
                    n_in += 1;
                }
            }
        }
        self.table.warm_inbound(&inbound[..n_in]);
        self.table.warm_reply(&replies[..n_reply]);
        worker.now = now;
        worker.in_burst = true;
        for i in 0..n {
            let f = burst.frame(i);
            let mut frame = Received {
                buf: f.buf,
                start: f.start,
                len: f.len,
                rx: f.rx,
            };
            out[i] = self.count(worker, |this, w| {
                this.decide_parsed(&st, w, &mut frame, &parsed[i], kinds[i], hashes[i], now)
            });
        }
        worker.in_burst = false;
        // Before any frame of the burst leaves, so before any reply.
        self.table.finish_replies(&worker.pending_replies);
        worker.pending_replies.clear();
        worker.snapshot = Some(st);
        n
    }

    /// The NAT connection a server-side frame answers. A burst's new
    /// connections enter the reply index at its end, when their first
    /// packets leave, so a live reply can only be for an older one; a
    /// capture replayed in bursts can hold both, and a miss then links the
    /// burst's pending connections first and looks again.
    #[inline]
    fn lookup_reply(
        &self,
        w: &mut Worker,
        key: &FlowKey,
        hash: Option<ReplyHash>,
        now: Millis,
    ) -> Option<Connection> {
        let hash = hash.unwrap_or_else(|| self.table.reply_hash(key));
        let found = self.table.lookup_reply_hashed(key, hash, now);
        if found.is_some() || w.pending_replies.is_empty() {
            return found;
        }
        self.table.finish_replies(&w.pending_replies);
        w.pending_replies.clear();
        self.table.lookup_reply_hashed(key, hash, now)
    }

    /// Runs `decide` and counts its verdict.
    #[inline(always)]
    fn count(
        &self,
        worker: &mut Worker,
        decide: impl FnOnce(&Self, &mut Worker) -> Outcome,
    ) -> Outcome {
        worker.counters.frames += 1;
        let outcome = decide(self, worker);
        match outcome.verdict {
            Verdict::Transmit { .. } => worker.counters.transmitted += 1,
            Verdict::PassToKernel => worker.counters.passed += 1,
            Verdict::Drop(reason) => worker.counters.drops[reason as usize] += 1,
        }
        outcome
    }

    fn decide(&self, st: &Snapshot, w: &mut Worker, f: &mut Received<'_>, now: Millis) -> Outcome {
        let Some(frame) = f.buf.get(f.start..f.start + f.len) else {
            return Outcome::of(Verdict::Drop(DropReason::EthernetTruncated));
        };
        // Filled in place and only ever borrowed: returning it by value
        // would cost more than the parse (see `xvs_packet::parse_into`).
        let mut parsed = IpFrame::default();
        let kind = parse_into(frame, &mut parsed);
        self.decide_parsed(st, w, f, &parsed, kind, FrameHashes::default(), now)
    }

    /// Decides a parsed frame; `hashes` holds its flow's index hashes
    /// that the caller computed already.
    #[inline(always)]
    #[expect(
        clippy::too_many_arguments,
        reason = "the per-frame state of a burst, passed by reference, not bundled per call"
    )]
    fn decide_parsed(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        kind: Result<FrameKind, ParseError>,
        hashes: FrameHashes,
        now: Millis,
    ) -> Outcome {
        match kind {
            Ok(FrameKind::Ip) => {}
            Ok(FrameKind::NotIp { .. }) => return Outcome::of(Verdict::PassToKernel),
            Err(e) => return Outcome::of(Verdict::Drop(e.into())),
        }
        if ip.fragment == Fragment::Later {
            let verdict = if st.is_vip(ip.flow.dst) {
                Verdict::Drop(DropReason::LaterFragment)
            } else {
                Verdict::PassToKernel
            };
            return Outcome::of(verdict);
        }
        if ip.origin == FlowOrigin::IcmpError {
            return self.icmp_error(st, w, f, ip, now);
        }
        if st.iface(f.rx).role == InterfaceRole::Server
            && let Some(conn) = self.lookup_reply(w, &ip.flow, hashes.reply, now)
        {
            if conn.proto == IpProtocol::Tcp && conn.tcp_state == TcpState::SynRecv {
                self.passive_report(w, &conn, ip);
            }
            self.track(st, w, &conn, ip, PacketDirection::FromServer, now);
            return self.forward_reply(st, w, f, ip, &conn);
        }
        let hash = hashes
            .inbound
            .unwrap_or_else(|| self.table.inbound_hash(&ip.flow));
        if let Some(conn) = self.table.lookup_inbound_hashed(&ip.flow, hash, now) {
            // IPVS's conn_reuse_mode 1, plus bit 2: a DR/TUN connection
            // (no output seen) sits in FIN_WAIT after the client closed, so a
            // SYN from the same client port there is a new connection too.
            let closing = match conn.tcp_state {
                TcpState::TimeWait | TcpState::Close => true,
                TcpState::FinWait => conn.flags.contains(crate::conn::ConnFlags::NO_OUTPUT),
                _ => false,
            };
            let reuse = ip.tcp_flags.syn() && !ip.tcp_flags.rst() && closing;
            if !reuse {
                return self.established(st, w, f, ip, &conn, now);
            }
            // A new SYN on a closing connection (a reused client port):
            // the old entry goes, the SYN is scheduled afresh (IPVS's
            // conn_reuse_mode).
            if let Some(old) = self.table.remove(conn.handle) {
                self.unbind(st, &old, w.feed.as_deref());
            }
        }
        let Some(service) = st.find_service(ip.flow.proto, ip.flow.dst, ip.flow.dport) else {
            return Outcome::of(Verdict::PassToKernel);
        };
        let svc = &st.services[service as usize];
        let opens = match ip.flow.proto {
            IpProtocol::Tcp => {
                let f = ip.tcp_flags;
                !f.rst() && (f.syn() || svc.sloppy)
            }
            _ => true,
        };
        if !opens {
            if self.table.len() >= self.table.capacity() {
                return self.stateless(st, w, f, ip, service);
            }
            return Outcome::of(Verdict::Drop(DropReason::NoConnection));
        }
        self.new_connection(st, w, f, ip, service, hash, now)
    }

    /// The server's first answer to a client's SYN: a RST is a refused
    /// connection, a SYN-ACK an accepted one. Every refusal is reported; an
    /// acceptance only after something else was (a healthy server costs
    /// nothing).
    #[inline]
    fn passive_report(&self, w: &mut Worker, conn: &Connection, ip: &IpFrame) {
        let Some(sink) = self.passive.get() else {
            return;
        };
        let flags = ip.tcp_flags;
        let failed = flags.rst();
        let accepted = flags.syn() && flags.ack();
        if !failed && !accepted {
            return;
        }
        let Some(last) = w.passive_last.get_mut(conn.server_id) else {
            return;
        };
        let outcome = if failed { PASSIVE_FAILED } else { PASSIVE_OK };
        if failed || *last != outcome {
            *last = outcome;
            sink.report(conn.server_id, failed);
        }
    }

    /// Moves a connection's state for a packet in `direction`; reports
    /// active/inactive changes to its real server.
    #[inline(always)]
    fn track(
        &self,
        st: &Snapshot,
        w: &Worker,
        conn: &Connection,
        ip: &IpFrame,
        direction: PacketDirection,
        now: Millis,
    ) {
        let timeouts = &st.timeouts;
        if conn.proto == IpProtocol::Tcp && ip.icmp.is_none() {
            let event = TcpEvent::from_flags(ip.tcp_flags);
            if let Ok(t) = self
                .table
                .on_tcp_segment(conn.handle, direction, event, now, timeouts)
            {
                if t.from != t.to
                    && let Some(feed) = &w.feed
                {
                    report_state_change(feed, conn, t.to);
                }
                let (was, is) = match t.activity {
                    ActivityChange::Unchanged => return,
                    ActivityChange::BecameActive => (false, true),
                    ActivityChange::BecameInactive => (true, false),
                    ActivityChange::AdoptedActive => {
                        return self.bind_synced(st, conn.server_id, true);
                    }
                    ActivityChange::AdoptedInactive => {
                        return self.bind_synced(st, conn.server_id, false);
                    }
                };
                match st.dests.get(conn.server_id) {
                    Some(dest) => activity_changed(st, dest, was, is),
                    // Opened by another worker on a newer snapshot: the
                    // newest has its server (numbers are only ever added).
                    None => self.newer_activity_changed(conn.server_id, was, is),
                }
            }
        } else {
            // Without TCP states the table cannot say when a synced
            // connection is adopted: the flag is cleared here.
            if conn.flags.contains(ConnFlags::SYNCED) {
                self.adopt(st, conn);
            }
            let timeout = timeouts.for_conn_ms(conn.proto, conn.tcp_state);
            let _ = self.table.on_packet(conn.handle, direction, now, timeout);
        }
    }

    /// The first packet forwarded on a UDP or ICMP connection the state
    /// sync copied from the peer: clears its flag and binds it (one worker
    /// does, whichever clears the flag). TCP connections are adopted by
    /// their segment's transition ([`ActivityChange::AdoptedActive`],
    /// [`ActivityChange::AdoptedInactive`]).
    #[cold]
    #[inline(never)]
    fn adopt(&self, st: &Snapshot, conn: &Connection) {
        if let Ok(Some(flags)) = self.table.adopt(conn.handle) {
            self.bind_synced(st, conn.server_id, flags.contains(ConnFlags::ACTIVE));
        }
    }

    /// Binds a synced connection to destination `index`'s real server, in
    /// `activeconns` when `active`, else `inactconns`.
    #[cold]
    #[inline(never)]
    fn bind_synced(&self, st: &Snapshot, index: DestIndex, active: bool) {
        let bind = |st: &Snapshot, dest: &Dest| {
            if let Some(server) = dest.server {
                let servers = st.services[dest.service as usize].sched.servers();
                servers.bind_conn(server);
                if active {
                    servers.conn_activity_changed(server, false, true);
                }
            }
        };
        match st.dests.get(index) {
            Some(dest) => bind(st, dest),
            // Opened by another worker on a newer snapshot.
            None => {
                let newest = self.state.load_full();
                if let Some(dest) = newest.dests.get(index) {
                    bind(&newest, dest);
                }
            }
        }
    }

    #[inline(always)]
    fn established(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        conn: &Connection,
        now: Millis,
    ) -> Outcome {
        if st.expire_nodest_conn && st.dests.get(conn.server_id).is_some_and(|d| !d.available) {
            // IPVS's expire_nodest_conn: the server is gone, so is the
            // connection; the client's next SYN is scheduled afresh.
            if let Some(old) = self.table.remove(conn.handle) {
                self.unbind(st, &old, w.feed.as_deref());
            }
            return Outcome::of(Verdict::Drop(DropReason::DestDeleted));
        }
        self.track(st, w, conn, ip, PacketDirection::FromClient, now);
        let target = Target::of_conn(conn);
        self.forward_inbound(st, w, f, ip, target)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "decide_parsed's state plus the service it found, passed on as they are"
    )]
    fn new_connection(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        service: u32,
        hash: InboundHash,
        now: Millis,
    ) -> Outcome {
        let svc = &st.services[service as usize];
        let mut ctx = SchedContext {
            now,
            random: &mut w.random,
        };
        let scheduled = if svc.sched.config().persistence.is_some() {
            svc.sched
                .schedule_connection(&mut svc.templates.lock(), &ip.flow, &mut ctx)
        } else {
            svc.sched
                .schedule_connection(&mut w.no_templates, &ip.flow, &mut ctx)
        };
        let (dest_index, template) = match scheduled {
            Ok(s) => (svc.dest_of[s.server.0 as usize], s.template),
            Err(NotScheduled::NoServer) => match svc.fallback {
                Some(fb) => (fb, None),
                None => return Outcome::of(Verdict::Drop(DropReason::NoRealServer)),
            },
            Err(NotScheduled::FtpData) => return Outcome::of(Verdict::Drop(DropReason::FtpData)),
            Err(_) => return Outcome::of(Verdict::Drop(DropReason::PortMismatch)),
        };
        // The service's numbers are in its own snapshot.
        let Some(dest) = st.dests.get(dest_index) else {
            return Outcome::of(Verdict::Drop(DropReason::DestUnknown));
        };
        let target = Target::of_dest(dest_index, dest, ip.flow.dport);
        let new = NewConnection {
            proto: ip.flow.proto,
            client: ip.flow.src,
            cport: ip.flow.sport,
            vip: ip.flow.dst,
            vport: ip.flow.dport,
            real_server: dest.addr,
            rport: target.port,
            server_id: dest_index,
            method: dest.method,
            template: false,
        };
        let first = if ip.flow.proto == IpProtocol::Tcp && ip.icmp.is_none() {
            FirstPacket::Tcp(TcpEvent::from_flags(ip.tcp_flags), &st.timeouts)
        } else {
            FirstPacket::Other {
                timeout: st.timeouts.for_conn_ms(ip.flow.proto, TcpState::None),
            }
        };
        // One pending reply per frame at most, so the vector never grows.
        let defer = w.in_burst && w.pending_replies.len() < w.pending_replies.capacity();
        match self.table.open_hashed(&new, hash, now, first, defer) {
            Ok((conn, activity, pending)) => {
                if let Some(p) = pending {
                    w.pending_replies.push(p);
                }
                if let Some(feed) = &w.feed {
                    report_created(feed, conn.handle, &ip.flow, conn.tcp_state);
                }
                if let Some(tpl) = template {
                    self.conn_template[conn.handle.index() as usize]
                        .store(tpl.0, Ordering::Relaxed);
                }
                if activity == ActivityChange::BecameActive
                    && let Some(server) = dest.server
                {
                    svc.sched
                        .servers()
                        .conn_activity_changed(server, false, true);
                }
            }
            Err(InsertError::Full) => {
                // Undo the binding the scheduler made: no entry will ever
                // unbind it. The flow goes where a hash sends it.
                if let Some(server) = dest.server {
                    svc.sched.servers().unbind_conn(server, false);
                }
                if let Some(tpl) = template {
                    svc.templates.lock().release(tpl);
                }
                return self.stateless(st, w, f, ip, service);
            }
        }
        if let Some(c) = w.counters.dests.get_mut(dest_index) {
            c.conns += 1;
        }
        self.forward_inbound(st, w, f, ip, target)
    }

    /// Forwards without a connection entry, to the usable real server a
    /// hash of the flow picks (so every packet of the flow goes there).
    fn stateless(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        service: u32,
    ) -> Outcome {
        let svc = &st.services[service as usize];
        // Two passes over the list rather than collecting: no allocation.
        let servers = svc.sched.servers();
        let usable = servers.iter().filter(|s| s.is_usable()).count();
        let h = xvs_packet::tunnel::flow_hash(ip.flow.src, ip.flow.sport) as usize;
        let picked = servers
            .iter()
            .filter(|s| s.is_usable())
            .nth(h % usable.max(1));
        let dest_index = match (picked, svc.fallback) {
            (Some(server), _) => svc.dest_of[server.id().0 as usize],
            (None, Some(fb)) => fb,
            (None, None) => return Outcome::of(Verdict::Drop(DropReason::NoRealServer)),
        };
        let Some(dest) = st.dests.get(dest_index) else {
            return Outcome::of(Verdict::Drop(DropReason::DestUnknown));
        };
        if dest.method == ForwardMethod::Nat {
            // A NAT reply can only be rewritten back to the VIP through the
            // connection's entry: without one the client would get
            // answers from the real server's address. Refuse instead.
            return Outcome::of(Verdict::Drop(DropReason::ConnTableFull));
        }
        w.counters.stateless += 1;
        let target = Target::of_dest(dest_index, dest, ip.flow.dport);
        self.forward_inbound(st, w, f, ip, target)
    }

    /// Client → real server, by the connection's method.
    #[inline(always)]
    fn forward_inbound(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        target: Target,
    ) -> Outcome {
        let route = match st.dests.get(target.dest) {
            Some(dest) => dest.route,
            // Opened by another worker on a newer snapshot.
            None => match self.newer_route(target.dest) {
                Some(route) => route,
                None => return Outcome::of(Verdict::Drop(DropReason::DestUnknown)),
            },
        };
        let Some((egress, hop)) = route else {
            return Outcome::of(Verdict::Drop(DropReason::NoRoute));
        };
        let (iface, mac) = match w.dest_macs.get(target.dest).copied().flatten() {
            Some(mac) => (st.iface(egress), mac),
            None => match self.neighbour(st, w, egress, hop) {
                Ok((iface, mac)) => {
                    // Only an answer from the table the memo belongs to
                    // (one published since is for the next call).
                    if w.neighbours.answered_from() == w.dest_macs_of
                        && let Some(slot) = w.dest_macs.get_mut(target.dest)
                    {
                        *slot = Some(mac);
                    }
                    (iface, mac)
                }
                Err(reason) => return Outcome::of(Verdict::Drop(reason)),
            },
        };
        let overhead = match target.method {
            ForwardMethod::Tunnel => outer_len(target.addr),
            _ => 0,
        };
        if ip.ip_len() + overhead > usize::from(iface.mtu) {
            let mtu = usize::from(iface.mtu).saturating_sub(overhead) as u16;
            // Answered from the address the client sent to (the VIP), as
            // the kernel answers for a local address.
            return self.too_big(w, f, ip, mtu, ip.flow.dst);
        }
        let rx = f.rx;
        let frame = f.bytes_mut();
        if let Err(e) = decrement_hop_limit(frame, ip) {
            return Outcome::of(Verdict::Drop(rewrite_drop(e)));
        }
        // Before any rewrite: a partial checksum is recognised by the
        // addresses it was computed over, and the rewrites below update
        // whatever checksum they find incrementally. For VS/TUN this is the
        // inner packet's, which the real server checks after decapsulation.
        w.counters.complete_partial_checksum(frame, ip, rx);
        let is_error = ip.origin == FlowOrigin::IcmpError;
        match target.method {
            ForwardMethod::Nat => {
                let done = if is_error {
                    nat_error_inbound(frame, ip, target.addr, target.port)
                } else {
                    nat_inbound(frame, ip, target.addr, target.port)
                };
                if let Err(e) = done {
                    return Outcome::of(Verdict::Drop(rewrite_drop(e)));
                }
            }
            ForwardMethod::DirectRouting => {}
            ForwardMethod::Tunnel => {
                let Some(src) = iface.address_like(target.addr) else {
                    return Outcome::of(Verdict::Drop(DropReason::NoRoute));
                };
                // The outer TTL is the inner one, already decremented (IPVS).
                let tunnel = Tunnel {
                    dst: target.addr,
                    src: OuterSource::Fixed(src),
                    ttl: ip.hop_limit.saturating_sub(1),
                };
                w.ip_ident = w.ip_ident.wrapping_add(1);
                match encapsulate(f.buf, f.start, f.len, ip, &tunnel, w.ip_ident) {
                    // The outer header went into the headroom: the frame moved.
                    Ok((start, len)) => (f.start, f.len) = (start, len),
                    Err(e) => return Outcome::of(Verdict::Drop(rewrite_drop(e))),
                }
            }
        };
        // Counted only now: what was dropped or answered above never
        // reached the real server. The counters span every number a
        // destination can have: a miss is a state from another table.
        let Some(c) = w.counters.dests.get_mut(target.dest) else {
            return Outcome::of(Verdict::Drop(DropReason::DestUnknown));
        };
        c.packets_in += 1;
        c.bytes_in += ip.ip_len() as u64;
        transmit(f, iface, mac, target.dest)
    }

    /// The route of destination `index` in the newest state, for a
    /// connection opened on a snapshot newer than the worker's (`None`: no
    /// state has that number).
    #[cold]
    #[inline(never)]
    fn newer_route(&self, index: DestIndex) -> Option<Option<(IfaceId, IpAddr)>> {
        self.state.load().dests.get(index).map(|d| d.route)
    }

    /// [`activity_changed`] for a destination the worker's snapshot lacks,
    /// from the newest state.
    #[cold]
    #[inline(never)]
    fn newer_activity_changed(&self, index: DestIndex, was: bool, is: bool) {
        let st = self.state.load();
        if let Some(dest) = st.dests.get(index) {
            activity_changed(&st, dest, was, is);
        }
    }

    /// Where a packet to `dst` leaves: the interface and the next hop's MAC.
    fn next_hop<'s>(
        &self,
        st: &'s Snapshot,
        w: &mut Worker,
        dst: IpAddr,
    ) -> Result<(&'s Iface, MacAddr), DropReason> {
        let (egress, hop) = st.route(dst).ok_or(DropReason::NoRoute)?;
        self.neighbour(st, w, egress, hop)
    }

    /// The MAC of next hop `hop` on `egress`; on a miss, asks the kernel
    /// side to resolve it (once per interval for a repeated miss).
    #[inline(always)]
    fn neighbour<'s>(
        &self,
        st: &'s Snapshot,
        w: &mut Worker,
        egress: IfaceId,
        hop: IpAddr,
    ) -> Result<(&'s Iface, MacAddr), DropReason> {
        match w.neighbours.lookup(egress, hop) {
            Some(mac) => Ok((st.iface(egress), mac)),
            None => {
                let repeat = matches!(w.last_request, Some((i, ip, at))
                    if i == egress && ip == hop && w.now < at + NEIGHBOUR_REQUEST_INTERVAL_MS);
                if !repeat {
                    self.neighbours.request(egress, hop);
                    w.last_request = Some((egress, hop, w.now));
                }
                Err(DropReason::NeighbourUnresolved)
            }
        }
    }

    /// Real server → client (NAT): back to the VIP, towards the client.
    fn forward_reply(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        conn: &Connection,
    ) -> Outcome {
        let (iface, mac) = match self.next_hop(st, w, conn.client) {
            Ok(found) => found,
            Err(reason) => return Outcome::of(Verdict::Drop(reason)),
        };
        if ip.ip_len() > usize::from(iface.mtu) {
            // The director routes this packet: it answers from its own
            // address on the side the packet came from.
            let Some(src) = st.iface(f.rx).address_like(ip.flow.src) else {
                return Outcome::of(Verdict::Drop(DropReason::NoRoute));
            };
            return self.too_big(w, f, ip, iface.mtu, src);
        }
        let rx = f.rx;
        let frame = f.bytes_mut();
        if let Err(e) = decrement_hop_limit(frame, ip) {
            return Outcome::of(Verdict::Drop(rewrite_drop(e)));
        }
        // Real servers on veths send partial checksums too (see
        // `forward_inbound`).
        w.counters.complete_partial_checksum(frame, ip, rx);
        let done = if ip.origin == FlowOrigin::IcmpError {
            nat_error_outbound(frame, ip, conn.vip, conn.vport)
        } else {
            nat_outbound(frame, ip, conn.vip, conn.vport)
        };
        if let Err(e) = done {
            return Outcome::of(Verdict::Drop(rewrite_drop(e)));
        }
        let Some(c) = w.counters.dests.get_mut(conn.server_id) else {
            return Outcome::of(Verdict::Drop(DropReason::DestUnknown));
        };
        c.packets_out += 1;
        c.bytes_out += ip.ip_len() as u64;
        transmit(f, iface, mac, conn.server_id)
    }

    /// An ICMP error: to the connection its quote names, or to the kernel
    /// when it is about the director's own traffic.
    fn icmp_error(
        &self,
        st: &Snapshot,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        now: Millis,
    ) -> Outcome {
        // The key is the direction the error travels: towards a real
        // server it matches the inbound index, towards a client (from the
        // server side, NAT only) the reply index.
        if st.iface(f.rx).role == InterfaceRole::Server
            && let Some(conn) = self.lookup_reply(w, &ip.flow, None, now)
        {
            return self.forward_reply(st, w, f, ip, &conn);
        }
        if let Some(conn) = self.table.lookup_inbound(&ip.flow, now) {
            let target = Target::of_conn(&conn);
            return self.forward_inbound(st, w, f, ip, target);
        }
        let outer_dst = outer_destination(f.bytes(), ip);
        if st.is_local(outer_dst) {
            Outcome::of(Verdict::PassToKernel)
        } else {
            Outcome::of(Verdict::Drop(DropReason::IcmpErrorNoConnection))
        }
    }

    /// Answers a too-big packet with ICMP fragmentation-needed (IPv4 with
    /// DF) or packet-too-big (IPv6) on the interface it came from.
    fn too_big(
        &self,
        w: &mut Worker,
        f: &mut Received<'_>,
        ip: &IpFrame,
        mtu: u16,
        src: IpAddr,
    ) -> Outcome {
        let may_fragment = ip.version == IpVersion::V4 && !ip.dont_frag;
        if may_fragment {
            return Outcome::of(Verdict::Drop(DropReason::TooBigNoDf));
        }
        if matches!(ip.icmp, Some(IcmpKind::Error { .. })) {
            // Never an error about an error.
            return Outcome::of(Verdict::Drop(DropReason::TooBigNoDf));
        }
        if !w.take_too_big_token() {
            return Outcome::of(Verdict::Drop(DropReason::TooBigRateLimited));
        }
        let frame = f.bytes();
        let Ok(reply_len) = build_too_big(&mut w.scratch, frame, ip, mtu, src) else {
            return Outcome::of(Verdict::Drop(DropReason::TooBigNoDf));
        };
        f.buf[f.start..f.start + reply_len].copy_from_slice(&w.scratch[..reply_len]);
        w.counters.too_big_sent += 1;
        Outcome::of(Verdict::Transmit {
            iface: f.rx,
            start: f.start,
            len: reply_len,
        })
    }
}

impl Worker {
    /// Refills the too-big bucket by the time elapsed and takes one token.
    fn take_too_big_token(&mut self) -> bool {
        if self.now >= self.too_big_refill + 1000 {
            self.too_big_tokens = TOO_BIG_PER_SECOND;
            self.too_big_refill = self.now;
        }
        if self.too_big_tokens == 0 {
            return false;
        }
        self.too_big_tokens -= 1;
        true
    }
}

/// Reports a connection's new TCP state to the state sync.
#[cold]
#[inline(never)]
fn report_state_change(feed: &ConnFeed, conn: &Connection, to: TcpState) {
    feed.report(ConnEvent::of(ConnEventKind::StateChanged, conn, to));
}

/// Reports a new connection, whose first packet had `key`, to the state
/// sync. Takes the parts it needs rather than the connection's copy:
/// handing the whole copy over would keep it alive in the SYN path's hot
/// code, which costs dozens of instructions per SYN even with sync off.
#[cold]
#[inline(never)]
fn report_created(feed: &ConnFeed, handle: ConnHandle, key: &FlowKey, state: TcpState) {
    feed.report(ConnEvent {
        kind: ConnEventKind::Created,
        handle,
        key: *key,
        tcp_state: state,
    });
}

/// Tells `dest`'s real server (none for a fallback) that one of its
/// connections went from active (`was`) to active (`is`) or back.
#[inline(always)]
fn activity_changed(st: &Snapshot, dest: &Dest, was: bool, is: bool) {
    if let Some(server) = dest.server {
        let svc = &st.services[dest.service as usize];
        svc.sched.servers().conn_activity_changed(server, was, is);
    }
}

/// Addresses the frame to the next hop from `iface` and sends it there.
#[inline(always)]
fn transmit(f: &mut Received<'_>, iface: &Iface, next_hop: MacAddr, dest: DestIndex) -> Outcome {
    let mut eth = ethernet::Frame::new_unchecked(f.bytes_mut());
    eth.set_dst_addr(next_hop);
    eth.set_src_addr(iface.mac);
    Outcome {
        verdict: Verdict::Transmit {
            iface: iface.id,
            start: f.start,
            len: f.len,
        },
        dest: Some(dest),
    }
}

fn rewrite_drop(e: RewriteError) -> DropReason {
    match e {
        RewriteError::TtlExpired => DropReason::TtlExpired,
        RewriteError::NoHeadroom | RewriteError::BufferTooSmall => DropReason::NoHeadroom,
        RewriteError::FamilyMismatch | RewriteError::WrongKind => DropReason::FamilyMismatch,
    }
}

/// The outer destination address of an IP frame.
fn outer_destination(frame: &[u8], ip: &IpFrame) -> IpAddr {
    let l3 = &frame[ip.l3_offset..];
    match ip.version {
        IpVersion::V4 => ipv4::Packet::new_unchecked(l3).dst_addr().into(),
        IpVersion::V6 => ipv6::Packet::new_unchecked(l3).dst_addr().into(),
    }
}
