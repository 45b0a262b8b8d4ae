//! A client of the control socket: what `xvsadm` uses, and what the
//! director's own tests drive its socket with. It sends one [`Envelope`]
//! line per request and reads the [`Reply`] lines, each capped at
//! [`MAX_REPLY_BYTES`]; it waits for an answer as long as the protocol
//! says (the request's `wait_ms` plus [`ANSWER_GRACE_MS`]) and says
//! plainly when the outcome of a change is unknown.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{
    ANSWER_GRACE_MS, ConnView, Envelope, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, MAX_WAIT_MS,
    PROTOCOL_VERSION, Reply, Request,
};

/// Why a reply line could not be read.
#[derive(Debug)]
pub enum LineError {
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
///
/// # Errors
/// The connection ended (within the line too), the line is longer than
/// `cap`, the read timed out or failed.
pub fn read_line_capped(reader: &mut impl BufRead, cap: usize) -> Result<String, LineError> {
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
    /// How much longer than `wait` an answer may take.
    grace: Duration,
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
            grace: Duration::from_millis(u64::from(ANSWER_GRACE_MS)),
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

    /// How much longer than the request's wait the client waits for an
    /// answer ([`ANSWER_GRACE_MS`] unless set here; tests shorten it).
    ///
    /// # Errors
    /// The socket's timeout could not be set.
    pub fn set_answer_grace(&mut self, grace: Duration) -> Result<(), String> {
        self.grace = grace;
        self.set_wait(self.wait)
    }

    fn answer_timeout(&self) -> Duration {
        self.wait + self.grace
    }

    /// Sends `request` without reading its answer ([`call`](Self::call)
    /// does both). A client that hangs up after this leaves the request
    /// never applied: the director's tests use it to show that.
    ///
    /// # Errors
    /// The connection is out of step, the request is longer than
    /// [`MAX_REQUEST_BYTES`] (nothing was sent), or it could not be sent.
    pub fn send(&mut self, request: Request) -> Result<(), String> {
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
