//! In-place rewrites for VS/NAT and VS/DR, and the TTL decrement that NAT
//! forwarding needs. Each updates every checksum it touches incrementally
//! (RFC 1624): the IPv4 header checksum, the TCP/UDP checksum through its
//! pseudo-header, and the ICMPv6 checksum (which also covers a
//! pseudo-header); ICMPv4's checksum covers no addresses and is left alone.
//!
//! All functions take the [`IpFrame`] that [`crate::parse()`] returned for the
//! same bytes; its offsets are trusted, so they must not be mixed up between
//! frames. After a rewrite the `IpFrame`'s flow key describes the old packet.
//!
//! Fragments: a later fragment carries no transport header, so only its IP
//! addresses change; the transport checksum (in the first fragment) is
//! updated there, and covers the addresses of every fragment alike.
//!
//! ICMP echo keeps its identifier through NAT (`port` is ignored for ICMP):
//! the identifier plays the client's port, and the client's side never
//! changes.

use core::net::IpAddr;

use crate::checksum;
use crate::ethernet::{self, MacAddr};
use crate::flow::FlowOrigin;
use crate::ip::IpProtocol;
use crate::ipv4;
use crate::ipv6;
use crate::parse::{Fragment, IpFrame, IpVersion};
use crate::{icmp, tcp, udp};

/// Why a rewrite was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// The new address is of the other IP family (IPVS cannot NAT across
    /// families either).
    FamilyMismatch,
    /// TTL or hop limit would reach 0: the packet must not be forwarded.
    TtlExpired,
    /// Not enough headroom in front of the frame for an outer header.
    NoHeadroom,
    /// The output buffer is too small for what must be written.
    BufferTooSmall,
    /// The frame is not of the kind this rewrite needs (e.g. not an ICMP error).
    WrongKind,
}

impl core::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::FamilyMismatch => "the new address is of the other IP family",
            Self::TtlExpired => "TTL or hop limit exhausted",
            Self::NoHeadroom => "no headroom in front of the frame for an outer header",
            Self::BufferTooSmall => "output buffer too small",
            Self::WrongKind => "the frame is not of the kind this rewrite needs",
        })
    }
}

/// Which end of a packet a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

impl Endpoint {
    /// The other end.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::Source => Self::Destination,
            Self::Destination => Self::Source,
        }
    }

    /// Offset of this end's address in an IPv4 or IPv6 header.
    pub(crate) fn addr_offset(self, version: IpVersion) -> usize {
        match (self, version) {
            (Self::Source, IpVersion::V4) => ipv4::SRC_ADDR_OFFSET,
            (Self::Destination, IpVersion::V4) => ipv4::DST_ADDR_OFFSET,
            (Self::Source, IpVersion::V6) => ipv6::SRC_ADDR_OFFSET,
            (Self::Destination, IpVersion::V6) => ipv6::DST_ADDR_OFFSET,
        }
    }

    /// Offset of this end's port in a TCP or UDP header.
    fn port_offset(self) -> usize {
        match self {
            Self::Source => 0,
            Self::Destination => 2,
        }
    }
}

/// VS/NAT inbound: the destination (VIP:port) becomes the real server's
/// address and port.
#[inline]
pub fn nat_inbound(
    frame: &mut [u8],
    ip: &IpFrame,
    rs: IpAddr,
    rs_port: u16,
) -> Result<(), RewriteError> {
    rewrite_endpoint(frame, ip, Endpoint::Destination, rs, rs_port)
}

/// VS/NAT outbound: the source (real server) of a reply becomes the VIP and
/// virtual port.
#[inline]
pub fn nat_outbound(
    frame: &mut [u8],
    ip: &IpFrame,
    vip: IpAddr,
    vport: u16,
) -> Result<(), RewriteError> {
    rewrite_endpoint(frame, ip, Endpoint::Source, vip, vport)
}

/// Sets one end's address and port, updating every checksum that covers them.
///
/// An ICMP error is refused ([`RewriteError::WrongKind`]): its flow key
/// names the quoted packet, and its rewrite is [`crate::icmp_error`]'s.
#[inline]
pub fn rewrite_endpoint(
    frame: &mut [u8],
    ip: &IpFrame,
    end: Endpoint,
    addr: IpAddr,
    port: u16,
) -> Result<(), RewriteError> {
    if ip.origin == FlowOrigin::IcmpError {
        return Err(RewriteError::WrongKind);
    }
    if let (IpAddr::V4(new), IpVersion::V4) = (addr, ip.version)
        && rewrite_v4_ports(frame, ip, end, new, port)
    {
        return Ok(());
    }
    rewrite_endpoint_any(frame, ip, end, addr, port)
}

