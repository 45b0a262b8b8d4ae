//! wlc — weighted least connection (ipvsadm's default).
//!
//! Picks the server with the smallest overhead per unit of weight,
//! `(active * 256 + inactive) / weight`, compared by cross-multiplication.
//! The first usable server in list order (weight > 0, not OVERLOADed) is
//! the starting candidate and a later one replaces it only when *strictly*
//! less loaded, so ties go to the newest server; a quiesced server can
//! never win because its side of the product is zero.

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::util::weighted_least;
use crate::{SchedContext, Scheduler};

/// The wlc algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        weighted_least(servers, |s| s.overhead()).map(|s| s.id())
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn ties_favour_the_newest_and_weights_scale_the_load() {
        let s = svc("wlc", &[1, 2, 1]);
        assert_eq!(picks(&s, 1), vec![2], "all idle: newest");
        s.conns(2, 1, 0); // 2: 256/1
        assert_eq!(picks(&s, 1), vec![1], "1: 0/2");
        s.conns(1, 1, 0); // 1: 256/2 = 128
        assert_eq!(picks(&s, 1), vec![0], "0: 0/1");
        s.conns(0, 1, 0); // 0: 256/1
        assert_eq!(picks(&s, 1), vec![1], "128 < 256");
        s.conns(1, 1, 0); // 1: 512/2 = 256: tie with 2 and 0 → newest (2)
        assert_eq!(picks(&s, 1), vec![2]);
    }

    #[test]
    fn overloaded_and_quiesced_servers_are_skipped() {
        let mut s = svc("wlc", &[1, 1]);
        s.conns(0, 3, 0);
        s.servers().set_overloaded(crate::RealServerId(1), true);
        assert_eq!(picks(&s, 1), vec![0]);
        s.servers().set_overloaded(crate::RealServerId(1), false);
        s.edit_weight(1, 0);
        assert_eq!(picks(&s, 1), vec![0]);
        s.edit_weight(0, 0);
        assert_eq!(picks(&s, 1), vec![-1]);
    }

    #[test]
    fn a_quiesced_first_server_never_becomes_the_candidate() {
        // List 2 1 0; 2 is quiesced and idle, 1 loaded, 0 idle.
        let mut s = svc("wlc", &[1, 1, 1]);
        s.edit_weight(2, 0);
        s.conns(1, 1, 0);
        assert_eq!(picks(&s, 1), vec![0]);
    }
}
