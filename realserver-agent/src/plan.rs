//! What `xvs-agent setup` does, as a list of actions computed from the
//! operator's options alone: pure, so that every combination is tested
//! without root.
//!
//! The steps are the ones the LVS documentation has an operator do by hand
//! on a real server:
//!
//! - **DR and TUN:** the real server must accept packets addressed to the
//!   VIP and answer from it, without ever claiming the VIP on the wire
//!   (only the director may answer ARP for it). Each VIP goes on `lo` as a
//!   host address, and for IPv4 `arp_ignore=1` (answer ARP only for
//!   addresses of the interface the request came in on) and
//!   `arp_announce=2` (never use the VIP as the sender of our own ARP
//!   requests) are set on `all`, on `lo` and on the given interface. The
//!   ARP sysctls come first, so that there is no moment when the VIP is
//!   on `lo` and answered by ARP. IPv6 needs nothing: neighbour discovery
//!   answers a solicitation only for addresses of the interface it
//!   arrived on, so a VIP on `lo` is never advertised (the integration
//!   test checks this).
//! - **TUN:** the director sends the client's packet inside an outer
//!   IPv4/IPv6 header addressed to the real server; something must strip
//!   it. Either kernel tunnel devices in collect-metadata mode, which
//!   receive every tunnel packet no more specific tunnel claims —
//!   `xvs-tun4` (ipip: IPv4 in IPv4) for IPv4 VIPs and `xvs-tun6` (ip6tnl
//!   mode any: IPv4 or IPv6 in IPv6) — with `rp_filter` off on them and on
//!   `all`, since the decapsulated packet arrives on the tunnel device
//!   while the route back to the client does not go through it; or our
//!   XDP program on the interface (see `xdp/decap.bpf.c`), which handles
//!   all four combinations, IPv6 in IPv4 included, which the kernel path
//!   does not (that would need a `sit` device).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The forwarding method the director uses for this real server: the
/// workspace's one type for it. Only VS/DR and VS/TUN need this host
/// prepared; a VS/NAT real server needs nothing but its route back through
/// the director, and [`plan`] says so.
pub use xvs_proto::ForwardMethod;

/// How VS/TUN packets are decapsulated, as the operator asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecapMode {
    /// Kernel tunnel devices if this kernel has them, else XDP.
    Auto,
    /// Our XDP program on the interface.
    Xdp,
    /// Kernel tunnel devices only.
    Kernel,
}

/// The decapsulation actually in use, recorded in the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decap {
    /// Kernel tunnel devices.
    Kernel,
    /// Our XDP program.
    Xdp,
}

impl fmt::Display for Decap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decap::Kernel => "kernel tunnel devices",
            Decap::Xdp => "XDP",
        })
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOptions {
    /// The virtual addresses this real server serves.
    pub vips: Vec<IpAddr>,
    /// The forwarding method.
    pub method: ForwardMethod,
    /// The interface facing the director, if given.
    pub iface: Option<String>,
    /// How to decapsulate (TUN only; `None` means the default, auto).
    pub decap: Option<DecapMode>,
}

/// A kernel tunnel device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelKind {
    /// `ipip`: IPv4 in IPv4.
    Ipip,
    /// `ip6tnl mode any`: IPv4 or IPv6 in IPv6.
    Ip6tnl,
}

impl TunnelKind {
    /// The `ip link add NAME` arguments that follow the name.
    #[must_use]
    pub fn ip_link_args(self) -> &'static [&'static str] {
        match self {
            TunnelKind::Ipip => &["type", "ipip", "external"],
            TunnelKind::Ip6tnl => &["type", "ip6tnl", "external", "mode", "any"],
        }
    }
}

