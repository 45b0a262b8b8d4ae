//! Primary and backup directors (issue #17): VRRP version 3 between them.
//!
//! The election itself is pure ([`machine`]): state, event and the
//! caller's clock in, the new state and a list of actions out. A
//! [`router::Router`] feeds it the adverts this director hears (checked and
//! authenticated first) and carries its actions out on a
//! [`router::Wire`]: adverts sent, addresses added, announced and removed,
//! notify hooks run. The daemon part (`daemon::ha`) owns the thread, the
//! sockets, the clock and the faults. The adverts on the wire are
//! `xvs_packet::vrrp`; `[ha]` in the config is [`crate::config::HaConfig`].

pub mod machine;
pub mod router;
