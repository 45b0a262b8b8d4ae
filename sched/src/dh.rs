//! dh — destination hashing.
//!
//! A static table of 256 buckets is filled by cycling through the servers
//! in list order (newest first), one bucket each, ignoring weights; a
//! packet's *destination* address picks the bucket with the kernel's
//! `hash_32(addr, 8)`. No ties exist; the bucket's server is used unless it
//! is quiesced or OVERLOADed, and then nothing is chosen (dh has no
//! fallback). The table is rebuilt on add and delete only — not on edits,
//! as in the kernel — off the hot path, and published whole.

use xvs_packet::FlowKey;

use crate::hash::{fold_addr, hash_32};
use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

/// `IP_VS_DH_TAB_BITS`.
pub const TABLE_BITS: u32 = 8;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const EMPTY: u32 = u32::MAX;

/// dh state: the bucket table.
#[derive(Debug, Clone)]
pub struct DestinationHashing {
    table: Box<[u32]>,
}

impl DestinationHashing {
    /// Builds the table for `servers`.
    #[must_use]
    pub fn new(servers: &ServerList) -> Self {
        let mut s = Self {
            table: vec![EMPTY; TABLE_SIZE].into_boxed_slice(),
        };
        s.reassign(servers);
        s
    }

    /// `ip_vs_dh_reassign`: bucket i → server i mod n in list order.
    fn reassign(&mut self, servers: &ServerList) {
        let order = servers.order();
        let mut table = vec![EMPTY; TABLE_SIZE];
        if !order.is_empty() {
            for (i, slot) in table.iter_mut().enumerate() {
                *slot = order[i % order.len()].0;
            }
        }
        self.table = table.into_boxed_slice();
    }

    /// The bucket a destination address hashes to.
    #[must_use]
    pub fn bucket(addr: &core::net::IpAddr) -> usize {
        hash_32(fold_addr(addr), TABLE_BITS) as usize
    }
}

impl Scheduler for DestinationHashing {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let id = self.table[Self::bucket(&flow.dst)];
        if id == EMPTY {
            return None;
        }
        let s = servers.get(RealServerId(id))?;
        (s.is_available() && s.is_usable()).then_some(s.id())
    }

    fn server_added(&mut self, servers: &ServerList, _id: RealServerId) {
        self.reassign(servers);
    }

    fn server_removed(&mut self, servers: &ServerList, _id: RealServerId, _position: usize) {
        self.reassign(servers);
    }

    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{TestService, svc};
    use core::net::{IpAddr, Ipv4Addr};

    #[test]
    fn destination_picks_the_bucket_and_bucket_i_is_server_i_mod_n() {
        let s = svc("dh", &[1, 1, 1]);
        // list 2 1 0: bucket b → list[b % 3].
        for last in 0..=255u8 {
            let daddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
            let b = DestinationHashing::bucket(&daddr);
            let expected = [2, 1, 0][b % 3];
            assert_eq!(s.pick_to(daddr), expected, "daddr {daddr} bucket {b}");
        }
    }

    #[test]
    fn hash_is_hash_32_of_the_host_order_address() {
        // 192.0.2.1 = 0xC0000201.
        let b = DestinationHashing::bucket(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(b as u32, 0xC000_0201u32.wrapping_mul(0x61C8_8647) >> 24);
    }

    #[test]
    fn quiesced_bucket_server_gives_none_and_edits_do_not_rebuild() {
        let mut s = svc("dh", &[1, 1]);
        let daddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let owner = s.pick_to(daddr);
        s.edit_weight(owner as usize, 0);
        assert_eq!(s.pick_to(daddr), -1);
    }
}
