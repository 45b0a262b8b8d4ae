//! lblc — locality-based least connection.
//!
//! Meant for cache clusters: a packet's *destination* address is looked up
//! in a cache of destination → server. A cached server is kept while it is
//! in the service, has weight > 0 and is not "overloaded" in lblc's sense
//! (more active connections than its weight while some server is below half
//! its weight; the OVERLOAD flag is not consulted, as in the kernel).
//! Otherwise wlc's rule picks a server over the whole service — ties go to
//! the newest server — and the cache entry is replaced. Entries idle for
//! `lblc_expiration` (24 h) are collected by the kernel's periodic timer:
//! every 60 s from service creation, a full pass on every 30th run, and
//! partial passes (6 min idle) only when the cache holds more than 16384
//! entries. Time is injected: entries are stamped with the context's `now`
//! and the timer runs from [`crate::Service::run_timers`].
//!
//! The cache is behind a `Mutex` shared by every snapshot of the service
//! (the kernel takes its `sched_lock` for the same updates).

use core::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use xvs_packet::FlowKey;

use crate::hash::{fold_addr, hash_32};
use crate::server::{RealServerId, ServerList};
use crate::util::{lblc_overloaded, weighted_least};
use crate::{Millis, SchedContext, Scheduler};

/// `IP_VS_LBLC_TAB_BITS` (also lblcr's).
pub const TABLE_BITS: u32 = 10;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const TABLE_MASK: usize = TABLE_SIZE - 1;
/// Above this many entries the partial collection runs (16 per bucket).
const MAX_SIZE: usize = TABLE_SIZE * 16;
/// Period of the collection timer.
pub const CHECK_INTERVAL: Millis = 60_000;
/// Idle time after which the partial pass may drop an entry.
pub const ENTRY_TIMEOUT: Millis = 6 * 60_000;
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// What the shared cache needs from an entry.
pub(crate) trait CacheEntry {
    fn addr(&self) -> &IpAddr;
    fn lastuse(&self) -> Millis;
}

/// The kernel's lblc/lblcr hash table with its collection timer.
#[derive(Debug)]
pub(crate) struct LocalityCache<E> {
    buckets: Vec<Vec<E>>,
    /// The kernel's `tbl->entries` (which, like the kernel's, is not
    /// decremented when lblc replaces an entry).
    entries: usize,
    rover: usize,
    counter: u32,
    next_check: Millis,
    expiration: Millis,
}

