//! Two routers on a fake segment: what one sends the other receives as a
//! whole IPv4 datagram, with a fake clock; the wire records addresses,
//! announcements and hooks.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use xvs_packet::checksum;

use super::*;
use crate::ha::machine::{GarpSchedule, Settings};

const CLIENT: u32 = 2;
const SERVER: u32 = 3;
const VIP4: &str = "203.0.113.10";
const VIP6: &str = "2001:db8:f::10";
const A: &str = "198.51.100.11";
const B: &str = "198.51.100.12";

/// What a fake wire saw.
#[derive(Debug, Default)]
struct Recorder {
    /// Messages sent: (src, dst, message).
    sent: Vec<(IpAddr, IpAddr, Vec<u8>)>,
    /// Addresses on the "kernel": (ifindex, net).
    addresses: BTreeSet<(u32, String)>,
    /// Announcements: (ifindex, address).
    announced: Vec<(u32, IpAddr)>,
    /// Hooks run: (command, state).
    hooks: Vec<(String, String)>,
    /// Fail address changes.
    broken: bool,
}

impl Wire for Recorder {
    fn send_advert(&mut self, src: IpAddr, dst: IpAddr, message: &[u8]) -> io::Result<()> {
        self.sent.push((src, dst, message.to_vec()));
        Ok(())
    }
    fn add_address(&mut self, ifindex: u32, net: IpNet) -> io::Result<bool> {
        if self.broken {
            return Err(io::Error::other("refused"));
        }
        Ok(self.addresses.insert((ifindex, net.to_string())))
    }
    fn remove_address(&mut self, ifindex: u32, net: IpNet) -> io::Result<bool> {
        Ok(self.addresses.remove(&(ifindex, net.to_string())))
    }
    fn announce(&mut self, ifindex: u32, _mac: [u8; 6], addr: IpAddr) -> io::Result<()> {
        self.announced.push((ifindex, addr));
        Ok(())
    }
    fn notify(&mut self, command: &str, env: &[(&str, String)]) {
        let state = env
            .iter()
            .find(|(k, _)| *k == "XVS_HA_STATE")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.hooks.push((command.to_owned(), state));
    }
}

fn key(byte: u8) -> AuthKey {
    AuthKey::new(1, &[byte; 32]).unwrap()
}

fn setup(source: &str, key: Option<AuthKey>) -> Setup {
    Setup {
        node: source.to_owned(),
        vrid: 51,
        family: Family::V4,
        source: source.parse().unwrap(),
        peers: Vec::new(),
        key,
        client: Link {
            ifindex: CLIENT,
            mac: [2, 0, 0, 0, 0, 1],
        },
        server: Link {
            ifindex: SERVER,
            mac: [2, 0, 0, 0, 0, 2],
        },
        gateways: vec!["192.0.2.1/24".parse().unwrap()],
        notify_master: Some("to-master".to_owned()),
        notify_backup: Some("to-backup".to_owned()),
        notify_fault: None,
        anti_replay: AntiReplay::Time { window_s: 5 },
    }
}

fn router(source: &str, priority: u8, key: Option<AuthKey>, t0: Instant) -> Router<Recorder> {
    let machine = Machine::new(Settings {
        priority,
        advert_interval_cs: 10,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: source.parse().unwrap(),
        garp: GarpSchedule {
            master_delay: Duration::ZERO,
            ..GarpSchedule::default()
        },
        initdead: Duration::ZERO,
        warntime: Duration::ZERO,
        higher_prio_send_advert: true,
        dead_time: None,
        sync_wait: Duration::ZERO,
    })
    .unwrap();
    let mut r = Router::new(
        setup(source, key),
        machine,
        Recorder::default(),
        Arc::new(Shared::new(t0)),
    );
    r.set_vips(
        vec![VIP4.parse().unwrap(), VIP6.parse().unwrap()],
        wall(t0, t0),
    );
    r
}

/// A wall clock that moves with the fake monotonic one.
fn wall(t0: Instant, now: Instant) -> WallClock {
    let d = now - t0;
    WallClock {
        secs: 1_800_000_000 + d.as_secs(),
        nanos: d.subsec_nanos(),
    }
}

