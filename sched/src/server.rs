//! Real servers of one virtual service, in the kernel's order, with the
//! counters the schedulers read.
//!
//! The kernel keeps a service's destinations in a list and inserts a new
//! one at the *head*, so every scheduler visits the newest server first.
//! [`ServerList`] keeps that order in `order` (newest first) and the servers
//! themselves in a slab indexed by [`RealServerId`], deleted ones included:
//! a deleted server goes to the "trash" (not available, counters kept,
//! still referenced by its connections, templates and lblc entries) and
//! comes back with the same id and counters when the same address and port
//! are added again — exactly as `ip_vs_trash_get_dest` revives a
//! destination.
//!
//! Configuration (weight, thresholds) is plain data, changed only by the
//! control plane through [`crate::Service`]. Load figures (active, inactive
//! and persistent connection counts, the OVERLOAD flag) live in
//! [`ServerCounters`], atomics behind an `Arc` that every clone of the list
//! shares: the director can publish a new snapshot of a service without
//! losing or forking its counts, and workers update counts through `&self`.

use core::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use xvs_packet::IpProtocol;

/// Identifies a real server within its service for the service's whole
/// life, across deletion and revival. Ids are dense: 0, 1, 2, … in order of
/// first addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealServerId(pub u32);

impl RealServerId {
    /// The id as a slab index.
    #[must_use]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl core::fmt::Display for RealServerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "rs#{}", self.0)
    }
}

/// What the operator says about a real server (`ipvsadm -a/-e … -w -x -y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServerSpec {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (0: keep the packet's destination port).
    pub port: u16,
    /// Weight, 0 = quiesced (no new connections). At most `i32::MAX`.
    pub weight: u32,
    /// Upper connection threshold (0 = none): at `active + inactive >=
    /// u_threshold` the server is flagged OVERLOAD.
    pub u_threshold: u32,
    /// Lower connection threshold (0 = 3/4 of the upper one).
    pub l_threshold: u32,
}

impl RealServerSpec {
    /// A spec with no thresholds.
    #[must_use]
    pub const fn new(addr: IpAddr, port: u16, weight: u32) -> Self {
        Self {
            addr,
            port,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
}

/// Load figures of one real server, shared by every snapshot of its
/// service and updated by whoever owns the connections.
#[derive(Debug, Default)]
pub struct ServerCounters {
    active: AtomicU32,
    inactive: AtomicU32,
    persistent: AtomicU32,
    overloaded: AtomicBool,
}

/// One real server: configuration plus shared counters.
#[derive(Debug, Clone)]
pub struct RealServer {
    id: RealServerId,
    addr: IpAddr,
    port: u16,
    weight: u32,
    last_weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    available: bool,
    counters: Arc<ServerCounters>,
}

impl RealServer {
    /// Its id.
    #[must_use]
    pub fn id(&self) -> RealServerId {
        self.id
    }
    /// Its address.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    /// Its port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Current weight (0 = quiesced).
    #[must_use]
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Latest non-zero weight (the weight given when it was added, then
    /// every non-zero weight set by an edit). mh builds its table with it.
    #[must_use]
    pub fn last_weight(&self) -> u32 {
        self.last_weight
    }
    /// Upper connection threshold (0 = none).
    #[must_use]
    pub fn u_threshold(&self) -> u32 {
        self.u_threshold
    }
    /// Lower connection threshold.
    #[must_use]
    pub fn l_threshold(&self) -> u32 {
        self.l_threshold
    }
    /// In the service's list (false: deleted, waiting in the trash).
    #[must_use]
    pub fn is_available(&self) -> bool {
        self.available
    }
    /// Active connections.
    #[must_use]
    pub fn active_conns(&self) -> u32 {
        self.counters.active.load(Ordering::Relaxed)
    }
    /// Inactive connections.
    #[must_use]
    pub fn inactive_conns(&self) -> u32 {
        self.counters.inactive.load(Ordering::Relaxed)
    }
    /// Persistence templates bound to it.
    #[must_use]
    pub fn persistent_conns(&self) -> u32 {
        self.counters.persistent.load(Ordering::Relaxed)
    }
    /// The OVERLOAD flag.
    #[must_use]
    pub fn is_overloaded(&self) -> bool {
        self.counters.overloaded.load(Ordering::Relaxed)
    }
    /// `active * 256 + inactive` (`ip_vs_dest_conn_overhead`).
    #[must_use]
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active_conns()) << 8) + u64::from(self.inactive_conns())
    }
    /// `active + inactive`: what thresholds compare against (templates are
    /// not counted).
    #[must_use]
    pub fn total_conns(&self) -> u64 {
        u64::from(self.active_conns()) + u64::from(self.inactive_conns())
    }
    /// Weight > 0 and not OVERLOADed: what most schedulers require.
    #[must_use]
    pub fn is_usable(&self) -> bool {
        self.weight > 0 && !self.is_overloaded()
    }

