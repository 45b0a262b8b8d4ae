//! The connection-state sync part (`[sync]`, issue #18): the engine that
//! drives the reliability layer (`sync::reliable`) and the table's side
//! (`sync::table`) over one UDP socket, on a thread of its own.
//!
//! **Master role** (this director's connections go to the peer): the
//! workers report every connection created, every TCP state change and
//! every removal into the feed (`Director::set_feed`); each turn (at most
//! [`TURN`]) the thread drains the main queue first, then, only when it is
//! empty, at most [`HALF_OPEN_PER_TURN`] half-open creations: under a SYN
//! flood the half-open queue fills and drops (counted) while the
//! established connections' events still flow (*lower priority*, not a
//! delay: a connection opened just before a takeover has its best chance).
//! A new connection of a persistent service goes with its template, so
//! that the peer sends the client's next connections to the same server.
//! The records are batched into messages of at most `maxlen` bytes,
//! numbered, kept until acknowledged and resent on a Nack. The sender's
//! queue has a fixed size: while it is full the feed is not drained (its
//! own bounded queues drop and count), and a drop anywhere is repaired by
//! the next refresh walk (started at once when the feed dropped) or by a
//! full transfer (when the peer misses what the queue dropped). Every
//! `refresh_interval`, while this director forwards (HA master, or no
//! `[ha]`), every connection it forwards is sent again (not the peer's
//! copies it holds), so that a long-lived idle connection — whose packets
//! extend its timer here without an event — does not expire on the peer.
//! When the peer asks for the whole table (at its start, after a restart,
//! after a gap too wide to repair), a full transfer walks the table and the
//! persistence templates, between BULK_START and BULK_END, using only the
//! queue's room above a reserve kept for live events.
//!
//! **Backup role** (the peer's connections come here): the peer's records
//! are applied in order (`sync::table::import`); the receiver asks for the
//! whole table at start and whenever it loses sync, and says it is *in
//! sync* only once a whole transfer arrived ([`SyncShared::in_sync`]: the
//! HA part's preemption waits on it). A record about a connection this
//! director forwards itself while it is the active director is not applied
//! (counted as kept): its own state is newer than what the peer echoes.
//! Entries the peer no longer has are not swept at the end of a transfer:
//! they expire on their own timers.
//!
//! **Both roles** (the default) on both directors: the state flows either
//! way, so that a failback finds the table too.
//!
//! Every datagram is checked (`Packet::new_checked`), its tag verified with
//! the key and its syncid compared before anything reads it; refusals are
//! counted by reason ([`Dropped`]). One peer: with unicast the configured
//! address, with multicast the first director whose message verified.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver as Inbox, Sender as Outbox, TryRecvError, bounded};
use log::{error, info, warn};
use serde_json::Value;
use xvs_packet::sync::{
    AuthKey, Flags, HEADER_LEN, Kind, MaxLen, MessageBuilder, Packet, Record, TRAILER_LEN,
};

use crate::config::{SyncConfig, SyncRole};
use crate::conn::{ConnEvent, ConnEventKind, ConnFeed, ConnFlags, Millis};
use crate::control::proto::{ControlError, DaemonParams, ErrorKind, Reply, Request, SyncRoleName};
use crate::ha::machine::State as HaState;
use crate::pipeline::Director;
use crate::run::Clock;
use crate::sync::reliable::{
    Envelope, Message, Receiver, ReceiverConfig, ReceiverOutput, Sender, SenderConfig, SenderOutput,
};
use crate::sync::shared::{Dropped, SyncShared};
use crate::sync::table::{
    self, ExportCursor, ImportCounts, TemplateCursor, event_record, export_chunk,
    export_chunk_where, export_templates, template_record,
};

use crate::io::sync_socket::{SyncSocket, SyncTarget};

use super::Error;
use super::ha::HaInterface;
use super::part::{Part, Running};
use crate::types::InterfaceRole;

/// The longest the thread sleeps between two turns.
pub const TURN: Duration = Duration::from_millis(5);

/// Events of the main queue handled per turn at most.
const EVENTS_PER_TURN: usize = 8192;

/// Half-open creations handled per turn at most (and only once the main
/// queue is empty).
pub const HALF_OPEN_PER_TURN: usize = 256;

/// Messages a transfer or a refresh sends per turn at most.
const WALK_MESSAGES_PER_TURN: usize = 64;

/// Unacknowledged messages the sender keeps for resending.
const SENDER_QUEUE: usize = 4096;

/// Of the sender's queue, the part a transfer or a refresh leaves to the
/// live events.
const LIVE_RESERVE: usize = SENDER_QUEUE / 4;

/// The workers' queues: events, and half-open creations apart.
const FEED_EVENTS: usize = 65_536;
const FEED_HALF_OPEN: usize = 16_384;

/// Datagrams read per turn at most.
const DATAGRAMS_PER_TURN: usize = 1024;

