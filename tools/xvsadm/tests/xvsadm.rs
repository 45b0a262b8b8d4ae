//! `xvsadm` end to end against a director in this process: command line →
//! control requests → the control plane → the table → ipvsadm's output.
//! The same code paths as over the socket, without one.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use xvs_adm::client::{
    EXIT_REFUSED, EXIT_USAGE, FileNames, Outcome, Transport, TransportError, run,
};
use xvs_director::config::ClusterConfig;
use xvs_director::control::listing;
use xvs_director::control::plane::{ControlPlane, NoHooks};
use xvs_director::control::table::ServiceTable;
use xvs_director::pipeline::{Director, HEADROOM, IfaceId, Neighbours, Worker};
use xvs_proto::control::{CONNECTIONS_PER_CHUNK, ConnView, Reply, Request};

const CONFIG: &str = r#"
[conn_table]
capacity = 4096

[[interfaces]]
name = "c0"
role = "client"
mac = "02:00:00:00:01:01"
addresses = ["198.51.100.1/24", "2001:db8:c::1/64"]

[[interfaces]]
name = "s0"
role = "server"
mac = "02:00:00:00:02:01"
addresses = ["192.0.2.1/24", "2001:db8:5::1/64"]

[[neighbours]]
interface = "s0"
address = "192.0.2.11"
mac = "02:00:00:00:00:11"
[[neighbours]]
interface = "s0"
address = "192.0.2.12"
mac = "02:00:00:00:00:12"
"#;

struct InProcess {
    plane: ControlPlane,
    worker: Worker,
    now: u64,
}

impl Transport for InProcess {
    fn call(&mut self, request: Request) -> Result<Reply, TransportError> {
        let mut reload = || Err("no file".to_owned());
        Ok(self.plane.handle(
            &request,
            &self.worker.counters,
            self.now,
            &mut reload,
            &mut NoHooks,
        ))
    }

    fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError> {
        // As the control socket's client thread walks it.
        let count = listing::for_each_chunk(
            self.plane.director().table(),
            self.now,
            CONNECTIONS_PER_CHUNK,
            |entries| chunk(entries),
        )?;
        Ok(Reply::ConnectionsEnd { count })
    }
}

fn director() -> InProcess {
    let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
    let table = ServiceTable::from_config(&config, 1).unwrap();
    let director = Arc::new(Director::with_snapshot(
        table.snapshot(),
        &config,
        9,
        Arc::new(Neighbours::new()),
    ));
    let worker = director.worker(1);
    InProcess {
        plane: ControlPlane::new(table, director, 4096),
        worker,
        now: 1,
    }
}

fn xvsadm(d: &mut InProcess, line: &str) -> Outcome {
    let args: Vec<&str> = line.split_whitespace().collect();
    run(&args, d, &mut || Ok(String::new()), &FileNames::default())
}

fn ok(d: &mut InProcess, line: &str) -> String {
    let o = xvsadm(d, line);
    assert_eq!(o.status, 0, "{line}: {}", o.stderr);
    o.stdout
}

fn restore(d: &mut InProcess, input: &str) -> Outcome {
    let text = input.to_owned();
    run(&["-R"], d, &mut || Ok(text.clone()), &FileNames::default())
}

/// A file as ipvsadm-save writes it (sorted), with every feature xvs has.
const SAVED: &str = "\
-A -t 203.0.113.10:80 -s wlc
-a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 1
-a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 2
-A -t 203.0.113.10:443 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port
-a -t 203.0.113.10:443 -r 192.0.2.11:443 -g -w 1
-a -t 203.0.113.10:443 -r 192.0.2.13:443 -i -w 3 --tun-type ipip
-A -u 203.0.113.10:53 -s rr
-a -u 203.0.113.10:53 -r 192.0.2.11:53 -m -w 1
-A -t [2001:db8:f::10]:80 -s mh -p 360 -M 64
-a -t [2001:db8:f::10]:80 -r [2001:db8:5::11]:80 -m -w 5
";