    /// The OVERLOAD clearing rule of `ip_vs_unbind_dest`, run after a
    /// connection or template left the server.
    fn clear_overload_after_unbind(&self) {
        let total = self.total_conns();
        let clear = if self.l_threshold != 0 {
            total < u64::from(self.l_threshold)
        } else if self.u_threshold != 0 {
            total * 4 < u64::from(self.u_threshold) * 3
        } else {
            true
        };
        if clear {
            self.counters.overloaded.store(false, Ordering::Relaxed);
        }
    }

    /// The OVERLOAD setting rule of `ip_vs_bind_dest`.
    fn set_overload_after_bind(&self) {
        if self.u_threshold != 0 && self.total_conns() >= u64::from(self.u_threshold) {
            self.counters.overloaded.store(true, Ordering::Relaxed);
        }
    }
}

/// TCP connection states as IPVS names them (`ipvsadm -Lnc` shows these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// `NONE`: created, no segment processed yet.
    None = 0,
    /// `ESTABLISHED`.
    Established = 1,
    /// `SYN_SENT`: a SYN was seen from the server side.
    SynSent = 2,
    /// `SYN_RECV`: the state a new connection enters on the client's SYN.
    SynRecv = 3,
    /// `FIN_WAIT`.
    FinWait = 4,
    /// `TIME_WAIT`.
    TimeWait = 5,
    /// `CLOSE`.
    Close = 6,
    /// `CLOSE_WAIT`.
    CloseWait = 7,
    /// `LAST_ACK`.
    LastAck = 8,
    /// `LISTEN`.
    Listen = 9,
    /// `SYNACK`.
    SynAck = 10,
}

impl TcpState {
    /// Every state, in the kernel's column order (NO ES SS SR FW TW CL CW LA LI SA).
    pub const ALL: [Self; 11] = [
        Self::None,
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::SynAck,
    ];

    /// The state with this code (the `repr(u8)` value), if any.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        if (code as usize) < Self::ALL.len() {
            Some(Self::ALL[code as usize])
        } else {
            None
        }
    }

    /// The compact code stored in a connection entry.
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether a TCP connection in this state counts in `activeconns`.
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            Self::Established | Self::SynSent | Self::SynRecv | Self::SynAck
        )
    }

    /// The name ipvsadm prints.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait => "FIN_WAIT",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::SynAck => "SYNACK",
        }
    }
}

impl core::fmt::Display for TcpState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a connection of `proto` in `tcp_state` counts as active. Only
/// TCP has transitions that move counters; UDP and everything else stay in
/// `inactconns` for their whole life.
#[must_use]
pub const fn counts_as_active(proto: IpProtocol, tcp_state: TcpState) -> bool {
    matches!(proto, IpProtocol::Tcp) && tcp_state.is_active()
}

/// The real servers of one service: a slab by id (trash included) and the
/// kernel's list order, newest first.
#[derive(Debug, Clone, Default)]
pub struct ServerList {
    slab: Vec<RealServer>,
    order: Vec<RealServerId>,
    /// Copies of the servers of `order`, in that order: the schedulers'
    /// scans walk this contiguous array instead of chasing ids into the
    /// slab (counters stay shared through their `Arc`).
    ordered: Vec<RealServer>,
}

