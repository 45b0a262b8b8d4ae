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
    ANSWER_GRACE_MS, CONNECTIONS_PER_CHUNK, ConnView, ControlError, Envelope, ErrorKind,
    MAX_REPLY_BYTES, MAX_REQUEST_BYTES, MAX_WAIT_MS, PROTOCOL_VERSION, Reply, Request, VersionOnly,
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
    ) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "creating the control socket's directory {}: {e}",
                    dir.display()
                )
            })?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another director answers on the control socket {}; stop it, or give this one another --control-socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| {
                format!("removing the stale control socket {}: {e}", path.display())
            })?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("creating the control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("making {} private (0600): {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("xvs-control".to_owned())
            .spawn(move || accept_loop(&listener, &to_main, &conns, &thread_stop))
            .map_err(|e| format!("starting the control socket's thread: {e}"))?;
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

/// Why a reply line could not be read.
#[derive(Debug)]
enum LineError {
    /// The connection ended.
    Closed,
    /// Longer than the cap: not read on (the connection is out of step).
    TooLong,
    /// Nothing came within the read timeout.
    TimedOut,
    /// Another I/O error.
    Io(std::io::Error),
}

/// One line of at most `cap` bytes (newline included) from `reader`,
/// allocating no more than that.
fn read_line_capped(reader: &mut impl BufRead, cap: usize) -> Result<String, LineError> {
    let mut line = String::new();
    match reader.take(cap as u64 + 1).read_line(&mut line) {
        Ok(0) => Err(LineError::Closed),
        Ok(n) if n > cap => Err(LineError::TooLong),
        // The connection ended within the line.
        Ok(_) if !line.ends_with('\n') => Err(LineError::Closed),
        Ok(_) => Ok(line),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(LineError::TimedOut)
        }
        Err(e) => Err(LineError::Io(e)),
    }
}

/// A client of the control socket (what `xvsadm` uses).
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    wait: Duration,
    /// Set when the connection is out of step (a reply not read whole):
    /// every later call fails with it.
    broken: Option<String>,
}

impl ControlClient {
    /// Connects to the socket at `path`; requests wait up to
    /// [`MAX_WAIT_MS`] (see [`ControlClient::set_wait`]).
    ///
    /// # Errors
    /// Nothing listens there, or permission is denied.
    pub fn connect(path: &Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "; is xvs-director running (with this --control-socket)?"
                }
                std::io::ErrorKind::PermissionDenied => "; the control socket is root's: use sudo",
                _ => "",
            };
            format!("cannot reach the director at {}: {e}{hint}", path.display())
        })?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("control socket: {e}"))?;
        let mut client = Self {
            reader: BufReader::new(stream),
            writer,
            wait: Duration::from_millis(u64::from(MAX_WAIT_MS)),
            broken: None,
        };
        client.set_wait(client.wait)?;
        Ok(client)
    }

    /// How long a request may wait for the director's control thread
    /// (at most [`MAX_WAIT_MS`]); the client waits that plus
    /// [`ANSWER_GRACE_MS`] for an answer.
    ///
    /// # Errors
    /// The socket's timeout could not be set.
    pub fn set_wait(&mut self, wait: Duration) -> Result<(), String> {
        let max = Duration::from_millis(u64::from(MAX_WAIT_MS));
        self.wait = wait.clamp(Duration::from_millis(1), max);
        self.reader
            .get_ref()
            .set_read_timeout(Some(self.answer_timeout()))
            .map_err(|e| format!("control socket: {e}"))
    }

    fn answer_timeout(&self) -> Duration {
        self.wait + Duration::from_millis(u64::from(ANSWER_GRACE_MS))
    }

    fn send(&mut self, request: Request) -> Result<(), String> {
        if let Some(why) = &self.broken {
            return Err(why.clone());
        }
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            wait_ms: u32::try_from(self.wait.as_millis()).unwrap_or(MAX_WAIT_MS),
            request,
        };
        let mut line = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
        line.push('\n');
        if line.len() > MAX_REQUEST_BYTES {
            return Err(format!(
                "the request is {} bytes, more than the {MAX_REQUEST_BYTES} the director reads: nothing was sent (restore a long -R input in several parts)",
                line.len()
            ));
        }
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("sending to the director: {e}"))
    }

    /// The next reply line; `change` says whether an unanswered request
    /// may have changed the state (for the message).
    fn receive(&mut self, change: bool) -> Result<Reply, String> {
        let line = match read_line_capped(&mut self.reader, MAX_REPLY_BYTES) {
            Ok(line) => line,
            Err(LineError::Closed) => {
                return Err(if change {
                    "the director closed the connection without answering: the outcome of the change is unknown; check with xvsadm -L -n".to_owned()
                } else {
                    "the director closed the connection without answering".to_owned()
                });
            }
            Err(LineError::TooLong) => {
                let why = format!(
                    "the director's answer is longer than the protocol's {MAX_REPLY_BYTES} bytes and was not read; is this xvsadm from the director's release?"
                );
                self.broken = Some(why.clone());
                return Err(why);
            }
            Err(LineError::TimedOut) => {
                let waited = self.answer_timeout().as_secs();
                let why = if change {
                    format!(
                        "no answer from the director within {waited} s: the outcome of the change is unknown (the director had taken it, so it may be in force); check with xvsadm -L -n before you repeat it"
                    )
                } else {
                    format!("no answer from the director within {waited} s")
                };
                self.broken = Some(why.clone());
                return Err(why);
            }
            Err(LineError::Io(e)) => {
                let why = format!("reading the director's answer: {e}");
                self.broken = Some(why.clone());
                return Err(why);
            }
        };
        serde_json::from_str(line.trim_end()).map_err(|e| {
            let why = format!("unreadable answer from the director: {e}");
            self.broken = Some(why.clone());
            why
        })
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    /// The connection broke, no answer came in time (the message says
    /// whether the outcome is unknown), or the reply was unreadable.
    pub fn call(&mut self, request: Request) -> Result<Reply, String> {
        let change = request.is_change();
        self.send(request)?;
        self.receive(change)
    }

    /// `-L -c`: hands `chunk` the connection entries as they arrive.
    /// Returns the listing's last reply: [`Reply::ConnectionsEnd`], or the
    /// director's refusal.
    ///
    /// # Errors
    /// The connection broke before the listing's end (it is incomplete),
    /// an answer was unreadable, or `chunk` failed (its error).
    pub fn connections(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), String>,
    ) -> Result<Reply, String> {
        self.send(Request::Connections)?;
        let mut received = 0u64;
        loop {
            let reply = self.receive(false).map_err(|e| {
                format!("the connection listing broke off after {received} entries: {e}")
            })?;
            match reply {
                Reply::ConnectionsChunk { entries } => {
                    received += entries.len() as u64;
                    if let Err(e) = chunk(&entries) {
                        // The rest of the listing is not read: drop the
                        // connection rather than leave it out of step.
                        self.broken = Some(format!("an earlier listing stopped: {e}"));
                        let _ = self.writer.shutdown(std::net::Shutdown::Both);
                        return Err(e);
                    }
                }
                Reply::ConnectionsEnd { count } if count == received => {
                    return Ok(Reply::ConnectionsEnd { count });
                }
                Reply::ConnectionsEnd { count } => {
                    return Err(format!(
                        "the director listed {count} connections but {received} arrived"
                    ));
                }
                other @ Reply::Error(_) => return Ok(other),
                other => return Err(format!("unexpected answer from the director: {other:?}")),
            }
        }
    }
}
