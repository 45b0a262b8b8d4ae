//! The service table the control plane edits: virtual services and real
//! servers, changed by ipvsadm's operations, published to the workers as
//! immutable [`Snapshot`]s.
//!
//! # Numbers that never move
//! Connections name their destination by [`DestIndex`], so a destination
//! keeps its number for the life of the director: a deleted real server's
//! entry stays (marked unavailable) for the connections that still use it,
//! and comes back with the same number — and the same counters — when the
//! same address:port is added to the same service again (IPVS's trash does
//! the same). A deleted service likewise stays (not live) and is revived
//! when a service with the same protocol, address and port is added.
//! Memory therefore grows with the number of distinct services and servers
//! ever configured, not with the number of operations, and so do the
//! numbers: at most `[conn_table] max_destinations` of them (fixed at start,
//! as the workers' per-destination counters are). A change that would need
//! one more is refused and changes nothing.
//!
//! # Atomic changes
//! Every operation either applies whole or returns an error and changes
//! nothing. A batch ([`ServiceTable::apply`] with [`Request::Batch`]) runs on
//! a copy that replaces the table only when every step succeeded.

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use xvs_packet::IpProtocol;
use xvs_sched::{
    PersistConfig, RealServerSpec, SchedError, SchedFlags, SchedOptions, ServerError, Service,
    ServiceConfig, Templates,
};

use crate::config::{ClusterConfig, SchedFlag};
use crate::conn::{Millis, Timeouts};
use crate::control::proto::{
    ControlError, ErrorKind, ForwardMethod, Persistence, Protocol, Request, ServerParams,
    ServiceId, ServiceParams, TimeoutSet,
};
use crate::control::snapshot::BuildError;
use crate::pipeline::snapshot::route_in;
use crate::pipeline::{
    DEFAULT_MAX_DESTINATIONS, Dest, DestArray, DestIndex, Iface, Snapshot, VirtualService,
};

/// The largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65_535;

/// Virtual services and real servers, off the hot path.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    interfaces: Vec<Iface>,
    services: Vec<Arc<VirtualService>>,
    dests: DestArray<Dest>,
    /// Destination numbers it may hand out at most.
    dest_capacity: u32,
    timeouts: Timeouts,
    expire_nodest_conn: bool,
    /// Every service ever created, live or not, by id.
    slots: FxHashMap<ServiceId, u32>,
    /// Fallback destinations ever created, by (service, address, port).
    fallbacks: FxHashMap<(u32, IpAddr, u16), DestIndex>,
}

fn invalid(message: impl Into<String>) -> ControlError {
    ControlError::new(ErrorKind::Invalid, message)
}

fn proto_of(p: Protocol) -> IpProtocol {
    match p {
        Protocol::Tcp => IpProtocol::Tcp,
        Protocol::Udp => IpProtocol::Udp,
    }
}

fn sched_options(flags: u8) -> SchedOptions {
    SchedOptions {
        flags: SchedFlags {
            fallback: flags & 1 != 0,
            port: flags & 2 != 0,
        },
        ..SchedOptions::default()
    }
}

fn persist_config(p: Option<Persistence>) -> Option<PersistConfig> {
    p.map(|p| {
        let mut c = PersistConfig::new(Millis::from(p.timeout) * 1000);
        c.netmask_v4 = p.mask_v4;
        c.prefix_v6 = p.prefix_v6.min(128);
        c
    })
}

fn sched_error(e: &SchedError, scheduler: &str) -> ControlError {
    match e {
        SchedError::UnknownScheduler(_) => ControlError::new(
            ErrorKind::SchedulerNotFound,
            format!(
                "scheduler {scheduler:?} not found: use one of rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf twos"
            ),
        ),
    }
}

fn server_error(e: &ServerError, service: ServiceId) -> ControlError {
    let kind = match e {
        ServerError::AlreadyExists { .. } => ErrorKind::DestinationExists,
        ServerError::NoSuchServer(_) => ErrorKind::NoSuchDestination,
        ServerError::ThresholdRange { .. } | ServerError::WeightTooLarge(_) => ErrorKind::Invalid,
    };
    ControlError::new(kind, format!("{service}: {e}"))
}

/// The parameters a config file gives a service.
#[must_use]
pub fn service_params_of(svc: &crate::config::VirtualService) -> ServiceParams {
    let mut flags = 0u8;
    for f in &svc.sched_flags {
        flags |= match f {
            SchedFlag::ShFallback | SchedFlag::MhFallback => 1,
            SchedFlag::ShPort | SchedFlag::MhPort => 2,
        };
    }
    let persistence = svc.persistence.map(|p| {
        let (mask_v4, prefix_v6) = match p.netmask {
            Some(prefix) => (
                u32::MAX
                    .checked_shl(32 - u32::from(prefix.min(32)))
                    .unwrap_or(0),
                prefix.min(128),
            ),
            None => (u32::MAX, 128),
        };
        Persistence {
            timeout: p.timeout,
            mask_v4,
            prefix_v6,
        }
    });
    ServiceParams {
        id: svc.id(),
        scheduler: svc.scheduler.clone(),
        flags,
        persistence,
        sloppy: svc.sloppy,
        fallback: svc.fallback.as_ref().map(|rs| config_server(svc, rs)),
    }
}

