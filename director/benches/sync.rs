//! What the connection-state sync (issue #18) costs the master and what a
//! backup absorbs, measured in one run so that the ratios hold:
//!
//! * `sync/syn_path_sync_off`, `sync/syn_path_sync_on`: the SYN of a fresh
//!   flow through [`Director::process`] (schedule, insert, forward) in a
//!   table of 1M established connections, as `pipeline_1M/syn_new_flow`
//!   does: batches of 32 SYNs timed, then (untimed) the clock moves 1 ms
//!   and the sweeper reclaims up to 4096 expired half-open connections.
//!   With sync on the workers report every connection created into the
//!   feed (`Director::set_feed`, the daemon's queue sizes), drained between
//!   batches (untimed) so that it never fills.
//! * `sync/master_work`: the sync daemon's work on the master for those
//!   connections, per new connection: the same SYN batches and sweeps run
//!   untimed, then the feed is drained timed. Each connection of this
//!   bench is reported twice, created half-open by its SYN and removed when
//!   the sweeper reclaims it (about two records per connection), and each
//!   event goes through what the daemon does with it:
//!   `sync::table::event_record`, batching records into messages of the
//!   default `--sync-maxlen` (1472 bytes), numbering and queueing each
//!   message in the reliability layer's `Sender` (which keeps a copy to
//!   resend; the peer's acks are applied every 32 messages, as its receiver
//!   sends them), `MessageBuilder` and `sign` (HMAC-SHA256). Not the
//!   socket's `send` (one syscall per message of about 59 records).
//! * `sync/backup_absorb_transfer`: a full transfer of a real export
//!   (`sync::table::export_chunk`) of a table of 100,000 established
//!   connections, signed messages of the default maxlen (BULK_START to
//!   BULK_END), absorbed one message per iteration by a backup:
//!   `Packet::new_checked`, `verify`, the header and the records read, the
//!   reliability layer's `Receiver` (ordering, delivery, an ack written and
//!   signed every 32 messages) and `sync::table::import` of each record
//!   into the table of a fresh director of the same config (a new director
//!   and receiver for each pass, untimed). Throughput in connections.
//! * `sync/backup_absorb_live`: the same for the master's own live stream,
//!   the messages `master_work` signed for 131,072 of its new connections
//!   (creations and removals: a removal deletes what an earlier creation
//!   inserted; the stream's first 32,768 connections' worth is absorbed
//!   untimed first). Throughput in the master's connections.
//!
//! Then the figures of the ratios are measured again, paired (see
//! [`paired`]: criterion's runs are seconds apart, and on a shared machine
//! its sync-on and sync-off figures can differ by more than sync costs),
//! and the ratios printed:
//! * absorbed connections per second ÷ the SYN path's (sync off) new
//!   connections per second: ≥ 1, the backup keeps up with the master's own
//!   new-connection rate (for a transfer, the measure, and for the
//!   live stream);
//! * (SYN path sync on − sync off + the master's sync work per connection)
//!   ÷ SYN path sync off: < 10 %, what sync adds to the master's SYN path.
//!
//! With `XVS_SYNC_BENCH_JSON=FILE` it also writes them to FILE (for
//! `testbed/bench.sh`). Everything runs on one thread: the feed's queues
//! stay in this core's cache, where a daemon on another core would take
//! cache misses on them.
//!
//! `cargo bench -p xvs-director --bench sync` (about a minute).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use etherparse::PacketBuilder;
use xvs_director::config::ClusterConfig;
use xvs_director::conn::{ConnFeed, Millis};
use xvs_director::pipeline::{Director, HEADROOM, IfaceId, Verdict, Worker};
use xvs_director::sync::reliable::{
    Envelope, Message, Receiver, ReceiverConfig, ReceiverOutput, Sender, SenderConfig, SenderOutput,
};
use xvs_director::sync::table::{ExportCursor, event_record, export_chunk, import};
use xvs_packet::sync::{
    AuthKey, Flags, HEADER_LEN, Header, Kind, MaxLen, MessageBuilder, Packet, Record, TRAILER_LEN,
};

/// The pipeline benchmark's cluster: 5 NAT real servers under wlc, a
/// table of 1.1M, half-open connections expire after 1 s.
const CONFIG: &str = include_str!("pipeline.toml");

