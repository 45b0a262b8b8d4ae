//! Primary and backup directors (issue #17): VRRP version 3 between them.
//!
//! Built so far: the election itself, pure ([`machine`]): state, event and
//! the caller's clock in, the new state and a list of actions out. The
//! adverts on the wire are `xvs_packet::vrrp`. Not built yet: the daemon
//! part that owns the sockets and timers, moves the addresses and runs the
//! hooks, and the `[ha]` section of the config.

pub mod machine;
