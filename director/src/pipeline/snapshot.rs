//! The state every worker reads: interfaces, routes, virtual services with
//! their schedulers, and every destination a connection can point at. Built
//! once from a [`ClusterConfig`], off the hot path. Neighbours (next hops'
//! MACs) are not part of it: they change on their own clock and live in the
//! shared [`Neighbours`](crate::pipeline::Neighbours) table.
//!
//! Destinations are numbered globally (a [`DestIndex`]): the connection
//! table stores that number, so a packet of an established connection
//! finds its service, real server and counters without hashing again.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use xvs_packet::IpProtocol;
use xvs_packet::ethernet::MacAddr;
use xvs_sched::{
    PersistConfig, RealServerId, RealServerSpec, SchedOptions, Service, ServiceConfig,
};

use crate::config::{ClusterConfig, IpNet, SchedFlag, ServiceProtocol};
use crate::conn::{ForwardMethod, Millis, Timeouts};
use crate::pipeline::verdict::IfaceId;

pub use crate::config::InterfaceRole;

/// A destination's number, global across services.
pub type DestIndex = u32;

/// One interface of the director.
#[derive(Debug, Clone)]
pub struct Iface {
    /// Its number (position in the config).
    pub id: IfaceId,
    /// Kernel name.
    pub name: String,
    /// Its MAC address: the source of every frame it sends.
    pub mac: MacAddr,
    /// Client side or server side.
    pub role: InterfaceRole,
    /// Its addresses and the subnets they make reachable.
    pub addresses: Vec<IpNet>,
    /// Egress MTU.
    pub mtu: u16,
    /// Next hops for everything off-link, one per family at most.
    pub gateways: Vec<IpAddr>,
}

impl Iface {
    /// The interface's first address of `dst`'s family (the source of
    /// tunnels and of the director's own ICMP).
    #[must_use]
    pub fn address_like(&self, dst: IpAddr) -> Option<IpAddr> {
        self.addresses
            .iter()
            .map(|n| n.addr)
            .find(|a| a.is_ipv4() == dst.is_ipv4())
    }
}

/// A virtual service as the pipeline sees it.
#[derive(Debug)]
pub struct VirtualService {
    /// Protocol.
    pub proto: IpProtocol,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port (0: every port).
    pub port: u16,
    /// Scheduler, real servers and their counters.
    pub sched: Service,
    /// Schedule on any TCP segment without RST, not only SYN.
    pub sloppy: bool,
    /// The destination used when no real server can be scheduled.
    pub fallback: Option<DestIndex>,
    /// `dest_of[RealServerId]`: the destination of each real server.
    pub dest_of: Vec<DestIndex>,
}

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// The service it belongs to.
    pub service: u32,
    /// The real server in the service's scheduler (`None` for a fallback).
    pub server: Option<RealServerId>,
    /// Address.
    pub addr: IpAddr,
    /// Port (0: keep the packet's destination port).
    pub port: u16,
    /// Forwarding method.
    pub method: ForwardMethod,
    /// The interface towards it and the next hop's address on it, routed
    /// when the snapshot is built (`None`: no route). The next hop's MAC is
    /// looked up per packet in the neighbour table.
    pub route: Option<(IfaceId, IpAddr)>,
}

/// Everything the workers read.
#[derive(Debug)]
pub struct Snapshot {
    /// Interfaces, by [`IfaceId`].
    pub interfaces: Vec<Iface>,
    /// Virtual services.
    pub services: Vec<VirtualService>,
    /// Destinations, by [`DestIndex`].
    pub dests: Vec<Dest>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    service_keys: FxHashMap<(IpProtocol, IpAddr, u16), u32>,
}

/// Why a configuration could not be turned into a running state.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The scheduler crate refused a service or real server.
    #[error("services[{service}]: {message}")]
    Scheduler {
        /// The service's position in the config.
        service: usize,
        /// What the scheduler said.
        message: String,
    },
    /// An interface without a MAC address: discovery did not run.
    #[error(
        "interface \"{interface}\" has no MAC address: write its \"mac\" in the config, or let the live director read it from the kernel (kernel::discover) before building"
    )]
    NoMac {
        /// The interface.
        interface: String,
    },
}

