//! A client of the control socket: what `xvsadm` uses, and what the
//! director's own tests drive its socket with. It sends one [`Envelope`]
//! line per request and reads the [`Reply`] lines, each capped at
//! [`MAX_REPLY_BYTES`]; it waits for an answer as long as the protocol
//! says (the request's `wait_ms` plus [`ANSWER_GRACE_MS`]) and says
//! plainly when the outcome of a change is unknown.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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

/// Why a call on the control socket failed. The messages are for an
/// operator: they say what happened and, for a change, whether its outcome
/// is unknown and how to check.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket's path, or permission is denied.
    #[error("cannot reach the director at {}: {source}{}", .path.display(), connect_hint(.source))]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket could not be set up (cloned, given its timeout).
    #[error("control socket: {0}")]
    Socket(std::io::Error),
    /// The request could not be encoded.
    #[error("{0}")]
    Encode(serde_json::Error),
    /// The request is longer than the director reads: nothing was sent.
    #[error(
        "the request is {len} bytes, more than the {MAX_REQUEST_BYTES} the director reads: nothing was sent (restore a long -R input in several parts)"
    )]
    RequestTooLarge {
        /// Its length, newline included.
        len: usize,
    },
    /// Writing the request failed.
    #[error("sending to the director: {0}")]
    Send(std::io::Error),
    /// The director hung up before it answered.
    #[error("the director closed the connection without answering{}", if *.change { ": the outcome of the change is unknown; check with xvsadm -L -n" } else { "" })]
    Closed {
        /// Whether the request was a change (its outcome is unknown).
        change: bool,
    },
    /// An answer longer than [`MAX_REPLY_BYTES`]: not read.
    #[error(
        "the director's answer is longer than the protocol's {MAX_REPLY_BYTES} bytes and was not read; is this xvsadm from the director's release?"
    )]
    ReplyTooLong,
    /// No answer within the request's wait and the grace after it.
    #[error("no answer from the director within {waited_secs} s{}", if *.change { ": the outcome of the change is unknown (the director had taken it, so it may be in force); check with xvsadm -L -n before you repeat it" } else { "" })]
    NoAnswer {
        /// How long the client waited, in seconds.
        waited_secs: u64,
        /// Whether the request was a change (its outcome is unknown).
        change: bool,
    },
    /// Reading the answer failed.
    #[error("reading the director's answer: {0}")]
    Receive(std::io::Error),
    /// The answer is not a reply of this protocol.
    #[error("unreadable answer from the director: {0}")]
    Unreadable(serde_json::Error),
    /// A reply of the wrong kind.
    #[error("unexpected answer from the director: {0:?}")]
    Unexpected(Box<Reply>),
    /// A connection listing ended early: what arrived is incomplete.
    #[error("the connection listing broke off after {received} entries: {source}")]
    ListingBrokeOff {
        /// Entries received before it broke off.
        received: u64,
        /// Why.
        source: Box<ClientError>,
    },
    /// The listing's end counts other entries than arrived.
    #[error("the director listed {listed} connections but {received} arrived")]
    ListingCount {
        /// What the director says it sent.
        listed: u64,
        /// What arrived.
        received: u64,
    },
    /// The connection is out of step since an earlier failure (an answer
    /// not read whole, a listing stopped): this repeats why.
    #[error("{0}")]
    OutOfStep(String),
}