/// Why a change to the server list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// `ipvsadm -a` of an address:port that is already in the service.
    #[error(
        "real server {addr}:{port} is already in the service ({id}); edit it instead of adding it"
    )]
    AlreadyExists {
        /// Address.
        addr: IpAddr,
        /// Port.
        port: u16,
        /// The existing server.
        id: RealServerId,
    },
    /// The id names no server of this service, or a deleted one.
    #[error(
        "{0} is not a real server of this service (never added, or deleted); list the service to see its servers"
    )]
    NoSuchServer(RealServerId),
    /// The kernel's ERANGE: lower threshold above the upper one.
    #[error("lower threshold {l} is above upper threshold {u}; set l <= u (or both 0)")]
    ThresholdRange {
        /// Upper threshold.
        u: u32,
        /// Lower threshold.
        l: u32,
    },
    /// Weight above `i32::MAX` (the kernel's weight is an int).
    #[error("weight {0} is too large; the maximum is 2147483647")]
    WeightTooLarge(u32),
}

impl ServerList {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Servers in the service, in kernel order (newest first).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &RealServer> + ExactSizeIterator {
        self.ordered.iter()
    }

    /// The ids in kernel order.
    #[must_use]
    pub fn order(&self) -> &[RealServerId] {
        &self.order
    }

    /// The server at `pos` in kernel order.
    #[must_use]
    pub fn at(&self, pos: usize) -> &RealServer {
        &self.ordered[pos]
    }

    /// Number of servers in the service (the trash not included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the service has no server.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Any server ever added, deleted ones included.
    #[must_use]
    pub fn get(&self, id: RealServerId) -> Option<&RealServer> {
        self.slab.get(id.index())
    }

    /// Number of ids handed out so far (servers plus trash).
    #[must_use]
    pub fn id_count(&self) -> usize {
        self.slab.len()
    }

    /// The server with this address and port, in the list or in the trash.
    #[must_use]
    pub fn find(&self, addr: IpAddr, port: u16) -> Option<&RealServer> {
        self.slab.iter().find(|s| s.addr == addr && s.port == port)
    }

    fn check_spec(spec: &RealServerSpec) -> Result<(), ServerError> {
        if spec.weight > i32::MAX as u32 {
            return Err(ServerError::WeightTooLarge(spec.weight));
        }
        if spec.l_threshold > spec.u_threshold {
            return Err(ServerError::ThresholdRange {
                u: spec.u_threshold,
                l: spec.l_threshold,
            });
        }
        Ok(())
    }

    /// `__ip_vs_update_dest`'s common part: last_weight, weight, OVERLOAD
    /// clearing, thresholds.
    fn apply_spec(server: &mut RealServer, spec: &RealServerSpec, adding: bool) {
        if adding || spec.weight != 0 {
            server.last_weight = spec.weight;
        }
        server.weight = spec.weight;
        if spec.u_threshold == 0 || spec.u_threshold > server.u_threshold {
            server.counters.overloaded.store(false, Ordering::Relaxed);
        }
        server.u_threshold = spec.u_threshold;
        server.l_threshold = spec.l_threshold;
    }

    /// Adds a server at the head of the list, reviving it from the trash
    /// when the same address:port was deleted before.
    pub(crate) fn add(&mut self, spec: &RealServerSpec) -> Result<RealServerId, ServerError> {
        Self::check_spec(spec)?;
        let id = match self.find(spec.addr, spec.port) {
            Some(s) if s.available => {
                return Err(ServerError::AlreadyExists {
                    addr: spec.addr,
                    port: spec.port,
                    id: s.id,
                });
            }
            Some(s) => s.id,
            None => {
                let id = RealServerId(self.slab.len() as u32);
                self.slab.push(RealServer {
                    id,
                    addr: spec.addr,
                    port: spec.port,
                    weight: 0,
                    last_weight: 0,
                    u_threshold: 0,
                    l_threshold: 0,
                    available: false,
                    counters: Arc::default(),
                });
                id
            }
        };
        let server = &mut self.slab[id.index()];
        Self::apply_spec(server, spec, true);
        server.available = true;
        let copy = server.clone();
        self.order.insert(0, id);
        self.ordered.insert(0, copy);
        Ok(id)
    }

