//! One pass from frame bytes to everything the director needs to decide:
//! where each layer starts, the flow key, fragment state, TCP flags, and for
//! ICMP errors where the quoted packet starts.
//!
//! [`parse`] is the receive path's only entry point: it uses the checked
//! views, so a frame that gets past it can be rewritten by the functions in
//! [`crate::rewrite`] without any index going out of bounds. Non-IP frames
//! (ARP, LLDP…) are not errors: they come back as [`Parsed::NotIp`] for the
//! director to hand to the kernel.
//!
//! Decisions worth knowing:
//! - The IPv4 header checksum is verified (20 bytes, cheap, and the kernel
//!   does the same in `ip_rcv`); L4 checksums are not: the real server
//!   verifies them, and incremental rewrites carry an error through intact.
//! - Later fragments carry no ports: they are reported as
//!   [`Fragment::Later`] with ports 0, and the director decides.
//! - An ICMP error's flow key is the reverse of the packet it quotes (the
//!   direction the error travels), marked [`FlowOrigin::IcmpError`].

use core::net::IpAddr;

use crate::ethernet::{self, EtherType, EthernetError, vlan};
use crate::flow::{FlowKey, FlowOrigin};
use crate::icmp::{self, IcmpError, V4Message, V6Message};
use crate::ip::IpProtocol;
use crate::ipv4::{self, Ipv4Error};
use crate::ipv6::{self, Ipv6Error};
use crate::tcp::{self, TcpError, TcpFlags};
use crate::udp::{self, UdpError};

/// Why a frame could not be parsed; one arm per layer, each carrying that
/// layer's error, so that the director can count a drop reason per cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The Ethernet header or VLAN tag.
    Ethernet(EthernetError),
    /// A second VLAN tag (QinQ), which we do not carry.
    StackedVlan,
    /// The IPv4 header.
    Ipv4(Ipv4Error),
    /// The IPv6 header or its extension chain.
    Ipv6(Ipv6Error),
    /// The TCP header.
    Tcp(TcpError),
    /// The UDP header.
    Udp(UdpError),
    /// The ICMP/ICMPv6 header, or ICMPv4 inside IPv6 or ICMPv6 inside IPv4.
    Icmp(IcmpError),
    /// The packet quoted inside an ICMP error.
    Quoted(QuotedError),
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Ethernet(e) => write!(f, "Ethernet header: {e:?}"),
            Self::StackedVlan => f.write_str("more than one VLAN tag"),
            Self::Ipv4(e) => write!(f, "IPv4 header: {e:?}"),
            Self::Ipv6(e) => write!(f, "IPv6 header: {e:?}"),
            Self::Tcp(e) => write!(f, "TCP header: {e:?}"),
            Self::Udp(e) => write!(f, "UDP header: {e:?}"),
            Self::Icmp(e) => write!(f, "ICMP header: {e:?}"),
            Self::Quoted(e) => write!(f, "packet quoted in an ICMP error: {e:?}"),
        }
    }
}

/// Why the packet quoted inside an ICMP error was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotedError {
    /// The quoted IPv4 header.
    Ipv4(Ipv4Error),
    /// The quoted IPv6 header or its extension chain.
    Ipv6(Ipv6Error),
    /// Fewer than the 8 bytes of transport header that carry the ports.
    Truncated,
    /// The quoted packet is a later fragment: no ports to find a connection by.
    Fragment,
    /// An error quoting an ICMP error (RFC 1122 forbids sending one).
    ErrorInError,
}

/// Fragment state of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not a fragment (or an IPv6 atomic fragment, RFC 6946).
    None,
    /// The first fragment: it carries the transport header.
    First,
    /// A later fragment: no transport header, ports are reported as 0.
    Later,
}

/// IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// What an ICMP/ICMPv6 message is, as far as the director cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// Echo request with its identifier.
    EchoRequest {
        /// Identifier.
        ident: u16,
    },
    /// Echo reply with its identifier.
    EchoReply {
        /// Identifier.
        ident: u16,
    },
    /// An error that quotes a packet (see [`IpFrame::quoted`]).
    Error {
        /// Type byte.
        msg_type: u8,
        /// Code byte.
        code: u8,
    },
    /// Anything else (neighbour discovery, redirects, …).
    Other {
        /// Type byte.
        msg_type: u8,
        /// Code byte.
        code: u8,
    },
}

/// Where the packet quoted inside an ICMP error lies in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// Offset of the quoted IP header.
    pub l3_offset: usize,
    /// Offset of the quoted transport header.
    pub l4_offset: usize,
    /// The quoted transport protocol.
    pub protocol: IpProtocol,
}

/// A parsed IP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpFrame {
    /// VLAN id of the 802.1Q tag, if the frame had one.
    pub vlan: Option<u16>,
    /// Offset of the IP header (14, or 18 behind a VLAN tag).
    pub l3_offset: usize,
    /// IP version.
    pub version: IpVersion,
    /// End of the IP packet in the frame (Ethernet padding lies beyond).
    pub ip_end: usize,
    /// Offset of the transport header (for a later fragment: of its data).
    pub l4_offset: usize,
    /// Fragment state.
    pub fragment: Fragment,
    /// DF for IPv4; always true for IPv6, which routers never fragment.
    pub dont_frag: bool,
    /// TTL or hop limit.
    pub hop_limit: u8,
    /// The flow key (see the module notes for ICMP).
    pub flow: FlowKey,
    /// Whether the key was read from the packet or from an ICMP error's quote.
    pub origin: FlowOrigin,
    /// TCP flags (empty for other protocols and for ICMP errors).
    pub tcp_flags: TcpFlags,
    /// For ICMP/ICMPv6: what the message is.
    pub icmp: Option<IcmpKind>,
    /// For ICMP errors: where the quoted packet is.
    pub quoted: Option<Quoted>,
}

impl Default for IpFrame {
    /// Describes nothing yet: storage for [`parse_into`].
    fn default() -> Self {
        let none = IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
        Self {
            vlan: None,
            l3_offset: 0,
            version: IpVersion::V4,
            ip_end: 0,
            l4_offset: 0,
            fragment: Fragment::None,
            dont_frag: false,
            hop_limit: 0,
            flow: FlowKey {
                proto: IpProtocol::Unknown(255),
                src: none,
                dst: none,
                sport: 0,
                dport: 0,
            },
            origin: FlowOrigin::Packet,
            tcp_flags: TcpFlags(0),
            icmp: None,
            quoted: None,
        }
    }
}

impl IpFrame {
    /// Clears what a previous parse left, for a frame whose IP header starts
    /// at `l3_offset`. Only the fields a parse may leave unwritten are
    /// cleared; the parse writes the rest.
    fn reset(&mut self, vlan: Option<u16>, l3_offset: usize) {
        self.vlan = vlan;
        self.l3_offset = l3_offset;
        self.origin = FlowOrigin::Packet;
        self.tcp_flags = TcpFlags(0);
        self.icmp = None;
        self.quoted = None;
    }

    /// Length of the IP packet (header and payload, no padding).
    #[must_use]
    pub fn ip_len(&self) -> usize {
        self.ip_end - self.l3_offset
    }
}

/// The result of [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// An IPv4 or IPv6 frame.
    Ip(IpFrame),
    /// Anything else, with its EtherType: for the kernel.
    NotIp {
        /// EtherType (of the inner header behind a VLAN tag).
        ethertype: EtherType,
        /// VLAN id, if tagged.
        vlan: Option<u16>,
    },
}

/// What [`parse_into`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// An IPv4 or IPv6 frame, described in the `IpFrame` passed in.
    Ip,
    /// Anything else, with its EtherType: for the kernel.
    NotIp {
        /// EtherType (of the inner header behind a VLAN tag).
        ethertype: EtherType,
        /// VLAN id, if tagged.
        vlan: Option<u16>,
    },
}

