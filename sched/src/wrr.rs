//! wrr — weighted round robin.
//!
//! The kernel's interleaved WRR: a current weight `cw` steps down from the
//! maximum weight `mw` by the gcd `di` of the weights; at each step the scan
//! continues in list order (newest first) and picks every server whose
//! weight is at least `cw`. With weights 4, 3, 2 iterated A, B, C the
//! period is `A A B A B C A B C`. There are no ties to break: list order
//! *is* the tie-break, as in the kernel. Any add, delete or edit puts the
//! cursor back at the list head, recomputes `di` and `mw` and keeps `cw`
//! when it is still in range (rounded to a multiple of `di` plus one).
//!
//! (cursor, cw) share one atomic word advanced by compare-and-swap, so the
//! sequence stays exact with concurrent workers.

use std::sync::atomic::{AtomicU64, Ordering};

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::util::gcd_of;
use crate::{SchedContext, Scheduler};

const HEAD: u32 = u32::MAX;

fn pack(cl: u32, cw: i32) -> u64 {
    (u64::from(cl) << 32) | u64::from(cw as u32)
}

fn unpack(v: u64) -> (u32, i32) {
    ((v >> 32) as u32, v as u32 as i32)
}

/// wrr state (`struct ip_vs_wrr_mark`).
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// (cl, cw) packed.
    state: AtomicU64,
    /// Maximum weight minus (di - 1).
    mw: i32,
    /// gcd of the positive weights (1 if none).
    di: i32,
}

impl WeightedRoundRobin {
    /// `ip_vs_wrr_init_svc`: cursor at the head, `cw = mw`.
    #[must_use]
    pub fn new(servers: &ServerList) -> Self {
        let (di, mw) = Self::steps(servers);
        Self {
            state: AtomicU64::new(pack(HEAD, mw)),
            mw,
            di,
        }
    }

    fn steps(servers: &ServerList) -> (i32, i32) {
        let g = gcd_of(servers.iter(), |s| s.weight());
        let di = if g == 0 { 1 } else { g as i32 };
        let max = servers.iter().map(|s| s.weight()).max().unwrap_or(0) as i32;
        (di, max - (di - 1))
    }

    /// `ip_vs_wrr_dest_changed`.
    fn changed(&mut self, servers: &ServerList) {
        let (di, mw) = Self::steps(servers);
        self.di = di;
        self.mw = mw;
        let (_, mut cw) = unpack(*self.state.get_mut());
        if cw > mw || cw == 0 {
            cw = mw;
        } else if di > 1 {
            cw = (cw / di) * di + 1;
        }
        *self.state.get_mut() = pack(HEAD, cw);
    }

