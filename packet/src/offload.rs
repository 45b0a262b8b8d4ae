//! Partial transport checksums left by checksum offload, recognised and
//! completed.
//!
//! A local stack that hands a TCP segment or UDP datagram to a device with
//! checksum offload (a veth into a container, namespace or VM on the same
//! host) does not compute the checksum: it writes into the checksum field
//! the folded, *not* complemented, sum of the pseudo-header (addresses,
//! protocol, transport length) and leaves the rest to the hardware. The
//! kernel marks such a buffer `CHECKSUM_PARTIAL`; a veth passes the bytes to
//! XDP and AF_PACKET as they are, and that mark is lost when the director
//! sends the frame on. The receiver then sees a wrong checksum and drops the
//! segment silently.
//!
//! The director sees bytes only, so it recognises such a checksum by value:
//! the field equals the folded pseudo-header sum of the packet as received.
//! A correct checksum may hold that value by chance (about one packet in
//! 65535); completing it then recomputes the same (correct) checksum, so a
//! false match costs time, never correctness. The comparison comes first
//! and costs a handful of additions; only a match sums the payload.
//!
//! What is completed: TCP and UDP, over IPv4 and IPv6, of a whole packet
//! whose transport length is all there. Fragments (their data is split),
//! ICMP errors (their flow key is the quoted packet's) and other protocols
//! are left alone. UDP's zero rules hold: a field of 0 (no checksum, over
//! IPv4) never matches, since a folded sum that is not zero never folds to
//! 0; a completed checksum of 0 is written as 0xffff.

use core::net::{IpAddr, Ipv6Addr};

use crate::checksum;
use crate::flow::FlowOrigin;
use crate::ip::IpProtocol;
use crate::parse::{Fragment, IpFrame};
use crate::{tcp, udp};

/// Completes the TCP or UDP checksum of the frame `ip` describes when it
/// holds a partial checksum (see the module notes): returns true when it
/// did, false, having written nothing, for every other frame.
///
/// `ip` must be [`crate::parse()`]'s description of these bytes, before
/// any rewrite (the pseudo-header is taken from its flow key).
///
/// Runs on every forwarded frame, so the test is inlined into the caller
/// and reads only what it must: the flow key's addresses (already in the
/// `IpFrame`), the checksum field, and for UDP its length; the protocol
/// number is a constant per arm. The summing that follows a match is out of
/// line.
#[inline(always)]
#[must_use]
pub fn complete_partial_checksum(frame: &mut [u8], ip: &IpFrame) -> bool {
    let (csum_at, proto) = match ip.flow.proto {
        IpProtocol::Tcp => (tcp::CHECKSUM_OFFSET, Proto::Tcp),
        IpProtocol::Udp => (udp::CHECKSUM_OFFSET, Proto::Udp),
        _ => return false,
    };
    if ip.fragment != Fragment::None || ip.origin != FlowOrigin::Packet {
        return false;
    }
    let Some(segment) = frame.get_mut(ip.l4_offset..ip.ip_end) else {
        return false;
    };
    // UDP's length field says how much its checksum covers (bytes beyond
    // it, up to the IP length, are not the datagram's); TCP's is the rest
    // of the IP packet.
    let len = match proto {
        Proto::Udp => match segment.get(4..6) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => return false,
        },
        Proto::Tcp => segment.len(),
    };
    if len < csum_at + 2 || len > segment.len() {
        // Not all there: nothing to complete (the parse refuses such
        // frames; this keeps the function safe on its own).
        return false;
    }
    let field = u16::from_be_bytes([segment[csum_at], segment[csum_at + 1]]);
    // An IPv4 packet is at most 65535 bytes, an IPv6 payload too (no
    // jumbograms): the length fits 32 bits with room for the sum.
    let len32 = len as u32;
    let pseudo = match (ip.flow.src, ip.flow.dst) {
        // RFC 793's pseudo-header as 16-bit words: at most six of them,
        // no carry out of 32 bits.
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (s, d) = (s.to_bits(), d.to_bits());
            (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + proto as u32 + len32
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(&s, &d, proto, len32),
        _ => return false,
    };
    if field != checksum::fold(pseudo) {
        return false;
    }
    complete(&mut segment[..len], csum_at, pseudo, proto);
    true
}

