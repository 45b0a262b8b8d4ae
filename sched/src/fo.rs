//! fo — weighted failover.
//!
//! Every new connection goes to the server with the highest weight among
//! those that are not OVERLOADed (weight > 0). The comparison is strict, so
//! among equal weights the first in list order — the newest — is chosen;
//! with thresholds set, traffic fails over to the next weight down once
//! the top server is OVERLOADed.

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

/// The fo algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedFailover;

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut best: Option<&crate::RealServer> = None;
        let mut hw = 0;
        for s in servers.iter() {
            if !s.is_overloaded() && s.weight() > hw {
                hw = s.weight();
                best = Some(s);
            }
        }
        best.map(crate::RealServer::id)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn highest_weight_newest_on_ties_and_failover_on_overload() {
        let mut s = svc("fo", &[5, 3, 5]);
        assert_eq!(picks(&s, 2), vec![2, 2], "two 5s: newest");
        s.servers().set_overloaded(crate::RealServerId(2), true);
        assert_eq!(picks(&s, 1), vec![0]);
        s.servers().set_overloaded(crate::RealServerId(0), true);
        assert_eq!(picks(&s, 1), vec![1]);
        s.edit_weight(1, 0);
        assert_eq!(picks(&s, 1), vec![-1]);
    }
}
