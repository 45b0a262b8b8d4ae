//! What the pipeline decides for a frame, and why a frame was dropped.
//!
//! Every [`DropReason`] is counted per worker; the packet layer's parse
//! errors map onto them one to one, so a counter names the exact fault.

use xvs_packet::ParseError;
use xvs_packet::ethernet::EthernetError;
use xvs_packet::icmp::IcmpError;
use xvs_packet::ipv4::Ipv4Error;
use xvs_packet::ipv6::Ipv6Error;
use xvs_packet::parse::QuotedError;
use xvs_packet::tcp::TcpError;
use xvs_packet::udp::UdpError;

use super::IfaceId;

/// The pipeline's decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `buf[start..start + len]` out of `iface`. `start` moves back
    /// from where the frame arrived when an outer header was prepended.
    Transmit {
        /// Where it leaves.
        iface: IfaceId,
        /// First byte of the frame in the buffer.
        start: usize,
        /// Length of the frame.
        len: usize,
    },
    /// Not the director's business (ARP, traffic to the host itself):
    /// hand it to the kernel unchanged.
    PassToKernel,
    /// Dropped, for this reason.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// Why a frame was dropped. Each has a per-worker counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(
                #[doc = $text]
                $(#[$doc])*
                $name,
            )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// How many reasons there are.
            pub const COUNT: usize = Self::ALL.len();

            /// A short snake_case name, for metrics labels and logs.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }
        }
    };
}

drop_reasons! {
    EthernetTruncated => "ethernet_truncated",
    StackedVlan => "stacked_vlan",
    Ipv4Truncated => "ipv4_truncated",
    Ipv4BadVersion => "ipv4_bad_version",
    Ipv4BadHeaderLen => "ipv4_bad_header_len",
    Ipv4BadTotalLen => "ipv4_bad_total_len",
    Ipv4BadChecksum => "ipv4_bad_checksum",
    Ipv6Truncated => "ipv6_truncated",
    Ipv6BadVersion => "ipv6_bad_version",
    Ipv6BadPayloadLen => "ipv6_bad_payload_len",
    Ipv6ExtensionTruncated => "ipv6_extension_truncated",
    Ipv6TooManyExtensions => "ipv6_too_many_extensions",
    TcpTruncated => "tcp_truncated",
    TcpBadHeaderLen => "tcp_bad_header_len",
    UdpTruncated => "udp_truncated",
    UdpBadLength => "udp_bad_length",
    IcmpTruncated => "icmp_truncated",
    QuotedIpv4 => "quoted_ipv4_bad",
    QuotedIpv6 => "quoted_ipv6_bad",
    QuotedTruncated => "quoted_truncated",
    QuotedFragment => "quoted_fragment",
    QuotedErrorInError => "quoted_error_in_error",
    NoConnection => "no_connection",
    NoRealServer => "no_real_server",
    PortMismatch => "port_mismatch",
    FtpData => "ftp_data_port",
    LaterFragment => "later_fragment",
    IcmpErrorNoConnection => "icmp_error_no_connection",
    TtlExpired => "ttl_expired",
    TooBigNoDf => "too_big_without_df",
    TooBigRateLimited => "too_big_rate_limited",
    NoRoute => "no_route",
    /// — the next hop's MAC is not known (yet): the frame is dropped and the kernel is asked to resolve it (ARP / NS).
    NeighbourUnresolved => "neighbour_unresolved",
    FamilyMismatch => "family_mismatch",
    NoHeadroom => "no_headroom",
    ConnTableFull => "conn_table_full",
    /// — the connection's real server was deleted and `expire_nodest_conn` is on: the entry is expired and the client must reconnect.
    DestDeleted => "dest_deleted",
    /// — the connection names a destination number no published state has (a state not built by the director's service table): never expected.
    DestUnknown => "dest_unknown",
}

