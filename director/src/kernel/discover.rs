//! Start-up facts about the configured interfaces: index, MAC, MTU,
//! addresses, default gateways. Three dumps (links, addresses, routes),
//! then pure functions over the messages.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use xvs_packet::ethernet::MacAddr;

use super::KernelError;
use super::socket::Netlink;
use crate::config::{ClusterConfig, IpNet};
use crate::pipeline::IfaceId;

/// How long discovery waits for any one answer.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the kernel said about one configured interface, and what the
/// director now uses (the config's values where it had them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInterface {
    /// Its number (position in the config).
    pub id: IfaceId,
    /// Its name.
    pub name: String,
    /// The kernel's index for it (the neighbour watcher needs it).
    pub ifindex: u32,
    /// The MAC in use.
    pub mac: MacAddr,
    /// The kernel's MAC (differs from `mac` when the config overrides it).
    pub kernel_mac: MacAddr,
    /// The MTU in use.
    pub mtu: u16,
    /// The kernel's MTU (capped at 65535).
    pub kernel_mtu: u16,
    /// The addresses in use.
    pub addresses: Vec<IpNet>,
    /// The gateways in use.
    pub gateways: Vec<IpAddr>,
    /// Which of the above came from the kernel rather than the config.
    pub from_kernel: FromKernel,
}

/// Which facts of an interface the kernel supplied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one flag per config key, read by the start-up log"
)]
pub struct FromKernel {
    /// `mac`.
    pub mac: bool,
    /// `mtu`.
    pub mtu: bool,
    /// `addresses`.
    pub addresses: bool,
    /// `gateways`.
    pub gateways: bool,
}

impl fmt::Display for KernelInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = |kernel: bool| if kernel { "kernel" } else { "config" };
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        write!(
            f,
            "interface \"{}\" (ifindex {}): mac {} ({}), mtu {} ({}), addresses {} ({}), gateways {} ({})",
            self.name,
            self.ifindex,
            self.mac,
            origin(self.from_kernel.mac),
            self.mtu,
            origin(self.from_kernel.mtu),
            list(self.addresses.iter().map(ToString::to_string).collect()),
            origin(self.from_kernel.addresses),
            list(self.gateways.iter().map(ToString::to_string).collect()),
            origin(self.from_kernel.gateways),
        )?;
        if self.mac != self.kernel_mac {
            write!(f, "; the kernel's mac is {}", self.kernel_mac)?;
        }
        Ok(())
    }
}

/// Finds every configured interface in the kernel and fills what the
/// config left out: `mac`, `mtu`, `addresses` (when empty) and `gateways`
/// (when empty). Returns the facts, one per interface in config order, for
/// the start-up log and for [`super::NeighbourWatcher::spawn`].
///
/// # Errors
/// A configured interface the kernel does not have, one without an
/// Ethernet address (when the config gives no `mac`), or a netlink failure.
pub fn discover(config: &mut ClusterConfig) -> Result<Vec<KernelInterface>, KernelError> {
    let mut nl = Netlink::open(DUMP_TIMEOUT).map_err(|source| KernelError::Socket { source })?;
    let failed = |what| move |source| KernelError::Netlink { what, source };
    let links = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(failed("the interfaces"))?;
    let addresses = nl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .map_err(failed("the interface addresses"))?;
    let mut routes = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut request = RouteMessage::default();
        request.header.address_family = family;
        routes.extend(
            nl.dump(RouteNetlinkMessage::GetRoute(request))
                .map_err(failed("the routes"))?,
        );
    }
    let links = links_of(&links);
    let mut found = Vec::with_capacity(config.interfaces.len());
    for (i, iface) in config.interfaces.iter_mut().enumerate() {
        let link = links.iter().find(|l| l.name == iface.name).ok_or_else(|| {
            KernelError::NoSuchInterface {
                name: iface.name.clone(),
            }
        })?;
        let kernel_mac = match (link.mac, iface.mac) {
            (Some(mac), _) => mac,
            (None, Some(mac)) => mac,
            (None, None) => {
                return Err(KernelError::NotEthernet {
                    name: iface.name.clone(),
                });
            }
        };
        let from_kernel = FromKernel {
            mac: iface.mac.is_none(),
            mtu: iface.mtu.is_none(),
            addresses: iface.addresses.is_empty(),
            gateways: iface.gateways.is_empty(),
        };
        let mac = *iface.mac.get_or_insert(kernel_mac);
        let mtu = *iface.mtu.get_or_insert(link.mtu);
        if from_kernel.addresses {
            iface.addresses = addresses_of(&addresses, link.index);
        }
        if from_kernel.gateways {
            iface.gateways = default_gateways(&routes, link.index);
        }
        found.push(KernelInterface {
            id: IfaceId(i as u16),
            name: iface.name.clone(),
            ifindex: link.index,
            mac,
            kernel_mac,
            mtu,
            kernel_mtu: link.mtu,
            addresses: iface.addresses.clone(),
            gateways: iface.gateways.clone(),
            from_kernel,
        });
    }
    Ok(found)
}

