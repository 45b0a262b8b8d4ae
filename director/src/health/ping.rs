//! ICMP echo checks (IPv4 and IPv6), on the checker's runtime.
//!
//! # Contract
//! * One socket per ping, open only while it waits: an unprivileged ICMP
//!   datagram socket where `net.ipv4.ping_group_range` allows it (the
//!   kernel then picks the identifier and hands the socket only its own
//!   replies), else a raw ICMP socket (root or `CAP_NET_RAW`), which sees
//!   every echo reply of the host and so matches address, identifier,
//!   sequence and a per-ping token.
//! * The kernel fills in the ICMPv6 checksum (it covers a pseudo-header the
//!   socket does not see); the ICMPv4 one is ours.
//! * Bounded by the caller's timeout: a reply that never comes is a
//!   timeout, whatever else arrives meanwhile.

use core::net::{IpAddr, SocketAddr};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use tokio::net::UdpSocket;
use xvs_packet::icmp;

use super::check::io_reason;
use super::state::{Phase, Reason};

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const TOKEN_LEN: usize = 16;

static SEQUENCE: AtomicU16 = AtomicU16::new(0);

/// Pings `addr` once; [`Reason::Passed`] on its echo reply.
pub(crate) async fn ping(addr: IpAddr, limit: Duration) -> Reason {
    match tokio::time::timeout(limit, echo(addr)).await {
        Err(_) => Reason::Timeout(Phase::Ping),
        Ok(Ok(())) => Reason::Passed,
        Ok(Err(reason)) => reason,
    }
}

/// An ICMP socket driven by tokio's datagram-socket type: `sendto` and
/// `recvfrom` on an `AF_INET`/`AF_INET6` socket are the same calls whatever
/// its protocol, and this needs no `unsafe` to register the descriptor.
struct IcmpSocket {
    socket: UdpSocket,
    /// A raw socket sees every reply of the host.
    raw: bool,
}

fn open(v6: bool) -> io::Result<IcmpSocket> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let (fd, raw) = match socket(family, SockType::Datagram, flags, protocol) {
        Ok(fd) => (fd, false),
        Err(Errno::EACCES | Errno::EPERM | Errno::EPROTONOSUPPORT | Errno::ESOCKTNOSUPPORT) => {
            (socket(family, SockType::Raw, flags, protocol)?, true)
        }
        Err(e) => return Err(e.into()),
    };
    Ok(IcmpSocket {
        socket: UdpSocket::from_std(std::net::UdpSocket::from(fd))?,
        raw,
    })
}

/// The echo request: header, then a token that also goes into the reply.
fn request(
    v6: bool,
    ident: u16,
    seq: u16,
    token: &[u8; TOKEN_LEN],
) -> [u8; icmp::HEADER_LEN + TOKEN_LEN] {
    let mut frame = [0u8; icmp::HEADER_LEN + TOKEN_LEN];
    let mut packet = icmp::Packet::new_unchecked(&mut frame[..]);
    packet.set_msg_type(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    packet.set_msg_code(0);
    packet.set_echo_ident(ident);
    packet.set_echo_seq_no(seq);
    packet.payload_mut().copy_from_slice(token);
    if !v6 {
        let sum = xvs_packet::checksum::checksum(&frame);
        icmp::Packet::new_unchecked(&mut frame[..]).set_checksum(sum);
    }
    frame
}

/// Whether `data` (as the socket delivered it) is the reply to our request.
fn is_reply(
    data: &[u8],
    v6: bool,
    raw: bool,
    ident: u16,
    seq: u16,
    token: &[u8; TOKEN_LEN],
) -> bool {
    // Raw IPv4 sockets deliver the IP header too; the others do not.
    let icmp_bytes = if raw && !v6 {
        let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
        data.get(ihl..).unwrap_or_default()
    } else {
        data
    };
    let Ok(reply) = icmp::Packet::new_checked(icmp_bytes) else {
        return false;
    };
    let want_type = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    // A datagram socket's identifier is the kernel's choice; it delivers
    // only this socket's replies.
    reply.msg_type() == want_type
        && reply.msg_code() == 0
        && reply.echo_seq_no() == seq
        && (!raw || reply.echo_ident() == ident)
        && reply.payload().get(..TOKEN_LEN) == Some(&token[..])
}

fn token(seq: u16) -> [u8; TOKEN_LEN] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut t = [0u8; TOKEN_LEN];
    t[..2].copy_from_slice(&seq.to_be_bytes());
    t[2..].copy_from_slice(&nanos.to_be_bytes()[2..]);
    t
}

async fn echo(addr: IpAddr) -> Result<(), Reason> {
    let v6 = addr.is_ipv6();
    let sock = open(v6).map_err(|e| Reason::Io(format!("cannot open an ICMP socket: {e}")))?;
    let ident = std::process::id() as u16;
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let token = token(seq);
    let frame = request(v6, ident, seq, &token);
    sock.socket
        .send_to(&frame, SocketAddr::new(addr, 0))
        .await
        .map_err(|e| io_reason(&e))?;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = sock
            .socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| io_reason(&e))?;
        let data = buf.get(..len).unwrap_or_default();
        if from.ip() == addr && is_reply(data, v6, sock.raw, ident, seq, &token) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_matches_only_its_own_request() {
        let t = token(7);
        for v6 in [false, true] {
            let mut reply = request(v6, 42, 7, &t);
            reply[0] = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
            assert!(
                is_reply(&reply, v6, false, 0, 7, &t),
                "datagram: the kernel's ident"
            );
            assert!(!is_reply(&reply, v6, false, 42, 8, &t), "other sequence");
            assert!(
                !is_reply(&reply, v6, false, 42, 7, &token(9)),
                "other token"
            );
            assert!(!is_reply(&reply[..6], v6, false, 42, 7, &t), "truncated");
            let request = request(v6, 42, 7, &t);
            assert!(!is_reply(&request, v6, false, 42, 7, &t), "our own request");
        }
        // A raw IPv6 socket sees every reply: the ident must be ours.
        let mut reply = request(true, 42, 7, &t);
        reply[0] = ECHO_REPLY_V6;
        assert!(is_reply(&reply, true, true, 42, 7, &t));
        assert!(!is_reply(&reply, true, true, 43, 7, &t));
        // A raw IPv4 socket delivers the IP header first.
        let mut reply = request(false, 42, 7, &t);
        reply[0] = ECHO_REPLY_V4;
        let mut with_header = vec![0x45u8];
        with_header.extend_from_slice(&[0; 19]);
        with_header.extend_from_slice(&reply);
        assert!(is_reply(&with_header, false, true, 42, 7, &t));
        assert!(!is_reply(&with_header, false, true, 41, 7, &t));
        assert!(
            !is_reply(&[0x4f], false, true, 42, 7, &t),
            "header longer than the data"
        );
    }

    #[test]
    fn the_ipv4_request_carries_a_valid_checksum() {
        let frame = request(false, 1, 2, &token(2));
        assert_eq!(xvs_packet::checksum::checksum(&frame), 0);
    }
}
