//! Keeping the kernel out of the director's traffic in AF_PACKET mode
//! (and, with `[ha]`, after a director was killed: `daemon::data_plane`).
//!
//! An AF_PACKET socket taps a *copy* of every frame: the kernel still
//! receives the original, and would answer a packet for a VIP with a TCP
//! reset or an ICMP port-unreachable, or forward a NAT reply un-rewritten,
//! while the director forwards it too. [`KernelFilter`] installs an
//! nftables table (`netdev xvs_afpacket`) with one ingress chain per driven
//! interface at priority -500 that drops exactly the frames the director
//! handles. Packet taps run before the netdev ingress hook (in
//! `__netif_receive_skb_core` the `ptype_all` taps come first, then tc,
//! then netfilter ingress), so the director still sees every frame that
//! the table drops; `tests/afpacket.rs` checks that on a live kernel.
//!
//! What is dropped:
//! - on every interface, frames to a virtual service (proto, VIP, port;
//!   port 0 = any port), and ICMP/ICMPv6 errors to a VIP (the pipeline
//!   steers them to the connection they quote). ICMP echo to a VIP is
//!   left to the kernel, which answers it, as the pipeline expects;
//! - on server-side interfaces (NAT), frames from a real server's
//!   (proto, address, port) and ICMP errors from a real server's address
//!   whose destination is not one of the director's own addresses: the
//!   replies the pipeline rewrites. Health-check replies, addressed to the
//!   director itself, still reach the kernel.
//!
//! The table is installed and replaced in one `nft -f -` transaction (a
//! stale table from a crashed run goes in the same step), and deleted on
//! drop.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use xvs_packet::IpProtocol;

use super::IoError;
use crate::types::InterfaceRole;

/// The nftables table the filter owns.
pub const TABLE: &str = "xvs_afpacket";

/// Netdev ingress priority of the chains: early, before anything an
/// operator is likely to have at the default 0.
pub const PRIORITY: i32 = -500;

/// One interface the director drives, and which side it faces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInterface {
    /// Kernel name.
    pub name: String,
    /// Client side (VIPs) or server side (real servers).
    pub role: InterfaceRole,
}

/// What the kernel must leave to the director.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterRule {
    /// A virtual service: frames to (proto, VIP, port), port 0 = any
    /// port; also ICMP errors to the VIP.
    ToService {
        /// Transport protocol.
        proto: IpProtocol,
        /// The virtual address.
        vip: IpAddr,
        /// The service port, 0 for every port.
        port: u16,
    },
    /// A NAT real server: its replies (from proto, addr, port) to anything
    /// but the director's own addresses; also its ICMP errors.
    FromRealServer {
        /// Transport protocol.
        proto: IpProtocol,
        /// The real server's address.
        addr: IpAddr,
        /// The real server's port, 0 for every port.
        port: u16,
    },
    /// The director's own addresses: traffic from a real server to them
    /// (health checks, agent reports) stays with the kernel.
    LocalAddresses(Vec<IpAddr>),
}

/// ICMP types that are errors (and quote the packet that caused them).
const ICMP_ERRORS: &str =
    "{ destination-unreachable, source-quench, redirect, time-exceeded, parameter-problem }";
const ICMPV6_ERRORS: &str =
    "{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }";

fn family(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

fn icmp_errors(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("icmp type {ICMP_ERRORS}"),
        IpAddr::V6(_) => format!("icmpv6 type {ICMPV6_ERRORS}"),
    }
}

/// `meta l4proto tcp th dport 80`, or without the port match for port 0.
fn transport(proto: IpProtocol, direction: &str, port: u16) -> String {
    let name = match proto {
        IpProtocol::Tcp => "tcp".to_owned(),
        IpProtocol::Udp => "udp".to_owned(),
        other => u8::from(other).to_string(),
    };
    if port == 0 {
        format!("meta l4proto {name}")
    } else {
        format!("meta l4proto {name} th {direction} {port}")
    }
}

/// An interface name safe to quote in a ruleset: what `ip link` accepts,
/// minus quotes, backslashes and anything outside printable ASCII.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b))
}

