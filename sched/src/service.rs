//! A virtual service: configuration, real servers and the bound scheduler,
//! plus the kernel's scheduling entry point (`ip_vs_schedule` and
//! `ip_vs_sched_persist`).
//!
//! Server changes go through [`Service`] so that the scheduler's hooks run
//! exactly where the kernel runs them (after the list changed). A new
//! connection is decided by [`Service::schedule_connection`], which applies
//! the kernel's checks in its order — FTP data from port 20 is never
//! scheduled; a persistent service consults its template first; a
//! non-persistent, non-fwmark service only schedules packets to its own
//! port — and binds the new connection (inactive, as the kernel creates
//! it) and its template to the chosen server.

use core::net::IpAddr;

use xvs_packet::{FlowKey, IpProtocol};

use crate::persist::{PersistConfig, TemplateId, TemplateKey, TemplateVaddr, Templates};
use crate::registry::{SchedError, SchedOptions, create_scheduler};
use crate::server::{RealServerId, RealServerSpec, ServerError, ServerList};
use crate::{Millis, SchedContext, Scheduler};

/// FTP control port: templates of an FTP service ignore the port.
const FTP_PORT: u16 = 21;
/// FTP data port: connections from it are never scheduled.
const FTP_DATA_PORT: u16 = 20;

/// A virtual service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Protocol (`-t` TCP, `-u` UDP).
    pub proto: IpProtocol,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port (0: all ports; then the service must be persistent).
    pub vport: u16,
    /// Firewall mark (`-f`); 0 for an address/port service.
    pub fwmark: u32,
    /// Persistence (`-p`), if any.
    pub persistence: Option<PersistConfig>,
    /// Scheduler options (flags, mh table size, lblc/lblcr expirations).
    pub options: SchedOptions,
}

impl ServiceConfig {
    /// A TCP service `vip:vport`, not persistent, default options.
    #[must_use]
    pub fn tcp(vip: IpAddr, vport: u16) -> Self {
        Self {
            proto: IpProtocol::Tcp,
            vip,
            vport,
            fwmark: 0,
            persistence: None,
            options: SchedOptions::default(),
        }
    }
}

/// A decision for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// The real server; the connection is already bound to it (counted
    /// inactive until the caller reports an active state).
    pub server: RealServerId,
    /// The persistence template it was created under; release it with
    /// [`Templates::release`] when the connection ends.
    pub template: Option<TemplateId>,
}

/// Why a new connection got no real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotScheduled {
    /// Source port 20 (active FTP data) is never scheduled.
    #[error("connections from port 20 (FTP data) are never scheduled")]
    FtpData,
    /// A non-persistent service only schedules packets to its own port.
    #[error(
        "packet to port {dport} does not match the service port {vport} of a non-persistent service"
    )]
    PortMismatch {
        /// The packet's destination port.
        dport: u16,
        /// The service's port.
        vport: u16,
    },
    /// The scheduler found no usable real server.
    #[error("no real server available (all quiesced, overloaded or none configured)")]
    NoServer,
}

/// A virtual service with its real servers and scheduler.
#[derive(Debug, Clone)]
pub struct Service {
    config: ServiceConfig,
    servers: ServerList,
    scheduler: Box<dyn Scheduler>,
}

impl Service {
    /// An empty service with scheduler `scheduler` (an ipvsadm name),
    /// created at `now`.
    ///
    /// # Errors
    /// [`SchedError::UnknownScheduler`] for a name ipvsadm does not know.
    pub fn new(config: ServiceConfig, scheduler: &str, now: Millis) -> Result<Self, SchedError> {
        let servers = ServerList::new();
        let scheduler = create_scheduler(scheduler, &servers, &config.options, now)?;
        Ok(Self {
            config,
            servers,
            scheduler,
        })
    }