/// One change to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A host address (/32 or /128) on a device.
    AddAddress {
        /// The device (`lo`).
        dev: String,
        /// The address.
        addr: IpAddr,
        /// 32 or 128.
        prefix_len: u8,
    },
    /// A sysctl, by its path under `/proc/sys` (slashes: interface names
    /// may hold dots).
    SetSysctl {
        /// e.g. `net/ipv4/conf/all/arp_ignore`.
        path: String,
        /// The value to write.
        value: String,
    },
    /// A kernel tunnel device, created and brought up.
    CreateTunnel {
        /// Its name.
        name: String,
        /// Its type.
        kind: TunnelKind,
    },
    /// Our XDP decapsulation program attached to a device.
    AttachXdp {
        /// The device.
        dev: String,
    },
}

/// Shows a sysctl path the way `sysctl(8)` names it: slashes become dots
/// and the dots of a name (`eth0.100`) become slashes.
#[must_use]
pub fn sysctl_name(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AddAddress {
                dev,
                addr,
                prefix_len,
            } => write!(f, "add {addr}/{prefix_len} to {dev}"),
            Action::SetSysctl { path, value } => write!(f, "set {} = {value}", sysctl_name(path)),
            Action::CreateTunnel { name, kind } => {
                write!(
                    f,
                    "create tunnel {name} ({})",
                    kind.ip_link_args().join(" ")
                )
            }
            Action::AttachXdp { dev } => write!(f, "attach XDP decapsulation to {dev}"),
        }
    }
}

/// Name of the kernel tunnel device for IPv4 in IPv4.
pub const TUNNEL_V4: &str = "xvs-tun4";
/// Name of the kernel tunnel device for anything in IPv6.
pub const TUNNEL_V6: &str = "xvs-tun6";

/// The actions of a set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// For every method: sysctls, then the VIPs on `lo`.
    pub common: Vec<Action>,
    /// What the operator's `--decap` allows, in order of preference; empty
    /// for DR. Each entry is tried whole; the first that works is kept.
    pub decap: Vec<(Decap, Vec<Action>)>,
}

/// Options that cannot work, said before anything is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No `--vip`.
    #[error("no VIP given: name each virtual address with --vip ADDR")]
    NoVip,
    /// A VIP that cannot be a service address.
    #[error("{0} cannot be a VIP: give the unicast address clients connect to")]
    BadVip(IpAddr),
    /// VS/NAT asked for: nothing to prepare.
    #[error("a VS/NAT real server needs no set-up: route its replies through the director")]
    NatNeedsNoSetup,
    /// `--decap` with DR.
    #[error("--decap applies to --method tun only: VS/DR packets are not encapsulated")]
    DecapWithoutTunnel,
    /// XDP asked for without an interface.
    #[error("--decap xdp needs --iface: the interface the director's tunnel packets arrive on")]
    XdpWithoutIface,
    /// A bad interface name.
    #[error("{0:?} is not an interface name")]
    BadIface(String),
}

fn valid_iface(name: &str) -> bool {
    // The kernel's rule (dev_valid_name): 1..=15 bytes, no '/', ':' or
    // whitespace, not "." or "..".
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

fn valid_vip(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local())
        }
    }
}

fn sysctl(path: String, value: &str) -> Action {
    Action::SetSysctl {
        path,
        value: value.to_owned(),
    }
}