/// The real servers a config file gives a service, in file order.
#[must_use]
pub fn server_params_of(svc: &crate::config::VirtualService) -> Vec<ServerParams> {
    svc.real_servers
        .iter()
        .map(|rs| config_server(svc, rs))
        .collect()
}

/// A real server (or fallback) of the config file as the table takes it.
fn config_server(
    svc: &crate::config::VirtualService,
    rs: &crate::config::RealServer,
) -> ServerParams {
    ServerParams {
        addr: rs.address,
        port: rs.port.unwrap_or(svc.port),
        method: rs.method,
        weight: u32::from(rs.weight),
        u_threshold: rs.u_threshold,
        l_threshold: rs.l_threshold,
    }
}

/// A real server of `vs`, as the control socket lists it (its method is
/// its destination's, in `dests`).
#[must_use]
pub fn server_params_in(
    vs: &VirtualService,
    dests: &DestArray<Dest>,
    rs: &xvs_sched::RealServer,
) -> ServerParams {
    let method = vs
        .dest_of
        .get(rs.id().index())
        .and_then(|&d| dests.get(d))
        .map_or(ForwardMethod::Nat, |d| d.method);
    ServerParams {
        addr: rs.addr(),
        port: rs.port(),
        method,
        weight: rs.weight(),
        u_threshold: rs.u_threshold(),
        l_threshold: rs.l_threshold(),
    }
}

impl ServiceTable {
    /// An empty table over `interfaces`, with room for
    /// [`DEFAULT_MAX_DESTINATIONS`] destination numbers.
    #[must_use]
    pub fn new(interfaces: Vec<Iface>, timeouts: Timeouts) -> Self {
        Self {
            interfaces,
            services: Vec::new(),
            dests: DestArray::default(),
            dest_capacity: DEFAULT_MAX_DESTINATIONS,
            timeouts,
            expire_nodest_conn: false,
            slots: FxHashMap::default(),
            fallbacks: FxHashMap::default(),
        }
    }

    /// The table a config file describes, built at `now`.
    ///
    /// # Errors
    /// An interface without a MAC address; a service or real server the
    /// table refuses (unknown scheduler, duplicate, values out of range).
    pub fn from_config(config: &ClusterConfig, now: Millis) -> Result<Self, BuildError> {
        let interfaces = Snapshot::interfaces_of(config)?;
        let mut table = Self::new(interfaces, config.timeouts.effective());
        table.expire_nodest_conn = config.conn_table.expire_nodest_conn;
        table.dest_capacity = config.conn_table.max_destinations;
        for (i, svc) in config.services.iter().enumerate() {
            let err = |e: ControlError| BuildError::Scheduler {
                service: i,
                message: e.message,
            };
            let params = service_params_of(svc);
            table.add_service(&params, now).map_err(err)?;
            // ipvsadm lists servers newest first: adding in file order
            // lists the last one first, as `ipvsadm -R` of the same list.
            for server in server_params_of(svc) {
                table.add_server(params.id, &server).map_err(err)?;
            }
        }
        Ok(table)
    }

