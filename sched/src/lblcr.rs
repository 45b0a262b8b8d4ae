//! lblcr — locality-based least connection with replication.
//!
//! Like lblc, but a destination address maps to a *set* of servers. The
//! set's weighted-least-connected member is used unless it is lblc-
//! overloaded; then wlc's rule picks a server over the whole service and
//! it joins the set (new members go to the front of the set; ties in both
//! rules keep the earlier candidate, i.e. the front of the set or the
//! newest server). A set that has not changed for `lblcr_expiration`
//! (24 h) and has more than one member sheds its weighted-*most*-loaded
//! member. Entries are collected by the same periodic timer as lblc's.

use core::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use xvs_packet::FlowKey;

use crate::lblc::{CacheEntry, LocalityCache};
use crate::server::{RealServer, RealServerId, ServerList};
use crate::util::{lblc_overloaded, more_loaded, weighted_least};
use crate::{Millis, SchedContext, Scheduler};

#[derive(Debug, Clone)]
struct Entry {
    addr: IpAddr,
    /// Members, front = most recently inserted.
    set: Vec<RealServerId>,
    lastmod: Millis,
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

impl Entry {
    fn insert(&mut self, id: RealServerId, now: Millis) {
        if self.set.contains(&id) {
            return;
        }
        self.set.insert(0, id);
        self.lastmod = now;
    }

    fn erase(&mut self, id: RealServerId, now: Millis) {
        if let Some(pos) = self.set.iter().position(|&x| x == id) {
            self.set.remove(pos);
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`.
    fn min<'a>(&self, servers: &'a ServerList) -> Option<&'a RealServer> {
        let mut members = self.set.iter().filter_map(|&id| servers.get(id));
        let mut least = members
            .by_ref()
            .find(|s| !s.is_overloaded() && s.weight() > 0 && s.is_available())?;
        let mut loh = least.overhead();
        for s in members {
            if s.is_overloaded() {
                continue;
            }
            let doh = s.overhead();
            if more_loaded(loh, least.weight(), doh, s.weight()) && s.is_available() {
                least = s;
                loh = doh;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`.
    fn max<'a>(&self, servers: &'a ServerList) -> Option<&'a RealServer> {
        let mut members = self.set.iter().filter_map(|&id| servers.get(id));
        let mut most = members.by_ref().find(|s| s.weight() > 0)?;
        let mut moh = most.overhead();
        for s in members {
            let doh = s.overhead();
            if more_loaded(doh, s.weight(), moh, most.weight()) && s.weight() > 0 {
                most = s;
                moh = doh;
            }
        }
        Some(most)
    }
}

/// lblcr state: the destination → server-set cache, shared by all
/// snapshots.
#[derive(Debug, Clone)]
pub struct LocalityReplication {
    cache: Arc<Mutex<LocalityCache<Entry>>>,
    expiration: Millis,
}

impl LocalityReplication {
    /// A cache for a service created at `now`; sets shed a member after
    /// `expiration` without change.
    #[must_use]
    pub fn new(expiration: Millis, now: Millis) -> Self {
        Self {
            cache: Arc::new(Mutex::new(LocalityCache::new(expiration, now))),
            expiration,
        }
    }

    /// The set cached for `daddr`, front first (for tests and listings).
    #[must_use]
    pub fn set_of(&self, daddr: &IpAddr) -> Vec<RealServerId> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(daddr)
            .map(|e| e.set.clone())
            .unwrap_or_default()
    }
}

impl Scheduler for LocalityReplication {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let now = ctx.now;
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(en) = cache.get_mut(&flow.dst) {
            en.lastuse = now;
            let m = en.min(servers).map(RealServer::id);
            if en.set.len() > 1
                && now > en.lastmod + self.expiration
                && let Some(most) = en.max(servers).map(RealServer::id)
            {
                en.erase(most, now);
            }
            if let Some(id) = m
                && let Some(s) = servers.get(id)
                && !lblc_overloaded(s, servers)
            {
                return Some(id);
            }
            let chosen = weighted_least(servers, |s| s.overhead())?.id();
            en.insert(chosen, now);
            return Some(chosen);
        }
        let chosen = weighted_least(servers, |s| s.overhead())?.id();
        cache.insert(Entry {
            addr: flow.dst,
            set: vec![chosen],
            lastmod: now,
            lastuse: now,
        });
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
    use crate::service::tests::{flow_to, svc};
    use crate::{FixedDraws, SchedContext};
    use core::net::Ipv4Addr;

    fn dst(i: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
    }

    /// Schedules through `sched` at `now` and binds the pick as active.
    fn pick(sched: &LocalityReplication, servers: &ServerList, d: IpAddr, now: Millis) -> u32 {
        let mut draws = FixedDraws::new(vec![]);
        let mut ctx = SchedContext {
            now,
            random: &mut draws,
        };
        let id = sched.schedule(servers, &flow_to(d), &mut ctx).unwrap();
        servers.bind_conn(id);
        servers.conn_activity_changed(id, false, true);
        id.0
    }

    #[test]
    fn the_set_grows_under_load_and_sheds_its_most_loaded_member_when_stale() {
        let s = svc("rr", &[1, 1, 4]); // only for its server list: 2(w4) 1 0
        let servers = s.servers();
        let sched = LocalityReplication::new(60_000, 0);
        // No entry: wlc, idle tie → newest, 2.
        assert_eq!(pick(&sched, servers, dst(1), 0), 2);
        // 2 keeps it while its active count (1..=4) is not above weight 4.
        for _ in 0..4 {
            assert_eq!(pick(&sched, servers, dst(1), 0), 2);
        }
        // 2 has 5 active > 4 and 1 is below half its weight: wlc over the
        // service: 2: 1280/4, 1: 0/1, 0: 0/1 → 1 (first of the idle tie).
        assert_eq!(pick(&sched, servers, dst(1), 0), 1);
        assert_eq!(
            sched.set_of(&dst(1)),
            vec![RealServerId(1), RealServerId(2)]
        );
        // Set min: 1 (256/1) vs 2 (1280/4 = 320) → 1, not above its weight.
        assert_eq!(pick(&sched, servers, dst(1), 0), 1);
        // Set min: 1 (512/1) vs 2 (320) → 2, lblc-overloaded → wlc → 0.
        assert_eq!(pick(&sched, servers, dst(1), 0), 0);
        assert_eq!(sched.set_of(&dst(1)).len(), 3);
        // Ten minutes later, unchanged for more than the expiration: the
        // most loaded per weight (1: 512/1) leaves; min (0) was taken first.
        assert_eq!(pick(&sched, servers, dst(1), 600_000), 0);
        assert_eq!(
            sched.set_of(&dst(1)),
            vec![RealServerId(0), RealServerId(2)]
        );
    }
}
