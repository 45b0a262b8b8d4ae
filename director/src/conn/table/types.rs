//! The table's public vocabulary: handles, hashes, what an insert takes
//! and what a lookup returns.

use super::*;

/// A live connection's slot and incarnation: what a worker keeps after a
/// lookup to update the same connection. Stale handles (the connection
/// expired and its slot was reused) are refused with [`Gone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnHandle {
    pub(super) index: u32,
    pub(super) gen_: u16,
}

impl ConnHandle {
    /// The entry number (stable for the connection's life; useful for
    /// per-connection side tables of the same capacity).
    #[must_use]
    pub const fn index(self) -> u32 {
        self.index
    }
}

/// A connection handle no longer names a live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection expired or was removed")]
pub struct Gone;

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Every entry is in use. Nothing is evicted (see the module docs for
    /// what the pipeline does instead).
    #[error("connection table full: the new connection is forwarded without an entry")]
    Full,
}

/// Where a client's flow key lands in the inbound index
/// ([`ConnTable::inbound_hash`]): computed once per packet and handed to
/// the lookup, the warm-up and the insert that follow, which would each
/// compute it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboundHash(pub(super) u64);

/// [`InboundHash`] for the reply index ([`ConnTable::reply_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyHash(pub(super) u64);

/// A connection inserted with its reply-index link left for later
/// ([`ConnTable::open_hashed`] with `defer_reply`): what
/// [`ConnTable::finish_replies`] needs to add it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingReply {
    pub(super) handle: ConnHandle,
    pub(super) hash: u64,
}

/// The first packet of a new connection, applied as it is inserted
/// ([`ConnTable::open`]).
#[derive(Debug, Clone, Copy)]
pub enum FirstPacket<'t> {
    /// A client's TCP segment: the state machine runs from NONE and the
    /// timer is the new state's timeout in `Timeouts`.
    Tcp(TcpEvent, &'t Timeouts),
    /// A packet of a protocol without states (UDP, ICMP): the timer.
    Other {
        /// Milliseconds until the connection expires.
        timeout: Millis,
    },
}

/// The flags a new entry starts with: a template is a template; a
/// connection whose replies bypass the director has seen no output yet.
pub(super) fn initial_flags(conn: &NewConnection) -> ConnFlags {
    if conn.template {
        ConnFlags::TEMPLATE
    } else if !conn.method.sees_replies() {
        ConnFlags::NO_OUTPUT
    } else {
        ConnFlags::EMPTY
    }
}

/// What a new connection is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewConnection {
    /// Transport protocol.
    pub proto: IpProtocol,
    /// The client's address (a masked network for a template).
    pub client: IpAddr,
    /// The client's port (0 for a template; the echo id for ICMP).
    pub cport: u16,
    /// The virtual address.
    pub vip: IpAddr,
    /// The virtual port (the packet's destination port for port-0 services).
    pub vport: u16,
    /// The real server's address.
    pub real_server: IpAddr,
    /// The real server's port.
    pub rport: u16,
    /// The real server's id in its service (`xvs_sched::RealServerId`).
    pub server_id: u32,
    /// How packets reach the real server.
    pub method: ForwardMethod,
    /// A persistence template rather than a connection.
    pub template: bool,
}

/// A copy of one connection, taken at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Names this connection for updates.
    pub handle: ConnHandle,
    /// Transport protocol.
    pub proto: IpProtocol,
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub real_server: IpAddr,
    /// Real server port.
    pub rport: u16,
    /// Real server id.
    pub server_id: u32,
    /// Forwarding method, decided when the connection was created.
    pub method: ForwardMethod,
    /// TCP state (NONE for UDP and ICMP).
    pub tcp_state: TcpState,
    /// Flags.
    pub flags: ConnFlags,
    /// When the connection expires unless a packet re-arms it.
    pub deadline: Millis,
}

impl Connection {
    /// Counted in `activeconns`.
    #[must_use]
    pub const fn is_active(&self) -> bool {
        self.flags.contains(ConnFlags::ACTIVE)
    }

    /// A persistence template.
    #[must_use]
    pub const fn is_template(&self) -> bool {
        self.flags.contains(ConnFlags::TEMPLATE)
    }

    /// Copied from the peer director and not bound to its real server yet
    /// ([`ConnFlags::SYNCED`]).
    #[must_use]
    pub const fn is_synced(&self) -> bool {
        self.flags.contains(ConnFlags::SYNCED)
    }
}