    /// Edits weight and thresholds of a server in the list.
    pub(crate) fn edit(
        &mut self,
        id: RealServerId,
        weight: u32,
        u_threshold: u32,
        l_threshold: u32,
    ) -> Result<(), ServerError> {
        let server = self
            .slab
            .get_mut(id.index())
            .filter(|s| s.available)
            .ok_or(ServerError::NoSuchServer(id))?;
        let spec = RealServerSpec {
            addr: server.addr,
            port: server.port,
            weight,
            u_threshold,
            l_threshold,
        };
        Self::check_spec(&spec)?;
        Self::apply_spec(server, &spec, false);
        let copy = server.clone();
        if let Some(pos) = self.order.iter().position(|&x| x == id) {
            self.ordered[pos] = copy;
        }
        Ok(())
    }

    /// Unlinks a server (to the trash); returns the position it had.
    pub(crate) fn remove(&mut self, id: RealServerId) -> Result<usize, ServerError> {
        let pos = self
            .order
            .iter()
            .position(|&x| x == id)
            .ok_or(ServerError::NoSuchServer(id))?;
        self.order.remove(pos);
        self.ordered.remove(pos);
        self.slab[id.index()].available = false;
        Ok(pos)
    }

    fn server(&self, id: RealServerId) -> &RealServer {
        &self.slab[id.index()]
    }

    /// A new connection is bound to `id` (`ip_vs_bind_dest`): it starts
    /// inactive, and the upper threshold may set OVERLOAD. For TCP the
    /// caller then moves it to active with [`Self::conn_activity_changed`]
    /// when its first packet (the SYN) puts it in SYN_RECV.
    ///
    /// # Panics
    /// If `id` was never handed out by this list.
    pub fn bind_conn(&self, id: RealServerId) {
        let s = self.server(id);
        s.counters.inactive.fetch_add(1, Ordering::Relaxed);
        s.set_overload_after_bind();
    }