/// Generates the ruleset for `interfaces` and `rules`: one `nft -f`
/// transaction that also removes a stale table of the same name.
///
/// # Errors
/// An interface name that cannot be put in a ruleset safely.
pub fn ruleset(interfaces: &[FilterInterface], rules: &[FilterRule]) -> Result<String, IoError> {
    let mut local = BTreeSet::new();
    for rule in rules {
        if let FilterRule::LocalAddresses(addrs) = rule {
            local.extend(addrs.iter().copied());
        }
    }
    let not_local = |addr: IpAddr| -> String {
        let same: Vec<String> = local
            .iter()
            .filter(|l| l.is_ipv4() == addr.is_ipv4())
            .map(ToString::to_string)
            .collect();
        if same.is_empty() {
            String::new()
        } else {
            format!(" {} daddr != {{ {} }}", family(addr), same.join(", "))
        }
    };

    let mut client = String::new();
    let mut server = String::new();
    let mut vips = BTreeSet::new();
    let mut real_servers = BTreeSet::new();
    for rule in rules {
        match *rule {
            FilterRule::ToService { proto, vip, port } => {
                let _ = writeln!(
                    client,
                    "\t\t{} daddr {vip} {} drop",
                    family(vip),
                    transport(proto, "dport", port)
                );
                vips.insert(vip);
            }
            FilterRule::FromRealServer { proto, addr, port } => {
                let _ = writeln!(
                    server,
                    "\t\t{} saddr {addr}{} {} drop",
                    family(addr),
                    not_local(addr),
                    transport(proto, "sport", port)
                );
                real_servers.insert(addr);
            }
            FilterRule::LocalAddresses(_) => {}
        }
    }
    for vip in vips {
        let _ = writeln!(
            client,
            "\t\t{} daddr {vip} {} drop",
            family(vip),
            icmp_errors(vip)
        );
    }
    for addr in real_servers {
        let _ = writeln!(
            server,
            "\t\t{} saddr {addr}{} {} drop",
            family(addr),
            not_local(addr),
            icmp_errors(addr)
        );
    }

    let mut out = String::new();
    // Declaring the table first makes the delete succeed whether or not a
    // stale one exists; the three steps are one atomic transaction.
    let _ = writeln!(out, "table netdev {TABLE}");
    let _ = writeln!(out, "delete table netdev {TABLE}");
    let _ = writeln!(out, "table netdev {TABLE} {{");
    for (index, iface) in interfaces.iter().enumerate() {
        if !valid_name(&iface.name) {
            return Err(IoError::Other(format!(
                "interface name {:?} cannot be used in an nftables rule",
                iface.name
            )));
        }
        let _ = writeln!(out, "\tchain ingress{index} {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook ingress device \"{}\" priority {PRIORITY}; policy accept;",
            iface.name
        );
        out.push_str(&client);
        if iface.role == InterfaceRole::Server {
            out.push_str(&server);
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// Runs `program -f -` with `script` on its standard input.
fn run_nft(program: &OsStr, script: &str) -> Result<(), IoError> {
    let mut child = Command::new(program)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IoError::Other(format!(
                    "the AF_PACKET backend and [ha] need nftables to keep the kernel from \
                     answering traffic the director handles, and `{}` was not found: install \
                     nftables (Debian: apt-get install nftables)",
                    program.to_string_lossy()
                ))
            } else {
                IoError::Other(format!(
                    "could not run `{}`: {e}",
                    program.to_string_lossy()
                ))
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error shows up as nft's own failure below.
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| IoError::Other(format!("waiting for `{}`: {e}", program.to_string_lossy())))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(IoError::Other(format!(
            "`{} -f -` failed ({}): {}",
            program.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The nftables table that keeps the kernel from handling the director's
/// traffic in AF_PACKET mode; removed on drop.
#[derive(Debug)]
pub struct KernelFilter {
    program: std::ffi::OsString,
    installed: bool,
}

impl KernelFilter {
    /// Installs the table for `interfaces` and `rules`, replacing a stale
    /// one left by an earlier run.
    ///
    /// # Errors
    /// `nft` missing ("install nftables"), refused the ruleset, or an
    /// interface name is unusable.
    pub fn install(interfaces: &[FilterInterface], rules: &[FilterRule]) -> Result<Self, IoError> {
        Self::install_with(OsStr::new("nft"), interfaces, rules)
    }

    fn install_with(
        program: &OsStr,
        interfaces: &[FilterInterface],
        rules: &[FilterRule],
    ) -> Result<Self, IoError> {
        let script = ruleset(interfaces, rules)?;
        run_nft(program, &script)?;
        Ok(Self {
            program: program.to_owned(),
            installed: true,
        })
    }

    /// Replaces the table's rules with `rules` in one transaction (the
    /// kernel never sees a moment without a filter).
    ///
    /// # Errors
    /// `nft` refused the ruleset; the previous one stays.
    pub fn update(
        &mut self,
        interfaces: &[FilterInterface],
        rules: &[FilterRule],
    ) -> Result<(), IoError> {
        let script = ruleset(interfaces, rules)?;
        run_nft(&self.program, &script)
    }

    /// Deletes the table.
    ///
    /// # Errors
    /// `nft` failed (the table may already be gone).
    pub fn remove(mut self) -> Result<(), IoError> {
        self.installed = false;
        run_nft(&self.program, &format!("delete table netdev {TABLE}\n"))
    }
}

impl Drop for KernelFilter {
    fn drop(&mut self) {
        if self.installed {
            // Nothing to report to from a destructor; `remove` says why.
            let _ = run_nft(&self.program, &format!("delete table netdev {TABLE}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, role: InterfaceRole) -> FilterInterface {
        FilterInterface {
            name: name.to_owned(),
            role,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ruleset_drops_services_everywhere_and_replies_on_the_server_side() {
        let rules = [
            FilterRule::ToService {
                proto: IpProtocol::Tcp,
                vip: ip("192.0.2.10"),
                port: 80,
            },
            FilterRule::ToService {
                proto: IpProtocol::Udp,
                vip: ip("2001:db8::10"),
                port: 0,
            },
            FilterRule::FromRealServer {
                proto: IpProtocol::Tcp,
                addr: ip("198.51.100.11"),
                port: 8080,
            },
            FilterRule::LocalAddresses(vec![ip("198.51.100.1"), ip("192.0.2.1")]),
        ];
        let text = ruleset(
            &[
                iface("d-cli", InterfaceRole::Client),
                iface("d-srv", InterfaceRole::Server),
            ],
            &rules,
        )
        .expect("valid");
        let expected = "\
table netdev xvs_afpacket
delete table netdev xvs_afpacket
table netdev xvs_afpacket {
\tchain ingress0 {
\t\ttype filter hook ingress device \"d-cli\" priority -500; policy accept;
\t\tip daddr 192.0.2.10 meta l4proto tcp th dport 80 drop
\t\tip6 daddr 2001:db8::10 meta l4proto udp drop
\t\tip daddr 192.0.2.10 icmp type { destination-unreachable, source-quench, redirect, time-exceeded, parameter-problem } drop
\t\tip6 daddr 2001:db8::10 icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } drop
\t}
\tchain ingress1 {
\t\ttype filter hook ingress device \"d-srv\" priority -500; policy accept;
\t\tip daddr 192.0.2.10 meta l4proto tcp th dport 80 drop
\t\tip6 daddr 2001:db8::10 meta l4proto udp drop
\t\tip daddr 192.0.2.10 icmp type { destination-unreachable, source-quench, redirect, time-exceeded, parameter-problem } drop
\t\tip6 daddr 2001:db8::10 icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } drop
\t\tip saddr 198.51.100.11 ip daddr != { 192.0.2.1, 198.51.100.1 } meta l4proto tcp th sport 8080 drop
\t\tip saddr 198.51.100.11 ip daddr != { 192.0.2.1, 198.51.100.1 } icmp type { destination-unreachable, source-quench, redirect, time-exceeded, parameter-problem } drop
\t}
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn without_local_addresses_of_its_family_a_reply_rule_has_no_exclusion() {
        let rules = [
            FilterRule::FromRealServer {
                proto: IpProtocol::Udp,
                addr: ip("2001:db8:1::11"),
                port: 53,
            },
            FilterRule::LocalAddresses(vec![ip("198.51.100.1")]),
        ];
        let text = ruleset(&[iface("d-srv", InterfaceRole::Server)], &rules).expect("valid");
        assert!(text.contains("\t\tip6 saddr 2001:db8:1::11 meta l4proto udp th sport 53 drop\n"));
    }

    #[test]
    fn an_unquotable_interface_name_is_refused() {
        for name in ["", "a\"b", "eth0 x", "a-name-that-is-too-long"] {
            let result = ruleset(&[iface(name, InterfaceRole::Client)], &[]);
            assert!(result.is_err(), "{name:?}");
        }
    }

    #[test]
    fn a_missing_nft_says_to_install_nftables() {
        let err = KernelFilter::install_with(
            OsStr::new("/nonexistent/xvs-test-nft"),
            &[iface("d-cli", InterfaceRole::Client)],
            &[],
        )
        .expect_err("no such program");
        assert!(err.to_string().contains("install nftables"), "{err}");
    }

    #[test]
    fn a_failing_nft_reports_its_error_output() {
        // `false` reads no ruleset and fails: the status is reported.
        let err = KernelFilter::install_with(
            OsStr::new("false"),
            &[iface("d-cli", InterfaceRole::Client)],
            &[],
        )
        .expect_err("false fails");
        assert!(err.to_string().contains("failed"), "{err}");
    }
}