/// Established connections in the master's table.
const CONNS: usize = 1_000_000;
/// Fresh flows cycled through by the SYN benchmarks.
const SYN_FLOWS: usize = 1 << 18;
/// The table a backup absorbs (a full transfer's worth).
const EXPORTED: usize = 100_000;
/// The master's live stream a backup absorbs: the messages of this many
/// new connections, after those of [`LIVE_WARM`] more (absorbed untimed:
/// the removals in the stream name connections created about 1 s of clock,
/// 32,000 connections, earlier).
const LIVE_CONNS: u64 = 131_072;
const LIVE_WARM: u64 = 32_768;
const FRAME_LEN: usize = 54;
const STRIDE: usize = 64;
const SYNS_PER_MS: usize = 32;
const HOUSEKEEPING_BUDGET: usize = 4096;
/// The daemon's queue sizes (`daemon::sync`).
const FEED_EVENTS: usize = 65_536;
const FEED_HALF_OPEN: usize = 16_384;
const SENDER_QUEUE: usize = 4096;
/// The receiver acknowledges every this many messages (its default).
const ACK_EVERY: usize = 32;

const CLIENT_SIDE: IfaceId = IfaceId(0);
const CLIENT_IF_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];
const VIP: [u8; 4] = [203, 0, 113, 10];

const MASTER_EPOCH: u32 = 0x6d61_7374;
const BACKUP_EPOCH: u32 = 0x6261_636b;
const SYNCID: u8 = 0;

fn key() -> AuthKey {
    AuthKey::new(1, &[0x42; 32]).expect("a valid key")
}

/// Client `i`: 4096 ports on each of many addresses of 10.0.0.0/8.
fn client(i: usize) -> ([u8; 4], u16) {
    let addr = Ipv4Addr::from(0x0a00_0000 | (i >> 12) as u32).octets();
    (addr, 1024 + (i & 0xfff) as u16 * 15)
}

/// A client's SYN (or ACK) to the VIP's port 80.
fn frame(i: usize, syn: bool) -> Vec<u8> {
    let (src, sport) = client(i);
    let tcp = PacketBuilder::ethernet2(ROUTER_MAC, CLIENT_IF_MAC)
        .ipv4(src, VIP, 64)
        .tcp(sport, 80, 1, 65_535);
    let tcp = if syn { tcp.syn() } else { tcp.ack(1) };
    let mut out = Vec::with_capacity(FRAME_LEN);
    tcp.write(&mut out, &[]).expect("a frame fits in a Vec");
    assert_eq!(out.len(), FRAME_LEN);
    out
}

fn process(director: &Director, worker: &mut Worker, buf: &mut [u8], f: &[u8], now: Millis) {
    buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(f);
    let out = director.process(worker, buf, HEADROOM, FRAME_LEN, CLIENT_SIDE, now);
    assert!(
        matches!(out.verdict, Verdict::Transmit { .. }),
        "{:?}",
        out.verdict
    );
}

/// A director of the bench's cluster holding `n` established connections
/// of clients `first..first + n`.
fn director_with(n: usize, first: usize, seed: u64) -> (Director, Worker) {
    let config = ClusterConfig::parse("bench.toml", CONFIG).expect("the bench config is valid");
    let director = Director::new(&config, 0, seed).expect("the bench config builds");
    let mut worker = director.worker(1);
    let mut buf = vec![0u8; HEADROOM + 2048];
    for i in first..first + n {
        for syn in [true, false] {
            process(&director, &mut worker, &mut buf, &frame(i, syn), 1);
        }
    }
    assert_eq!(director.table().len(), n);
    (director, worker)
}

/// Per-connection times (ns) of the blocks of the paired measurement.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn add(&mut self, timed: Duration, conns: u64) {
        if conns > 0 {
            self.0.push(timed.as_secs_f64() * 1e9 / conns as f64);
        }
    }

    fn median(&self) -> Option<f64> {
        let mut v = self.0.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    }
}

/// The master's side of the sync as the daemon drives it, without the
/// socket: records batched into messages, numbered and queued by the
/// reliability layer, written and signed.
struct MasterSync {
    feed: Arc<ConnFeed>,
    sender: Sender<Vec<Record>>,
    batch: Vec<Record>,
    batch_len: usize,
    limit: usize,
    key: AuthKey,
    out: Vec<u8>,
    /// Messages sent since the peer's last ack.
    unacked: usize,
    /// A copy of every message sent, while set.
    captured: Option<Vec<Vec<u8>>>,
    messages: u64,
    records: u64,
}

