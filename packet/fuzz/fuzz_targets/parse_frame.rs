//! Parse arbitrary bytes as an Ethernet frame. Must never panic; when the
//! result is an IP frame, every field is read and the offsets must be
//! consistent with each other and with the buffer.
#![no_main]

use std::hint::black_box;

use libfuzzer_sys::fuzz_target;
use xvs_packet::parse::{Fragment, IcmpKind, IpVersion};
use xvs_packet::{FlowOrigin, Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let ip = match parse(data) {
        Ok(Parsed::Ip(ip)) => ip,
        Ok(Parsed::NotIp { ethertype, vlan }) => {
            black_box((ethertype, vlan));
            return;
        }
        Err(e) => {
            black_box(e.to_string());
            return;
        }
    };
    // Read every field (Debug and Display walk all of them).
    black_box(format!("{ip:?} {}", ip.flow));
    black_box((
        ip.flow.reversed(),
        ip.flow.is_ipv6(),
        ip.tcp_flags,
        ip.hop_limit,
    ));

    // Offsets: Ethernet (+ VLAN) <= IP header < transport <= end <= buffer.
    let l2 = if ip.vlan.is_some() { 18 } else { 14 };
    assert_eq!(ip.l3_offset, l2);
    assert!(ip.l3_offset < ip.l4_offset, "{ip:?}");
    assert!(ip.l4_offset <= ip.ip_end, "{ip:?}");
    assert!(ip.ip_end <= data.len(), "{ip:?}");
    assert_eq!(ip.ip_len(), ip.ip_end - ip.l3_offset);
    let header_min = match ip.version {
        IpVersion::V4 => 20,
        IpVersion::V6 => 40,
    };
    assert!(ip.l4_offset - ip.l3_offset >= header_min, "{ip:?}");
    assert_eq!(ip.flow.src.is_ipv4(), ip.version == IpVersion::V4);
    assert_eq!(ip.flow.dst.is_ipv4(), ip.version == IpVersion::V4);
    if ip.version == IpVersion::V6 {
        assert!(ip.dont_frag);
    }
    if ip.fragment == Fragment::Later {
        assert_eq!((ip.flow.sport, ip.flow.dport), (0, 0), "{ip:?}");
        assert!(ip.icmp.is_none() && ip.quoted.is_none());
    }
    match (ip.icmp, ip.quoted) {
        (Some(IcmpKind::Error { .. }), Some(q)) => {
            assert_eq!(ip.origin, FlowOrigin::IcmpError);
            assert_eq!(q.l3_offset, ip.l4_offset + 8);
            assert!(
                q.l3_offset < q.l4_offset && q.l4_offset <= ip.ip_end,
                "{ip:?}"
            );
            assert_eq!(q.protocol, ip.flow.proto);
            black_box(&data[q.l3_offset..q.l4_offset]);
        }
        (Some(IcmpKind::Error { .. }), None) => panic!("an ICMP error without its quote: {ip:?}"),
        (_, Some(_)) => panic!("a quote outside an ICMP error: {ip:?}"),
        (_, None) => assert_eq!(ip.origin, FlowOrigin::Packet),
    }
    if ip.origin == FlowOrigin::Packet && ip.fragment != Fragment::Later {
        // TCP/UDP ports are read where the header says.
        let l4 = &data[ip.l4_offset..ip.ip_end];
        if ip.icmp.is_none()
            && matches!(
                ip.flow.proto,
                xvs_packet::IpProtocol::Tcp | xvs_packet::IpProtocol::Udp
            )
        {
            assert_eq!(ip.flow.sport, u16::from_be_bytes([l4[0], l4[1]]));
            assert_eq!(ip.flow.dport, u16::from_be_bytes([l4[2], l4[3]]));
        }
    }
});
