//! mh — Maglev hashing.
//!
//! Each server gets a permutation of the M table slots from two hashes of
//! its address and port (`offset`, `skip`); servers then take turns in
//! list order (newest first), each claiming `turns` slots — its latest
//! non-zero weight over the gcd, scaled down for huge weights — at the next
//! free position of its permutation, until the table is full. So leftover
//! slots go to the first servers in list order, and a quiesced server keeps
//! its slots (it is merely unusable). A client's address (and port with
//! `mh-port`) hashes to a slot; without `mh-fallback` an unusable slot
//! server means no server, with it the kernel's rehash sequence is probed
//! until a usable server or an empty slot. Hashes are the kernel's
//! hsiphash (SipHash-1-3 on 64-bit) with its two fixed keys, so two
//! directors — or xvs and the kernel — build identical tables. The table is
//! built on every add, delete and edit, off the hot path, and published
//! whole.

use xvs_packet::FlowKey;

use crate::hash::{SipKey, fold_addr, hsiphash_u32};
use crate::registry::{MhTableSize, SchedFlags};
use crate::server::{RealServerId, ServerList};
use crate::sh::hashed_port;
use crate::util::gcd_of;
use crate::{SchedContext, Scheduler};

/// The kernel's first fixed key (slot offsets and lookups).
pub const KEY1: SipKey = SipKey(2_654_435_761, 2_654_435_761);
/// The kernel's second fixed key (permutation skips).
pub const KEY2: SipKey = SipKey(2_654_446_892, 2_654_446_892);

const EMPTY: u32 = u32::MAX;

/// `ip_vs_mh_hashkey`: hsiphash of the u32 `offset + port + addr`.
#[must_use]
pub fn hashkey(addr: &core::net::IpAddr, port: u16, key: SipKey, offset: u32) -> u32 {
    let v = offset
        .wrapping_add(u32::from(port))
        .wrapping_add(fold_addr(addr));
    hsiphash_u32(v, key)
}

/// mh state: flags, size and the lookup table (server ids by slot).
#[derive(Debug, Clone)]
pub struct MaglevHashing {
    flags: SchedFlags,
    size: MhTableSize,
    table: Box<[u32]>,
}

struct Setup {
    id: u32,
    perm: u32,
    skip: u32,
    /// skip⁻¹ mod M, 0 until needed.
    inv_skip: u32,
    turns: u32,
}

/// Slot occupancy during a build, and the two ways of finding a server's
/// next free slot. Both give the kernel's answer — the first free slot on
/// the server's permutation `perm, perm + skip, perm + 2 skip, …` (mod M) —
/// but at different costs:
/// * while many slots are free, probe along the permutation (a bitmap of
///   M bits stays in L1 cache);
/// * once at most [`TAIL_SLOTS`] are free, probing costs M / free steps
///   per claim (the last few hundred claims would take about half of all
///   probes), so instead each remaining free slot `f` is ranked by its
///   position on the permutation, `(f - perm) * skip⁻¹ mod M` (M is prime,
///   so `skip` is invertible), and the first one wins.
struct Occupancy {
    m: u32,
    taken: Vec<u64>,
    free_left: u32,
    /// The free slots, filled when the tail starts.
    tail: Vec<u32>,
    /// `u64::MAX / m`, for Barrett reduction mod m.
    barrett: u64,
}

/// Number of free slots below which [`Occupancy`] switches to ranking.
const TAIL_SLOTS: u32 = 256;

impl Occupancy {
    fn new(m: u32) -> Self {
        Self {
            m,
            taken: vec![0; (m as usize).div_ceil(64)],
            free_left: m,
            tail: Vec::new(),
            barrett: u64::MAX / u64::from(m),
        }
    }

    fn is_free(&self, x: u32) -> bool {
        (self.taken[(x >> 6) as usize] >> (x & 63)) & 1 == 0
    }

    /// `x mod m` for `x < 2^40`, without a division.
    fn reduce(&self, x: u64) -> u64 {
        let q = ((u128::from(x) * u128::from(self.barrett)) >> 64) as u64;
        let r = x - q * u64::from(self.m);
        if r >= u64::from(self.m) {
            r - u64::from(self.m)
        } else {
            r
        }
    }

