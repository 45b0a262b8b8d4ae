//! ovf — weighted overflow.
//!
//! The highest-weight server takes new connections while its active
//! connections do not exceed its weight; once it has weight + 1 active
//! connections the next highest weight is used, and so on. Quiesced and
//! OVERLOADed servers are skipped; ties on weight go to the first in list
//! order (the newest), by a strict comparison. UDP connections never become
//! active, so ovf never overflows for UDP (as the kernel documents).

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

/// The ovf algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedOverflow;

impl Scheduler for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut best: Option<&crate::RealServer> = None;
        for s in servers.iter() {
            let w = s.weight();
            if s.is_overloaded() || u64::from(s.active_conns()) > u64::from(w) || w == 0 {
                continue;
            }
            if best.is_none_or(|b| w > b.weight()) {
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
    use crate::service::tests::{TestService, svc};

    #[test]
    fn top_weight_takes_weight_plus_one_then_overflows() {
        // 0 → weight 2, 1 → weight 1. List 1 0.
        let s = svc("ovf", &[2, 1]);
        // 0 takes 3 (active 0,1,2 ≤ 2), then 1 takes 2, then none.
        assert_eq!(s.run_active(6), vec![0, 0, 0, 1, 1, -1]);
    }
}
