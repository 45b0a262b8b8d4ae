//! The neighbour table the workers read: (interface, IP) → MAC, shared by
//! every worker and written by one thread (the kernel watcher in the live
//! director, the config's static `[[neighbours]]` in replay and tests).
//!
//! # Contract
//! - **Readers never block or lock.** The table is an immutable map behind
//!   an [`ArcSwap`]: a writer builds a new map off to the side and swaps
//!   the pointer in. Each worker reads through its own [`NeighbourCache`]
//!   (an `arc_swap::Cache`), which costs one atomic load per lookup while
//!   the table does not change, then a hash lookup in a small map.
//! - **Writes are rare and batched**: a neighbour changes state a few times
//!   a minute, and a batch (a netlink dump, one receive buffer of
//!   notifications) costs one copy of the map. Neighbour tables are small
//!   (one entry per real server and gateway), so copy-on-write is cheaper
//!   than any per-read synchronisation.
//! - **A miss asks for resolution.** A worker that finds no MAC pushes
//!   (interface, IP) into a bounded lock-free queue that the writer side
//!   drains to ask the kernel to resolve it (ARP / neighbour solicitation).
//!   A full queue loses the request and counts it: the next packet asks
//!   again, and the kernel side rate-limits per address anyway.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::{ArcSwap, Cache};
use crossbeam::queue::ArrayQueue;
use rustc_hash::FxHashMap;
use xvs_packet::ethernet::MacAddr;

use crate::types::IfaceId;

/// The map itself: (interface, neighbour IP) → MAC.
pub type NeighbourMap = FxHashMap<(IfaceId, IpAddr), MacAddr>;

/// How many resolution requests wait at most for the kernel side.
pub const REQUEST_QUEUE_CAPACITY: usize = 1024;

/// One change to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourChange {
    /// `ip` on `iface` is at `mac` (new or changed).
    Learned {
        /// The interface it is reached on.
        iface: IfaceId,
        /// Its address.
        ip: IpAddr,
        /// Its MAC address.
        mac: MacAddr,
    },
    /// `ip` on `iface` is no longer usable (failed, or deleted).
    Forgotten {
        /// The interface.
        iface: IfaceId,
        /// Its address.
        ip: IpAddr,
    },
}

/// The shared neighbour table and its resolution-request queue.
#[derive(Debug)]
pub struct Neighbours {
    table: Arc<ArcSwap<NeighbourMap>>,
    requests: ArrayQueue<(IfaceId, IpAddr)>,
    requests_lost: AtomicU64,
}

impl Default for Neighbours {
    fn default() -> Self {
        Self::new()
    }
}

