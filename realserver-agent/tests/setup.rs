//! `xvs-agent setup` / `teardown` against a real kernel, in namespaces this
//! test makes (root, `ip` and `python3` only; skipped with a message
//! otherwise, a failure under `XVS_REQUIRE_ALL=1`: the director's
//! `tests/common/skip.rs`).
//!
//! ```text
//!   netns xvsA<n><t>d ("director", also the client)     netns xvsA<n><t>r (real server)
//!   xvsA<n><t>d0  <──────────────── veth ─────────────>  xvsA<n><t>r0  (MAC 02:00:00:00:00:02)
//!   192.0.2.1/24, 2001:db8::1/64                      192.0.2.2/24, 2001:db8::2/64
//!                                                     lo: the VIPs, put there by xvs-agent
//!                                                         198.51.100.10, 2001:db8:100::10
//! ```
//!
//! DR: the director's neighbour entry for a VIP never resolves (no ARP or
//! ND answer from the real server) while its own address does; a UDP
//! datagram to the VIP sent to the real server's MAC is answered from the
//! VIP. TUN: frames encapsulated by `xvs-packet`'s VS/TUN code (IPv4 and
//! IPv6 in IPv4 and in IPv6) and sent raw from the director reach a UDP
//! socket bound to the VIP on the real server, decapsulated by the XDP
//! program. Teardown restores the sysctls and removes the VIPs and the
//! program. The helpers on either side are short python3 scripts run with
//! `ip netns exec`, each bounded by a socket timeout.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should fail the test loudly"
)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../director/tests/common/skip.rs"]
mod skip;

use etherparse::PacketBuilder;
use xvs_packet::tunnel::{OuterSource, Tunnel, encapsulate};
use xvs_packet::{Parsed, parse};

const AGENT: &str = env!("CARGO_BIN_EXE_xvs-agent");
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const VIP4: &str = "198.51.100.10";
const VIP6: &str = "2001:db8:100::10";
const PORT: u16 = 5000;

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{program} {}: {}{text}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// Two namespaces on a veth pair, removed on drop (even after a failed
/// assertion), with the helper processes it started.
struct Testbed {
    director: String,
    rs: String,
    dev: String,
    rs_dev: String,
    run_dir: PathBuf,
}

impl Testbed {
    /// `tag` tells apart the beds of tests running at once.
    fn new(tag: char) -> Result<Self, String> {
        let n = std::process::id() % 100_000;
        let bed = Self {
            director: format!("xvsA{n}{tag}d"),
            rs: format!("xvsA{n}{tag}r"),
            dev: format!("xvsA{n}{tag}d0"),
            rs_dev: format!("xvsA{n}{tag}r0"),
            run_dir: std::env::temp_dir().join(format!("xvsA{n}{tag}-run")),
        };
        bed.set_up()?;
        Ok(bed)
    }