/// Parses a received Ethernet frame.
pub fn parse(frame: &[u8]) -> Result<Parsed, ParseError> {
    let mut out = IpFrame::default();
    match parse_into(frame, &mut out)? {
        FrameKind::Ip => Ok(Parsed::Ip(out)),
        FrameKind::NotIp { ethertype, vlan } => Ok(Parsed::NotIp { ethertype, vlan }),
    }
}

/// Parses a received Ethernet frame into `out`, which the caller keeps
/// (one per worker): the hot path's form of [`parse`]. Returning the
/// ~100-byte `IpFrame` by value costs more than filling it in place and
/// reading its fields where they were written. After an error or a non-IP
/// frame, `out` holds no meaningful description.
pub fn parse_into(frame: &[u8], out: &mut IpFrame) -> Result<FrameKind, ParseError> {
    // Views over fixed-size array references: the compiler knows their
    // length, so the accessors' indexing needs no bounds checks.
    let eth = ethernet::Frame::new_unchecked(
        fixed::<{ ethernet::HEADER_LEN }>(frame, 0)
            .ok_or(ParseError::Ethernet(EthernetError::Truncated))?,
    );
    let mut ethertype = eth.ethertype();
    let mut l3_offset = ethernet::HEADER_LEN;
    let mut vlan_id = None;
    if ethertype == EtherType::Vlan {
        let tag = vlan::Tag::new_checked(&frame[l3_offset..]).map_err(ParseError::Ethernet)?;
        vlan_id = Some(tag.vlan_id());
        ethertype = tag.ethertype();
        l3_offset += vlan::HEADER_LEN;
        if ethertype == EtherType::Vlan || ethertype == EtherType::Unknown(0x88a8) {
            return Err(ParseError::StackedVlan);
        }
    }
    match ethertype {
        EtherType::Ipv4 => {
            out.reset(vlan_id, l3_offset);
            parse_ipv4(frame, out).map(|()| FrameKind::Ip)
        }
        EtherType::Ipv6 => {
            out.reset(vlan_id, l3_offset);
            parse_ipv6(frame, out).map(|()| FrameKind::Ip)
        }
        other => Ok(FrameKind::NotIp {
            ethertype: other,
            vlan: vlan_id,
        }),
    }
}

