//! The state every worker reads: interfaces, routes, virtual services with
//! their schedulers, and every destination a connection can point at.
//! Neighbours (next hops' MACs) are not part of it: they change on their
//! own clock and live in the shared [`Neighbours`](crate::pipeline::Neighbours)
//! table.
//!
//! # Who builds it
//! The control plane, off the hot path: its service table
//! (`control::table`) turns the config file and the operators' changes into
//! parts and hands them to [`Snapshot::new`] — at start from the config
//! (`control::snapshot` also builds the first state and the
//! [`Director`](crate::pipeline::Director) for it), then at every change,
//! published with [`Director::publish`](crate::pipeline::Director::publish).
//! The data plane only reads a snapshot; it never sees the config.
//!
//! Destinations are numbered globally (a [`DestIndex`]): the connection
//! table stores that number, so a packet of an established connection
//! finds its service, real server and counters without hashing again.
//!
//! # Numbers across snapshots
//! Numbers are handed out by the control plane's service table, never
//! reused and never above its fixed capacity (`[conn_table]
//! max_destinations`, [`Snapshot::dest_capacity`]), so a published state
//! only ever adds numbers. Workers pick a new state up at different times:
//! a worker still deciding a burst on an older snapshot can meet a
//! connection that another worker opened, on a newer one, to a destination
//! the older snapshot does not have yet. Every array by destination is
//! therefore a [`DestArray`], whose only accessor is the checked
//! [`DestArray::get`]: a number an array lacks is a case the code must
//! handle, never an index out of bounds. Per-worker arrays (counters) are
//! allocated at the full capacity once, so every number a table can hand
//! out fits them; a snapshot's own array holds only the numbers handed out
//! when it was built (copying the whole capacity at every publish would
//! buy nothing: a slot past its end reads as `None` either way).

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use xvs_packet::IpProtocol;
use xvs_packet::ethernet::MacAddr;
use xvs_proto::control::ServiceParams;
use xvs_sched::{RealServer, RealServerId, Service, Templates};

use crate::conn::{ForwardMethod, Timeouts};
use crate::types::{DestIndex, IfaceId, InterfaceRole, IpNet};

/// Destinations handed out at most unless the config says otherwise
/// (Katran's default for its `reals` array).
pub const DEFAULT_MAX_DESTINATIONS: u32 = 4096;

/// Values by [`DestIndex`]. Deliberately without `Index`: a number may come
/// from a newer snapshot than the array (see the module notes), so every
/// access says what happens when the number is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestArray<T>(Vec<T>);

impl<T> Default for DestArray<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> DestArray<T> {
    /// The value of destination `index`, if the array has it.
    #[inline(always)]
    #[must_use]
    pub fn get(&self, index: DestIndex) -> Option<&T> {
        self.0.get(index as usize)
    }

    /// The value of destination `index`, if the array has it.
    #[inline(always)]
    pub fn get_mut(&mut self, index: DestIndex) -> Option<&mut T> {
        self.0.get_mut(index as usize)
    }

    /// How many numbers the array holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values in number order (`enumerate` gives the numbers).
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// The values in number order, to change them.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }

    /// Appends a value: it gets the next number.
    pub(crate) fn push(&mut self, value: T) -> DestIndex {
        self.0.push(value);
        (self.0.len() - 1) as DestIndex
    }
}

impl<T: Clone> DestArray<T> {
    /// `len` numbers, each holding `value`.
    #[must_use]
    pub fn filled(len: usize, value: T) -> Self {
        Self(vec![value; len])
    }

    /// Sets every value to `value`.
    pub fn fill(&mut self, value: T) {
        self.0.fill(value);
    }
}

impl<T> From<Vec<T>> for DestArray<T> {
    fn from(values: Vec<T>) -> Self {
        Self(values)
    }
}

impl<'a, T> IntoIterator for &'a DestArray<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

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

/// A virtual service as the pipeline sees it. Shared between snapshots
/// while it does not change (an `Arc` per service), so a change to one
/// service leaves every other exactly as it was, scheduler state included.
#[derive(Debug, Clone)]
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
    /// `dest_of[RealServerId]`: the destination of each real server
    /// (deleted ones included: they keep their number).
    pub dest_of: Vec<DestIndex>,
    /// The parameters it was built from, as the control socket lists them.
    pub params: ServiceParams,
    /// False once deleted: it then schedules nothing, and stays only for
    /// the connections that still point at its destinations.
    pub live: bool,
    /// Persistence templates (used while the service is persistent).
    pub templates: Arc<Mutex<Templates>>,
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
    /// Forwarding method (of new connections; a connection keeps the
    /// method it was created with).
    pub method: ForwardMethod,
    /// The interface towards it and the next hop's address on it, routed
    /// when the snapshot is built (`None`: no route). The next hop's MAC is
    /// looked up per packet in the neighbour table.
    pub route: Option<(IfaceId, IpAddr)>,
    /// False once deleted from its service (or its service deleted): it
    /// gets no new connection; its established ones drain, or are expired
    /// at their next packet under `expire_nodest_conn`.
    pub available: bool,
}

