//! Connections: IPVS's per-protocol state machine ([`state`]), the
//! concurrent connection table the workers share ([`table`]) and the
//! events they report to the state sync while it is on ([`feed`]).
//!
//! The forwarding method is decided once, when a connection is created, and
//! stored with it (STYLE.md: the hot path never re-derives it).

pub mod feed;
pub mod state;
pub mod table;

pub use feed::{ConnEvent, ConnEventKind, ConnFeed};
pub use state::{
    ActivityChange, Millis, PacketDirection, ProtoState, TcpDirection, TcpEvent, TcpState,
    Timeouts, Transition, counts_as_active, tcp_next_state, tcp_transition,
};
pub use table::{
    ConnFlags, ConnHandle, ConnTable, Connection, FirstPacket, InboundHash, InsertError,
    NewConnection, PendingReply, ReplyHash,
};

/// How a real server is reached: one type for the whole workspace, in
/// `xvs-proto` (its `code`/`from_code` are what a connection entry stores).
pub use xvs_proto::ForwardMethod;