    /// `a⁻¹ mod m` by Fermat's little theorem (m is prime).
    fn inverse(&self, a: u32) -> u32 {
        let (mut base, mut e, mut r) = (u64::from(a), self.m - 2, 1u64);
        while e > 0 {
            if e & 1 == 1 {
                r = self.reduce(r * base);
            }
            base = self.reduce(base * base);
            e >>= 1;
        }
        r as u32
    }

    /// `x + k mod m` for `x, k < m`.
    fn step(&self, x: u32, k: u32) -> u32 {
        let y = x + k;
        if y >= self.m { y - self.m } else { y }
    }

    /// Probes `perm, perm + skip, …` one slot at a time, walking the odd
    /// and even positions as two independent chains so that the next
    /// address does not wait for the previous one (same answer, ~15 %
    /// faster on the 65537-slot build).
    fn probe(&self, perm: u32, skip: u32) -> u32 {
        if self.is_free(perm) {
            return perm;
        }
        let skip2 = self.step(skip, skip);
        let mut a = self.step(perm, skip);
        let mut b = self.step(a, skip);
        loop {
            if self.is_free(a) {
                return a;
            }
            if self.is_free(b) {
                return b;
            }
            a = self.step(a, skip2);
            b = self.step(b, skip2);
        }
    }

    /// The first free slot on the permutation of a server now at `perm`
    /// with step `skip` (`inv_skip`: its inverse, computed on first use).
    fn next_free(&self, perm: u32, skip: u32, inv_skip: &mut u32) -> (u32, usize) {
        if self.tail.is_empty() {
            return (self.probe(perm, skip), usize::MAX);
        }
        if *inv_skip == 0 {
            *inv_skip = self.inverse(skip);
        }
        let inv = u64::from(*inv_skip);
        let mut best = (u64::MAX, 0usize);
        for (i, &f) in self.tail.iter().enumerate() {
            let d = if f >= perm {
                f - perm
            } else {
                f + self.m - perm
            };
            let rank = self.reduce(u64::from(d) * inv);
            if rank < best.0 {
                best = (rank, i);
            }
        }
        (self.tail[best.1], best.1)
    }

    fn claim(&mut self, c: u32, tail_index: usize) {
        self.taken[(c >> 6) as usize] |= 1 << (c & 63);
        self.free_left -= 1;
        if tail_index != usize::MAX {
            self.tail.swap_remove(tail_index);
        } else if self.free_left <= TAIL_SLOTS.min(self.m / 16) && self.free_left > 0 {
            self.tail = (0..self.m).filter(|&x| self.is_free(x)).collect();
        }
    }
}

impl MaglevHashing {
    /// Builds the table for `servers`.
    #[must_use]
    pub fn new(servers: &ServerList, flags: SchedFlags, size: MhTableSize) -> Self {
        let table = Self::build_table(servers, size)
            .unwrap_or_else(|| vec![EMPTY; size.slots() as usize].into_boxed_slice());
        Self { flags, size, table }
    }

    /// The lookup table of `servers` (ids by slot, `u32::MAX` = empty), or
    /// `None` when there are more servers than slots (the kernel's EINVAL:
    /// the previous table stays).
    #[must_use]
    pub fn build_table(servers: &ServerList, size: MhTableSize) -> Option<Box<[u32]>> {
        let m = size.slots();
        if servers.len() > m as usize {
            return None;
        }
        let mut table = vec![EMPTY; m as usize].into_boxed_slice();
        let g = gcd_of(servers.iter(), |s| s.last_weight());
        if g == 0 {
            return Some(table);
        }
        let max = servers.iter().map(|s| s.last_weight()).max().unwrap_or(0) / g;
        let fls = 32 - max.leading_zeros();
        let rshift = fls.saturating_sub(size.bits());
        let mut setups: Vec<Setup> = servers
            .iter()
            .map(|s| {
                let offset = hashkey(&s.addr(), s.port(), KEY1, 0) % m;
                let skip = hashkey(&s.addr(), s.port(), KEY2, 0) % (m - 1) + 1;
                let lw = s.last_weight();
                let scaled = (lw / g) >> rshift;
                let turns = if scaled != 0 {
                    scaled
                } else {
                    u32::from(lw != 0)
                };
                Setup {
                    id: s.id().0,
                    perm: offset,
                    skip,
                    inv_skip: 0,
                    turns,
                }
            })
            .collect();
        // Occupancy in a bitmap, as the kernel does: 8 KiB for 65537 slots
        // stays in L1 while the probes jump around the table.
        let mut occupancy = Occupancy::new(m);
        loop {
            for ds in &mut setups {
                for _ in 0..ds.turns {
                    let (c, tail_index) = occupancy.next_free(ds.perm, ds.skip, &mut ds.inv_skip);
                    ds.perm = c;
                    occupancy.claim(c, tail_index);
                    table[c as usize] = ds.id;
                    if occupancy.free_left == 0 {
                        return Some(table);
                    }
                }
            }
        }
    }