impl Snapshot {
    /// Builds the state for `config` at time `now`.
    ///
    /// # Errors
    /// A scheduler name the scheduler crate does not know, or a real server
    /// it refuses; an interface without a MAC address.
    pub fn build(config: &ClusterConfig, now: Millis) -> Result<Self, BuildError> {
        let interfaces = config
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(Iface {
                    id: IfaceId(i as u16),
                    name: c.name.clone(),
                    mac: c.mac.ok_or_else(|| BuildError::NoMac {
                        interface: c.name.clone(),
                    })?,
                    role: c.role,
                    addresses: c.addresses.clone(),
                    mtu: c.effective_mtu(),
                    gateways: c.gateways.clone(),
                })
            })
            .collect::<Result<Vec<_>, BuildError>>()?;
        let mut services = Vec::new();
        let mut dests = Vec::new();
        let mut service_keys = FxHashMap::default();
        for (si, svc) in config.services.iter().enumerate() {
            let err = |message: String| BuildError::Scheduler {
                service: si,
                message,
            };
            let proto = match svc.proto {
                ServiceProtocol::Tcp => IpProtocol::Tcp,
                ServiceProtocol::Udp => IpProtocol::Udp,
            };
            let mut options = SchedOptions::default();
            for flag in &svc.sched_flags {
                match flag {
                    SchedFlag::ShFallback | SchedFlag::MhFallback => options.flags.fallback = true,
                    SchedFlag::ShPort | SchedFlag::MhPort => options.flags.port = true,
                }
            }
            let persistence = svc.persistence.map(|p| {
                let mut persist = PersistConfig::new(Millis::from(p.timeout) * 1000);
                if let Some(prefix) = p.netmask {
                    persist.netmask_v4 = u32::MAX
                        .checked_shl(32 - u32::from(prefix.min(32)))
                        .unwrap_or(0);
                    persist.prefix_v6 = prefix.min(128);
                }
                persist
            });
            let sched_config = ServiceConfig {
                proto,
                vip: svc.vip,
                vport: svc.port,
                fwmark: 0,
                persistence,
                options,
            };
            let mut sched =
                Service::new(sched_config, &svc.scheduler, now).map_err(|e| err(e.to_string()))?;
            let service = services.len() as u32;
            let mut dest_of = Vec::new();
            for rs in &svc.real_servers {
                let spec = RealServerSpec {
                    addr: rs.address,
                    port: rs.port.unwrap_or(svc.port),
                    weight: u32::from(rs.weight),
                    u_threshold: rs.u_threshold,
                    l_threshold: rs.l_threshold,
                };
                let id = sched.add_server(&spec).map_err(|e| err(e.to_string()))?;
                let index = id.0 as usize;
                if dest_of.len() <= index {
                    dest_of.resize(index + 1, DestIndex::MAX);
                }
                dest_of[index] = dests.len() as DestIndex;
                dests.push(Dest {
                    service,
                    server: Some(id),
                    addr: rs.address,
                    port: spec.port,
                    method: rs.method,
                    route: None,
                });
            }
            let fallback = svc.fallback.as_ref().map(|fb| {
                dests.push(Dest {
                    service,
                    server: None,
                    addr: fb.address,
                    port: fb.port.unwrap_or(svc.port),
                    method: fb.method,
                    route: None,
                });
                (dests.len() - 1) as DestIndex
            });
            service_keys.insert((proto, svc.vip, svc.port), service);
            services.push(VirtualService {
                proto,
                vip: svc.vip,
                port: svc.port,
                sched,
                sloppy: svc.sloppy,
                fallback,
                dest_of,
            });
        }
        let mut snapshot = Self {
            interfaces,
            services,
            dests,
            timeouts: config.timeouts.effective(),
            service_keys,
        };
        // Every packet to a real server needs its next hop: route it once.
        for i in 0..snapshot.dests.len() {
            snapshot.dests[i].route = snapshot.route(snapshot.dests[i].addr);
        }
        Ok(snapshot)
    }

    /// The service a new flow to `dst:dport` belongs to: the exact port
    /// first, then a port-0 (every port) service on the same address.
    #[must_use]
    pub fn find_service(&self, proto: IpProtocol, dst: IpAddr, dport: u16) -> Option<u32> {
        self.service_keys
            .get(&(proto, dst, dport))
            .or_else(|| self.service_keys.get(&(proto, dst, 0)))
            .copied()
    }

    /// True when `addr` is the VIP of some service.
    #[must_use]
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        self.services.iter().any(|s| s.vip == addr)
    }

    /// True when `addr` is one of the director's own interface addresses.
    #[must_use]
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addresses.iter().any(|n| n.addr == addr))
    }

    /// The interface that reaches `dst` and the next hop on it: `dst` itself
    /// when it is on an interface's subnet, else that interface's gateway of
    /// its family.
    #[must_use]
    pub fn route(&self, dst: IpAddr) -> Option<(IfaceId, IpAddr)> {
        if let Some(iface) = self
            .interfaces
            .iter()
            .find(|i| i.addresses.iter().any(|n| n.contains(dst)))
        {
            return Some((iface.id, dst));
        }
        self.interfaces.iter().find_map(|i| {
            let gw = i.gateways.iter().find(|g| g.is_ipv4() == dst.is_ipv4())?;
            Some((i.id, *gw))
        })
    }

    /// Every next hop the director will need a MAC for, without
    /// duplicates: each destination's and each interface's gateways (the
    /// live director asks the kernel to resolve them at start).
    #[must_use]
    pub fn next_hops(&self) -> Vec<(IfaceId, IpAddr)> {
        let mut hops: Vec<(IfaceId, IpAddr)> = self.dests.iter().filter_map(|d| d.route).collect();
        for iface in &self.interfaces {
            hops.extend(iface.gateways.iter().map(|g| (iface.id, *g)));
        }
        hops.sort_unstable();
        hops.dedup();
        hops
    }

    /// An interface by number.
    #[must_use]
    pub fn iface(&self, id: IfaceId) -> &Iface {
        &self.interfaces[usize::from(id.0)]
    }
}
