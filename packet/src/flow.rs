//! Flow keys: the 5-tuple that names one direction of a connection.
//!
//! A key is always written in the direction the packet travels (`src` sent
//! it to `dst`), so the other direction of the same connection is
//! [`FlowKey::reversed`]. ICMP echo uses the echo identifier as the client's
//! "port": a request is keyed `(client, id) → (server, 0)` and its reply
//! `(server, 0) → (client, id)`, which is exactly the reverse.
//!
//! An ICMP error travels opposite to the packet it quotes, so its key is the
//! reverse of the quoted packet's key: it lands on the same table entry as
//! ordinary packets travelling in the error's direction. [`FlowOrigin`] says
//! whether a key came from the packet itself or from a quoted header.

use core::net::IpAddr;

use crate::ip::IpProtocol;

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Transport protocol (TCP, UDP, ICMP, ICMPv6, or another number with ports 0).
    pub proto: IpProtocol,
    /// Sender's address.
    pub src: IpAddr,
    /// Receiver's address.
    pub dst: IpAddr,
    /// Sender's port (ICMP echo request: the identifier; echo reply: 0).
    pub sport: u16,
    /// Receiver's port (ICMP echo request: 0; echo reply: the identifier).
    pub dport: u16,
}

impl FlowKey {
    /// The key of the other direction of the same connection.
    #[must_use]
    pub fn reversed(&self) -> Self {
        Self {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// The same key with another destination.
    #[must_use]
    pub fn with_dst(&self, dst: IpAddr, dport: u16) -> Self {
        Self {
            dst,
            dport,
            ..*self
        }
    }

    /// True when both addresses are IPv6.
    #[must_use]
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}

impl core::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let end = |f: &mut core::fmt::Formatter<'_>, addr: &IpAddr, port: u16| match addr {
            IpAddr::V4(a) => write!(f, "{a}:{port}"),
            IpAddr::V6(a) => write!(f, "[{a}]:{port}"),
        };
        write!(f, "{} ", self.proto)?;
        end(f, &self.src, self.sport)?;
        f.write_str(" -> ")?;
        end(f, &self.dst, self.dport)
    }
}

/// Where a [`FlowKey`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowOrigin {
    /// From the packet's own headers.
    Packet,
    /// From the header quoted inside an ICMP/ICMPv6 error; the key is the
    /// reverse of the quoted packet's key (the direction the error travels).
    IcmpError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn reversing_twice_gives_the_key_back() {
        let key = FlowKey {
            proto: IpProtocol::Tcp,
            src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            dst: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
            sport: 40000,
            dport: 80,
        };
        let back = key.reversed();
        assert_eq!(back.src, key.dst);
        assert_eq!(back.sport, 80);
        assert_eq!(back.dport, 40000);
        assert_eq!(back.reversed(), key);
    }

    #[test]
    fn display_brackets_ipv6() {
        let key = FlowKey {
            proto: IpProtocol::Udp,
            src: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            dst: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            sport: 5,
            dport: 53,
        };
        assert_eq!(key.to_string(), "UDP [2001:db8::1]:5 -> [2001:db8::2]:53");
    }
}
