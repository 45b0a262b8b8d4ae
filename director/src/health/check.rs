//! The checks: TCP connect, negotiate (HTTP, HTTPS, raw TCP), external
//! command, and the transition hook. Ping lives in [`super::ping`].
//!
//! # Contract
//! * Every check ends with a [`Reason`] within its timeouts, whatever the
//!   server does: a connect is bounded by the connect timeout; the TLS
//!   handshake, request and answer together by the negotiate timeout, so a
//!   server that accepts and never answers is a timeout, not a hung task.
//! * At most [`MAX_ANSWER`] bytes of an answer are read; reading stops as
//!   soon as the answer is judged (status wrong, or the expected text seen).
//! * Commands are never run by a shell: program and arguments come from the
//!   config as a list. A command that outlives its timeout is killed with
//!   its whole process group.

use core::net::SocketAddr;
use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::config::MAX_ANSWER;
use super::spec::{Check, HttpCheck, Negotiate, Protocol, TargetKey, TlsCheck};
use super::state::{Phase, Reason};

/// How long a transition hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one check of `target` (not `On`/`Off`, which are never run).
pub(crate) async fn run(check: &Check, target: &TargetKey, tls: &TlsConfigs) -> Reason {
    match check {
        Check::On => Reason::CheckOn,
        Check::Off => Reason::CheckOff,
        Check::Connect { port, timeout } => {
            match connect(SocketAddr::new(target.server.ip(), *port), *timeout).await {
                Ok(_) => Reason::Passed,
                Err(reason) => reason,
            }
        }
        Check::Negotiate(n) => negotiate(n, target, tls).await,
        Check::Ping { timeout } => super::ping::ping(target.server.ip(), *timeout).await,
        Check::External { command, timeout } => external(command, *timeout, target).await,
    }
}

/// What an I/O error says about the server.
pub(crate) fn io_reason(e: &io::Error) -> Reason {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Reason::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Reason::Unreachable,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Reason::Reset,
        io::ErrorKind::UnexpectedEof => Reason::Closed,
        io::ErrorKind::TimedOut => Reason::Timeout(Phase::Connect),
        _ => Reason::Io(e.to_string()),
    }
}

async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, Reason> {
    match timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => Err(Reason::Timeout(Phase::Connect)),
        Ok(Err(e)) => Err(io_reason(&e)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

async fn negotiate(n: &Negotiate, target: &TargetKey, tls: &TlsConfigs) -> Reason {
    let addr = SocketAddr::new(target.server.ip(), n.port);
    let stream = match connect(addr, n.connect_timeout).await {
        Ok(s) => s,
        Err(reason) => return reason,
    };
    match timeout(
        n.negotiate_timeout,
        converse(stream, &n.protocol, addr, tls),
    )
    .await
    {
        Err(_) => Reason::Timeout(Phase::Answer),
        Ok(reason) => reason,
    }
}

async fn converse(
    stream: TcpStream,
    protocol: &Protocol,
    addr: SocketAddr,
    tls: &TlsConfigs,
) -> Reason {
    match protocol {
        Protocol::Tcp { request, receive } => {
            exchange(stream, request.as_bytes(), |answer, eof| {
                judge_tcp(answer, eof, receive.as_bytes())
            })
            .await
        }
        Protocol::Http(http) => {
            let request = http_request(http, addr);
            let judge = |answer: &[u8], eof| judge_http(answer, eof, http);
            match &http.tls {
                None => exchange(stream, request.as_bytes(), judge).await,
                Some(t) => {
                    let config = match tls.get(t) {
                        Ok(c) => c,
                        Err(reason) => return reason,
                    };
                    let name = server_name(http.virtualhost.as_deref(), addr);
                    let connector = tokio_rustls::TlsConnector::from(config);
                    match connector.connect(name, stream).await {
                        Ok(s) => exchange(s, request.as_bytes(), judge).await,
                        Err(e) => tls_reason(&e),
                    }
                }
            }
        }
    }
}

/// The TLS server name: the virtual host if given, else the address.
fn server_name(virtualhost: Option<&str>, addr: SocketAddr) -> ServerName<'static> {
    virtualhost
        .and_then(|h| ServerName::try_from(h.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
}

fn tls_reason(e: &io::Error) -> Reason {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Reason::Tls(tls.to_string()),
        None => io_reason(e),
    }
}

/// A judgement of the answer so far.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done(Reason),
    More,
}

/// Sends `request` and reads until `judge` decides, the peer closes, or
/// [`MAX_ANSWER`] bytes arrived (judged as if closed).
async fn exchange<S, J>(mut stream: S, request: &[u8], judge: J) -> Reason
where
    S: AsyncRead + AsyncWrite + Unpin,
    J: Fn(&[u8], bool) -> Verdict,
{
    if !request.is_empty() {
        if let Err(e) = stream.write_all(request).await {
            return io_reason(&e);
        }
        if let Err(e) = stream.flush().await {
            return io_reason(&e);
        }
    }
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let room = MAX_ANSWER - answer.len();
        let want = chunk.len().min(room);
        let read = match chunk.get_mut(..want) {
            Some(buf) => stream.read(buf).await,
            None => Ok(0),
        };
        match read {
            Ok(0) => return final_verdict(judge(&answer, true)),
            Ok(n) => {
                answer.extend_from_slice(chunk.get(..n).unwrap_or_default());
                let full = answer.len() >= MAX_ANSWER;
                if let Verdict::Done(reason) = judge(&answer, full) {
                    return reason;
                }
                if full {
                    return Reason::WrongContent;
                }
            }
            // TLS peers that close without close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return final_verdict(judge(&answer, true));
            }
            Err(e) if answer.is_empty() => return io_reason(&e),
            Err(e) => {
                return match judge(&answer, true) {
                    Verdict::Done(Reason::Passed) => Reason::Passed,
                    _ => io_reason(&e),
                };
            }
        }
    }
}