    /// A connection bound to `id` changed between an active and a non-active
    /// state. Nothing happens when `was_active == now_active`.
    pub fn conn_activity_changed(&self, id: RealServerId, was_active: bool, now_active: bool) {
        let c = &self.server(id).counters;
        match (was_active, now_active) {
            (false, true) => {
                c.inactive.fetch_sub(1, Ordering::Relaxed);
                c.active.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                c.active.fetch_sub(1, Ordering::Relaxed);
                c.inactive.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// A connection bound to `id` is gone (`ip_vs_unbind_dest`): its counter
    /// drops and OVERLOAD may clear.
    pub fn unbind_conn(&self, id: RealServerId, was_active: bool) {
        let s = self.server(id);
        let counter = if was_active {
            &s.counters.active
        } else {
            &s.counters.inactive
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        s.clear_overload_after_unbind();
    }

    /// A persistence template is bound to `id`.
    pub fn bind_template(&self, id: RealServerId) {
        let s = self.server(id);
        s.counters.persistent.fetch_add(1, Ordering::Relaxed);
        s.set_overload_after_bind();
    }

    /// A persistence template bound to `id` expired.
    pub fn unbind_template(&self, id: RealServerId) {
        let s = self.server(id);
        s.counters.persistent.fetch_sub(1, Ordering::Relaxed);
        s.clear_overload_after_unbind();
    }

    /// Sets or clears OVERLOAD by hand (tests and simulations; the kernel
    /// only changes it through thresholds).
    pub fn set_overloaded(&self, id: RealServerId, overloaded: bool) {
        self.server(id)
            .counters
            .overloaded
            .store(overloaded, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn spec(last: u8, weight: u32) -> RealServerSpec {
        RealServerSpec::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), 80, weight)
    }

    #[test]
    fn newest_first_and_trash_revival_keeps_id_and_counters() {
        let mut l = ServerList::new();
        let a = l.add(&spec(1, 1)).unwrap();
        let b = l.add(&spec(2, 1)).unwrap();
        assert_eq!(l.order(), &[b, a]);
        l.bind_conn(a);
        l.conn_activity_changed(a, false, true);
        assert_eq!(l.remove(a).unwrap(), 1);
        assert!(!l.get(a).unwrap().is_available());
        let c = l.add(&spec(3, 1)).unwrap();
        assert_eq!(c, RealServerId(2));
        let a2 = l.add(&spec(1, 5)).unwrap();
        assert_eq!(a2, a);
        assert_eq!(l.order(), &[a, c, b]);
        assert_eq!(l.get(a).unwrap().active_conns(), 1);
        assert_eq!(l.get(a).unwrap().weight(), 5);
        assert!(matches!(
            l.add(&spec(1, 5)),
            Err(ServerError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn last_weight_remembers_the_latest_non_zero_weight() {
        let mut l = ServerList::new();
        let a = l.add(&spec(1, 7)).unwrap();
        l.edit(a, 0, 0, 0).unwrap();
        assert_eq!(l.get(a).unwrap().weight(), 0);
        assert_eq!(l.get(a).unwrap().last_weight(), 7);
        l.edit(a, 3, 0, 0).unwrap();
        assert_eq!(l.get(a).unwrap().last_weight(), 3);
        // Re-adding (revival) with weight 0 sets last_weight to 0.
        l.remove(a).unwrap();
        l.add(&spec(1, 0)).unwrap();
        assert_eq!(l.get(a).unwrap().last_weight(), 0);
    }

    #[test]
    fn thresholds_set_and_clear_overload_as_the_kernel_does() {
        let mut l = ServerList::new();
        let a = l
            .add(&RealServerSpec {
                u_threshold: 4,
                ..spec(1, 1)
            })
            .unwrap();
        for _ in 0..3 {
            l.bind_conn(a);
        }
        assert!(!l.get(a).unwrap().is_overloaded());
        l.bind_conn(a);
        assert!(l.get(a).unwrap().is_overloaded(), "4 >= u=4");
        // No lower threshold: clears when total*4 < u*3, i.e. total < 3.
        l.unbind_conn(a, false);
        assert!(l.get(a).unwrap().is_overloaded(), "3*4 = 12 is not < 12");
        l.unbind_conn(a, false);
        assert!(!l.get(a).unwrap().is_overloaded());
        // With a lower threshold: clears below l.
        l.edit(a, 1, 4, 1).unwrap();
        // Two connections are left from above: two more reach u=4.
        for _ in 0..2 {
            l.bind_conn(a);
        }
        assert!(l.get(a).unwrap().is_overloaded());
        for _ in 0..3 {
            l.unbind_conn(a, false);
        }
        assert!(l.get(a).unwrap().is_overloaded(), "1 is not < l=1");
        l.unbind_conn(a, false);
        assert!(!l.get(a).unwrap().is_overloaded(), "0 < 1");
        assert!(matches!(
            l.edit(a, 1, 0, 1),
            Err(ServerError::ThresholdRange { u: 0, l: 1 })
        ));
    }

    #[test]
    fn editing_clears_overload_only_when_the_upper_threshold_grows_or_goes() {
        let mut l = ServerList::new();
        let a = l.add(&spec(1, 1)).unwrap();
        l.edit(a, 1, 10, 0).unwrap();
        l.set_overloaded(a, true);
        l.edit(a, 1, 10, 0).unwrap();
        assert!(l.get(a).unwrap().is_overloaded(), "same threshold");
        l.edit(a, 1, 5, 0).unwrap();
        assert!(l.get(a).unwrap().is_overloaded(), "lower threshold");
        l.edit(a, 1, 6, 0).unwrap();
        assert!(!l.get(a).unwrap().is_overloaded(), "larger threshold");
        l.set_overloaded(a, true);
        l.edit(a, 1, 0, 0).unwrap();
        assert!(!l.get(a).unwrap().is_overloaded(), "threshold removed");
    }

    #[test]
    fn only_pre_established_and_established_tcp_states_are_active() {
        assert!(counts_as_active(IpProtocol::Tcp, TcpState::SynRecv));
        assert!(counts_as_active(IpProtocol::Tcp, TcpState::SynAck));
        assert!(counts_as_active(IpProtocol::Tcp, TcpState::Established));
        assert!(!counts_as_active(IpProtocol::Tcp, TcpState::FinWait));
        assert!(!counts_as_active(IpProtocol::Tcp, TcpState::TimeWait));
        assert!(!counts_as_active(IpProtocol::Udp, TcpState::Established));
    }
}
