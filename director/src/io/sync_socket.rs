//! The connection-state sync's UDP socket (`[sync]`), for either family.
//!
//! # Contract
//! - **Bound to the sync interface** (`SO_BINDTODEVICE`) and to the sync
//!   port: a message that arrives by another interface is never seen, and
//!   one sent never leaves by another route.
//! - **Multicast** (no peer given, IPVS's way): the socket joins the group
//!   on the interface, sends there by it (`IP_MULTICAST_IF` /
//!   `IPV6_MULTICAST_IF`) with the configured TTL / hop limit, and
//!   multicast loop is off: a director never hears its own messages.
//! - **Unicast** (one peer): bound to the source address when one is given,
//!   messages go to the peer's address and port.
//! - [`SyncSocket::recv`] waits at most the time it is given and hands back
//!   the datagram with its sender; nothing is checked here: the caller
//!   checks the message (`xvs_packet::sync::Packet::new_checked`), its
//!   syncid and its tag.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use super::packet_sys::set_option;
use super::vrrp_socket::bind_to_device;

/// The socket's receive and send buffers, bytes.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// How the socket reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTarget {
    /// To this multicast group, joined on the interface.
    Group(IpAddr),
    /// To this one peer.
    Peer(IpAddr),
}

/// The sync socket.
#[derive(Debug)]
pub struct SyncSocket {
    socket: UdpSocket,
    to: SocketAddr,
}

impl SyncSocket {
    /// A UDP socket on `port`, bound to interface `ifname` (`ifindex`),
    /// sending to `target` from `source` (unicast) with `ttl` (multicast).
    ///
    /// # Errors
    /// The kernel refused the socket or an option: the port in use
    /// (`EADDRINUSE`), no such interface (`ENODEV`), an address the host
    /// does not hold (`EADDRNOTAVAIL`).
    pub fn open(
        ifname: &str,
        ifindex: u32,
        target: SyncTarget,
        source: Option<IpAddr>,
        port: u16,
        ttl: u8,
    ) -> io::Result<Self> {
        let dest = match target {
            SyncTarget::Group(a) | SyncTarget::Peer(a) => a,
        };
        let any = match dest {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let bind = match target {
            SyncTarget::Group(_) => any,
            SyncTarget::Peer(_) => source.unwrap_or(any),
        };
        let socket = UdpSocket::bind(SocketAddr::new(bind, port))?;
        let fd = socket.as_fd();
        bind_to_device(fd, ifname)?;
        // Room for a transfer's bursts (the kernel's default of ~200 KiB
        // holds ~140 messages): past `rmem_max` as root, else as large as
        // the sysctl allows; a smaller buffer only means more repairs.
        let room: libc::c_int = SOCKET_BUFFER;
        if set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &room).is_err() {
            let _ = set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &room);
        }
        if set_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &room).is_err() {
            let _ = set_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &room);
        }
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if let SyncTarget::Group(group) = target {
            let hops = libc::c_int::from(ttl);
            let off: libc::c_int = 0;
            match group {
                IpAddr::V4(g) => {
                    let mreq = libc::ip_mreqn {
                        imr_multiaddr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(g.octets()),
                        },
                        imr_address: libc::in_addr {
                            s_addr: u32::from_ne_bytes(
                                source
                                    .and_then(|s| match s {
                                        IpAddr::V4(a) => Some(a),
                                        IpAddr::V6(_) => None,
                                    })
                                    .unwrap_or(Ipv4Addr::UNSPECIFIED)
                                    .octets(),
                            ),
                        },
                        imr_ifindex: index,
                    };
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &hops)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &off)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
                }
                IpAddr::V6(g) => {
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &index)?;
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &hops)?;
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &off)?;
                    let mreq = libc::ipv6_mreq {
                        ipv6mr_multiaddr: libc::in6_addr {
                            s6_addr: g.octets(),
                        },
                        ipv6mr_interface: ifindex,
                    };
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)?;
                }
            }
        }
        Ok(Self {
            socket,
            to: SocketAddr::new(dest, port),
        })
    }

    /// Sends one message to the peer (or the group).
    ///
    /// # Errors
    /// The kernel's: no route, a full socket buffer (`EAGAIN` is not
    /// waited on: the reliability layer resends).
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        self.socket.send_to(message, self.to).map(|_| ())
    }

    /// The next datagram and its sender, waiting at most `wait`; `None`
    /// when none came.
    ///
    /// # Errors
    /// The kernel's, other than a timeout or an interruption.
    pub fn recv(&self, buf: &mut [u8], wait: Duration) -> io::Result<Option<(usize, SocketAddr)>> {
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match self.socket.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Where messages go.
    #[must_use]
    pub const fn destination(&self) -> SocketAddr {
        self.to
    }
}
