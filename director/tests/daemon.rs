//! The composition root against a real kernel: a [`Daemon`] built from
//! [`DaemonOptions`] (no command line) in namespaces this test makes, its
//! parts' status, its orderly stop, and a start that fails half-way (the
//! metrics address taken) stopping the parts it had started. Root and `ip`
//! only; skipped with a message otherwise, a failure under
//! `XVS_REQUIRE_ALL=1` (`common::skip`).
//!
//! ```text
//!   netns xvsNa (director)                   netns xvsNb (peer)
//!   xvsNc 02:00:00:00:c0:01  <── veth ──>    xvsNcp   (client side)
//!   198.51.100.1/24
//!   xvsNs 02:00:00:00:5e:01  <── veth ──>    xvsNsp   (server side)
//!   192.0.2.1/24
//! ```
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should fail the test loudly"
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::netns::Namespaces;
use common::{ip, skip};
use xvs_director::config::ClusterConfig;
use xvs_director::daemon::{Backend, ConfigSource, Daemon, DaemonOptions, Error};
use xvs_director::io::afxdp::ZeroCopy;
use xvs_director::io::queues::QueueCount;
use xvs_director::run::PollMode;

/// Two namespaces and two veth pairs, removed on drop (even after a failed
/// assertion).
struct Testbed {
    netns: Namespaces,
    client_dev: String,
    server_dev: String,
    /// Where the director's control socket and stats file go.
    dir: PathBuf,
}

impl Testbed {
    fn new() -> Result<Self, String> {
        let n = std::process::id() % 100_000;
        let bed = Self {
            netns: Namespaces::add(format!("xvs{n}a"), format!("xvs{n}b"))?,
            client_dev: format!("xvs{n}c"),
            server_dev: format!("xvs{n}s"),
            dir: std::env::temp_dir().join(format!("xvs-daemon-test-{n}")),
        };
        // Built before the first link, so that a failure half-way is
        // cleaned up by Drop.
        bed.set_up()?;
        Ok(bed)
    }

    fn set_up(&self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let (d, p) = (&self.netns.director, &self.netns.peer);
        for (dev, mac, addr) in [
            (&self.client_dev, "02:00:00:00:c0:01", "198.51.100.1/24"),
            (&self.server_dev, "02:00:00:00:5e:01", "192.0.2.1/24"),
        ] {
            let peer_dev = format!("{dev}p");
            self.netns.veth(dev, &peer_dev)?;
            ip(&["-n", d, "link", "set", dev, "address", mac, "up"])?;
            ip(&["-n", p, "link", "set", &peer_dev, "up"])?;
            ip(&["-n", d, "addr", "add", addr, "dev", dev])?;
        }
        Ok(())
    }

    fn options(&self, metrics: Option<std::net::SocketAddr>) -> DaemonOptions {
        self.options_with(metrics, "")
    }

