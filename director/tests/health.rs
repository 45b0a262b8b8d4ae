//! The health checker against real sockets on loopback (127.0.0.1 and
//! ::1 only): servers that answer right, answer wrong, refuse, hang, speak
//! TLS with a self-signed certificate; external commands; ping; reloads,
//! passive reports and hooks.
//!
//! Intervals are tens of milliseconds. Every wait polls the checker's
//! status until the expected state or a generous deadline, never a fixed
//! sleep; a test that expects "up" starts its target down (`alpha`), so it
//! cannot pass without a check passing.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xvs_director::health::{
    Check, CheckSpec, HealthChecker, HealthSink, HttpCheck, Negotiate, Phase, Protocol, Reason,
    Target, TargetKey, TargetStatus, TlsCheck,
};
use xvs_proto::ServiceId;

const LOCAL4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCAL6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const INTERVAL: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_millis(100);
/// Far above any expected wait; reached only when something is broken.
const DEADLINE: Duration = Duration::from_secs(10);

// ---- servers ------------------------------------------------------------------------

/// What a test server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Reads the request, writes this answer, closes.
    Answer(Arc<Mutex<Vec<u8>>>),
    /// Accepts and never answers (the connection stays open).
    Hang,
    /// Writes this at once, without reading, and closes.
    Blurt(&'static [u8]),
    /// TLS with this certificate, then answers as `Answer`.
    Tls(Arc<rustls::ServerConfig>, Arc<Mutex<Vec<u8>>>),
}

