//! The kernel module against a real kernel, in namespaces this test makes
//! (root and `ip` only; skipped with a message otherwise, a failure under
//! `XVS_REQUIRE_ALL=1`: `common::skip`).
//!
//! ```text
//!   netns xvsNd (director)                 netns xvsNp (peer)
//!   xvsNd0 02:00:00:00:d0:01  <── veth ──>  xvsNp0
//!   192.0.2.1/24, 2001:db8::1/64            192.0.2.2/24, 2001:db8::2/64
//!   mtu 1400
//!   default via 192.0.2.254, 2001:db8::fe
//! ```
//!
//! Netlink sockets belong to the namespace of the thread that opens them,
//! so every kernel call runs on a thread that first enters the director's
//! namespace with setns.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should fail the test loudly"
)]

mod common;

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::Namespaces;
use common::{ip, skip};
use xvs_director::config::ClusterConfig;
use xvs_director::kernel::{KernelError, NeighbourWatcher, discover};
use xvs_director::pipeline::{IfaceId, Neighbours};

/// Two namespaces and a veth pair, removed on drop (even after a failed
/// assertion).
struct Testbed {
    netns: Namespaces,
    /// The director's end of the veth.
    dev: String,
    /// The peer's end.
    peer_dev: String,
}

impl Testbed {
    fn new() -> Result<Self, String> {
        let n = std::process::id() % 100_000;
        let bed = Self {
            netns: Namespaces::add(format!("xvs{n}d"), format!("xvs{n}p"))?,
            dev: format!("xvs{n}d0"),
            peer_dev: format!("xvs{n}p0"),
        };
        // Built before the first link, so that a failure half-way is
        // cleaned up by Drop.
        bed.set_up()?;
        Ok(bed)
    }

    fn set_up(&self) -> Result<(), String> {
        let (d, p) = (&self.netns.director, &self.netns.peer);
        let (dev, peer_dev) = (&self.dev, &self.peer_dev);
        self.netns.veth(dev, peer_dev)?;
        ip(&[
            "-n",
            d,
            "link",
            "set",
            dev,
            "address",
            "02:00:00:00:d0:01",
            "mtu",
            "1400",
            "up",
        ])?;
        ip(&["-n", p, "link", "set", peer_dev, "up"])?;
        ip(&["-n", d, "addr", "add", "192.0.2.1/24", "dev", dev])?;
        ip(&[
            "-n",
            d,
            "addr",
            "add",
            "2001:db8::1/64",
            "dev",
            dev,
            "nodad",
        ])?;
        ip(&["-n", p, "addr", "add", "192.0.2.2/24", "dev", peer_dev])?;
        ip(&[
            "-n",
            p,
            "addr",
            "add",
            "2001:db8::2/64",
            "dev",
            peer_dev,
            "nodad",
        ])?;
        ip(&[
            "-n",
            d,
            "route",
            "add",
            "default",
            "via",
            "192.0.2.254",
            "dev",
            dev,
        ])?;
        ip(&[
            "-n",
            d,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8::fe",
            "dev",
            dev,
        ])
    }

    fn peer_mac(&self) -> String {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.netns.peer,
                "-br",
                "link",
                "show",
                &self.peer_dev,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs `f` on a thread inside the director's namespace.
    fn in_director<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.netns.in_director(f)
    }
}

fn config(dev: &str) -> ClusterConfig {
    let text = format!("[[interfaces]]\nname = \"{dev}\"\nrole = \"server\"\n");
    ClusterConfig::parse("live.toml", &text).unwrap()
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

#[test]
fn discovery_and_a_watcher_that_resolves_on_request() {
    if !skip::can_run(
        "kernel::discovery_and_a_watcher_that_resolves_on_request",
        true,
        &["ip"],
    ) {
        return;
    }
    let bed = Testbed::new().unwrap();
    let dev = bed.dev.clone();

    // Discovery: what `ip` set up, read back.
    let (found, filled) = bed.in_director(move || {
        let mut config = config(&dev);
        let found = discover(&mut config).unwrap();
        (found, config)
    });
    let k = &found[0];
    assert_eq!(k.mac.to_string(), "02:00:00:00:d0:01");
    assert_eq!(k.mtu, 1400);
    let addresses: Vec<String> = k.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["192.0.2.1/24", "2001:db8::1/64"]);
    let gateways: Vec<String> = k.gateways.iter().map(ToString::to_string).collect();
    assert_eq!(gateways, ["192.0.2.254", "2001:db8::fe"]);
    assert!(k.from_kernel.mac && k.from_kernel.mtu && k.from_kernel.gateways);
    let iface = &filled.interfaces[0];
    assert_eq!((iface.mac, iface.mtu), (Some(k.mac), Some(1400)));
    assert_eq!(iface.gateways, k.gateways);

    // A missing interface is named, with what to do.
    let err = bed.in_director(|| discover(&mut config("xvsnothere0")).unwrap_err());
    assert!(matches!(err, KernelError::NoSuchInterface { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "interface \"xvsnothere0\" does not exist: check the name with \"ip link\""
    );

    // The watcher: a next hop the workers missed is resolved by the kernel
    // (the peer answers ARP / NS) and learned from its notification.
    let neighbours = Arc::new(Neighbours::new());
    let table = Arc::clone(&neighbours);
    let ifindex = k.ifindex;
    let peer4: IpAddr = "192.0.2.2".parse().unwrap();
    let peer6: IpAddr = "2001:db8::2".parse().unwrap();
    let mut watcher = bed.in_director(move || {
        NeighbourWatcher::spawn(
            table,
            vec![(IfaceId(0), ifindex)],
            vec![(IfaceId(0), peer6)],
        )
        .unwrap()
    });
    // Nothing talks to the peer's IPv4 address unless asked: give the
    // initial dump time to land, and check the table does not have it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(neighbours.lookup(IfaceId(0), peer4), None);
    let asked = Instant::now();
    neighbours.request(IfaceId(0), peer4);
    let peer_mac = bed.peer_mac();
    let learned = |ip| {
        let n = Arc::clone(&neighbours);
        let want = peer_mac.clone();
        move || n.lookup(IfaceId(0), ip).map(|m| m.to_string()) == Some(want.clone())
    };
    assert!(
        wait_for(Duration::from_secs(5), learned(peer4)),
        "IPv4 peer not learned after a request: {:?} {:?}",
        neighbours.snapshot(),
        watcher.counters()
    );
    eprintln!(
        "IPv4 neighbour learned {:?} after the request",
        asked.elapsed()
    );
    assert!(
        wait_for(Duration::from_secs(5), learned(peer6)),
        "IPv6 peer not learned by prefetch: {:?} {:?}",
        neighbours.snapshot(),
        watcher.counters()
    );
    let counters = watcher.counters();
    assert!(counters.resolutions_requested >= 2, "{counters:?}");
    assert!(counters.updates_applied >= 2, "{counters:?}");

    // The kernel forgets it: so does the table.
    ip(&[
        "-n",
        &bed.netns.director,
        "neigh",
        "del",
        "192.0.2.2",
        "dev",
        &bed.dev,
    ])
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || neighbours
            .lookup(IfaceId(0), peer4)
            .is_none()),
        "a deleted neighbour stays: {:?}",
        neighbours.snapshot()
    );

    // stop() returns promptly.
    let start = Instant::now();
    watcher.stop();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
