//! sed — shortest expected delay.
//!
//! Picks the server with the smallest `(active + 1) / weight` — the delay a
//! new connection would expect — compared by cross-multiplication;
//! inactive connections do not count. Same structure as wlc: the first
//! usable server in list order is the candidate and only a strictly better
//! one replaces it, so ties go to the newest server.

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::util::weighted_least;
use crate::{SchedContext, Scheduler};

/// The sed algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortestExpectedDelay;

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        weighted_least(servers, |s| u64::from(s.active_conns()) + 1).map(|s| s.id())
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn expected_delay_with_weights_and_newest_on_ties() {
        // weights: 0 → 1, 1 → 3. List 1 0.
        let s = svc("sed", &[1, 3]);
        // Binding each pick as an active connection: costs (a+1)/w.
        // 1: 1/3 vs 0: 1/1 → 1; 1: 2/3 → 1; 1: 3/3 vs 1/1 tie → 1 (newest);
        // 1: 4/3 vs 1/1 → 0; then 1: 4/3 vs 0: 2/1 → 1.
        assert_eq!(s.run_active(5), vec![1, 1, 1, 0, 1]);
    }

    #[test]
    fn inactive_connections_do_not_count() {
        let s = svc("sed", &[1, 1]);
        s.conns(1, 0, 100);
        assert_eq!(picks(&s, 1), vec![1]);
    }
}
