//! `xvs-agent run` and `xvs-agent state` as an operator runs them: the
//! binary, a configuration and a key in a temporary directory, a UDP
//! socket on 127.0.0.1 standing in for the director. No root needed.
//! Also the systemd unit, checked with `systemd-analyze verify` (skipped
//! without it: the director's `tests/common/skip.rs`, a failure under
//! `XVS_REQUIRE_ALL=1`).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should fail the test loudly"
)]

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../director/tests/common/skip.rs"]
mod skip;

use xvs_packet::load_report::{AgentState, REPORT_LEN, ReportKey, ReportPacket};

const AGENT: &str = env!("CARGO_BIN_EXE_xvs-agent");
const SECRET: [u8; 32] = [0x42; 32];

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xvs-agent-run-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent, killed on drop if the test did not stop it.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, director: &str, key_mode: u32) -> PathBuf {
    let key = dir.join("agent.key");
    std::fs::write(&key, SECRET).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(key_mode)).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "directors = [\"{director}\"]\naddress = \"192.0.2.11\"\nkey_file = \"{}\"\nkey_id = 9\nidentity = \"rs1\"\ninterval = 0.2\nservice_ports = [80]\nstate_file = \"{}\"\n",
            key.display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    config
}

fn receive(socket: &UdpSocket, key: &ReportKey) -> xvs_packet::load_report::LoadReport {
    let mut buf = [0u8; 2048];
    let (n, _) = socket
        .recv_from(&mut buf)
        .expect("a report within the timeout");
    assert_eq!(n, REPORT_LEN);
    let packet = ReportPacket::new_checked(&buf[..n]).unwrap();
    assert_eq!(packet.key_id(), 9);
    packet.verify(key).expect("signed with the cluster key")
}

#[test]
fn reports_are_signed_sequenced_and_follow_the_state_file() {
    let scratch = Scratch::new("reports");
    let director = UdpSocket::bind("127.0.0.1:0").unwrap();
    director
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let config = write_config(
        &scratch.0,
        &director.local_addr().unwrap().to_string(),
        0o600,
    );
    let mut agent = Agent(
        Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let key = ReportKey::new(9, &SECRET).unwrap();
    let first = receive(&director, &key);
    let second = receive(&director, &key);
    assert_eq!(
        first.address,
        "192.0.2.11".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(first.identity.as_str(), "rs1");
    assert_eq!(first.interval_ms, 200);
    assert_eq!(first.state, AgentState::Ready);
    assert_eq!(second.sequence, first.sequence + 1);
    assert!(second.timestamp_ms >= first.timestamp_ms);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(now_ms.abs_diff(second.timestamp_ms) < 5_000);
    // This machine has /proc: every figure but possibly the disks is known.
    assert!(second.load.cpu_permille.is_some(), "{:?}", second.load);
    assert!(second.load.memory_permille.is_some());
    assert!(second.load.rx_packets_per_s.is_some());
    assert!(second.load.load1_centi.is_some());
    assert!(second.load.established.is_some());

    let state = |args: &[&str]| {
        let out = Command::new(AGENT)
            .arg("state")
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(state(&[]), "ready\n");
    state(&["drain"]);
    assert_eq!(state(&[]), "drain\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = receive(&director, &key);
        if r.state == AgentState::Drain {
            break;
        }
        assert!(Instant::now() < deadline, "drain never reported");
    }

    // SIGTERM: a clean stop, promptly.
    let pid = agent.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut log = String::new();
    std::io::Read::read_to_string(agent.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("state ready → drain"), "{log}");
    assert!(log.contains("stopping"), "{log}");
}

#[test]
fn a_readable_key_is_refused_with_what_to_do() {
    let scratch = Scratch::new("key");
    let config = write_config(&scratch.0, "127.0.0.1:9", 0o644);
    let out = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_wrong_config_names_its_line() {
    let scratch = Scratch::new("config");
    let config = write_config(&scratch.0, "127.0.0.1:9", 0o600);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("intervall = 2\n");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(AGENT)
        .args(["state", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 9") && err.contains("intervall"), "{err}");
}

/// `systemd-analyze verify` on the unit in the repository, with ExecStart
/// pointed at the binary under test (verify checks that it exists). A
/// unit it has anything to say about fails, warnings included.
#[test]
fn systemd_unit_verifies() {
    if !skip::on_path("systemd-analyze") {
        skip::skip(
            "systemd_unit_verifies",
            "`systemd-analyze` on PATH (install systemd)",
        );
        return;
    }
    let scratch = Scratch::new("unit");
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/xvs-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/sbin/xvs-agent run --config /etc/xvs/agent.toml"));
    let verify = |text: &str| {
        let path = scratch.0.join("xvs-agent.service");
        std::fs::write(&path, text.replace("/usr/local/sbin/xvs-agent", AGENT)).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, said) = verify(&unit);
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // The check can fail: a misspelt setting is reported.
    let (_, said) = verify(&unit.replace("ProtectHome=yes", "ProtectHome=sometimes"));
    assert!(
        said.contains("ProtectHome") || said.contains("protect home"),
        "{said}"
    );
}