/// `message` as an IPv4 datagram from `src` to 224.0.0.18 with `ttl`.
fn datagram(src: IpAddr, dst: IpAddr, message: &[u8], ttl: u8) -> Vec<u8> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only");
    };
    let mut d = vec![0u8; 20];
    d[0] = 0x45;
    d[2..4].copy_from_slice(&((20 + message.len()) as u16).to_be_bytes());
    d[8] = ttl;
    d[9] = 112;
    d[12..16].copy_from_slice(&src.octets());
    d[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&d);
    d[10..12].copy_from_slice(&c.to_be_bytes());
    d.extend_from_slice(message);
    d
}

/// Delivers what `from` sent since last time to `to`.
fn deliver(from: &mut Router<Recorder>, to: &mut Router<Recorder>, now: Instant, t0: Instant) {
    for (src, dst, message) in std::mem::take(&mut from.wire.sent) {
        to.receive(&datagram(src, dst, &message, 255), now, wall(t0, now));
    }
}

/// Runs both routers for `ms` milliseconds in 5 ms steps, adverts crossing
/// unless `cut`.
fn run(
    a: &mut Router<Recorder>,
    b: &mut Router<Recorder>,
    t0: Instant,
    from_ms: u64,
    ms: u64,
    cut: bool,
) {
    for step in (from_ms..from_ms + ms).step_by(5) {
        let now = t0 + Duration::from_millis(step);
        a.timer(now, wall(t0, now));
        b.timer(now, wall(t0, now));
        if cut {
            a.wire.sent.clear();
            b.wire.sent.clear();
        } else {
            deliver(a, b, now, t0);
            deliver(b, a, now, t0);
        }
    }
}

fn held(r: &Router<Recorder>) -> Vec<String> {
    let mut all: Vec<String> = r.wire.addresses.iter().map(|(_, a)| a.clone()).collect();
    all.sort();
    all
}

const GROUP: [&str; 3] = ["192.0.2.1/24", "2001:db8:f::10/128", "203.0.113.10/32"];

#[test]
fn the_higher_priority_becomes_master_and_holds_the_whole_group() {
    let t0 = Instant::now();
    let mut a = router(A, 150, Some(key(7)), t0);
    let mut b = router(B, 100, Some(key(7)), t0);
    a.start(t0, wall(t0, t0));
    b.start(t0, wall(t0, t0));
    run(&mut a, &mut b, t0, 0, 2_000, false);
    assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
    assert_eq!(held(&a), GROUP);
    assert!(held(&b).is_empty(), "the backup holds nothing");
    // Every address announced, five times (garp_master_repeat).
    for addr in [VIP4, VIP6, "192.0.2.1"] {
        let n = a
            .wire
            .announced
            .iter()
            .filter(|(_, x)| *x == addr.parse::<IpAddr>().unwrap())
            .count();
        assert_eq!(n, 5, "{addr}");
    }
    assert!(
        a.wire
            .announced
            .contains(&(SERVER, "192.0.2.1".parse().unwrap()))
    );
    assert_eq!(
        a.wire.hooks,
        vec![
            ("to-backup".into(), "BACKUP".into()),
            ("to-master".into(), "MASTER".into())
        ]
    );
    // The backup heard the master's signed adverts and learned who it is.
    assert!(b.shared.counters.received.load(Ordering::Relaxed) > 10);
    assert_eq!(b.shared.view.lock().master, Some((A.parse().unwrap(), 150)));
    for reason in Rejection::ALL {
        assert_eq!(b.shared.counters.rejected(reason), 0, "{reason:?}");
    }
}

#[test]
fn after_a_split_brain_one_master_remains_and_re_announces() {
    let t0 = Instant::now();
    let mut a = router(A, 150, Some(key(7)), t0);
    let mut b = router(B, 100, Some(key(7)), t0);
    a.start(t0, wall(t0, t0));
    b.start(t0, wall(t0, t0));
    run(&mut a, &mut b, t0, 0, 1_000, false);
    run(&mut a, &mut b, t0, 1_000, 1_000, true);
    assert_eq!((a.state(), b.state()), (State::Master, State::Master));
    let before = a.wire.announced.len();
    run(&mut a, &mut b, t0, 2_000, 1_000, false);
    assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
    assert!(held(&b).is_empty());
    assert_eq!(held(&a), GROUP);
    assert!(
        a.wire.announced.len() > before,
        "the master that stayed announced its addresses again (keepalived #166)"
    );
}