    /// The table (ids by slot, `u32::MAX` = empty).
    #[must_use]
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    fn rebuild(&mut self, servers: &ServerList) {
        if let Some(t) = Self::build_table(servers, self.size) {
            self.table = t;
        }
    }

    fn usable(servers: &ServerList, id: u32) -> bool {
        servers.get(RealServerId(id)).is_some_and(|s| s.is_usable())
    }
}

impl Scheduler for MaglevHashing {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let m = self.size.slots();
        let port = if self.flags.port {
            hashed_port(flow)
        } else {
            0
        };
        let ihash = hashkey(&flow.src, port, KEY1, 0) % m;
        let id = self.table[ihash as usize];
        if id == EMPTY {
            return None;
        }
        if Self::usable(servers, id) {
            return Some(RealServerId(id));
        }
        if !self.flags.fallback {
            return None;
        }
        for offset in 0..m {
            let roffset = (offset + ihash) % m;
            let slot = hashkey(&flow.src, port, KEY1, roffset) % m;
            let id = self.table[slot as usize];
            if id == EMPTY {
                break;
            }
            if Self::usable(servers, id) {
                return Some(RealServerId(id));
            }
        }
        None
    }

    fn server_added(&mut self, servers: &ServerList, _id: RealServerId) {
        self.rebuild(servers);
    }

    fn server_removed(&mut self, servers: &ServerList, _id: RealServerId, _position: usize) {
        self.rebuild(servers);
    }

    fn server_updated(&mut self, servers: &ServerList, _id: RealServerId) {
        self.rebuild(servers);
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{TestService, svc, svc_with};
    use core::net::{IpAddr, Ipv4Addr};

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &id in table {
            c[id as usize] += 1;
        }
        c
    }

    /// `ip_vs_mh_populate` written literally: one probe at a time.
    fn literal_build(servers: &ServerList, size: MhTableSize) -> Vec<u32> {
        let m = size.slots();
        let g = crate::util::gcd_of(servers.iter(), |s| s.last_weight());
        let max = servers.iter().map(|s| s.last_weight()).max().unwrap() / g;
        let rshift = (32 - max.leading_zeros()).saturating_sub(size.bits());
        let mut ds: Vec<(u32, u32, u32, u32)> = servers
            .iter()
            .map(|s| {
                let lw = s.last_weight();
                let t = (lw / g) >> rshift;
                (
                    s.id().0,
                    hashkey(&s.addr(), s.port(), KEY1, 0) % m,
                    hashkey(&s.addr(), s.port(), KEY2, 0) % (m - 1) + 1,
                    if t != 0 { t } else { u32::from(lw != 0) },
                )
            })
            .collect();
        let mut table = vec![EMPTY; m as usize];
        let mut n = 0;
        loop {
            for d in &mut ds {
                for _ in 0..d.3 {
                    while table[d.1 as usize] != EMPTY {
                        d.1 += d.2;
                        if d.1 >= m {
                            d.1 -= m;
                        }
                    }
                    table[d.1 as usize] = d.0;
                    n += 1;
                    if n == m {
                        return table;
                    }
                }
            }
        }
    }

    #[test]
    fn the_fast_build_equals_the_literal_kernel_loop() {
        for (slots, n) in [
            (251, 3),
            (251, 40),
            (4093, 1),
            (4093, 10),
            (4093, 200),
            (65537, 50),
        ] {
            let size = MhTableSize::new(slots).unwrap();
            let weights: Vec<u32> = (0..n).map(|i| 1 + (i * 7 % 11)).collect();
            let s = svc("rr", &weights);
            let fast = MaglevHashing::build_table(s.servers(), size).unwrap();
            assert_eq!(
                &fast[..],
                &literal_build(s.servers(), size)[..],
                "{slots} slots, {n} servers"
            );
        }
    }

    #[test]
    fn modular_helpers() {
        let o = Occupancy::new(65537);
        for a in [1u32, 2, 3, 700, 65536] {
            assert_eq!(u64::from(a) * u64::from(o.inverse(a)) % 65537, 1);
        }
        for x in [0u64, 65536, 65537, 1 << 34, (1 << 40) - 1] {
            assert_eq!(o.reduce(x), x % 65537);
        }
    }

    #[test]
    fn hashes_match_an_independent_model_of_the_kernel() {
        // Values computed with a separate Python SipHash-1-3 written from
        // lib/siphash.c (64-bit hsiphash) and ip_vs_mh.c's formulas.
        assert_eq!(crate::hash::hsiphash_u32(0, KEY1), 0x1d5a_77c2);
        assert_eq!(
            crate::hash::hsiphash_u32(0x0A00_0001 + 80, KEY1),
            0x439c_0cbe
        );
        assert_eq!(
            crate::hash::hsiphash_u32(0x0A00_0001 + 80, KEY2),
            0x97b3_dc47
        );
        let rs = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(hashkey(&rs, 80, KEY1, 0) % 4093, 3167, "offset");
        assert_eq!(hashkey(&rs, 80, KEY2, 0) % 4092 + 1, 700, "skip");
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(hashkey(&client, 0, KEY1, 0) % 4093, 2374, "lookup slot");
    }

    #[test]
    fn equal_weights_leave_the_leftover_slots_to_the_first_in_list_order() {
        let s = svc("mh", &[1, 1, 1]);
        let t = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        // list 2 1 0: 4093 = 3 * 1364 + 1 → the newest (2) gets 1365.
        assert_eq!(shares(&t, 3), vec![1364, 1364, 1365]);
        assert!(t.iter().all(|&x| x != EMPTY));
    }

    #[test]
    fn weights_scale_the_turns() {
        let s = svc("mh", &[1, 2]);
        let t = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        // Rounds of 2 (id 1) + 1 (id 0) slots: 4093 = 1364 * 3 + 1; the
        // last slot goes to id 1, first in its round.
        assert_eq!(shares(&t, 2), vec![1364, 2729]);
    }

    #[test]
    fn quiesced_server_keeps_its_slots_and_fallback_skips_it() {
        let mut s = svc("mh", &[1, 1, 1]);
        let before = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        s.edit_weight(1, 0);
        let after = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        assert_eq!(before, after, "last_weight keeps the table");
        // A client whose slot belongs to 1 gets nothing without fallback.
        let client = (1..=255u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
            .find(|c| after[(hashkey(c, 0, KEY1, 0) % 4093) as usize] == 1)
            .unwrap();
        assert_eq!(s.pick_from(client, 1), -1);
        let mut fb = svc_with("mh", &[1, 1, 1], |c| c.options.flags.fallback = true);
        fb.edit_weight(1, 0);
        let got = fb.pick_from(client, 1);
        assert!(got == 0 || got == 2);
        // It is the first usable server on the kernel's probe sequence.
        let ihash = hashkey(&client, 0, KEY1, 0) % 4093;
        let expected = (0..4093)
            .map(|k| after[(hashkey(&client, 0, KEY1, (k + ihash) % 4093) % 4093) as usize])
            .find(|&id| id != 1)
            .unwrap();
        assert_eq!(got, i64::from(expected));
    }

    #[test]
    fn all_weights_zero_from_the_start_empties_the_table() {
        let s = svc("mh", &[0, 0]);
        let t = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        assert!(t.iter().all(|&x| x == EMPTY));
        assert_eq!(s.pick_from(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 1), -1);
    }

    #[test]
    fn huge_weights_are_shifted_down_to_the_table_bits() {
        // gcd 2, max/gcd = 500 → fls 9, bits 6 → shift 3: turns 500>>3 = 62
        // and (1>>3 = 0 → 1).
        let s = svc("mh", &[1000, 2]);
        let t = MaglevHashing::build_table(s.servers(), MhTableSize::DEFAULT).unwrap();
        let c = shares(&t, 2);
        // per round: 1 slot for id 1 (weight 2, newest), 62 for id 0.
        // 4093 = 63 * 64 + 61: 64 full rounds, then id 1 takes 1 and id 0 60.
        assert_eq!(c, vec![62 * 64 + 60, 65]);
    }
}
