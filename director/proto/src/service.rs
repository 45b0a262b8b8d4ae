//! What names things across the cluster: a virtual service's protocol and
//! identity, and how a real server is reached. One type per concept, used
//! by the director's configuration, tables and health checks, by `xvsadm`
//! and by `xvs-agent`; the serde names are the words of the config file
//! and of the control socket (`"tcp"`, `"udp"`; `"nat"`, `"dr"`, `"tun"`).
//!
//! What only ipvsadm's grammar has (SCTP, firewall marks, GUE and GRE
//! tunnels, the `Local` listing word) is not here: the director has no
//! such feature, and `xvsadm` parses and refuses it on its own side.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A virtual service's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (ipvsadm's `-t`).
    Tcp,
    /// UDP (ipvsadm's `-u`).
    Udp,
}

impl Protocol {
    /// The word of the config file and the control socket: `tcp`, `udp`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// The IP protocol number (6, 17).
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    /// The name as ipvsadm lists it: `TCP`, `UDP`.
    #[must_use]
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

impl fmt::Display for Protocol {
    /// The config file's word (`tcp`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What names a virtual service: protocol, virtual address, port (0:
/// every port).
///
/// Displayed as ipvsadm lists it (`TCP 203.0.113.10:80`,
/// `UDP [2001:db8::1]:53`); [`ServiceId::compact`] gives the director's
/// own form (`tcp:203.0.113.10:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceId {
    /// Protocol.
    pub proto: Protocol,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
}

impl ServiceId {
    /// The service's virtual address and port.
    #[must_use]
    pub const fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }

    /// The form of the director's `--service` option, of health-check log
    /// lines and of the argument health hooks get: `tcp:203.0.113.10:80`,
    /// `udp:[2001:db8::1]:53`.
    #[must_use]
    pub const fn compact(&self) -> Compact<'_> {
        Compact(self)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto.ipvsadm_name(), self.addr())
    }
}

/// [`ServiceId::compact`]: `tcp:203.0.113.10:80`.
#[derive(Debug, Clone, Copy)]
pub struct Compact<'a>(&'a ServiceId);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.proto, self.0.addr())
    }
}

/// How a real server is reached (ipvsadm's `-m`, `-g`, `-i`).
///
/// Serialised as the config file and the control socket spell it: `nat`,
/// `dr`, `tun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardMethod {
    /// VS/NAT (`-m`, "Masq"): destination rewritten to the real server,
    /// replies come back through the director and are rewritten to the VIP.
    #[serde(rename = "nat")]
    Nat,
    /// VS/DR (`-g`, "Route", ipvsadm's default): only the destination MAC
    /// changes; the real server answers the client directly.
    #[serde(rename = "dr")]
    DirectRouting,
    /// VS/TUN (`-i`, "Tunnel"): IP-in-IP (or ip6ip6) to the real server,
    /// which answers the client directly.
    #[serde(rename = "tun")]
    Tunnel,
}

impl ForwardMethod {
    /// The compact code the director's connection table stores with each
    /// connection (the data plane's concern, kept beside the enum so that
    /// a new method cannot be added without one).
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Nat => 0,
            Self::DirectRouting => 1,
            Self::Tunnel => 2,
        }
    }

    /// The method with this code (codes out of range read as NAT; entries
    /// only ever hold codes written by [`ForwardMethod::code`]).
    #[must_use]
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::DirectRouting,
            2 => Self::Tunnel,
            _ => Self::Nat,
        }
    }

    /// Whether the director sees the real server's replies (only NAT): the
    /// others start with NO_OUTPUT and use the INPUT_ONLY TCP table.
    #[must_use]
    pub const fn sees_replies(self) -> bool {
        matches!(self, Self::Nat)
    }

    /// The word `ipvsadm -L` prints: `Masq`, `Route`, `Tunnel`.
    #[must_use]
    pub const fn ipvsadm_name(self) -> &'static str {
        match self {
            Self::Nat => "Masq",
            Self::DirectRouting => "Route",
            Self::Tunnel => "Tunnel",
        }
    }
}

impl fmt::Display for ForwardMethod {
    /// The word `ipvsadm -L` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ipvsadm_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_config_and_wire_words() {
        for (proto, word) in [(Protocol::Tcp, "\"tcp\""), (Protocol::Udp, "\"udp\"")] {
            assert_eq!(serde_json::to_string(&proto).unwrap(), word);
            assert_eq!(serde_json::from_str::<Protocol>(word).unwrap(), proto);
        }
        for (method, word) in [
            (ForwardMethod::Nat, "\"nat\""),
            (ForwardMethod::DirectRouting, "\"dr\""),
            (ForwardMethod::Tunnel, "\"tun\""),
        ] {
            assert_eq!(serde_json::to_string(&method).unwrap(), word);
            assert_eq!(serde_json::from_str::<ForwardMethod>(word).unwrap(), method);
        }
    }

    #[test]
    fn codes_round_trip_and_unknown_codes_read_as_nat() {
        for m in [
            ForwardMethod::Nat,
            ForwardMethod::DirectRouting,
            ForwardMethod::Tunnel,
        ] {
            assert_eq!(ForwardMethod::from_code(m.code()), m);
        }
        assert_eq!(ForwardMethod::from_code(200), ForwardMethod::Nat);
    }

    #[test]
    fn service_ids_print_as_ipvsadm_lists_them_and_compactly() {
        let id = ServiceId {
            proto: Protocol::Udp,
            vip: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        assert_eq!(id.to_string(), "UDP [2001:db8::1]:53");
        assert_eq!(id.compact().to_string(), "udp:[2001:db8::1]:53");
        let id = ServiceId {
            proto: Protocol::Tcp,
            vip: "203.0.113.10".parse().unwrap(),
            port: 80,
        };
        assert_eq!(id.to_string(), "TCP 203.0.113.10:80");
        assert_eq!(id.compact().to_string(), "tcp:203.0.113.10:80");
    }
}
