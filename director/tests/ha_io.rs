//! The HA part's system layer against a real kernel: VRRP adverts over raw
//! IP sockets, takeover announcements over AF_PACKET, addresses and link
//! facts over rtnetlink; in namespaces this test makes (root and `ip`
//! only; skipped with a message otherwise, a failure under
//! `XVS_REQUIRE_ALL=1`: `common::skip`). Run under
//! `flock /tmp/xvs-netns.lock`, as every namespace test.
//!
//! ```text
//!   netns xhaNTd (director)                  netns xhaNTp (peer)
//!   xhaNTd0 02:00:00:00:a1:01  <── veth ──>  xhaNTp0 02:00:00:00:a1:02
//!   198.51.100.11/24                         198.51.100.12/24
//!   2001:db8:1::11/64, fe80::…               2001:db8:1::12/64, fe80::…
//! ```
//!
//! N is the process, T the test (a, b, c, d): the tests run side by side.
//! Sockets and netlink calls belong to the namespace of the thread that
//! opens them, so each is opened on a thread that entered it first; the
//! sockets are then used from the test's thread.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should fail the test loudly"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::Namespaces;
use common::{ip, skip};
use nix::sys::socket::{setsockopt, sockopt};
use xvs_director::io::announce::FrameSender;
use xvs_director::io::vrrp_socket::VrrpSocket;
use xvs_director::kernel::{add_address, has_address, link_is_up, link_local, remove_address};
use xvs_director::types::IpNet;
use xvs_packet::announce::{gratuitous_arp, unsolicited_na};
use xvs_packet::vrrp::{self, Addresses, Advert, Family, Signing, VrrpError};

const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa1, 0x01];
const DIRECTOR_MAC_TEXT: &str = "02:00:00:00:a1:01";
const DIRECTOR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);

/// Two namespaces and a veth pair, removed on drop (even after a failed
/// assertion).
struct Testbed {
    netns: Namespaces,
    dev: String,
    peer_dev: String,
}

impl Testbed {
    /// The test bed of test `tag`, with both link-local addresses out of
    /// duplicate address detection.
    fn new(tag: char) -> Self {
        let n = std::process::id() % 100_000;
        let bed = Self {
            netns: Namespaces::add(format!("xha{n}{tag}d"), format!("xha{n}{tag}p")).unwrap(),
            dev: format!("xha{n}{tag}d0"),
            peer_dev: format!("xha{n}{tag}p0"),
        };
        bed.set_up().unwrap();
        for (ns, dev) in [
            (&bed.netns.director, &bed.dev),
            (&bed.netns.peer, &bed.peer_dev),
        ] {
            let settled = wait_for(Duration::from_secs(10), || {
                let text = output(&["-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"]);
                text.contains("fe80::") && !text.contains("tentative")
            });
            assert!(settled, "the link-local address of {dev} stays tentative");
        }
        bed
    }

    fn set_up(&self) -> Result<(), String> {
        let (d, p) = (&self.netns.director, &self.netns.peer);
        let (dev, peer_dev) = (&self.dev, &self.peer_dev);
        self.netns.veth(dev, peer_dev)?;
        for (ns, dev, mac, v4, v6) in [
            (
                d,
                dev,
                DIRECTOR_MAC_TEXT,
                "198.51.100.11/24",
                "2001:db8:1::11/64",
            ),
            (
                p,
                peer_dev,
                "02:00:00:00:a1:02",
                "198.51.100.12/24",
                "2001:db8:1::12/64",
            ),
        ] {
            ip(&["-n", ns, "link", "set", dev, "address", mac, "up"])?;
            ip(&["-n", ns, "addr", "add", v4, "dev", dev])?;
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"])?;
        }
        Ok(())
    }

    /// The interface index of the director's end (asked in its namespace).
    fn director_index(&self) -> u32 {
        let dev = self.dev.clone();
        self.netns
            .in_director(move || nix::net::if_::if_nametoindex(dev.as_str()).unwrap())
    }

