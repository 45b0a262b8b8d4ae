//! The reliability layer of the sync: conntrackd's FTFW model (sequence
//! numbers, a resend queue, acknowledgements, negative acknowledgements on a
//! gap, keepalives) as two pure state machines driven by the caller's clock.
//!
//! A [`Sender`] numbers the data messages it is given, keeps the last
//! `queue_capacity` of them until they are acknowledged, resends those a
//! Nack names and, when a Nack names messages already pushed out of the
//! full queue or the peer asks for its whole table, tells its caller to
//! start a full transfer ([`SenderOutput::BulkNeeded`]). Idle, it sends a
//! Hello every `hello_interval` with its last sequence, so that a receiver
//! notices when the last messages before a pause were lost.
//!
//! A [`Receiver`] delivers the peer's data messages to its caller exactly
//! once and in sequence order. It holds messages that arrived ahead of a
//! gap in a window of `window` messages, asks for the missing range with a
//! Nack (again only after `nack_timeout`, never once per packet), and
//! acknowledges cumulatively every `ack_every` messages or `ack_delay`
//! after the first unacknowledged one.
//!
//! Full transfers ("bulk"): the sender's caller sends its whole table as
//! data messages, the first flagged [`Flags::BULK_START`], the last
//! [`Flags::BULK_END`], interleaved with live updates. A BULK_START
//! supersedes everything before it: a receiver that still misses earlier
//! messages skips them (counted as `skipped`) and carries on from the
//! start of the transfer. A receiver is *in sync* only once it has
//! delivered a whole transfer (its start, its end and everything between)
//! since it last lost sync: at its start, when the peer restarted (a new
//! epoch), when a gap was wider than its window, or when it had to skip
//! messages. When it loses sync it asks for a transfer (a BulkRequest,
//! repeated every `bulk_timeout` until one starts). [`Receiver::in_sync`]
//! is what lets a recovering master wait for its table before it preempts.
//!
//! Both take the peer's authenticated messages as [`Envelope`]s (see
//! [`Envelope::from_header`]) and return what to do as lists of outputs;
//! neither has a socket or a clock. The peer's epochs are judged by
//! `xvs_packet::sync::EpochGuard` (its replay rule); within an epoch, a
//! sequence delivered once is a duplicate afterwards. The payload `P` is the
//! caller's: the director's records, or a test's.

use std::collections::VecDeque;

use xvs_packet::sync::{EpochChange, EpochGuard, Flags, Header, Kind, seq_after};

use crate::conn::Millis;

/// A message between the two directors, as the reliability layer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<P> {
    /// Records, numbered.
    Data {
        /// Its sequence in the sender's epoch.
        seq: u32,
        /// Bulk transfer markers.
        flags: Flags,
        /// The records.
        payload: P,
    },
    /// The sender's keepalive.
    Hello {
        /// The last data sequence it sent.
        last_sent: u32,
    },
    /// Every data sequence up to `ack` arrived.
    Ack {
        /// Cumulative.
        ack: u32,
    },
    /// `from..=to` are missing (and everything up to `ack` arrived).
    Nack {
        /// Cumulative.
        ack: u32,
        /// The first missing sequence.
        from: u32,
        /// The last missing sequence.
        to: u32,
    },
    /// Send me your whole table.
    BulkRequest,
}

/// A message with the epochs that address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<P> {
    /// The sender's epoch.
    pub epoch: u32,
    /// The epoch of the director it is for (0: not known yet).
    pub peer_epoch: u32,
    /// What it says.
    pub message: Message<P>,
}

impl<P> Envelope<P> {
    /// The wire header of this message (its records are the caller's to
    /// add to the `xvs_packet::sync::MessageBuilder`).
    #[must_use]
    pub const fn header(&self, syncid: u8) -> Header {
        let (kind, flags, sequence, ack) = match self.message {
            Message::Data { seq, flags, .. } => (Kind::Data, flags, seq, 0),
            Message::Hello { last_sent } => (Kind::Hello, Flags::EMPTY, last_sent, 0),
            Message::Ack { ack } => (Kind::Ack, Flags::EMPTY, 0, ack),
            Message::Nack { ack, from, to } => (Kind::Nack { from, to }, Flags::EMPTY, 0, ack),
            Message::BulkRequest => (Kind::BulkRequest, Flags::EMPTY, 0, 0),
        };
        Header {
            kind,
            syncid,
            flags,
            epoch: self.epoch,
            sequence,
            peer_epoch: self.peer_epoch,
            ack,
        }
    }

    /// The message a received, authenticated `header` stands for, with
    /// `payload` (the records read from it; ignored but for data).
    #[must_use]
    pub fn from_header(header: &Header, payload: P) -> Self {
        let message = match header.kind {
            Kind::Data => Message::Data {
                seq: header.sequence,
                flags: header.flags,
                payload,
            },
            Kind::Hello => Message::Hello {
                last_sent: header.sequence,
            },
            Kind::Ack => Message::Ack { ack: header.ack },
            Kind::Nack { from, to } => Message::Nack {
                ack: header.ack,
                from,
                to,
            },
            Kind::BulkRequest => Message::BulkRequest,
        };
        Self {
            epoch: header.epoch,
            peer_epoch: header.peer_epoch,
            message,
        }
    }
}

/// The sender's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Unacknowledged data messages kept for resending (at least 1); when
    /// full, the oldest is dropped and counted. Size it to the message rate
    /// times the time a repair takes (the receiver's `nack_timeout` and a
    /// round trip): a queue that drops faster than gaps are repaired keeps
    /// restarting full transfers.
    pub queue_capacity: usize,
    /// A Hello after this long without sending.
    pub hello_interval: Millis,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            hello_interval: 1000,
        }
    }
}

/// Why the sender's caller should start a full transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkReason {
    /// The peer asked (it started, restarted or lost sync).
    Requested,
    /// The peer misses messages that the full queue has dropped. The
    /// queue is emptied: the transfer replaces everything in it.
    Dropped {
        /// The last dropped sequence it asked for.
        upto: u32,
    },
}

/// What the sender asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderOutput<P> {
    /// Send this to the peer.
    Send(Envelope<P>),
    /// Send the whole table (a transfer from BULK_START to BULK_END).
    BulkNeeded(BulkReason),
}

/// The sender's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderStats {
    /// Data messages sent (first transmissions).
    pub sent: u64,
    /// Data messages sent again for a Nack.
    pub resent: u64,
    /// Data messages dropped from the full queue before they were acked.
    pub dropped: u64,
    /// Data messages taken out of the queue unacknowledged because a full
    /// transfer replaces them (see [`BulkReason::Dropped`]).
    pub superseded: u64,
    /// Data messages acknowledged.
    pub acked: u64,
    /// Data messages not sent because no peer was known yet (its request
    /// for the whole table will cover them).
    pub unsent: u64,
    /// Hellos sent.
    pub hellos: u64,
    /// Full transfers the peer asked for.
    pub bulk_requests: u64,
    /// Messages refused by the replay rule.
    pub refused: u64,
}