#[test]
fn forged_replayed_unsigned_and_routed_adverts_change_nothing_and_are_counted() {
    let t0 = Instant::now();
    let mut b = router(B, 100, Some(key(7)), t0);
    b.start(t0, wall(t0, t0));
    let now = t0 + Duration::from_millis(100);
    // A forger with another key, a higher priority.
    let mut forger = router(A, 254, Some(key(9)), t0);
    forger.start(t0, wall(t0, t0));
    forger.timer(
        t0 + Duration::from_secs(1),
        wall(t0, t0 + Duration::from_secs(1)),
    );
    assert_eq!(forger.state(), State::Master);
    let (src, dst, forged) = forger.wire.sent.last().cloned().unwrap();
    b.receive(&datagram(src, dst, &forged, 255), now, wall(t0, now));
    // An unsigned one.
    let mut plain = router(A, 254, None, t0);
    plain.start(t0, wall(t0, t0));
    plain.timer(
        t0 + Duration::from_secs(1),
        wall(t0, t0 + Duration::from_secs(1)),
    );
    let (_, _, unsigned) = plain.wire.sent.last().cloned().unwrap();
    b.receive(&datagram(src, dst, &unsigned, 255), now, wall(t0, now));
    // A genuine one, then the same bytes again, and one that crossed a router.
    let mut peer = router(A, 150, Some(key(7)), t0);
    peer.start(t0, wall(t0, t0));
    peer.timer(
        t0 + Duration::from_secs(1),
        wall(t0, t0 + Duration::from_secs(1)),
    );
    let (_, _, genuine) = peer.wire.sent.last().cloned().unwrap();
    b.receive(&datagram(src, dst, &genuine, 255), now, wall(t0, now));
    b.receive(&datagram(src, dst, &genuine, 255), now, wall(t0, now));
    b.receive(&datagram(src, dst, &genuine, 254), now, wall(t0, now));
    let mut corrupted = genuine.clone();
    corrupted[1] = 52; // another VRID... with the checksum now wrong
    b.receive(&datagram(src, dst, &corrupted, 255), now, wall(t0, now));
    let c = &b.shared.counters;
    assert_eq!(c.rejected(Rejection::Forged), 1);
    assert_eq!(c.rejected(Rejection::Unsigned), 1);
    assert_eq!(c.rejected(Rejection::Replayed), 1);
    assert_eq!(c.rejected(Rejection::Ttl), 1);
    assert_eq!(c.rejected(Rejection::Checksum), 1);
    assert_eq!(
        c.received.load(Ordering::Relaxed),
        1,
        "only the genuine one"
    );
    // Without the genuine advert the backup would be master by now: the
    // forged priority 254 did not hold it back, and nothing was taken.
    let later = t0 + Duration::from_millis(600);
    b.timer(later, wall(t0, later));
    assert_eq!(b.state(), State::Master);
    // A stale one: signed 10 s ago.
    let mut old = router(A, 150, Some(key(7)), t0);
    old.start(t0, wall(t0, t0));
    old.timer(
        t0 + Duration::from_secs(1),
        wall(t0, t0 + Duration::from_secs(1)),
    );
    let (_, _, stale) = old.wire.sent.last().cloned().unwrap();
    let much_later = t0 + Duration::from_secs(12);
    b.receive(
        &datagram(src, dst, &stale, 255),
        much_later,
        wall(t0, much_later),
    );
    assert_eq!(b.shared.counters.rejected(Rejection::Stale), 1);
}

#[test]
fn unicast_peers_only_are_heard_and_every_peer_is_sent_to() {
    let t0 = Instant::now();
    let mut s = setup(B, None);
    s.peers = vec![A.parse().unwrap(), "198.51.100.13".parse().unwrap()];
    let machine = Machine::new(Settings {
        priority: 100,
        advert_interval_cs: 10,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_address: B.parse().unwrap(),
        garp: GarpSchedule::default(),
        initdead: Duration::ZERO,
        warntime: Duration::ZERO,
        higher_prio_send_advert: true,
        dead_time: None,
        sync_wait: Duration::ZERO,
    })
    .unwrap();
    let mut b = Router::new(s, machine, Recorder::default(), Arc::new(Shared::new(t0)));
    b.set_vips(vec![VIP4.parse().unwrap()], wall(t0, t0));
    b.start(t0, wall(t0, t0));
    let mut stranger = router("198.51.100.99", 200, None, t0);
    stranger.start(t0, wall(t0, t0));
    stranger.timer(
        t0 + Duration::from_secs(1),
        wall(t0, t0 + Duration::from_secs(1)),
    );
    let (src, dst, message) = stranger.wire.sent.last().cloned().unwrap();
    b.receive(&datagram(src, dst, &message, 255), t0, wall(t0, t0));
    assert_eq!(b.shared.counters.rejected(Rejection::NotPeer), 1);
    let later = t0 + Duration::from_secs(1);
    b.timer(later, wall(t0, later));
    assert_eq!(b.state(), State::Master);
    let to: Vec<IpAddr> = b.wire.sent.iter().map(|s| s.1).collect();
    assert_eq!(
        to,
        vec![
            A.parse::<IpAddr>().unwrap(),
            "198.51.100.13".parse().unwrap()
        ]
    );
}