/// The common case of [`rewrite_endpoint`]: IPv4 carrying a TCP or UDP
/// header. Returns false, having written nothing, for any other frame (or
/// one whose offsets do not fit the buffer), which then takes the general
/// path.
///
/// Both headers are borrowed once as fixed-size arrays, so no access below
/// needs a bounds check, and each checksum is updated with one fold over all
/// the words that changed ([`checksum::apply_unfolded`]) rather than a fold
/// per word: the same results as the general path, in about half the
/// instructions. Inlined into the caller, which saves a call and the saving
/// of registers that cost as much as the checks.
#[inline(always)]
fn rewrite_v4_ports(
    frame: &mut [u8],
    ip: &IpFrame,
    end: Endpoint,
    new: core::net::Ipv4Addr,
    port: u16,
) -> bool {
    let csum_at = match ip.flow.proto {
        IpProtocol::Tcp => tcp::CHECKSUM_OFFSET,
        IpProtocol::Udp => udp::CHECKSUM_OFFSET,
        _ => return false,
    };
    if ip.fragment == Fragment::Later {
        return false;
    }
    let Some((head, transport)) = frame.split_at_mut_checked(ip.l4_offset) else {
        return false;
    };
    let Some(header) = head
        .get_mut(ip.l3_offset..)
        .and_then(<[u8]>::first_chunk_mut::<{ ipv4::HEADER_LEN }>)
    else {
        return false;
    };
    let Some((ports, rest)) = transport.split_first_chunk_mut::<4>() else {
        return false;
    };
    let Some(l4_check) = rest
        .get_mut(csum_at - ports.len()..)
        .and_then(<[u8]>::first_chunk_mut::<2>)
    else {
        return false;
    };
    let (addr_at, port_at) = match end {
        Endpoint::Source => (ipv4::SRC_ADDR_OFFSET, 0),
        Endpoint::Destination => (ipv4::DST_ADDR_OFFSET, 2),
    };
    // Words are read and checksums stored in the machine's byte order: the
    // same bytes result, without byte swaps (see `checksum::apply_unfolded`).
    let addr = &mut header[addr_at..addr_at + 4];
    let old_addr = u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]);
    let new_addr = new.octets();
    addr.copy_from_slice(&new_addr);
    // `~m + m'` for the address, 32 bits at once (`!` complements both halves).
    let addr_delta = u64::from(!old_addr) + u64::from(u32::from_ne_bytes(new_addr));
    let ip_check = &mut header[ipv4::CHECKSUM_OFFSET..ipv4::CHECKSUM_OFFSET + 2];
    let old_ip_check = u16::from_ne_bytes([ip_check[0], ip_check[1]]);
    ip_check.copy_from_slice(&checksum::apply_unfolded(old_ip_check, addr_delta).to_ne_bytes());
    let old_port = u16::from_ne_bytes([ports[port_at], ports[port_at + 1]]);
    let new_port = port.to_be_bytes();
    ports[port_at..port_at + 2].copy_from_slice(&new_port);
    // The transport checksum covers the address through its pseudo-header.
    let delta = addr_delta + u64::from(!old_port) + u64::from(u16::from_ne_bytes(new_port));
    let old_check = u16::from_ne_bytes(*l4_check);
    let value = checksum::apply_unfolded(old_check, delta);
    if ip.flow.proto == IpProtocol::Tcp {
        *l4_check = value.to_ne_bytes();
    } else if old_check != 0 {
        // UDP over IPv4: 0 means "no checksum" and stays 0. Both rules look
        // at 0 and 0xffff only, which read the same in either byte order.
        *l4_check = checksum::udp_nonzero(value).to_ne_bytes();
    }
    true
}