/// What to do about a connection refused for `e`.
fn connect_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            "; is xvs-director running (with this --control-socket)?"
        }
        std::io::ErrorKind::PermissionDenied => "; the control socket is root's: use sudo",
        _ => "",
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
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let writer = stream.try_clone().map_err(ClientError::Socket)?;
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
    pub fn set_wait(&mut self, wait: Duration) -> Result<(), ClientError> {
        let max = Duration::from_millis(u64::from(MAX_WAIT_MS));
        self.wait = wait.clamp(Duration::from_millis(1), max);
        self.reader
            .get_ref()
            .set_read_timeout(Some(self.answer_timeout()))
            .map_err(ClientError::Socket)
    }

    /// How much longer than the request's wait the client waits for an
    /// answer ([`ANSWER_GRACE_MS`] unless set here; tests shorten it).
    ///
    /// # Errors
    /// The socket's timeout could not be set.
    pub fn set_answer_grace(&mut self, grace: Duration) -> Result<(), ClientError> {
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
    pub fn send(&mut self, request: Request) -> Result<(), ClientError> {
        if let Some(why) = &self.broken {
            return Err(ClientError::OutOfStep(why.clone()));
        }
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            wait_ms: u32::try_from(self.wait.as_millis()).unwrap_or(MAX_WAIT_MS),
            request,
        };
        let mut line = serde_json::to_string(&envelope).map_err(ClientError::Encode)?;
        line.push('\n');
        if line.len() > MAX_REQUEST_BYTES {
            return Err(ClientError::RequestTooLarge { len: line.len() });
        }
        self.writer
            .write_all(line.as_bytes())
            .map_err(ClientError::Send)
    }

    /// Remembers `error` as the reason the connection is out of step.
    fn break_with(&mut self, error: ClientError) -> ClientError {
        self.broken = Some(error.to_string());
        error
    }

    /// The next reply line; `change` says whether an unanswered request
    /// may have changed the state (for the message).
    fn receive(&mut self, change: bool) -> Result<Reply, ClientError> {
        let line = match read_line_capped(&mut self.reader, MAX_REPLY_BYTES) {
            Ok(line) => line,
            Err(LineError::Closed) => return Err(ClientError::Closed { change }),
            Err(LineError::TooLong) => return Err(self.break_with(ClientError::ReplyTooLong)),
            Err(LineError::TimedOut) => {
                let waited_secs = self.answer_timeout().as_secs();
                return Err(self.break_with(ClientError::NoAnswer {
                    waited_secs,
                    change,
                }));
            }
            Err(LineError::Io(e)) => return Err(self.break_with(ClientError::Receive(e))),
        };
        serde_json::from_str(line.trim_end())
            .map_err(|e| self.break_with(ClientError::Unreadable(e)))
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    /// The connection broke, no answer came in time (the message says
    /// whether the outcome is unknown), or the reply was unreadable.
    pub fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let change = request.is_change();
        self.send(request)?;
        self.receive(change)
    }

    /// `-L -c`: hands `chunk` the connection entries as they arrive.
    /// Returns the listing's last reply: [`Reply::ConnectionsEnd`], or the
    /// director's refusal. `chunk`'s error type is the caller's (writing
    /// to a terminal, say); the client's own failures convert into it.
    ///
    /// # Errors
    /// The connection broke before the listing's end (it is incomplete),
    /// an answer was unreadable, or `chunk` failed (its error).
    pub fn connections<E>(
        &mut self,
        chunk: &mut dyn FnMut(&[ConnView]) -> Result<(), E>,
    ) -> Result<Reply, E>
    where
        E: From<ClientError> + std::fmt::Display,
    {
        self.send(Request::Connections)?;
        let mut received = 0u64;
        loop {
            let reply = self
                .receive(false)
                .map_err(|e| ClientError::ListingBrokeOff {
                    received,
                    source: Box::new(e),
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
                    return Err(ClientError::ListingCount {
                        listed: count,
                        received,
                    }
                    .into());
                }
                other @ Reply::Error(_) => return Ok(other),
                other => return Err(ClientError::Unexpected(Box::new(other)).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let err = ControlClient::connect(Path::new("/nonexistent/xvs-control.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach the director at /nonexistent/xvs-control.sock: No such file or directory (os error 2); is xvs-director running (with this --control-socket)?"
        );
        assert_eq!(
            ClientError::Closed { change: true }.to_string(),
            "the director closed the connection without answering: the outcome of the change is unknown; check with xvsadm -L -n"
        );
        assert_eq!(
            ClientError::Closed { change: false }.to_string(),
            "the director closed the connection without answering"
        );
        assert_eq!(
            ClientError::NoAnswer {
                waited_secs: 75,
                change: false
            }
            .to_string(),
            "no answer from the director within 75 s"
        );
        let broke = ClientError::ListingBrokeOff {
            received: 4096,
            source: Box::new(ClientError::Closed { change: false }),
        };
        assert_eq!(
            broke.to_string(),
            "the connection listing broke off after 4096 entries: the director closed the connection without answering"
        );
    }
}
