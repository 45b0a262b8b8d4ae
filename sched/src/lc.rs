//! lc — least connection.
//!
//! Picks the server with the smallest overhead `active * 256 + inactive`,
//! skipping quiesced (weight 0) and OVERLOADed servers; weights play no
//! other part. The comparison is strict, so on a tie the first server in
//! list order — the newest — keeps it, as in the kernel.

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

/// The lc algorithm (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut least: Option<(RealServerId, u64)> = None;
        for s in servers.iter() {
            if !s.is_usable() {
                continue;
            }
            let oh = s.overhead();
            if least.is_none_or(|(_, l)| oh < l) {
                least = Some((s.id(), oh));
            }
        }
        least.map(|(id, _)| id)
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn least_overhead_wins_and_ties_go_to_the_newest() {
        let s = svc("lc", &[1, 5, 1]);
        assert_eq!(picks(&s, 1), vec![2], "all idle: newest");
        s.conns(2, 0, 1); // 1 inactive on 2
        assert_eq!(picks(&s, 1), vec![1]);
        s.conns(1, 0, 1);
        s.conns(0, 0, 1);
        assert_eq!(picks(&s, 1), vec![2], "all at 1: newest again");
        // One active weighs 256 inactive: 2 gets 1 active, 1 gets 255 more.
        s.conns(2, 1, 0);
        s.conns(1, 0, 255);
        assert_eq!(picks(&s, 1), vec![0]);
        s.conns(0, 1, 0);
        // 2: 256+1=257, 1: 256, 0: 257 → 1.
        assert_eq!(picks(&s, 1), vec![1]);
    }

    #[test]
    fn weights_are_ignored_except_zero() {
        let mut s = svc("lc", &[100, 1]);
        s.conns(1, 1, 0);
        assert_eq!(picks(&s, 1), vec![0]);
        s.edit_weight(0, 0);
        assert_eq!(picks(&s, 1), vec![1]);
    }
}