    /// [`Testbed::options`] with `extra` at the end of the config.
    fn options_with(&self, metrics: Option<std::net::SocketAddr>, extra: &str) -> DaemonOptions {
        let text = format!(
            r#"
[[interfaces]]
name = "{}"
role = "client"

[[interfaces]]
name = "{}"
role = "server"

[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
[[services.real_servers]]
address = "192.0.2.11"
weight = 10
{extra}"#,
            self.client_dev, self.server_dev
        );
        DaemonOptions {
            config: ConfigSource::Given(Box::new(
                ClusterConfig::parse("daemon.toml", &text).unwrap(),
            )),
            backend: Backend::Xdp,
            interface_backends: Vec::new(),
            // /sys/class/net shows the host's interfaces to a thread that
            // only entered the namespace: the queues cannot be counted
            // there, and a given count is trusted.
            queues: QueueCount::First(1),
            workers: None,
            poll: PollMode::Adaptive,
            zero_copy: ZeroCopy::Auto,
            cpus: Vec::new(),
            stats_file: Some(self.stats_file()),
            stats_interval: Duration::from_secs(1),
            control_socket: Some(self.socket()),
            metrics_listen: metrics,
            log_interval: None,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn stats_file(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    /// Runs `f` on a thread inside the director's namespace (the daemon's
    /// threads, started from it, live there too).
    fn in_director<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.netns.in_director(f)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // The namespaces, and the veth pairs in them, go when `netns`
        // drops, after this.
        let _ = std::fs::remove_dir_all(&self.dir);
        // The interface locks' files (the director leaves them, empty, for
        // the next one): these interfaces' are gone for good.
        let ours = [
            format!("-{}.lock", self.client_dev),
            format!("-{}.lock", self.server_dev),
        ];
        for entry in std::fs::read_dir("/run/xvs")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            if ours
                .iter()
                .any(|o| name.to_string_lossy().ends_with(o.as_str()))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Every line the director logs, in order: the shutdown's order is read
/// from them, as an operator reads it.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Journal;

impl log::Log for Journal {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LOG.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// The lines logged since the last call.
fn logged() -> Vec<String> {
    std::mem::take(&mut *LOG.lock().unwrap())
}

/// Where the first line starting with each of `prefixes` is in `lines`;
/// fails the test for a prefix never logged.
fn positions(lines: &[String], prefixes: &[&str]) -> Vec<usize> {
    prefixes
        .iter()
        .map(|p| {
            lines
                .iter()
                .position(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("no line starting with {p:?} in {lines:#?}"))
        })
        .collect()
}

/// The shutdown's lines: workers, then the neighbour watcher, then the
/// last counters (after the stats file's last write).
const SHUTDOWN: [&str; 3] = ["stopping: workers first", "neighbours: ", "frames "];

fn stats_services(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["services"].as_array().unwrap().len()
}

#[test]
fn a_daemon_starts_its_parts_reports_them_and_stops_them_in_order() {
    if !skip::can_run("daemon", true, &["ip"]) {
        return;
    }
    let bed = Testbed::new().unwrap();
    log::set_logger(&Journal).unwrap();
    log::set_max_level(log::LevelFilter::Info);

    // The metrics address is taken: the start fails at the last part, and
    // the parts started before it are stopped — the control socket's file
    // is gone, the stats file has its last write — and the interfaces are
    // free again.
    let options = bed.options(Some("127.0.0.1:9".parse().unwrap()));
    let error = bed.in_director(move || {
        ip(&["link", "set", "lo", "up"]).unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:9").unwrap();
        let result = Daemon::start(options);
        drop(taken);
        result.map(|_| ()).unwrap_err()
    });
    assert!(matches!(error, Error::Metrics(_)), "{error:?}");
    assert!(
        error.to_string().contains("cannot listen on 127.0.0.1:9"),
        "{error}"
    );
    assert!(!bed.socket().exists(), "the control socket was not stopped");
    assert_eq!(stats_services(&bed.stats_file()), 1);
    let lines = logged();
    let at = positions(
        &lines,
        &["control socket ", SHUTDOWN[0], SHUTDOWN[1], SHUTDOWN[2]],
    );
    assert!(at.is_sorted(), "{lines:#?}");
    for line in SHUTDOWN {
        let times = lines.iter().filter(|l| l.starts_with(line)).count();
        assert_eq!(times, 1, "{line:?} logged {times} times: {lines:#?}");
    }
    std::fs::remove_file(bed.stats_file()).unwrap();

    let options = bed.options(None);
    let (socket, stats_file) = (bed.socket(), bed.stats_file());
    bed.in_director(move || {
        let daemon = Daemon::start(options).unwrap();
        let status = daemon.status();
        for part in ["stats", "neighbours", "control_socket"] {
            assert_eq!(status[part]["running"], true, "{part}: {status}");
        }
        assert_eq!(status["control_socket"]["path"], socket.to_str().unwrap());
        assert!(status["workers"].as_array().is_some_and(|w| !w.is_empty()));
        assert!(socket.exists());
        // Not yet written: the first write is the main loop's first turn.
        assert!(!stats_file.exists());

        daemon.stop_flag().store(true, Ordering::Relaxed);
        daemon.run().unwrap();
        assert!(!socket.exists(), "the control socket outlived the daemon");
        assert_eq!(stats_services(&stats_file), 1);
    });
    let lines = logged();
    let at = positions(
        &lines,
        &[
            "xvs-director ",
            "control socket ",
            SHUTDOWN[0],
            SHUTDOWN[1],
            SHUTDOWN[2],
            "stopped cleanly",
        ],
    );
    assert!(at.is_sorted(), "{lines:#?}");

    // With [agents]: the receiver is a part; an authentic report counts, a
    // forged one is refused and counted, and the stats file shows both.
    use std::os::unix::fs::PermissionsExt;
    use xvs_packet::load_report::{
        AgentState, Identity, LoadFigures, LoadReport, REPORT_LEN, ReportKey,
    };
    let key_file = bed.dir.join("agent.key");
    let secret = [0x5a_u8; 32];
    std::fs::write(&key_file, secret).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let options = bed.options_with(
        None,
        &format!(
            "\n[agents]\nlisten = \"127.0.0.1:7405\"\nkeys = [{{ id = 1, file = \"{}\" }}]\n",
            key_file.display()
        ),
    );
    let stats_file = bed.stats_file();
    bed.in_director(move || {
        let daemon = Daemon::start(options).unwrap();
        let status = daemon.status();
        assert_eq!(status["agents"]["running"], true, "{status}");
        assert_eq!(status["agents"]["listen"], "127.0.0.1:7405", "{status}");
        let stop = daemon.stop_flag();
        // The reports go from a thread of this namespace while the main
        // loop runs here; that thread stops the daemon once it has seen
        // them in the stats file (or given up).
        let sender = std::thread::spawn(move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let report = LoadReport {
                key_id: 1,
                identity: Identity::new("rs1").unwrap(),
                address: "192.0.2.11".parse().unwrap(),
                timestamp_ms: now,
                sequence: now * 1000,
                interval_ms: 1000,
                state: AgentState::Drain,
                load: LoadFigures {
                    cpu_permille: Some(300),
                    ..LoadFigures::default()
                },
            };
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0; REPORT_LEN];
            let forger = ReportKey::new(1, b"not the cluster key, 32 bytes...").unwrap();
            report.encode(&forger, &mut buf).unwrap();
            sender.send_to(&buf, "127.0.0.1:7405").unwrap();
            report
                .encode(&ReportKey::new(1, &secret).unwrap(), &mut buf)
                .unwrap();
            sender.send_to(&buf, "127.0.0.1:7405").unwrap();
            // The stats file follows within its interval (1 s) of the reports.
            let mut doc = serde_json::Value::Null;
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                let Ok(text) = std::fs::read_to_string(&stats_file) else {
                    continue;
                };
                let Ok(read) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                doc = read;
                if doc["agents"]["reports"]["accepted"] == 1
                    && doc["agents"]["agents"][0].is_object()
                {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            doc
        });
        daemon.run().unwrap();
        let doc = sender.join().unwrap();
        let agents = &doc["agents"];
        assert_eq!(agents["reports"]["accepted"], 1, "{doc}");
        assert_eq!(agents["reports"]["rejected"]["bad_mac"], 1, "{doc}");
        let agent = &agents["agents"][0];
        assert_eq!(agent["identity"], "rs1", "{doc}");
        assert_eq!(agent["state"], "drain", "{doc}");
        assert_eq!(agent["real_servers"][0]["configured_weight"], 10, "{doc}");
        assert_eq!(
            agent["real_servers"][0]["effective_weight"], 0,
            "drained: {doc}"
        );
    });
}