    /// The state the workers read, as of now.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            self.interfaces.clone(),
            self.services.clone(),
            self.dests.clone(),
            self.dest_capacity,
            self.timeouts,
            self.expire_nodest_conn,
        )
    }

    /// The live services, in the order they were added.
    pub fn services(&self) -> impl Iterator<Item = &VirtualService> {
        self.services.iter().filter(|s| s.live).map(|s| &**s)
    }

    /// A live service's slot number (its index in the snapshot's
    /// services).
    #[must_use]
    pub fn slot(&self, id: ServiceId) -> Option<u32> {
        self.slots
            .get(&id)
            .copied()
            .filter(|&i| self.services[i as usize].live)
    }

    /// The interfaces.
    #[must_use]
    pub fn interfaces(&self) -> &[Iface] {
        &self.interfaces
    }

    /// The timeouts.
    #[must_use]
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// A destination by number.
    #[must_use]
    pub fn dest(&self, index: DestIndex) -> Option<&Dest> {
        self.dests.get(index)
    }

    /// Refuses a change that needs a new destination number (for
    /// `server`, of `service`) when every number is taken.
    fn check_room(&self, service: ServiceId, server: &ServerParams) -> Result<(), ControlError> {
        if self.dests.len() < self.dest_capacity as usize {
            return Ok(());
        }
        Err(invalid(format!(
            "{service}: real server {} needs a new destination number, but all {} are taken (every real server and fallback configured since start keeps its number); raise [conn_table] max_destinations in the config and restart the director",
            std::net::SocketAddr::new(server.addr, server.port),
            self.dest_capacity
        )))
    }

    /// [`Self::check_room`] for a fallback of service `slot` (`None`: a
    /// service not created yet), which reuses the number of an earlier
    /// fallback with the same address and port.
    fn check_fallback_room(
        &self,
        service: ServiceId,
        slot: Option<u32>,
        fallback: Option<&ServerParams>,
    ) -> Result<(), ControlError> {
        match (fallback, slot) {
            (Some(fb), Some(slot)) if self.fallbacks.contains_key(&(slot, fb.addr, fb.port)) => {
                Ok(())
            }
            (Some(fb), _) => self.check_room(service, fb),
            (None, _) => Ok(()),
        }
    }

    /// Sets IPVS's `expire_nodest_conn`.
    pub fn set_expire_nodest_conn(&mut self, on: bool) {
        self.expire_nodest_conn = on;
    }

    fn check_service(&self, p: &ServiceParams) -> Result<(), ControlError> {
        if p.id.port == 0 && p.persistence.is_none() {
            return Err(invalid(format!(
                "{}: Zero port specified for non-persistent service; give a port or make it persistent (-p)",
                p.id
            )));
        }
        if let Some(persist) = p.persistence {
            if persist.timeout == 0 || persist.timeout > 31 * 86_400 {
                return Err(invalid(format!(
                    "{}: persistence timeout {} is out of range 1 … 2678400 seconds",
                    p.id, persist.timeout
                )));
            }
            if persist.prefix_v6 == 0 || persist.prefix_v6 > 128 {
                return Err(invalid(format!(
                    "{}: IPv6 persistence prefix {} is out of range 1 … 128",
                    p.id, persist.prefix_v6
                )));
            }
        }
        if p.flags & !0b111 != 0 {
            return Err(invalid(format!(
                "{}: scheduler flags {:#x} name bits other than flag-1, flag-2, flag-3",
                p.id, p.flags
            )));
        }
        if let Some(fb) = &p.fallback {
            self.check_server(p.id, fb)?;
        }
        Ok(())
    }

    fn check_server(&self, service: ServiceId, s: &ServerParams) -> Result<(), ControlError> {
        if s.weight > MAX_WEIGHT {
            return Err(invalid(format!(
                "{service}: weight {} of real server {} is out of range 0 … 65535",
                s.weight, s.addr
            )));
        }
        if s.method != ForwardMethod::Tunnel && s.addr.is_ipv4() != service.vip.is_ipv4() {
            return Err(invalid(format!(
                "{service}: real server {} is of another address family than the virtual service; only tunnelling (-i) may cross families",
                s.addr
            )));
        }
        if s.addr.is_unspecified() || s.addr.is_multicast() {
            return Err(invalid(format!(
                "{service}: real server address {} is not a unicast address",
                s.addr
            )));
        }
        Ok(())
    }

    /// `-A`: adds a service (reviving a deleted one with the same id).
    ///
    /// # Errors
    /// [`ErrorKind::ServiceExists`], [`ErrorKind::SchedulerNotFound`],
    /// [`ErrorKind::Invalid`].
    pub fn add_service(&mut self, p: &ServiceParams, now: Millis) -> Result<(), ControlError> {
        if self.slot(p.id).is_some() {
            return Err(ControlError::new(
                ErrorKind::ServiceExists,
                format!(
                    "{}: Service already exists; edit it with -E, or delete it first with -D",
                    p.id
                ),
            ));
        }
        self.check_service(p)?;
        self.check_fallback_room(p.id, self.slots.get(&p.id).copied(), p.fallback.as_ref())?;
        let options = sched_options(p.flags);
        let persistence = persist_config(p.persistence);
        match self.slots.get(&p.id).copied() {
            Some(slot) => {
                let mut vs = (*self.services[slot as usize]).clone();
                vs.sched
                    .reconfigure(persistence, options, &p.scheduler, now)
                    .map_err(|e| sched_error(&e, &p.scheduler))?;
                vs.live = true;
                vs.sloppy = p.sloppy;
                vs.params = p.clone();
                vs.params.fallback = None;
                vs.fallback = None;
                self.services[slot as usize] = Arc::new(vs);
                self.set_fallback(slot, p.fallback.as_ref());
            }
            None => {
                let config = ServiceConfig {
                    proto: proto_of(p.id.proto),
                    vip: p.id.vip,
                    vport: p.id.port,
                    fwmark: 0,
                    persistence,
                    options,
                };
                let sched = Service::new(config, &p.scheduler, now)
                    .map_err(|e| sched_error(&e, &p.scheduler))?;
                let slot = self.services.len() as u32;
                let mut params = p.clone();
                params.fallback = None;
                self.services.push(Arc::new(VirtualService {
                    proto: proto_of(p.id.proto),
                    vip: p.id.vip,
                    port: p.id.port,
                    sched,
                    sloppy: p.sloppy,
                    fallback: None,
                    dest_of: Vec::new(),
                    params,
                    live: true,
                    templates: Arc::new(Mutex::new(Templates::new())),
                }));
                self.slots.insert(p.id, slot);
                self.set_fallback(slot, p.fallback.as_ref());
            }
        }
        Ok(())
    }

    /// Points service `slot`'s fallback at `fallback` (or none), reusing
    /// the destination number of an earlier fallback with the same
    /// address and port.
    fn set_fallback(&mut self, slot: u32, fallback: Option<&ServerParams>) {
        let old = self.services[slot as usize].fallback;
        let new = fallback.map(|fb| {
            let key = (slot, fb.addr, fb.port);
            let dest = Dest {
                service: slot,
                server: None,
                addr: fb.addr,
                port: fb.port,
                method: fb.method,
                route: route_in(&self.interfaces, fb.addr),
                available: true,
            };
            // The caller checked that a new number is in capacity.
            match self.fallbacks.get(&key).copied() {
                Some(index) => {
                    if let Some(d) = self.dests.get_mut(index) {
                        *d = dest;
                    }
                    index
                }
                None => {
                    let index = self.dests.push(dest);
                    self.fallbacks.insert(key, index);
                    index
                }
            }
        });
        if let Some(old) = old
            && Some(old) != new
        {
            self.set_unavailable(old);
        }
        let mut vs = (*self.services[slot as usize]).clone();
        vs.fallback = new;
        vs.params.fallback = fallback.copied();
        self.services[slot as usize] = Arc::new(vs);
    }

    /// `-E`: new scheduler, flags and persistence. With `keep_config_only`
    /// (a request from `xvsadm`, which cannot express them) the service's
    /// `sloppy` and fallback stay as they are; a reload sets them too.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchService`], [`ErrorKind::SchedulerNotFound`],
    /// [`ErrorKind::Invalid`].
    pub fn edit_service(
        &mut self,
        p: &ServiceParams,
        keep_config_only: bool,
        now: Millis,
    ) -> Result<(), ControlError> {
        let slot = self.slot(p.id).ok_or_else(|| {
            ControlError::new(
                ErrorKind::NoSuchService,
                format!("{}: No such service; add it with -A", p.id),
            )
        })?;
        let mut p = p.clone();
        let current = &self.services[slot as usize];
        if keep_config_only {
            p.sloppy = current.sloppy;
            p.fallback = current.params.fallback;
        }
        self.check_service(&p)?;
        self.check_fallback_room(p.id, Some(slot), p.fallback.as_ref())?;
        let mut vs = (**current).clone();
        vs.sched
            .reconfigure(
                persist_config(p.persistence),
                sched_options(p.flags),
                &p.scheduler,
                now,
            )
            .map_err(|e| sched_error(&e, &p.scheduler))?;
        vs.sloppy = p.sloppy;
        let fallback = p.fallback;
        vs.params = p;
        vs.params.fallback = current.params.fallback;
        self.services[slot as usize] = Arc::new(vs);
        if fallback != self.services[slot as usize].params.fallback {
            self.set_fallback(slot, fallback.as_ref());
        }
        Ok(())
    }

    /// `-D`: deletes a service; its servers go to the trash, its
    /// connections drain.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchService`].
    pub fn delete_service(&mut self, id: ServiceId) -> Result<(), ControlError> {
        let slot = self.slot(id).ok_or_else(|| {
            ControlError::new(ErrorKind::NoSuchService, format!("{id}: No such service"))
        })?;
        let mut vs = (*self.services[slot as usize]).clone();
        let ids: Vec<_> = vs.sched.servers().iter().map(|s| s.id()).collect();
        for server in ids {
            // Every id came from the list itself: removal cannot fail.
            let _ = vs.sched.remove_server(server);
            if let Some(&d) = vs.dest_of.get(server.index()) {
                self.set_unavailable(d);
            }
        }
        if let Some(fb) = vs.fallback.take() {
            self.set_unavailable(fb);
        }
        vs.params.fallback = None;
        vs.live = false;
        self.services[slot as usize] = Arc::new(vs);
        Ok(())
    }

    /// `-C`: deletes every service.
    pub fn clear(&mut self) {
        let ids: Vec<ServiceId> = self.services().map(|s| s.params.id).collect();
        for id in ids {
            // Each id is live: deletion cannot fail.
            let _ = self.delete_service(id);
        }
    }

    fn service_for_server(&self, id: ServiceId) -> Result<u32, ControlError> {
        self.slot(id).ok_or_else(|| {
            ControlError::new(
                ErrorKind::ServiceNotDefined,
                format!("{id}: Service not defined; add it with -A first"),
            )
        })
    }

    /// `-a`: adds a real server (reviving a deleted one: same number, same
    /// counters).
    ///
    /// # Errors
    /// [`ErrorKind::ServiceNotDefined`], [`ErrorKind::DestinationExists`],
    /// [`ErrorKind::Invalid`].
    pub fn add_server(&mut self, service: ServiceId, s: &ServerParams) -> Result<(), ControlError> {
        let slot = self.service_for_server(service)?;
        self.check_server(service, s)?;
        let mut vs = (*self.services[slot as usize]).clone();
        let spec = RealServerSpec {
            addr: s.addr,
            port: s.port,
            weight: s.weight,
            u_threshold: s.u_threshold,
            l_threshold: s.l_threshold,
        };
        let id = vs
            .sched
            .add_server(&spec)
            .map_err(|e| server_error(&e, service))?;
        let dest = Dest {
            service: slot,
            server: Some(id),
            addr: s.addr,
            port: s.port,
            method: s.method,
            route: route_in(&self.interfaces, s.addr),
            available: true,
        };
        match vs.dest_of.get(id.index()).copied() {
            Some(d) if d != DestIndex::MAX => {
                if let Some(slot) = self.dests.get_mut(d) {
                    *slot = dest;
                }
            }
            _ => {
                // Nothing is changed yet: `vs` is a copy.
                self.check_room(service, s)?;
                if vs.dest_of.len() <= id.index() {
                    vs.dest_of.resize(id.index() + 1, DestIndex::MAX);
                }
                vs.dest_of[id.index()] = self.dests.push(dest);
            }
        }
        self.services[slot as usize] = Arc::new(vs);
        Ok(())
    }

    /// `-e`: new weight, thresholds and method (the method applies to new
    /// connections; established ones keep theirs, as in IPVS).
    ///
    /// # Errors
    /// [`ErrorKind::ServiceNotDefined`], [`ErrorKind::NoSuchDestination`],
    /// [`ErrorKind::Invalid`].
    pub fn edit_server(
        &mut self,
        service: ServiceId,
        s: &ServerParams,
    ) -> Result<(), ControlError> {
        let slot = self.service_for_server(service)?;
        self.check_server(service, s)?;
        let mut vs = (*self.services[slot as usize]).clone();
        let id = vs
            .sched
            .servers()
            .iter()
            .find(|r| r.addr() == s.addr && r.port() == s.port)
            .map(|r| r.id())
            .ok_or_else(|| no_destination(service, s.addr, s.port))?;
        vs.sched
            .edit_server(id, s.weight, s.u_threshold, s.l_threshold)
            .map_err(|e| server_error(&e, service))?;
        if let Some(d) = vs
            .dest_of
            .get(id.index())
            .and_then(|&d| self.dests.get_mut(d))
        {
            d.method = s.method;
        }
        self.services[slot as usize] = Arc::new(vs);
        Ok(())
    }

    /// `-d`: deletes a real server: no new connections; established ones
    /// drain (or expire at their next packet under `expire_nodest_conn`).
    ///
    /// # Errors
    /// [`ErrorKind::ServiceNotDefined`], [`ErrorKind::NoSuchDestination`].
    pub fn delete_server(
        &mut self,
        service: ServiceId,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), ControlError> {
        let slot = self.service_for_server(service)?;
        let mut vs = (*self.services[slot as usize]).clone();
        let id = vs
            .sched
            .servers()
            .iter()
            .find(|r| r.addr() == addr && r.port() == port)
            .map(|r| r.id())
            .ok_or_else(|| no_destination(service, addr, port))?;
        vs.sched
            .remove_server(id)
            .map_err(|e| server_error(&e, service))?;
        if let Some(&d) = vs.dest_of.get(id.index()) {
            self.set_unavailable(d);
        }
        self.services[slot as usize] = Arc::new(vs);
        Ok(())
    }

    /// Destination `index` gets no new connection.
    fn set_unavailable(&mut self, index: DestIndex) {
        if let Some(d) = self.dests.get_mut(index) {
            d.available = false;
        }
    }

    /// `--set tcp tcpfin udp` (0 keeps a value).
    pub fn set_timeouts(&mut self, t: TimeoutSet) {
        if t.tcp != 0 {
            self.timeouts.tcp[crate::conn::TcpState::Established as usize] = t.tcp;
        }
        if t.tcp_fin != 0 {
            self.timeouts.tcp[crate::conn::TcpState::FinWait as usize] = t.tcp_fin;
        }
        if t.udp != 0 {
            self.timeouts.udp = t.udp;
        }
    }

    /// The timeouts as `--timeout` lists them.
    #[must_use]
    pub fn timeout_set(&self) -> TimeoutSet {
        TimeoutSet {
            tcp: self.timeouts.tcp[crate::conn::TcpState::Established as usize],
            tcp_fin: self.timeouts.tcp[crate::conn::TcpState::FinWait as usize],
            udp: self.timeouts.udp,
        }
    }

    /// Applies one change request (a batch all or nothing). Read-only
    /// requests and `Zero`/`Reload` (which the caller handles) change
    /// nothing here.
    ///
    /// # Errors
    /// The first refused step; the table is then unchanged.
    pub fn apply(&mut self, request: &Request, now: Millis) -> Result<(), ControlError> {
        match request {
            Request::AddService(p) => self.add_service(p, now),
            Request::EditService(p) => self.edit_service(p, true, now),
            Request::DeleteService { id } => self.delete_service(*id),
            Request::Clear => {
                self.clear();
                Ok(())
            }
            Request::AddServer { service, server } => self.add_server(*service, server),
            Request::EditServer { service, server } => self.edit_server(*service, server),
            Request::DeleteServer {
                service,
                addr,
                port,
            } => self.delete_server(*service, *addr, *port),
            Request::SetTimeouts(t) => {
                self.set_timeouts(*t);
                Ok(())
            }
            Request::Batch { requests } => {
                let mut copy = self.clone();
                for (i, r) in requests.iter().enumerate() {
                    if matches!(r, Request::Batch { .. }) {
                        return Err(invalid("a batch cannot hold another batch"));
                    }
                    copy.apply(r, now).map_err(|e| ControlError {
                        kind: e.kind,
                        message: format!("step {} of {}: {}", i + 1, requests.len(), e.message),
                    })?;
                }
                *self = copy;
                Ok(())
            }
            Request::Zero { .. }
            | Request::List
            | Request::Connections
            | Request::Timeouts
            | Request::Load
            | Request::Daemons
            | Request::StartDaemon(_)
            | Request::StopDaemon { .. }
            | Request::Reload => Ok(()),
        }
    }

    /// Makes the table say what `config` says, changing only what differs:
    /// services and servers that are the same are not touched at all (their
    /// scheduler state and connections stay), servers that disappear are
    /// deleted (their connections drain), weights and methods change for
    /// new connections. Timeouts follow the file. Interfaces cannot change
    /// without a restart.
    ///
    /// # Errors
    /// The file describes a state the table refuses (or other interfaces);
    /// the table is then unchanged.
    pub fn reconcile(&mut self, config: &ClusterConfig, now: Millis) -> Result<(), ControlError> {
        let interfaces = Snapshot::interfaces_of(config).map_err(|e| invalid(e.to_string()))?;
        let same_ifaces = interfaces.len() == self.interfaces.len()
            && interfaces.iter().zip(&self.interfaces).all(|(a, b)| {
                a.name == b.name
                    && a.role == b.role
                    && a.addresses == b.addresses
                    && a.gateways == b.gateways
            });
        if !same_ifaces {
            return Err(invalid(
                "the interfaces changed; a reload applies services, servers and timeouts only: restart the director to change interfaces",
            ));
        }
        let mut next = self.clone();
        next.timeouts = config.timeouts.effective();
        next.expire_nodest_conn = config.conn_table.expire_nodest_conn;
        let wanted: Vec<(ServiceParams, Vec<ServerParams>)> = config
            .services
            .iter()
            .map(|s| (service_params_of(s), server_params_of(s)))
            .collect();
        let gone: Vec<ServiceId> = next
            .services()
            .map(|s| s.params.id)
            .filter(|id| !wanted.iter().any(|(p, _)| p.id == *id))
            .collect();
        for id in gone {
            next.delete_service(id)?;
        }
        for (i, (params, servers)) in wanted.iter().enumerate() {
            let at = |e: ControlError| ControlError {
                kind: e.kind,
                message: format!("services[{i}]: {}", e.message),
            };
            match next.slot(params.id) {
                None => {
                    next.add_service(params, now).map_err(at)?;
                    for s in servers {
                        next.add_server(params.id, s).map_err(at)?;
                    }
                }
                Some(slot) => {
                    if next.services[slot as usize].params != *params {
                        next.edit_service(params, false, now).map_err(at)?;
                    }
                    next.reconcile_servers(slot, params.id, servers)
                        .map_err(at)?;
                }
            }
        }
        *self = next;
        Ok(())
    }

    fn reconcile_servers(
        &mut self,
        slot: u32,
        id: ServiceId,
        wanted: &[ServerParams],
    ) -> Result<(), ControlError> {
        let current: Vec<ServerParams> = self.server_params(slot);
        for c in &current {
            if !wanted.iter().any(|w| w.addr == c.addr && w.port == c.port) {
                self.delete_server(id, c.addr, c.port)?;
            }
        }
        for w in wanted {
            match current
                .iter()
                .find(|c| c.addr == w.addr && c.port == w.port)
            {
                None => self.add_server(id, w)?,
                Some(c) if c != w => self.edit_server(id, w)?,
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The parameters of service `slot`'s servers, in list order.
    fn server_params(&self, slot: u32) -> Vec<ServerParams> {
        let vs = &self.services[slot as usize];
        vs.sched
            .servers()
            .iter()
            .map(|r| server_params_in(vs, &self.dests, r))
            .collect()
    }

    /// The live real server `addr:port` of live service `id`, if any.
    #[must_use]
    pub fn server(&self, id: ServiceId, addr: IpAddr, port: u16) -> Option<ServerParams> {
        let vs = &self.services[self.slot(id)? as usize];
        let rs = vs
            .sched
            .servers()
            .find(addr, port)
            .filter(|r| r.is_available())?;
        Some(server_params_in(vs, &self.dests, rs))
    }
}

fn no_destination(service: ServiceId, addr: IpAddr, port: u16) -> ControlError {
    let server = match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    ControlError::new(
        ErrorKind::NoSuchDestination,
        format!(
            "{service}: No such destination {server}; list the service with -L -n to see its servers"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::two_interfaces;

    const BASE: &str = concat!(
        two_interfaces!(
            c0 { r#"addresses = ["198.51.100.1/24"]"# },
            s0 { r#"addresses = ["192.0.2.1/24", "2001:db8:5::1/64"]"# }
        ),
        r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
scheduler = "wlc"
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
weight = 1
[[services.real_servers]]
address = "192.0.2.12"
method = "nat"
weight = 2

[[services]]
proto = "udp"
vip = "203.0.113.10"
port = 53
scheduler = "rr"
[[services.real_servers]]
address = "192.0.2.11"
method = "nat"
"#
    );

    fn config(text: &str) -> ClusterConfig {
        ClusterConfig::parse("t.toml", text).unwrap()
    }

    fn web() -> ServiceId {
        ServiceId {
            proto: Protocol::Tcp,
            vip: "203.0.113.10".parse().unwrap(),
            port: 80,
        }
    }

    fn weights(t: &ServiceTable, id: ServiceId) -> Vec<(IpAddr, u32)> {
        let slot = t.slot(id).unwrap();
        t.server_params(slot)
            .iter()
            .map(|s| (s.addr, s.weight))
            .collect()
    }

    #[test]
    fn an_unchanged_file_touches_nothing() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let before = t.services.clone();
        t.reconcile(&config(BASE), 10).unwrap();
        for (a, b) in before.iter().zip(&t.services) {
            assert!(Arc::ptr_eq(a, b), "service {:?} was rebuilt", a.params.id);
        }
    }

    #[test]
    fn a_weight_change_edits_only_that_service() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let before = t.services.clone();
        t.reconcile(&config(&BASE.replace("weight = 2", "weight = 5")), 10)
            .unwrap();
        assert!(!Arc::ptr_eq(&before[0], &t.services[0]));
        assert!(Arc::ptr_eq(&before[1], &t.services[1]));
        assert_eq!(
            weights(&t, web()),
            vec![
                ("192.0.2.12".parse().unwrap(), 5),
                ("192.0.2.11".parse().unwrap(), 1)
            ]
        );
    }

    #[test]
    fn servers_and_services_come_and_go_with_stable_numbers() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let rs2_dest = t.services[0].dest_of[1];
        // rs2 gone, a third server added, the UDP service removed.
        let next = BASE
            .replace(
                "address = \"192.0.2.12\"\nmethod = \"nat\"\nweight = 2",
                "address = \"192.0.2.13\"\nmethod = \"nat\"\nweight = 3",
            )
            .replace(
                "[[services]]\nproto = \"udp\"\nvip = \"203.0.113.10\"\nport = 53\nscheduler = \"rr\"\n[[services.real_servers]]\naddress = \"192.0.2.11\"\nmethod = \"nat\"\n",
                "",
            );
        t.reconcile(&config(&next), 10).unwrap();
        assert!(!t.dests.get(rs2_dest).unwrap().available);
        assert_eq!(t.services().count(), 1);
        assert_eq!(
            t.snapshot().find_service(IpProtocol::Udp, web().vip, 53),
            None
        );
        // And back: the same numbers.
        t.reconcile(&config(BASE), 20).unwrap();
        assert_eq!(t.services[0].dest_of[1], rs2_dest);
        assert!(t.dests.get(rs2_dest).unwrap().available);
        assert_eq!(t.services.len(), 2, "the UDP service was revived");
    }

    #[test]
    fn a_refused_file_leaves_the_table_as_it_was() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let before = t.snapshot();
        let bad = BASE
            .replace("weight = 2", "weight = 4")
            .replace("scheduler = \"rr\"", "scheduler = \"nosuch\"");
        let err = t.reconcile(&config(&bad), 10).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SchedulerNotFound);
        assert!(err.message.contains("services[1]"), "{}", err.message);
        assert_eq!(weights(&t, web())[0].1, 2, "the weight change was not kept");
        assert_eq!(t.snapshot().dests, before.dests);
    }

    #[test]
    fn ipvsadm_errors() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let p = t.services[0].params.clone();
        assert_eq!(
            t.add_service(&p, 0).unwrap_err().kind,
            ErrorKind::ServiceExists
        );
        let rs = ServerParams {
            addr: "192.0.2.11".parse().unwrap(),
            port: 80,
            method: ForwardMethod::Nat,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        assert_eq!(
            t.add_server(web(), &rs).unwrap_err().kind,
            ErrorKind::DestinationExists
        );
        let other = ServiceId { port: 81, ..web() };
        assert_eq!(
            t.add_server(other, &rs).unwrap_err().kind,
            ErrorKind::ServiceNotDefined
        );
        assert_eq!(
            t.delete_server(web(), "192.0.2.99".parse().unwrap(), 80)
                .unwrap_err()
                .kind,
            ErrorKind::NoSuchDestination
        );
        let v6 = ServerParams {
            addr: "2001:db8:5::11".parse().unwrap(),
            ..rs
        };
        assert_eq!(
            t.add_server(web(), &v6).unwrap_err().kind,
            ErrorKind::Invalid
        );
        let heavy = ServerParams {
            addr: "192.0.2.20".parse().unwrap(),
            weight: 70_000,
            ..rs
        };
        assert_eq!(
            t.add_server(web(), &heavy).unwrap_err().kind,
            ErrorKind::Invalid
        );
        let mut zero_port = p.clone();
        zero_port.id.port = 0;
        assert_eq!(
            t.add_service(&zero_port, 0).unwrap_err().kind,
            ErrorKind::Invalid
        );
    }

    #[test]
    fn a_batch_is_all_or_nothing() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        let rs = ServerParams {
            addr: "192.0.2.30".parse().unwrap(),
            port: 80,
            method: ForwardMethod::Nat,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let batch = Request::Batch {
            requests: vec![
                Request::AddServer {
                    service: web(),
                    server: rs,
                },
                Request::DeleteService {
                    id: ServiceId { port: 99, ..web() },
                },
            ],
        };
        let err = t.apply(&batch, 0).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoSuchService);
        assert!(err.message.starts_with("step 2 of 2"), "{}", err.message);
        assert_eq!(weights(&t, web()).len(), 2, "the first step was undone");
    }

    #[test]
    fn timeouts_set_and_keep() {
        let mut t = ServiceTable::from_config(&config(BASE), 0).unwrap();
        assert_eq!(
            t.timeout_set(),
            TimeoutSet {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }
        );
        t.set_timeouts(TimeoutSet {
            tcp: 600,
            tcp_fin: 0,
            udp: 60,
        });
        assert_eq!(
            t.timeout_set(),
            TimeoutSet {
                tcp: 600,
                tcp_fin: 120,
                udp: 60
            }
        );
    }

    #[test]
    fn a_change_that_needs_a_number_beyond_max_destinations_is_refused_whole() {
        // BASE numbers three destinations: room for exactly those.
        let text = format!("[conn_table]\nmax_destinations = 3\n{BASE}");
        let mut t = ServiceTable::from_config(&config(&text), 0).unwrap();
        assert_eq!(t.snapshot().dest_capacity, 3);
        let before = t.snapshot();
        let rs3 = ServerParams {
            addr: "192.0.2.13".parse().unwrap(),
            port: 80,
            method: ForwardMethod::Nat,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
        };
        let err = t.add_server(web(), &rs3).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message.contains("192.0.2.13:80")
                && err.message.contains("all 3 are taken")
                && err.message.contains("raise [conn_table] max_destinations"),
            "{}",
            err.message
        );
        // A new fallback needs a number too.
        let mut params = t.services[0].params.clone();
        params.fallback = Some(rs3);
        let err = t.edit_service(&params, false, 10).unwrap_err();
        assert!(err.message.contains("all 3 are taken"), "{}", err.message);
        assert_eq!(t.snapshot().dests, before.dests, "nothing changed");
        assert!(t.services[0].params.fallback.is_none());
        // A deleted server comes back under its own number: no new one.
        t.delete_server(web(), "192.0.2.12".parse().unwrap(), 80)
            .unwrap();
        let rs2 = t.server_params(0)[0];
        let back = ServerParams {
            addr: "192.0.2.12".parse().unwrap(),
            ..rs2
        };
        t.add_server(web(), &back).unwrap();
        assert_eq!(t.snapshot().dests, before.dests);
        // A config that needs more numbers than it allows is refused.
        let text = format!("[conn_table]\nmax_destinations = 2\n{BASE}");
        let err = ServiceTable::from_config(&config(&text), 0).unwrap_err();
        assert!(err.to_string().contains("max_destinations"), "{err}");
    }
}
