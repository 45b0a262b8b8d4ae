//! The VRRP advert socket: a raw IP socket for protocol 112 on one
//! interface, for either family.
//!
//! # Contract
//! - **Bound to the advert interface** (`SO_BINDTODEVICE`): an advert
//!   received on another interface is never seen, and one sent never
//!   leaves by another route.
//! - **Hop limit 255 both ways out**: unicast and multicast TTL / hops are
//!   255, so that a receiver's check (RFC 9568 §7.1: TTL 255, the sender is
//!   on the link) passes. With `multicast`, the socket joins 224.0.0.18 /
//!   ff02::12 on the interface, sends there by it (`IP_MULTICAST_IF` /
//!   `IPV6_MULTICAST_IF`), and multicast loop is off: a director never
//!   hears its own adverts as if from a peer.
//! - **Whole datagrams in**: [`VrrpSocket::recv`] hands back what
//!   `xvs_packet::vrrp::receive` checks — over IPv4 the datagram as the
//!   kernel delivers it to a raw socket (header included), over IPv6 (where
//!   a raw socket gets the payload only) with a 40-byte header rebuilt from
//!   the source address, the destination (`IPV6_PKTINFO`) and the hop limit
//!   (`IPV6_HOPLIMIT`). The kernel neither computes nor checks the VRRP
//!   checksum (no `IPV6_CHECKSUM`): the caller does both, so that a bad one
//!   is counted as a refusal rather than vanishing.
//! - **The sender's address is the caller's**: each send carries it in
//!   `IP_PKTINFO` / `IPV6_PKTINFO` (the kernel writes the IP header from it
//!   and refuses an address the host does not hold).
//! - Adverts leave with the Internetwork Control precedence (TOS / traffic
//!   class 0xc0), as keepalived's do.
//!
//! Every system call returns the kernel's errno as `io::Error`; the caller
//! (the HA part) says which interface and what to do.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use xvs_packet::ip::IpProtocol;
use xvs_packet::ipv6;
use xvs_packet::vrrp::{self, Family};

use super::packet_sys::{self, set_option};

/// IP protocol number of VRRP.
const IPPROTO_VRRP: libc::c_int = 112;

/// TTL / hop limit of every advert (RFC 9568 §5.1.1.3).
const HOP_LIMIT: libc::c_int = vrrp::TTL as libc::c_int;

/// IP precedence "Internetwork Control", keepalived's TOS for adverts.
const TOS_INTERNETWORK_CONTROL: libc::c_int = 0xc0;

/// Room for the control messages of one datagram (an `in6_pktinfo` and a
/// hop limit, with their headers), aligned as `cmsghdr` wants.
#[repr(C, align(8))]
struct Control([u8; 128]);

impl Control {
    const fn new() -> Self {
        Self([0; 128])
    }
}

/// A raw IP socket for VRRP adverts on one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: OwnedFd,
    family: Family,
    ifindex: u32,
}

