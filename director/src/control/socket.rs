//! The control socket: a Unix stream socket (mode 0600, root only) that
//! reads one [`Envelope`] per line and answers one [`Reply`] per line (see
//! [`proto`](super::proto), which also says how listings are streamed and
//! when a request is applied). Each connection is served by a short-lived
//! thread that hands its requests to the main thread and waits for the
//! answer, and walks the connection table itself for `-L -c`; at most
//! [`MAX_CLIENTS`] are served at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::control::listing;
use crate::control::plane::ControlMsg;
use crate::control::proto::{
    CONNECTIONS_PER_CHUNK, ConnView, ControlError, Envelope, ErrorKind, MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES, MAX_WAIT_MS, PROTOCOL_VERSION, Reply, Request, VersionOnly,
};
use crate::pipeline::Director;
use crate::run::Clock;

/// Clients served at once.
pub const MAX_CLIENTS: usize = 16;

/// How long a client may take to send a request line.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may leave a reply (a listing's chunk) unread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a request waiting for the main thread checks that its client
/// is still there.
const PEER_CHECK: Duration = Duration::from_millis(100);

/// Where connection listings come from: the director's table, walked by
/// the client's thread, and the clock its deadlines count in.
#[derive(Debug, Clone)]
pub struct ConnSource {
    /// The director whose connection table is listed.
    pub director: Arc<Director>,
    /// The pipeline's clock.
    pub clock: Clock,
}

const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

/// A request on its way to the main thread. Whoever decides first wins:
/// the main thread [`take`](Self::take)s it (then it is applied and
/// answered), or the client's thread abandons it (its client gave up or
/// hung up; then it is never applied).
#[derive(Debug)]
pub struct PendingRequest {
    request: Request,
    reply_to: Sender<Reply>,
    claim: Arc<AtomicU8>,
}

impl PendingRequest {
    /// `request`, answered on the returned receiver; the claim is the
    /// waiting side's half of the decision.
    #[must_use]
    pub fn new(request: Request) -> (Self, Claim, Receiver<Reply>) {
        let (reply_to, replies) = bounded(1);
        let claim = Arc::new(AtomicU8::new(WAITING));
        (
            Self {
                request,
                reply_to,
                claim: Arc::clone(&claim),
            },
            Claim(claim),
            replies,
        )
    }

    /// The request and where its answer goes, if its client still waits
    /// for it; from here on the client will get this thread's answer, so
    /// apply it and answer. `None`: the client gave up or went away, and
    /// the request must not be applied.
    #[must_use]
    pub fn take(self) -> Option<(Request, Sender<Reply>)> {
        self.claim
            .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| (self.request, self.reply_to))
    }

    /// The request, for the log.
    #[must_use]
    pub fn request(&self) -> &Request {
        &self.request
    }
}

/// The waiting side of a [`PendingRequest`].
#[derive(Debug)]
pub struct Claim(Arc<AtomicU8>);

impl Claim {
    /// Gives the request up: true if it was not taken yet, so it never
    /// will be; false if the main thread has it (its answer follows).
    #[must_use]
    pub fn abandon(&self) -> bool {
        self.0
            .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The listening socket and its accept thread; removed on drop.
/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A director already listens on the path.
    #[error(
        "another director answers on the control socket {}; stop it, or give this one another --control-socket",
        .0.display()
    )]
    InUse(PathBuf),
    /// A file-system step failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The path it worked on.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The socket could not be made private.
    #[error("making {} private (0600): {source}", path.display())]
    Private {
        /// The socket's path.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The socket's thread could not be started.
    #[error("starting the control socket's thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlSocket {
    /// Listens on `path` (its directory is created; a stale socket left
    /// by a director that died is replaced) and serves clients, sending
    /// their requests to `to_main` and listing connections from `conns`.
    ///
    /// # Errors
    /// Another director answers on `path`, or it cannot be created.
    pub fn bind(
        path: &Path,
        to_main: Sender<ControlMsg>,
        conns: ConnSource,
    ) -> Result<Self, BindError> {
        let at = |what: &'static str| {
            let path = path.to_owned();
            move |source| BindError::Io { what, path, source }
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| BindError::Io {
                what: "creating the control socket's directory",
                path: dir.to_owned(),
                source,
            })?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(at("removing the stale control socket"))?;
        }
        let listener = UnixListener::bind(path).map_err(at("creating the control socket"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| BindError::Private {
                path: path.to_owned(),
                source,
            },
        )?;
        listener
            .set_nonblocking(true)
            .map_err(at("control socket"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xvs-control".to_owned())
            .spawn(move || accept_loop(&listener, &to_main, &conns, &thread_stop))
            .map_err(BindError::Thread)?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: &UnixListener,
    to_main: &Sender<ControlMsg>,
    conns: &ConnSource,
    stop: &AtomicBool,
) {
    let clients = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    let _ = refuse(stream, "too many control clients at once; try again");
                    continue;
                }
                clients.fetch_add(1, Ordering::Relaxed);
                let to_main = to_main.clone();
                let conns = conns.clone();
                let count = Arc::clone(&clients);
                let spawned = std::thread::Builder::new()
                    .name("xvs-control-client".to_owned())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &to_main, &conns) {
                            log::debug!("control client: {e}");
                        }
                        count.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    clients.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                log::warn!("control socket: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn refuse(mut stream: UnixStream, message: &str) -> std::io::Result<()> {
    let reply = Reply::Error(ControlError::new(ErrorKind::Malformed, message));
    write_reply(&mut stream, &reply, &mut Vec::new())
}

/// A buffer that refuses to grow beyond its cap: a reply is serialised
/// into it whole before a byte is written, so a reply too large for the
/// protocol is an error the client sees, never a half-written line, and
/// never more than the cap allocated.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    cap: usize,
}