fn final_verdict(v: Verdict) -> Reason {
    match v {
        Verdict::Done(reason) => reason,
        Verdict::More => Reason::Closed,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn judge_tcp(answer: &[u8], eof: bool, receive: &[u8]) -> Verdict {
    if contains(answer, receive) {
        Verdict::Done(Reason::Passed)
    } else if !eof {
        Verdict::More
    } else if answer.is_empty() {
        Verdict::Done(Reason::Closed)
    } else {
        Verdict::Done(Reason::WrongContent)
    }
}

/// Judges an HTTP answer: the status line first, then (if asked) the
/// expected text in the body.
fn judge_http(answer: &[u8], eof: bool, http: &HttpCheck) -> Verdict {
    const PREFIX: &[u8] = b"HTTP/";
    let Some(line_end) = answer.iter().position(|&b| b == b'\n') else {
        return if eof && answer.is_empty() {
            Verdict::Done(Reason::Closed)
        } else if eof
            || !PREFIX.starts_with(
                answer
                    .get(..PREFIX.len().min(answer.len()))
                    .unwrap_or_default(),
            )
        {
            Verdict::Done(Reason::NotHttp)
        } else {
            Verdict::More
        };
    };
    let Some(status) = answer.get(..line_end).and_then(status_code) else {
        return Verdict::Done(Reason::NotHttp);
    };
    let expected = if http.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        http.expect_status.contains(&status)
    };
    if !expected {
        return Verdict::Done(Reason::WrongStatus { got: status });
    }
    let Some(receive) = &http.receive else {
        return Verdict::Done(Reason::Passed);
    };
    let body = header_end(answer).and_then(|end| answer.get(end..));
    match body {
        Some(body) if contains(body, receive.as_bytes()) => Verdict::Done(Reason::Passed),
        _ if eof => Verdict::Done(Reason::WrongContent),
        _ => Verdict::More,
    }
}

/// The status code of `HTTP/1.x NNN reason`.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = core::str::from_utf8(line).ok()?.trim_end();
    let mut words = line.split(' ');
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// Where the body starts (after the first empty line).
fn header_end(answer: &[u8]) -> Option<usize> {
    let crlf = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = answer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `GET path HTTP/1.1` with a Host header; `Connection: close` so that the
/// server ends the answer.
fn http_request(http: &HttpCheck, addr: SocketAddr) -> String {
    let default_port = if http.tls.is_some() { 443 } else { 80 };
    let host = match &http.virtualhost {
        Some(h) => h.clone(),
        None if addr.port() == default_port => match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        },
        None => addr.to_string(),
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xvs-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        http.path
    )
}

// ---- TLS ---------------------------------------------------------------------------

/// Client configurations for HTTPS checks, built once and shared: one that
/// accepts any certificate, one per trust store (the host's, or a CA file).
#[derive(Debug, Default)]
pub(crate) struct TlsConfigs {
    insecure: Mutex<Option<Arc<ClientConfig>>>,
    verifying: Mutex<HashMap<Option<PathBuf>, Arc<ClientConfig>>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfigs {
    /// Forgets the built configurations (a reload re-reads CA files).
    pub(crate) fn clear(&self) {
        *self.insecure.lock() = None;
        self.verifying.lock().clear();
    }

    fn get(&self, t: &TlsCheck) -> Result<Arc<ClientConfig>, Reason> {
        if !t.verify {
            let mut insecure = self.insecure.lock();
            if let Some(c) = &*insecure {
                return Ok(Arc::clone(c));
            }
            let provider = provider();
            let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| Reason::Tls(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            let config = Arc::new(config);
            *insecure = Some(Arc::clone(&config));
            return Ok(config);
        }
        let mut verifying = self.verifying.lock();
        if let Some(c) = verifying.get(&t.ca_file) {
            return Ok(Arc::clone(c));
        }
        let mut roots = rustls::RootCertStore::empty();
        let certs = match &t.ca_file {
            Some(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Reason::Tls(format!("cannot read CA file {}: {e}", path.display())))?,
            None => rustls_native_certs::load_native_certs().certs,
        };
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Reason::Tls(match &t.ca_file {
                Some(p) => format!("no usable CA certificate in {}", p.display()),
                None => "no usable CA certificate in the host's trust store".to_owned(),
            }));
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Reason::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let config = Arc::new(config);
        verifying.insert(t.ca_file.clone(), Arc::clone(&config));
        Ok(config)
    }
}

/// `verify_certificate = false` (ldirectord's default): any certificate is
/// accepted, but the handshake's signatures are still checked, so the
/// session is with whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---- commands ----------------------------------------------------------------------

/// The environment every command gets: the service and the server.
fn target_env(target: &TargetKey) -> [(&'static str, String); 5] {
    let proto = target.service.proto.name();
    [
        ("XVS_PROTO", proto.to_owned()),
        ("XVS_VIP", target.service.vip.to_string()),
        ("XVS_VPORT", target.service.port.to_string()),
        ("XVS_RIP", target.server.ip().to_string()),
        ("XVS_RPORT", target.server.port().to_string()),
    ]
}

/// Runs `command` with `args` appended and `env` added; `Ok` on exit 0.
async fn run_command(
    command: &[String],
    args: &[String],
    env: &[(&'static str, String)],
    limit: Duration,
) -> Result<(), Reason> {
    let Some((program, fixed)) = command.split_first() else {
        return Err(Reason::CommandFailed("no command given".to_owned()));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(fixed)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so that a timeout kills whatever it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Reason::CommandFailed(format!("cannot run {program}: {e}")))?;
    let mut group = GroupKill(
        child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(nix::unistd::Pid::from_raw),
    );
    let waited = timeout(limit, child.wait()).await;
    if waited.is_ok() {
        // It exited (and was reaped): its group id may be reused from now on.
        group.0 = None;
    }
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(Reason::CommandFailed(describe(status))),
        Ok(Err(e)) => Err(Reason::CommandFailed(e.to_string())),
        Err(_) => {
            drop(group);
            let _ = child.kill().await;
            Err(Reason::Timeout(Phase::Command))
        }
    }
}

/// Kills a command's whole process group when dropped: at its timeout,
/// and when the check itself is dropped mid-run (a reload replaced the
/// target, or the checker stopped). `kill_on_drop` alone would kill only
/// the direct child — a shell's children would live on.
struct GroupKill(Option<nix::unistd::Pid>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// ldirectord's external check: `command… VIP VPORT RIP RPORT`, exit 0 = up.
async fn external(command: &[String], limit: Duration, target: &TargetKey) -> Reason {
    let args = [
        target.service.vip.to_string(),
        target.service.port.to_string(),
        target.server.ip().to_string(),
        target.server.port().to_string(),
    ];
    match run_command(command, &args, &target_env(target), limit).await {
        Ok(()) => Reason::Passed,
        Err(reason) => reason,
    }
}

/// Runs a transition hook: `hook… SERVICE SERVER up|down REASON`, with
/// `XVS_SERVICE`, `XVS_SERVER`, `XVS_STATE`, `XVS_REASON` and the
/// target's variables in its environment. Failures are logged, never
/// retried.
pub(crate) async fn run_hook(hook: &[String], target: &TargetKey, up: bool, reason: &Reason) {
    let state = if up { "up" } else { "down" };
    let args = [
        target.service.compact().to_string(),
        target.server.to_string(),
        state.to_owned(),
        reason.to_string(),
    ];
    let mut env = target_env(target).to_vec();
    env.extend([
        ("XVS_SERVICE", args[0].clone()),
        ("XVS_SERVER", args[1].clone()),
        ("XVS_STATE", args[2].clone()),
        ("XVS_REASON", args[3].clone()),
    ]);
    if let Err(reason) = run_command(hook, &args, &env, HOOK_TIMEOUT).await {
        log::warn!("health: {target}: the transition hook failed: {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(expect: &[u16], receive: Option<&str>) -> HttpCheck {
        HttpCheck {
            tls: None,
            path: "/".into(),
            virtualhost: None,
            expect_status: expect.to_vec(),
            receive: receive.map(str::to_owned),
        }
    }

    #[test]
    fn http_answers_are_judged_as_they_arrive() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nready";
        let cases: &[(&[u8], bool, HttpCheck, Verdict)] = &[
            (b"", false, http(&[], None), Verdict::More),
            (b"", true, http(&[], None), Verdict::Done(Reason::Closed)),
            (b"HTT", false, http(&[], None), Verdict::More),
            (b"HTTP/1.1 200", false, http(&[], None), Verdict::More),
            (
                b"SSH-2.0-OpenSSH",
                false,
                http(&[], None),
                Verdict::Done(Reason::NotHttp),
            ),
            (
                b"HTTP/1.1 20",
                true,
                http(&[], None),
                Verdict::Done(Reason::NotHttp),
            ),
            (
                b"HTTP/1.1 abc OK\r\n",
                false,
                http(&[], None),
                Verdict::Done(Reason::NotHttp),
            ),
            (
                b"HTTP/1.0 204 No Content\r\n",
                false,
                http(&[], None),
                Verdict::Done(Reason::Passed),
            ),
            (
                b"HTTP/1.1 301 Moved\r\n",
                false,
                http(&[], None),
                Verdict::Done(Reason::WrongStatus { got: 301 }),
            ),
            (
                b"HTTP/1.1 301 Moved\r\n",
                false,
                http(&[301, 302], None),
                Verdict::Done(Reason::Passed),
            ),
            (
                b"HTTP/1.1 200 OK\r\n",
                false,
                http(&[204], None),
                Verdict::Done(Reason::WrongStatus { got: 200 }),
            ),
            (
                b"HTTP/1.1 503 Busy\n\nready",
                true,
                http(&[], Some("ready")),
                Verdict::Done(Reason::WrongStatus { got: 503 }),
            ),
            (&ok[..20], false, http(&[], Some("ready")), Verdict::More),
            (
                ok,
                false,
                http(&[], Some("ready")),
                Verdict::Done(Reason::Passed),
            ),
            (
                ok,
                true,
                http(&[], Some("steady")),
                Verdict::Done(Reason::WrongContent),
            ),
            (
                b"HTTP/1.1 200 OK\nX: ready\n\nnot yet",
                true,
                http(&[], Some("ready")),
                Verdict::Done(Reason::WrongContent),
            ),
            (
                b"HTTP/1.1 200 OK\nX: y\n\nready",
                false,
                http(&[], Some("ready")),
                Verdict::Done(Reason::Passed),
            ),
        ];
        for (answer, eof, check, verdict) in cases {
            assert_eq!(
                &judge_http(answer, *eof, check),
                verdict,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn raw_tcp_answers_need_the_text() {
        assert_eq!(judge_tcp(b"+PO", false, b"+PONG"), Verdict::More);
        assert_eq!(
            judge_tcp(b"+PONG\r\n", false, b"+PONG"),
            Verdict::Done(Reason::Passed)
        );
        assert_eq!(
            judge_tcp(b"-ERR", true, b"+PONG"),
            Verdict::Done(Reason::WrongContent)
        );
        assert_eq!(
            judge_tcp(b"", true, b"+PONG"),
            Verdict::Done(Reason::Closed)
        );
    }

    #[test]
    fn requests_carry_the_host_the_server_expects() {
        let mut h = http(&[], None);
        h.path = "/health".into();
        let v4: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert!(http_request(&h, v4).starts_with("GET /health HTTP/1.1\r\nHost: 192.0.2.1\r\n"));
        let v6: SocketAddr = "[2001:db8::1]:8080"
            .parse()
            .unwrap_or_else(|_| unreachable!());
        assert!(http_request(&h, v6).contains("\r\nHost: [2001:db8::1]:8080\r\n"));
        h.virtualhost = Some("www.example.com".into());
        let req = http_request(&h, v6);
        assert!(req.contains("\r\nHost: www.example.com\r\n"));
        assert!(req.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn status_lines_parse_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404"), Some(404));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code(b"HTTP/1.1 099 x"), None);
        assert_eq!(status_code(b"ICY 200 OK"), None);
        assert_eq!(status_code(&[0xff, 0xfe]), None);
    }

    #[test]
    fn server_names_fall_back_to_the_address() {
        let a: SocketAddr = "127.0.0.1:443".parse().unwrap();
        assert!(matches!(server_name(None, a), ServerName::IpAddress(_)));
        assert!(matches!(
            server_name(Some("localhost"), a),
            ServerName::DnsName(_)
        ));
    }

    #[test]
    fn io_errors_map_to_operator_reasons() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            io_reason(&e(io::ErrorKind::ConnectionRefused)),
            Reason::Refused
        );
        assert_eq!(
            io_reason(&e(io::ErrorKind::HostUnreachable)),
            Reason::Unreachable
        );
        assert_eq!(io_reason(&e(io::ErrorKind::ConnectionReset)), Reason::Reset);
        assert!(matches!(io_reason(&e(io::ErrorKind::Other)), Reason::Io(_)));
    }
}
