//! nq — never queue.
//!
//! An idle server (no active connection, weight > 0, not OVERLOADed) is
//! taken at once — the first one in list order, i.e. the newest, whatever
//! its weight. When none is idle, sed's rule applies: the smallest
//! `(active + 1) / weight`, strict comparison, first (newest) wins ties.

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::util::more_loaded;
use crate::{SchedContext, Scheduler};

/// The nq algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut least: Option<(RealServerId, u64, u32)> = None;
        for s in servers.iter() {
            if !s.is_usable() {
                continue;
            }
            if s.active_conns() == 0 {
                return Some(s.id());
            }
            let cost = u64::from(s.active_conns()) + 1;
            if least.is_none_or(|(_, lc, lw)| more_loaded(lc, lw, cost, s.weight())) {
                least = Some((s.id(), cost, s.weight()));
            }
        }
        least.map(|(id, _, _)| id)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, svc};

    #[test]
    fn idle_servers_first_then_shortest_expected_delay() {
        // weights: 0 → 1, 1 → 3. List 1 0.
        let s = svc("nq", &[1, 3]);
        // 1 idle → 1; 0 idle → 0; then sed: 1: 2/3 vs 0: 2/1 → 1;
        // 1: 3/3 vs 2/1 → 1; 1: 4/3 vs 2 → 1; 1: 5/3 vs 2 → 1;
        // 1: 6/3 = 2 vs 2 tie → 1 (first); 1: 7/3 vs 2 → 0.
        assert_eq!(s.run_active(8), vec![1, 0, 1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn idle_means_no_active_connection_even_with_inactive_ones() {
        let s = svc("nq", &[5, 1]);
        s.conns(1, 0, 50);
        s.conns(0, 1, 0);
        let picks = crate::service::tests::picks(&s, 1);
        assert_eq!(picks, vec![1]);
    }
}