/// [`rewrite_endpoint`] for every kind of frame. Kept out of line, so that
/// the fast path inlined into the caller stays small.
#[inline(never)]
pub(crate) fn rewrite_endpoint_any(
    frame: &mut [u8],
    ip: &IpFrame,
    end: Endpoint,
    addr: IpAddr,
    port: u16,
) -> Result<(), RewriteError> {
    let at = ip.l3_offset + end.addr_offset(ip.version);
    // One delta for the address, applied to every checksum that covers it.
    let addr_delta = match (addr, ip.version) {
        (IpAddr::V4(new), IpVersion::V4) => {
            let slot: &mut [u8; 4] = (&mut frame[at..at + 4])
                .try_into()
                .map_err(|_| RewriteError::BufferTooSmall)?;
            let old = u32::from_be_bytes(*slot);
            *slot = new.octets();
            let delta = checksum::Delta::of_u32(old, u32::from(new));
            let csum = ip.l3_offset + ipv4::CHECKSUM_OFFSET;
            write16(frame, csum, delta.apply(read16(frame, csum)));
            delta
        }
        (IpAddr::V6(new), IpVersion::V6) => {
            let slot: &mut [u8; 16] = (&mut frame[at..at + 16])
                .try_into()
                .map_err(|_| RewriteError::BufferTooSmall)?;
            let old = *slot;
            *slot = new.octets();
            checksum::Delta::of_bytes(&old, &new.octets())
        }
        _ => return Err(RewriteError::FamilyMismatch),
    };
    if ip.fragment == Fragment::Later {
        return Ok(());
    }
    let l4 = ip.l4_offset;
    let set_port = |frame: &mut [u8]| {
        let at = l4 + end.port_offset();
        let old = read16(frame, at);
        write16(frame, at, port);
        checksum::Delta::of_u16(old, port)
    };
    match ip.flow.proto {
        IpProtocol::Tcp => {
            let delta = addr_delta.plus(set_port(frame));
            let csum = l4 + tcp::CHECKSUM_OFFSET;
            write16(frame, csum, delta.apply(read16(frame, csum)));
        }
        IpProtocol::Udp => {
            let delta = addr_delta.plus(set_port(frame));
            let csum = l4 + udp::CHECKSUM_OFFSET;
            let old = read16(frame, csum);
            // Over IPv4, 0 means "no checksum": it stays 0.
            if ip.version == IpVersion::V6 || old != 0 {
                write16(frame, csum, checksum::udp_nonzero(delta.apply(old)));
            }
        }
        IpProtocol::Icmpv6 => {
            let csum = l4 + icmp::CHECKSUM_OFFSET;
            write16(frame, csum, addr_delta.apply(read16(frame, csum)));
        }
        _ => {}
    }
    Ok(())
}

/// VS/DR: the frame goes to the real server's MAC from our interface; the IP
/// packet is untouched.
pub fn direct_route(frame: &mut [u8], rs_mac: MacAddr, our_mac: MacAddr) {
    let mut eth = ethernet::Frame::new_unchecked(frame);
    eth.set_dst_addr(rs_mac);
    eth.set_src_addr(our_mac);
}

/// Decrements the TTL (IPv4, with the header checksum) or hop limit (IPv6)
/// of a packet the director routes. A packet that arrived with 0 or 1 must
/// not be forwarded: [`RewriteError::TtlExpired`].
#[inline]
pub fn decrement_hop_limit(frame: &mut [u8], ip: &IpFrame) -> Result<(), RewriteError> {
    if ip.hop_limit <= 1 {
        return Err(RewriteError::TtlExpired);
    }
    if ip.version == IpVersion::V4
        && let Some(header) = frame
            .get_mut(ip.l3_offset..)
            .and_then(<[u8]>::first_chunk_mut::<{ ipv4::HEADER_LEN }>)
    {
        // The header as one fixed-size array: no bounds checks. TTL is the
        // high byte of the 16-bit word it shares with the protocol; words
        // are read in the machine's byte order, which stores the same
        // checksum bytes without byte swaps (see `checksum::apply_unfolded`).
        let (ttl, protocol) = (header[8], header[9]);
        header[8] = ip.hop_limit - 1;
        let old = u16::from_ne_bytes([ttl, protocol]);
        let new = u16::from_ne_bytes([ttl.wrapping_sub(1), protocol]);
        let check = &mut header[ipv4::CHECKSUM_OFFSET..ipv4::CHECKSUM_OFFSET + 2];
        let delta = u64::from(!old) + u64::from(new);
        let value = checksum::apply_unfolded(u16::from_ne_bytes([check[0], check[1]]), delta);
        check.copy_from_slice(&value.to_ne_bytes());
        return Ok(());
    }
    decrement_hop_limit_any(frame, ip);
    Ok(())
}

/// [`decrement_hop_limit`] for IPv6, and for an IPv4 frame too short for
/// its header (which panics, as an `IpFrame` of another frame would).
#[inline(never)]
fn decrement_hop_limit_any(frame: &mut [u8], ip: &IpFrame) {
    match ip.version {
        IpVersion::V4 => {
            let at = ip.l3_offset + 8;
            let old = read16(frame, at);
            frame[at] = ip.hop_limit - 1;
            let csum = ip.l3_offset + ipv4::CHECKSUM_OFFSET;
            let value = checksum::update_u16(read16(frame, csum), old, old - 0x0100);
            write16(frame, csum, value);
        }
        IpVersion::V6 => frame[ip.l3_offset + 7] = ip.hop_limit - 1,
    }
}