    /// Binds another scheduler (`ipvsadm -E -s`): it starts from scratch
    /// over the current servers.
    ///
    /// # Errors
    /// [`SchedError::UnknownScheduler`] for a name ipvsadm does not know.
    pub fn set_scheduler(&mut self, name: &str, now: Millis) -> Result<(), SchedError> {
        self.scheduler = create_scheduler(name, &self.servers, &self.config.options, now)?;
        Ok(())
    }

    /// `ipvsadm -E`: new persistence, options and scheduler. The scheduler
    /// starts afresh when its name or its options change (the kernel binds
    /// a new one only when the name changes; options are read when it is
    /// bound, so a change of flags needs a new one too); otherwise it keeps
    /// its state. Servers and their counters are untouched.
    ///
    /// # Errors
    /// [`SchedError::UnknownScheduler`]; the service is then unchanged.
    pub fn reconfigure(
        &mut self,
        persistence: Option<PersistConfig>,
        options: SchedOptions,
        scheduler: &str,
        now: Millis,
    ) -> Result<(), SchedError> {
        if scheduler != self.scheduler.name() || options != self.config.options {
            self.scheduler = create_scheduler(scheduler, &self.servers, &options, now)?;
        }
        self.config.persistence = persistence;
        self.config.options = options;
        Ok(())
    }

    /// Its configuration.
    #[must_use]
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Its real servers (and the trash).
    #[must_use]
    pub fn servers(&self) -> &ServerList {
        &self.servers
    }

    /// The bound scheduler.
    #[must_use]
    pub fn scheduler(&self) -> &dyn Scheduler {
        self.scheduler.as_ref()
    }

    /// `ipvsadm -a`: adds a server at the head of the list (reviving it
    /// from the trash when it was deleted before) and runs `add_dest`.
    ///
    /// # Errors
    /// [`ServerError`] when it is already in the service or the weight or
    /// thresholds are out of range.
    pub fn add_server(&mut self, spec: &RealServerSpec) -> Result<RealServerId, ServerError> {
        let id = self.servers.add(spec)?;
        self.scheduler.server_added(&self.servers, id);
        Ok(id)
    }

    /// `ipvsadm -e`: sets weight and thresholds and runs `upd_dest`.
    ///
    /// # Errors
    /// [`ServerError`] when `id` is not in the service or values are out of
    /// range.
    pub fn edit_server(
        &mut self,
        id: RealServerId,
        weight: u32,
        u_threshold: u32,
        l_threshold: u32,
    ) -> Result<(), ServerError> {
        self.servers.edit(id, weight, u_threshold, l_threshold)?;
        self.scheduler.server_updated(&self.servers, id);
        Ok(())
    }

    /// `ipvsadm -d`: unlinks the server to the trash and runs `del_dest`.
    /// Its connections keep it (and its counters) alive.
    ///
    /// # Errors
    /// [`ServerError::NoSuchServer`] when `id` is not in the service.
    pub fn remove_server(&mut self, id: RealServerId) -> Result<(), ServerError> {
        let pos = self.servers.remove(id)?;
        self.scheduler.server_removed(&self.servers, id, pos);
        Ok(())
    }

    /// Asks the scheduler alone (no persistence, no checks, no binding).
    pub fn schedule(&self, flow: &FlowKey, ctx: &mut SchedContext<'_>) -> Option<RealServerId> {
        self.scheduler.schedule(&self.servers, flow, ctx)
    }

    /// Runs the scheduler's timers due at or before `now`.
    pub fn run_timers(&self, now: Millis) {
        self.scheduler.run_timers(now);
    }

    /// The destination port of a new connection of `flow` sent to
    /// `server`: the server's port, or the packet's when the server's port
    /// is 0; a persistent service keeps the packet's port also when it is
    /// not the service port (port-zero services), as the kernel does.
    #[must_use]
    pub fn real_port(&self, server: RealServerId, flow: &FlowKey) -> u16 {
        let rs_port = self.servers.get(server).map_or(0, |s| s.port());
        if self.config.persistence.is_some() {
            if flow.dport == self.config.vport && rs_port != 0 {
                rs_port
            } else {
                flow.dport
            }
        } else if rs_port != 0 {
            rs_port
        } else {
            flow.dport
        }
    }