/// How often the figures are published.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// The sync part: runs the engine for the roles configured (`[sync]`) or
/// started since (`xvsadm --start-daemon`).
pub struct SyncPart {
    /// The settings in force; `roles` empty: no engine runs.
    config: SyncConfig,
    /// `[ha]`'s interface, the default one after `interface`.
    ha_interface: Option<String>,
    key: AuthKey,
    interfaces: Vec<HaInterface>,
    director: Arc<Director>,
    clock: Clock,
    ha: Option<Arc<crate::ha::router::Shared>>,
    shared: Arc<SyncShared>,
    stop: Option<Outbox<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SyncPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPart")
            .field("roles", &self.config.roles)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl SyncPart {
    /// A part for `config` (its roles may be empty: nothing runs until
    /// `--start-daemon`) with `key`, on one of `interfaces` (`config`'s,
    /// else `ha_interface`, else the client-side one), syncing
    /// `director`'s table on its `clock`; with `[ha]` it reads the
    /// election's state from `ha`.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: SyncConfig,
        ha_interface: Option<String>,
        key: AuthKey,
        interfaces: Vec<HaInterface>,
        director: Arc<Director>,
        clock: Clock,
        ha: Option<Arc<crate::ha::router::Shared>>,
        shared: Arc<SyncShared>,
    ) -> Self {
        Self {
            config,
            ha_interface,
            key,
            interfaces,
            director,
            clock,
            ha,
            shared,
            stop: None,
            thread: None,
        }
    }

    /// The interface the settings name.
    fn interface(&self, config: &SyncConfig) -> Result<&HaInterface, String> {
        let wanted = config.interface.as_ref().or(self.ha_interface.as_ref());
        match wanted {
            Some(name) => self.interfaces.iter().find(|i| &i.name == name).ok_or_else(|| {
                format!(
                    "interface {name} is not one of the director's ({}): give --mcast-interface one of them",
                    self.interfaces
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            None => self
                .interfaces
                .iter()
                .find(|i| i.role == InterfaceRole::Client)
                .or_else(|| self.interfaces.first())
                .ok_or_else(|| "the director has no interface to sync on".to_owned()),
        }
    }

    /// Starts the engine for `self.config`'s roles (none: nothing).
    fn start_engine(&mut self) -> Result<(), Error> {
        let master = self.config.has(SyncRole::Master);
        let backup = self.config.has(SyncRole::Backup);
        self.shared.set_in_sync(!backup);
        {
            let mut stats = self.shared.stats.lock();
            *stats = crate::sync::shared::SyncStats::default();
        }
        if !master && !backup {
            return Ok(());
        }
        let iface = self.interface(&self.config).map_err(Error::Sync)?.clone();
        let name = iface.name.clone();
        let target = match self.config.peers.first() {
            Some(&peer) => SyncTarget::Peer(peer),
            None => SyncTarget::Group(self.config.group),
        };
        let source = self.config.source.or_else(|| {
            let v4 = self.config.destination().is_ipv4();
            iface
                .addresses
                .iter()
                .map(|n| n.addr)
                .find(|a| a.is_ipv4() == v4)
        });
        let socket = SyncSocket::open(
            &name,
            iface.ifindex,
            target,
            source,
            self.config.port,
            self.config.ttl,
        )
        .map_err(|e| {
            Error::Sync(format!(
                "opening the sync socket on {name} port {} ({}): {e}",
                self.config.port,
                match target {
                    SyncTarget::Group(g) => format!("group {g}"),
                    SyncTarget::Peer(p) => format!("peer {p}"),
                }
            ))
        })?;
        let feed = master.then(|| Arc::new(ConnFeed::new(FEED_EVENTS, FEED_HALF_OPEN)));
        let epoch = loop {
            let e = random_u32();
            if e != 0 {
                break e;
            }
        };
        {
            let mut stats = self.shared.stats.lock();
            stats.master = master;
            stats.backup = backup;
            stats.describe = self.config.describe(&name);
        }
        let engine = Engine {
            syncid: self.config.syncid,
            max_len: self.config.max_len(),
            key: self.key.clone(),
            refresh_every: Duration::from_millis(self.config.refresh_interval),
            peer_addr: self.config.peers.first().copied(),
            socket,
            director: Arc::clone(&self.director),
            clock: self.clock,
            feed: feed.clone(),
            sender: master.then(|| {
                Sender::new(
                    epoch,
                    SenderConfig {
                        queue_capacity: SENDER_QUEUE,
                        ..SenderConfig::default()
                    },
                )
            }),
            // The window holds as many messages as the peer's queue can
            // have in flight: a loss early in a transfer is then repaired
            // by a Nack, never taken for a gap too wide.
            receiver: backup.then(|| {
                Receiver::new(
                    epoch,
                    ReceiverConfig {
                        window: SENDER_QUEUE,
                        ..ReceiverConfig::default()
                    },
                )
            }),
            peer: None,
            batch: Batch::new(self.config.max_len()),
            transfer: None,
            refresh: None,
            next_refresh_at: Instant::now() + Duration::from_millis(self.config.refresh_interval),
            feed_dropped_seen: 0,
            oldest_unacked_at: None,
            ha: self.ha.clone(),
            shared: Arc::clone(&self.shared),
            counts: Counts::default(),
            out: vec![0u8; MaxLen::MAX],
            last_publish: Instant::now(),
            logged_other_peer: false,
        };
        let (stop, inbox) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("xvs-sync".to_owned())
            .spawn(move || engine.serve(&inbox))
            .map_err(|e| Error::Sync(format!("starting the sync thread: {e}")))?;
        // The workers report from their next frame on.
        self.director.set_feed(feed);
        info!(
            "sync: {} on {name} ({}), roles {}, epoch {epoch:08x}",
            match target {
                SyncTarget::Group(g) => format!("multicast to {g}"),
                SyncTarget::Peer(p) => format!("unicast to {p}"),
            },
            source.map_or_else(|| "any source".to_owned(), |s| format!("from {s}")),
            self.config
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" and "),
        );
        self.stop = Some(stop);
        self.thread = Some(thread);
        Ok(())
    }

    /// Stops the engine, if one runs.
    fn stop_engine(&mut self) {
        self.director.set_feed(None);
        // Dropping the sender tells the thread to stop.
        self.stop = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("sync: the sync thread panicked");
        }
    }

    /// Runs the engine with `next` instead of the settings in force; if
    /// it cannot start, the settings in force run again.
    fn switch(&mut self, next: SyncConfig) -> Result<(), String> {
        let previous = std::mem::replace(&mut self.config, next);
        self.stop_engine();
        match self.start_engine() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.config = previous;
                if let Err(again) = self.start_engine() {
                    error!("sync: restarting with the previous settings: {again}");
                }
                Err(e.to_string())
            }
        }
    }

    /// `--start-daemon`: `role` with `params` (the other role, if it runs,
    /// must use the same options: one socket carries both).
    fn start_role(&mut self, params: &DaemonParams) -> Result<(), String> {
        let role = role_of(params.role);
        if self.config.has(role) {
            return Err(format!(
                "the {} sync daemon is already running: stop it first (--stop-daemon {})",
                role.as_str(),
                role.as_str()
            ));
        }
        let mut next = self.config.clone();
        if let Some(i) = &params.interface {
            next.interface = Some(i.clone());
        }
        if let Some(v) = params.syncid {
            next.syncid = v;
        }
        if let Some(v) = params.maxlen {
            next.maxlen = usize::from(v);
        }
        if let Some(v) = params.group {
            next.group = v;
            next.peers.clear();
        }
        if let Some(v) = params.port {
            next.port = v;
        }
        if let Some(v) = params.ttl {
            next.ttl = v;
        }
        next.check_values().map_err(|(field, problem)| {
            let option = match field {
                "maxlen" => "--sync-maxlen",
                "ttl" => "--mcast-ttl",
                "group" => "--mcast-group",
                other => other,
            };
            format!("{option}: {problem}")
        })?;
        self.interface(&next)?;
        let running = !self.config.roles.is_empty();
        if running {
            let mut same = self.config.clone();
            same.roles.clone_from(&next.roles);
            if same != next {
                let name = self.interface(&self.config).map(|i| i.name.clone())?;
                return Err(format!(
                    "the other sync daemon runs with ({}): give the same options, or stop it first",
                    self.config.describe(&name)
                ));
            }
        }
        next.roles.push(role);
        self.switch(next)
    }

    /// `--stop-daemon`.
    fn stop_role(&mut self, role: SyncRoleName) -> Result<(), String> {
        let role = role_of(role);
        if !self.config.has(role) {
            return Err(format!("no {} sync daemon is running", role.as_str()));
        }
        let mut next = self.config.clone();
        next.roles.retain(|r| *r != role);
        self.switch(next)
    }
}

