//! twos — power of two choices.
//!
//! Draws two numbers r1, r2 uniformly in `0..=total` (total = sum of the
//! weights of usable servers), walks the usable servers in list order
//! subtracting each weight from both, and takes as choice 1 and choice 2
//! the servers where each first reaches ≤ 0 — two weighted random picks.
//! Choice 2 wins only when *strictly* less loaded per unit of weight
//! (`w2 * overhead1 > w1 * overhead2`), so ties keep choice 1, as in the
//! kernel. Draws come from the injected [`crate::RandomSource`].

use xvs_packet::FlowKey;

use crate::server::{RealServer, RealServerId, ServerList};
use crate::util::more_loaded;
use crate::{SchedContext, Scheduler};

/// The twos algorithm (stateless; randomness comes with the context).
#[derive(Debug, Clone, Copy, Default)]
pub struct PowerOfTwo;

impl Scheduler for PowerOfTwo {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut total: u64 = 0;
        let mut last_usable: Option<&RealServer> = None;
        for s in servers.iter().filter(|s| s.is_usable()) {
            total += u64::from(s.weight());
            last_usable = Some(s);
        }
        let fallback = last_usable?;
        let bound = (total + 1).min(u64::from(u32::MAX)) as u32;
        let mut r1 = i64::from(ctx.random.below(bound));
        let mut r2 = i64::from(ctx.random.below(bound));
        let mut choice1: Option<&RealServer> = None;
        let mut choice2: Option<&RealServer> = None;
        for s in servers.iter().filter(|s| s.is_usable()) {
            r1 -= i64::from(s.weight());
            r2 -= i64::from(s.weight());
            if r1 <= 0 && choice1.is_none() {
                choice1 = Some(s);
            }
            if r2 <= 0 && choice2.is_none() {
                choice2 = Some(s);
            }
            if choice1.is_some() && choice2.is_some() {
                break;
            }
        }
        let c1 = choice1.unwrap_or(fallback);
        match choice2 {
            Some(c2) if more_loaded(c1.overhead(), c1.weight(), c2.overhead(), c2.weight()) => {
                Some(c2.id())
            }
            _ => Some(c1.id()),
        }
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, svc};

    #[test]
    fn draws_map_to_weighted_positions_and_the_less_loaded_wins() {
        // weights 0 → 1, 1 → 2, 2 → 3; list 2 1 0; total 6, draws in 0..=6.
        // Walk: 2 covers r ≤ 3 (0..=3), 1 covers 4..=5, 0 covers 6.
        let s = svc("twos", &[1, 2, 3]);
        assert_eq!(s.pick_with(&[0, 0]), 2);
        assert_eq!(s.pick_with(&[3, 4]), 2, "idle tie keeps choice 1");
        assert_eq!(s.pick_with(&[6, 5]), 0);
        s.conns(2, 1, 0); // 2: 256/3
        assert_eq!(s.pick_with(&[0, 4]), 1, "1: 0/2 is less loaded");
        assert_eq!(s.pick_with(&[0, 13]), 0, "13 mod 7 = 6 → 0");
        assert_eq!(s.pick_with(&[0, 2]), 2, "both on 2");
    }
}