/// A loopback server on its own thread; stops when dropped.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ip: IpAddr, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, accepted) = (Arc::clone(&stop), Arc::clone(&accepted));
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            stream.set_nonblocking(false).unwrap();
                            stream
                                .set_read_timeout(Some(Duration::from_secs(2)))
                                .unwrap();
                            match &behaviour {
                                Behaviour::Hang => held.push(stream),
                                Behaviour::Blurt(text) => {
                                    let mut stream = stream;
                                    let _ = stream.write_all(text);
                                }
                                Behaviour::Answer(answer) => serve(stream, &answer.lock().unwrap()),
                                Behaviour::Tls(config, answer) => {
                                    let conn =
                                        rustls::ServerConnection::new(Arc::clone(config)).unwrap();
                                    let mut tls = rustls::StreamOwned::new(conn, stream);
                                    let answer = answer.lock().unwrap().clone();
                                    // A client that refuses the certificate
                                    // ends the handshake: that is fine here.
                                    let _ = answer_request(&mut tls, &answer);
                                    tls.conn.send_close_notify();
                                    let _ = tls.flush();
                                }
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
        };
        Self {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn answering(ip: IpAddr, answer: &str) -> (Self, Arc<Mutex<Vec<u8>>>) {
        let answer = Arc::new(Mutex::new(answer.as_bytes().to_vec()));
        (
            Self::start(ip, Behaviour::Answer(Arc::clone(&answer))),
            answer,
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads until the end of the request headers (or EOF), then answers.
fn answer_request<S: Read + Write>(stream: &mut S, answer: &[u8]) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && !request.ends_with(b"\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    stream.write_all(answer)?;
    stream.flush()
}

fn serve(mut stream: TcpStream, answer: &[u8]) {
    let _ = answer_request(&mut stream, answer);
}

/// A port nothing listens on (bound, then released).
fn closed_port(ip: IpAddr) -> SocketAddr {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
}

const OK_ANSWER: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhealthy: yes";

// ---- the checker ----------------------------------------------------------------------

/// Records every transition.
#[derive(Default)]
struct Recorder(Mutex<Vec<(TargetKey, bool, Reason)>>);

impl HealthSink for Recorder {
    fn transition(&self, target: &TargetKey, up: bool, reason: &Reason) {
        self.0.lock().unwrap().push((*target, up, reason.clone()));
    }
}

impl Recorder {
    fn of(&self, key: &TargetKey) -> Vec<(bool, Reason)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == key)
            .map(|(_, up, r)| (*up, r.clone()))
            .collect()
    }
}

fn key(server: SocketAddr) -> TargetKey {
    key_in(80, server)
}

fn key_in(vport: u16, server: SocketAddr) -> TargetKey {
    TargetKey {
        service: ServiceId {
            proto: xvs_proto::Protocol::Tcp,
            vip: "203.0.113.10".parse().unwrap(),
            port: vport,
        },
        server,
    }
}

fn spec(check: Check, alpha: bool) -> CheckSpec {
    let mut s = CheckSpec::new(check);
    s.interval = INTERVAL;
    s.alpha = alpha;
    s
}

fn http(port: u16, receive: Option<&str>, expect: &[u16]) -> Check {
    Check::Negotiate(Negotiate {
        port,
        connect_timeout: TIMEOUT,
        negotiate_timeout: TIMEOUT,
        protocol: Protocol::Http(HttpCheck {
            tls: None,
            path: "/health".into(),
            virtualhost: None,
            expect_status: expect.to_vec(),
            receive: receive.map(str::to_owned),
        }),
    })
}

fn start(targets: Vec<Target>) -> (HealthChecker, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let sink: Arc<dyn HealthSink> = Arc::clone(&recorder) as Arc<dyn HealthSink>;
    (HealthChecker::start(targets, sink).unwrap(), recorder)
}

fn status_of(checker: &HealthChecker, key: &TargetKey) -> TargetStatus {
    checker
        .status()
        .into_iter()
        .find(|s| s.key == *key)
        .unwrap_or_else(|| panic!("{key} is not a target"))
}

/// Polls until `pred` holds for `key`'s status; the status then.
fn wait_for(
    checker: &HealthChecker,
    key: &TargetKey,
    what: &str,
    pred: impl Fn(&TargetStatus) -> bool,
) -> TargetStatus {
    let start = Instant::now();
    loop {
        let s = status_of(checker, key);
        if pred(&s) {
            return s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{key}: still not {what} after {DEADLINE:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts one target and waits for its first transition; returns its state.
fn single(server: SocketAddr, check: Check, alpha: bool) -> (TargetStatus, Vec<(bool, Reason)>) {
    let k = key(server);
    let (checker, recorder) = start(vec![Target {
        key: k,
        spec: spec(check, alpha),
    }]);
    let s = wait_for(&checker, &k, "changed", |s| s.transitions > 0);
    checker.stop();
    (s, recorder.of(&k))
}

fn assert_up(server: SocketAddr, check: Check) -> TargetStatus {
    let (s, transitions) = single(server, check, true);
    assert!(s.up, "{s:?}");
    assert_eq!(s.last_reason, Reason::Passed);
    assert_eq!(transitions, vec![(true, Reason::Passed)]);
    assert!(s.last_latency.is_some_and(|l| l < DEADLINE), "{s:?}");
    s
}

fn assert_down(server: SocketAddr, check: Check, reason: &Reason) -> TargetStatus {
    let (s, transitions) = single(server, check, false);
    assert!(!s.up, "{s:?}");
    assert_eq!(&s.last_reason, reason, "{s:?}");
    assert_eq!(transitions, vec![(false, reason.clone())]);
    s
}

// ---- connect and negotiate --------------------------------------------------------

#[test]
fn connect_to_a_listener_is_up_and_to_a_closed_port_is_refused() {
    let (server, _) = Server::answering(LOCAL4, OK_ANSWER);
    let check = |port| Check::Connect {
        port,
        timeout: TIMEOUT,
    };
    assert_up(server.addr, check(server.addr.port()));
    eventually("the server accepted", || {
        server.accepted.load(Ordering::Relaxed) >= 1
    });
    let closed = closed_port(LOCAL4);
    assert_down(closed, check(closed.port()), &Reason::Refused);
}

#[test]
fn an_http_server_answering_right_is_up_over_ipv4_and_ipv6() {
    for ip in [LOCAL4, LOCAL6] {
        let (server, _) = Server::answering(ip, OK_ANSWER);
        let s = assert_up(
            server.addr,
            http(server.addr.port(), Some("healthy: yes"), &[]),
        );
        assert!(s.checks >= 1 && s.failed_checks == 0, "{s:?}");
    }
}

#[test]
fn wrong_content_and_wrong_status_are_down_for_that_reason() {
    let (server, _) = Server::answering(LOCAL4, OK_ANSWER);
    let port = server.addr.port();
    assert_down(
        server.addr,
        http(port, Some("healthy: no"), &[]),
        &Reason::WrongContent,
    );
    assert_down(
        server.addr,
        http(port, None, &[204]),
        &Reason::WrongStatus { got: 200 },
    );
    let (busy, _) = Server::answering(
        LOCAL6,
        "HTTP/1.0 503 Service Unavailable\r\n\r\nhealthy: yes",
    );
    assert_down(
        busy.addr,
        http(busy.addr.port(), Some("healthy: yes"), &[]),
        &Reason::WrongStatus { got: 503 },
    );
    let (not_http, _) = Server::answering(LOCAL4, "SSH-2.0-OpenSSH_9.2\r\n");
    assert_down(
        not_http.addr,
        http(not_http.addr.port(), None, &[]),
        &Reason::NotHttp,
    );
}

#[test]
fn a_negotiate_check_of_a_closed_port_is_refused() {
    let closed = closed_port(LOCAL6);
    assert_down(closed, http(closed.port(), None, &[]), &Reason::Refused);
}

#[test]
fn a_hung_server_is_caught_by_the_negotiate_timeout() {
    let server = Server::start(LOCAL4, Behaviour::Hang);
    let s = assert_down(
        server.addr,
        http(server.addr.port(), Some("x"), &[]),
        &Reason::Timeout(Phase::Answer),
    );
    let latency = s.last_latency.unwrap();
    assert!(
        latency >= TIMEOUT && latency < TIMEOUT * 10,
        "the check took {latency:?} for a {TIMEOUT:?} timeout"
    );
    eventually("the server accepted", || {
        server.accepted.load(Ordering::Relaxed) >= 1
    });
    // A TLS handshake that never gets an answer is bounded the same way.
    let mut tls = https(server.addr.port(), false, None, None);
    if let Check::Negotiate(n) = &mut tls {
        n.negotiate_timeout = TIMEOUT;
    }
    assert_down(server.addr, tls, &Reason::Timeout(Phase::Answer));
}

#[test]
fn a_raw_tcp_negotiate_sends_the_request_and_expects_the_text() {
    let (server, _) = Server::answering(LOCAL4, "+PONG\r\n");
    let tcp = |receive: &str| {
        Check::Negotiate(Negotiate {
            port: server.addr.port(),
            connect_timeout: TIMEOUT,
            negotiate_timeout: TIMEOUT,
            protocol: Protocol::Tcp {
                request: "PING\r\n".into(),
                receive: receive.into(),
            },
        })
    };
    assert_up(server.addr, tcp("+PONG"));
    assert_down(server.addr, tcp("+OK"), &Reason::WrongContent);
}

// ---- HTTPS --------------------------------------------------------------------------

struct Tls {
    server: Server,
    ca_file: PathBuf,
}

fn tls_server() -> Tls {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("xvs-health-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join(format!("ca-{:?}.pem", std::thread::current().id()));
    std::fs::write(&ca_file, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let answer = Arc::new(Mutex::new(OK_ANSWER.as_bytes().to_vec()));
    Tls {
        server: Server::start(LOCAL4, Behaviour::Tls(Arc::new(config), answer)),
        ca_file,
    }
}

fn https(port: u16, verify: bool, ca_file: Option<PathBuf>, host: Option<&str>) -> Check {
    Check::Negotiate(Negotiate {
        port,
        connect_timeout: TIMEOUT,
        negotiate_timeout: Duration::from_millis(500),
        protocol: Protocol::Http(HttpCheck {
            tls: Some(TlsCheck { verify, ca_file }),
            path: "/".into(),
            virtualhost: host.map(str::to_owned),
            expect_status: vec![],
            receive: Some("healthy: yes".into()),
        }),
    })
}

#[test]
fn https_with_a_self_signed_certificate_is_up_unverified_and_down_verified() {
    let tls = tls_server();
    let (addr, port) = (tls.server.addr, tls.server.addr.port());
    assert_up(addr, https(port, false, None, None));
    // The host's trust store does not know the certificate.
    let (s, _) = single(addr, https(port, true, None, None), false);
    assert!(!s.up, "{s:?}");
    assert!(
        matches!(&s.last_reason, Reason::Tls(e) if e.contains("certificate")),
        "{s:?}"
    );
    // Trusting it as a CA, by address and by name, passes.
    assert_up(addr, https(port, true, Some(tls.ca_file.clone()), None));
    assert_up(
        addr,
        https(port, true, Some(tls.ca_file.clone()), Some("localhost")),
    );
    // A name the certificate does not carry fails even with the CA.
    let (s, _) = single(
        addr,
        https(
            port,
            true,
            Some(tls.ca_file.clone()),
            Some("www.example.com"),
        ),
        false,
    );
    assert!(matches!(&s.last_reason, Reason::Tls(_)), "{s:?}");
    // A CA file that cannot be read is a clear reason, not a panic.
    let (s, _) = single(
        addr,
        https(port, true, Some("/nonexistent/ca.pem".into()), None),
        false,
    );
    assert!(
        matches!(&s.last_reason, Reason::Tls(e) if e.contains("/nonexistent/ca.pem")),
        "{s:?}"
    );
    let _ = std::fs::remove_file(&tls.ca_file);
}

#[test]
fn https_to_a_plain_http_server_fails_the_handshake() {
    let server = Server::start(LOCAL4, Behaviour::Blurt(OK_ANSWER.as_bytes()));
    let (s, _) = single(
        server.addr,
        https(server.addr.port(), false, None, None),
        false,
    );
    assert!(!s.up, "{s:?}");
    assert!(matches!(s.last_reason, Reason::Tls(_)), "{s:?}");
}

// ---- external and ping --------------------------------------------------------------

fn sh(script: &str) -> Check {
    Check::External {
        // `sh -c SCRIPT NAME VIP VPORT RIP RPORT`: the appended arguments
        // are $1..$4.
        command: vec!["/bin/sh".into(), "-c".into(), script.into(), "check".into()],
        timeout: Duration::from_millis(500),
    }
}

#[test]
fn an_external_command_is_up_on_exit_0_and_down_otherwise() {
    let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert_up(
        server,
        sh(
            r#"[ "$1 $2 $3 $4" = "203.0.113.10 80 127.0.0.1 8080" ] && [ "$XVS_RIP:$XVS_RPORT" = 127.0.0.1:8080 ]"#,
        ),
    );
    assert_down(
        server,
        sh("exit 1"),
        &Reason::CommandFailed("exit status 1".into()),
    );
    assert_down(
        server,
        Check::External {
            command: vec!["/nonexistent/check".into()],
            timeout: TIMEOUT,
        },
        &Reason::CommandFailed(
            "cannot run /nonexistent/check: No such file or directory (os error 2)".into(),
        ),
    );
}

/// Whether process `pid` is gone (or a zombie waiting for init to reap it).
fn process_gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// A command that starts a background `sleep` (as a shell script's helper
/// would), writes its pid to a file, and waits for it.
fn hanging_command(pid_file: &std::path::Path, timeout: Duration) -> Check {
    Check::External {
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("sleep 30 & echo $! > '{}'; wait", pid_file.display()),
            "check".into(),
        ],
        timeout,
    }
}

fn read_pid(pid_file: &std::path::Path) -> String {
    let mut pid = String::new();
    eventually("the command wrote its pid", || {
        pid = std::fs::read_to_string(pid_file).unwrap_or_default();
        pid.ends_with('\n')
    });
    pid.trim().to_owned()
}

#[test]
fn an_external_command_that_hangs_is_killed_with_its_children_at_its_timeout() {
    let pid_file =
        std::env::temp_dir().join(format!("xvs-health-timeout-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let server: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let started = Instant::now();
    let k = key(server);
    let mut spec = spec(
        hanging_command(&pid_file, Duration::from_millis(300)),
        false,
    );
    spec.interval = Duration::from_secs(3600);
    let (checker, _) = start(vec![Target { key: k, spec }]);
    let s = wait_for(&checker, &k, "down", |s| !s.up);
    assert_eq!(s.last_reason, Reason::Timeout(Phase::Command));
    assert!(s.last_latency.unwrap() >= Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let pid = read_pid(&pid_file);
    eventually("the background sleep was killed", || process_gone(&pid));
    checker.stop();
    let _ = std::fs::remove_file(&pid_file);
}

#[test]
fn stopping_the_checker_kills_a_running_command_and_its_children() {
    let pid_file = std::env::temp_dir().join(format!("xvs-health-stop-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let k = key("127.0.0.1:80".parse().unwrap());
    let (checker, _) = start(vec![Target {
        key: k,
        spec: spec(hanging_command(&pid_file, Duration::from_secs(60)), false),
    }]);
    let pid = read_pid(&pid_file);
    assert!(!process_gone(&pid), "the command runs");
    checker.stop();
    eventually("the background sleep was killed", || process_gone(&pid));
    let _ = std::fs::remove_file(&pid_file);
}

#[test]
fn ping_of_loopback_is_up_over_ipv4_and_ipv6() {
    for ip in [LOCAL4, LOCAL6] {
        let s = assert_up(
            SocketAddr::new(ip, 0),
            Check::Ping {
                timeout: Duration::from_millis(500),
            },
        );
        assert!(s.last_latency.unwrap() < Duration::from_millis(500));
    }
}

// ---- counts, reloads, passive reports, hooks --------------------------------------

#[test]
fn a_server_goes_down_and_comes_back_after_the_counts() {
    let (server, answer) = Server::answering(LOCAL4, OK_ANSWER);
    let k = key(server.addr);
    let mut spec = spec(http(server.addr.port(), Some("healthy"), &[]), false);
    spec.failures = 3;
    spec.successes = 2;
    let (checker, recorder) = start(vec![Target { key: k, spec }]);
    wait_for(&checker, &k, "checked", |s| s.checks >= 2);
    assert!(status_of(&checker, &k).up);

    *answer.lock().unwrap() = b"HTTP/1.1 500 Oops\r\n\r\n".to_vec();
    let down = wait_for(&checker, &k, "down", |s| !s.up);
    assert!(down.failed_checks >= 3, "three failures in a row: {down:?}");
    assert_eq!(down.last_reason, Reason::WrongStatus { got: 500 });

    *answer.lock().unwrap() = OK_ANSWER.as_bytes().to_vec();
    let before = down.checks;
    let up = wait_for(&checker, &k, "up", |s| s.up);
    assert!(up.checks >= before + 2, "two successes in a row: {up:?}");
    assert_eq!(up.transitions, 2);
    checker.stop();
    assert_eq!(
        recorder.of(&k),
        vec![
            (false, Reason::WrongStatus { got: 500 }),
            (true, Reason::Passed)
        ]
    );
}

#[test]
fn a_reload_keeps_unchanged_targets_and_applies_changes() {
    let (server, _) = Server::answering(LOCAL4, OK_ANSWER);
    let connect = Check::Connect {
        port: server.addr.port(),
        timeout: TIMEOUT,
    };
    let a = key_in(80, server.addr);
    let b = key_in(81, server.addr);
    let c = key_in(82, server.addr);
    let target = |key, check: &Check, alpha| Target {
        key,
        spec: spec(check.clone(), alpha),
    };
    let (checker, recorder) = start(vec![target(a, &connect, true), target(b, &connect, false)]);
    let a_up = wait_for(&checker, &a, "up", |s| s.up);
    assert_eq!(a_up.transitions, 1);

    // a unchanged, b turned off, c new (starts down under alpha), right
    // away in the status.
    checker.update(vec![
        target(a, &connect, true),
        target(b, &Check::Off, false),
        target(c, &connect, true),
    ]);
    let keys: Vec<_> = checker.status().iter().map(|s| s.key).collect();
    assert_eq!(keys, [a, b, c]);
    assert!(!status_of(&checker, &c).up);
    assert!(!status_of(&checker, &b).up, "off takes effect at once");
    wait_for(&checker, &c, "up", |s| s.up);
    let a_now = wait_for(&checker, &a, "checked again", |s| s.checks > a_up.checks);
    assert!(a_now.up);
    assert_eq!(a_now.transitions, 1, "a kept its state and history");
    assert_eq!(a_now.since, a_up.since);
    let b_now = status_of(&checker, &b);
    assert_eq!(
        (b_now.up, b_now.last_reason.clone()),
        (false, Reason::CheckOff)
    );

    // Removing forgets without a transition.
    checker.update(vec![target(c, &connect, true)]);
    let keys: Vec<_> = checker.status().iter().map(|s| s.key).collect();
    assert_eq!(keys, [c]);
    checker.stop();
    assert_eq!(recorder.of(&a), vec![(true, Reason::Passed)]);
    assert_eq!(recorder.of(&b), vec![(false, Reason::CheckOff)]);
}

#[test]
fn passive_reports_take_a_server_down_only_where_enabled() {
    let (server, _) = Server::answering(LOCAL4, OK_ANSWER);
    let connect = Check::Connect {
        port: server.addr.port(),
        timeout: TIMEOUT,
    };
    let on = key_in(80, server.addr);
    let off = key_in(81, server.addr);
    let mut passive = spec(connect.clone(), false);
    passive.passive = true;
    passive.failures = 2;
    // Active checks far apart, so that only the passive reports count.
    passive.interval = Duration::from_secs(3600);
    let mut active_only = passive.clone();
    active_only.passive = false;
    let (checker, recorder) = start(vec![
        Target {
            key: on,
            spec: passive,
        },
        Target {
            key: off,
            spec: active_only,
        },
    ]);
    wait_for(&checker, &on, "checked once", |s| s.checks == 1);
    wait_for(&checker, &off, "checked once", |s| s.checks == 1);
    for _ in 0..3 {
        assert!(checker.report_passive(&off, true));
    }
    assert!(checker.report_passive(&on, true));
    assert!(
        checker.report_passive(&on, false),
        "a success clears the count"
    );
    assert!(checker.report_passive(&on, true));
    assert!(checker.report_passive(&on, true));
    // Reports are handled in order: once `on` is down, `off` has seen its
    // three reports.
    let down = wait_for(&checker, &on, "down", |s| !s.up);
    assert_eq!(down.last_reason, Reason::PassiveFailure);
    assert!(status_of(&checker, &off).up);
    checker.stop();
    assert_eq!(recorder.of(&on), vec![(false, Reason::PassiveFailure)]);
    assert!(recorder.of(&off).is_empty());
}

#[test]
fn every_transition_runs_the_hook_with_service_server_state_and_reason() {
    let closed = closed_port(LOCAL4);
    let k = key(closed);
    let out = std::env::temp_dir().join(format!(
        "xvs-health-hook-{}-{:?}.log",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&out);
    let mut spec = spec(
        Check::Connect {
            port: closed.port(),
            timeout: TIMEOUT,
        },
        false,
    );
    spec.hook = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(r#"echo "$1|$2|$3|$4|$XVS_STATE" >> '{}'"#, out.display()),
        "hook".into(),
    ]);
    let (checker, _) = start(vec![Target { key: k, spec }]);
    wait_for(&checker, &k, "down", |s| !s.up);
    let start = Instant::now();
    let line = loop {
        if let Ok(text) = std::fs::read_to_string(&out)
            && text.ends_with('\n')
        {
            break text;
        }
        assert!(start.elapsed() < DEADLINE, "the hook never wrote {out:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    checker.stop();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        line,
        format!("tcp:203.0.113.10:80|{closed}|down|connection refused|down\n")
    );
}

/// A thousand targets on one thread: all checked and up within the
/// deadline, with at most the concurrency bound in flight.
#[test]
fn a_thousand_targets_are_checked_by_one_thread() {
    let (server, _) = Server::answering(LOCAL4, OK_ANSWER);
    let connect = Check::Connect {
        port: server.addr.port(),
        timeout: Duration::from_secs(2),
    };
    let mut s = spec(connect, true);
    s.interval = Duration::from_secs(3600);
    let targets: Vec<Target> = (1..=1000)
        .map(|vport| Target {
            key: key_in(vport, server.addr),
            spec: s.clone(),
        })
        .collect();
    let (checker, recorder) = start(targets);
    let start = Instant::now();
    while checker.status().iter().any(|t| !t.up) {
        assert!(
            start.elapsed() < DEADLINE * 3,
            "{} of 1000 up",
            checker.status().iter().filter(|t| t.up).count()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    checker.stop();
    assert_eq!(recorder.0.lock().unwrap().len(), 1000);
}