/// Everything the workers read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Interfaces, by [`IfaceId`].
    pub interfaces: Vec<Iface>,
    /// Virtual services, deleted ones included (see [`VirtualService::live`]).
    pub services: Vec<Arc<VirtualService>>,
    /// Destinations, by [`DestIndex`]; numbers are never reused. Holds the
    /// numbers handed out when the snapshot was built: a connection opened
    /// on a newer snapshot may name one it lacks.
    pub dests: DestArray<Dest>,
    /// How many destination numbers the service table may ever hand out
    /// (`[conn_table] max_destinations`); the same in every snapshot of
    /// one director. Workers size their per-destination arrays by it.
    pub dest_capacity: u32,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// IPVS's `expire_nodest_conn`: a packet of a connection whose real
    /// server was deleted expires the connection (and is dropped) instead
    /// of being forwarded to it.
    pub expire_nodest_conn: bool,
    /// Live services by (protocol, VIP, port), derived by [`Snapshot::new`].
    service_keys: FxHashMap<(IpProtocol, IpAddr, u16), u32>,
}

impl Snapshot {
    /// The state made of parts the control plane built: `interfaces` by
    /// [`IfaceId`], `services` by slot (deleted ones included), `dests` by
    /// [`DestIndex`] with room for `dest_capacity` numbers at most. The
    /// index of live services by (protocol, VIP, port) is derived here.
    #[must_use]
    pub fn new(
        interfaces: Vec<Iface>,
        services: Vec<Arc<VirtualService>>,
        dests: DestArray<Dest>,
        dest_capacity: u32,
        timeouts: Timeouts,
        expire_nodest_conn: bool,
    ) -> Self {
        let service_keys = services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(|(i, s)| ((s.proto, s.vip, s.port), i as u32))
            .collect();
        Self {
            interfaces,
            services,
            dests,
            dest_capacity,
            timeouts,
            expire_nodest_conn,
            service_keys,
        }
    }

    /// The live services.
    pub fn live_services(&self) -> impl Iterator<Item = (u32, &VirtualService)> {
        self.services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(|(i, s)| (i as u32, &**s))
    }

    /// The real servers a listing shows for service `slot`, with their
    /// destination numbers: those in the service now, in ipvsadm's order
    /// (newest first). A deleted one is not listed, as after `ipvsadm -d`:
    /// its connections drain and its counters stay in the service's
    /// totals. `xvsadm -L` (and the metrics) and the stats file list these
    /// and only these.
    pub fn listed_servers(&self, slot: u32) -> impl Iterator<Item = (DestIndex, &RealServer)> {
        let vs = &self.services[slot as usize];
        vs.sched
            .servers()
            .iter()
            .map(|rs| (vs.dest_of[rs.id().index()], rs))
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
        self.services.iter().any(|s| s.live && s.vip == addr)
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
        route_in(&self.interfaces, dst)
    }

    /// Every next hop the director will need a MAC for, without
    /// duplicates: each destination's and each interface's gateways (the
    /// live director asks the kernel to resolve them at start).
    #[must_use]
    pub fn next_hops(&self) -> Vec<(IfaceId, IpAddr)> {
        let mut hops: Vec<(IfaceId, IpAddr)> = self
            .dests
            .iter()
            .filter(|d| d.available)
            .filter_map(|d| d.route)
            .collect();
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

/// The interface among `interfaces` that reaches `dst`, and the next hop
/// on it: see [`Snapshot::route`].
#[must_use]
pub fn route_in(interfaces: &[Iface], dst: IpAddr) -> Option<(IfaceId, IpAddr)> {
    if let Some(iface) = interfaces
        .iter()
        .find(|i| i.addresses.iter().any(|n| n.contains(dst)))
    {
        return Some((iface.id, dst));
    }
    interfaces.iter().find_map(|i| {
        let gw = i.gateways.iter().find(|g| g.is_ipv4() == dst.is_ipv4())?;
        Some((i.id, *gw))
    })
}