fn role_of(name: SyncRoleName) -> SyncRole {
    match name {
        SyncRoleName::Master => SyncRole::Master,
        SyncRoleName::Backup => SyncRole::Backup,
    }
}

impl Part for SyncPart {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn start(&mut self) -> Result<(), Error> {
        self.start_engine()
    }

    fn command(&mut self, request: &Request) -> Option<Reply> {
        let outcome = match request {
            Request::StartDaemon(params) => self.start_role(params),
            Request::StopDaemon { role } => self.stop_role(*role),
            _ => return None,
        };
        Some(match outcome {
            Ok(()) => Reply::Done,
            Err(message) => Reply::Error(ControlError::new(ErrorKind::Invalid, message)),
        })
    }

    fn status(&self) -> Value {
        let mut status = self.shared.json(Instant::now());
        if let Value::Object(map) = &mut status {
            map.insert("running".to_owned(), self.thread.is_some().into());
        }
        status
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        self.stop_engine();
    }
}

/// A random `u32` from the standard library's seeded hasher.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (RandomState::new().hash_one((std::process::id(), t.as_nanos())) >> 16) as u32
}

/// Records gathered for one message.
#[derive(Debug)]
struct Batch {
    limit: usize,
    records: Vec<Record>,
    len: usize,
}

impl Batch {
    fn new(max_len: MaxLen) -> Self {
        Self {
            limit: max_len.get(),
            records: Vec::new(),
            len: HEADER_LEN + TRAILER_LEN,
        }
    }