/// Computes the actions for `opts`.
pub fn plan(opts: &SetupOptions) -> Result<Plan, PlanError> {
    if opts.vips.is_empty() {
        return Err(PlanError::NoVip);
    }
    if let Some(&bad) = opts.vips.iter().find(|&&v| !valid_vip(v)) {
        return Err(PlanError::BadVip(bad));
    }
    if let Some(iface) = &opts.iface
        && !valid_iface(iface)
    {
        return Err(PlanError::BadIface(iface.clone()));
    }
    let decap_mode = match (opts.method, opts.decap) {
        (ForwardMethod::Nat, _) => return Err(PlanError::NatNeedsNoSetup),
        (ForwardMethod::DirectRouting, Some(_)) => return Err(PlanError::DecapWithoutTunnel),
        (ForwardMethod::DirectRouting, None) => None,
        (ForwardMethod::Tunnel, mode) => Some(mode.unwrap_or(DecapMode::Auto)),
    };
    if decap_mode == Some(DecapMode::Xdp) && opts.iface.is_none() {
        return Err(PlanError::XdpWithoutIface);
    }

    // Each VIP once, in the order given.
    let mut seen = BTreeSet::new();
    let vips: Vec<IpAddr> = opts
        .vips
        .iter()
        .copied()
        .filter(|v| seen.insert(*v))
        .collect();
    let any_v4 = vips.iter().any(IpAddr::is_ipv4);

    let mut common = Vec::new();
    if any_v4 {
        let mut devs = vec!["all", "lo"];
        if let Some(iface) = &opts.iface
            && iface != "lo"
        {
            devs.push(iface);
        }
        for dev in devs {
            common.push(sysctl(format!("net/ipv4/conf/{dev}/arp_ignore"), "1"));
            common.push(sysctl(format!("net/ipv4/conf/{dev}/arp_announce"), "2"));
        }
    }
    for &addr in &vips {
        common.push(Action::AddAddress {
            dev: "lo".to_owned(),
            addr,
            prefix_len: if addr.is_ipv4() { 32 } else { 128 },
        });
    }

    let kernel = || {
        let mut actions = Vec::new();
        let mut tunnels = Vec::new();
        if any_v4 {
            tunnels.push((TUNNEL_V4, TunnelKind::Ipip));
        }
        tunnels.push((TUNNEL_V6, TunnelKind::Ip6tnl));
        for (name, kind) in &tunnels {
            actions.push(Action::CreateTunnel {
                name: (*name).to_owned(),
                kind: *kind,
            });
        }
        actions.push(sysctl("net/ipv4/conf/all/rp_filter".to_owned(), "0"));
        for (name, _) in &tunnels {
            actions.push(sysctl(format!("net/ipv4/conf/{name}/rp_filter"), "0"));
        }
        (Decap::Kernel, actions)
    };
    let xdp = |iface: &String| (Decap::Xdp, vec![Action::AttachXdp { dev: iface.clone() }]);

    let decap = match decap_mode {
        None => Vec::new(),
        Some(DecapMode::Kernel) => vec![kernel()],
        Some(DecapMode::Xdp) => opts.iface.iter().map(xdp).collect(),
        Some(DecapMode::Auto) => std::iter::once(kernel())
            .chain(opts.iface.iter().map(xdp))
            .collect(),
    };
    Ok(Plan { common, decap })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(
        vips: &[&str],
        method: ForwardMethod,
        iface: Option<&str>,
        decap: Option<DecapMode>,
    ) -> SetupOptions {
        SetupOptions {
            vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
            method,
            iface: iface.map(str::to_owned),
            decap,
        }
    }

    fn shown(actions: &[Action]) -> Vec<String> {
        actions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn dr_sets_arp_sysctls_before_the_vips_go_on_lo() {
        let p = plan(&opts(
            &["192.0.2.100", "2001:db8::100", "192.0.2.100"],
            ForwardMethod::DirectRouting,
            Some("eth0"),
            None,
        ))
        .unwrap();
        assert_eq!(
            shown(&p.common),
            [
                "set net.ipv4.conf.all.arp_ignore = 1",
                "set net.ipv4.conf.all.arp_announce = 2",
                "set net.ipv4.conf.lo.arp_ignore = 1",
                "set net.ipv4.conf.lo.arp_announce = 2",
                "set net.ipv4.conf.eth0.arp_ignore = 1",
                "set net.ipv4.conf.eth0.arp_announce = 2",
                "add 192.0.2.100/32 to lo",
                "add 2001:db8::100/128 to lo",
            ]
        );
        assert!(p.decap.is_empty());
    }

    #[test]
    fn ipv6_only_vips_touch_no_arp_sysctl_and_need_no_interface() {
        let p = plan(&opts(
            &["2001:db8::100"],
            ForwardMethod::DirectRouting,
            None,
            None,
        ))
        .unwrap();
        assert_eq!(shown(&p.common), ["add 2001:db8::100/128 to lo"]);
    }

    #[test]
    fn tun_auto_prefers_kernel_tunnels_then_xdp() {
        let p = plan(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            None,
        ))
        .unwrap();
        let kinds: Vec<Decap> = p.decap.iter().map(|(d, _)| *d).collect();
        assert_eq!(kinds, [Decap::Kernel, Decap::Xdp]);
        assert_eq!(
            shown(&p.decap[0].1),
            [
                "create tunnel xvs-tun4 (type ipip external)",
                "create tunnel xvs-tun6 (type ip6tnl external mode any)",
                "set net.ipv4.conf.all.rp_filter = 0",
                "set net.ipv4.conf.xvs-tun4.rp_filter = 0",
                "set net.ipv4.conf.xvs-tun6.rp_filter = 0",
            ]
        );
        assert_eq!(shown(&p.decap[1].1), ["attach XDP decapsulation to eth0"]);
    }

    #[test]
    fn tun_auto_without_an_interface_can_only_use_the_kernel() {
        let p = plan(&opts(
            &["2001:db8::100"],
            ForwardMethod::Tunnel,
            None,
            Some(DecapMode::Auto),
        ))
        .unwrap();
        assert_eq!(p.decap.len(), 1);
        assert_eq!(
            shown(&p.decap[0].1),
            [
                "create tunnel xvs-tun6 (type ip6tnl external mode any)",
                "set net.ipv4.conf.all.rp_filter = 0",
                "set net.ipv4.conf.xvs-tun6.rp_filter = 0",
            ]
        );
    }

    #[test]
    fn tun_xdp_and_kernel_are_taken_at_their_word() {
        let x = plan(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            Some(DecapMode::Xdp),
        ))
        .unwrap();
        assert_eq!(
            x.decap,
            [(Decap::Xdp, vec![Action::AttachXdp { dev: "eth0".into() }])]
        );
        let k = plan(&opts(
            &["192.0.2.100"],
            ForwardMethod::Tunnel,
            Some("eth0"),
            Some(DecapMode::Kernel),
        ))
        .unwrap();
        assert_eq!(k.decap.len(), 1);
        assert_eq!(k.decap[0].0, Decap::Kernel);
    }

    #[test]
    fn impossible_options_are_refused_before_anything_changes() {
        let cases = [
            (
                opts(&[], ForwardMethod::DirectRouting, None, None),
                PlanError::NoVip,
            ),
            (
                opts(&["0.0.0.0"], ForwardMethod::DirectRouting, None, None),
                PlanError::BadVip("0.0.0.0".parse().unwrap()),
            ),
            (
                opts(&["ff02::1"], ForwardMethod::DirectRouting, None, None),
                PlanError::BadVip("ff02::1".parse().unwrap()),
            ),
            (
                opts(
                    &["192.0.2.1"],
                    ForwardMethod::DirectRouting,
                    None,
                    Some(DecapMode::Xdp),
                ),
                PlanError::DecapWithoutTunnel,
            ),
            (
                opts(
                    &["192.0.2.1"],
                    ForwardMethod::Tunnel,
                    None,
                    Some(DecapMode::Xdp),
                ),
                PlanError::XdpWithoutIface,
            ),
            (
                opts(&["192.0.2.1"], ForwardMethod::Nat, None, None),
                PlanError::NatNeedsNoSetup,
            ),
            (
                opts(
                    &["192.0.2.1"],
                    ForwardMethod::DirectRouting,
                    Some("../etc"),
                    None,
                ),
                PlanError::BadIface("../etc".into()),
            ),
            (
                opts(
                    &["192.0.2.1"],
                    ForwardMethod::DirectRouting,
                    Some("a-name-far-too-long"),
                    None,
                ),
                PlanError::BadIface("a-name-far-too-long".into()),
            ),
        ];
        for (o, want) in cases {
            assert_eq!(plan(&o), Err(want), "{o:?}");
        }
    }

    #[test]
    fn sysctl_names_read_like_sysctl() {
        assert_eq!(
            sysctl_name("net/ipv4/conf/all/arp_ignore"),
            "net.ipv4.conf.all.arp_ignore"
        );
        assert_eq!(
            sysctl_name("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }
}