    /// One run of `ip_vs_wrr_schedule` from state (cl, cw): the pick and
    /// the state to store.
    fn run(&self, servers: &ServerList, cl: u32, mut cw: i32) -> (Option<usize>, u32, i32) {
        let n = servers.len();
        if self.mw == 0 {
            return (None, cl, cw);
        }
        let cl = if cl as usize >= n { HEAD } else { cl };
        let last = cl;
        let mut dest = cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let start = if dest == HEAD { 0 } else { dest as usize + 1 };
            for p in start..n {
                let s = servers.at(p);
                if !s.is_overloaded() && i64::from(s.weight()) >= i64::from(cw) {
                    return (Some(p), p as u32, cw);
                }
                if stop == Some(p) {
                    return (None, p as u32, cw);
                }
            }
            dest = HEAD;
            cw -= self.di;
            if cw <= 0 {
                cw = self.mw;
                if last_pass || last == HEAD {
                    return (None, HEAD, cw);
                }
                restarted = true;
            }
            last_pass = cw <= self.di;
            if last_pass && restarted && last != HEAD {
                stop = Some(last as usize);
            }
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let (cl, cw) = unpack(cur);
            let (pick, new_cl, new_cw) = self.run(servers, cl, cw);
            let next = pack(new_cl, new_cw);
            if next == cur {
                return pick.map(|p| servers.order()[p]);
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return pick.map(|p| servers.order()[p]),
                Err(actual) => cur = actual,
            }
        }
    }

    fn server_added(&mut self, servers: &ServerList, _id: RealServerId) {
        self.changed(servers);
    }

    fn server_removed(&mut self, servers: &ServerList, _id: RealServerId, _position: usize) {
        self.changed(servers);
    }

    fn server_updated(&mut self, servers: &ServerList, _id: RealServerId) {
        self.changed(servers);
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Self {
            state: AtomicU64::new(self.state.load(Ordering::Acquire)),
            mw: self.mw,
            di: self.di,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn weights_4_3_2_added_to_an_empty_service() {
        // Added A(4), B(3), C(2): list C B A. After A alone di=4, mw=1,
        // cw=1; B and C keep cw=1, so the first round runs at cw=1:
        // C B A, then steady state cw=4: A | cw=3: B A | cw=2: C B A |
        // cw=1: C B A.
        let s = svc("wrr", &[4, 3, 2]);
        assert_eq!(
            picks(&s, 18),
            vec![2, 1, 0, 0, 1, 0, 2, 1, 0, 2, 1, 0, 0, 1, 0, 2, 1, 0]
        );
    }

    #[test]
    fn weights_4_3_2_from_a_freshly_bound_scheduler() {
        // The textbook sequence: bind wrr to a service that already has
        // A(4), B(3), C(2) iterated A, B, C (added C, B, A), cw starts at mw.
        let s = crate::service::tests::svc_bound_after("wrr", &[2, 3, 4]);
        // indices: server 2 has weight 4 (A), 1 has 3 (B), 0 has 2 (C).
        assert_eq!(picks(&s, 9), vec![2, 2, 1, 2, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn gcd_steps_and_reset_on_weight_change() {
        // Weights 4 and 2: di=2, mw=3. Added A(4), B(2): list B A.
        // After A alone: di=4, mw=1, cw=1. Adding B: di=2, mw=3, cw=1 stays
        // (cw/di*di+1 = 1). Round at cw=1: B A; then cw=3: A; cw=1: B A.
        let mut s = svc("wrr", &[4, 2]);
        assert_eq!(picks(&s, 6), vec![1, 0, 0, 1, 0, 0]);
        // Quiesce A mid-stream: cursor to head, di=2 (B alone), mw=2-1=1,
        // cw=3 > mw so cw=1; only B remains eligible.
        s.edit_weight(0, 0);
        assert_eq!(picks(&s, 3), vec![1, 1, 1]);
        s.edit_weight(0, 4);
        // di=2, mw=3; cw stays in range: from the head: B, A at cw=1 first.
        let next = picks(&s, 3);
        assert_eq!(next, vec![1, 0, 0]);
    }

    #[test]
    fn all_overloaded_gives_none_and_recovers() {
        let s = svc("wrr", &[2, 1]);
        for i in 0..2 {
            s.servers().set_overloaded(crate::RealServerId(i), true);
        }
        assert_eq!(picks(&s, 2), vec![-1, -1]);
        s.servers().set_overloaded(crate::RealServerId(0), false);
        assert_eq!(picks(&s, 3), vec![0, 0, 0]);
    }

    #[test]
    fn all_quiesced_gives_none() {
        let s = svc("wrr", &[0, 0]);
        assert_eq!(picks(&s, 2), vec![-1, -1]);
    }

    #[test]
    fn concurrent_workers_share_one_exact_sequence() {
        // (cursor, cw) advance together by compare-and-swap: 4 threads ×
        // 900 picks = 400 periods of 4,3,2 → exactly 1600, 1200, 800.
        let s = crate::service::tests::svc_bound_after("wrr", &[4, 3, 2]);
        let counts: Vec<[u32; 3]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut c = [0u32; 3];
                        for p in picks(&s, 900) {
                            c[p as usize] += 1;
                        }
                        c
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: Vec<u32> = (0..3).map(|i| counts.iter().map(|c| c[i]).sum()).collect();
        assert_eq!(total, vec![1600, 1200, 800]);
    }
}