impl Write for Capped<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let need = self.buf.len() + data.len();
        if need > self.cap {
            return Err(std::io::Error::other("the reply exceeds its cap"));
        }
        if need > self.buf.capacity() {
            // Grow geometrically, but never past the cap.
            let target = (self.buf.capacity() * 2).clamp(need, self.cap);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `reply` as one line of at most `cap` bytes (newline included) in
/// `buf`, or the [`ErrorKind::TooLarge`] refusal that replaces it.
fn encode_reply(reply: &Reply, buf: &mut Vec<u8>, cap: usize) {
    buf.clear();
    let body_cap = cap.saturating_sub(1);
    if serde_json::to_writer(Capped { buf, cap: body_cap }, reply).is_err() {
        buf.clear();
        let refusal = Reply::Error(ControlError::new(
            ErrorKind::TooLarge,
            format!(
                "the answer would be longer than the protocol's {cap} bytes and was not sent; nothing changed (list less at once, e.g. one service with -L -t)"
            ),
        ));
        if serde_json::to_writer(&mut *buf, &refusal).is_err() {
            buf.clear();
        }
    }
    buf.push(b'\n');
}

fn write_reply(writer: &mut impl Write, reply: &Reply, buf: &mut Vec<u8>) -> std::io::Result<()> {
    encode_reply(reply, buf, MAX_REPLY_BYTES);
    writer.write_all(buf)
}

/// Serves one client: request lines until it hangs up.
fn serve(
    stream: UnixStream,
    to_main: &Sender<ControlMsg>,
    conns: &ConnSource,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        let n = (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_REQUEST_BYTES {
            let reply = Reply::Error(ControlError::new(
                ErrorKind::Malformed,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            ));
            return write_reply(&mut writer, &reply, &mut out);
        }
        let envelope = match read_envelope(line.trim_end()) {
            Ok(e) => e,
            Err(reply) => {
                write_reply(&mut writer, &reply, &mut out)?;
                continue;
            }
        };
        drop(line);
        let reply = match envelope.request {
            Request::Connections => {
                stream_connections(&mut writer, conns, &mut out)?;
                continue;
            }
            request => {
                let wait = match envelope.wait_ms {
                    0 => MAX_WAIT_MS,
                    w => w.min(MAX_WAIT_MS),
                };
                let wait = Duration::from_millis(u64::from(wait));
                match answer(request, wait, to_main, &mut reader) {
                    Some(reply) => reply,
                    None => return Ok(()),
                }
            }
        };
        write_reply(&mut writer, &reply, &mut out)?;
    }
}

fn read_envelope(line: &str) -> Result<Envelope, Reply> {
    let version_error = |version: u32| {
        Reply::Error(ControlError::new(
            ErrorKind::Version,
            format!(
                "protocol version {version} is not this director's {PROTOCOL_VERSION}: use the xvsadm of the same release"
            ),
        ))
    };
    match serde_json::from_str::<Envelope>(line) {
        Ok(e) if e.version == PROTOCOL_VERSION => Ok(e),
        Ok(e) => Err(version_error(e.version)),
        Err(e) => match serde_json::from_str::<VersionOnly>(line) {
            // Another release's request: say so rather than "malformed".
            Ok(v) if v.version != PROTOCOL_VERSION => Err(version_error(v.version)),
            _ => Err(Reply::Error(ControlError::new(
                ErrorKind::Malformed,
                format!("unreadable request: {e}"),
            ))),
        },
    }
}

/// `-L -c`: the table in chunks, written as they are filled, then the
/// end line. A client that stops reading stalls only this thread, and for
/// at most [`WRITE_TIMEOUT`].
fn stream_connections(
    writer: &mut impl Write,
    conns: &ConnSource,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let now = conns.clock.now();
    let count = listing::for_each_chunk(
        conns.director.table(),
        now,
        CONNECTIONS_PER_CHUNK,
        |chunk: &mut Vec<ConnView>| {
            let reply = Reply::ConnectionsChunk {
                entries: std::mem::take(chunk),
            };
            let written = write_reply(writer, &reply, out);
            if let Reply::ConnectionsChunk { entries } = reply {
                // Keep the chunk's allocation for the next one.
                *chunk = entries;
            }
            written
        },
    )?;
    write_reply(writer, &Reply::ConnectionsEnd { count }, out)
}

/// True when the client has closed (or half-closed) its end. Reads into
/// the client's buffer, so a request it already sent is kept.
fn peer_gone(reader: &mut BufReader<UnixStream>) -> bool {
    if reader.get_ref().set_nonblocking(true).is_err() {
        return false;
    }
    let gone = match reader.fill_buf() {
        Ok(buffered) => buffered.is_empty(),
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    if reader.get_ref().set_nonblocking(false).is_err() {
        return true;
    }
    gone
}

fn stopped_while_handling() -> Reply {
    Reply::Error(ControlError::new(
        ErrorKind::Unknown,
        "the director stopped while handling the request: its outcome is unknown; check with xvsadm -L -n",
    ))
}

/// Hands `request` to the main thread and waits for its answer while the
/// client waits (see the protocol's "Timeouts"). `None`: the client went
/// away and the request was dropped unapplied.
fn answer(
    request: Request,
    wait: Duration,
    to_main: &Sender<ControlMsg>,
    reader: &mut BufReader<UnixStream>,
) -> Option<Reply> {
    let describe = crate::control::plane::describe(&request);
    let (pending, claim, replies) = PendingRequest::new(request);
    if to_main.send(ControlMsg::Request(pending)).is_err() {
        return Some(Reply::Error(ControlError::new(
            ErrorKind::NotApplied,
            "the director is stopping: the request was not applied",
        )));
    }
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match replies.recv_timeout(left.min(PEER_CHECK)) {
            Ok(reply) => return Some(reply),
            Err(RecvTimeoutError::Disconnected) => {
                // The main thread dropped it without an answer: it is
                // stopping.
                return Some(if claim.abandon() {
                    Reply::Error(ControlError::new(
                        ErrorKind::NotApplied,
                        "the director is stopping: the request was not applied",
                    ))
                } else {
                    stopped_while_handling()
                });
            }
            Err(RecvTimeoutError::Timeout) => {
                let gone = peer_gone(reader);
                if !gone && Instant::now() < deadline {
                    continue;
                }
                if claim.abandon() {
                    if gone {
                        log::info!("control: {describe} dropped unapplied: its client hung up");
                        return None;
                    }
                    log::warn!(
                        "control: {describe} dropped unapplied: the control thread did not take it within {} ms",
                        wait.as_millis()
                    );
                    return Some(Reply::Error(ControlError::new(
                        ErrorKind::NotApplied,
                        format!(
                            "the director's control thread was busy and did not take the request within {} ms: nothing was applied; try again",
                            wait.as_millis()
                        ),
                    )));
                }
                // The main thread has it: it is applied (or refused) and
                // answered; that answer is the truth the client needs.
                return Some(replies.recv().unwrap_or_else(|_| stopped_while_handling()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::IpAddr;

    use crossbeam::channel::unbounded;

    use super::*;
    use crate::ForwardMethod;
    use crate::config::ClusterConfig;
    use crate::conn::NewConnection;
    use crate::control::plane::{ControlPlane, NoHooks};
    use crate::control::proto::client::{ClientError, ControlClient, read_line_capped};
    use crate::control::proto::{Protocol, ServiceId, ServiceParams, TableView};
    use crate::control::table::ServiceTable;
    use crate::pipeline::{Neighbours, Worker};
    use crate::test_support::two_interfaces;
    use xvs_packet::IpProtocol;

    const CONFIG: &str = concat!(
        r#"
[conn_table]
capacity = 131072
"#,
        two_interfaces!()
    );

    /// A director, its control plane and a control socket whose requests
    /// arrive on the returned receiver (the test plays the main thread).
    struct Fixture {
        socket: ControlSocket,
        from_clients: Receiver<ControlMsg>,
        plane: ControlPlane,
        worker: Worker,
        clock: Clock,
    }

    fn fixture(name: &str) -> Fixture {
        let config = ClusterConfig::parse("t.toml", CONFIG).unwrap();
        let table = ServiceTable::from_config(&config, 1).unwrap();
        let director = Arc::new(Director::with_snapshot(
            table.snapshot(),
            &config,
            3,
            Arc::new(Neighbours::new()),
        ));
        let worker = director.worker(1);
        let clock = Clock::start();
        let path = std::env::temp_dir().join(format!(
            "xvs-control-test-{}-{name}.sock",
            std::process::id()
        ));
        let (to_main, from_clients) = unbounded();
        let socket = ControlSocket::bind(
            &path,
            to_main,
            ConnSource {
                director: Arc::clone(&director),
                clock,
            },
        )
        .unwrap();
        Fixture {
            socket,
            from_clients,
            plane: ControlPlane::new(table, director, 131_072),
            worker,
            clock,
        }
    }

    impl Fixture {
        fn client(&self) -> ControlClient {
            ControlClient::connect(self.socket.path()).unwrap()
        }

        /// What the director's main loop does with one message.
        fn main_thread_handles(&mut self, msg: ControlMsg) -> Option<Request> {
            let ControlMsg::Request(pending) = msg else {
                return None;
            };
            let (request, reply_to) = pending.take()?;
            let mut reload = || Err(crate::control::plane::LoadError::NoFile);
            let reply = self.plane.handle(
                &request,
                &self.worker.counters,
                self.clock.now(),
                &mut reload,
                &mut NoHooks,
            );
            let _ = reply_to.send(reply);
            Some(request)
        }

        fn services(&self) -> Vec<ServiceId> {
            let view: TableView = self.plane.table_view(&self.worker.counters);
            view.services.iter().map(|s| s.params.id).collect()
        }

        /// `n` connections, all distinct, as (client, client port).
        fn fill(&self, n: u32) -> HashSet<(IpAddr, u16)> {
            let table = self.plane.director().table();
            let now = self.clock.now();
            let mut want = HashSet::new();
            for i in 0..n {
                let client = IpAddr::from([198, 51, 100, 2 + (i / 50_000) as u8]);
                let cport = 10_000 + (i % 50_000) as u16;
                let conn = NewConnection {
                    proto: IpProtocol::Tcp,
                    client,
                    cport,
                    vip: "203.0.113.10".parse().unwrap(),
                    vport: 80,
                    real_server: "192.0.2.11".parse().unwrap(),
                    rport: 80,
                    server_id: 0,
                    method: ForwardMethod::Nat,
                    template: false,
                };
                table.insert(&conn, now, 600_000).unwrap();
                want.insert((client, cport));
            }
            want
        }
    }

    fn add_service(port: u16) -> Request {
        Request::AddService(ServiceParams {
            id: ServiceId {
                proto: Protocol::Tcp,
                vip: "203.0.113.10".parse().unwrap(),
                port,
            },
            scheduler: "rr".to_owned(),
            flags: 0,
            persistence: None,
            sloppy: false,
            fallback: None,
        })
    }

    #[test]
    fn a_large_listing_streams_in_bounded_chunks_without_the_control_thread() {
        let f = fixture("stream");
        let want = f.fill(100_000);
        let mut client = f.client();
        // Nobody plays the main thread here: the listing must not need it.
        client.set_wait(Duration::from_secs(2)).unwrap();
        let mut got = HashSet::new();
        let mut chunks = 0;
        let end = client
            .connections::<ClientError>(&mut |entries| {
                assert!(
                    !entries.is_empty() && entries.len() <= CONNECTIONS_PER_CHUNK,
                    "a chunk of {} entries",
                    entries.len()
                );
                chunks += 1;
                for e in entries {
                    assert_eq!(e.vip, ("203.0.113.10".parse().unwrap(), 80));
                    assert!(got.insert(e.client), "{:?} listed twice", e.client);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(end, Reply::ConnectionsEnd { count: 100_000 });
        assert_eq!(got, want);
        assert_eq!(chunks, 100_000usize.div_ceil(CONNECTIONS_PER_CHUNK));
        assert!(
            f.from_clients.try_recv().is_err(),
            "the control thread was asked"
        );
    }

    #[test]
    fn a_change_is_answered_while_a_listing_waits_for_its_reader() {
        let mut f = fixture("slow-reader");
        f.fill(100_000);
        // A reader that asks for the listing, takes one line and stops:
        // its thread on the director is stuck writing into a full socket.
        let mut slow = UnixStream::connect(f.socket.path()).unwrap();
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            wait_ms: 0,
            request: Request::Connections,
        };
        let mut line = serde_json::to_string(&envelope).unwrap();
        line.push('\n');
        slow.write_all(line.as_bytes()).unwrap();
        let mut slow = BufReader::new(slow);
        let first = read_line_capped(&mut slow, MAX_REPLY_BYTES).unwrap();
        assert!(
            first.starts_with(r#"{"reply":"connections_chunk""#),
            "{first}"
        );

        // Meanwhile a change goes through the control thread and is
        // answered.
        let path = f.socket.path().to_owned();
        let adder = std::thread::spawn(move || {
            let mut c = ControlClient::connect(&path).unwrap();
            c.call(add_service(80)).unwrap()
        });
        let msg = f
            .from_clients
            .recv_timeout(Duration::from_secs(30))
            .unwrap();
        let handled = f.main_thread_handles(msg);
        assert_eq!(handled, Some(add_service(80)));
        assert_eq!(adder.join().unwrap(), Reply::Done);

        // Only now is the rest of the listing read, and it is whole.
        let mut count = 0;
        let mut rest = first;
        loop {
            match serde_json::from_str::<Reply>(rest.trim_end()).unwrap() {
                Reply::ConnectionsChunk { entries } => count += entries.len() as u64,
                Reply::ConnectionsEnd { count: sent } => {
                    assert_eq!(sent, count);
                    break;
                }
                other => panic!("{other:?}"),
            }
            rest = read_line_capped(&mut slow, MAX_REPLY_BYTES).unwrap();
        }
        assert_eq!(count, 100_000);
        assert!(f.from_clients.try_recv().is_err());
    }

    #[test]
    fn a_request_the_control_thread_takes_after_its_client_gave_up_is_never_applied() {
        let mut f = fixture("late");
        let mut client = f.client();
        client.set_wait(Duration::from_millis(300)).unwrap();
        // The control thread is busy: nobody takes the request in time.
        let reply = client.call(add_service(80)).unwrap();
        let Reply::Error(e) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(e.kind, ErrorKind::NotApplied);
        assert!(e.message.contains("nothing was applied"), "{}", e.message);
        // Then it gets to the queue: the request is dropped, not applied.
        let msg = f.from_clients.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(f.main_thread_handles(msg), None);
        assert!(
            f.services().is_empty(),
            "applied after its client was told it was not"
        );

        // In time, the same request is applied and answered.
        client.set_wait(Duration::from_secs(30)).unwrap();
        let path = f.socket.path().to_owned();
        let again = std::thread::spawn(move || {
            let mut c = ControlClient::connect(&path).unwrap();
            c.call(add_service(80)).unwrap()
        });
        let msg = f.from_clients.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(f.main_thread_handles(msg).is_some());
        assert_eq!(again.join().unwrap(), Reply::Done);
        assert_eq!(f.services().len(), 1);
    }

    #[test]
    fn a_request_whose_client_hung_up_is_never_applied() {
        let mut f = fixture("hangup");
        let mut client = f.client();
        client.send(add_service(80)).unwrap();
        let msg = f.from_clients.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(client);
        // Wait (bounded) until the client's thread has seen the hang-up
        // and given the request up; then the control thread gets to it.
        let ControlMsg::Request(pending) = msg else {
            panic!("not a request")
        };
        let given_up = Instant::now() + Duration::from_secs(10);
        while pending.claim.load(Ordering::Acquire) == WAITING && Instant::now() < given_up {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(f.main_thread_handles(ControlMsg::Request(pending)), None);
        assert!(f.services().is_empty());
    }

    #[test]
    fn a_client_without_an_answer_says_the_outcome_is_unknown() {
        let f = fixture("unknown");
        let mut client = f.client();
        client.set_answer_grace(Duration::from_millis(200)).unwrap();
        client.set_wait(Duration::from_millis(100)).unwrap();
        // The control thread takes the request and hangs applying it.
        let taker = std::thread::spawn({
            let from_clients = f.from_clients.clone();
            move || {
                let Ok(ControlMsg::Request(pending)) =
                    from_clients.recv_timeout(Duration::from_secs(5))
                else {
                    panic!("no request")
                };
                pending.take()
            }
        });
        let err = client.call(add_service(80)).unwrap_err().to_string();
        assert!(err.contains("outcome of the change is unknown"), "{err}");
        assert!(err.contains("xvsadm -L -n"), "{err}");
        // The connection is out of step now: later calls say why.
        assert_eq!(client.call(Request::List).unwrap_err().to_string(), err);
        drop(taker.join().unwrap());
    }

    #[test]
    fn replies_longer_than_the_cap_are_refused_whole() {
        let big = Reply::Table(TableView {
            conn_capacity: 1,
            services: Vec::new(),
        });
        let mut buf = Vec::new();
        encode_reply(&big, &mut buf, 1024);
        assert_eq!(
            buf,
            b"{\"reply\":\"table\",\"conn_capacity\":1,\"services\":[]}\n"
        );
        // One longer than the cap is replaced by the refusal, and the
        // buffer never grew past the cap.
        let long = Reply::Error(ControlError::new(ErrorKind::Invalid, "x".repeat(4000)));
        encode_reply(&long, &mut buf, 1024);
        assert!(buf.capacity() <= 1024, "{}", buf.capacity());
        let line = std::str::from_utf8(&buf).unwrap();
        assert!(line.ends_with('\n') && line.len() <= 1024);
        let Reply::Error(e) = serde_json::from_str::<Reply>(line.trim_end()).unwrap() else {
            panic!("{line}")
        };
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("1024 bytes"), "{}", e.message);
    }

    #[test]
    fn the_client_reads_no_reply_longer_than_the_cap() {
        let path = std::env::temp_dir().join(format!(
            "xvs-control-test-{}-bigreply.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut request)
                .unwrap();
            // A line of a valid reply, one byte longer than the cap.
            let head = br#"{"reply":"error","kind":"invalid","message":""#;
            let tail = b"\"}\n";
            let mut line = head.to_vec();
            line.resize(MAX_REPLY_BYTES + 1 - tail.len(), b'x');
            line.extend_from_slice(tail);
            let _ = s.write_all(&line);
        });
        let mut client = ControlClient::connect(&path).unwrap();
        let err = client.call(Request::List).unwrap_err().to_string();
        assert!(err.contains("longer than the protocol's"), "{err}");
        server.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_client_sends_no_request_longer_than_the_cap() {
        let f = fixture("bigrequest");
        let mut client = f.client();
        let requests = vec![add_service(80); MAX_REQUEST_BYTES / 100];
        let err = client
            .call(Request::Batch { requests })
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing was sent"), "{err}");
        assert!(f.from_clients.try_recv().is_err());
    }

    #[test]
    fn another_releases_request_is_refused_for_its_version() {
        // Version 1 had no wait_ms, version 2 no load listing, version 3
        // no daemons' listing, version 4 no --start-daemon; a future one
        // may have more fields.
        for line in [
            r#"{"version":1,"request":{"op":"list"}}"#,
            r#"{"version":2,"request":{"op":"list"}}"#,
            r#"{"version":3,"request":{"op":"list"}}"#,
            r#"{"version":4,"request":{"op":"daemons"}}"#,
            r#"{"version":6,"request":{"op":"list_everything"}}"#,
        ] {
            let Err(Reply::Error(e)) = read_envelope(line) else {
                panic!("{line}")
            };
            assert_eq!(e.kind, ErrorKind::Version, "{line}");
            assert!(e.message.contains("same release"), "{}", e.message);
        }
        assert!(read_envelope(r#"{"version":5,"request":{"op":"daemons"}}"#).is_ok());
        assert!(
            read_envelope(r#"{"version":5,"request":{"op":"stop_daemon","role":"backup"}}"#)
                .is_ok()
        );
        let Err(Reply::Error(e)) = read_envelope("{") else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
}