#[derive(Debug)]
struct Queued<P> {
    flags: Flags,
    payload: P,
}

/// The sending half: numbers, queues and resends data messages.
#[derive(Debug)]
pub struct Sender<P> {
    epoch: u32,
    config: SenderConfig,
    peer: EpochGuard,
    /// The sequence the next data message gets.
    next_seq: u32,
    /// Unacknowledged messages, oldest first, of consecutive sequences
    /// ending at `next_seq - 1`.
    queue: VecDeque<Queued<P>>,
    /// The newest sequence dropped from the full queue unacknowledged.
    dropped_upto: Option<u32>,
    /// The newest BULK_START sent.
    bulk_start: Option<u32>,
    /// Sending (of anything) last happened then.
    last_sent_at: Option<Millis>,
    stats: SenderStats,
}

impl<P: Clone> Sender<P> {
    /// A sender in `epoch` (random and non-zero, new at each start).
    #[must_use]
    pub fn new(epoch: u32, config: SenderConfig) -> Self {
        let config = SenderConfig {
            queue_capacity: config.queue_capacity.max(1),
            ..config
        };
        Self {
            epoch,
            config,
            peer: EpochGuard::new(),
            next_seq: 1,
            queue: VecDeque::with_capacity(config.queue_capacity),
            dropped_upto: None,
            bulk_start: None,
            last_sent_at: None,
            stats: SenderStats::default(),
        }
    }

    fn envelope(&self, message: Message<P>) -> Envelope<P> {
        Envelope {
            epoch: self.epoch,
            peer_epoch: self.peer.current().unwrap_or(0),
            message,
        }
    }

    /// The sequence of the front of the queue (or the next one if empty).
    fn front_seq(&self) -> u32 {
        self.next_seq.wrapping_sub(self.queue.len() as u32)
    }

    /// Numbers and queues a data message and sends it; when the queue is
    /// full, its oldest message is dropped (and counted) first. Nothing is
    /// sent before a peer has been heard from: its first request is for the
    /// whole table anyway.
    pub fn send(&mut self, payload: P, flags: Flags, now: Millis) -> Vec<SenderOutput<P>> {
        if self.peer.current().is_none() {
            self.stats.unsent += 1;
            return Vec::new();
        }
        let seq = self.next_seq;
        if self.queue.len() == self.config.queue_capacity {
            self.queue.pop_front();
            self.dropped_upto = Some(self.front_seq().wrapping_sub(1));
            self.stats.dropped += 1;
        }
        if flags.contains(Flags::BULK_START) {
            self.bulk_start = Some(seq);
        }
        self.queue.push_back(Queued {
            flags,
            payload: payload.clone(),
        });
        self.next_seq = seq.wrapping_add(1);
        self.stats.sent += 1;
        self.last_sent_at = Some(now);
        vec![SenderOutput::Send(self.envelope(Message::Data {
            seq,
            flags,
            payload,
        }))]
    }

    /// Takes the peer's Ack, Nack or BulkRequest (other kinds are the
    /// [`Receiver`]'s and are ignored).
    pub fn handle<Q>(&mut self, envelope: &Envelope<Q>, now: Millis) -> Vec<SenderOutput<P>> {
        if matches!(
            envelope.message,
            Message::Data { .. } | Message::Hello { .. }
        ) {
            return Vec::new();
        }
        match self.peer.check(&envelope.header(0), self.epoch) {
            Err(_) => {
                self.stats.refused += 1;
                return Vec::new();
            }
            Ok(EpochChange::Same) => {}
            Ok(EpochChange::First | EpochChange::Restarted { .. }) => {
                // A new run of the peer's receiver: what is queued was for
                // the old one; the new one asks for the whole table.
                self.queue.clear();
                self.dropped_upto = None;
                self.bulk_start = None;
            }
        }
        let mut out = Vec::new();
        match envelope.message {
            Message::Ack { ack } => self.apply_ack(ack),
            Message::Nack { ack, from, to } => {
                self.apply_ack(ack);
                self.resend(from, to, ack, now, &mut out);
            }
            Message::BulkRequest => {
                self.stats.bulk_requests += 1;
                out.push(SenderOutput::BulkNeeded(BulkReason::Requested));
            }
            Message::Data { .. } | Message::Hello { .. } => {}
        }
        out
    }

    /// Frees the queued messages up to `ack` (an ack beyond what was sent
    /// is ignored).
    fn apply_ack(&mut self, ack: u32) {
        let last_sent = self.next_seq.wrapping_sub(1);
        if seq_after(ack, last_sent) {
            return;
        }
        while !self.queue.is_empty() && !seq_after(self.front_seq(), ack) {
            self.queue.pop_front();
            self.stats.acked += 1;
        }
    }

    fn resend(
        &mut self,
        from: u32,
        to: u32,
        ack: u32,
        now: Millis,
        out: &mut Vec<SenderOutput<P>>,
    ) {
        let front = self.front_seq();
        // Dropped before being acked, and not superseded by a transfer
        // started after them: only a full transfer can repair them. It
        // supersedes everything queued too (the receiver skips to its
        // start), so the queue is emptied for it: a queue full of messages
        // that the receiver holds behind the gap, and cannot acknowledge,
        // would otherwise push out the transfer itself.
        if let Some(upto) = self.dropped_upto
            && !seq_after(from, upto)
            && seq_after(upto, ack)
            && !self.bulk_start.is_some_and(|start| seq_after(start, upto))
        {
            out.push(SenderOutput::BulkNeeded(BulkReason::Dropped { upto }));
            self.stats.superseded += self.queue.len() as u64;
            self.queue.clear();
            self.dropped_upto = Some(self.last_sent());
            return;
        }
        let start = if seq_after(front, from) { front } else { from };
        let mut seq = start;
        loop {
            let offset = seq.wrapping_sub(front) as usize;
            if seq_after(seq, to) || offset >= self.queue.len() {
                break;
            }
            let queued = &self.queue[offset];
            let message = Message::Data {
                seq,
                flags: queued.flags,
                payload: queued.payload.clone(),
            };
            out.push(SenderOutput::Send(self.envelope(message)));
            self.stats.resent += 1;
            self.last_sent_at = Some(now);
            seq = seq.wrapping_add(1);
        }
    }

    /// A Hello when nothing was sent for `hello_interval`.
    pub fn tick(&mut self, now: Millis) -> Vec<SenderOutput<P>> {
        let due = self
            .last_sent_at
            .is_none_or(|at| now.saturating_sub(at) >= self.config.hello_interval);
        if !due {
            return Vec::new();
        }
        self.last_sent_at = Some(now);
        self.stats.hellos += 1;
        let last_sent = self.next_seq.wrapping_sub(1);
        vec![SenderOutput::Send(
            self.envelope(Message::Hello { last_sent }),
        )]
    }