/// The `N` bytes of `frame` at `at`, as an array reference.
#[inline]
fn fixed<const N: usize>(frame: &[u8], at: usize) -> Option<&[u8; N]> {
    frame.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[inline(always)]
fn parse_ipv4(frame: &[u8], out: &mut IpFrame) -> Result<(), ParseError> {
    let l3 = out.l3_offset;
    let packet = &frame[l3..];
    // One view over the fixed header, checked against the whole datagram's
    // length: every accessor below reads at a fixed offset of a 20-byte
    // array, with no bounds check left.
    let header = packet
        .first_chunk::<{ ipv4::HEADER_LEN }>()
        .ok_or(ParseError::Ipv4(Ipv4Error::Truncated))?;
    let ip = ipv4::Packet::new_unchecked(header);
    ip.check_within(packet.len()).map_err(ParseError::Ipv4)?;
    let header_len = ip.header_len();
    // Options are rare: the common 20-byte header is summed at a fixed length.
    let sum_ok = if header_len == ipv4::HEADER_LEN {
        crate::checksum::verifies_ipv4_header(header)
    } else {
        ipv4::Packet::new_unchecked(packet).verify_checksum()
    };
    if !sum_ok {
        return Err(ParseError::Ipv4(Ipv4Error::BadChecksum));
    }
    let fragment = match (ip.frag_offset(), ip.more_frags()) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    let header = Header {
        l4: l3 + header_len,
        end: l3 + usize::from(ip.total_len()),
        protocol: ip.protocol(),
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        fragment,
    };
    out.version = IpVersion::V4;
    out.dont_frag = ip.dont_frag();
    out.hop_limit = ip.ttl();
    finish(frame, header, out)
}

fn parse_ipv6(frame: &[u8], out: &mut IpFrame) -> Result<(), ParseError> {
    let l3 = out.l3_offset;
    let packet = &frame[l3..];
    let ip = ipv6::Packet::new_checked(packet).map_err(ParseError::Ipv6)?;
    let upper = ipv6::walk_extensions(packet, ip.total_len()).map_err(ParseError::Ipv6)?;
    let fragment = match upper.fragment {
        None => Fragment::None,
        Some(f) if f.offset != 0 => Fragment::Later,
        Some(f) if f.more => Fragment::First,
        Some(_) => Fragment::None,
    };
    let header = Header {
        l4: l3 + upper.offset,
        end: l3 + ip.total_len(),
        protocol: upper.protocol,
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        fragment,
    };
    out.version = IpVersion::V6;
    out.dont_frag = true;
    out.hop_limit = ip.hop_limit();
    finish(frame, header, out)
}

/// The facts of an IP header that the transport layer needs.
struct Header {
    l4: usize,
    end: usize,
    protocol: IpProtocol,
    src: IpAddr,
    dst: IpAddr,
    fragment: Fragment,
}

#[inline(always)]
fn finish(frame: &[u8], h: Header, out: &mut IpFrame) -> Result<(), ParseError> {
    out.ip_end = h.end;
    out.l4_offset = h.l4;
    out.fragment = h.fragment;
    out.flow = FlowKey {
        proto: h.protocol,
        src: h.src,
        dst: h.dst,
        sport: 0,
        dport: 0,
    };
    let version = out.version;
    if h.fragment == Fragment::Later {
        return Ok(());
    }
    let l4 = &frame[h.l4..h.end];
    match (h.protocol, version) {
        (IpProtocol::Tcp, _) => {
            let tcp = tcp::Packet::new_unchecked(
                l4.first_chunk::<{ tcp::HEADER_LEN }>()
                    .ok_or(ParseError::Tcp(TcpError::Truncated))?,
            );
            tcp.check_within(l4.len()).map_err(ParseError::Tcp)?;
            out.flow.sport = tcp.src_port();
            out.flow.dport = tcp.dst_port();
            out.tcp_flags = tcp.flags();
        }
        (IpProtocol::Udp, _) => {
            // A first fragment holds only part of what the length field
            // describes: check the header alone.
            let udp = udp::Packet::new_unchecked(l4);
            match h.fragment {
                Fragment::None => udp.check_len().map_err(ParseError::Udp)?,
                _ if l4.len() < udp::HEADER_LEN => {
                    return Err(ParseError::Udp(UdpError::Truncated));
                }
                _ => {}
            }
            out.flow.sport = udp.src_port();
            out.flow.dport = udp.dst_port();
        }
        (IpProtocol::Icmp, IpVersion::V4) | (IpProtocol::Icmpv6, IpVersion::V6) => {
            icmp_message(frame, &h, version, out)?;
        }
        (IpProtocol::Icmp | IpProtocol::Icmpv6, _) => {
            return Err(ParseError::Icmp(IcmpError::Truncated));
        }
        _ => {}
    }
    Ok(())
}

fn icmp_message(
    frame: &[u8],
    h: &Header,
    version: IpVersion,
    out: &mut IpFrame,
) -> Result<(), ParseError> {
    let msg = icmp::Packet::new_checked(&frame[h.l4..h.end]).map_err(ParseError::Icmp)?;
    let (msg_type, code) = (msg.msg_type(), msg.msg_code());
    let (is_request, is_reply, is_error) = match version {
        IpVersion::V4 => {
            let m = V4Message::from(msg_type);
            (
                m == V4Message::EchoRequest,
                m == V4Message::EchoReply,
                m.is_error(),
            )
        }
        IpVersion::V6 => {
            let m = V6Message::from(msg_type);
            (
                m == V6Message::EchoRequest,
                m == V6Message::EchoReply,
                m.is_error(),
            )
        }
    };
    if is_request {
        out.icmp = Some(IcmpKind::EchoRequest {
            ident: msg.echo_ident(),
        });
        out.flow.sport = msg.echo_ident();
    } else if is_reply {
        out.icmp = Some(IcmpKind::EchoReply {
            ident: msg.echo_ident(),
        });
        out.flow.dport = msg.echo_ident();
    } else if is_error {
        if h.fragment != Fragment::None {
            // An error split across fragments cannot be matched by its quote.
            return Err(ParseError::Quoted(QuotedError::Fragment));
        }
        out.icmp = Some(IcmpKind::Error { msg_type, code });
        let (quoted, key) = quoted_packet(frame, h.l4 + icmp::HEADER_LEN, h.end, version)?;
        out.quoted = Some(quoted);
        out.flow = key.reversed();
        out.origin = FlowOrigin::IcmpError;
    } else {
        out.icmp = Some(IcmpKind::Other { msg_type, code });
    }
    Ok(())
}

/// Reads the packet quoted by an ICMP error, from `start` to `end` of
/// `frame`, and returns where it lies and its own flow key.
fn quoted_packet(
    frame: &[u8],
    start: usize,
    end: usize,
    version: IpVersion,
) -> Result<(Quoted, FlowKey), ParseError> {
    let quote = &frame[start..end];
    let (l4, protocol, src, dst) = match version {
        IpVersion::V4 => {
            let ip = ipv4::Packet::new_unchecked(quote);
            ip.check_header_len()
                .map_err(|e| ParseError::Quoted(QuotedError::Ipv4(e)))?;
            if ip.frag_offset() != 0 {
                return Err(ParseError::Quoted(QuotedError::Fragment));
            }
            let src = IpAddr::V4(ip.src_addr());
            (
                ip.header_len(),
                ip.protocol(),
                src,
                IpAddr::V4(ip.dst_addr()),
            )
        }
        IpVersion::V6 => {
            let ip = ipv6::Packet::new_unchecked(quote);
            ip.check_header_len()
                .map_err(|e| ParseError::Quoted(QuotedError::Ipv6(e)))?;
            let upper = ipv6::walk_extensions(quote, quote.len())
                .map_err(|e| ParseError::Quoted(QuotedError::Ipv6(e)))?;
            if upper.fragment.is_some_and(|f| f.offset != 0) {
                return Err(ParseError::Quoted(QuotedError::Fragment));
            }
            let src = IpAddr::V6(ip.src_addr());
            (upper.offset, upper.protocol, src, IpAddr::V6(ip.dst_addr()))
        }
    };
    let mut key = FlowKey {
        proto: protocol,
        src,
        dst,
        sport: 0,
        dport: 0,
    };
    let transport = &quote[l4..];
    match protocol {
        IpProtocol::Tcp | IpProtocol::Udp => {
            // RFC 792 promises 64 bits of the original datagram: the ports.
            if transport.len() < 8 {
                return Err(ParseError::Quoted(QuotedError::Truncated));
            }
            key.sport = u16::from_be_bytes([transport[0], transport[1]]);
            key.dport = u16::from_be_bytes([transport[2], transport[3]]);
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6 => {
            let msg = icmp::Packet::new_checked(transport)
                .map_err(|_| ParseError::Quoted(QuotedError::Truncated))?;
            let t = msg.msg_type();
            let (request, reply) = match version {
                IpVersion::V4 => (
                    V4Message::from(t) == V4Message::EchoRequest,
                    V4Message::from(t) == V4Message::EchoReply,
                ),
                IpVersion::V6 => (
                    V6Message::from(t) == V6Message::EchoRequest,
                    V6Message::from(t) == V6Message::EchoReply,
                ),
            };
            let is_error = match version {
                IpVersion::V4 => V4Message::from(t).is_error(),
                IpVersion::V6 => V6Message::from(t).is_error(),
            };
            if request {
                key.sport = msg.echo_ident();
            } else if reply {
                key.dport = msg.echo_ident();
            } else if is_error {
                return Err(ParseError::Quoted(QuotedError::ErrorInError));
            }
            // Other informational messages (router solicitation…): ports 0.
        }
        _ => {}
    }
    let quoted = Quoted {
        l3_offset: start,
        l4_offset: start + l4,
        protocol,
    };
    Ok((quoted, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use core::net::Ipv4Addr;

    fn key(proto: IpProtocol, src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
        FlowKey {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
        }
    }

    #[test]
    fn tcp_syn_v4() {
        let f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 40000,
                dport: 80,
            },
            b"",
        );
        let p = ip(&f);
        assert_eq!(
            p.flow,
            key(IpProtocol::Tcp, "198.51.100.7", 40000, "203.0.113.10", 80)
        );
        assert!(p.tcp_flags.syn() && !p.tcp_flags.ack());
        assert_eq!((p.l3_offset, p.l4_offset, p.ip_end), (14, 34, f.len()));
        assert_eq!(
            (p.version, p.fragment, p.origin),
            (IpVersion::V4, Fragment::None, FlowOrigin::Packet)
        );
        assert_eq!(p.hop_limit, 64);
    }

    #[test]
    fn udp_v6_and_padding_is_ignored() {
        let mut f = frame6(
            "2001:db8:1::7",
            "2001:db8::10",
            L4::Udp {
                sport: 5000,
                dport: 53,
            },
            b"q",
        );
        let end = f.len();
        f.extend_from_slice(&[0; 7]); // trailing bytes beyond the payload length
        let p = ip(&f);
        assert_eq!(
            p.flow,
            key(IpProtocol::Udp, "2001:db8:1::7", 5000, "2001:db8::10", 53)
        );
        assert_eq!(p.ip_end, end);
        assert!(p.dont_frag);
    }

    #[test]
    fn ethernet_padding_after_short_ipv4() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Ack { sport: 1, dport: 2 },
            b"",
        );
        let end = f.len();
        f.resize(60, 0);
        assert_eq!(ip(&f).ip_end, end);
    }

    #[test]
    fn echo_keys_reverse_each_other() {
        let req = ip(&frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::EchoRequest { ident: 77 },
            b"x",
        ));
        let rep = ip(&frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::EchoReply { ident: 77 },
            b"x",
        ));
        assert_eq!(
            req.flow,
            key(IpProtocol::Icmp, "198.51.100.7", 77, "203.0.113.10", 0)
        );
        assert_eq!(rep.flow, req.flow.reversed());
        assert_eq!(req.icmp, Some(IcmpKind::EchoRequest { ident: 77 }));
        let req6 = ip(&frame6(
            "2001:db8::7",
            "2001:db8::10",
            L4::EchoRequest { ident: 9 },
            b"",
        ));
        assert_eq!(
            req6.flow,
            key(IpProtocol::Icmpv6, "2001:db8::7", 9, "2001:db8::10", 0)
        );
    }

    #[test]
    fn vlan_tagged_frame() {
        let f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        tagged.extend_from_slice(&f[12..]);
        let p = ip(&tagged);
        assert_eq!((p.vlan, p.l3_offset, p.l4_offset), (Some(42), 18, 38));
        // A second tag is refused.
        let mut qinq = tagged[..16].to_vec();
        qinq.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        qinq.extend_from_slice(&tagged[16..]);
        assert_eq!(parse(&qinq), Err(ParseError::StackedVlan));
    }

    #[test]
    fn arp_is_not_ip() {
        let mut buf = [0u8; 60];
        crate::arp::emit_gratuitous(
            &mut buf,
            crate::ethernet::MacAddr(DIRECTOR_MAC),
            Ipv4Addr::new(203, 0, 113, 10),
        )
        .unwrap();
        assert_eq!(
            parse(&buf),
            Ok(Parsed::NotIp {
                ethertype: EtherType::Arp,
                vlan: None
            })
        );
    }

    #[test]
    fn ipv4_fragments() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 5000,
                dport: 53,
            },
            &[1; 64],
        );
        let set_frag = |f: &mut std::vec::Vec<u8>, mf: bool, offset: u16| {
            let mut p = ipv4::Packet::new_unchecked(&mut f[14..]);
            p.set_flags_and_offset(false, mf, offset);
            p.fill_checksum();
        };
        // First fragment: UDP length covers more than is here; ports still read.
        set_frag(&mut f, true, 0);
        let len = f.len();
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4000u16.to_be_bytes());
        let p = ip(&f[..len]);
        assert_eq!(
            (p.fragment, p.flow.sport, p.flow.dport),
            (Fragment::First, 5000, 53)
        );
        // Later fragment: no ports.
        set_frag(&mut f, false, 1480);
        let p = ip(&f);
        assert_eq!(
            (p.fragment, p.flow.sport, p.flow.dport),
            (Fragment::Later, 0, 0)
        );
        assert_eq!(p.l4_offset, 34);
    }

    #[test]
    fn ipv6_later_fragment_has_no_ports() {
        let mut f = frame6(
            "2001:db8::7",
            "2001:db8::10",
            L4::Udp { sport: 1, dport: 2 },
            &[0; 8],
        );
        // Insert a fragment header (offset 1448, M=0) before the UDP header.
        f[14 + 6] = 44;
        let mut with_frag = f[..54].to_vec();
        with_frag.extend_from_slice(&[17, 0, 0x05, 0xa8, 0, 0, 0, 9]);
        with_frag.extend_from_slice(&f[54..]);
        let plen = (with_frag.len() - 54) as u16;
        with_frag[18..20].copy_from_slice(&plen.to_be_bytes());
        let p = ip(&with_frag);
        assert_eq!(
            (p.fragment, p.flow.sport, p.l4_offset),
            (Fragment::Later, 0, 62)
        );
        assert_eq!(p.flow.proto, IpProtocol::Udp);
    }

    #[test]
    fn icmp_error_is_keyed_by_its_quote_reversed() {
        // The director sent VIP:80 -> client:40000; a router says frag needed.
        let reply = frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::Ack {
                sport: 80,
                dport: 40000,
            },
            &[7; 100],
        );
        let err = icmp4_error(
            "198.51.100.254",
            "203.0.113.10",
            3,
            4,
            [0, 0, 0x05, 0x78],
            &reply[14..14 + 28],
        );
        let p = ip(&err);
        assert_eq!(p.origin, FlowOrigin::IcmpError);
        assert_eq!(
            p.flow,
            key(IpProtocol::Tcp, "198.51.100.7", 40000, "203.0.113.10", 80)
        );
        assert_eq!(
            p.icmp,
            Some(IcmpKind::Error {
                msg_type: 3,
                code: 4
            })
        );
        let q = p.quoted.unwrap();
        assert_eq!(
            (q.l3_offset, q.l4_offset, q.protocol),
            (42, 62, IpProtocol::Tcp)
        );
    }

    #[test]
    fn icmpv6_error_with_quoted_udp() {
        let sent = frame6(
            "2001:db8::10",
            "2001:db8:1::7",
            L4::Udp {
                sport: 53,
                dport: 5000,
            },
            b"answer",
        );
        let err = icmp6_error("2001:db8:1::7", "2001:db8::10", 1, 4, [0; 4], &sent[14..]);
        let p = ip(&err);
        assert_eq!(
            p.flow,
            key(IpProtocol::Udp, "2001:db8:1::7", 5000, "2001:db8::10", 53)
        );
        assert_eq!(p.origin, FlowOrigin::IcmpError);
    }

    #[test]
    fn quoted_packet_faults() {
        let sent = frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::Udp {
                sport: 53,
                dport: 5000,
            },
            b"abcdefgh",
        );
        // Fewer than 8 bytes of the transport header.
        let err = icmp4_error(
            "198.51.100.7",
            "203.0.113.10",
            3,
            3,
            [0; 4],
            &sent[14..14 + 24],
        );
        assert_eq!(parse(&err), Err(ParseError::Quoted(QuotedError::Truncated)));
        // Quoted IPv4 header cut short.
        let err = icmp4_error(
            "198.51.100.7",
            "203.0.113.10",
            3,
            3,
            [0; 4],
            &sent[14..14 + 12],
        );
        assert_eq!(
            parse(&err),
            Err(ParseError::Quoted(QuotedError::Ipv4(Ipv4Error::Truncated)))
        );
        // An error about an error.
        let inner = icmp4_error("198.51.100.7", "203.0.113.10", 3, 3, [0; 4], &sent[14..]);
        let err = icmp4_error("198.51.100.9", "198.51.100.7", 11, 0, [0; 4], &inner[14..]);
        assert_eq!(
            parse(&err),
            Err(ParseError::Quoted(QuotedError::ErrorInError))
        );
        // A quoted later fragment.
        let mut frag = sent[14..].to_vec();
        frag[6] = 0x00;
        frag[7] = 0x10;
        let err = icmp4_error("198.51.100.7", "203.0.113.10", 3, 3, [0; 4], &frag);
        assert_eq!(parse(&err), Err(ParseError::Quoted(QuotedError::Fragment)));
    }

    #[test]
    fn quoted_informational_icmp_has_no_ports() {
        // A router solicitation (type 10) that met an error on its way.
        let mut rs = std::vec![10u8, 0, 0, 0, 0, 0, 0, 0];
        let c = crate::checksum::checksum(&rs);
        rs[2..4].copy_from_slice(&c.to_be_bytes());
        let mut sent = std::vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 1, 1, 0, 0, 198, 51, 100, 7, 203, 0, 113, 10
        ];
        sent.extend_from_slice(&rs);
        let err = icmp4_error("203.0.113.10", "198.51.100.7", 3, 1, [0; 4], &sent);
        let p = ip(&err);
        assert_eq!(
            p.flow,
            key(IpProtocol::Icmp, "203.0.113.10", 0, "198.51.100.7", 0)
        );
        assert_eq!(p.origin, FlowOrigin::IcmpError);
    }

    #[test]
    fn bad_ipv4_checksum_is_refused() {
        let mut f = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Syn {
                sport: 1,
                dport: 80,
            },
            b"",
        );
        f[14 + 10] ^= 0xff;
        assert_eq!(parse(&f), Err(ParseError::Ipv4(Ipv4Error::BadChecksum)));
    }

    #[test]
    fn icmp_family_mismatch_is_refused() {
        let mut f = frame6(
            "2001:db8::7",
            "2001:db8::10",
            L4::EchoRequest { ident: 1 },
            b"",
        );
        f[14 + 6] = 1; // next header: ICMPv4 inside IPv6
        assert_eq!(parse(&f), Err(ParseError::Icmp(IcmpError::Truncated)));
    }

    /// Every prefix of every kind of valid frame is either refused with an
    /// error or parsed; the parser never panics and never reads past the end.
    #[test]
    fn every_truncation_point_of_real_frames() {
        let sent = frame4(
            "203.0.113.10",
            "198.51.100.7",
            L4::Udp {
                sport: 53,
                dport: 5000,
            },
            b"abcdefgh",
        );
        let frames = [
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Syn {
                    sport: 40000,
                    dport: 80,
                },
                b"hello",
            ),
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Udp {
                    sport: 1,
                    dport: 53,
                },
                b"hello",
            ),
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::EchoRequest { ident: 3 },
                b"hello",
            ),
            frame6(
                "2001:db8::7",
                "2001:db8::10",
                L4::Ack {
                    sport: 40000,
                    dport: 80,
                },
                b"hello",
            ),
            frame6(
                "2001:db8::7",
                "2001:db8::10",
                L4::EchoReply { ident: 3 },
                b"hello",
            ),
            icmp4_error("198.51.100.7", "203.0.113.10", 3, 3, [0; 4], &sent[14..]),
        ];
        for f in &frames {
            assert!(matches!(parse(f), Ok(Parsed::Ip(_))));
            for len in 0..f.len() {
                // Shorter than the IP header says: always an error.
                assert!(parse(&f[..len]).is_err(), "a {len}-byte prefix parsed");
            }
        }
    }
}