impl MasterSync {
    fn new() -> Self {
        let mut sender = Sender::new(
            MASTER_EPOCH,
            SenderConfig {
                queue_capacity: SENDER_QUEUE,
                ..SenderConfig::default()
            },
        );
        // The peer's request for the table makes it known to the sender.
        let request = Envelope::<()> {
            epoch: BACKUP_EPOCH,
            peer_epoch: MASTER_EPOCH,
            message: Message::BulkRequest,
        };
        let _ = sender.handle(&request, 1);
        assert_eq!(sender.peer_epoch(), Some(BACKUP_EPOCH));
        Self {
            feed: Arc::new(ConnFeed::new(FEED_EVENTS, FEED_HALF_OPEN)),
            sender,
            batch: Vec::new(),
            batch_len: HEADER_LEN + TRAILER_LEN,
            limit: MaxLen::DEFAULT.get(),
            key: key(),
            out: vec![0u8; MaxLen::MAX],
            unacked: 0,
            captured: None,
            messages: 0,
            records: 0,
        }
    }

    /// Drains both queues of the feed (the main one first, as the daemon
    /// does), sending full messages; returns the events drained.
    fn drain(&mut self, director: &Director, now: Millis) -> usize {
        let mut events = 0;
        while let Some(event) = self.feed.pop().or_else(|| self.feed.pop_half_open()) {
            events += 1;
            if let Some(record) = event_record(director.table(), &event, now) {
                self.add(record, now);
            }
        }
        events
    }

    /// Adds a record to the batch, sending the batch first when full.
    fn add(&mut self, record: Record, now: Millis) {
        let len = record.wire_len();
        if self.batch_len + len > self.limit {
            self.flush(now);
        }
        self.batch_len += len;
        self.batch.push(record);
    }

    fn flush(&mut self, now: Millis) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_len = HEADER_LEN + TRAILER_LEN;
        let records = std::mem::take(&mut self.batch);
        self.records += records.len() as u64;
        for out in self.sender.send(records, Flags::EMPTY, now) {
            if let SenderOutput::Send(envelope) = out {
                self.transmit(&envelope);
            }
        }
        self.unacked += 1;
        if self.unacked == ACK_EVERY {
            self.unacked = 0;
            let ack = Envelope::<()> {
                epoch: BACKUP_EPOCH,
                peer_epoch: MASTER_EPOCH,
                message: Message::Ack {
                    ack: self.sender.last_sent(),
                },
            };
            let _ = self.sender.handle(&ack, now);
        }
    }

    fn transmit(&mut self, envelope: &Envelope<Vec<Record>>) {
        let header = envelope.header(SYNCID);
        let mut builder =
            MessageBuilder::new(&mut self.out, MaxLen::DEFAULT, &header).expect("a valid header");
        if let Message::Data { payload, .. } = &envelope.message {
            for record in payload {
                assert!(builder.push(record), "a batch fits its message");
            }
        }
        let len = builder.sign(&self.key);
        black_box(&self.out[..len]);
        if let Some(captured) = &mut self.captured {
            captured.push(self.out[..len].to_vec());
        }
        self.messages += 1;
    }
}

/// The master: 1M established connections, fresh SYNs, the sweeper, and
/// the sync's side of the master.
struct Master {
    director: Director,
    worker: Worker,
    syns: Vec<u8>,
    next: usize,
    now: Millis,
    buf: Vec<u8>,
    sync: MasterSync,
    conns: u64,
    events: u64,
}

impl Master {
    fn new() -> Self {
        let (director, worker) = director_with(CONNS, 0, 0x5eed);
        let mut syns = Vec::with_capacity(SYN_FLOWS * STRIDE);
        for i in 0..SYN_FLOWS {
            // Clients beyond the established ones.
            syns.extend_from_slice(&frame(CONNS + (1 << 12) + i, true));
            syns.resize(syns.len() + STRIDE - FRAME_LEN, 0);
        }
        Self {
            director,
            worker,
            syns,
            next: 0,
            now: 1,
            buf: vec![0u8; HEADROOM + 2048],
            sync: MasterSync::new(),
            conns: 0,
            events: 0,
        }
    }