#[test]
fn restore_then_save_gives_back_the_file_and_round_trips() {
    let mut d = director();
    let o = restore(&mut d, SAVED);
    assert_eq!(o.status, 0, "{}", o.stderr);
    let saved = ok(&mut d, "-S -n");
    assert_eq!(saved, SAVED);
    // -S -n | -C; -R  leaves -S -n identical.
    ok(&mut d, "-C");
    assert_eq!(ok(&mut d, "-S -n"), "");
    assert_eq!(restore(&mut d, &saved).status, 0);
    assert_eq!(ok(&mut d, "-S -n"), saved);
}

#[test]
fn hand_written_restore_files_with_ipvsadm_words_and_comments() {
    let mut d = director();
    let input = "\
# written by hand
ipvsadm -A -t 203.0.113.20:80 -s rr
ipvsadm -a -t 203.0.113.20:80 -r 192.0.2.12 -m
-a -t 203.0.113.20:80 -r 192.0.2.11:8080 -m -w 4 -x 100 -y 50

";
    let o = restore(&mut d, input);
    assert_eq!(o.status, 0, "{}", o.stderr);
    assert_eq!(
        ok(&mut d, "-L -n --thresholds"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  203.0.113.20:80 rr\n\
         \x20 -> 192.0.2.11:8080              100        50         0          0         \n\
         \x20 -> 192.0.2.12:80                0          0          0          0         \n"
    );
}

#[test]
fn a_failing_restore_changes_nothing() {
    let mut d = director();
    ok(&mut d, "-A -t 203.0.113.10:80 -s rr");
    let input = "-a -t 203.0.113.10:80 -r 192.0.2.11 -m\n-A -t 203.0.113.10:80 -s wlc\n";
    let o = restore(&mut d, input);
    assert_eq!(o.status, EXIT_REFUSED);
    assert!(
        o.stderr.starts_with("Service already exists\n"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("step 2 of 2"), "{}", o.stderr);
    assert_eq!(ok(&mut d, "-S -n"), "-A -t 203.0.113.10:80 -s rr\n");
}

#[test]
fn list_numeric_is_ipvsadm_s_layout() {
    let mut d = director();
    ok(&mut d, "-A -t 203.0.113.10:80 -s wlc -p");
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m -w 3");
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.12 -g");
    ok(&mut d, "-A -u [2001:db8:f::10]:53 -s rr");
    assert_eq!(
        ok(&mut d, "-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  203.0.113.10:80 wlc persistent 360\n\
         \x20 -> 192.0.2.11:80                Masq    3      0          0         \n\
         \x20 -> 192.0.2.12:80                Route   1      0          0         \n\
         UDP  [2001:db8:f::10]:53 rr\n"
    );
    assert_eq!(
        ok(&mut d, "-L -n -t 203.0.113.10:80"),
        "Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  203.0.113.10:80 wlc persistent 360\n\
         \x20 -> 192.0.2.11:80                Masq    3      0          0         \n\
         \x20 -> 192.0.2.12:80                Route   1      0          0         \n"
    );
    assert_eq!(
        ok(&mut d, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    ok(&mut d, "--set 600 0 30");
    assert_eq!(
        ok(&mut d, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 600 120 30\n"
    );
}

#[test]
fn errors_and_exit_codes_are_ipvsadm_s() {
    let mut d = director();
    ok(&mut d, "-A -t 203.0.113.10:80 -s rr");
    let cases = [
        ("-A -t 203.0.113.10:80", "Service already exists"),
        ("-E -t 203.0.113.11:80 -s rr", "No such service"),
        ("-D -t 203.0.113.11:80", "No such service"),
        ("-a -t 203.0.113.11:80 -r 192.0.2.11", "Service not defined"),
        ("-d -t 203.0.113.10:80 -r 192.0.2.11", "No such destination"),
        ("-e -t 203.0.113.10:80 -r 192.0.2.11", "No such destination"),
        (
            "-A -t 203.0.113.12:80 -s nosuch",
            "Scheduler or persistence engine not found",
        ),
    ];
    for (line, first) in cases {
        let o = xvsadm(&mut d, line);
        assert_eq!(o.status, EXIT_REFUSED, "{line}");
        assert_eq!(o.stderr.lines().next(), Some(first), "{line}: {}", o.stderr);
        assert!(o.stderr.lines().count() >= 2, "{line}: a sentence follows");
    }
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m");
    let o = xvsadm(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m");
    assert_eq!(o.stderr.lines().next(), Some("Destination already exists"));
    let o = xvsadm(&mut d, "-A -f 7 -s rr");
    assert_eq!(o.status, EXIT_USAGE);
    assert!(o.stderr.contains("not supported"), "{}", o.stderr);
    let o = xvsadm(&mut d, "-Q");
    assert_eq!(o.status, EXIT_USAGE);
}

#[test]
fn connections_and_stats_follow_the_traffic() {
    let mut d = director();
    ok(&mut d, "-A -t 203.0.113.10:80 -s rr");
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m");
    // A SYN from a client through the pipeline.
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 1, 1])
        .ipv4([198, 51, 100, 7], [203, 0, 113, 10], 64)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut frame, &[])
        .unwrap();
    let mut buf = vec![0u8; HEADROOM + frame.len()];
    buf[HEADROOM..].copy_from_slice(&frame);
    let director = Arc::clone(d.plane.director());
    let out = director.process(
        &mut d.worker,
        &mut buf,
        HEADROOM,
        frame.len(),
        IfaceId(0),
        1_000,
    );
    assert!(matches!(
        out.verdict,
        xvs_director::pipeline::Verdict::Transmit { .. }
    ));
    d.now = 2_000;
    let conns = ok(&mut d, "-L -n -c");
    assert_eq!(
        conns,
        "IPVS connection entries\n\
         pro expire state       source             virtual            destination\n\
         TCP 00:59  SYN_RECV    198.51.100.7:40000 203.0.113.10:80    192.0.2.11:80\n"
    );
    let stats = ok(&mut d, "-L -n --stats --exact");
    assert!(
        stats.contains(
            "TCP  203.0.113.10:80                     1        1        0       40        0"
        ),
        "{stats}"
    );
    ok(&mut d, "-Z");
    let stats = ok(&mut d, "-L -n --stats");
    assert!(
        stats.contains(
            "TCP  203.0.113.10:80                     0        0        0        0        0"
        ),
        "{stats}"
    );
    assert!(ok(&mut d, "-L -n").contains("Masq    1      1          0"));
}

/// A director whose XDP maps refuse every change: what xvsadm says then.
struct MapsFull(InProcess);

impl Transport for MapsFull {
    fn call(&mut self, request: Request) -> Result<Reply, TransportError> {
        struct Refuse;
        impl xvs_director::control::plane::DataPlaneHooks for Refuse {
            fn published(
                &mut self,
                snapshot: &xvs_director::pipeline::Snapshot,
            ) -> Result<(), xvs_director::control::plane::HookError> {
                // The running state (one service) goes back in; more does not.
                if snapshot.live_services().count() > 1 {
                    return Err(xvs_director::control::plane::HookError::XdpMaps(
                        xvs_director::io::IoError::Other(
                            "updating the XDP program's services map: Argument list too long"
                                .to_owned(),
                        ),
                    ));
                }
                Ok(())
            }
        }
        let mut reload = || Err("no file".to_owned());
        let d = &mut self.0;
        Ok(d.plane.handle(
            &request,
            &d.worker.counters,
            d.now,
            &mut reload,
            &mut Refuse,
        ))
    }

    fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), TransportError>,
    ) -> Result<Reply, TransportError> {
        self.0.connections(chunk)
    }
}

#[test]
fn a_change_the_data_plane_cannot_follow_fails_with_its_reason() {
    let mut d = MapsFull(director());
    let args = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let run_line = |d: &mut MapsFull, line: &str| {
        run(
            &args(line),
            d,
            &mut || Ok(String::new()),
            &FileNames::default(),
        )
    };
    assert_eq!(run_line(&mut d, "-A -t 203.0.113.10:80 -s rr").status, 0);
    let before = run_line(&mut d, "-S -n").stdout;
    let o = run_line(&mut d, "-A -t 203.0.113.20:80 -s rr");
    assert_eq!(o.status, EXIT_REFUSED, "{o:?}");
    assert!(
        o.stderr.contains("Argument list too long") && o.stderr.contains("rolled back"),
        "{}",
        o.stderr
    );
    assert_eq!(
        run_line(&mut d, "-S -n").stdout,
        before,
        "the refused service stayed"
    );
}

/// A director whose weights follow agents, with 192.0.2.11's agent having
/// reported full CPU for half a minute.
fn director_with_a_loaded_agent() -> InProcess {
    use xvs_director::control::agents::{AcceptedReport, AgentShared, ReceiverSettings};
    use xvs_packet::load_report::{AgentState, Identity, LoadFigures};
    let mut d = director();
    d.plane
        .with_agents(Arc::new(AgentShared::new(ReceiverSettings {
            keys: Vec::new(),
            max_skew_ms: 5_000,
        })));
    ok(&mut d, "-A -t 203.0.113.10:80 -s wlc");
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m -w 20");
    ok(&mut d, "-a -t 203.0.113.10:80 -r 192.0.2.12 -m -w 3");
    let report = AcceptedReport {
        identity: Identity::new("rs1.example").unwrap(),
        address: "192.0.2.11".parse().unwrap(),
        state: AgentState::Ready,
        load: LoadFigures {
            cpu_permille: Some(1000),
            memory_permille: Some(425),
            rx_packets_per_s: Some(12_345),
            tx_packets_per_s: Some(0),
            disk_reads_per_s: None,
            disk_writes_per_s: Some(3),
            load1_centi: Some(157),
            established: Some(42),
        },
    };
    for _ in 0..30 {
        d.now += 1000;
        d.plane.agent_report(&report, d.now);
        d.plane.follow_agents(d.now, &mut NoHooks);
    }
    d.now += 400;
    d
}

#[test]
fn list_shows_the_weight_in_force_and_save_the_configured_one() {
    let mut d = director_with_a_loaded_agent();
    assert_eq!(
        ok(&mut d, "-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  203.0.113.10:80 wlc\n\
         \x20 -> 192.0.2.11:80                Masq    10     0          0         \n\
         \x20 -> 192.0.2.12:80                Masq    3      0          0         \n"
    );
    assert_eq!(
        ok(&mut d, "-S -n"),
        "-A -t 203.0.113.10:80 -s wlc\n\
         -a -t 203.0.113.10:80 -r 192.0.2.11:80 -m -w 20\n\
         -a -t 203.0.113.10:80 -r 192.0.2.12:80 -m -w 3\n"
    );
    // The operator's -e is the new configured weight; the policy goes on
    // from it at once.
    ok(&mut d, "-e -t 203.0.113.10:80 -r 192.0.2.11 -m -w 40");
    assert!(ok(&mut d, "-L -n").contains("192.0.2.11:80                Masq    20 "));
    assert!(ok(&mut d, "-S -n").contains("-r 192.0.2.11:80 -m -w 40\n"));
}

#[test]
fn list_load_shows_both_weights_the_figures_the_age_and_the_state() {
    let mut d = director_with_a_loaded_agent();
    let want = "\
Prot LocalAddress:Port
  -> RemoteAddress:Port           Weight Config Agent            State Age     Cap%   CPU%   Mem%  Load1  Estab    RxPPS    TxPPS   Rd/s   Wr/s
TCP  203.0.113.10:80
  -> 192.0.2.11:80                10     20     rs1.example      ready 0.4s     50.0  100.0   42.5   1.57     42    12345        0      -      3
  -> 192.0.2.12:80                3      3      -                -     -           -      -      -      -      -        -        -      -      -
";
    assert_eq!(ok(&mut d, "-L -n --load"), want);
    assert_eq!(ok(&mut d, "-L -n --load -t 203.0.113.10:80"), want);
    let o = xvsadm(&mut d, "-L -n --load -t 203.0.113.10:81");
    assert_eq!((o.status, o.stderr.trim()), (EXIT_USAGE, "No such service"));
    let o = xvsadm(&mut d, "-L -n --load --stats");
    assert_eq!(o.status, EXIT_USAGE, "{}", o.stderr);
    // Without [agents] the listing says why nothing follows load.
    let mut plain = director();
    ok(&mut plain, "-A -t 203.0.113.10:80 -s wlc");
    ok(&mut plain, "-a -t 203.0.113.10:80 -r 192.0.2.11 -m -w 2");
    assert!(
        ok(&mut plain, "-L -n --load").starts_with("Agents off: "),
        "{}",
        ok(&mut plain, "-L -n --load")
    );
}