    /// Adds `record` if it fits; false: send the batch first.
    fn push(&mut self, record: Record) -> Result<(), Record> {
        let len = record.wire_len();
        if self.len + len > self.limit || self.records.len() >= usize::from(u16::MAX) {
            return Err(record);
        }
        self.len += len;
        self.records.push(record);
        Ok(())
    }

    fn take(&mut self) -> Vec<Record> {
        self.len = HEADER_LEN + TRAILER_LEN;
        std::mem::take(&mut self.records)
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// A walk of the table and the templates: a full transfer, or a refresh
/// of the connections this director forwards.
#[derive(Debug)]
struct Walk {
    conns: Option<ExportCursor>,
    templates: Option<TemplateCursor>,
    /// Exported, not yet sent.
    ready: VecDeque<Record>,
    /// The first message of a transfer is yet to be sent.
    first: bool,
    /// A refresh: the peer's copies are left out.
    own_only: bool,
    records: u64,
    started: Instant,
}

impl Walk {
    fn new(own_only: bool) -> Self {
        Self {
            conns: Some(ExportCursor::START),
            templates: Some(TemplateCursor::START),
            ready: VecDeque::new(),
            first: true,
            own_only,
            records: 0,
            started: Instant::now(),
        }
    }

    /// Exports until `want` records are ready or the walk is over.
    fn fill(&mut self, director: &Director, now: Millis, want: usize) {
        while self.ready.len() < want {
            if let Some(cursor) = self.conns {
                let max = want - self.ready.len();
                let (records, next) = if self.own_only {
                    export_chunk_where(director.table(), cursor, max, now, |c| {
                        !c.flags.contains(ConnFlags::SYNCED)
                    })
                } else {
                    export_chunk(director.table(), cursor, max, now)
                };
                self.ready.extend(records);
                self.conns = next;
            } else if let Some(cursor) = self.templates {
                let (records, next) = export_templates(director, cursor, want, now);
                self.ready.extend(records);
                self.templates = next;
            } else {
                return;
            }
        }
    }

    fn walked(&self) -> bool {
        self.conns.is_none() && self.templates.is_none()
    }
}

/// The thread's counters beyond the reliability layer's.
#[derive(Debug, Default)]
struct Counts {
    import: ImportCounts,
    kept: u64,
    records_sent: u64,
    transfers_sent: u64,
    transfers_started: u64,
    refreshes: u64,
    send_errors: u64,
    dropped: [u64; Dropped::ALL.len()],
    unsent_events: u64,
    last_heard: Option<Instant>,
}

/// The sync's thread.
struct Engine {
    syncid: u8,
    max_len: MaxLen,
    key: AuthKey,
    refresh_every: Duration,
    /// The configured unicast peer.
    peer_addr: Option<IpAddr>,
    socket: SyncSocket,
    director: Arc<Director>,
    clock: Clock,
    feed: Option<Arc<ConnFeed>>,
    sender: Option<Sender<Vec<Record>>>,
    receiver: Option<Receiver<Vec<Record>>>,
    /// The peer, once a message from it verified.
    peer: Option<SocketAddr>,
    batch: Batch,
    transfer: Option<Walk>,
    refresh: Option<Walk>,
    next_refresh_at: Instant,
    feed_dropped_seen: u64,
    oldest_unacked_at: Option<Instant>,
    ha: Option<Arc<crate::ha::router::Shared>>,
    shared: Arc<SyncShared>,
    counts: Counts,
    out: Vec<u8>,
    last_publish: Instant,
    logged_other_peer: bool,
}

impl Engine {
    fn serve(mut self, stop: &Inbox<()>) {
        let mut buf = vec![0u8; 65_536];
        // Until the part drops its end of the channel.
        while let Err(TryRecvError::Empty) = stop.try_recv() {
            // Sleep in the socket until a message or the turn's end.
            let mut wait = TURN;
            for _ in 0..DATAGRAMS_PER_TURN {
                match self.socket.recv(&mut buf, wait) {
                    Ok(Some((len, from))) => self.receive(&buf[..len], from),
                    Ok(None) => break,
                    Err(e) => {
                        warn!("sync: receiving: {e}");
                        std::thread::sleep(TURN);
                        break;
                    }
                }
                wait = Duration::ZERO;
            }
            self.turn();
        }
        self.publish(Instant::now());
    }

    /// The director's clock.
    fn now_ms(&self) -> Millis {
        self.clock.now()
    }

    /// This director forwards: HA master, or no `[ha]`.
    fn active(&self) -> bool {
        self.ha
            .as_ref()
            .is_none_or(|ha| ha.view.lock().state == HaState::Master)
    }

    /// One turn's work after the socket: the feed, the walks, the timers.
    fn turn(&mut self) {
        let now = Instant::now();
        self.drain_feed();
        self.step_transfer();
        self.step_refresh(now);
        self.flush();
        let ms = self.now_ms();
        if let Some(sender) = &mut self.sender {
            let outs = sender.tick(ms);
            self.sender_outputs(outs);
        }
        if let Some(receiver) = &mut self.receiver {
            let outs = receiver.tick(ms);
            self.receiver_outputs(outs);
        }
        match self.sender.as_ref().map(Sender::queued) {
            Some(0) | None => self.oldest_unacked_at = None,
            Some(_) => {
                self.oldest_unacked_at.get_or_insert(now);
            }
        }
        if now.duration_since(self.last_publish) >= PUBLISH_EVERY {
            self.last_publish = now;
            self.publish(now);
        }
    }

    /// Room in the sender's queue for live events (None: no master role
    /// or no peer yet).
    fn room(&self) -> Option<usize> {
        let sender = self.sender.as_ref()?;
        sender.peer_epoch()?;
        Some(sender.room())
    }

    fn drain_feed(&mut self) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let dropped = feed.dropped();
        if dropped != self.feed_dropped_seen {
            self.feed_dropped_seen = dropped;
            // What the full queue dropped comes back with a refresh.
            if self.refresh.is_none() {
                self.next_refresh_at = Instant::now();
            }
        }
        if self.room().is_none() {
            // No peer yet: its first request for the whole table covers
            // what happens until then.
            while feed.pop().or_else(|| feed.pop_half_open()).is_some() {
                self.counts.unsent_events += 1;
            }
            return;
        }
        let now = self.now_ms();
        let mut handled = 0;
        while handled < EVENTS_PER_TURN && self.room().is_some_and(|r| r > 1) {
            let Some(event) = feed.pop() else {
                break;
            };
            handled += 1;
            self.add_event(&event, now);
        }
        if handled < EVENTS_PER_TURN && feed.len().0 == 0 {
            for _ in 0..HALF_OPEN_PER_TURN {
                if self.room().is_none_or(|r| r <= 1) {
                    break;
                }
                let Some(event) = feed.pop_half_open() else {
                    break;
                };
                self.add_event(&event, now);
            }
        }
    }

    /// Adds the records of a worker's event: the connection's state (a
    /// delete for a removal) and, for a new connection of a persistent
    /// service, its template.
    fn add_event(&mut self, event: &ConnEvent, now: Millis) {
        if let Some(record) = event_record(self.director.table(), event, now) {
            self.add(record);
        }
        if event.kind == ConnEventKind::Created
            && let Some(record) = template_record(&self.director, &event.key, now)
        {
            self.add(record);
        }
    }

    /// Adds a live record to the batch, sending the batch when full.
    fn add(&mut self, record: Record) {
        if let Err(record) = self.batch.push(record) {
            self.flush();
            // A record always fits an empty message (maxlen ≥ 256).
            let _ = self.batch.push(record);
        }
    }

    /// Sends the live batch, if any.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = self.batch.take();
        self.send_data(records, Flags::EMPTY);
    }