    /// The interface index of the peer's end.
    fn peer_index(&self) -> u32 {
        let dev = self.peer_dev.clone();
        self.netns
            .in_peer(move || nix::net::if_::if_nametoindex(dev.as_str()).unwrap())
    }

    /// `ip -n <peer> neigh show <addr> dev <peer_dev>`.
    fn peer_neighbour(&self, addr: IpAddr) -> String {
        output(&[
            "-n",
            &self.netns.peer,
            "neigh",
            "show",
            &addr.to_string(),
            "dev",
            &self.peer_dev,
        ])
    }
}

/// What `ip ARGS…` prints.
fn output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `cond` every 20 ms for up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn can_run(test: &str) -> bool {
    skip::can_run(test, true, &["ip"])
}

/// An unsigned advert of VRID 51, priority 150, listing one VIP of
/// `family`, from `src` to `dst`.
fn advert(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let v4 = [Ipv4Addr::new(203, 0, 113, 10)];
    let v6 = ["2001:db8:5::10".parse::<Ipv6Addr>().unwrap()];
    let addresses = match src {
        IpAddr::V4(_) => Addresses::V4(&v4),
        IpAddr::V6(_) => Addresses::V6(&v6),
    };
    let advert = Advert {
        vrid: 51,
        priority: 150,
        max_advert_interval: 100,
        addresses,
    };
    let mut buf = vec![0; 128];
    let len = advert.emit(src, dst, &Signing::None, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

/// Receives one datagram on `socket` within 2 s; its bytes and interface.
fn receive_one(socket: &VrrpSocket) -> (Vec<u8>, u32) {
    let mut buf = [0u8; 2048];
    let (len, ifindex) = socket
        .recv(&mut buf, Duration::from_secs(2))
        .unwrap()
        .expect("a datagram within 2 s");
    (buf[..len].to_vec(), ifindex)
}

#[test]
fn vrrp_adverts_cross_the_link_and_pass_the_receive_checks() {
    if !can_run("ha_io::vrrp_adverts_cross_the_link_and_pass_the_receive_checks") {
        return;
    }
    let bed = Testbed::new('a');
    let (index, peer_index) = (bed.director_index(), bed.peer_index());
    let dev = bed.dev.clone();
    let link_local_v6 = bed.netns.in_director(move || link_local(index).unwrap());
    let link_local_v6 = link_local_v6.expect("the director's link-local address");
    for (family, multicast) in [
        (Family::V4, true),
        (Family::V4, false),
        (Family::V6, true),
        (Family::V6, false),
    ] {
        let what = format!("{family:?}, multicast {multicast}");
        let (d, p) = (dev.clone(), bed.peer_dev.clone());
        let sender = bed
            .netns
            .in_director(move || VrrpSocket::open(family, &d, index, multicast).unwrap());
        let receiver = bed
            .netns
            .in_peer(move || VrrpSocket::open(family, &p, peer_index, multicast).unwrap());
        let (src, dst) = match (family, multicast) {
            (Family::V4, true) => (IpAddr::V4(DIRECTOR_V4), IpAddr::V4(vrrp::MULTICAST_V4)),
            (Family::V4, false) => (IpAddr::V4(DIRECTOR_V4), IpAddr::V4(PEER_V4)),
            (Family::V6, true) => (IpAddr::V6(link_local_v6), IpAddr::V6(vrrp::MULTICAST_V6)),
            (Family::V6, false) => (IpAddr::V6(link_local_v6), IpAddr::V6(PEER_V6)),
        };
        let message = advert(src, dst);
        sender.send(src, dst, &message).unwrap();
        let (datagram, ifindex) = receive_one(&receiver);
        assert_eq!(ifindex, peer_index, "{what}");
        let received = vrrp::receive(&datagram).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((received.src, received.dst), (src, dst), "{what}");
        assert_eq!(received.packet.vrid(), 51, "{what}");
        assert_eq!(received.packet.priority(), 150, "{what}");
        assert_eq!(received.packet.message_len(), message.len(), "{what}");
        // Multicast loop is off: the sender does not hear itself.
        let mut buf = [0u8; 2048];
        let own = sender.recv(&mut buf, Duration::from_millis(300)).unwrap();
        assert_eq!(own, None, "{what}: the sender received its own advert");
    }
}

#[test]
fn a_forwarded_or_damaged_advert_arrives_and_is_refused() {
    if !can_run("ha_io::a_forwarded_or_damaged_advert_arrives_and_is_refused") {
        return;
    }
    let bed = Testbed::new('b');
    let (index, peer_index) = (bed.director_index(), bed.peer_index());
    let (d, p) = (bed.dev.clone(), bed.peer_dev.clone());
    let sender = bed
        .netns
        .in_director(move || VrrpSocket::open(Family::V4, &d, index, false).unwrap());
    let receiver = bed
        .netns
        .in_peer(move || VrrpSocket::open(Family::V4, &p, peer_index, false).unwrap());
    // As if it had crossed a router: TTL 64, not 255.
    setsockopt(&sender, sockopt::Ipv4Ttl, &64).unwrap();
    let (src, dst) = (IpAddr::V4(DIRECTOR_V4), IpAddr::V4(PEER_V4));
    sender.send(src, dst, &advert(src, dst)).unwrap();
    let (datagram, _) = receive_one(&receiver);
    assert_eq!(datagram[8], 64, "the TTL as sent");
    assert_eq!(
        vrrp::receive(&datagram).map(|_| ()),
        Err(VrrpError::BadTtl(64))
    );

    // IPv6: the kernel does not check the checksum (no IPV6_CHECKSUM), so a
    // bad one reaches the caller to be counted.
    let (d, p) = (bed.dev.clone(), bed.peer_dev.clone());
    let sender = bed
        .netns
        .in_director(move || VrrpSocket::open(Family::V6, &d, index, false).unwrap());
    let receiver = bed
        .netns
        .in_peer(move || VrrpSocket::open(Family::V6, &p, peer_index, false).unwrap());
    let src = IpAddr::V6("2001:db8:1::11".parse().unwrap());
    let dst = IpAddr::V6(PEER_V6);
    let mut message = advert(src, dst);
    message[7] ^= 0x01;
    sender.send(src, dst, &message).unwrap();
    let (datagram, _) = receive_one(&receiver);
    assert_eq!(datagram[7], 255, "the rebuilt header's hop limit");
    assert_eq!(
        vrrp::receive(&datagram).map(|_| ()),
        Err(VrrpError::BadChecksum)
    );
}

#[test]
fn announcements_move_the_peers_neighbour_entries() {
    if !can_run("ha_io::announcements_move_the_peers_neighbour_entries") {
        return;
    }
    let bed = Testbed::new('c');
    let index = bed.director_index();
    let vip4 = Ipv4Addr::new(198, 51, 100, 100);
    let vip6: Ipv6Addr = "2001:db8:1::100".parse().unwrap();
    let untracked6: Ipv6Addr = "2001:db8:1::101".parse().unwrap();
    // The peer knows the VIPs at the old master's MAC, as a router does.
    for vip in [IpAddr::V4(vip4), IpAddr::V6(vip6)] {
        ip(&[
            "-n",
            &bed.netns.peer,
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            &bed.peer_dev,
            "nud",
            "stale",
        ])
        .unwrap();
    }
    let sender = bed.netns.in_director(move || {
        // The takeover: the addresses first, then the announcements.
        for net in [
            IpNet {
                addr: IpAddr::V4(vip4),
                prefix_len: 32,
            },
            IpNet {
                addr: IpAddr::V6(vip6),
                prefix_len: 128,
            },
        ] {
            assert!(add_address(index, net).unwrap());
        }
        FrameSender::open(index).unwrap()
    });
    assert_eq!(sender.ifindex(), index);
    sender.send(&gratuitous_arp(DIRECTOR_MAC, vip4)).unwrap();
    // An NA for an address the peer has no entry for, before the tracked
    // one: this kernel (accept_untracked_na = 0, the default) makes no
    // entry from it.
    sender
        .send(&unsolicited_na(DIRECTOR_MAC, untracked6))
        .unwrap();
    sender.send(&unsolicited_na(DIRECTOR_MAC, vip6)).unwrap();
    for vip in [IpAddr::V4(vip4), IpAddr::V6(vip6)] {
        let moved = wait_for(Duration::from_secs(3), || {
            bed.peer_neighbour(vip).contains(DIRECTOR_MAC_TEXT)
        });
        assert!(moved, "{vip}: {}", bed.peer_neighbour(vip));
    }
    assert_eq!(
        bed.peer_neighbour(IpAddr::V6(untracked6)).trim(),
        "",
        "an untracked NA made an entry"
    );
}

#[test]
fn addresses_come_and_go_and_the_link_is_watched() {
    if !can_run("ha_io::addresses_come_and_go_and_the_link_is_watched") {
        return;
    }
    let bed = Testbed::new('d');
    let index = bed.director_index();
    let v4: IpNet = "203.0.113.10/32".parse().unwrap();
    let gateway: IpNet = "192.0.2.1/24".parse().unwrap();
    let v6: IpNet = "2001:db8:5::1/128".parse().unwrap();
    let added = bed.netns.in_director(move || {
        let mut added = Vec::new();
        for net in [v4, gateway, v6] {
            added.push((
                add_address(index, net).unwrap(),
                add_address(index, net).unwrap(),
                has_address(index, net.addr).unwrap(),
            ));
        }
        added
    });
    assert_eq!(added, [(true, false, true); 3], "added, again, there");
    let shown = output(&["-n", &bed.netns.director, "addr", "show", "dev", &bed.dev]);
    assert!(shown.contains("inet 203.0.113.10/32 "), "{shown}");
    assert!(shown.contains("inet 192.0.2.1/24 "), "{shown}");
    let line6 = shown
        .lines()
        .find(|l| l.contains("inet6 2001:db8:5::1/128"))
        .unwrap_or_else(|| panic!("{shown}"));
    assert!(!line6.contains("tentative"), "{line6}");

    // The link-local address is the one `ip` shows.
    let scope_link = output(&[
        "-n",
        &bed.netns.director,
        "-6",
        "addr",
        "show",
        "dev",
        &bed.dev,
        "scope",
        "link",
    ]);
    let found = bed.netns.in_director(move || link_local(index).unwrap());
    let found = found.expect("a link-local address");
    assert!(
        scope_link.contains(&format!("inet6 {found}/64")),
        "{found} in {scope_link}"
    );

    let removed = bed.netns.in_director(move || {
        let mut removed = Vec::new();
        for net in [v4, gateway, v6] {
            removed.push((
                remove_address(index, net).unwrap(),
                remove_address(index, net).unwrap(),
                has_address(index, net.addr).unwrap(),
            ));
        }
        removed
    });
    assert_eq!(removed, [(true, false, false); 3], "removed, again, there");

    // A missing interface is an error, not "already there".
    let missing = bed
        .netns
        .in_director(|| add_address(999_999, "203.0.113.11/32".parse().unwrap()));
    assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc_enodev()));

    // The link: up; down when the peer's end goes down (no carrier), and
    // when its own end does; up again.
    let up = || bed.netns.in_director(move || link_is_up(index).unwrap());
    assert!(up());
    ip(&["-n", &bed.netns.peer, "link", "set", &bed.peer_dev, "down"]).unwrap();
    assert!(wait_for(Duration::from_secs(3), || !up()), "no carrier");
    ip(&["-n", &bed.netns.peer, "link", "set", &bed.peer_dev, "up"]).unwrap();
    assert!(wait_for(Duration::from_secs(3), up), "carrier back");
    ip(&["-n", &bed.netns.director, "link", "set", &bed.dev, "down"]).unwrap();
    assert!(!up(), "its own end down");
}

/// ENODEV, without a libc dependency in the tests.
fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}
