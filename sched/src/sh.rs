//! sh — source hashing.
//!
//! A table of 256 buckets is filled walking the servers in list order
//! (newest first), each taking `weight` consecutive buckets (a quiesced
//! server still takes one), wrapping until the table is full. The client's
//! address — plus its port with the `sh-port` flag — picks the bucket with
//! the kernel's `hash_32`. Without `sh-fallback` an unusable bucket server
//! (weight 0 or OVERLOADed) means no server; with it, the kernel's probe
//! sequence `(k + h + h) mod 256`, k = 0, 1, … is tried until a usable
//! server is found or an empty bucket ends the search. No ties exist. The
//! table is rebuilt on add, delete and edit, off the hot path.

use xvs_packet::{FlowKey, IpProtocol};

use crate::hash::{fold_addr, hash_32};
use crate::registry::SchedFlags;
use crate::server::{RealServerId, ServerList};
use crate::{SchedContext, Scheduler};

/// `IP_VS_SH_TAB_BITS` (Kconfig default).
pub const TABLE_BITS: u32 = 8;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const TABLE_MASK: u32 = (1 << TABLE_BITS) - 1;
const EMPTY: u32 = u32::MAX;

/// sh state: flags and the bucket table.
#[derive(Debug, Clone)]
pub struct SourceHashing {
    flags: SchedFlags,
    table: Box<[u32]>,
}

/// The port sh and mh hash with `*-port`: the client port for TCP, UDP and
/// SCTP, 0 otherwise.
pub(crate) fn hashed_port(flow: &FlowKey) -> u16 {
    match flow.proto {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Unknown(132) => flow.sport,
        _ => 0,
    }
}

impl SourceHashing {
    /// Builds the table for `servers`.
    #[must_use]
    pub fn new(servers: &ServerList, flags: SchedFlags) -> Self {
        let mut s = Self {
            flags,
            table: Box::default(),
        };
        s.reassign(servers);
        s
    }

    /// `ip_vs_sh_reassign`: weighted fill.
    fn reassign(&mut self, servers: &ServerList) {
        let mut table = vec![EMPTY; TABLE_SIZE];
        let n = servers.len();
        if n > 0 {
            let mut p = 0;
            let mut count = 0u32;
            for slot in &mut table {
                let s = servers.at(p);
                *slot = s.id().0;
                count += 1;
                if count >= s.weight() {
                    p = (p + 1) % n;
                    count = 0;
                }
            }
        }
        self.table = table.into_boxed_slice();
    }

    /// `ip_vs_sh_hashkey`.
    #[must_use]
    pub fn hashkey(addr: &core::net::IpAddr, port: u16, offset: u32) -> usize {
        (offset.wrapping_add(hash_32(
            u32::from(port).wrapping_add(fold_addr(addr)),
            TABLE_BITS,
        )) & TABLE_MASK) as usize
    }

    fn usable(servers: &ServerList, id: u32) -> bool {
        servers.get(RealServerId(id)).is_some_and(|s| s.is_usable())
    }
}

impl Scheduler for SourceHashing {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn schedule(
        &self,
        servers: &ServerList,
        flow: &FlowKey,
        _ctx: &mut SchedContext<'_>,
    ) -> Option<RealServerId> {
        let port = if self.flags.port {
            hashed_port(flow)
        } else {
            0
        };
        let ihash = Self::hashkey(&flow.src, port, 0);
        let id = self.table[ihash];
        if id == EMPTY {
            return None;
        }
        if Self::usable(servers, id) {
            return Some(RealServerId(id));
        }
        if !self.flags.fallback {
            return None;
        }
        for offset in 0..TABLE_SIZE as u32 {
            let roffset = (offset + ihash as u32) % TABLE_SIZE as u32;
            let id = self.table[Self::hashkey(&flow.src, port, roffset)];
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
        self.reassign(servers);
    }

    fn server_removed(&mut self, servers: &ServerList, _id: RealServerId, _position: usize) {
        self.reassign(servers);
    }

    fn server_updated(&mut self, servers: &ServerList, _id: RealServerId) {
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
    fn weighted_fill_gives_each_server_weight_consecutive_buckets() {
        let s = svc("sh", &[1, 0, 2]); // list 2(w2) 1(w0) 0(w1)
        let sh = SourceHashing::new(s.servers(), SchedFlags::default());
        let head: Vec<u32> = sh.table[..8].to_vec();
        assert_eq!(head, vec![2, 2, 1, 0, 2, 2, 1, 0]);
    }

    #[test]
    fn client_address_picks_the_bucket() {
        let s = svc("sh", &[1, 1, 1]);
        for last in 1..=50u8 {
            let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, last));
            let b = SourceHashing::hashkey(&client, 0, 0);
            assert_eq!(
                b as u32,
                u32::from(Ipv4Addr::new(198, 51, 100, last)).wrapping_mul(0x61C8_8647) >> 24
            );
            assert_eq!(s.pick_from(client, 1000), [2, 1, 0][b % 3]);
        }
    }

    #[test]
    fn fallback_walks_the_probe_sequence_only_with_the_flag() {
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let b = SourceHashing::hashkey(&client, 0, 0);
        let mut plain = svc("sh", &[1, 1, 1]);
        let owner = [2, 1, 0][b % 3];
        plain.edit_weight(owner as usize, 0);
        assert_eq!(plain.pick_from(client, 1), -1);

        let mut fb = crate::service::tests::svc_with("sh", &[1, 1, 1], |c| {
            c.options.flags.fallback = true;
        });
        fb.edit_weight(owner as usize, 0);
        // The edit rebuilt the table: the owner (weight 0) keeps 1 bucket
        // per round. Expected: first usable bucket of (k + 2h) mod 256.
        let sh = SourceHashing::new(fb.servers(), SchedFlags::default());
        let expected = (0..256)
            .map(|k| sh.table[(k + 2 * b) % 256])
            .find(|&id| fb.servers().get(RealServerId(id)).unwrap().weight() > 0)
            .unwrap();
        assert_eq!(fb.pick_from(client, 1), i64::from(expected));
    }

    #[test]
    fn ipv6_clients_hash_by_their_folded_address() {
        let client: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            SourceHashing::hashkey(&client, 0, 0) as u32,
            hash_32(0x2001_0db8 ^ 1, TABLE_BITS)
        );
        assert_eq!(
            SourceHashing::hashkey(&client, 80, 0) as u32,
            hash_32((0x2001_0db8 ^ 1) + 80, TABLE_BITS)
        );
    }

    #[test]
    fn port_flag_adds_the_client_port() {
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let s = crate::service::tests::svc_with("sh", &[1, 1, 1, 1, 1], |c| {
            c.options.flags.port = true;
        });
        let picks: Vec<i64> = (1000..1040).map(|p| s.pick_from(client, p)).collect();
        for (i, p) in (1000u16..1040).enumerate() {
            let b = SourceHashing::hashkey(&client, p, 0);
            assert_eq!(picks[i], [4, 3, 2, 1, 0][b % 5]);
        }
        assert!(picks.iter().any(|&x| x != picks[0]), "port changes buckets");
    }
}