    /// The messages the master sends for [`LIVE_WARM`] then [`LIVE_CONNS`]
    /// new connections, after as many again unrecorded (so that the
    /// removals flow), and how many of them carry the warm part.
    fn capture_live(&mut self) -> (Vec<Vec<u8>>, usize) {
        self.run(LIVE_WARM, true);
        self.sync.captured = Some(Vec::new());
        self.run(LIVE_WARM, true);
        let warm = self.sync.captured.as_ref().map_or(0, Vec::len);
        self.run(LIVE_CONNS, true);
        let messages = self.sync.captured.take().unwrap_or_default();
        (messages, warm)
    }

    /// Runs `conns` new connections (batches of 32 SYNs, then the clock
    /// and the sweeper), with the feed on or off; returns the time the SYNs
    /// took and the time the feed's drain took after each batch.
    fn run(&mut self, conns: u64, feed_on: bool) -> (Duration, Duration) {
        if feed_on != self.director.feed().is_some() {
            self.director
                .set_feed(feed_on.then(|| Arc::clone(&self.sync.feed)));
        }
        let (mut syns, mut drain) = (Duration::ZERO, Duration::ZERO);
        let mut done = 0;
        while done < conns {
            let batch = (SYNS_PER_MS as u64).min(conns - done);
            let start = Instant::now();
            for _ in 0..batch {
                self.next = if self.next + 1 == SYN_FLOWS {
                    0
                } else {
                    self.next + 1
                };
                let at = self.next * STRIDE;
                self.buf[HEADROOM..HEADROOM + FRAME_LEN]
                    .copy_from_slice(&self.syns[at..at + FRAME_LEN]);
                let out = self.director.process(
                    &mut self.worker,
                    &mut self.buf,
                    HEADROOM,
                    FRAME_LEN,
                    CLIENT_SIDE,
                    self.now,
                );
                black_box(out);
            }
            syns += start.elapsed();
            if feed_on {
                let start = Instant::now();
                self.events += self.sync.drain(&self.director, self.now) as u64;
                drain += start.elapsed();
            }
            done += batch;
            self.now += 1;
            self.director.housekeeping(self.now, HOUSEKEEPING_BUDGET);
        }
        self.conns += conns;
        (syns, drain)
    }
}

/// `records` as a full transfer: signed data messages of the default
/// maxlen, numbered from 1, the first flagged BULK_START, the last
/// BULK_END.
fn transfer(records: &[Record], key: &AuthKey) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; MaxLen::DEFAULT.get()];
    let header = |sequence: u32, flags: Flags| Header {
        kind: Kind::Data,
        syncid: SYNCID,
        flags,
        epoch: MASTER_EPOCH,
        sequence,
        peer_epoch: BACKUP_EPOCH,
        ack: 0,
    };
    // How many records each message takes.
    let mut sizes = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let mut builder = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &header(1, Flags::EMPTY))
            .expect("a valid header");
        let taken = rest.iter().take_while(|r| builder.push(r)).count();
        assert!(taken > 0, "a record fits an empty message");
        sizes.push(taken);
        rest = &rest[taken..];
    }
    let mut messages = Vec::with_capacity(sizes.len());
    let mut rest = records;
    for (i, &n) in sizes.iter().enumerate() {
        let mut flags = Flags::EMPTY;
        if i == 0 {
            flags = flags.union(Flags::BULK_START);
        }
        if i + 1 == sizes.len() {
            flags = flags.union(Flags::BULK_END);
        }
        let mut builder =
            MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &header(i as u32 + 1, flags))
                .expect("a valid header");
        for r in &rest[..n] {
            assert!(builder.push(r));
        }
        rest = &rest[n..];
        let len = builder.sign(key);
        messages.push(buf[..len].to_vec());
    }
    messages
}

/// The 100,000 established connections of another director of the
/// cluster (clients apart from the SYN benchmarks'), exported as a full
/// transfer is.
fn exported_table() -> Vec<Record> {
    let (origin, _) = director_with(EXPORTED, CONNS + (1 << 20), 0xfeed);
    let mut records = Vec::with_capacity(EXPORTED);
    let mut cursor = Some(ExportCursor::START);
    while let Some(at) = cursor {
        let (chunk, next) = export_chunk(origin.table(), at, 256, 1);
        records.extend(chunk);
        cursor = next;
    }
    assert_eq!(records.len(), EXPORTED);
    records
}