impl VrrpSocket {
    /// A raw IP socket for protocol 112 bound to `ifname` (SO_BINDTODEVICE);
    /// with `multicast`, joined to 224.0.0.18 / ff02::12 on `ifindex`,
    /// multicast loop off, multicast TTL / hops 255 and IP_MULTICAST_IF /
    /// IPV6_MULTICAST_IF set; unicast TTL / hops 255 either way.
    /// IPv6: IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO on (no IPV6_CHECKSUM:
    /// the caller computes and checks the checksum, so that a bad one is
    /// counted rather than dropped by the kernel).
    ///
    /// # Errors
    /// The kernel refused the socket (not root: `EPERM`) or an option (no
    /// such interface: `ENODEV`); a name longer than 15 bytes is
    /// `InvalidInput`.
    pub fn open(family: Family, ifname: &str, ifindex: u32, multicast: bool) -> io::Result<Self> {
        let domain = match family {
            Family::V4 => libc::AF_INET,
            Family::V6 => libc::AF_INET6,
        };
        let socket = Self {
            fd: raw_socket(domain, IPPROTO_VRRP)?,
            family,
            ifindex,
        };
        let fd = socket.fd.as_fd();
        bind_to_device(fd, ifname)?;
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match family {
            Family::V4 => {
                let (on, off): (libc::c_int, libc::c_int) = (1, 0);
                set_option(fd, libc::IPPROTO_IP, libc::IP_TTL, &HOP_LIMIT)?;
                set_option(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_TOS,
                    &TOS_INTERNETWORK_CONTROL,
                )?;
                set_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, &on)?;
                if multicast {
                    let group = libc::ip_mreqn {
                        imr_multiaddr: in_addr(vrrp::MULTICAST_V4),
                        imr_address: in_addr(Ipv4Addr::UNSPECIFIED),
                        imr_ifindex: index,
                    };
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &group)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &HOP_LIMIT)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &off)?;
                    set_option(fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &group)?;
                }
            }
            Family::V6 => {
                let on: libc::c_int = 1;
                set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &HOP_LIMIT)?;
                set_option(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_TCLASS,
                    &TOS_INTERNETWORK_CONTROL,
                )?;
                set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &on)?;
                set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &on)?;
                if multicast {
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &index)?;
                    set_option(
                        fd,
                        libc::IPPROTO_IPV6,
                        libc::IPV6_MULTICAST_HOPS,
                        &HOP_LIMIT,
                    )?;
                    let off: libc::c_int = 0;
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &off)?;
                    let group = libc::ipv6_mreq {
                        ipv6mr_multiaddr: in6_addr(vrrp::MULTICAST_V6),
                        ipv6mr_interface: ifindex,
                    };
                    set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &group)?;
                }
            }
        }
        Ok(socket)
    }

    /// The family of the adverts this socket carries.
    #[must_use]
    pub const fn family(&self) -> Family {
        self.family
    }

    /// Sends the VRRP message `message` (no IP header; checksum already
    /// right) from `src` to `dst` (IPv4: IP_PKTINFO or a bind to `src` so
    /// the kernel's header carries it; IPv6: IPV6_PKTINFO).
    ///
    /// # Errors
    /// An address of the other family (`InvalidInput`), a source the host
    /// does not hold (`EINVAL` / `EADDRNOTAVAIL`), the link down
    /// (`ENETDOWN`), a full send queue (`EAGAIN` / `ENOBUFS`), a short send.
    pub fn send(&self, src: IpAddr, dst: IpAddr, message: &[u8]) -> io::Result<()> {
        let mut control = Control::new();
        let sent = match (self.family, src, dst) {
            (Family::V4, IpAddr::V4(src), IpAddr::V4(dst)) => {
                // SAFETY: sockaddr_in is plain data; all-zero is valid.
                let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                to.sin_family = libc::AF_INET as libc::sa_family_t;
                to.sin_addr = in_addr(dst);
                let info = libc::in_pktinfo {
                    ipi_ifindex: libc::c_int::try_from(self.ifindex).unwrap_or(0),
                    ipi_spec_dst: in_addr(src),
                    ipi_addr: in_addr(Ipv4Addr::UNSPECIFIED),
                };
                send_with_info(
                    self.fd.as_fd(),
                    &to,
                    message,
                    &mut control,
                    (libc::IPPROTO_IP, libc::IP_PKTINFO, &info),
                )?
            }
            (Family::V6, IpAddr::V6(src), IpAddr::V6(dst)) => {
                // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
                let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                to.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                to.sin6_addr = in6_addr(dst);
                // Used by the kernel only for a destination that needs a
                // scope (link-local, ff02::12).
                to.sin6_scope_id = self.ifindex;
                let info = libc::in6_pktinfo {
                    ipi6_addr: in6_addr(src),
                    ipi6_ifindex: self.ifindex,
                };
                send_with_info(
                    self.fd.as_fd(),
                    &to,
                    message,
                    &mut control,
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info),
                )?
            }
            _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", message.len()),
            ))
        }
    }

    /// Waits up to `timeout` for one datagram and writes it into `buf` as a
    /// WHOLE IP datagram, so that `xvs_packet::vrrp::receive` can check it:
    /// IPv4 as the kernel delivers it (header included); IPv6 with a 40-byte
    /// header rebuilt from the source address, the destination
    /// (IPV6_PKTINFO) and the hop limit (IPV6_HOPLIMIT). Ok(None) on
    /// timeout, EINTR or EAGAIN. Returns the datagram's length in `buf` and
    /// the receiving interface's index.
    ///
    /// A datagram longer than `buf` is cut to it (and then refused by
    /// `vrrp::receive` as truncated); over IPv6, a hop limit or destination
    /// the kernel did not report is written as 0 / `::`, which
    /// `vrrp::receive` refuses too.
    ///
    /// # Errors
    /// `poll()` or `recvmsg()` failed for another reason; over IPv6 a `buf`
    /// shorter than the 40-byte header (`InvalidInput`).
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<(usize, u32)>> {
        if self.family == Family::V6 && buf.len() < ipv6::HEADER_LEN {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // Rounded up: a timer due in 0.4 ms must not become a busy loop.
        let ms = timeout.as_micros().div_ceil(1000);
        match packet_sys::poll(&mut fds, i32::try_from(ms).unwrap_or(i32::MAX)) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut control = Control::new();
        let received = match self.family {
            Family::V4 => {
                // SAFETY: sockaddr_in is plain data; all-zero is valid.
                let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                recv_with_info(self.fd.as_fd(), &mut from, buf, &mut control)
            }
            Family::V6 => {
                // SAFETY: sockaddr_in6 is plain data; all-zero is valid.
                let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                let (header, payload) = buf.split_at_mut(ipv6::HEADER_LEN);
                recv_with_info(self.fd.as_fd(), &mut from, payload, &mut control).map(|got| {
                    got.map(|(len, info)| {
                        let mut ip = ipv6::Packet::new_unchecked(header);
                        ip.set_version_tc_flow(0, 0);
                        ip.set_payload_len(len as u16);
                        ip.set_next_header(IpProtocol::Vrrp);
                        ip.set_hop_limit(info.hop_limit.unwrap_or(0));
                        ip.set_src_addr(&Ipv6Addr::from(from.sin6_addr.s6_addr));
                        ip.set_dst_addr(&info.dst.unwrap_or(Ipv6Addr::UNSPECIFIED));
                        (ipv6::HEADER_LEN + len, info)
                    })
                })
            }
        };
        match received {
            Ok(Some((len, info))) => Ok(Some((len, info.ifindex.unwrap_or(self.ifindex)))),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the control messages of one received datagram said.
#[derive(Debug, Default)]
struct ReceivedInfo {
    ifindex: Option<u32>,
    dst: Option<Ipv6Addr>,
    hop_limit: Option<u8>,
}

/// An `in_addr` holding `addr`.
fn in_addr(addr: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(addr.octets()),
    }
}

/// An `in6_addr` holding `addr`.
fn in6_addr(addr: Ipv6Addr) -> libc::in6_addr {
    libc::in6_addr {
        s6_addr: addr.octets(),
    }
}

/// A raw IP socket of `domain` for `protocol`, non-blocking.
fn raw_socket(domain: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; a non-negative return is a fresh
    // descriptor that nothing else owns.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SO_BINDTODEVICE`: the socket sends and receives on `ifname` only.
pub(crate) fn bind_to_device(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<()> {
    let mut name = [0u8; libc::IFNAMSIZ];
    // The last byte stays NUL: names are at most IFNAMSIZ - 1 bytes.
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    set_option(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &name)
}

/// `sendmsg()` of `message` to `to` with one control message
/// `(level, kind, value)`; returns the bytes sent.
fn send_with_info<A: Copy, I: Copy>(
    fd: BorrowedFd<'_>,
    to: &A,
    message: &[u8],
    control: &mut Control,
    (level, kind, value): (libc::c_int, libc::c_int, &I),
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: message.as_ptr().cast_mut().cast(),
        iov_len: message.len(),
    };
    // SAFETY: CMSG_SPACE only computes a length.
    let space = unsafe { libc::CMSG_SPACE(size_of::<I>() as libc::c_uint) } as usize;
    if space > control.0.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: msghdr is plain data; all-zero is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_ref(to).cast_mut().cast();
    msg.msg_namelen = size_of::<A>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `msg` points at `control`, which holds at least `space` bytes
    // (checked), so the first header is in it and non-null.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    if cmsg.is_null() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `cmsg` points into `control`, 8-aligned, with room for the
    // header and CMSG_LEN(size_of::<I>()) bytes (space ≥ that, checked);
    // CMSG_DATA points inside that room, possibly unaligned for `I`.
    unsafe {
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<I>() as libc::c_uint) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<I>(), *value);
    }
    // SAFETY: every pointer in `msg` (name, iovec, control) points at a
    // live local or borrowed buffer of the length given; the kernel only
    // reads them.
    let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &raw const msg, libc::MSG_DONTWAIT) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// `recvmsg()` of one datagram into `buf` (sender into `from`), and what
/// its control messages said; `None` when nothing was waiting or a signal
/// came.
fn recv_with_info<A: Copy>(
    fd: BorrowedFd<'_>,
    from: &mut A,
    buf: &mut [u8],
    control: &mut Control,
) -> io::Result<Option<(usize, ReceivedInfo)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(from).cast();
    msg.msg_namelen = size_of::<A>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: every pointer in `msg` points at a live, exclusively borrowed
    // buffer of the length given; the kernel writes at most that much into
    // each and updates the lengths in `msg`.
    let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    let len = (rc as usize).min(buf.len());
    let mut info = ReceivedInfo::default();
    // SAFETY: `msg` was filled by recvmsg: msg_control / msg_controllen
    // describe the control messages the kernel wrote into `control`, and
    // CMSG_FIRSTHDR / CMSG_NXTHDR stay within them (null at the end).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and was returned by CMSG_FIRSTHDR or
        // CMSG_NXTHDR over this `msg`, so its header lies inside `control`
        // and its data holds cmsg_len - CMSG_LEN(0) bytes; each read is
        // unaligned and only of a type whose length the kernel wrote for
        // that level and type.
        unsafe {
            let header = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            match (header.cmsg_level, header.cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let pkt = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    info.ifindex = u32::try_from(pkt.ipi_ifindex).ok();
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let pkt = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                    info.ifindex = Some(pkt.ipi6_ifindex);
                    info.dst = Some(Ipv6Addr::from(pkt.ipi6_addr.s6_addr));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    let hops = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                    info.hop_limit = u8::try_from(hops).ok();
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok(Some((len, info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_name_must_fit_ifnamsiz() {
        // Checked before the kernel is asked: any descriptor will do.
        let fd = std::fs::File::open("/dev/null").unwrap();
        for bad in ["", "a-name-of-16-byt", "nul\0inside"] {
            let err = bind_to_device(fd.as_fd(), bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_in_network_order() {
        let a = in_addr(Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(a.s_addr.to_ne_bytes(), [224, 0, 0, 18]);
        assert_eq!(in6_addr(vrrp::MULTICAST_V6).s6_addr[15], 0x12);
    }
}