/// Updates the checksum stored at `csum` for bytes that changed from `old`
/// to `new` (the bytes themselves are already written by the caller).
pub(crate) fn update_field(frame: &mut [u8], csum: usize, old: &[u8], new: &[u8]) {
    let value = checksum::update_bytes(read16(frame, csum), old, new);
    write16(frame, csum, value);
}

pub(crate) fn read16(frame: &[u8], at: usize) -> u16 {
    let word: &[u8; 2] = frame[at..at + 2].try_into().unwrap_or(&[0; 2]);
    u16::from_be_bytes(*word)
}

pub(crate) fn write16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// An address as bytes on the stack (4 or 16 of them), so that rewrites
/// can keep the old value without allocating.
#[derive(Clone, Copy)]
pub(crate) struct AddrBytes {
    bytes: [u8; 16],
    len: usize,
}

impl AddrBytes {
    pub(crate) fn of(addr: IpAddr) -> Self {
        let mut bytes = [0; 16];
        match addr {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                Self { bytes, len: 4 }
            }
            IpAddr::V6(a) => Self {
                bytes: a.octets(),
                len: 16,
            },
        }
    }

    pub(crate) fn zeroed(version: IpVersion) -> Self {
        let len = match version {
            IpVersion::V4 => 4,
            IpVersion::V6 => 16,
        };
        Self {
            bytes: [0; 16],
            len,
        }
    }

    pub(crate) fn version(&self) -> IpVersion {
        if self.len == 4 {
            IpVersion::V4
        } else {
            IpVersion::V6
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Rewrites `frame` inbound to 192.0.2.11:8080 (or 2001:db8:2::11) and
    /// checks fields and every checksum with etherparse.
    fn check_inbound(mut frame: std::vec::Vec<u8>) {
        let before = ip(&frame);
        let rs = if before.version == IpVersion::V4 {
            addr("192.0.2.11")
        } else {
            addr("2001:db8:2::11")
        };
        nat_inbound(&mut frame, &before, rs, 8080).unwrap();
        verify_checksums(&frame).unwrap();
        let after = ip(&frame);
        assert_eq!(after.flow.dst, rs);
        assert_eq!(after.flow.src, before.flow.src);
        match before.flow.proto {
            IpProtocol::Tcp | IpProtocol::Udp => {
                assert_eq!(after.flow.dport, 8080);
                assert_eq!(after.flow.sport, before.flow.sport);
            }
            _ => assert_eq!(
                (after.flow.sport, after.flow.dport),
                (before.flow.sport, before.flow.dport)
            ),
        }
    }

    #[test]
    fn nat_inbound_every_protocol_and_family() {
        let c4 = "198.51.100.7";
        let c6 = "2001:db8:1::7";
        check_inbound(frame4(
            c4,
            "203.0.113.10",
            L4::Syn {
                sport: 40000,
                dport: 80,
            },
            b"",
        ));
        check_inbound(frame4(
            c4,
            "203.0.113.10",
            L4::Ack {
                sport: 40000,
                dport: 80,
            },
            b"GET / HTTP/1.1\r\n",
        ));
        check_inbound(frame4(
            c4,
            "203.0.113.10",
            L4::Udp {
                sport: 5353,
                dport: 53,
            },
            b"query",
        ));
        check_inbound(frame4(
            c4,
            "203.0.113.10",
            L4::EchoRequest { ident: 7 },
            b"ping",
        ));
        check_inbound(frame6(
            c6,
            "2001:db8::10",
            L4::Syn {
                sport: 40000,
                dport: 80,
            },
            b"",
        ));
        check_inbound(frame6(
            c6,
            "2001:db8::10",
            L4::Udp {
                sport: 5353,
                dport: 53,
            },
            b"odd",
        ));
        check_inbound(frame6(
            c6,
            "2001:db8::10",
            L4::EchoRequest { ident: 7 },
            b"ping6",
        ));
    }

    #[test]
    fn nat_outbound_restores_the_vip() {
        let mut f = frame4(
            "192.0.2.11",
            "198.51.100.7",
            L4::Ack {
                sport: 8080,
                dport: 40000,
            },
            b"HTTP/1.1 200 OK",
        );
        let p = ip(&f);
        nat_outbound(&mut f, &p, addr("203.0.113.10"), 80).unwrap();
        verify_checksums(&f).unwrap();
        let after = ip(&f);
        assert_eq!(
            (after.flow.src, after.flow.sport),
            (addr("203.0.113.10"), 80)
        );
        assert_eq!(
            (after.flow.dst, after.flow.dport),
            (addr("198.51.100.7"), 40000)
        );
    }

    #[test]
    fn udp_without_checksum_keeps_zero() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            b"x",
        );
        let csum_at = 14 + 20 + 6;
        f[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let p = ip(&f);
        nat_inbound(&mut f, &p, addr("192.0.2.11"), 5353).unwrap();
        assert_eq!(&f[csum_at..csum_at + 2], &[0, 0]);
        assert_eq!(ip(&f).flow.dport, 5353);
        verify_checksums(&f).unwrap();
    }

    #[test]
    fn udp_checksum_that_becomes_zero_is_sent_as_ffff() {
        // Search for a port whose rewrite makes the one's-complement sum come
        // out as zero, and check that it is sent as 0xffff.
        let f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            b"x",
        );
        let p = ip(&f);
        let csum_at = 14 + 20 + 6;
        let mut found = false;
        for port in 0..=u16::MAX {
            let mut g = f.clone();
            nat_inbound(&mut g, &p, addr("192.0.2.11"), port).unwrap();
            assert_ne!(read16(&g, csum_at), 0, "port {port}");
            if read16(&g, csum_at) == 0xffff {
                found = true;
                verify_checksums(&g).unwrap();
            }
        }
        assert!(found, "some port must produce the zero case");
    }

    #[test]
    fn family_mismatch_is_refused_and_frame_untouched() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let copy = f.clone();
        let p = ip(&f);
        assert_eq!(
            nat_inbound(&mut f, &p, addr("2001:db8::1"), 80),
            Err(RewriteError::FamilyMismatch)
        );
        assert_eq!(f, copy);
    }

    #[test]
    fn icmp_errors_are_refused_and_left_untouched() {
        // Found by the nat_rewrite fuzz target: the error's flow key names the
        // quoted UDP packet, and writing a "port" garbled the ICMP checksum.
        let sent = frame4(
            "198.51.100.7",
            "192.0.2.11",
            L4::Udp {
                sport: 5000,
                dport: 53,
            },
            b"query",
        );
        let mut err = icmp4_error("192.0.2.11", "198.51.100.7", 3, 3, [0; 4], &sent[14..]);
        let copy = err.clone();
        let p = ip(&err);
        assert_eq!(
            nat_inbound(&mut err, &p, addr("192.0.2.99"), 8080),
            Err(RewriteError::WrongKind)
        );
        assert_eq!(
            nat_outbound(&mut err, &p, addr("192.0.2.99"), 8080),
            Err(RewriteError::WrongKind)
        );
        assert_eq!(err, copy);
    }

    #[test]
    fn later_fragment_changes_only_addresses() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            &[9; 16],
        );
        {
            let mut p = ipv4::Packet::new_unchecked(&mut f[14..]);
            p.set_flags_and_offset(false, false, 1480);
            p.fill_checksum();
        }
        let p = ip(&f);
        let payload = f[34..].to_vec();
        nat_inbound(&mut f, &p, addr("192.0.2.11"), 8080).unwrap();
        assert_eq!(
            &f[34..],
            &payload[..],
            "the fragment's data is not a transport header"
        );
        let after = ipv4::Packet::new_checked(&f[14..]).unwrap();
        assert!(after.verify_checksum());
        assert_eq!(
            after.dst_addr(),
            "192.0.2.11".parse::<core::net::Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn dr_changes_only_macs() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let ip_part = f[14..].to_vec();
        let rs = MacAddr([2, 0, 0, 0, 0, 0x11]);
        let ours = MacAddr([2, 0, 0, 0, 0, 0x22]);
        direct_route(&mut f, rs, ours);
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 0x11, 2, 0, 0, 0, 0, 0x22]);
        assert_eq!(&f[14..], &ip_part[..]);
    }

    #[test]
    fn ttl_decrement() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let p = ip(&f);
        decrement_hop_limit(&mut f, &p).unwrap();
        verify_checksums(&f).unwrap();
        assert_eq!(ip(&f).hop_limit, 63);
        let mut f6 = frame6(
            "2001:db8::7",
            "2001:db8::10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let p6 = ip(&f6);
        decrement_hop_limit(&mut f6, &p6).unwrap();
        assert_eq!(ip(&f6).hop_limit, 63);
        let mut last = f.clone();
        last[14 + 8] = 1;
        let mut p = ipv4::Packet::new_unchecked(&mut last[14..]);
        p.fill_checksum();
        let p = ip(&last);
        assert_eq!(
            decrement_hop_limit(&mut last, &p),
            Err(RewriteError::TtlExpired)
        );
    }
}