/// The transport protocols whose checksum offload leaves partial, with
/// their protocol numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp = 6,
    Udp = 17,
}

/// RFC 8200 §8.1's pseudo-header: 32 bytes of addresses, out of line (the
/// IPv4 sum stays small where it is inlined).
#[inline(never)]
fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: Proto, len: u32) -> u32 {
    let protocol = match proto {
        Proto::Tcp => IpProtocol::Tcp,
        Proto::Udp => IpProtocol::Udp,
    };
    checksum::pseudo_header_v6(src, dst, protocol, len)
}

/// Writes the full checksum of `segment`, whose pseudo-header sums to
/// `pseudo`: RFC 1071 over everything, the field counted as 0. Out of line
/// (not cold: behind a veth with offload on, every frame comes here).
#[inline(never)]
fn complete(segment: &mut [u8], csum_at: usize, pseudo: u32, proto: Proto) {
    segment[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
    let mut value = checksum::finish(checksum::combine(pseudo, checksum::sum(segment)));
    if proto == Proto::Udp {
        value = checksum::udp_nonzero(value);
    }
    segment[csum_at..csum_at + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::testkit::*;

    /// Offset of the transport checksum in a test frame (no VLAN, no
    /// options or extension headers).
    fn csum_offset(frame: &[u8]) -> usize {
        let ip = ip(frame);
        ip.l4_offset
            + match ip.flow.proto {
                IpProtocol::Tcp => 16,
                IpProtocol::Udp => 6,
                other => panic!("no transport checksum in {other:?}"),
            }
    }

    /// The pseudo-header sum, written out from the RFCs (not through the
    /// checksum module): what a sending stack with offload leaves in the
    /// field.
    fn partial_value(frame: &[u8]) -> u16 {
        let ip = ip(frame);
        let len = (ip.ip_end - ip.l4_offset) as u32;
        let mut acc: u32 = u32::from(u8::from(ip.flow.proto));
        let words = |bytes: &[u8]| -> u32 {
            bytes
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum()
        };
        match (ip.flow.src, ip.flow.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                acc += words(&s.octets()) + words(&d.octets()) + len;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                acc += words(&s.octets()) + words(&d.octets()) + (len >> 16) + (len & 0xffff);
            }
            _ => unreachable!(),
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// `frame` as a stack with checksum offload sends it.
    fn with_partial(frame: &[u8]) -> Vec<u8> {
        let mut out = frame.to_vec();
        let at = csum_offset(frame);
        let value = partial_value(frame);
        out[at..at + 2].copy_from_slice(&value.to_be_bytes());
        out
    }

    fn complete(frame: &mut [u8]) -> bool {
        let ip = ip(frame);
        complete_partial_checksum(frame, &ip)
    }

    #[test]
    fn a_partial_checksum_is_completed_for_tcp_and_udp_over_both_families() {
        let frames = [
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Syn {
                    sport: 40000,
                    dport: 80,
                },
                b"",
            ),
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Ack {
                    sport: 40000,
                    dport: 80,
                },
                b"GET /",
            ),
            frame4(
                "198.51.100.7",
                "203.0.113.10",
                L4::Udp {
                    sport: 5353,
                    dport: 53,
                },
                b"query",
            ),
            frame6(
                "2001:db8:1::7",
                "2001:db8::10",
                L4::Ack {
                    sport: 1,
                    dport: 80,
                },
                b"odd",
            ),
            frame6(
                "2001:db8:1::7",
                "2001:db8::10",
                L4::Udp {
                    sport: 1,
                    dport: 53,
                },
                b"",
            ),
        ];
        for good in frames {
            let mut partial = with_partial(&good);
            assert!(
                verify_checksums(&partial).is_err(),
                "the partial checksum is wrong as sent"
            );
            assert!(complete(&mut partial), "{good:02x?} recognised");
            assert_eq!(partial, good, "completed to the correct checksum");
            verify_checksums(&partial).unwrap();
        }
    }

    #[test]
    fn other_frames_are_left_alone() {
        let echo = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::EchoRequest { ident: 7 },
            b"ping",
        );
        let mut copy = echo.clone();
        assert!(!complete(&mut copy));
        assert_eq!(copy, echo);
        // UDP over IPv4 without a checksum (0) keeps it: 0 is never a
        // folded pseudo-header sum.
        let mut none = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            b"q",
        );
        let at = csum_offset(&none);
        none[at..at + 2].copy_from_slice(&[0, 0]);
        let kept = none.clone();
        assert!(!complete(&mut none));
        assert_eq!(none, kept);
    }

    #[test]
    fn a_completed_udp_checksum_of_zero_is_sent_as_ffff() {
        // A payload word equal to the checksum of the same datagram with a
        // zero word there turns the sum to 0xffff: the computed checksum
        // is then 0, which UDP sends as 0xffff (etherparse too).
        let zero = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            &[0, 0],
        );
        let at = csum_offset(&zero);
        let payload = [zero[at], zero[at + 1]];
        let good = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            &payload,
        );
        let at = csum_offset(&good);
        assert_eq!(
            good[at..at + 2],
            [0xff, 0xff],
            "the fixture is the zero case"
        );
        let mut partial = with_partial(&good);
        assert!(complete(&mut partial));
        assert_eq!(partial, good);
    }

    #[test]
    fn a_truncated_or_fragmented_segment_is_not_completed() {
        let good = frame4(
            "198.51.100.7",
            "203.0.113.10",
            L4::Udp {
                sport: 1,
                dport: 53,
            },
            b"abcdef",
        );
        let partial = with_partial(&good);
        let mut described = ip(&partial);
        // A UDP length beyond the bytes there.
        let mut long = partial.clone();
        let l4 = described.l4_offset;
        long[l4 + 4..l4 + 6].copy_from_slice(&100u16.to_be_bytes());
        assert!(!complete_partial_checksum(&mut long, &described));
        // A first fragment: the rest of the datagram is elsewhere.
        described.fragment = Fragment::First;
        let mut first = partial.clone();
        assert!(!complete_partial_checksum(&mut first, &described));
        assert_eq!(first, partial);
        // An IpFrame whose end lies beyond the buffer.
        let mut short = partial[..partial.len() - 3].to_vec();
        let whole = ip(&partial);
        assert!(!complete_partial_checksum(&mut short, &whole));
    }

    fn any_frame() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            prop_oneof![
                (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Syn { sport, dport }),
                (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Ack { sport, dport }),
                (any::<u16>(), any::<u16>()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
            ],
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(is_v4, s4, d4, s6, d6, l4, payload)| {
                if is_v4 {
                    let (s, d) = (core::net::Ipv4Addr::from(s4), core::net::Ipv4Addr::from(d4));
                    frame4(&s.to_string(), &d.to_string(), l4, &payload)
                } else {
                    let (s, d) = (core::net::Ipv6Addr::from(s6), core::net::Ipv6Addr::from(d6));
                    frame6(&s.to_string(), &d.to_string(), l4, &payload)
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..Default::default() })]

        /// A partial checksum is recognised and completed back to the
        /// value a full computation gives.
        #[test]
        fn partial_checksums_complete_to_the_full_checksum(good in any_frame()) {
            let mut partial = with_partial(&good);
            prop_assert!(complete(&mut partial));
            prop_assert_eq!(verify_checksums(&partial), Ok(()));
            let at = csum_offset(&good);
            // Equal as one's-complement numbers (TCP's 0 and 0xffff both
            // verify); etherparse writes what RFC 1071 computes, as we do.
            prop_assert_eq!(&partial[at..at + 2], &good[at..at + 2]);
        }

        /// A correct checksum stays correct: untouched, unless it equals
        /// the pseudo-header sum by chance, and then recomputed.
        #[test]
        fn correct_checksums_stay_correct(good in any_frame()) {
            let mut copy = good.clone();
            let at = csum_offset(&good);
            let chance = u16::from_be_bytes([good[at], good[at + 1]]) == partial_value(&good);
            prop_assert_eq!(complete(&mut copy), chance);
            prop_assert_eq!(verify_checksums(&copy), Ok(()));
            if !chance {
                prop_assert_eq!(copy, good);
            }
        }
    }
}
