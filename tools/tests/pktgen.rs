//! `xvs-pktgen` and `xvs-xdpfwd` on real interfaces, in namespaces of
//! their own. Root and `ip` only: skipped with a message otherwise, a
//! failure under `XVS_REQUIRE_ALL=1` (the director's `tests/common/skip.rs`);
//! a namespace that cannot be made fails.
//!
//! ```text
//!  direct:   xvsG<id>g (gen)                     xvsG<id>s (sink)
//!            pktgen send ── veth 198.51.100.0/24 ──▶ pktgen count :9000
//!
//!  forward:  xvsG<id>g (gen)      xvsG<id>f (fwd)                 xvsG<id>s (sink)
//!            pktgen send ──veth──▶ [in] xvs-xdpfwd [out] ──veth──▶ pktgen count :9000
//!            198.51.100.2        198.51.100.1 │ 203.0.113.1       203.0.113.2
//!            to VIP 198.51.100.10:9000        └ DNAT to 203.0.113.2:9000
//! ```
//!
//! Readiness is polled (the counter's socket in `ss`, the forwarder's
//! start-up line), every wait is bounded, and the namespaces and the
//! processes in them go away on drop, also when an assertion fails.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed set-up is a failed test"
)]

#[path = "../../director/tests/common/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PKTGEN: &str = env!("CARGO_BIN_EXE_xvs-pktgen");
const XDPFWD: &str = env!("CARGO_BIN_EXE_xvs-xdpfwd");
const FRAMES: u64 = 10_000;
const PORT: &str = "9000";

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces, and the processes started in them: killed, then the
/// namespaces deleted, on drop.
struct Bed {
    namespaces: Vec<String>,
    children: Vec<Child>,
    id: String,
}

impl Bed {
    /// The bed, or `None` when this machine lacks root, namespaces or `ip`
    /// or `kill` (namespaces, raw sockets, XDP; the forwarder is stopped by
    /// `kill`).
    fn new(test: &str, tag: &str) -> Option<Self> {
        if !skip::can_run(test, true, &["ip", "kill"]) {
            return None;
        }
        // Short enough for interface names (15 bytes): xvsG + 5 digits + tag + role.
        let id = format!("{}{tag}", std::process::id() % 100_000);
        Some(Self {
            namespaces: Vec::new(),
            children: Vec::new(),
            id,
        })
    }