impl Neighbours {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(NeighbourMap::default())),
            requests: ArrayQueue::new(REQUEST_QUEUE_CAPACITY),
            requests_lost: AtomicU64::new(0),
        }
    }

    /// The MAC of `ip` on `iface`, if known. Workers use
    /// [`NeighbourCache::lookup`] instead, which avoids the reference count.
    #[must_use]
    pub fn lookup(&self, iface: IfaceId, ip: IpAddr) -> Option<MacAddr> {
        self.table.load().get(&(iface, ip)).copied()
    }

    /// A copy of the whole table (for tests, logs and the control plane).
    #[must_use]
    pub fn snapshot(&self) -> Arc<NeighbourMap> {
        self.table.load_full()
    }

    /// How many entries the table holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// True when the table holds no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader for one worker.
    #[must_use]
    pub fn reader(&self) -> NeighbourCache {
        NeighbourCache::new(Cache::new(Arc::clone(&self.table)))
    }

    /// Applies `changes` in order and publishes the result at once.
    /// Returns how many changed the table (a change that repeats what the
    /// table already says does not count, and publishes nothing).
    ///
    /// Meant for one writer: two concurrent writers would each start from
    /// the same map and one's changes would be lost.
    pub fn apply(&self, changes: impl IntoIterator<Item = NeighbourChange>) -> usize {
        let current = self.table.load_full();
        let mut next: Option<NeighbourMap> = None;
        let mut applied = 0;
        for change in changes {
            let map = next.as_ref().unwrap_or(&*current);
            let effective = match change {
                NeighbourChange::Learned { iface, ip, mac } => map.get(&(iface, ip)) != Some(&mac),
                NeighbourChange::Forgotten { iface, ip } => map.contains_key(&(iface, ip)),
            };
            if !effective {
                continue;
            }
            let map = next.get_or_insert_with(|| NeighbourMap::clone(&current));
            match change {
                NeighbourChange::Learned { iface, ip, mac } => {
                    map.insert((iface, ip), mac);
                }
                NeighbourChange::Forgotten { iface, ip } => {
                    map.remove(&(iface, ip));
                }
            }
            applied += 1;
        }
        if let Some(map) = next {
            self.table.store(Arc::new(map));
        }
        applied
    }

    /// Asks the kernel side to resolve `ip` on `iface`. Never blocks: a full
    /// queue loses the request and counts it.
    pub fn request(&self, iface: IfaceId, ip: IpAddr) {
        if self.requests.push((iface, ip)).is_err() {
            self.requests_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The next pending resolution request (the kernel side drains them).
    pub fn next_request(&self) -> Option<(IfaceId, IpAddr)> {
        self.requests.pop()
    }

    /// Requests lost because the queue was full.
    #[must_use]
    pub fn requests_lost(&self) -> u64 {
        self.requests_lost.load(Ordering::Relaxed)
    }
}

/// Slots of a worker's memo of recent answers (a power of two).
const MEMO_SLOTS: usize = 16;

/// One worker's view of the table: sees a new table at its next lookup
/// after the writer publishes it.
///
/// A packet's next hop is nearly always one of a few addresses (the real
/// servers, a gateway), so the worker keeps a small direct-mapped memo of
/// its last answers in front of the map: a hit costs a compare instead of
/// hashing the key. The memo belongs to one table: it is emptied whenever
/// the writer publishes a new one, so it never answers with a stale MAC.
#[derive(Debug, Clone)]
pub struct NeighbourCache {
    table: Cache<Arc<ArcSwap<NeighbourMap>>, Arc<NeighbourMap>>,
    /// The address of the table the memo was filled from. That table is
    /// alive (this cache holds it) until the cache moves to a newer one,
    /// which is therefore at another address: a changed address always
    /// means a changed table.
    memo_of: usize,
    memo: [Option<(IfaceId, IpAddr, MacAddr)>; MEMO_SLOTS],
}

impl NeighbourCache {
    fn new(table: Cache<Arc<ArcSwap<NeighbourMap>>, Arc<NeighbourMap>>) -> Self {
        Self {
            table,
            memo_of: 0,
            memo: [None; MEMO_SLOTS],
        }
    }

    /// Which table this reader sees now (moving to the newest published
    /// one): equal answers mean the same table, so a MAC memoised while
    /// the table was this one is still right.
    #[inline]
    pub fn table_id(&mut self) -> usize {
        Arc::as_ptr(self.table.load()) as usize
    }

    /// The table the last [`NeighbourCache::lookup`] answered from, as
    /// [`NeighbourCache::table_id`] names it (0 before the first).
    #[must_use]
    pub fn answered_from(&self) -> usize {
        self.memo_of
    }

    /// The MAC of `ip` on `iface`, if known.
    #[inline]
    pub fn lookup(&mut self, iface: IfaceId, ip: IpAddr) -> Option<MacAddr> {
        let table = self.table.load();
        let current = Arc::as_ptr(table) as usize;
        if current != self.memo_of {
            self.memo = [None; MEMO_SLOTS];
            self.memo_of = current;
        }
        let slot = memo_slot(iface, ip);
        if let Some((i, a, mac)) = self.memo[slot]
            && i == iface
            && a == ip
        {
            return Some(mac);
        }
        let mac = table.get(&(iface, ip)).copied()?;
        self.memo[slot] = Some((iface, ip, mac));
        Some(mac)
    }
}

/// The memo slot of a key: the address's last byte mixed with the
/// interface (next hops usually differ there).
#[inline]
fn memo_slot(iface: IfaceId, ip: IpAddr) -> usize {
    let last = match ip {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    (usize::from(last) ^ usize::from(iface.0).wrapping_mul(7)) & (MEMO_SLOTS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IfaceId = IfaceId(0);
    const B: IfaceId = IfaceId(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn readers_see_a_batch_once_published_and_repeats_do_not_count() {
        let table = Neighbours::new();
        let mut reader = table.reader();
        assert_eq!(reader.lookup(A, ip("192.0.2.1")), None);
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let learned = NeighbourChange::Learned {
            iface: A,
            ip: ip("192.0.2.1"),
            mac,
        };
        assert_eq!(table.apply([learned, learned]), 1);
        assert_eq!(reader.lookup(A, ip("192.0.2.1")), Some(mac));
        assert_eq!(reader.lookup(B, ip("192.0.2.1")), None, "per interface");
        assert_eq!(table.apply([learned]), 0);
        let forgotten = NeighbourChange::Forgotten {
            iface: A,
            ip: ip("192.0.2.1"),
        };
        assert_eq!(table.apply([forgotten, forgotten]), 1);
        assert_eq!(reader.lookup(A, ip("192.0.2.1")), None);
    }

    #[test]
    fn the_memo_never_outlives_its_table() {
        let table = Neighbours::new();
        let mut reader = table.reader();
        let (one, two) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let hop = ip("192.0.2.11");
        // Same memo slot on purpose: .11 and .27 share their low four bits.
        let other = ip("192.0.2.27");
        assert_eq!(memo_slot(A, hop), memo_slot(A, other));
        table.apply([
            NeighbourChange::Learned {
                iface: A,
                ip: hop,
                mac: one,
            },
            NeighbourChange::Learned {
                iface: A,
                ip: other,
                mac: two,
            },
        ]);
        for _ in 0..3 {
            assert_eq!(reader.lookup(A, hop), Some(one));
            assert_eq!(
                reader.lookup(A, other),
                Some(two),
                "a slot collision is a miss, not a wrong MAC"
            );
        }
        table.apply([NeighbourChange::Learned {
            iface: A,
            ip: hop,
            mac: two,
        }]);
        assert_eq!(
            reader.lookup(A, hop),
            Some(two),
            "a changed MAC is seen at once"
        );
        table.apply([NeighbourChange::Forgotten { iface: A, ip: hop }]);
        assert_eq!(
            reader.lookup(A, hop),
            None,
            "a forgotten neighbour is not remembered"
        );
    }

    #[test]
    fn a_full_request_queue_counts_what_it_loses() {
        let table = Neighbours::new();
        for i in 0..REQUEST_QUEUE_CAPACITY + 3 {
            table.request(A, IpAddr::from([192, 0, 2, i as u8]));
        }
        assert_eq!(table.requests_lost(), 3);
        assert_eq!(table.next_request(), Some((A, ip("192.0.2.0"))));
        let mut drained = 1;
        while table.next_request().is_some() {
            drained += 1;
        }
        assert_eq!(drained, REQUEST_QUEUE_CAPACITY);
    }
}