/// A backup absorbing a stream of the master's messages, again and again,
/// each time into a fresh director.
struct Backup {
    messages: Vec<Vec<u8>>,
    /// The first `warm` messages of each pass are absorbed untimed.
    warm: usize,
    /// The master's connections the timed messages stand for.
    conns: u64,
    /// A full transfer (each pass ends in sync with the whole table).
    transfer: bool,
    key: AuthKey,
    director: Director,
    receiver: Receiver<Vec<Record>>,
    next: usize,
    now: Millis,
    out: Vec<u8>,
    rounds: u64,
    acks: u64,
}

impl Backup {
    /// `messages` from the master, the first `warm` of them untimed, the
    /// others standing for `conns` of its connections.
    fn new(messages: Vec<Vec<u8>>, warm: usize, conns: u64, transfer: bool) -> Self {
        let (director, receiver) = Self::fresh();
        Self {
            messages,
            warm,
            conns,
            transfer,
            key: key(),
            director,
            receiver,
            next: 0,
            now: 2,
            out: vec![0u8; MaxLen::MAX],
            rounds: 0,
            acks: 0,
        }
    }

    fn fresh() -> (Director, Receiver<Vec<Record>>) {
        let config = ClusterConfig::parse("bench.toml", CONFIG).expect("the bench config is valid");
        let director = Director::new(&config, 0, 0xbac).expect("the bench config builds");
        (
            director,
            Receiver::new(BACKUP_EPOCH, ReceiverConfig::default()),
        )
    }

    /// Timed messages per pass.
    fn timed(&self) -> u64 {
        (self.messages.len() - self.warm) as u64
    }

    /// The master's connections per timed message.
    fn conns_per_message(&self) -> f64 {
        self.conns as f64 / self.timed() as f64
    }

    /// Absorbs `n` timed messages from where the last call left off (after
    /// the last message, the next pass: a fresh director and receiver and
    /// the warm messages, untimed); returns the time taken.
    fn absorb(&mut self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            if self.next == self.messages.len() {
                if self.transfer {
                    // Every connection is in the table, the receiver holds
                    // the whole table.
                    assert_eq!(self.director.table().len() as u64, self.conns);
                    assert!(self.receiver.in_sync(), "the transfer completed");
                }
                (self.director, self.receiver) = Self::fresh();
                self.next = 0;
                self.rounds += 1;
            }
            while self.next < self.warm {
                self.one(self.next);
                self.next += 1;
            }
            let start = Instant::now();
            black_box(self.one(self.next));
            total += start.elapsed();
            self.next += 1;
        }
        total
    }

    /// What the daemon does with one datagram: returns the records it
    /// carried.
    fn one(&mut self, i: usize) -> u64 {
        let Ok(packet) = Packet::new_checked(&self.messages[i][..]) else {
            unreachable!("a well-formed message")
        };
        assert!(packet.verify(&self.key).is_ok(), "an authentic message");
        let header = packet.header();
        assert_eq!(header.syncid, SYNCID);
        let records: Vec<Record> = packet.records().collect();
        let carried = records.len() as u64;
        let envelope = Envelope::from_header(&header, records);
        for out in self.receiver.handle(envelope, self.now) {
            match out {
                ReceiverOutput::Deliver { payload, .. } => {
                    for record in &payload {
                        assert!(import(&self.director, record, self.now).is_ok());
                    }
                }
                ReceiverOutput::Send(envelope) => {
                    let header = envelope.header(SYNCID);
                    let builder = MessageBuilder::new(&mut self.out, MaxLen::DEFAULT, &header)
                        .expect("a valid header");
                    black_box(builder.sign(&self.key));
                    self.acks += 1;
                }
                ReceiverOutput::InSync | ReceiverOutput::LostSync(_) => {}
            }
        }
        carried
    }
}