    fn set_up(&self) -> Result<(), String> {
        let (d, r, dev, rs_dev) = (&self.director, &self.rs, &self.dev, &self.rs_dev);
        ip(&["netns", "add", d])?;
        ip(&["netns", "add", r])?;
        ip(&[
            "-n",
            d,
            "link",
            "add",
            dev,
            "address",
            "02:00:00:00:00:01",
            "type",
            "veth",
            "peer",
            "name",
            rs_dev,
            "address",
            "02:00:00:00:00:02",
            "netns",
            r,
        ])?;
        for (ns, link, v4, v6, gw4, gw6) in [
            (d, dev, "192.0.2.1/24", "2001:db8::1/64", None, None),
            (
                r,
                rs_dev,
                "192.0.2.2/24",
                "2001:db8::2/64",
                Some("192.0.2.1"),
                Some("2001:db8::1"),
            ),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "address", "add", v4, "dev", link])?;
            ip(&["-n", ns, "address", "add", v6, "dev", link, "nodad"])?;
            ip(&["-n", ns, "link", "set", link, "up"])?;
            if let (Some(gw4), Some(gw6)) = (gw4, gw6) {
                ip(&["-n", ns, "route", "add", "default", "via", gw4])?;
                ip(&["-n", ns, "-6", "route", "add", "default", "via", gw6])?;
            }
        }
        // Neighbour discovery waits for the link-local addresses' DAD:
        // until then a solicitation may go unanswered for want of readiness
        // rather than by design, which would make the checks below lie.
        let deadline = Instant::now() + Duration::from_secs(10);
        for ns in [d, r] {
            while !ip(&["-n", ns, "-6", "address", "show", "tentative"])?.is_empty() {
                if Instant::now() > deadline {
                    return Err(format!("{ns}: IPv6 addresses still tentative after 10 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Quick neighbour failures: three probes 500 ms apart.
        for family in ["ipv4", "ipv6"] {
            self.in_ns(
                d,
                "sysctl",
                &[
                    "-qw",
                    &format!("net.{family}.neigh.{dev}.retrans_time_ms=500"),
                ],
            )?;
        }
        Ok(())
    }

    fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn agent(&self, args: &[&str]) -> Result<String, String> {
        let run_dir = self.run_dir.to_string_lossy().into_owned();
        let mut all = vec!["--run-dir", run_dir.as_str()];
        all.extend_from_slice(args);
        self.in_ns(&self.rs, AGENT, &all)
    }

    fn rs_sysctl(&self, name: &str) -> String {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        self.in_ns(&self.rs, "cat", &[&path])
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The director's neighbour state for `addr` once it has settled
    /// (REACHABLE, or FAILED after the probes), after sending it a datagram.
    fn neighbour_state(&self, addr: &str) -> String {
        let route = if addr.contains(':') {
            format!("{addr}/128")
        } else {
            format!("{addr}/32")
        };
        ip(&[
            "-n",
            &self.director,
            "route",
            "replace",
            &route,
            "dev",
            &self.dev,
        ])
        .unwrap();
        let family = if addr.contains(':') {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        let script = format!(
            "import socket; socket.socket(socket.{family}, socket.SOCK_DGRAM).sendto(b'x', ('{addr}', 9))"
        );
        self.in_ns(&self.director, "python3", &["-c", &script])
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = ip(&[
                "-n",
                &self.director,
                "neigh",
                "show",
                addr,
                "dev",
                &self.dev,
            ])
            .unwrap();
            let settled = ["REACHABLE", "STALE", "FAILED", "PERMANENT"]
                .into_iter()
                .find(|s| out.contains(s));
            if let Some(state) = settled {
                return state.to_owned();
            }
            if Instant::now() > deadline {
                return format!("unsettled: {out:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a UDP socket bound to `vip` in the real server's namespace that
    /// prints what it receives (and echoes it when `echo`); returns once it is
    /// bound.
    fn listener(&self, vip: &str, echo: bool) -> Helper {
        let family = if vip.contains(':') {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        let reply = if echo { "s.sendto(data, peer)" } else { "pass" };
        let script = format!(
            "import socket, sys\n\
             s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
             s.bind(('{vip}', {PORT}))\n\
             s.settimeout(5)\n\
             print('ready', flush=True)\n\
             try: data, peer = s.recvfrom(2048)\n\
             except TimeoutError: sys.exit(0)\n\
             print(data.decode(), peer[0], flush=True)\n\
             {reply}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.rs, "python3", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let helper = Helper { child, out };
        assert_eq!(line.trim(), "ready", "the listener on {vip} did not start");
        helper
    }

    /// Sends `frame` as it is out of the director's interface.
    fn send_raw(&self, frame: &[u8]) {
        let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let script = "import socket, sys\n\
                      s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
                      s.bind((sys.argv[1], 0))\n\
                      s.send(bytes.fromhex(sys.argv[2]))\n";
        self.in_ns(&self.director, "python3", &["-c", script, &self.dev, &hex])
            .unwrap();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.director]);
        let _ = ip(&["netns", "del", &self.rs]);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// A helper process, killed (by its PID) on drop.
struct Helper {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Helper {
    /// Its next line of output (empty when it ended, e.g. on its timeout).
    fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        line.trim().to_owned()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `test` cannot run here (xvs-agent changes addresses, sysctls
/// and XDP programs: root; the traffic helpers are python3 scripts).
fn skip_unless_root(test: &str) -> bool {
    !skip::can_run(test, true, &["ip", "python3"])
}

/// A UDP datagram from a client to `vip`, in an Ethernet frame to the
/// real server's MAC, encapsulated by VS/TUN towards `rs`.
fn tunnelled(client: &str, vip: &str, director: &str, rs: &str, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(DIRECTOR_MAC, RS_MAC);
    let builder = match (
        client.parse::<IpAddr>().unwrap(),
        vip.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(c), IpAddr::V4(v)) => builder.ipv4(c.octets(), v.octets(), 64),
        (IpAddr::V6(c), IpAddr::V6(v)) => builder.ipv6(c.octets(), v.octets(), 64),
        _ => panic!("client and VIP of one family"),
    };
    let mut frame = Vec::new();
    builder.udp(40000, PORT).write(&mut frame, payload).unwrap();
    let Ok(Parsed::Ip(ip)) = parse(&frame) else {
        panic!("the inner frame parses")
    };
    const HEADROOM: usize = 64;
    let mut buf = vec![0; HEADROOM + frame.len()];
    buf[HEADROOM..].copy_from_slice(&frame);
    let tunnel = Tunnel {
        dst: rs.parse().unwrap(),
        src: OuterSource::Fixed(director.parse().unwrap()),
        ttl: 64,
    };
    let (start, len) = encapsulate(&mut buf, HEADROOM, frame.len(), &ip, &tunnel, 1).unwrap();
    buf[start..start + len].to_vec()
}

const SYSCTLS: [&str; 6] = [
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.lo.arp_ignore",
    "net.ipv4.conf.lo.arp_announce",
    "net.ipv4.conf.IFACE.arp_ignore",
    "net.ipv4.conf.IFACE.arp_announce",
];

fn sysctls(bed: &Testbed) -> Vec<String> {
    SYSCTLS
        .iter()
        .map(|s| bed.rs_sysctl(&s.replace("IFACE", &bed.rs_dev)))
        .collect()
}

fn assert_torn_down(bed: &Testbed, sysctls_before: &[String]) {
    assert_eq!(
        sysctls(bed),
        sysctls_before,
        "teardown restores the sysctls"
    );
    let lo = ip(&["-n", &bed.rs, "address", "show", "dev", "lo"]).unwrap();
    assert!(
        !lo.contains(VIP4) && !lo.contains(VIP6),
        "teardown removes the VIPs: {lo}"
    );
    let link = ip(&["-n", &bed.rs, "link", "show", "dev", &bed.rs_dev]).unwrap();
    assert!(
        !link.contains("xdp"),
        "teardown detaches the program: {link}"
    );
    assert!(
        !bed.run_dir.join("state.json").exists(),
        "teardown removes the state file"
    );
}

#[test]
fn dr_real_server_accepts_vip_traffic_but_never_claims_the_vip() {
    if skip_unless_root("setup::dr_real_server_accepts_vip_traffic_but_never_claims_the_vip") {
        return;
    }
    let bed = Testbed::new('a').unwrap();
    let before = sysctls(&bed);
    assert_eq!(
        before[0], "0",
        "a fresh namespace answers ARP for any local address"
    );

    let setup = [
        "setup",
        "--vip",
        VIP4,
        "--vip",
        VIP6,
        "--method",
        "dr",
        "--iface",
        &bed.rs_dev,
    ];
    let out = bed.agent(&setup).unwrap();
    assert!(out.contains(&format!("added {VIP4}/32 to lo")), "{out}");
    let state = std::fs::read_to_string(bed.run_dir.join("state.json")).unwrap();
    let again = bed.agent(&setup).unwrap();
    assert!(
        !again
            .lines()
            .any(|l| l.starts_with("added") || l.starts_with("set ")),
        "setup twice = once: {again}"
    );
    assert_eq!(
        std::fs::read_to_string(bed.run_dir.join("state.json")).unwrap(),
        state
    );
    for (name, value) in SYSCTLS.iter().zip(sysctls(&bed)) {
        let want = if name.ends_with("arp_ignore") {
            "1"
        } else {
            "2"
        };
        assert_eq!(value, want, "{name}");
    }

    // The real server's own addresses resolve; the VIPs never do.
    assert_eq!(bed.neighbour_state("192.0.2.2"), "REACHABLE");
    assert_eq!(bed.neighbour_state("2001:db8::2"), "REACHABLE");
    assert_eq!(
        bed.neighbour_state(VIP4),
        "FAILED",
        "ARP for the VIP must go unanswered"
    );
    assert_eq!(
        bed.neighbour_state(VIP6),
        "FAILED",
        "ND for the VIP must go unanswered"
    );

    // What the director does in DR: the VIP's packets to the real server's MAC.
    for vip in [VIP4, VIP6] {
        ip(&[
            "-n",
            &bed.director,
            "neigh",
            "replace",
            vip,
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            &bed.dev,
            "nud",
            "permanent",
        ])
        .unwrap();
        let mut listener = bed.listener(vip, true);
        let family = if vip.contains(':') {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        let client = format!(
            "import socket\n\
             s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
             s.settimeout(5)\n\
             s.sendto(b'dr-hello', ('{vip}', {PORT}))\n\
             data, peer = s.recvfrom(2048)\n\
             print(data.decode(), peer[0])\n"
        );
        let reply = bed
            .in_ns(&bed.director, "python3", &["-c", &client])
            .unwrap();
        assert_eq!(
            reply.trim(),
            format!("dr-hello {vip}"),
            "answered from the VIP"
        );
        assert!(listener.line().starts_with("dr-hello"));
    }

    let out = bed.agent(&["teardown"]).unwrap();
    assert!(out.contains(&format!("removed {VIP4}/32 from lo")), "{out}");
    assert_torn_down(&bed, &before);
}

#[test]
fn tun_real_server_decapsulates_with_xdp() {
    if skip_unless_root("setup::tun_real_server_decapsulates_with_xdp") {
        return;
    }
    let bed = Testbed::new('b').unwrap();
    let before = sysctls(&bed);

    let setup = [
        "setup",
        "--vip",
        VIP4,
        "--vip",
        VIP6,
        "--method",
        "tun",
        "--iface",
        &bed.rs_dev,
        "--decap",
        "xdp",
    ];
    let out = bed.agent(&setup).unwrap();
    assert!(out.contains("decapsulated by XDP"), "{out}");
    let link = ip(&["-n", &bed.rs, "-d", "link", "show", "dev", &bed.rs_dev]).unwrap();
    assert!(link.contains("name xvs_decap"), "{link}");
    let again = bed.agent(&setup).unwrap();
    assert!(again.contains("already done: attach XDP"), "{again}");

    // Every combination of inner and outer family.
    let cases = [
        ("203.0.113.7", VIP4, "192.0.2.1", "192.0.2.2", "ipip"),
        (
            "2001:db8:cafe::7",
            VIP6,
            "2001:db8::1",
            "2001:db8::2",
            "ip6ip6",
        ),
        ("203.0.113.7", VIP4, "2001:db8::1", "2001:db8::2", "ip4ip6"),
        ("2001:db8:cafe::7", VIP6, "192.0.2.1", "192.0.2.2", "ip6ip4"),
    ];
    for (client, vip, director, rs, name) in cases {
        let mut listener = bed.listener(vip, false);
        bed.send_raw(&tunnelled(client, vip, director, rs, name.as_bytes()));
        assert_eq!(
            listener.line(),
            format!("{name} {client}"),
            "{name}: the inner datagram reaches the socket on the VIP"
        );
    }
    // Without the program the same frame is not delivered: the test can fail.
    bed.agent(&["teardown"]).unwrap();
    assert_torn_down(&bed, &before);
    ip(&[
        "-n",
        &bed.rs,
        "address",
        "add",
        &format!("{VIP4}/32"),
        "dev",
        "lo",
    ])
    .unwrap();
    let mut listener = bed.listener(VIP4, false);
    bed.send_raw(&tunnelled(
        "203.0.113.7",
        VIP4,
        "192.0.2.1",
        "192.0.2.2",
        b"ipip",
    ));
    assert_eq!(listener.line(), "", "no decapsulation after teardown");
}
