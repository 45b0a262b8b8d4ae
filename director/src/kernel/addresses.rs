//! Moving addresses on and off an interface, and the link facts the HA
//! part needs (its link-local address, whether the link is up), over
//! rtnetlink.
//!
//! # Contract
//! - One request, one answer: each call opens a netlink socket in the
//!   calling thread's network namespace, sends one request, waits (at most
//!   [`TIMEOUT`]) for the kernel's acknowledgement or its dump, and closes
//!   it. Nothing is cached: an address the operator removed by hand is seen
//!   as gone at the next call.
//! - Idempotent: adding an address that is there, or removing one that is
//!   not, is not an error (`Ok(false)`), so that a takeover after a crash
//!   (addresses left behind) or a release after a manual `ip addr del`
//!   goes through.
//! - IPv6 addresses are added with `IFA_F_NODAD`: a VIP is usable at once,
//!   without the second of duplicate address detection during which the
//!   kernel would neither answer solicitations for it nor send from it (and
//!   a backup that still held it would make DAD fail for good).
//! - The messages are built and read by pure functions, tested on bytes
//!   made in memory; the namespace tests (`tests/ha_io.rs`) check them
//!   against a kernel.

use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};

use super::family_of;
use super::socket::Netlink;
use crate::types::IpNet;

/// How long a call waits for the kernel's answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Adds `net` (its address with its prefix length) to `ifindex`; IPv6 with
/// IFA_F_NODAD. Ok(true) added, Ok(false) it was already there (EEXIST).
/// Waits for the kernel's ack.
///
/// # Errors
/// No netlink socket, no such interface (`ENODEV`), not allowed (`EPERM`),
/// no answer in [`TIMEOUT`].
pub fn add_address(ifindex: u32, net: IpNet) -> io::Result<bool> {
    let request = RouteNetlinkMessage::NewAddress(address_message(ifindex, net));
    match Netlink::open(TIMEOUT)?.request(request, NLM_F_CREATE | NLM_F_EXCL) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes it: Ok(true) removed, Ok(false) it was not there
/// (EADDRNOTAVAIL / ENOENT…).
///
/// # Errors
/// As [`add_address`].
pub fn remove_address(ifindex: u32, net: IpNet) -> io::Result<bool> {
    let request = RouteNetlinkMessage::DelAddress(address_message(ifindex, net));
    match Netlink::open(TIMEOUT)?.request(request, 0) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `addr` is on `ifindex` (a dump of the addresses).
///
/// # Errors
/// No netlink socket, or no answer in [`TIMEOUT`].
pub fn has_address(ifindex: u32, addr: IpAddr) -> io::Result<bool> {
    let dump = dump_addresses(family_of(addr))?;
    Ok(addresses_on(&dump, ifindex).any(|a| a.addr == addr))
}

/// The interface's IPv6 link-local address, if it has one.
///
/// One whose duplicate address detection failed is skipped; one still
/// tentative is returned only when there is no other (the kernel refuses
/// to send from it until DAD ends, about a second after the link came up).
///
/// # Errors
/// No netlink socket, or no answer in [`TIMEOUT`].
pub fn link_local(ifindex: u32) -> io::Result<Option<Ipv6Addr>> {
    let dump = dump_addresses(family_of(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))?;
    Ok(link_local_of(&dump, ifindex))
}

/// Whether the link is up and running (IFF_UP and IFF_RUNNING / operstate
/// up), by one RTM_GETLINK.
///
/// The kernel sets `IFF_RUNNING` only while the operational state is up
/// (or unknown, for drivers that do not report one, RFC 2863): a cable
/// pulled, or a veth whose peer is down, is not running.
///
/// # Errors
/// No netlink socket, no such interface (`ENODEV`), no answer in
/// [`TIMEOUT`].
pub fn link_is_up(ifindex: u32) -> io::Result<bool> {
    let mut request = LinkMessage::default();
    request.header.index = ifindex;
    let answer = Netlink::open(TIMEOUT)?.request(RouteNetlinkMessage::GetLink(request), 0)?;
    link_up_of(&answer, ifindex).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("the kernel did not describe interface {ifindex}"),
        )
    })
}

/// Every address of `family` the kernel holds.
fn dump_addresses(
    family: netlink_packet_route::AddressFamily,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut request = AddressMessage::default();
    request.header.family = family;
    Netlink::open(TIMEOUT)?.dump(RouteNetlinkMessage::GetAddress(request))
}

/// The request that adds or removes `net` on `ifindex`: the address as
/// both IFA_LOCAL and IFA_ADDRESS (as `ip addr` sends it), and for IPv6
/// IFA_F_NODAD in the header and in IFA_FLAGS (which the kernel prefers).
fn address_message(ifindex: u32, net: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(net.addr);
    message.header.prefix_len = net.prefix_len;
    message.header.scope = AddressScope::Universe;
    message.header.index = ifindex;
    message.attributes = vec![
        AddressAttribute::Local(net.addr),
        AddressAttribute::Address(net.addr),
    ];
    if net.addr.is_ipv6() {
        message.header.flags = AddressHeaderFlags::Nodad;
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    message
}

/// One address of an RTM_GETADDR dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DumpedAddress {
    addr: IpAddr,
    flags: AddressFlags,
}

/// The addresses of `ifindex` in an RTM_GETADDR dump, whatever their
/// scope, with their flags (IFA_FLAGS when present: the header's byte
/// cannot hold them all).
fn addresses_on(
    messages: &[RouteNetlinkMessage],
    ifindex: u32,
) -> impl Iterator<Item = DumpedAddress> + '_ {
    messages
        .iter()
        .filter_map(move |m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == ifindex => Some(a),
            _ => None,
        })
        .filter_map(|a| {
            let mut local = None;
            let mut address = None;
            let mut flags = AddressFlags::from_bits_retain(u32::from(a.header.flags.bits()));
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Flags(f) => flags = *f,
                    _ => {}
                }
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
            // peer's on a point-to-point link, and the only one over IPv6.
            local.or(address).map(|addr| DumpedAddress { addr, flags })
        })
}