    /// Data messages that fit before the queue starts dropping: a full
    /// transfer sends only while there is room, so that it never pushes
    /// out its own messages.
    #[must_use]
    pub fn room(&self) -> usize {
        self.config.queue_capacity - self.queue.len()
    }

    /// Data messages waiting for an ack.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The peer's epoch, once heard.
    #[must_use]
    pub const fn peer_epoch(&self) -> Option<u32> {
        self.peer.current()
    }

    /// This sender's epoch.
    #[must_use]
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The last data sequence sent (one before the first while none was).
    #[must_use]
    pub const fn last_sent(&self) -> u32 {
        self.next_seq.wrapping_sub(1)
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> SenderStats {
        self.stats
    }
}

/// The receiver's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Data messages held ahead of a gap (at least 1); a gap wider than
    /// this is not repaired message by message but by a full transfer.
    pub window: usize,
    /// Acknowledge after this many delivered messages…
    pub ack_every: u32,
    /// …or this long after the first unacknowledged one.
    pub ack_delay: Millis,
    /// A missing range is asked for again after this long.
    pub nack_timeout: Millis,
    /// A request for the whole table is repeated after this long while
    /// no transfer has started.
    pub bulk_timeout: Millis,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            window: 1024,
            ack_every: 32,
            ack_delay: 50,
            nack_timeout: 200,
            bulk_timeout: 1000,
        }
    }
}

/// Why a receiver lost sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncLoss {
    /// The peer restarted: a new epoch.
    PeerRestarted,
    /// A gap wider than the window.
    GapTooWide,
    /// Messages skipped: a full transfer started before they arrived.
    Skipped,
}

/// What the receiver asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverOutput<P> {
    /// Apply these records (in this order; each sequence once).
    Deliver {
        /// Its sequence.
        seq: u32,
        /// Bulk markers: a caller that sweeps entries a transfer did not
        /// refresh marks at BULK_START and sweeps at BULK_END.
        flags: Flags,
        /// The records.
        payload: P,
    },
    /// Send this to the peer.
    Send(Envelope<P>),
    /// A whole transfer has been delivered: the table is the peer's.
    InSync,
    /// The table may differ from the peer's until the next transfer.
    LostSync(SyncLoss),
}

/// The receiver's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiverStats {
    /// Data messages received (duplicates included).
    pub received: u64,
    /// Data messages delivered.
    pub delivered: u64,
    /// Sequences found missing.
    pub lost: u64,
    /// Missing sequences that arrived later.
    pub repaired: u64,
    /// Missing sequences given up (superseded by a full transfer, or the
    /// peer restarted).
    pub skipped: u64,
    /// Data messages received twice, or from before the first one heard.
    pub duplicates: u64,
    /// Nacks sent.
    pub nacks: u64,
    /// Acks sent (Nacks carry one too, not counted here).
    pub acks: u64,
    /// Full transfers asked for.
    pub bulk_requests: u64,
    /// Full transfers delivered whole.
    pub bulks_completed: u64,
    /// Messages refused by the replay rule.
    pub refused: u64,
}

#[derive(Debug)]
enum Slot<P> {
    Missing { nacked_at: Option<Millis> },
    Have { flags: Flags, payload: P },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bulk {
    /// No transfer wanted or under way.
    Idle,
    /// Asked for, none started yet.
    Requested { at: Millis },
    /// Its start delivered, its end not yet.
    Receiving,
}

/// The receiving half: orders, repairs and delivers the peer's data.
#[derive(Debug)]
pub struct Receiver<P> {
    epoch: u32,
    config: ReceiverConfig,
    peer: EpochGuard,
    /// The next sequence to deliver; `None` before the peer's epoch has
    /// shown one.
    next: Option<u32>,
    /// Slot `i` holds sequence `next + i`; never starts with `Have`.
    window: VecDeque<Slot<P>>,
    unacked: u32,
    first_unacked_at: Option<Millis>,
    last_ack_at: Option<Millis>,
    in_sync: bool,
    bulk: Bulk,
    /// No whole transfer can complete: none has started since sync was
    /// last lost (or since this receiver started).
    transfer_broken: bool,
    stats: ReceiverStats,
}

impl<P> Receiver<P> {
    /// A receiver in `epoch` (the director's, shared with its [`Sender`]);
    /// not in sync: its first [`Receiver::tick`] asks for the whole table.
    #[must_use]
    pub fn new(epoch: u32, config: ReceiverConfig) -> Self {
        let config = ReceiverConfig {
            window: config.window.max(1),
            ack_every: config.ack_every.max(1),
            ..config
        };
        Self {
            epoch,
            config,
            peer: EpochGuard::new(),
            next: None,
            window: VecDeque::new(),
            unacked: 0,
            first_unacked_at: None,
            last_ack_at: None,
            in_sync: false,
            bulk: Bulk::Idle,
            transfer_broken: true,
            stats: ReceiverStats::default(),
        }
    }

    /// Whether the table holds the peer's: a whole transfer delivered since
    /// sync was last lost.
    #[must_use]
    pub const fn in_sync(&self) -> bool {
        self.in_sync
    }

    /// The peer's epoch, once heard.
    #[must_use]
    pub const fn peer_epoch(&self) -> Option<u32> {
        self.peer.current()
    }

    /// The next sequence it waits for.
    #[must_use]
    pub const fn next_expected(&self) -> Option<u32> {
        self.next
    }

    /// Data messages held ahead of a gap, and gaps.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.window.len()
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> ReceiverStats {
        self.stats
    }

    fn envelope(&self, message: Message<P>) -> Envelope<P> {
        Envelope {
            epoch: self.epoch,
            peer_epoch: self.peer.current().unwrap_or(0),
            message,
        }
    }

    fn last_delivered(&self) -> u32 {
        self.next.unwrap_or(0).wrapping_sub(1)
    }

    /// Takes the peer's Data or Hello (other kinds are the [`Sender`]'s and
    /// are ignored).
    pub fn handle(&mut self, envelope: Envelope<P>, now: Millis) -> Vec<ReceiverOutput<P>> {
        let mut out = Vec::new();
        if !matches!(
            envelope.message,
            Message::Data { .. } | Message::Hello { .. }
        ) {
            return out;
        }
        match self.peer.check(&envelope.header(0), self.epoch) {
            Err(_) => {
                self.stats.refused += 1;
                return out;
            }
            Ok(EpochChange::Same | EpochChange::First) => {}
            Ok(EpochChange::Restarted { .. }) => {
                let gone = self.missing() as u64;
                self.stats.skipped += gone;
                self.window.clear();
                self.next = None;
                self.unacked = 0;
                self.first_unacked_at = None;
                self.lose_sync(SyncLoss::PeerRestarted, &mut out);
            }
        }
        match envelope.message {
            Message::Data {
                seq,
                flags,
                payload,
            } => self.data(seq, flags, payload, now, &mut out),
            Message::Hello { last_sent } => self.hello(last_sent, now, &mut out),
            _ => {}
        }
        self.nack_gaps(now, &mut out);
        out
    }

