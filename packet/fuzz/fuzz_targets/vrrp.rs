//! Decode and verify arbitrary bytes as a VRRP advert, both families. The
//! first byte is the mode: bit 0 reads a bare VRRP message as IPv6 (else
//! IPv4), from the draft vectors' sender (fe80::10 or 198.51.100.10); bit 1
//! reads the rest as a whole IP datagram through `vrrp::receive` instead.
//! Must never panic; an advert whose tag verifies with the seeds' key must
//! sign back to the same bytes (but for the checksum when it did not
//! verify), and with one tag bit changed must fail.
#![no_main]

use std::hint::black_box;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use xvs_packet::vrrp::{
    self, Addresses, Advert, AntiReplay, AuthError, AuthKey, Family, Packet, ReplayGuard, Signing,
};

/// keepalived's `test/auth_hmac_test.c` key (bytes 00..1f, id 1), which
/// the draft vectors among the seeds are signed with.
fn key() -> AuthKey {
    let secret: Vec<u8> = (0u8..32).collect();
    AuthKey::new(1, &secret).expect("a 32-byte key")
}

fn check(packet: &Packet<&[u8]>, src: IpAddr, dst: IpAddr) {
    let bytes: &[u8] = packet.clone().into_inner();
    black_box(packet.addresses().count());
    black_box((
        packet.priority(),
        packet.max_advert_interval(),
        packet.reserved(),
    ));
    let checksum_ok = packet.verify_checksum(src, dst);
    let Some(trailer) = packet.trailer() else {
        assert_eq!(packet.verify_hmac(src, &key()), Err(AuthError::Missing));
        return;
    };
    black_box((trailer.sequence(), trailer.key_id()));
    if packet.verify_hmac(src, &key()).is_err() {
        return;
    }
    let mut guard = ReplayGuard::new(AntiReplay::Monotonic);
    assert_eq!(guard.verify(packet, src, &key(), 0), Ok(()));
    assert_eq!(
        guard.verify(packet, src, &key(), 0),
        Err(AuthError::Replayed)
    );
    // Sign the same contents again: the same bytes.
    let v4: Vec<_> = packet
        .addresses()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<_> = packet
        .addresses()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        })
        .collect();
    let addresses = match packet.family() {
        Family::V4 => Addresses::V4(&v4),
        Family::V6 => Addresses::V6(&v6),
    };
    let advert = Advert {
        vrid: packet.vrid(),
        priority: packet.priority(),
        max_advert_interval: packet.max_advert_interval(),
        addresses,
    };
    let key = key();
    let signing = Signing::Hmac {
        key: &key,
        sequence: trailer.sequence(),
    };
    let mut again = vec![0u8; bytes.len()];
    let n = advert
        .emit(src, dst, &signing, &mut again)
        .expect("room for it");
    assert_eq!(n, bytes.len());
    // The reserved bits are not signed over as zero if they were set.
    if packet.reserved() == 0 {
        assert_eq!(&again[..6], &bytes[..6]);
        assert_eq!(
            &again[8..],
            &bytes[8..],
            "a verified advert signs to the same bytes"
        );
        if checksum_ok {
            assert_eq!(again, bytes);
        }
    }
    let last = again.len() - 1;
    again[last] ^= 1;
    let tampered = Packet::new_checked(&again[..], packet.family()).expect("same shape");
    assert_eq!(tampered.verify_hmac(src, &key), Err(AuthError::BadHmac));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 2 != 0 {
        match vrrp::receive(rest) {
            Ok(advert) => {
                assert!(advert.packet.verify_checksum(advert.src, advert.dst));
                check(&advert.packet, advert.src, advert.dst);
            }
            Err(e) => {
                black_box(e.to_string());
            }
        }
        return;
    }
    let (family, src, dst): (_, IpAddr, IpAddr) = if mode & 1 != 0 {
        (
            Family::V6,
            "fe80::10".parse().unwrap(),
            vrrp::MULTICAST_V6.into(),
        )
    } else {
        (
            Family::V4,
            "198.51.100.10".parse().unwrap(),
            vrrp::MULTICAST_V4.into(),
        )
    };
    match Packet::new_checked(rest, family) {
        Ok(packet) => check(&packet, src, dst),
        Err(e) => {
            black_box(e.to_string());
        }
    }
});