/// The link-local address of `ifindex` in a dump: not DAD-failed, and not
/// tentative when another one is not.
fn link_local_of(messages: &[RouteNetlinkMessage], ifindex: u32) -> Option<Ipv6Addr> {
    let mut tentative = None;
    for a in addresses_on(messages, ifindex) {
        let IpAddr::V6(v6) = a.addr else { continue };
        if !v6.is_unicast_link_local() || a.flags.contains(AddressFlags::Dadfailed) {
            continue;
        }
        if !a.flags.contains(AddressFlags::Tentative) {
            return Some(v6);
        }
        tentative = tentative.or(Some(v6));
    }
    tentative
}

/// Whether `ifindex` is up and running, from an RTM_GETLINK answer; `None`
/// when the answer does not describe it.
fn link_up_of(messages: &[RouteNetlinkMessage], ifindex: u32) -> Option<bool> {
    messages.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(link) if link.header.index == ifindex => Some(
            link.header
                .flags
                .contains(LinkFlags::Up | LinkFlags::Running),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NetlinkPayload;
    use netlink_packet_route::AddressFamily;

    use super::super::socket::{parse_messages, serialize_all};
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// What the kernel would read: the message through its wire form.
    fn wire(messages: Vec<RouteNetlinkMessage>) -> Vec<RouteNetlinkMessage> {
        let framed: Vec<(u16, RouteNetlinkMessage)> =
            messages.into_iter().map(|m| (0, m)).collect();
        parse_messages(&serialize_all(&framed))
            .messages
            .into_iter()
            .filter_map(|m| match m.payload {
                NetlinkPayload::InnerMessage(inner) => Some(inner),
                _ => None,
            })
            .collect()
    }

    fn dumped(index: u32, ip: &str, flags: AddressFlags) -> RouteNetlinkMessage {
        let addr: IpAddr = ip.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = family_of(addr);
        m.header.index = index;
        m.header.prefix_len = 64;
        m.attributes = vec![
            AddressAttribute::Address(addr),
            AddressAttribute::Flags(flags),
        ];
        RouteNetlinkMessage::NewAddress(m)
    }

    #[test]
    fn an_ipv4_address_is_sent_as_local_and_address_without_nodad() {
        let m = address_message(7, net("192.0.2.1/24"));
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert_eq!((m.header.index, m.header.prefix_len), (7, 24));
        assert_eq!(m.header.flags, AddressHeaderFlags::empty());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            m.attributes,
            [AddressAttribute::Local(ip), AddressAttribute::Address(ip)]
        );
    }

    #[test]
    fn an_ipv6_address_is_sent_with_nodad_in_the_header_and_ifa_flags() {
        let m = address_message(3, net("2001:db8:5::1/128"));
        let back = match &wire(vec![RouteNetlinkMessage::NewAddress(m)])[0] {
            RouteNetlinkMessage::NewAddress(a) => a.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(back.header.family, AddressFamily::Inet6);
        assert_eq!((back.header.index, back.header.prefix_len), (3, 128));
        assert!(back.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(
            back.attributes
                .contains(&AddressAttribute::Flags(AddressFlags::Nodad))
        );
    }

    #[test]
    fn addresses_are_those_of_the_interface() {
        let dump = wire(vec![
            dumped(7, "192.0.2.1", AddressFlags::Permanent),
            dumped(8, "192.0.2.2", AddressFlags::Permanent),
        ]);
        let on7: Vec<IpAddr> = addresses_on(&dump, 7).map(|a| a.addr).collect();
        assert_eq!(on7, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(addresses_on(&dump, 9).count(), 0);
    }

    #[test]
    fn the_link_local_address_skips_global_failed_and_prefers_settled() {
        let settled = AddressFlags::Permanent;
        let dump = wire(vec![
            dumped(7, "2001:db8::1", settled),
            dumped(
                7,
                "fe80::dead",
                AddressFlags::Dadfailed | AddressFlags::Tentative,
            ),
            dumped(7, "fe80::1", AddressFlags::Tentative),
            dumped(7, "fe80::2", settled),
            dumped(8, "fe80::3", settled),
        ]);
        assert_eq!(link_local_of(&dump, 7), Some("fe80::2".parse().unwrap()));
        let only_tentative = wire(vec![dumped(7, "fe80::1", AddressFlags::Tentative)]);
        assert_eq!(
            link_local_of(&only_tentative, 7),
            Some("fe80::1".parse().unwrap())
        );
        let failed = wire(vec![dumped(7, "fe80::dead", AddressFlags::Dadfailed)]);
        assert_eq!(link_local_of(&failed, 7), None);
        assert_eq!(link_local_of(&dump, 9), None);
    }

    #[test]
    fn a_link_is_up_when_up_and_running() {
        let link = |index, flags| {
            let mut m = LinkMessage::default();
            m.header.index = index;
            m.header.flags = flags;
            RouteNetlinkMessage::NewLink(m)
        };
        let up = wire(vec![link(7, LinkFlags::Up | LinkFlags::Running)]);
        assert_eq!(link_up_of(&up, 7), Some(true));
        assert_eq!(link_up_of(&up, 8), None);
        let no_carrier = wire(vec![link(7, LinkFlags::Up)]);
        assert_eq!(link_up_of(&no_carrier, 7), Some(false));
        let down = wire(vec![link(7, LinkFlags::Running)]);
        assert_eq!(link_up_of(&down, 7), Some(false));
    }
}