    fn missing(&self) -> usize {
        self.window
            .iter()
            .filter(|s| matches!(s, Slot::Missing { .. }))
            .count()
    }

    fn data(
        &mut self,
        seq: u32,
        flags: Flags,
        payload: P,
        now: Millis,
        out: &mut Vec<ReceiverOutput<P>>,
    ) {
        self.stats.received += 1;
        let next = *self.next.get_or_insert(seq);
        let offset = seq.wrapping_sub(next);
        if offset >= 1 << 31 {
            self.duplicate(now, out);
            return;
        }
        if offset > 0 && flags.contains(Flags::BULK_START) {
            // A transfer supersedes what came before it.
            self.skip_to(seq, now, out);
            self.lose_sync(SyncLoss::Skipped, out);
        } else if offset as usize >= self.config.window {
            self.skip_to(seq, now, out);
            self.lose_sync(SyncLoss::GapTooWide, out);
            self.request_bulk(now, out);
        }
        let next = self.next.unwrap_or(seq);
        let offset = seq.wrapping_sub(next) as usize;
        let existed = offset < self.window.len();
        self.extend_to(offset + 1);
        if matches!(self.window[offset], Slot::Have { .. }) {
            self.duplicate(now, out);
            return;
        }
        if existed {
            // Counted lost when a later one (or a Hello) showed the gap.
            self.stats.repaired += 1;
        }
        self.window[offset] = Slot::Have { flags, payload };
        self.deliver_ready(now, out);
    }

    /// Grows the window to `len` slots, the new ones missing (all but a
    /// last one that is about to be filled are counted lost).
    fn extend_to(&mut self, len: usize) {
        let before = self.window.len();
        if len <= before {
            return;
        }
        self.stats.lost += (len - before - 1) as u64;
        self.window
            .resize_with(len, || Slot::Missing { nacked_at: None });
    }

    fn hello(&mut self, last_sent: u32, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        let Some(next) = self.next else {
            self.next = Some(last_sent.wrapping_add(1));
            return;
        };
        let behind = last_sent.wrapping_add(1).wrapping_sub(next);
        if behind == 0 || behind >= 1 << 31 {
            return;
        }
        let behind = behind as usize;
        if behind > self.config.window {
            self.skip_to(last_sent.wrapping_add(1), now, out);
            self.lose_sync(SyncLoss::GapTooWide, out);
            self.request_bulk(now, out);
            return;
        }
        if behind > self.window.len() {
            self.stats.lost += (behind - self.window.len()) as u64;
            self.window
                .resize_with(behind, || Slot::Missing { nacked_at: None });
        }
    }

    /// Gives up everything before `seq`: what was held is delivered (it
    /// is newer than what is missing), what is missing is skipped.
    fn skip_to(&mut self, seq: u32, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        let Some(mut next) = self.next else {
            self.next = Some(seq);
            return;
        };
        while next != seq {
            match self.window.pop_front() {
                Some(Slot::Have { flags, payload }) => self.emit(next, flags, payload, now, out),
                Some(Slot::Missing { .. }) => self.stats.skipped += 1,
                None => {
                    // Nothing held past here: the rest is found missing
                    // and skipped at once.
                    let gone = u64::from(seq.wrapping_sub(next));
                    self.stats.lost += gone;
                    self.stats.skipped += gone;
                    break;
                }
            }
            next = next.wrapping_add(1);
        }
        self.next = Some(seq);
    }

    fn emit(
        &mut self,
        seq: u32,
        flags: Flags,
        payload: P,
        now: Millis,
        out: &mut Vec<ReceiverOutput<P>>,
    ) {
        self.stats.delivered += 1;
        self.unacked += 1;
        self.first_unacked_at.get_or_insert(now);
        if flags.contains(Flags::BULK_START) {
            self.bulk = Bulk::Receiving;
            self.transfer_broken = false;
        }
        out.push(ReceiverOutput::Deliver {
            seq,
            flags,
            payload,
        });
        if flags.contains(Flags::BULK_END) && self.bulk == Bulk::Receiving {
            self.bulk = Bulk::Idle;
            if !self.transfer_broken {
                self.stats.bulks_completed += 1;
                if !self.in_sync {
                    self.in_sync = true;
                    out.push(ReceiverOutput::InSync);
                }
            }
        }
    }