fn benches(c: &mut Criterion, master: &mut Master, transfer: &mut Backup, live: &mut Backup) {
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(1));
    g.bench_function("syn_path_sync_off", |b| {
        b.iter_custom(|iters| master.run(iters, false).0);
    });
    g.bench_function("syn_path_sync_on", |b| {
        b.iter_custom(|iters| master.run(iters, true).0);
    });
    g.bench_function("master_work", |b| {
        b.iter_custom(|iters| master.run(iters, true).1);
    });
    // One message per iteration, throughput in the master's connections.
    for (name, backup) in [
        ("backup_absorb_transfer", transfer),
        ("backup_absorb_live", live),
    ] {
        g.throughput(Throughput::Elements(
            backup.conns_per_message().round() as u64
        ));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| backup.absorb(iters));
        });
    }
    g.finish();
}

/// New connections per block of the paired measurement.
const BLOCK: u64 = 16_384;
/// Rounds of the master's blocks per phase of the paired measurement.
const MASTER_ROUNDS: usize = 8;
/// Transfers the backup absorbs per phase (and one pass of the live
/// stream).
const TRANSFERS: usize = 3;

/// The figures per new connection (ns), each the median over the blocks
/// (or passes) of the paired measurement.
struct Paired {
    syn_off: f64,
    syn_on: f64,
    master_work: f64,
    absorb_transfer: f64,
    absorb_live: f64,
    phases: usize,
    /// The feed's events the master's work handled per connection.
    events_per_conn: f64,
}

/// The ratios' figures, measured interleaved for `budget` (at least
/// `min_phases`). Criterion's runs come one after the other, seconds apart, on a
/// machine whose load moves; here each phase measures them all within
/// about a second, so that a change of load touches them alike: 8 rounds
/// of a block of 16,384 SYNs with sync off then a block with sync on (its
/// SYNs and its drains timed apart: the master's figures, paired block by
/// block), then the backup absorbing 3 whole transfers and one pass of the
/// live stream, each into a fresh director. The master's blocks and the
/// backup's passes are kept apart in phases because they share this core's
/// caches where a real master and backup would not: the backup's fresh
/// tables sweep the master's out (the median over the blocks leaves the
/// first block after a switch out).
fn paired(
    master: &mut Master,
    transfer: &mut Backup,
    live: &mut Backup,
    budget: Duration,
    min_phases: usize,
) -> Paired {
    let (mut off, mut on, mut work, mut absorb_transfer, mut absorb_live) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let events = master.events;
    // Both streams from their first message.
    for backup in [&mut *transfer, &mut *live] {
        let left = backup.messages.len() - backup.next.max(backup.warm);
        backup.absorb(left as u64);
    }
    let started = Instant::now();
    let mut phases = 0;
    while phases < min_phases || started.elapsed() < budget {
        for _ in 0..MASTER_ROUNDS {
            off.add(master.run(BLOCK, false).0, BLOCK);
            let (syns, drain) = master.run(BLOCK, true);
            on.add(syns, BLOCK);
            work.add(drain, BLOCK);
        }
        for _ in 0..TRANSFERS {
            absorb_transfer.add(transfer.absorb(transfer.timed()), transfer.conns);
        }
        absorb_live.add(live.absorb(live.timed()), live.conns);
        phases += 1;
    }
    let median = |s: &Samples| s.median().expect("every block measured");
    Paired {
        syn_off: median(&off),
        syn_on: median(&on),
        master_work: median(&work),
        absorb_transfer: median(&absorb_transfer),
        absorb_live: median(&absorb_live),
        phases,
        events_per_conn: (master.events - events) as f64
            / (phases * MASTER_ROUNDS) as f64
            / BLOCK as f64,
    }
}