impl From<ParseError> for DropReason {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Ethernet(EthernetError::Truncated) => Self::EthernetTruncated,
            ParseError::StackedVlan => Self::StackedVlan,
            ParseError::Ipv4(e) => match e {
                Ipv4Error::Truncated => Self::Ipv4Truncated,
                Ipv4Error::BadVersion => Self::Ipv4BadVersion,
                Ipv4Error::BadHeaderLen => Self::Ipv4BadHeaderLen,
                Ipv4Error::BadTotalLen => Self::Ipv4BadTotalLen,
                Ipv4Error::BadChecksum => Self::Ipv4BadChecksum,
            },
            ParseError::Ipv6(e) => match e {
                Ipv6Error::Truncated => Self::Ipv6Truncated,
                Ipv6Error::BadVersion => Self::Ipv6BadVersion,
                Ipv6Error::BadPayloadLen => Self::Ipv6BadPayloadLen,
                Ipv6Error::ExtensionTruncated => Self::Ipv6ExtensionTruncated,
                Ipv6Error::TooManyExtensions => Self::Ipv6TooManyExtensions,
            },
            ParseError::Tcp(TcpError::Truncated) => Self::TcpTruncated,
            ParseError::Tcp(TcpError::BadHeaderLen) => Self::TcpBadHeaderLen,
            ParseError::Udp(UdpError::Truncated) => Self::UdpTruncated,
            ParseError::Udp(UdpError::BadLength) => Self::UdpBadLength,
            ParseError::Icmp(IcmpError::Truncated) => Self::IcmpTruncated,
            ParseError::Quoted(e) => match e {
                QuotedError::Ipv4(_) => Self::QuotedIpv4,
                QuotedError::Ipv6(_) => Self::QuotedIpv6,
                QuotedError::Truncated => Self::QuotedTruncated,
                QuotedError::Fragment => Self::QuotedFragment,
                QuotedError::ErrorInError => Self::QuotedErrorInError,
            },
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexes_dense() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r}");
        }
    }

    #[test]
    fn parse_errors_map_one_to_one() {
        // Every parse error the packet crate can return (quoted-header
        // errors are one reason per quoted layer, whatever the inner cause).
        let errors = [
            ParseError::Ethernet(EthernetError::Truncated),
            ParseError::StackedVlan,
            ParseError::Ipv4(Ipv4Error::Truncated),
            ParseError::Ipv4(Ipv4Error::BadVersion),
            ParseError::Ipv4(Ipv4Error::BadHeaderLen),
            ParseError::Ipv4(Ipv4Error::BadTotalLen),
            ParseError::Ipv4(Ipv4Error::BadChecksum),
            ParseError::Ipv6(Ipv6Error::Truncated),
            ParseError::Ipv6(Ipv6Error::BadVersion),
            ParseError::Ipv6(Ipv6Error::BadPayloadLen),
            ParseError::Ipv6(Ipv6Error::ExtensionTruncated),
            ParseError::Ipv6(Ipv6Error::TooManyExtensions),
            ParseError::Tcp(TcpError::Truncated),
            ParseError::Tcp(TcpError::BadHeaderLen),
            ParseError::Udp(UdpError::Truncated),
            ParseError::Udp(UdpError::BadLength),
            ParseError::Icmp(IcmpError::Truncated),
            ParseError::Quoted(QuotedError::Ipv4(Ipv4Error::Truncated)),
            ParseError::Quoted(QuotedError::Ipv6(Ipv6Error::Truncated)),
            ParseError::Quoted(QuotedError::Truncated),
            ParseError::Quoted(QuotedError::Fragment),
            ParseError::Quoted(QuotedError::ErrorInError),
        ];
        let mut reasons: Vec<u8> = errors.iter().map(|e| DropReason::from(*e) as u8).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(
            reasons.len(),
            errors.len(),
            "two parse errors share a drop reason"
        );
        assert_eq!(DropReason::from(errors[6]), DropReason::Ipv4BadChecksum);
    }
}
