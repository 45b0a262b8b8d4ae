//! The connection events the workers report to the state sync (issue
//! #18): a connection was created, its TCP state changed, it was removed
//! (an expiry is not reported: the peer's copy expires on its own timer).
//! The sync daemon drains them and sends the peer director what changed.
//!
//! Contract: [`ConnFeed::report`] never blocks, never allocates and takes
//! no lock: the events go into fixed-size lock-free queues
//! (`crossbeam`'s `ArrayQueue`), and an event that finds its queue full is
//! dropped and counted ([`ConnFeed::dropped`]); the sync's gap repair and
//! full transfers recover what it carried. A worker holds the feed only
//! while sync is on (it picks it up with the snapshot,
//! `Director::set_feed`): with sync off each event site costs a test of
//! one field of the worker.
//!
//! Half-open connections: a connection created in SYN_RECV — what a SYN
//! flood makes by the million — goes into a queue of its own
//! ([`ConnFeed::pop_half_open`]), so that a flood fills only that queue
//! and never pushes out the events of established connections. The daemon
//! chooses when to drain it (after the other queue, or after a delay: a
//! connection that completes its handshake is reported again, in the main
//! queue, by its change to ESTABLISHED).
//!
//! An event is small (52 bytes): the connection's handle, its inbound key
//! and its TCP state after the event, what a worker has at hand without
//! reading the entry again. The daemon reads a created or changed
//! connection by its handle when it sends it, so that what it sends is the
//! connection's latest state; a removed one is named by its key.

use core::sync::atomic::{AtomicU64, Ordering};

use crossbeam::queue::ArrayQueue;
use xvs_packet::FlowKey;

use super::{ConnHandle, Connection, TcpState};

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnEventKind {
    /// A worker created it (its first packet).
    Created,
    /// A packet changed its TCP state.
    StateChanged,
    /// It was removed (a reused port, a deleted real server).
    Removed,
}

/// One connection event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnEvent {
    /// What happened.
    pub kind: ConnEventKind,
    /// The connection (stale once it was removed: read it with
    /// `ConnTable::get`, which then says so).
    pub handle: ConnHandle,
    /// Its inbound key: client address and port to VIP and virtual port.
    pub key: FlowKey,
    /// Its TCP state after the event.
    pub tcp_state: TcpState,
}

impl ConnEvent {
    /// `kind` for `conn`, whose TCP state is now `tcp_state`.
    #[must_use]
    pub fn of(kind: ConnEventKind, conn: &Connection, tcp_state: TcpState) -> Self {
        Self {
            kind,
            handle: conn.handle,
            key: FlowKey {
                proto: conn.proto,
                src: conn.client,
                dst: conn.vip,
                sport: conn.cport,
                dport: conn.vport,
            },
            tcp_state,
        }
    }

    /// A connection created half-open (SYN_RECV): what a SYN flood makes.
    #[must_use]
    pub fn is_half_open(&self) -> bool {
        self.kind == ConnEventKind::Created && self.tcp_state == TcpState::SynRecv
    }
}

/// The bounded queues between the workers and the sync daemon.
#[derive(Debug)]
pub struct ConnFeed {
    events: ArrayQueue<ConnEvent>,
    half_open: ArrayQueue<ConnEvent>,
    dropped: AtomicU64,
    dropped_half_open: AtomicU64,
}

impl ConnFeed {
    /// Room for `capacity` events and, apart, `half_open_capacity`
    /// half-open connections (each at least 1).
    #[must_use]
    pub fn new(capacity: usize, half_open_capacity: usize) -> Self {
        Self {
            events: ArrayQueue::new(capacity.max(1)),
            half_open: ArrayQueue::new(half_open_capacity.max(1)),
            dropped: AtomicU64::new(0),
            dropped_half_open: AtomicU64::new(0),
        }
    }

    /// Queues `event` (a half-open creation in its own queue), or drops
    /// and counts it when its queue is full.
    pub fn report(&self, event: ConnEvent) {
        let (queue, dropped) = if event.is_half_open() {
            (&self.half_open, &self.dropped_half_open)
        } else {
            (&self.events, &self.dropped)
        };
        if queue.push(event).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The oldest event of the main queue.
    pub fn pop(&self) -> Option<ConnEvent> {
        self.events.pop()
    }

    /// The oldest half-open creation.
    pub fn pop_half_open(&self) -> Option<ConnEvent> {
        self.half_open.pop()
    }

    /// Events waiting in the main queue and in the half-open one.
    #[must_use]
    pub fn len(&self) -> (usize, usize) {
        (self.events.len(), self.half_open.len())
    }

    /// Both queues are empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.half_open.is_empty()
    }

    /// Events dropped because the main queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Half-open creations dropped because their queue was full.
    #[must_use]
    pub fn dropped_half_open(&self) -> u64 {
        self.dropped_half_open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_smaller_than_a_cache_line() {
        assert!(size_of::<ConnEvent>() <= 64, "{}", size_of::<ConnEvent>());
    }
}
