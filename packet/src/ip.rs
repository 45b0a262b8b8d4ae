//! IP protocol numbers (the IPv4 `protocol` field and the IPv6 `next header`
//! field share one registry), spoken as an enum with an `Unknown` arm so that
//! a number we do not know is carried, never misread.

/// An IP protocol / IPv6 next-header number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpProtocol {
    /// IPv6 hop-by-hop options (0).
    HopByHop,
    /// ICMP for IPv4 (1).
    Icmp,
    /// IPv4 encapsulated in IP (4): VS/TUN's IPIP.
    Ipip,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// IPv6 encapsulated in IP (41): VS/TUN's ip6ip6.
    Ipv6,
    /// IPv6 routing header (43).
    Ipv6Route,
    /// IPv6 fragment header (44).
    Ipv6Frag,
    /// Encapsulating security payload (50): nothing past it is readable.
    Esp,
    /// Authentication header (51).
    Ah,
    /// ICMP for IPv6 (58).
    Icmpv6,
    /// IPv6 "no next header" (59).
    Ipv6NoNxt,
    /// IPv6 destination options (60).
    Ipv6Opts,
    /// VRRP (112): the directors' advertisements.
    Vrrp,
    /// Any other number, carried as it is.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    /// A lookup in a table built at compile time: every parse and every
    /// connection-table read converts a number, and a load is cheaper than
    /// the compare chain the `match` becomes.
    #[inline]
    fn from(value: u8) -> Self {
        BY_NUMBER[usize::from(value)]
    }
}

/// [`IpProtocol::from`] for every number.
static BY_NUMBER: [IpProtocol; 256] = {
    let mut table = [IpProtocol::Unknown(0); 256];
    let mut n = 0;
    while n < table.len() {
        table[n] = IpProtocol::of_number(n as u8);
        n += 1;
    }
    table
};

impl IpProtocol {
    const fn of_number(value: u8) -> Self {
        match value {
            0 => Self::HopByHop,
            1 => Self::Icmp,
            4 => Self::Ipip,
            6 => Self::Tcp,
            17 => Self::Udp,
            41 => Self::Ipv6,
            43 => Self::Ipv6Route,
            44 => Self::Ipv6Frag,
            50 => Self::Esp,
            51 => Self::Ah,
            58 => Self::Icmpv6,
            59 => Self::Ipv6NoNxt,
            60 => Self::Ipv6Opts,
            112 => Self::Vrrp,
            other => Self::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::HopByHop => 0,
            IpProtocol::Icmp => 1,
            IpProtocol::Ipip => 4,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6 => 41,
            IpProtocol::Ipv6Route => 43,
            IpProtocol::Ipv6Frag => 44,
            IpProtocol::Esp => 50,
            IpProtocol::Ah => 51,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Ipv6NoNxt => 59,
            IpProtocol::Ipv6Opts => 60,
            IpProtocol::Vrrp => 112,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl core::fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Tcp => f.write_str("TCP"),
            Self::Udp => f.write_str("UDP"),
            Self::Icmp => f.write_str("ICMP"),
            Self::Icmpv6 => f.write_str("ICMPv6"),
            Self::Ipip => f.write_str("IPIP"),
            Self::Ipv6 => f.write_str("IPv6-in-IP"),
            Self::Vrrp => f.write_str("VRRP"),
            other => write!(f, "proto {}", u8::from(*other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
    }

    #[test]
    fn known_numbers_are_named() {
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
        assert_eq!(IpProtocol::from(200), IpProtocol::Unknown(200));
    }
}