    fn send_data(&mut self, records: Vec<Record>, flags: Flags) {
        let ms = self.now_ms();
        let Some(sender) = &mut self.sender else {
            return;
        };
        self.counts.records_sent += records.len() as u64;
        let outs = sender.send(records, flags, ms);
        self.sender_outputs(outs);
    }

    fn step_transfer(&mut self) {
        let Some(mut walk) = self.transfer.take() else {
            return;
        };
        let done = self.step_walk(&mut walk, true);
        if done {
            self.counts.transfers_sent += 1;
            info!(
                "sync: sent the whole table to the peer: {} records in {} ms",
                walk.records,
                walk.started.elapsed().as_millis()
            );
        } else if self.transfer.is_none() {
            self.transfer = Some(walk);
        }
    }

    fn step_refresh(&mut self, now: Instant) {
        if self.refresh.is_none() {
            if self.refresh_every.is_zero()
                || now < self.next_refresh_at
                || self.room().is_none()
                || !self.active()
            {
                return;
            }
            self.next_refresh_at = now + self.refresh_every;
            self.refresh = Some(Walk::new(true));
        }
        // A transfer sends everything anyway.
        if self.transfer.is_some() {
            return;
        }
        let Some(mut walk) = self.refresh.take() else {
            return;
        };
        if self.step_walk(&mut walk, false) {
            self.counts.refreshes += 1;
        } else {
            self.refresh = Some(walk);
        }
    }

    /// Sends what the room allows of `walk` (a transfer's first message
    /// flagged BULK_START, its last BULK_END); true once it is all sent.
    fn step_walk(&mut self, walk: &mut Walk, transfer: bool) -> bool {
        let now = self.now_ms();
        for _ in 0..WALK_MESSAGES_PER_TURN {
            if self.room().is_none_or(|r| r <= LIVE_RESERVE) {
                return false;
            }
            // Afterwards records are ready, or the walk is over.
            walk.fill(&self.director, now, 256);
            let mut batch = Batch::new(self.max_len);
            while let Some(record) = walk.ready.pop_front() {
                if let Err(record) = batch.push(record) {
                    walk.ready.push_front(record);
                    break;
                }
            }
            let last = walk.walked() && walk.ready.is_empty();
            if batch.is_empty() && !transfer {
                return true;
            }
            let mut flags = Flags::EMPTY;
            if transfer && walk.first {
                flags = flags.union(Flags::BULK_START);
            }
            if transfer && last {
                flags = flags.union(Flags::BULK_END);
            }
            walk.first = false;
            let records = batch.take();
            walk.records += records.len() as u64;
            self.send_data(records, flags);
            if last {
                return true;
            }
        }
        false
    }