    fn deliver_ready(&mut self, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        let Some(mut next) = self.next else {
            return;
        };
        while matches!(self.window.front(), Some(Slot::Have { .. })) {
            if let Some(Slot::Have { flags, payload }) = self.window.pop_front() {
                self.emit(next, flags, payload, now, out);
            }
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
        if self.unacked >= self.config.ack_every {
            self.ack(now, out);
        }
    }

    fn duplicate(&mut self, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        self.stats.duplicates += 1;
        // The sender resends: our ack may have been lost. At most one ack
        // per ack_delay for duplicates.
        if self
            .last_ack_at
            .is_none_or(|at| now.saturating_sub(at) >= self.config.ack_delay)
        {
            self.ack(now, out);
        }
    }

    fn ack(&mut self, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        if self.next.is_none() || self.peer.current().is_none() {
            return;
        }
        self.unacked = 0;
        self.first_unacked_at = None;
        self.last_ack_at = Some(now);
        self.stats.acks += 1;
        let ack = self.last_delivered();
        out.push(ReceiverOutput::Send(self.envelope(Message::Ack { ack })));
    }

    fn lose_sync(&mut self, why: SyncLoss, out: &mut Vec<ReceiverOutput<P>>) {
        self.transfer_broken = true;
        if self.in_sync {
            self.in_sync = false;
            out.push(ReceiverOutput::LostSync(why));
        }
        if why == SyncLoss::PeerRestarted {
            self.bulk = Bulk::Idle;
        }
    }

    fn request_bulk(&mut self, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        self.bulk = Bulk::Requested { at: now };
        self.stats.bulk_requests += 1;
        out.push(ReceiverOutput::Send(self.envelope(Message::BulkRequest)));
    }

    /// A Nack for each run of missing sequences not asked for within
    /// `nack_timeout`.
    fn nack_gaps(&mut self, now: Millis, out: &mut Vec<ReceiverOutput<P>>) {
        let timeout = self.config.nack_timeout;
        let (Some(next), Some(_)) = (self.next, self.peer.current()) else {
            return;
        };
        let mut i = 0;
        while i < self.window.len() {
            let due = match self.window[i] {
                Slot::Missing { nacked_at } => {
                    nacked_at.is_none_or(|at| now.saturating_sub(at) >= timeout)
                }
                Slot::Have { .. } => false,
            };
            if !due {
                i += 1;
                continue;
            }
            let start = i;
            while let Some(Slot::Missing { nacked_at }) = self.window.get_mut(i) {
                *nacked_at = Some(now);
                i += 1;
            }
            let from = next.wrapping_add(start as u32);
            let to = next.wrapping_add(i as u32 - 1);
            self.stats.nacks += 1;
            self.unacked = 0;
            self.first_unacked_at = None;
            let ack = self.last_delivered();
            out.push(ReceiverOutput::Send(self.envelope(Message::Nack {
                ack,
                from,
                to,
            })));
        }
    }

    /// Timers: the delayed ack, Nacks due again, the request for the whole
    /// table (at the start, and again while no transfer has started).
    pub fn tick(&mut self, now: Millis) -> Vec<ReceiverOutput<P>> {
        let mut out = Vec::new();
        if self.unacked > 0
            && self
                .first_unacked_at
                .is_some_and(|at| now.saturating_sub(at) >= self.config.ack_delay)
        {
            self.ack(now, &mut out);
        }
        self.nack_gaps(now, &mut out);
        let request = match self.bulk {
            Bulk::Idle => !self.in_sync,
            Bulk::Requested { at } => now.saturating_sub(at) >= self.config.bulk_timeout,
            Bulk::Receiving => false,
        };
        if request {
            self.request_bulk(now, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use xvs_packet::sync::{AuthKey, MaxLen, MessageBuilder, Packet};

    use super::*;

    const MASTER: u32 = 0x1111_1111;
    const BACKUP: u32 = 0x2222_2222;

    /// The scheduler crate's SplitMix64, seeded, so that every run sees
    /// the same channel.
    struct Rng(xvs_sched::SplitMix64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0.next_u64() % n
        }

        fn permille(&mut self, p: u64) -> bool {
            self.below(1000) < p
        }
    }

    /// Key → value (`None`: deleted): what the tests' "table" syncs.
    type Payload = Vec<(u32, Option<u32>)>;

    /// One direction of a lossy, reordering, duplicating datagram channel.
    struct Channel {
        rng: Rng,
        loss_permille: u64,
        dup_permille: u64,
        max_delay: Millis,
        /// Everything sent while `now % period < len` is lost.
        burst: Option<(Millis, Millis)>,
        in_flight: Vec<(Millis, u64, Envelope<Payload>)>,
        order: u64,
    }

    impl Channel {
        fn new(seed: u64, loss_permille: u64) -> Self {
            Self {
                rng: Rng(xvs_sched::SplitMix64::new(seed)),
                loss_permille,
                dup_permille: 10,
                max_delay: 5,
                burst: None,
                in_flight: Vec::new(),
                order: 0,
            }
        }

        fn push(&mut self, envelope: Envelope<Payload>, now: Millis) {
            if self.burst.is_some_and(|(period, len)| now % period < len)
                || self.rng.permille(self.loss_permille)
            {
                return;
            }
            let copies = if self.rng.permille(self.dup_permille) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = now + 1 + self.rng.below(self.max_delay);
                self.order += 1;
                self.in_flight.push((at, self.order, envelope.clone()));
            }
        }

        fn due(&mut self, now: Millis) -> Vec<Envelope<Payload>> {
            let (mut due, rest): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(at, ..)| *at <= now);
            self.in_flight = rest;
            due.sort_by_key(|(at, order, _)| (*at, *order));
            due.into_iter().map(|(.., e)| e).collect()
        }
    }

    /// A master (its table, its sender, its bulk transfers) and a backup
    /// (its receiver and the table it keeps), joined by two channels.
    struct Pair {
        rng: Rng,
        now: Millis,
        master: BTreeMap<u32, u32>,
        sender: Sender<Payload>,
        capacity: usize,
        /// A transfer under way: the keys still to send (taken when its
        /// first message goes out), and whether that has happened.
        bulk: Option<(Vec<u32>, bool)>,
        bulks_needed: Vec<BulkReason>,
        /// Live changes not sent yet.
        batch: Payload,
        /// Data messages as first sent: sequence and records.
        sent: Vec<(u32, Payload)>,
        backup: Option<Backup>,
        to_backup: Channel,
        to_master: Channel,
    }

    struct Backup {
        receiver: Receiver<Payload>,
        table: BTreeMap<u32, u32>,
        /// Keys refreshed since the transfer being delivered started.
        marked: Option<BTreeSet<u32>>,
        delivered: Vec<(u32, Payload)>,
        events: Vec<ReceiverOutput<Payload>>,
    }

    impl Backup {
        fn new(config: ReceiverConfig) -> Self {
            Self {
                receiver: Receiver::new(BACKUP, config),
                table: BTreeMap::new(),
                marked: None,
                delivered: Vec::new(),
                events: Vec::new(),
            }
        }
    }

    const RECORDS_PER_MESSAGE: usize = 20;
    const KEYS: u64 = 3000;

    impl Pair {
        fn new(
            seed: u64,
            loss_permille: u64,
            sender: SenderConfig,
            receiver: ReceiverConfig,
        ) -> Self {
            Self {
                rng: Rng(xvs_sched::SplitMix64::new(seed)),
                now: 0,
                master: BTreeMap::new(),
                sender: Sender::new(MASTER, sender),
                capacity: sender.queue_capacity,
                bulk: None,
                bulks_needed: Vec::new(),
                batch: Vec::new(),
                sent: Vec::new(),
                backup: Some(Backup::new(receiver)),
                to_backup: Channel::new(seed ^ 1, loss_permille),
                to_master: Channel::new(seed ^ 2, loss_permille),
            }
        }

        fn sender_outputs(&mut self, outputs: Vec<SenderOutput<Payload>>, first: bool) {
            for o in outputs {
                match o {
                    SenderOutput::Send(e) => {
                        if let (true, Message::Data { seq, payload, .. }) = (first, &e.message) {
                            self.sent.push((*seq, payload.clone()));
                        }
                        self.to_backup.push(e, self.now);
                    }
                    SenderOutput::BulkNeeded(why) => {
                        self.bulks_needed.push(why);
                        self.bulk = Some((Vec::new(), false));
                    }
                }
            }
        }

        fn send(&mut self, payload: Payload, flags: Flags) {
            let out = self.sender.send(payload, flags, self.now);
            self.sender_outputs(out, true);
        }

        /// One millisecond of both directors and the channels.
        fn step(&mut self, live: bool) {
            self.now += 1;
            let now = self.now;
            // The master hears the backup.
            for e in self.to_master.due(now) {
                let out = self.sender.handle(&e, now);
                self.sender_outputs(out, false);
            }
            // Its transfer, paced by the queue's room (half kept for live
            // changes).
            while self.bulk.is_some() && self.sender.room() > self.capacity / 2 {
                let Some((keys, started)) = self.bulk.as_mut() else {
                    break;
                };
                let mut flags = Flags::EMPTY;
                if !*started {
                    *started = true;
                    *keys = self.master.keys().rev().copied().collect();
                    flags = Flags::BULK_START;
                }
                let mut payload = Vec::new();
                while payload.len() < RECORDS_PER_MESSAGE {
                    let Some(k) = keys.pop() else { break };
                    if let Some(v) = self.master.get(&k) {
                        payload.push((k, Some(*v)));
                    }
                }
                if keys.is_empty() {
                    flags = flags.union(Flags::BULK_END);
                    self.bulk = None;
                }
                self.send(payload, flags);
            }
            // Live changes, batched.
            if live {
                for _ in 0..3 {
                    let k = self.rng.below(KEYS) as u32;
                    if self.rng.permille(200) {
                        self.master.remove(&k);
                        self.batch.push((k, None));
                    } else {
                        let v = self.rng.0.next_u64() as u32;
                        self.master.insert(k, v);
                        self.batch.push((k, Some(v)));
                    }
                }
                if self.batch.len() >= RECORDS_PER_MESSAGE || now.is_multiple_of(10) {
                    let batch = std::mem::take(&mut self.batch);
                    self.send(batch, Flags::EMPTY);
                }
            }
            let out = self.sender.tick(now);
            self.sender_outputs(out, false);
            assert!(self.sender.queued() <= self.capacity, "queue over capacity");
            // The backup hears the master.
            let incoming = self.to_backup.due(now);
            if let Some(backup) = self.backup.as_mut() {
                let mut outputs = Vec::new();
                for e in incoming {
                    outputs.extend(backup.receiver.handle(e, now));
                }
                outputs.extend(backup.receiver.tick(now));
                for o in outputs {
                    match o {
                        ReceiverOutput::Send(e) => self.to_master.push(e, now),
                        ReceiverOutput::Deliver {
                            seq,
                            flags,
                            payload,
                        } => {
                            if flags.contains(Flags::BULK_START) {
                                backup.marked = Some(BTreeSet::new());
                            }
                            for &(k, v) in &payload {
                                match v {
                                    Some(v) => backup.table.insert(k, v),
                                    None => backup.table.remove(&k),
                                };
                                if let Some(m) = backup.marked.as_mut() {
                                    m.insert(k);
                                }
                            }
                            if flags.contains(Flags::BULK_END)
                                && let Some(m) = backup.marked.take()
                            {
                                backup.table.retain(|k, _| m.contains(k));
                            }
                            backup.delivered.push((seq, payload));
                        }
                        other => backup.events.push(other),
                    }
                }
            }
        }

        fn run(&mut self, ms: Millis, live: bool) {
            for _ in 0..ms {
                self.step(live);
            }
        }

        fn backup(&self) -> &Backup {
            self.backup.as_ref().expect("a backup")
        }

        /// Live traffic, then quiet until the channels drain and the
        /// keepalives have repaired the tail.
        fn converge(&mut self, live_ms: Millis) {
            self.run(live_ms, true);
            if !self.batch.is_empty() {
                let batch = std::mem::take(&mut self.batch);
                self.send(batch, Flags::EMPTY);
            }
            self.run(10_000, false);
            let b = self.backup();
            assert!(
                b.receiver.in_sync(),
                "in sync: {:?} {:?} {:?}",
                b.receiver.stats(),
                self.sender.stats(),
                self.bulks_needed
            );
            assert_eq!(b.table.len(), self.master.len());
            assert!(b.table == self.master, "the backup's table is the master's");
        }

        /// Each sequence delivered once, in increasing order; and, with
        /// nothing skipped, exactly what was sent from the first delivered
        /// message on, records and all.
        fn assert_delivered_once_in_order(&self) {
            let b = self.backup();
            let seqs: Vec<u32> = b.delivered.iter().map(|(s, _)| *s).collect();
            assert!(
                seqs.windows(2).all(|w| seq_after(w[1], w[0])),
                "delivered in increasing order, each once"
            );
            if b.receiver.stats().skipped == 0 {
                let first = seqs[0];
                let from = self.sent.iter().position(|(s, _)| *s == first).unwrap();
                let sent = &self.sent[from..];
                assert_eq!(b.delivered.len(), sent.len(), "every message delivered");
                assert!(b.delivered == sent, "the same records in the same order");
            }
        }
    }

    fn lossy(seed: u64, loss_permille: u64, burst: Option<(Millis, Millis)>) -> Pair {
        let mut pair = Pair::new(
            seed,
            loss_permille,
            SenderConfig {
                queue_capacity: 4096,
                hello_interval: 100,
            },
            ReceiverConfig::default(),
        );
        pair.to_backup.burst = burst;
        pair.to_master.burst = burst;
        pair
    }

    #[test]
    fn five_percent_loss_is_repaired_message_by_message() {
        for seed in [1, 2, 3] {
            let mut pair = lossy(seed, 50, None);
            pair.converge(5_000);
            pair.assert_delivered_once_in_order();
            let r = pair.backup().receiver.stats();
            let s = pair.sender.stats();
            assert_eq!(r.skipped, 0, "seed {seed}: {r:?}");
            assert!(r.lost > 0 && r.repaired == r.lost, "seed {seed}: {r:?}");
            assert!(r.duplicates > 0, "seed {seed}: the channel duplicates");
            assert!(s.resent > 0 && s.dropped == 0, "seed {seed}: {s:?}");
            assert_eq!(r.bulks_completed, 1, "only the first transfer");
        }
    }

    #[test]
    fn twenty_percent_loss_and_bursts_are_repaired() {
        for seed in [4, 5] {
            // 20 % of datagrams lost, and everything for 40 ms of every
            // 530 (not a divisor of the timers: a burst that always hides
            // the same timer's message would be another test).
            let mut pair = lossy(seed, 200, Some((530, 40)));
            pair.converge(5_000);
            pair.assert_delivered_once_in_order();
            let r = pair.backup().receiver.stats();
            assert!(r.lost > 100, "seed {seed}: {r:?}");
            assert_eq!(r.repaired + r.skipped, r.lost, "seed {seed}: {r:?}");
        }
    }

    #[test]
    fn a_full_queue_drops_and_a_transfer_repairs() {
        let mut pair = Pair::new(
            6,
            50,
            SenderConfig {
                queue_capacity: 128,
                hello_interval: 100,
            },
            ReceiverConfig {
                window: 512,
                ..ReceiverConfig::default()
            },
        );
        // Everything lost for 1.5 s of every 4: more messages than the
        // queue holds go unacknowledged (about 140 a second).
        pair.to_backup.burst = Some((4000, 1500));
        pair.converge(9_000);
        pair.assert_delivered_once_in_order();
        let s = pair.sender.stats();
        assert!(s.dropped > 0, "{s:?}");
        assert!(
            pair.bulks_needed
                .iter()
                .any(|b| matches!(b, BulkReason::Dropped { .. })),
            "{:?}",
            pair.bulks_needed
        );
        let r = pair.backup().receiver.stats();
        assert!(r.skipped > 0 && r.bulks_completed > 1, "{r:?}");
    }

    #[test]
    fn a_restarted_sender_leads_to_a_transfer() {
        let mut pair = lossy(7, 50, None);
        pair.converge(2_000);
        let before = pair.backup().receiver.stats();
        // The master restarts (a new epoch) with its table intact.
        pair.sender = Sender::new(
            MASTER + 1,
            SenderConfig {
                queue_capacity: 4096,
                hello_interval: 100,
            },
        );
        pair.bulk = None;
        pair.run(1, false);
        pair.converge(2_000);
        let b = pair.backup();
        let after = b.receiver.stats();
        assert!(
            b.events
                .contains(&ReceiverOutput::LostSync(SyncLoss::PeerRestarted)),
            "{:?}",
            b.events
        );
        assert!(after.bulk_requests > before.bulk_requests);
        assert_eq!(after.bulks_completed, before.bulks_completed + 1);
        assert_eq!(b.receiver.peer_epoch(), Some(MASTER + 1));
        assert!(after.refused > 0 || pair.to_backup.in_flight.is_empty());
    }

    #[test]
    fn a_late_backup_gets_the_whole_table() {
        let mut pair = lossy(8, 50, None);
        let receiver = ReceiverConfig::default();
        pair.backup = None;
        for k in 0..5_000 {
            pair.master.insert(k, k * 7);
        }
        pair.run(2_000, true);
        assert!(pair.sender.stats().unsent > 0, "nobody to send to yet");
        assert!(pair.sent.is_empty());
        pair.backup = Some(Backup::new(receiver));
        pair.converge(3_000);
        let r = pair.backup().receiver.stats();
        assert!(r.bulks_completed >= 1, "{r:?}");
        assert_eq!(
            pair.backup()
                .events
                .iter()
                .filter(|e| **e == ReceiverOutput::InSync)
                .count(),
            1
        );
    }

    fn data(seq: u32, flags: Flags) -> Envelope<Payload> {
        Envelope {
            epoch: MASTER,
            peer_epoch: BACKUP,
            message: Message::Data {
                seq,
                flags,
                payload: vec![(seq, Some(seq))],
            },
        }
    }

    fn hello(last_sent: u32) -> Envelope<Payload> {
        Envelope {
            epoch: MASTER,
            peer_epoch: BACKUP,
            message: Message::Hello { last_sent },
        }
    }

    fn sends(out: &[ReceiverOutput<Payload>]) -> Vec<Message<Payload>> {
        out.iter()
            .filter_map(|o| match o {
                ReceiverOutput::Send(e) => Some(e.message.clone()),
                _ => None,
            })
            .collect()
    }

    fn delivered(out: &[ReceiverOutput<Payload>]) -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                ReceiverOutput::Deliver { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_gap_is_nacked_once_per_timeout() {
        let mut r = Receiver::new(BACKUP, ReceiverConfig::default());
        assert_eq!(delivered(&r.handle(data(1, Flags::EMPTY), 0)), [1]);
        let out = r.handle(data(4, Flags::EMPTY), 10);
        assert!(delivered(&out).is_empty());
        assert_eq!(
            sends(&out),
            [Message::Nack {
                ack: 1,
                from: 2,
                to: 3
            }]
        );
        assert!(sends(&r.handle(data(5, Flags::EMPTY), 11)).is_empty());
        assert!(
            sends(&r.tick(209))
                .iter()
                .all(|m| !matches!(m, Message::Nack { .. }))
        );
        assert!(sends(&r.tick(210)).contains(&Message::Nack {
            ack: 1,
            from: 2,
            to: 3
        }));
        // 3 arrives: 2 alone is missing, asked for when due.
        let out = r.handle(data(3, Flags::EMPTY), 220);
        assert!(sends(&out).is_empty());
        assert!(sends(&r.tick(410)).contains(&Message::Nack {
            ack: 1,
            from: 2,
            to: 2
        }));
        assert_eq!(
            delivered(&r.handle(data(2, Flags::EMPTY), 411)),
            [2, 3, 4, 5]
        );
        let s = r.stats();
        assert_eq!((s.lost, s.repaired, s.nacks), (2, 2, 3));
        // Again: a duplicate.
        r.handle(data(2, Flags::EMPTY), 412);
        assert_eq!(r.stats().duplicates, 1);
    }

    #[test]
    fn a_hello_reveals_lost_last_messages() {
        let mut r = Receiver::new(BACKUP, ReceiverConfig::default());
        r.handle(data(1, Flags::EMPTY), 0);
        let out = r.handle(hello(3), 100);
        assert!(sends(&out).contains(&Message::Nack {
            ack: 1,
            from: 2,
            to: 3
        }));
        assert!(sends(&r.handle(hello(1), 101)).is_empty(), "nothing new");
    }

    #[test]
    fn acks_every_n_messages_or_after_a_delay() {
        let config = ReceiverConfig {
            ack_every: 3,
            ack_delay: 50,
            ..ReceiverConfig::default()
        };
        let mut r = Receiver::new(BACKUP, config);
        r.handle(hello(0), 0);
        assert!(sends(&r.handle(data(1, Flags::EMPTY), 0)).is_empty());
        assert!(sends(&r.handle(data(2, Flags::EMPTY), 1)).is_empty());
        assert_eq!(
            sends(&r.handle(data(3, Flags::EMPTY), 2)),
            [Message::Ack { ack: 3 }]
        );
        r.handle(data(4, Flags::EMPTY), 10);
        assert!(
            sends(&r.tick(59))
                .iter()
                .all(|m| !matches!(m, Message::Ack { .. }))
        );
        assert!(sends(&r.tick(60)).contains(&Message::Ack { ack: 4 }));
        assert!(
            sends(&r.tick(200))
                .iter()
                .all(|m| !matches!(m, Message::Ack { .. }))
        );
    }

    #[test]
    fn in_sync_only_after_a_whole_transfer() {
        let mut r = Receiver::new(BACKUP, ReceiverConfig::default());
        assert!(
            sends(&r.tick(0)).contains(&Message::BulkRequest),
            "asks at start"
        );
        assert!(sends(&r.tick(999)).is_empty(), "not before bulk_timeout");
        assert!(
            sends(&r.tick(1000)).contains(&Message::BulkRequest),
            "asks again"
        );
        r.handle(data(1, Flags::EMPTY), 1001);
        r.handle(data(2, Flags::BULK_START), 1002);
        assert!(!r.in_sync());
        assert!(
            !sends(&r.tick(3000)).contains(&Message::BulkRequest),
            "a transfer is under way"
        );
        let out = r.handle(data(3, Flags::BULK_END), 3001);
        assert!(out.contains(&ReceiverOutput::InSync));
        assert!(r.in_sync());
        // The peer restarts: out of sync, and a new request at once.
        let restarted = Envelope {
            epoch: MASTER + 1,
            peer_epoch: 0,
            message: Message::Hello { last_sent: 0 },
        };
        let out = r.handle(restarted, 3100);
        assert!(out.contains(&ReceiverOutput::LostSync(SyncLoss::PeerRestarted)));
        assert!(!r.in_sync());
        assert!(sends(&r.tick(3101)).contains(&Message::BulkRequest));
        // The old run's messages are refused.
        assert!(r.handle(data(4, Flags::EMPTY), 3102).is_empty());
        assert_eq!(r.stats().refused, 1);
        // A transfer cut by a wide gap does not complete.
        let fresh = |seq, flags| Envelope {
            epoch: MASTER + 1,
            ..data(seq, flags)
        };
        r.handle(fresh(1, Flags::BULK_START), 3200);
        let out = r.handle(fresh(2000, Flags::EMPTY), 3201);
        assert!(sends(&out).contains(&Message::BulkRequest));
        let out = r.handle(fresh(2001, Flags::BULK_END), 3202);
        assert!(!out.contains(&ReceiverOutput::InSync));
        assert_eq!(r.stats().skipped, 1998);
    }

    #[test]
    fn a_transfer_supersedes_what_is_missing_before_it() {
        let mut r = Receiver::new(BACKUP, ReceiverConfig::default());
        r.handle(data(1, Flags::EMPTY), 0);
        r.handle(data(3, Flags::EMPTY), 1);
        let out = r.handle(data(5, Flags::BULK_START), 2);
        assert_eq!(delivered(&out), [3, 5], "what was held, then the transfer");
        assert!(sends(&out).is_empty(), "nothing to ask for");
        assert_eq!(r.stats().skipped, 2);
        assert_eq!(r.next_expected(), Some(6));
        r.handle(data(2, Flags::EMPTY), 3);
        assert_eq!(r.stats().duplicates, 1, "too late");
        let out = r.handle(data(6, Flags::BULK_END), 4);
        assert!(out.contains(&ReceiverOutput::InSync));
    }

    fn peer(message: Message<Payload>) -> Envelope<Payload> {
        Envelope {
            epoch: BACKUP,
            peer_epoch: MASTER,
            message,
        }
    }

    fn sent_seqs(out: &[SenderOutput<Payload>]) -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                SenderOutput::Send(Envelope {
                    message: Message::Data { seq, .. },
                    ..
                }) => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_sender_queues_resends_frees_and_asks_for_transfers() {
        let config = SenderConfig {
            queue_capacity: 4,
            hello_interval: 1000,
        };
        let mut s = Sender::new(MASTER, config);
        assert!(s.send(vec![], Flags::EMPTY, 0).is_empty(), "no peer yet");
        let request = Envelope {
            peer_epoch: 0,
            ..peer(Message::BulkRequest)
        };
        assert_eq!(
            s.handle(&request, 1),
            [SenderOutput::BulkNeeded(BulkReason::Requested)]
        );
        for t in 0..6 {
            assert_eq!(
                sent_seqs(&s.send(vec![], Flags::EMPTY, 2 + t)),
                [t as u32 + 1]
            );
        }
        assert_eq!((s.queued(), s.room(), s.stats().dropped), (4, 0, 2));
        // 3..=6 are queued: resent when asked for.
        let nack = |ack, from, to| peer(Message::Nack { ack, from, to });
        let out = s.handle(&nack(2, 3, 4), 10);
        assert_eq!(sent_seqs(&out), [3, 4]);
        s.handle(&peer(Message::Ack { ack: 4 }), 11);
        assert_eq!(s.queued(), 2);
        assert!(s.handle(&peer(Message::Ack { ack: 99 }), 12).is_empty());
        assert_eq!(s.queued(), 2, "an ack beyond what was sent is ignored");
        // An ack addressed to an earlier run of ours is refused.
        let stale = Envelope {
            peer_epoch: MASTER - 1,
            ..peer(Message::Ack { ack: 6 })
        };
        s.handle(&stale, 13);
        assert_eq!((s.queued(), s.stats().refused), (2, 1));
        // 7..=10 push out 5 and 6, which are asked for: a transfer, which
        // replaces the whole queue; asked again, no second one.
        for t in 0..4 {
            s.send(vec![], Flags::EMPTY, 14 + t);
        }
        let out = s.handle(&nack(4, 5, 8), 20);
        assert_eq!(
            out,
            [SenderOutput::BulkNeeded(BulkReason::Dropped { upto: 6 })]
        );
        assert_eq!((s.queued(), s.stats().superseded), (0, 4));
        assert_eq!(sent_seqs(&s.send(vec![], Flags::BULK_START, 21)), [11]);
        assert!(s.handle(&nack(4, 5, 8), 22).is_empty());
        // Idle for hello_interval: a Hello with the last sequence.
        assert!(s.tick(1020).is_empty());
        let out = s.tick(1021);
        assert!(matches!(
            &out[..],
            [SenderOutput::Send(Envelope {
                message: Message::Hello { last_sent: 11 },
                peer_epoch: BACKUP,
                ..
            })]
        ));
        assert_eq!(s.stats().hellos, 1);
    }

    /// What the layer sends is what the packet crate writes and reads back.
    #[test]
    fn envelopes_cross_the_wire_format() {
        let key = AuthKey::new(1, &[7; 32]).unwrap();
        let all = [
            data(9, Flags::BULK_START),
            hello(8),
            peer(Message::Ack { ack: 5 }),
            peer(Message::Nack {
                ack: 5,
                from: 6,
                to: 7,
            }),
            peer(Message::BulkRequest),
        ];
        for e in all {
            let mut buf = [0; 512];
            let b = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &e.header(3)).unwrap();
            let len = b.sign(&key);
            let p = Packet::new_checked(&buf[..len]).unwrap();
            assert_eq!(p.verify(&key), Ok(()));
            assert_eq!(p.header().syncid, 3);
            let payload = match &e.message {
                Message::Data { payload, .. } => payload.clone(),
                _ => Vec::new(),
            };
            assert_eq!(Envelope::from_header(&p.header(), payload), e);
        }
    }
}