    fn ns(&mut self, role: &str) -> String {
        let name = format!("xvsG{}{role}", self.id);
        run(&["ip", "netns", "add", &name]).unwrap();
        self.namespaces.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]).unwrap();
        name
    }

    /// A veth pair `a` (in `ns_a`, address `addr_a`) — `b`, with fixed MACs.
    fn veth(&self, (ns_a, a, mac_a, addr_a): Side<'_>, (ns_b, b, mac_b, addr_b): Side<'_>) {
        run(&[
            "ip", "link", "add", a, "address", mac_a, "netns", ns_a, "type", "veth", "peer",
            "name", b, "address", mac_b, "netns", ns_b,
        ])
        .unwrap();
        for (ns, dev, addr) in [(ns_a, a, addr_a), (ns_b, b, addr_b)] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]).unwrap();
            run(&["ip", "-n", ns, "link", "set", dev, "up"]).unwrap();
        }
    }

    fn spawn(&mut self, ns: &str, args: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// Waits (bounded) for a child to exit; its stdout, or why not.
    fn finish(&mut self, i: usize, limit: Duration) -> Result<String, String> {
        let start = Instant::now();
        let child = &mut self.children[i];
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output_taken();
                return if status.success() {
                    Ok(out.0)
                } else {
                    Err(format!("exited with {status}: {}", out.1))
                };
            }
            if start.elapsed() > limit {
                return Err(format!("still running after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until `ss` in `ns` shows a UDP socket on [`PORT`].
    fn wait_for_counter(&self, ns: &str) {
        let start = Instant::now();
        let filter = format!("sport = :{PORT}");
        while start.elapsed() < Duration::from_secs(5) {
            let out = run(&["ip", "netns", "exec", ns, "ss", "-Hlun", &filter]).unwrap();
            if !out.trim().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the counter in {ns} did not bind port {PORT} within 5 s");
    }
}

type Side<'a> = (&'a str, &'a str, &'a str, &'a str);

/// Reads a finished child's pipes.
trait TakeOutput {
    fn wait_with_output_taken(&mut self) -> (String, String);
}

impl TakeOutput for Child {
    fn wait_with_output_taken(&mut self) -> (String, String) {
        let read = |r: Option<Box<dyn std::io::Read>>| {
            r.map(|r| {
                BufReader::new(r)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
        };
        let out = read(
            self.stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        );
        let err = read(
            self.stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        );
        (out, err)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {text:?}"))
}

const GEN_MAC: &str = "02:00:c6:33:64:02";
const FWD_IN_MAC: &str = "02:00:c6:33:64:01";
const FWD_OUT_MAC: &str = "02:00:cb:00:71:01";
const SINK_MAC: &str = "02:00:cb:00:71:02";

fn send_args<'a>(iface: &'a str, dst_mac: &'a str, dst: &'a str) -> Vec<&'a str> {
    vec![
        PKTGEN,
        "send",
        "--iface",
        iface,
        "--dst-mac",
        dst_mac,
        "--src",
        "198.51.100.2",
        "--dst",
        dst,
        "--flows",
        "16",
        "--count",
        "10000",
        "--duration",
        "10",
        // A cap, so that the receiving backlog never overflows and every
        // frame must arrive.
        "--rate",
        "100000",
        "--json",
    ]
}

#[test]
fn pktgen_frames_all_reach_a_udp_counter_across_a_veth() {
    let Some(mut bed) = Bed::new(
        "pktgen::pktgen_frames_all_reach_a_udp_counter_across_a_veth",
        "d",
    ) else {
        return;
    };
    let gen_ns = bed.ns("g");
    let sink_ns = bed.ns("s");
    let (gen_if, sink_if) = (format!("xvsG{}g0", bed.id), format!("xvsG{}s0", bed.id));
    bed.veth(
        (&gen_ns, &gen_if, GEN_MAC, "198.51.100.2/24"),
        (&sink_ns, &sink_if, SINK_MAC, "198.51.100.1/24"),
    );
    let expect = FRAMES.to_string();
    let counter = bed.spawn(
        &sink_ns,
        &[
            PKTGEN,
            "count",
            "--udp-port",
            PORT,
            "--iface",
            &sink_if,
            "--duration",
            "15",
            "--expect",
            &expect,
            "--json",
        ],
    );
    bed.wait_for_counter(&sink_ns);
    let sender = bed.spawn(&gen_ns, &send_args(&gen_if, SINK_MAC, "198.51.100.1:9000"));
    let sent = json(&bed.finish(sender, Duration::from_secs(15)).unwrap());
    assert_eq!(sent["sent"], FRAMES, "{sent}");
    let counted = json(&bed.finish(counter, Duration::from_secs(15)).unwrap());
    assert_eq!(
        counted["received"], FRAMES,
        "lost on the way: sender {sent}, counter {counted}"
    );
    assert_eq!(counted["udp_csum_errors"], 0, "{counted}");
}

#[test]
fn xdpfwd_forwards_generated_frames_to_the_sink() {
    let Some(mut bed) = Bed::new("pktgen::xdpfwd_forwards_generated_frames_to_the_sink", "f")
    else {
        return;
    };
    let gen_ns = bed.ns("g");
    let fwd_ns = bed.ns("f");
    let sink_ns = bed.ns("s");
    let id = bed.id.clone();
    let (gen_if, fwd_in, fwd_out, sink_if) = (
        format!("xvsG{id}g0"),
        format!("xvsG{id}fi"),
        format!("xvsG{id}fo"),
        format!("xvsG{id}s0"),
    );
    bed.veth(
        (&gen_ns, &gen_if, GEN_MAC, "198.51.100.2/24"),
        (&fwd_ns, &fwd_in, FWD_IN_MAC, "198.51.100.1/24"),
    );
    bed.veth(
        (&fwd_ns, &fwd_out, FWD_OUT_MAC, "203.0.113.1/24"),
        (&sink_ns, &sink_if, SINK_MAC, "203.0.113.2/24"),
    );
    // The sink answers nothing, but a reverse-path check must not drop
    // datagrams from the generator's network.
    run(&[
        "ip",
        "-n",
        &sink_ns,
        "route",
        "add",
        "default",
        "via",
        "203.0.113.1",
    ])
    .unwrap();

    let fwd = bed.spawn(
        &fwd_ns,
        &[
            XDPFWD,
            "--in",
            &fwd_in,
            "--out",
            &fwd_out,
            "--vip",
            "198.51.100.10:9000",
            "--to",
            "203.0.113.2:9000",
            "--to-mac",
            SINK_MAC,
            "--duration",
            "20",
            "--json",
        ],
    );
    // Ready when it prints its start-up line on stderr.
    let stderr = bed.children[fwd].stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = ready_tx.send(line);
        }
    });
    let first = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("xvs-xdpfwd did not start within 10 s"));
    assert!(
        first.starts_with("xvs-xdpfwd: AF_XDP"),
        "xvs-xdpfwd did not start: {first}"
    );

    let expect = FRAMES.to_string();
    let counter = bed.spawn(
        &sink_ns,
        &[
            PKTGEN,
            "count",
            "--udp-port",
            PORT,
            "--duration",
            "15",
            "--expect",
            &expect,
            "--json",
        ],
    );
    bed.wait_for_counter(&sink_ns);
    let sender = bed.spawn(
        &gen_ns,
        &send_args(&gen_if, FWD_IN_MAC, "198.51.100.10:9000"),
    );
    let sent = json(&bed.finish(sender, Duration::from_secs(15)).unwrap());
    assert_eq!(sent["sent"], FRAMES, "{sent}");
    let counted = json(&bed.finish(counter, Duration::from_secs(15)).unwrap());
    // Stop the forwarder and read its report.
    // (`ip netns exec` execs the command: the child's PID is the forwarder's.)
    run(&["kill", "-TERM", &bed.children[fwd].id().to_string()]).unwrap();
    let forwarded = bed.finish(fwd, Duration::from_secs(5));
    assert_eq!(
        counted["received"], FRAMES,
        "lost on the way: sender {sent}, counter {counted}, forwarder {forwarded:?}"
    );
    assert_eq!(counted["udp_csum_errors"], 0, "{counted}");
    let forwarded = json(&forwarded.unwrap());
    assert_eq!(forwarded["forwarded"], FRAMES, "{forwarded}");
}
