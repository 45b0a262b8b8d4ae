//! rr — round robin.
//!
//! Hands new connections to the servers in list order (newest first), one
//! each, skipping servers that are quiesced (weight 0) or OVERLOADed; the
//! last server chosen is the cursor and the next search starts after it,
//! wrapping once to end *on* the cursor itself. There are no ties; the
//! only subtlety is the cursor's fate on changes, kept as in the kernel: an
//! added server does not move it (the newcomer is reached after the wrap),
//! and a removed cursor falls back to the server before it (or the head).
//!
//! The cursor is a list position in one atomic word, advanced by
//! compare-and-swap so that concurrent workers produce the kernel's exact
//! sequence.

use std::sync::atomic::{AtomicU32, Ordering};

use xvs_packet::FlowKey;

use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

const HEAD: u32 = u32::MAX;

/// Round-robin state: the cursor (a position in kernel order, or the list
/// head before the first pick).
#[derive(Debug)]
pub struct RoundRobin {
    cursor: AtomicU32,
}

impl RoundRobin {
    /// A fresh cursor at the list head.
    #[must_use]
    pub fn new() -> Self {
        Self {
            cursor: AtomicU32::new(HEAD),
        }
    }

    fn pick(servers: &ServerList, cursor: u32) -> Option<usize> {
        let n = servers.len();
        let usable = |p: usize| servers.at(p).is_usable();
        if cursor == HEAD || cursor as usize >= n {
            return (0..n).find(|&p| usable(p));
        }
        let c = cursor as usize;
        (c + 1..n).chain(0..=c).find(|&p| usable(p))
    }
}

impl Default for RoundRobin {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        _flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let mut cur = self.cursor.load(Ordering::Acquire);
        loop {
            let pos = Self::pick(servers, cur)?;
            match self.cursor.compare_exchange_weak(
                cur,
                pos as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(servers.order()[pos]),
                Err(actual) => cur = actual,
            }
        }
    }

    fn server_added(&mut self, _servers: &ServerList, _id: RealServerId) {
        // The newcomer took position 0: the cursor's server moved one down.
        let c = self.cursor.get_mut();
        if *c != HEAD {
            *c += 1;
        }
    }

    fn server_removed(&mut self, _servers: &ServerList, _id: RealServerId, position: usize) {
        let c = self.cursor.get_mut();
        if *c == HEAD {
            return;
        }
        let p = position as u32;
        if *c == p {
            *c = if p == 0 { HEAD } else { p - 1 };
        } else if *c > p {
            *c -= 1;
        }
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(Self {
            cursor: AtomicU32::new(self.cursor.load(Ordering::Acquire)),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::service::tests::{TestService, picks, svc};

    #[test]
    fn visits_newest_first_and_wraps() {
        // Added A, B, C: list C B A.
        let s = svc("rr", &[1, 1, 1]);
        assert_eq!(picks(&s, 7), vec![2, 1, 0, 2, 1, 0, 2]);
    }

    #[test]
    fn skips_quiesced_and_overloaded_servers() {
        let mut s = svc("rr", &[1, 1, 1]);
        s.edit_weight(1, 0);
        assert_eq!(picks(&s, 4), vec![2, 0, 2, 0]);
        s.servers().set_overloaded(crate::RealServerId(0), true);
        assert_eq!(picks(&s, 2), vec![2, 2]);
        s.servers().set_overloaded(crate::RealServerId(2), true);
        assert_eq!(picks(&s, 1), vec![-1]);
    }

    #[test]
    fn added_server_is_reached_after_the_wrap_and_removed_cursor_steps_back() {
        let mut s = svc("rr", &[1, 1]); // list 1 0
        assert_eq!(picks(&s, 1), vec![1]); // cursor on 1 (position 0)
        s.add(3, 1); // list 2 1 0, cursor still on 1
        assert_eq!(picks(&s, 3), vec![0, 2, 1]);
        // Cursor on 1 (position 1); remove it: cursor goes to 2 (position 0).
        s.remove(1);
        assert_eq!(picks(&s, 3), vec![0, 2, 0]);
    }

    #[test]
    fn concurrent_workers_share_one_exact_sequence() {
        // The cursor advances by compare-and-swap: 4 threads × 750 picks
        // over 3 servers form one round-robin sequence, so every server
        // gets exactly 1000.
        let s = svc("rr", &[1, 1, 1]);
        let counts: Vec<[u32; 3]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut c = [0u32; 3];
                        for p in picks(&s, 750) {
                            c[p as usize] += 1;
                        }
                        c
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: Vec<u32> = (0..3).map(|i| counts.iter().map(|c| c[i]).sum()).collect();
        assert_eq!(total, vec![1000, 1000, 1000]);
    }
}