/// One link as discovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    /// None when the hardware address is not 6 bytes (or absent).
    pub mac: Option<MacAddr>,
    /// Capped at 65535 (loopback's is 65536).
    pub mtu: u16,
}

/// The links of a RTM_GETLINK dump.
pub(crate) fn links_of(messages: &[RouteNetlinkMessage]) -> Vec<Link> {
    messages
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .filter_map(|link| {
            let mut name = None;
            let mut mac = None;
            let mut mtu = 1500;
            for attr in &link.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Address(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
                    }
                    LinkAttribute::Mtu(m) => mtu = u16::try_from(*m).unwrap_or(u16::MAX),
                    _ => {}
                }
            }
            Some(Link {
                index: link.header.index,
                name: name?,
                mac,
                mtu,
            })
        })
        .collect()
}

/// The global-scope addresses of `ifindex` in a RTM_GETADDR dump (link-
/// and host-scope ones cannot be a tunnel's or an ICMP reply's source).
pub(crate) fn addresses_of(messages: &[RouteNetlinkMessage], ifindex: u32) -> Vec<IpNet> {
    messages
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })
        .filter(|a| a.header.index == ifindex && a.header.scope == AddressScope::Universe)
        .filter_map(|a| {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
            // peer's on a point-to-point link, the same otherwise.
            let mut local = None;
            let mut address = None;
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            let max = if a.header.family == AddressFamily::Inet6 {
                128
            } else {
                32
            };
            Some(IpNet {
                addr: local.or(address)?,
                prefix_len: a.header.prefix_len.min(max),
            })
        })
        .collect()
}