    /// The template key of a persistent service for `flow`
    /// (`ip_vs_sched_persist`).
    #[must_use]
    pub fn template_key(&self, persist: &PersistConfig, flow: &FlowKey) -> TemplateKey {
        let c = &self.config;
        let mut proto = u8::from(flow.proto);
        let mut vaddr = TemplateVaddr::Addr(flow.dst);
        let mut vport = 0;
        if flow.dport == c.vport {
            if c.vport != FTP_PORT {
                vport = flow.dport;
            }
        } else if c.fwmark != 0 {
            proto = 0;
            vaddr = TemplateVaddr::Fwmark(c.fwmark);
        }
        TemplateKey {
            proto,
            client_net: persist.client_net(&flow.src),
            vaddr,
            vport,
        }
    }

    /// The kernel's `ip_vs_schedule` for a new connection of `flow`: the
    /// decision, with the connection (and a new template) already bound to
    /// the server.
    ///
    /// # Errors
    /// [`NotScheduled`] says why nothing was chosen.
    pub fn schedule_connection(
        &self,
        templates: &mut Templates,
        flow: &FlowKey,
        ctx: &mut SchedContext<'_>,
    ) -> Result<Scheduled, NotScheduled> {
        if flow.sport == FTP_DATA_PORT {
            return Err(NotScheduled::FtpData);
        }
        if let Some(persist) = self.config.persistence {
            let key = self.template_key(&persist, flow);
            let now = ctx.now;
            let (tpl, server) = match templates.lookup_valid(
                &key,
                &self.servers,
                persist.expire_quiescent_template,
            ) {
                Some(found) => found,
                None => {
                    let server = self.schedule(flow, ctx).ok_or(NotScheduled::NoServer)?;
                    let tpl = templates.create(key, server, persist.timeout, now, &self.servers);
                    (tpl, server)
                }
            };
            self.servers.bind_conn(server);
            templates.attach(tpl, now);
            return Ok(Scheduled {
                server,
                template: Some(tpl),
            });
        }
        if self.config.fwmark == 0 && flow.dport != self.config.vport {
            return Err(NotScheduled::PortMismatch {
                dport: flow.dport,
                vport: self.config.vport,
            });
        }
        let server = self.schedule(flow, ctx).ok_or(NotScheduled::NoServer)?;
        self.servers.bind_conn(server);
        Ok(Scheduled {
            server,
            template: None,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{FixedDraws, RealServerSpec};
    use core::net::Ipv4Addr;

    pub(crate) const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));
    pub(crate) const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

    pub(crate) fn server_addr(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i + 1) as u8))
    }

    pub(crate) fn flow(src: IpAddr, sport: u16, dst: IpAddr) -> FlowKey {
        FlowKey {
            proto: IpProtocol::Tcp,
            src,
            dst,
            sport,
            dport: 80,
        }
    }

    pub(crate) fn flow_to(dst: IpAddr) -> FlowKey {
        flow(CLIENT, 40000, dst)
    }

    /// A service with servers 10.0.0.(i+1):80 of these weights, added in
    /// order to the empty service (so the last is visited first).
    pub(crate) fn svc(name: &str, weights: &[u32]) -> Service {
        svc_with(name, weights, |_| {})
    }

    pub(crate) fn svc_with(
        name: &str,
        weights: &[u32],
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> Service {
        let mut config = ServiceConfig::tcp(VIP, 80);
        tweak(&mut config);
        let mut s = Service::new(config, name, 0).unwrap();
        for (i, &w) in weights.iter().enumerate() {
            s.add_server(&RealServerSpec::new(server_addr(i), 80, w))
                .unwrap();
        }
        s
    }

    /// Servers added first, scheduler bound afterwards.
    pub(crate) fn svc_bound_after(name: &str, weights: &[u32]) -> Service {
        let mut s = svc("rr", weights);
        s.set_scheduler(name, 0).unwrap();
        s
    }

    fn idx(id: Option<RealServerId>) -> i64 {
        id.map_or(-1, |i| i64::from(i.0))
    }

    /// `n` raw scheduler calls with one flow, nothing bound.
    pub(crate) fn picks(s: &Service, n: usize) -> Vec<i64> {
        let mut draws = FixedDraws::new(vec![]);
        (0..n)
            .map(|_| {
                let mut ctx = SchedContext {
                    now: 0,
                    random: &mut draws,
                };
                idx(s.schedule(&flow_to(VIP), &mut ctx))
            })
            .collect()
    }

    pub(crate) trait TestService {
        fn edit_weight(&mut self, idx: usize, w: u32);
        fn add(&mut self, last_octet: u8, w: u32);
        fn remove(&mut self, idx: usize);
        fn conns(&self, idx: usize, active: u32, inactive: u32);
        fn run_active(&self, n: usize) -> Vec<i64>;
        fn pick_with(&self, draws: &[u32]) -> i64;
        fn pick_to(&self, daddr: IpAddr) -> i64;
        fn pick_to_at(&self, daddr: IpAddr, now: Millis) -> i64;
        fn pick_to_active(&self, daddr: IpAddr) -> i64;
        fn pick_from(&self, client: IpAddr, cport: u16) -> i64;
        fn tick(&mut self, now: Millis);
    }

    impl TestService for Service {
        fn edit_weight(&mut self, idx: usize, w: u32) {
            let id = RealServerId(idx as u32);
            let s = self.servers().get(id).unwrap();
            let (u, l) = (s.u_threshold(), s.l_threshold());
            self.edit_server(id, w, u, l).unwrap();
        }
        fn add(&mut self, last_octet: u8, w: u32) {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet));
            self.add_server(&RealServerSpec::new(addr, 80, w)).unwrap();
        }
        fn remove(&mut self, idx: usize) {
            self.remove_server(RealServerId(idx as u32)).unwrap();
        }
        fn conns(&self, idx: usize, active: u32, inactive: u32) {
            let id = RealServerId(idx as u32);
            for _ in 0..active {
                self.servers().bind_conn(id);
                self.servers().conn_activity_changed(id, false, true);
            }
            for _ in 0..inactive {
                self.servers().bind_conn(id);
            }
        }
        fn run_active(&self, n: usize) -> Vec<i64> {
            (0..n)
                .map(|_| {
                    let p = picks(self, 1)[0];
                    if p >= 0 {
                        self.conns(p as usize, 1, 0);
                    }
                    p
                })
                .collect()
        }
        fn pick_with(&self, draws: &[u32]) -> i64 {
            let mut d = FixedDraws::new(draws.to_vec());
            let mut ctx = SchedContext {
                now: 0,
                random: &mut d,
            };
            idx(self.schedule(&flow_to(VIP), &mut ctx))
        }
        fn pick_to(&self, daddr: IpAddr) -> i64 {
            self.pick_to_at(daddr, 0)
        }
        fn pick_to_at(&self, daddr: IpAddr, now: Millis) -> i64 {
            let mut d = FixedDraws::new(vec![]);
            let mut ctx = SchedContext {
                now,
                random: &mut d,
            };
            idx(self.schedule(&flow_to(daddr), &mut ctx))
        }
        fn pick_to_active(&self, daddr: IpAddr) -> i64 {
            let p = self.pick_to(daddr);
            if p >= 0 {
                self.conns(p as usize, 1, 0);
            }
            p
        }
        fn pick_from(&self, client: IpAddr, cport: u16) -> i64 {
            let mut d = FixedDraws::new(vec![]);
            let mut ctx = SchedContext {
                now: 0,
                random: &mut d,
            };
            idx(self.schedule(&flow(client, cport, VIP), &mut ctx))
        }
        fn tick(&mut self, now: Millis) {
            self.run_timers(now);
        }
    }

    fn connect(
        s: &Service,
        t: &mut Templates,
        client: IpAddr,
        sport: u16,
        now: Millis,
    ) -> Result<Scheduled, NotScheduled> {
        let mut d = FixedDraws::new(vec![]);
        let mut ctx = SchedContext {
            now,
            random: &mut d,
        };
        s.schedule_connection(t, &flow(client, sport, VIP), &mut ctx)
    }

    fn persistent(name: &str, weights: &[u32], p: PersistConfig) -> Service {
        svc_with(name, weights, |c| c.persistence = Some(p))
    }

    #[test]
    fn a_service_snapshot_can_be_shared_between_workers() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Service>();
        // A clone shares the counters: a connection bound through one
        // snapshot is seen by the other.
        let mut master = svc("wlc", &[1, 1]);
        let snapshot = master.clone();
        snapshot.servers().bind_conn(RealServerId(1));
        assert_eq!(
            master
                .servers()
                .get(RealServerId(1))
                .unwrap()
                .inactive_conns(),
            1
        );
        // A change to the master does not disturb the published snapshot.
        master.edit_weight(1, 0);
        assert_eq!(snapshot.servers().get(RealServerId(1)).unwrap().weight(), 1);
        assert_eq!(picks(&snapshot, 1), vec![0], "wlc: 0 idle vs 1 with one");
        assert_eq!(picks(&master, 1), vec![0]);
    }

    #[test]
    fn ftp_data_and_foreign_ports_are_not_scheduled() {
        let s = svc("rr", &[1]);
        let mut t = Templates::new();
        assert_eq!(
            connect(&s, &mut t, CLIENT, 20, 0),
            Err(NotScheduled::FtpData)
        );
        let mut d = FixedDraws::new(vec![]);
        let mut ctx = SchedContext {
            now: 0,
            random: &mut d,
        };
        let f = FlowKey {
            dport: 443,
            ..flow(CLIENT, 1234, VIP)
        };
        assert_eq!(
            s.schedule_connection(&mut t, &f, &mut ctx),
            Err(NotScheduled::PortMismatch {
                dport: 443,
                vport: 80
            })
        );
        let ok = connect(&s, &mut t, CLIENT, 1234, 0).unwrap();
        assert_eq!(ok.server, RealServerId(0));
        assert_eq!(s.servers().get(ok.server).unwrap().inactive_conns(), 1);
    }

    #[test]
    fn persistence_pins_a_client_and_expires_with_its_template() {
        let s = persistent("rr", &[1, 1], PersistConfig::new(300_000));
        let mut t = Templates::new();
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
        let a = connect(&s, &mut t, CLIENT, 1000, 0).unwrap();
        assert_eq!(a.server, RealServerId(1));
        // Another client goes on with rr; the first one sticks.
        assert_eq!(
            connect(&s, &mut t, other, 1000, 0).unwrap().server,
            RealServerId(0)
        );
        let b = connect(&s, &mut t, CLIENT, 1001, 100_000).unwrap();
        assert_eq!(b.server, RealServerId(1));
        assert_eq!(a.template, b.template);
        let tpl = a.template.unwrap();
        assert_eq!(t.get(tpl).unwrap().expires, 400_000, "re-armed on reuse");
        assert_eq!(
            s.servers().get(RealServerId(1)).unwrap().persistent_conns(),
            1
        );
        // Connections still depend on it at 400 s: re-armed by 60 s, timeout 60 s.
        t.expire(400_000, s.servers());
        assert_eq!(t.get(tpl).unwrap().expires, 460_000);
        assert_eq!(t.get(tpl).unwrap().timeout, 60_000);
        t.release(tpl);
        t.release(tpl);
        // Both gone: freed at its next firing, 460 s.
        assert_eq!(t.expire(459_999, s.servers()), 0);
        assert_eq!(t.expire(460_000, s.servers()), 1);
        assert_eq!(
            s.servers().get(RealServerId(1)).unwrap().persistent_conns(),
            0
        );
        // Afresh: rr continues from its cursor (on 0) → 1.
        assert_eq!(
            connect(&s, &mut t, CLIENT, 1002, 460_000).unwrap().server,
            RealServerId(1)
        );
    }

    #[test]
    fn template_honoured_for_quiesced_and_overloaded_servers_unless_sysctl() {
        let mut s = persistent("wlc", &[1, 1], PersistConfig::new(300_000));
        let mut t = Templates::new();
        let first = connect(&s, &mut t, CLIENT, 1000, 0).unwrap().server;
        s.servers().set_overloaded(first, true);
        assert_eq!(connect(&s, &mut t, CLIENT, 1001, 1).unwrap().server, first);
        s.servers().set_overloaded(first, false);
        s.edit_weight(first.0 as usize, 0);
        assert_eq!(connect(&s, &mut t, CLIENT, 1002, 2).unwrap().server, first);

        let mut s = persistent(
            "wlc",
            &[1, 1],
            PersistConfig {
                expire_quiescent_template: true,
                ..PersistConfig::new(300_000)
            },
        );
        let mut t = Templates::new();
        let first = connect(&s, &mut t, CLIENT, 1000, 0).unwrap().server;
        s.edit_weight(first.0 as usize, 0);
        let next = connect(&s, &mut t, CLIENT, 1001, 1).unwrap();
        assert_ne!(next.server, first);
        // The old template is unhashed but alive until its timer.
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn netmask_groups_clients_and_deleted_server_invalidates_the_template() {
        let p = PersistConfig {
            netmask_v4: 0xFFFF_FF00,
            ..PersistConfig::new(300_000)
        };
        let mut s = persistent("rr", &[1, 1, 1], p);
        let mut t = Templates::new();
        let a = connect(&s, &mut t, CLIENT, 1000, 0).unwrap().server;
        let neighbour = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 200));
        assert_eq!(connect(&s, &mut t, neighbour, 1000, 0).unwrap().server, a);
        s.remove_server(a).unwrap();
        let b = connect(&s, &mut t, neighbour, 1001, 1).unwrap().server;
        assert_ne!(a, b);
    }

    #[test]
    fn real_port_follows_the_server_port_unless_it_is_zero() {
        let mut s = svc("rr", &[]);
        let with_port = s
            .add_server(&RealServerSpec::new(server_addr(0), 8080, 1))
            .unwrap();
        let no_port = s
            .add_server(&RealServerSpec::new(server_addr(1), 0, 1))
            .unwrap();
        let f = flow(CLIENT, 1000, VIP);
        assert_eq!(s.real_port(with_port, &f), 8080);
        assert_eq!(s.real_port(no_port, &f), 80);
        let mut c = ServiceConfig::tcp(VIP, 0);
        c.persistence = Some(PersistConfig::new(1000));
        let mut p = Service::new(c, "rr", 0).unwrap();
        let id = p
            .add_server(&RealServerSpec::new(server_addr(0), 8080, 1))
            .unwrap();
        assert_eq!(
            p.real_port(id, &f),
            80,
            "port-zero persistent: packet's port"
        );
    }

    #[test]
    fn vport_and_ftp_rules_of_the_template_key() {
        let mut c = ServiceConfig::tcp(VIP, 21);
        c.persistence = Some(PersistConfig::new(1000));
        let s = Service::new(c, "rr", 0).unwrap();
        let k = s.template_key(
            &PersistConfig::new(1000),
            &FlowKey {
                dport: 21,
                ..flow(CLIENT, 5, VIP)
            },
        );
        assert_eq!(k.vport, 0, "FTP templates ignore the port");
        let mut c = ServiceConfig::tcp(VIP, 0);
        c.fwmark = 7;
        let s = Service::new(c, "rr", 0).unwrap();
        let k = s.template_key(&PersistConfig::new(1000), &flow(CLIENT, 5, VIP));
        assert_eq!(k.vaddr, TemplateVaddr::Fwmark(7));
        assert_eq!(k.proto, 0);
    }
}
