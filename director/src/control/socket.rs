//! The control socket: a Unix stream socket (mode 0600, root only) that
//! reads one [`Envelope`] per line and answers one [`Reply`] per line (see
//! [`proto`](super::proto)). Each connection is served by a short-lived
//! thread that hands its requests to the main thread and waits for the
//! answer; at most [`MAX_CLIENTS`] are served at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{Sender, bounded};

use crate::control::plane::ControlMsg;
use crate::control::proto::{
    ControlError, Envelope, ErrorKind, MAX_REQUEST_BYTES, PROTOCOL_VERSION, Reply,
};

/// Clients served at once.
pub const MAX_CLIENTS: usize = 16;

/// How long a client may take to send a request line.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request may wait for the main thread.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// their requests to `to_main`.
    ///
    /// # Errors
    /// Another director answers on `path`, or it cannot be created.
    pub fn bind(path: &Path, to_main: Sender<ControlMsg>) -> Result<Self, String> {
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
            .spawn(move || accept_loop(&listener, &to_main, &thread_stop))
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

fn accept_loop(listener: &UnixListener, to_main: &Sender<ControlMsg>, stop: &AtomicBool) {
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
                let count = Arc::clone(&clients);
                let spawned = std::thread::Builder::new()
                    .name("xvs-control-client".to_owned())
                    .spawn(move || {
                        if let Err(e) = serve(stream, &to_main) {
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
    let mut line = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())
}

/// Serves one client: request lines until it hangs up.
fn serve(stream: UnixStream, to_main: &Sender<ControlMsg>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if n > MAX_REQUEST_BYTES {
            Reply::Error(ControlError::new(
                ErrorKind::Malformed,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            ))
        } else {
            answer(line.trim_end(), to_main)
        };
        let mut out = serde_json::to_string(&reply).map_err(std::io::Error::other)?;
        out.push('\n');
        writer.write_all(out.as_bytes())?;
        if n > MAX_REQUEST_BYTES {
            return Ok(());
        }
        // Each request gets the full allowance again.
        reader.set_limit(MAX_REQUEST_BYTES as u64 + 1);
    }
}

fn answer(line: &str, to_main: &Sender<ControlMsg>) -> Reply {
    let envelope: Envelope = match serde_json::from_str(line) {
        Ok(e) => e,
        Err(e) => {
            return Reply::Error(ControlError::new(
                ErrorKind::Malformed,
                format!("unreadable request: {e}"),
            ));
        }
    };
    if envelope.version != PROTOCOL_VERSION {
        return Reply::Error(ControlError::new(
            ErrorKind::Version,
            format!(
                "protocol version {} is not this director's {PROTOCOL_VERSION}: use the xvsadm of the same release",
                envelope.version
            ),
        ));
    }
    let (tx, rx) = bounded(1);
    if to_main
        .send(ControlMsg::Request(envelope.request, tx))
        .is_err()
    {
        return Reply::Error(ControlError::new(
            ErrorKind::Invalid,
            "the director is stopping",
        ));
    }
    rx.recv_timeout(REPLY_TIMEOUT).unwrap_or_else(|_| {
        Reply::Error(ControlError::new(
            ErrorKind::Invalid,
            "the director did not answer in time",
        ))
    })
}

/// A client of the control socket (what `xvsadm` uses).
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ControlClient {
    /// Connects to the socket at `path`.
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
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    /// The connection broke or the reply was unreadable.
    pub fn call(&mut self, request: crate::control::proto::Request) -> Result<Reply, String> {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            request,
        };
        let mut line = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("sending to the director: {e}"))?;
        let mut answer = String::new();
        self.reader
            .read_line(&mut answer)
            .map_err(|e| format!("reading the director's answer: {e}"))?;
        if answer.is_empty() {
            return Err("the director closed the connection without answering".to_owned());
        }
        serde_json::from_str(answer.trim_end())
            .map_err(|e| format!("unreadable answer from the director: {e}"))
    }
}
