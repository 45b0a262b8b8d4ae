//! Connections: IPVS's per-protocol state machine ([`state`]) and the
//! concurrent connection table the workers share ([`table`]).
//!
//! The forwarding method is decided once, when a connection is created, and
//! stored with it (STYLE.md: the hot path never re-derives it).

pub mod state;
pub mod table;

pub use state::{
    ActivityChange, Millis, PacketDirection, ProtoState, TcpDirection, TcpEvent, TcpState,
    Timeouts, Transition, counts_as_active, tcp_next_state, tcp_transition,
};
pub use table::{
    ConnFlags, ConnHandle, ConnTable, Connection, FirstPacket, InboundHash, InsertError,
    NewConnection, PendingReply, ReplyHash,
};

/// How a real server is reached (ipvsadm's `-m`, `-g`, `-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardMethod {
    /// VS/NAT (`-m`, "Masq"): destination rewritten to the real server,
    /// replies come back through the director and are rewritten to the VIP.
    Nat,
    /// VS/DR (`-g`, "Route", ipvsadm's default): only the destination MAC
    /// changes; the real server answers the client directly.
    DirectRouting,
    /// VS/TUN (`-i`, "Tunnel"): IP-in-IP to the real server, which answers
    /// the client directly.
    Tunnel,
}

impl ForwardMethod {
    /// The compact code stored in a connection entry.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Nat => 0,
            Self::DirectRouting => 1,
            Self::Tunnel => 2,
        }
    }

    /// The method with this code (codes out of range read as NAT; entries
    /// only ever hold codes written by [`ForwardMethod::code`]).
    #[must_use]
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::DirectRouting,
            2 => Self::Tunnel,
            _ => Self::Nat,
        }
    }

    /// Whether the director sees the real server's replies (only NAT): the
    /// others start with NO_OUTPUT and use the INPUT_ONLY TCP table.
    #[must_use]
    pub const fn sees_replies(self) -> bool {
        matches!(self, Self::Nat)
    }

    /// The word `ipvsadm -L` prints: `Masq`, `Route`, `Tunnel`.
    #[must_use]
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            Self::Nat => "Masq",
            Self::DirectRouting => "Route",
            Self::Tunnel => "Tunnel",
        }
    }
}

impl core::fmt::Display for ForwardMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.ipvsadm_name())
    }
}
