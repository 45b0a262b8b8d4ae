//! What the live director learns from the kernel over rtnetlink: each
//! configured interface's index, MAC, MTU, addresses and default gateways
//! at start ([`discover`]), and the neighbour table, followed live
//! ([`NeighbourWatcher`]); and what the HA part asks of it ([`addresses`]):
//! adding and removing the addresses that move with the master, the
//! advert interface's link-local address, whether its link is up.
//!
//! # Contract
//! - **Blocking sockets, no async runtime**: `netlink-sys` sockets with a
//!   receive timeout, messages built and parsed by `netlink-packet-route`.
//!   A netlink socket belongs to the network namespace of the thread that
//!   creates it: call [`discover`] and [`NeighbourWatcher::spawn`] from a
//!   thread in the director's namespace.
//! - **The config wins**: what the config writes (`mac`, `mtu`,
//!   `addresses`, `gateways`) is kept; only what it leaves out is filled
//!   from the kernel. [`KernelInterface`] reports both, for the start-up log.
//! - **Neighbours are followed live**: a dump at start, then every
//!   RTM_NEWNEIGH / RTM_DELNEIGH notification for the watched interfaces.
//!   An entry with a link-layer address in REACHABLE, STALE, DELAY, PROBE,
//!   PERMANENT or NOARP is usable (the kernel keeps a STALE MAC until it
//!   proves wrong, and so do we); FAILED, INCOMPLETE or a deletion removes
//!   it. Next hops the workers miss are resolved by the kernel on request
//!   (RTM_NEWNEIGH with NTF_USE: the kernel sends ARP / neighbour
//!   solicitations as if it had a packet for that address), at most once a
//!   second per address.
//! - **Routes and addresses are read once**: a route or address change
//!   after start is not followed by the data plane (a restart picks it
//!   up); the HA part's addresses are its own business ([`addresses`]).
//!   Gateways are the main table's default routes through the interface,
//!   one per family (the lowest metric); a default route without a
//!   gateway (`default dev eth0`) gives none.
//! - **Receive queues come from sysfs** ([`rx_queue_count`]): netlink
//!   only knows how many the driver allocated, not how many are in use.
//! - **Kernel input never panics**: a message that does not parse is
//!   skipped and counted; nothing is logged per packet or per message.

pub mod addresses;
mod discover;
mod queues;
mod socket;
mod watcher;

use std::io;
use std::net::IpAddr;

use netlink_packet_route::AddressFamily;

pub use addresses::{add_address, has_address, link_is_up, link_local, remove_address};
pub use discover::{FromKernel, KernelInterface, discover};
pub use queues::rx_queue_count;
pub use watcher::{NeighbourWatcher, WatcherCounters};

/// Why the kernel could not be asked, or did not answer as needed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No netlink socket (not Linux, or a sandbox without netlink).
    #[error(
        "cannot open a netlink socket to the kernel: {source}: the live director needs Linux rtnetlink (run it outside restrictive sandboxes)"
    )]
    Socket {
        /// Why.
        source: io::Error,
    },
    /// A request or dump failed.
    #[error("cannot read {what} from the kernel: {source}")]
    Netlink {
        /// What was asked (`the interfaces`, `the routes`…).
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A configured interface the kernel does not have.
    #[error("interface \"{name}\" does not exist: check the name with \"ip link\"")]
    NoSuchInterface {
        /// The configured name.
        name: String,
    },
    /// An interface without an Ethernet (6-byte) hardware address.
    #[error(
        "interface \"{name}\" has no Ethernet address: the director sends Ethernet frames; use an Ethernet or veth interface, or write its \"mac\" in the config"
    )]
    NotEthernet {
        /// The interface.
        name: String,
    },
    /// An interface's receive queues could not be counted.
    #[error(
        "cannot count the receive queues of interface \"{name}\": {reason}; or give their number with --queues N"
    )]
    RxQueues {
        /// The interface.
        name: String,
        /// What went wrong, and where.
        reason: String,
    },
    /// The watcher thread could not be started.
    #[error("cannot start the neighbour watcher thread: {source}")]
    Thread {
        /// Why.
        source: io::Error,
    },
}

/// The netlink address family of `ip`.
pub(crate) fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}