    fn sender_outputs(&mut self, outs: Vec<SenderOutput<Vec<Record>>>) {
        for out in outs {
            match out {
                SenderOutput::Send(envelope) => self.transmit(&envelope),
                SenderOutput::BulkNeeded(reason) => {
                    info!("sync: the peer needs the whole table ({reason:?}): sending it");
                    self.counts.transfers_started += 1;
                    self.transfer = Some(Walk::new(false));
                }
            }
        }
    }

    fn receiver_outputs(&mut self, outs: Vec<ReceiverOutput<Vec<Record>>>) {
        for out in outs {
            match out {
                ReceiverOutput::Deliver { payload, .. } => {
                    let now = self.now_ms();
                    let active = self.active();
                    for record in &payload {
                        self.apply(record, active, now);
                    }
                }
                ReceiverOutput::Send(envelope) => self.transmit(&envelope),
                ReceiverOutput::InSync => {
                    let s = self.receiver.as_ref().map(Receiver::stats);
                    info!(
                        "sync: in sync: this director holds the peer's table ({} records delivered)",
                        s.map_or(0, |s| s.delivered)
                    );
                    self.shared.set_in_sync(true);
                }
                ReceiverOutput::LostSync(why) => {
                    warn!("sync: lost sync with the peer ({why:?}): asking for its whole table");
                    self.shared.set_in_sync(false);
                }
            }
        }
    }

    /// Applies one of the peer's records.
    fn apply(&mut self, record: &Record, active: bool, now: Millis) {
        if active
            && let Record::Upsert(c) = record
            && !c.key.template
        {
            let key = xvs_packet::FlowKey {
                proto: c.key.proto,
                src: c.key.client,
                dst: c.key.vip,
                sport: c.key.cport,
                dport: c.key.vport,
            };
            if self
                .director
                .table()
                .lookup_inbound(&key, now)
                .is_some_and(|conn| !conn.flags.contains(ConnFlags::SYNCED))
            {
                self.counts.kept += 1;
                return;
            }
        }
        let outcome = table::import(&self.director, record, now);
        self.counts.import.count(outcome);
    }

    /// Writes, signs and sends one message.
    fn transmit(&mut self, envelope: &Envelope<Vec<Record>>) {
        let header = envelope.header(self.syncid);
        let mut builder = match MessageBuilder::new(&mut self.out, self.max_len, &header) {
            Ok(b) => b,
            Err(e) => {
                error!("sync: cannot write a message: {e}");
                self.counts.send_errors += 1;
                return;
            }
        };
        if let Message::Data { payload, .. } = &envelope.message {
            for record in payload {
                if !builder.push(record) {
                    error!("sync: a batch did not fit its message: record left out");
                    break;
                }
            }
        }
        let len = builder.sign(&self.key);
        if let Err(e) = self.socket.send(&self.out[..len]) {
            self.counts.send_errors += 1;
            if self.counts.send_errors.is_power_of_two() {
                warn!(
                    "sync: sending to {}: {e} ({} failures so far; the peer's Nacks repair them)",
                    self.socket.destination(),
                    self.counts.send_errors
                );
            }
        }
    }