/// The next hops of the main table's default routes leaving through
/// `ifindex`, one per family: the lowest metric wins.
pub(crate) fn default_gateways(messages: &[RouteNetlinkMessage], ifindex: u32) -> Vec<IpAddr> {
    let mut best: [Option<(u32, IpAddr)>; 2] = [None, None];
    for route in messages.iter().filter_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => Some(r),
        _ => None,
    }) {
        if route.header.destination_prefix_length != 0 || route.header.kind != RouteType::Unicast {
            continue;
        }
        let mut table = u32::from(route.header.table);
        let mut oif = None;
        let mut gateway = None;
        let mut metric = 0;
        let mut multipath = None;
        for attr in &route.attributes {
            match attr {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(g) => gateway = ip_of(g),
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::MultiPath(hops) => multipath = Some(hops),
                _ => {}
            }
        }
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        let via = if oif == Some(ifindex) {
            gateway
        } else {
            multipath.and_then(|hops| {
                hops.iter()
                    .filter(|h| h.interface_index == ifindex)
                    .find_map(|h| {
                        h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => ip_of(g),
                            _ => None,
                        })
                    })
            })
        };
        let Some(via) = via else { continue };
        let slot = &mut best[usize::from(via.is_ipv6())];
        if slot.is_none_or(|(m, _)| metric < m) {
            *slot = Some((metric, via));
        }
    }
    best.into_iter().flatten().map(|(_, ip)| ip).collect()
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::socket::{parse_messages, serialize_all};
    use netlink_packet_route::route::RouteNextHop;

    fn link(index: u32, name: &str, mac: &[u8], mtu: u32) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(mtu),
        ];
        RouteNetlinkMessage::NewLink(m)
    }

    fn address(index: u32, ip: &str, prefix: u8, scope: AddressScope) -> RouteNetlinkMessage {
        let ip: IpAddr = ip.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = crate::kernel::family_of(ip);
        m.header.index = index;
        m.header.prefix_len = prefix;
        m.header.scope = scope;
        m.attributes = vec![AddressAttribute::Address(ip)];
        if ip.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(ip));
        }
        RouteNetlinkMessage::NewAddress(m)
    }

    fn default_route(table: u32, oif: u32, via: &str, metric: u32) -> RouteNetlinkMessage {
        let via: IpAddr = via.parse().unwrap();
        let mut m = RouteMessage::default();
        m.header.address_family = crate::kernel::family_of(via);
        m.header.kind = RouteType::Unicast;
        m.header.table = table.min(255) as u8;
        m.attributes = vec![
            RouteAttribute::Table(table),
            RouteAttribute::Oif(oif),
            RouteAttribute::Gateway(via.into()),
            RouteAttribute::Priority(metric),
        ];
        RouteNetlinkMessage::NewRoute(m)
    }

    /// Through bytes and back, as the kernel would deliver them.
    fn wire(messages: Vec<RouteNetlinkMessage>) -> Vec<RouteNetlinkMessage> {
        let bytes = serialize_all(&messages.into_iter().map(|m| (0, m)).collect::<Vec<_>>());
        let received = parse_messages(&bytes);
        assert_eq!(received.undecodable, 0);
        received
            .messages
            .into_iter()
            .filter_map(|m| match m.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(inner) => Some(inner),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn links_give_name_mac_and_a_capped_mtu() {
        let links = links_of(&wire(vec![
            link(1, "lo", &[0; 6], 65536),
            link(7, "eth0", &[2, 0, 0, 0, 1, 1], 9000),
            link(8, "tun0", &[], 1400),
        ]));
        assert_eq!(links.len(), 3);
        assert_eq!(links[0].mtu, u16::MAX);
        assert_eq!(
            links[1],
            Link {
                index: 7,
                name: "eth0".into(),
                mac: Some(MacAddr([2, 0, 0, 0, 1, 1])),
                mtu: 9000
            }
        );
        assert_eq!(links[2].mac, None, "no Ethernet address");
    }

    #[test]
    fn addresses_keep_only_the_interfaces_global_ones() {
        let dump = wire(vec![
            address(7, "192.0.2.1", 24, AddressScope::Universe),
            address(7, "fe80::1", 64, AddressScope::Link),
            address(7, "2001:db8::1", 64, AddressScope::Universe),
            address(8, "198.51.100.1", 24, AddressScope::Universe),
            address(1, "127.0.0.1", 8, AddressScope::Host),
        ]);
        let got: Vec<String> = addresses_of(&dump, 7)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["192.0.2.1/24", "2001:db8::1/64"]);
    }

    #[test]
    fn gateways_are_main_table_defaults_through_the_interface_lowest_metric_first() {
        let mut multipath = RouteMessage::default();
        multipath.header.address_family = AddressFamily::Inet6;
        multipath.header.kind = RouteType::Unicast;
        multipath.header.table = RouteHeader::RT_TABLE_MAIN;
        let mut hop = RouteNextHop::default();
        hop.interface_index = 7;
        hop.attributes = vec![RouteAttribute::Gateway(
            "2001:db8::fe".parse::<IpAddr>().unwrap().into(),
        )];
        multipath.attributes = vec![RouteAttribute::MultiPath(vec![hop])];
        let dump = wire(vec![
            default_route(254, 7, "192.0.2.253", 200),
            default_route(254, 7, "192.0.2.254", 100),
            default_route(100, 7, "192.0.2.99", 0),
            default_route(254, 8, "198.51.100.254", 0),
            RouteNetlinkMessage::NewRoute(multipath),
        ]);
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(
            default_gateways(&dump, 7),
            ips(&["192.0.2.254", "2001:db8::fe"])
        );
        assert_eq!(default_gateways(&dump, 8), ips(&["198.51.100.254"]));
        assert!(default_gateways(&dump, 9).is_empty());
    }

    #[test]
    fn the_start_up_line_says_where_each_fact_came_from() {
        let k = KernelInterface {
            id: IfaceId(0),
            name: "eth0".into(),
            ifindex: 7,
            mac: MacAddr([2, 0, 0, 0, 1, 1]),
            kernel_mac: MacAddr([2, 0, 0, 0, 1, 2]),
            mtu: 1500,
            kernel_mtu: 1500,
            addresses: vec!["192.0.2.1/24".parse().unwrap()],
            gateways: vec![],
            from_kernel: FromKernel {
                mac: false,
                mtu: true,
                addresses: true,
                gateways: true,
            },
        };
        assert_eq!(
            k.to_string(),
            "interface \"eth0\" (ifindex 7): mac 02:00:00:00:01:01 (config), mtu 1500 (kernel), addresses 192.0.2.1/24 (kernel), gateways none (kernel); the kernel's mac is 02:00:00:00:01:02"
        );
    }
}
