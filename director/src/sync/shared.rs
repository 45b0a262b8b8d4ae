//! What the sync part shows the rest of the director: whether its table
//! holds the peer's (the HA part's preemption waits on it), and its figures
//! for `xvsadm -L --daemon`, the metrics and the stats file.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::reliable::{ReceiverStats, SenderStats};
use super::table::{ImportCounts, Refused};

/// Why a received datagram was refused before the reliability layer saw
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// Not a well-formed sync message.
    Malformed,
    /// Its tag does not verify with our key (or another key id).
    Auth,
    /// Another pair's syncid.
    OtherSyncid,
    /// From an address that is not our peer.
    OtherPeer,
}

impl Dropped {
    /// Every reason, in [`SyncStats::dropped`] order.
    pub const ALL: [Self; 4] = [
        Self::Malformed,
        Self::Auth,
        Self::OtherSyncid,
        Self::OtherPeer,
    ];

    /// The metric label.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Auth => "auth",
            Self::OtherSyncid => "other_syncid",
            Self::OtherPeer => "other_peer",
        }
    }
}

/// The sync's figures, as last published by its thread.
#[derive(Debug, Clone, Default)]
pub struct SyncStats {
    /// The master role runs (this director's connections are sent).
    pub master: bool,
    /// The backup role runs (the peer's connections are received).
    pub backup: bool,
    /// ipvsadm's daemon options: `mcast=IF, syncid=N, …`.
    pub describe: String,
    /// The peer, once heard.
    pub peer: Option<SocketAddr>,
    /// The backup role holds the peer's whole table.
    pub in_sync: bool,
    /// The sending half's counters.
    pub sender: SenderStats,
    /// Data messages waiting for an acknowledgement.
    pub queued: usize,
    /// How long the oldest unacknowledged message has waited, ms.
    pub lag_ms: u64,
    /// The receiving half's counters.
    pub receiver: ReceiverStats,
    /// Messages held ahead of a gap.
    pub pending: usize,
    /// What the peer's records did here.
    pub import: ImportCounts,
    /// Records for connections this director forwards itself, not applied
    /// (ours is newer).
    pub kept: u64,
    /// Connection records sent (events, refreshes and transfers).
    pub records_sent: u64,
    /// Full transfers sent whole.
    pub transfers_sent: u64,
    /// Full transfers started (a new request restarts one).
    pub transfers_started: u64,
    /// Refresh walks completed.
    pub refreshes: u64,
    /// Messages that could not be sent (the kernel said why; logged).
    pub send_errors: u64,
    /// Datagrams refused, by [`Dropped::ALL`] position.
    pub dropped: [u64; Dropped::ALL.len()],
    /// Events the workers' queue dropped (full), and half-open ones.
    pub feed_dropped: (u64, u64),
    /// Events waiting in the workers' queues (main, half-open).
    pub feed_len: (usize, usize),
    /// Events discarded because no peer was known yet (its first
    /// request for the whole table covers them).
    pub unsent_events: u64,
    /// A full transfer is being sent.
    pub transferring: bool,
    /// The last message heard from the peer.
    pub last_heard: Option<Instant>,
}

/// Shared between the sync's thread and the rest of the director.
#[derive(Debug, Default)]
pub struct SyncShared {
    /// The backup role holds the peer's whole table (or does not run).
    in_sync: AtomicBool,
    /// The figures.
    pub stats: Mutex<SyncStats>,
}

impl SyncShared {
    /// Nothing heard yet; `in_sync` starts as given (true when no backup
    /// role runs: there is nothing to wait for).
    #[must_use]
    pub fn new(in_sync: bool) -> Self {
        Self {
            in_sync: AtomicBool::new(in_sync),
            stats: Mutex::new(SyncStats::default()),
        }
    }

    /// Whether the table holds the peer's.
    #[must_use]
    pub fn in_sync(&self) -> bool {
        self.in_sync.load(Ordering::Acquire)
    }

    /// Says whether the table holds the peer's.
    pub fn set_in_sync(&self, in_sync: bool) {
        self.in_sync.store(in_sync, Ordering::Release);
    }

    /// The figures as JSON (the stats file, the part's status, `xvsadm -L
    /// --daemon`).
    #[must_use]
    pub fn json(&self, now: Instant) -> Value {
        let s = self.stats.lock().clone();
        let refused: serde_json::Map<String, Value> = Refused::ALL
            .iter()
            .map(|r| (r.name().to_owned(), s.import.refused_for(*r).into()))
            .collect();
        let dropped: serde_json::Map<String, Value> = Dropped::ALL
            .iter()
            .zip(s.dropped)
            .map(|(d, n)| (d.name().to_owned(), n.into()))
            .collect();
        let roles: Vec<&str> = [(s.master, "master"), (s.backup, "backup")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        json!({
            "running": true,
            "roles": roles,
            "options": s.describe,
            "peer": s.peer.map(|p| p.to_string()),
            "in_sync": s.in_sync,
            "last_heard_ms": s.last_heard.map(|t| now.saturating_duration_since(t).as_millis() as u64),
            "sender": {
                "sent": s.sender.sent,
                "resent": s.sender.resent,
                "dropped": s.sender.dropped,
                "superseded": s.sender.superseded,
                "acked": s.sender.acked,
                "hellos": s.sender.hellos,
                "bulk_requests": s.sender.bulk_requests,
                "refused": s.sender.refused,
                "queued": s.queued,
                "lag_ms": s.lag_ms,
                "send_errors": s.send_errors,
            },
            "receiver": {
                "received": s.receiver.received,
                "delivered": s.receiver.delivered,
                "lost": s.receiver.lost,
                "repaired": s.receiver.repaired,
                "skipped": s.receiver.skipped,
                "duplicates": s.receiver.duplicates,
                "nacks": s.receiver.nacks,
                "acks": s.receiver.acks,
                "bulk_requests": s.receiver.bulk_requests,
                "bulks_completed": s.receiver.bulks_completed,
                "refused": s.receiver.refused,
                "pending": s.pending,
            },
            "import": {
                "inserted": s.import.inserted,
                "updated": s.import.updated,
                "deleted": s.import.deleted,
                "absent": s.import.absent,
                "kept": s.kept,
                "refused": refused,
            },
            "feed": {
                "dropped": s.feed_dropped.0,
                "dropped_half_open": s.feed_dropped.1,
                "queued": s.feed_len.0,
                "queued_half_open": s.feed_len.1,
                "unsent": s.unsent_events,
            },
            "dropped": dropped,
            "records_sent": s.records_sent,
            "transfers_sent": s.transfers_sent,
            "transfers_started": s.transfers_started,
            "transferring": s.transferring,
            "refreshes": s.refreshes,
        })
    }
}