    /// One datagram from the socket.
    fn receive(&mut self, datagram: &[u8], from: SocketAddr) {
        let packet = match Packet::new_checked(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.counts.dropped[Dropped::Malformed as usize] += 1;
                return;
            }
        };
        if packet.verify(&self.key).is_err() {
            self.counts.dropped[Dropped::Auth as usize] += 1;
            return;
        }
        let header = packet.header();
        if header.syncid != self.syncid {
            self.counts.dropped[Dropped::OtherSyncid as usize] += 1;
            return;
        }
        let expected = self.peer_addr.or(self.peer.map(|p| p.ip()));
        if expected.is_some_and(|a| a != from.ip()) {
            self.counts.dropped[Dropped::OtherPeer as usize] += 1;
            if !self.logged_other_peer {
                self.logged_other_peer = true;
                warn!(
                    "sync: a verified message from {from}, not from the peer {}: ignored (one peer per syncid)",
                    expected.map_or_else(String::new, |a| a.to_string())
                );
            }
            return;
        }
        if self.peer.is_none() {
            info!("sync: peer {from}");
        }
        self.peer = Some(from);
        self.counts.last_heard = Some(Instant::now());
        let records: Vec<Record> = if matches!(header.kind, Kind::Data) {
            packet.records().collect()
        } else {
            Vec::new()
        };
        let envelope = Envelope::from_header(&header, records);
        let ms = self.now_ms();
        if let Some(sender) = &mut self.sender {
            let outs = sender.handle(&envelope, ms);
            self.sender_outputs(outs);
        }
        if let Some(receiver) = &mut self.receiver {
            let outs = receiver.handle(envelope, ms);
            self.receiver_outputs(outs);
        }
    }

    fn publish(&self, now: Instant) {
        let mut s = self.shared.stats.lock();
        s.peer = self.peer;
        s.in_sync = self.receiver.as_ref().is_some_and(Receiver::in_sync);
        if let Some(sender) = &self.sender {
            s.sender = sender.stats();
            s.queued = sender.queued();
        }
        s.lag_ms = self
            .oldest_unacked_at
            .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64);
        if let Some(receiver) = &self.receiver {
            s.receiver = receiver.stats();
            s.pending = receiver.pending();
        }
        s.import = self.counts.import;
        s.kept = self.counts.kept;
        s.records_sent = self.counts.records_sent;
        s.transfers_sent = self.counts.transfers_sent;
        s.transfers_started = self.counts.transfers_started;
        s.refreshes = self.counts.refreshes;
        s.send_errors = self.counts.send_errors;
        s.dropped = self.counts.dropped;
        s.unsent_events = self.counts.unsent_events;
        s.transferring = self.transfer.is_some();
        s.last_heard = self.counts.last_heard;
        if let Some(feed) = &self.feed {
            s.feed_dropped = (feed.dropped(), feed.dropped_half_open());
            s.feed_len = feed.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use etherparse::PacketBuilder;
    use xvs_packet::sync::AuthKey;
    use xvs_packet::{FlowKey, IpProtocol};

    use super::*;
    use crate::config::ClusterConfig;
    use crate::io::KernelCounter;
    use crate::pipeline::{HEADROOM, Verdict};
    use crate::types::IfaceId;
    use crate::types::IpNet;

    const CONFIG: &str = concat!(
        crate::test_support::two_interfaces!(),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.20"
port = 80
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.13"
method = "dr"
[[services.real_servers]]
address = "192.0.2.14"
method = "dr"

[[neighbours]]
interface = "s0"
address = "192.0.2.13"
mac = "02:00:00:00:00:13"
[[neighbours]]
interface = "s0"
address = "192.0.2.14"
mac = "02:00:00:00:00:14"
"#
    );

    /// A client's TCP segment to the VIP (`S`: SYN, `A`: ACK).
    fn segment(cport: u16, flags: &str) -> Vec<u8> {
        let mut t = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 1, 1])
            .ipv4([198, 51, 100, 7], [203, 0, 113, 20], 64)
            .tcp(cport, 80, 1000, 64240);
        for f in flags.chars() {
            t = match f {
                'S' => t.syn(),
                'A' => t.ack(5000),
                _ => unreachable!(),
            };
        }
        let mut out = Vec::new();
        t.write(&mut out, b"").unwrap();
        out
    }

    /// Opens connections from client ports `ports` through `d`.
    fn open(d: &Director, ports: std::ops::Range<u16>, now: Millis) {
        let mut w = d.worker(1);
        for port in ports {
            for flags in ["S", "A"] {
                let input = segment(port, flags);
                let mut buf = vec![0u8; HEADROOM + input.len()];
                buf[HEADROOM..].copy_from_slice(&input);
                let out = d.process(&mut w, &mut buf, HEADROOM, input.len(), IfaceId(0), now);
                assert!(matches!(out.verdict, Verdict::Transmit { .. }), "{flags}");
            }
        }
    }

    /// The real server of every connection from a client port, sorted.
    fn servers(d: &Director, now: Millis) -> Vec<(u16, IpAddr, bool)> {
        let mut out = Vec::new();
        for port in 1..=u16::MAX {
            let key = FlowKey {
                proto: IpProtocol::Tcp,
                src: "198.51.100.7".parse().unwrap(),
                dst: "203.0.113.20".parse().unwrap(),
                sport: port,
                dport: 80,
            };
            if let Some(c) = d.table().lookup_inbound(&key, now) {
                out.push((port, c.real_server, c.flags.contains(ConnFlags::SYNCED)));
            }
        }
        out
    }

    fn part(
        d: &Arc<Director>,
        clock: Clock,
        own: &str,
        peer: &str,
        port: u16,
        roles: &str,
    ) -> (SyncPart, Arc<SyncShared>) {
        let config: SyncConfig = toml::from_str(&format!(
            "roles = {roles}\npeers = [\"{peer}\"]\nsource = \"{own}\"\nport = {port}\nrefresh_interval = \"1s\""
        ))
        .unwrap();
        let shared = Arc::new(SyncShared::new(false));
        let ifindex: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let part = SyncPart::new(
            config,
            None,
            AuthKey::new(1, &[0x42; 32]).unwrap(),
            vec![HaInterface {
                name: "lo".to_owned(),
                ifindex,
                role: InterfaceRole::Client,
                mac: [0; 6],
                addresses: vec![IpNet {
                    addr: own.parse().unwrap(),
                    prefix_len: 8,
                }],
            }],
            Arc::clone(d),
            clock,
            None,
            Arc::clone(&shared),
        );
        (part, shared)
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !done() {
            assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Two directors on loopback: the table a director held before its
    /// peer started reaches the peer in a full transfer (the peer is "in
    /// sync" only then), the connections opened afterwards follow one by
    /// one, and the copies stay flagged SYNCED (out of the peer's
    /// scheduling) on the same real servers. Needs root (SO_BINDTODEVICE).
    #[test]
    fn a_late_peer_gets_the_whole_table_then_every_new_connection() {
        let config = ClusterConfig::parse("sync.toml", CONFIG).unwrap();
        let clock = Clock::start();
        let a = Arc::new(Director::new(&config, clock.now(), 1).unwrap());
        let b = Arc::new(Director::new(&config, clock.now(), 2).unwrap());
        open(&a, 1000..1300, clock.now());
        let port = 20_000 + (std::process::id() % 20_000) as u16;
        let both = "[\"master\", \"backup\"]";
        let (mut part_a, shared_a) = part(&a, clock, "127.0.0.1", "127.0.0.2", port, both);
        // B starts with no role, as a director with [ha]'s key and no
        // [sync] does; its roles come from xvsadm --start-daemon.
        let (mut part_b, shared_b) = part(&b, clock, "127.0.0.2", "127.0.0.1", port, "[]");
        part_a.start().unwrap();
        part_b.start().unwrap();
        assert_eq!(part_b.status()["running"], false);
        let start = |role, syncid| {
            Request::StartDaemon(DaemonParams {
                role,
                interface: None,
                syncid,
                maxlen: None,
                group: None,
                port: None,
                ttl: None,
            })
        };
        assert_eq!(
            part_b.command(&start(SyncRoleName::Backup, None)),
            Some(Reply::Done)
        );
        let refused = |reply: Option<Reply>, words: &str| match reply {
            Some(Reply::Error(e)) => assert!(e.message.contains(words), "{}", e.message),
            other => panic!("{other:?}"),
        };
        refused(
            part_b.command(&start(SyncRoleName::Backup, None)),
            "already running",
        );
        refused(
            part_b.command(&start(SyncRoleName::Master, Some(9))),
            "give the same options",
        );
        let Request::StartDaemon(mut zero_ttl) = start(SyncRoleName::Master, None) else {
            unreachable!()
        };
        zero_ttl.ttl = Some(0);
        refused(
            part_b.command(&Request::StartDaemon(zero_ttl)),
            "--mcast-ttl: a TTL of 0",
        );
        assert_eq!(
            part_b.command(&start(SyncRoleName::Master, Some(0))),
            Some(Reply::Done)
        );
        assert_eq!(part_b.command(&Request::List), None, "not the part's");

        wait_for("B in sync", || shared_b.in_sync());
        let now = clock.now();
        let on_a = servers(&a, now);
        assert_eq!(on_a.len(), 300);
        assert!(on_a.iter().all(|(_, _, synced)| !synced));
        let on_b = servers(&b, now);
        assert_eq!(
            on_b.iter().map(|(p, rs, _)| (*p, *rs)).collect::<Vec<_>>(),
            on_a.iter().map(|(p, rs, _)| (*p, *rs)).collect::<Vec<_>>(),
        );
        assert!(
            on_b.iter().all(|(_, _, synced)| *synced),
            "B does not schedule on them"
        );
        // A's backup role has B's (empty) table too.
        wait_for("A in sync", || shared_a.in_sync());

        // New connections on A reach B through the workers' events.
        open(&a, 2000..2200, clock.now());
        wait_for("500 on B", || servers(&b, clock.now()).len() == 500);
        let now = clock.now();
        assert_eq!(
            servers(&a, now)
                .into_iter()
                .map(|(p, rs, _)| (p, rs))
                .collect::<Vec<_>>(),
            servers(&b, now)
                .into_iter()
                .map(|(p, rs, _)| (p, rs))
                .collect::<Vec<_>>(),
        );
        // Nothing came back to A: its own entries are newer.
        assert_eq!(servers(&a, now).iter().filter(|c| c.2).count(), 0);
        let status = part_b.status();
        assert_eq!(status["receiver"]["bulks_completed"], 1, "{status}");
        assert_eq!(status["import"]["inserted"], 500, "{status}");

        // --stop-daemon: the role stops (the other runs on); twice is an
        // error.
        assert_eq!(
            part_b.command(&Request::StopDaemon {
                role: SyncRoleName::Master
            }),
            Some(Reply::Done)
        );
        assert!(b.feed().is_none(), "B's workers stop reporting");
        refused(
            part_b.command(&Request::StopDaemon {
                role: SyncRoleName::Master,
            }),
            "no master sync daemon",
        );
        assert_eq!(part_b.status()["roles"], serde_json::json!(["backup"]));
        let mut counters = KernelCounter::new("test");
        let mut running = Running {
            live: None,
            program: None,
            xdp_counters: &mut counters,
        };
        part_a.stop(&mut running);
        part_b.stop(&mut running);
        assert!(a.feed().is_none(), "the workers stop reporting");
    }
}