#[test]
fn a_master_follows_the_services_and_releases_everything_on_shutdown() {
    let t0 = Instant::now();
    let mut a = router(A, 150, None, t0);
    a.start(t0, wall(t0, t0));
    let now = t0 + Duration::from_secs(1);
    a.timer(now, wall(t0, now));
    assert_eq!(a.state(), State::Master);
    a.wire.announced.clear();
    // A service on a new VIP; the IPv6 one removed.
    a.set_vips(
        vec![VIP4.parse().unwrap(), "203.0.113.11".parse().unwrap()],
        wall(t0, now),
    );
    assert_eq!(
        held(&a),
        ["192.0.2.1/24", "203.0.113.10/32", "203.0.113.11/32"]
    );
    assert_eq!(a.wire.announced.len(), 5, "the new VIP announced");
    let (_, _, last) = a.wire.sent.last().cloned().unwrap();
    let packet = vrrp::Packet::new_checked(&last[..], Family::V4).unwrap();
    assert_eq!(packet.address_count(), 2, "the advert lists the new set");
    a.shutdown(now, wall(t0, now));
    assert!(held(&a).is_empty());
    let (_, _, bye) = a.wire.sent.last().cloned().unwrap();
    let packet = vrrp::Packet::new_checked(&bye[..], Family::V4).unwrap();
    assert_eq!(packet.priority(), 0, "a stopping master says so");
}

#[test]
fn a_fault_releases_and_an_address_that_cannot_be_added_is_counted() {
    let t0 = Instant::now();
    let mut a = router(A, 150, None, t0);
    a.start(t0, wall(t0, t0));
    let now = t0 + Duration::from_secs(1);
    a.timer(now, wall(t0, now));
    a.fault(Fault::InterfaceDown, true, now, wall(t0, now));
    assert_eq!(a.state(), State::Fault);
    assert!(held(&a).is_empty());
    a.wire.broken = true;
    a.fault(Fault::InterfaceDown, false, now, wall(t0, now));
    let later = now + Duration::from_secs(1);
    a.timer(later, wall(t0, later));
    assert_eq!(a.state(), State::Master);
    assert_eq!(a.shared.counters.address_errors.load(Ordering::Relaxed), 3);
}

#[test]
fn replay_marks_are_bounded() {
    let t0 = Instant::now();
    let mut b = router(B, 100, Some(key(7)), t0);
    b.start(t0, wall(t0, t0));
    for n in 0..(MAX_SENDERS as u8 + 8) {
        let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100 + n));
        let mut peer = router(&src.to_string(), 50, Some(key(7)), t0);
        peer.start(t0, wall(t0, t0));
        peer.timer(
            t0 + Duration::from_secs(1),
            wall(t0, t0 + Duration::from_secs(1)),
        );
        let (s, d, message) = peer.wire.sent.last().cloned().unwrap();
        let now = t0 + Duration::from_millis(u64::from(n));
        b.receive(&datagram(s, d, &message, 255), now, wall(t0, now));
    }
    assert_eq!(b.guards.len(), MAX_SENDERS);
    assert_eq!(
        b.shared.counters.received.load(Ordering::Relaxed),
        u64::from(MAX_SENDERS as u8 + 8)
    );
}

#[test]
fn leftovers_of_a_killed_run_are_removed_before_the_election() {
    let t0 = Instant::now();
    let mut a = router(A, 150, None, t0);
    for (ifindex, net) in [
        (CLIENT, "203.0.113.10/32"),
        (SERVER, "192.0.2.1/24"),
        (CLIENT, "198.51.100.11/24"),
    ] {
        a.wire.addresses.insert((ifindex, net.to_owned()));
    }
    a.remove_leftovers();
    assert_eq!(held(&a), ["198.51.100.11/24"], "only the group's went");
}