/// The ratios the issue sets targets for, printed (and written to
/// `XVS_SYNC_BENCH_JSON`).
fn report(p: &Paired) {
    let off = p.syn_off;
    let on = p.syn_on;
    let master = p.master_work;
    let syn_rate = 1e9 / off;
    let transfer_rate = 1e9 / p.absorb_transfer;
    let live_rate = 1e9 / p.absorb_live;
    let keeps_up = transfer_rate / syn_rate;
    let keeps_up_live = live_rate / syn_rate;
    let cost = (on - off + master) / off;
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    println!();
    println!(
        "sync: paired measurement, {} phases ({MASTER_ROUNDS} × {BLOCK} connections each way, {TRANSFERS} transfers, the live stream once); medians per new connection:",
        p.phases
    );
    println!(
        "sync:   SYN path, sync off          {off:8.1} ns  ({:.2} M conn/s)",
        syn_rate / 1e6
    );
    println!(
        "sync:   SYN path, sync on           {on:8.1} ns  ({:+.1} ns)",
        on - off
    );
    println!(
        "sync:   master's sync work          {master:8.1} ns  ({:.2} events per connection: its creation, its removal)",
        p.events_per_conn
    );
    println!(
        "sync:   backup absorbs, transfer    {:8.1} ns  ({:.2} M conn/s)",
        p.absorb_transfer,
        transfer_rate / 1e6
    );
    println!(
        "sync:   backup absorbs, live stream {:8.1} ns  ({:.2} M conn/s)",
        p.absorb_live,
        live_rate / 1e6
    );
    println!(
        "sync: backup absorbs (transfer) ÷ master's SYN path rate: {keeps_up:.2} (target ≥ 1) — {}",
        verdict(keeps_up >= 1.0)
    );
    println!(
        "sync: backup absorbs (live stream) ÷ master's SYN path rate: {keeps_up_live:.2} (target ≥ 1) — {}",
        verdict(keeps_up_live >= 1.0)
    );
    println!(
        "sync: (sync on − off + master's work) ÷ SYN path sync off: {:.1} % (target < 10 %) — {}",
        cost * 100.0,
        verdict(cost < 0.10)
    );
    if let Ok(path) = std::env::var("XVS_SYNC_BENCH_JSON") {
        let json = format!(
            "{{\"syn_off_ns\":{off:.2},\"syn_on_ns\":{on:.2},\"master_work_ns\":{master:.2},\"events_per_conn\":{:.3},\"absorb_transfer_ns\":{:.2},\"absorb_live_ns\":{:.2},\"keeps_up\":{keeps_up:.4},\"keeps_up_live\":{keeps_up_live:.4},\"master_cost\":{cost:.4},\"phases\":{}}}\n",
            p.events_per_conn, p.absorb_transfer, p.absorb_live, p.phases
        );
        if let Err(e) = std::fs::write(&path, json) {
            eprintln!("sync: writing {path}: {e}");
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let started = Instant::now();
    let mut master = Master::new();
    let mut transfer = Backup::new(
        transfer(&exported_table(), &key()),
        0,
        EXPORTED as u64,
        true,
    );
    let (live, warm) = master.capture_live();
    let mut live = Backup::new(live, warm, LIVE_CONNS, false);
    println!(
        "sync: a master of {CONNS} established connections ({} MiB of table); a transfer of {EXPORTED} connections in {} messages of at most {} bytes; the master's live stream for {LIVE_CONNS} new connections in {} messages; set up in {:.1?}",
        master.director.table().memory_bytes() >> 20,
        transfer.messages.len(),
        MaxLen::DEFAULT.get(),
        live.timed(),
        started.elapsed()
    );
    benches(&mut c, &mut master, &mut transfer, &mut live);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not (one
    // phase then, to run the code).
    let (budget, min_phases) = if std::env::args().any(|a| a == "--bench") {
        (Duration::from_secs(6), 3)
    } else {
        (Duration::ZERO, 1)
    };
    let paired = paired(&mut master, &mut transfer, &mut live, budget, min_phases);
    master.director.set_feed(None);

    let counters = &master.worker.counters;
    let drops: u64 = counters.drops.iter().sum();
    println!(
        "sync: the master ran {} new connections ({} table-full refusals, {} dropped): {} events drained into {} records in {} messages ({:.1} records per message), feed drops {} + {} half-open; the backup absorbed {} whole transfers and {} passes of the live stream, acked {} times",
        master.conns,
        master.director.table().refused_full(),
        drops,
        master.events,
        master.sync.records,
        master.sync.messages,
        master.sync.records as f64 / master.sync.messages.max(1) as f64,
        master.sync.feed.dropped(),
        master.sync.feed.dropped_half_open(),
        transfer.rounds,
        live.rounds,
        transfer.acks + live.acks,
    );
    assert_eq!(drops, 0, "a benchmarked SYN was dropped");
    assert_eq!(counters.stateless, 0, "the SYN benchmark filled the table");
    assert_eq!(
        master.sync.feed.dropped() + master.sync.feed.dropped_half_open(),
        0,
        "the feed never fills"
    );
    report(&paired);
}