impl<E: CacheEntry> LocalityCache<E> {
    pub(crate) fn new(expiration: Millis, now: Millis) -> Self {
        Self {
            buckets: (0..TABLE_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: now + CHECK_INTERVAL,
            expiration,
        }
    }

    pub(crate) fn bucket_of(addr: &IpAddr) -> usize {
        hash_32(fold_addr(addr), TABLE_BITS) as usize
    }

    pub(crate) fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut E> {
        self.buckets[Self::bucket_of(addr)]
            .iter_mut()
            .find(|e| e.addr() == addr)
    }

    /// Unlinks the entry for `addr` without touching `entries` (the
    /// kernel's `ip_vs_lblc_del` on replacement).
    pub(crate) fn unlink(&mut self, addr: &IpAddr) {
        let b = &mut self.buckets[Self::bucket_of(addr)];
        if let Some(pos) = b.iter().position(|e| e.addr() == addr) {
            b.remove(pos);
        }
    }

    /// Inserts at the head of its bucket and counts it.
    pub(crate) fn insert(&mut self, entry: E) {
        self.buckets[Self::bucket_of(entry.addr())].insert(0, entry);
        self.entries += 1;
    }

    /// Number of entries as the kernel counts them.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Runs every timer firing due at or before `now`, each at its own
    /// time.
    pub(crate) fn run_timers(&mut self, now: Millis) {
        while self.next_check <= now {
            let at = self.next_check;
            self.check_expire(at);
            self.next_check = at + CHECK_INTERVAL;
        }
    }

    fn check_expire(&mut self, now: Millis) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            let exp = self.expiration;
            let mut removed = 0;
            for b in &mut self.buckets {
                let before = b.len();
                b.retain(|e| now < e.lastuse() + exp);
                removed += before - b.len();
            }
            self.entries = self.entries.saturating_sub(removed);
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2) as i64;
        let mut j = self.rover;
        for _ in 0..TABLE_SIZE {
            j = (j + 1) & TABLE_MASK;
            let b = &mut self.buckets[j];
            let before = b.len();
            b.retain(|e| now < e.lastuse() + ENTRY_TIMEOUT);
            let removed = before - b.len();
            self.entries = self.entries.saturating_sub(removed);
            goal -= removed as i64;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

#[derive(Debug, Clone)]
struct Entry {
    addr: IpAddr,
    server: RealServerId,
    lastuse: Millis,
}

impl CacheEntry for Entry {
    fn addr(&self) -> &IpAddr {
        &self.addr
    }
    fn lastuse(&self) -> Millis {
        self.lastuse
    }
}

/// lblc state: the destination cache, shared by all snapshots.
#[derive(Debug, Clone)]
pub struct LocalityLeastConnection {
    cache: Arc<Mutex<LocalityCache<Entry>>>,
}

impl LocalityLeastConnection {
    /// A cache for a service created at `now`, with `expiration` idle time.
    #[must_use]
    pub fn new(expiration: Millis, now: Millis) -> Self {
        Self {
            cache: Arc::new(Mutex::new(LocalityCache::new(expiration, now))),
        }
    }

    /// Number of cache entries (as the kernel counts them).
    #[must_use]
    pub fn entries(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries()
    }
}

impl Scheduler for LocalityLeastConnection {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(en) = cache.get_mut(&flow.dst) {
            en.lastuse = ctx.now;
            if let Some(s) = servers.get(en.server)
                && s.is_available()
                && s.weight() > 0
                && !lblc_overloaded(s, servers)
            {
                return Some(s.id());
            }
        }
        let chosen = weighted_least(servers, |s| s.overhead())?.id();
        match cache.get_mut(&flow.dst) {
            Some(en) if en.server == chosen => {}
            Some(_) => {
                cache.unlink(&flow.dst);
                cache.insert(Entry {
                    addr: flow.dst,
                    server: chosen,
                    lastuse: ctx.now,
                });
            }
            None => cache.insert(Entry {
                addr: flow.dst,
                server: chosen,
                lastuse: ctx.now,
            }),
        }
        Some(chosen)
    }

    fn run_timers(&self, now: Millis) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .run_timers(now);
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{TestService, svc};
    use core::net::Ipv4Addr;

    fn dst(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
    }

    #[test]
    fn a_destination_sticks_to_its_server_until_lblc_overload() {
        let s = svc("lblc", &[1, 1]); // list 1 0
        // First: wlc over all (idle tie → newest, 1).
        assert_eq!(s.pick_to_active(dst(1)), 1);
        // Same destination stays on 1 while active (1) <= weight (1).
        assert_eq!(s.pick_to_active(dst(1)), 1);
        // Now 1 has 2 active > weight 1 while 0 is below half its weight
        // (0 * 2 < 1): lblc-overloaded, so wlc picks again → 0.
        assert_eq!(s.pick_to_active(dst(1)), 0);
        // The entry now points to 0; another destination goes by wlc: 0 has
        // 256/1, 1 has 512/1 → 0.
        assert_eq!(s.pick_to_active(dst(2)), 0);
    }

    #[test]
    fn the_overload_flag_is_not_consulted_for_a_cached_server() {
        let s = svc("lblc", &[1, 1]);
        assert_eq!(s.pick_to(dst(1)), 1);
        s.servers().set_overloaded(crate::RealServerId(1), true);
        assert_eq!(s.pick_to(dst(1)), 1);
        // A new destination skips the OVERLOADed server through wlc.
        assert_eq!(s.pick_to(dst(2)), 0);
    }

    #[test]
    fn entries_expire_on_the_full_pass_every_30_minutes() {
        let mut s = crate::service::tests::svc_with("lblc", &[1, 1], |c| {
            c.options.lblc_expiration = 10 * 60_000;
        });
        assert_eq!(s.pick_to(dst(1)), 1);
        // Load 1 so that wlc alone would now choose 0: the cache decides.
        s.conns(1, 0, 5);
        // Timer runs at 60 s, 120 s, …; the counter starts at 1, so the
        // first full pass is at 30 min. Not yet at 29 min.
        s.tick(29 * 60_000);
        assert_eq!(s.pick_to_at(dst(1), 29 * 60_000), 1);
        // At 30 min the entry (used at 29 min) is idle 1 min: kept.
        s.tick(30 * 60_000);
        assert_eq!(s.pick_to_at(dst(1), 30 * 60_000 + 1), 1);
        // The counter restarts at 1: the next full pass is 30 runs later,
        // at 60 min — at 59 min 59 s the entry, idle 30 min, is still there.
        s.tick(59 * 60_000 + 59_000);
        assert_eq!(s.pick_to_at(dst(1), 59 * 60_000 + 59_000), 1);
        // Idle from 59:59 to 60:00: kept at 60 min; gone at the 90-min pass.
        s.tick(90 * 60_000);
        assert_eq!(s.pick_to_at(dst(1), 90 * 60_000), 0);
    }

    #[test]
    fn partial_pass_runs_only_above_16384_entries() {
        let mut c: LocalityCache<Entry> = LocalityCache::new(24 * 3_600_000, 0);
        for i in 0..(MAX_SIZE as u32 + 300) {
            c.insert(Entry {
                addr: IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i)),
                server: RealServerId(0),
                lastuse: 0,
            });
        }
        // At 60 s: counter 1, too many entries → partial pass, but nothing
        // is 6 min idle.
        c.run_timers(60_000);
        assert_eq!(c.entries(), MAX_SIZE + 300);
        // At 7 min all are idle ≥ 6 min: goal = 300*4/3 = 400 → whole
        // buckets until ≥ 400 removed.
        c.run_timers(7 * 60_000);
        let left = c.entries();
        assert!(left <= MAX_SIZE + 300 - 400, "left {left}");
        assert!(left > MAX_SIZE - 200, "left {left}: only about the goal");
    }
}
