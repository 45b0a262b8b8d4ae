//! Moving frames between interfaces and the pipeline. Everything that
//! touches the kernel's packet sockets lives here — the HA part's too: its
//! VRRP advert socket ([`vrrp_socket`]) and the sender of its takeover
//! announcements ([`announce`]) — and so does every `unsafe` block of the
//! workspace (STYLE.md).
//!
//! # The contract
//! A worker owns one [`WorkerIo`]: its sockets on every interface the
//! director drives, whatever the backend — on AF_XDP one per receive queue
//! it serves there ([`queues`] says which, and why every queue is served). The worker loop
//! (the `run` module) asks it for a burst of frames; the backend hands each
//! frame to the pipeline in a buffer it owns, with [`crate::pipeline::HEADROOM`]
//! bytes free in front of the frame, and carries out the verdict:
//! - `Transmit { iface, start, len }`: send `buf[start..start + len]` out of
//!   `iface` — without a copy where the backend allows it (AF_XDP shares one
//!   UMEM between the interfaces of a worker).
//! - `PassToKernel`: the kernel should see the frame as if we were not
//!   there. AF_PACKET taps a copy, so the kernel already has it; AF_XDP's
//!   program redirects only what the pipeline handles, and a frame it
//!   redirected cannot be given back, so it is counted
//!   ([`IoStats::pass_unreachable`]) and released.
//! - `Drop`: the frame's buffer is released.
//!
//! Transmits are queued during the burst and flushed at its end: one
//! syscall per burst and interface, not per frame.

pub mod afxdp;
pub mod announce;
pub mod livegen;
pub mod mem;
pub mod mixed;
pub mod packet;
pub(crate) mod packet_sys;
pub mod queues;
pub mod sync_socket;
pub mod vrrp_socket;
pub mod xdp;

use std::time::Duration;

use crate::pipeline::{IfaceId, Verdict};

pub use crate::pipeline::{Burst, RxFrame};

/// What the I/O layer itself counts, beside the pipeline's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the kernel for transmission.
    pub tx_frames: u64,
    /// Transmits that found no room (ring full, no free buffer): dropped.
    pub tx_dropped: u64,
    /// `PassToKernel` verdicts the backend could not carry out.
    pub pass_unreachable: u64,
    /// Times the worker slept waiting for frames.
    pub sleeps: u64,
    /// Receive drops the kernel reports (ring full, no fill buffers).
    pub kernel_rx_dropped: u64,
    /// Reads of the kernel's socket statistics that failed (the last
    /// value read then stands in for `kernel_rx_dropped`).
    pub stats_read_failures: u64,
}

impl std::ops::AddAssign for IoStats {
    fn add_assign(&mut self, o: Self) {
        self.rx_frames += o.rx_frames;
        self.tx_frames += o.tx_frames;
        self.tx_dropped += o.tx_dropped;
        self.pass_unreachable += o.pass_unreachable;
        self.sleeps += o.sleeps;
        self.kernel_rx_dropped += o.kernel_rx_dropped;
        self.stats_read_failures += o.stats_read_failures;
    }
}

/// How often a kernel counter that keeps failing to read is logged again.
pub const READ_FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// A counter read from the kernel that can fail (a BPF map lookup, a
/// socket option). A failed read is counted, and the last value read stands
/// in: a counter never goes back and never vanishes from the metrics, so a
/// graph shows a flat line rather than a reset or a gap. The failure is
/// logged the first time, then at most once per [`READ_FAILURE_LOG_EVERY`]
/// with the count so far — never every tick.
#[derive(Debug, Clone)]
pub struct KernelCounter<T> {
    what: &'static str,
    last: Option<T>,
    failures: u64,
    logged_at: Option<std::time::Instant>,
}

impl<T: Clone> KernelCounter<T> {
    /// A counter named `what` in the log ("the XDP program's counters").
    #[must_use]
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            last: None,
            failures: 0,
            logged_at: None,
        }
    }

    /// Takes one read's `result` at `now`: its value, or after a failure
    /// the last value read (`None` before the first success).
    pub fn read<E: std::fmt::Display>(
        &mut self,
        result: Result<T, E>,
        now: std::time::Instant,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.last = Some(value.clone());
                Some(value)
            }
            Err(e) => {
                if self.failed(now) {
                    log::warn!(
                        "reading {}: {e} ({} failed reads so far; the last value read stands in)",
                        self.what,
                        self.failures
                    );
                }
                self.last.clone()
            }
        }
    }

    /// Counts a failure; true when it is to be logged.
    fn failed(&mut self, now: std::time::Instant) -> bool {
        self.failures += 1;
        let due = self
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= READ_FAILURE_LOG_EVERY);
        if due {
            self.logged_at = Some(now);
        }
        due
    }

    /// Failed reads so far.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// One interface as a backend sees it.
#[derive(Debug, Clone)]
pub struct IoInterface {
    /// The pipeline's number for it.
    pub id: IfaceId,
    /// Kernel name.
    pub name: String,
    /// The queue this worker serves.
    pub queue: u32,
}

/// Why the I/O layer failed. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A system call failed.
    #[error("{what} on {iface}: {source}{hint}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// Which interface.
        iface: String,
        /// The kernel's answer.
        source: std::io::Error,
        /// What the operator can do, if anything (starts with ". ").
        hint: &'static str,
    },
    /// Anything else, already phrased for the operator.
    #[error("{0}")]
    Other(String),
}

impl IoError {
    /// A failed system call: what was being done, on which interface, the
    /// kernel's answer, and a hint (empty, or starting with ". ").
    #[must_use]
    pub fn os(what: &'static str, iface: &str, source: std::io::Error, hint: &'static str) -> Self {
        Self::Os {
            what,
            iface: iface.to_owned(),
            source,
            hint,
        }
    }
}

/// One worker's sockets on every interface, whatever the backend.
pub trait WorkerIo: Send {
    /// Receives up to `burst` frames from the interfaces and hands them to
    /// `decide` as one [`Burst`] per interface, with a verdict slot per
    /// frame (pre-set to `Drop`); carries out the verdicts and flushes the
    /// transmits. Returns how many frames were received (0: nothing was
    /// waiting).
    ///
    /// # Errors
    /// A socket that failed for good; transient conditions (ring full,
    /// `EAGAIN`, `ENOBUFS`) are counted instead.
    fn run_burst(
        &mut self,
        burst: usize,
        decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
    ) -> Result<usize, IoError>;

    /// Sleeps until a frame may be waiting on any interface, or `timeout`
    /// has passed. Also completes transmits that wait for a wakeup.
    ///
    /// # Errors
    /// `poll()` failed for a reason other than a signal.
    fn wait(&mut self, timeout: Duration) -> Result<(), IoError>;

    /// The I/O layer's counters.
    fn stats(&self) -> IoStats;

    /// A one-line description for the start-up log ("AF_XDP copy mode,
    /// queue 0 on eth0, eth1").
    fn describe(&self) -> String;
}

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// No such CPU, or the kernel refused.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other(format!("CPU {cpu} is out of range")));
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (checked), so CPU_SET stays in the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sleeps until one of `fds` is readable or `timeout` passes; a signal
/// only cuts the sleep short.
///
/// # Errors
/// `poll()` failed for another reason.
pub fn poll_readable(fds: &[std::os::fd::RawFd], timeout: Duration) -> Result<(), IoError> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let nfds = libc::nfds_t::try_from(pollfds.len()).unwrap_or(0);
    // SAFETY: `pollfds` is a live array of `nfds` pollfd structs.
    let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), nfds, ms) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(IoError::Os {
                what: "waiting for frames (poll)",
                iface: "the worker's sockets".to_owned(),
                source: err,
                hint: "",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_failed_read_is_counted_keeps_the_last_value_and_is_logged_once_a_minute() {
        let mut c = KernelCounter::new("the XDP program's counters");
        let t0 = Instant::now();
        let refused = || Err::<u64, _>(std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(c.read(refused(), t0), None, "nothing read yet");
        assert_eq!(c.read(Ok::<u64, std::io::Error>(40), t0), Some(40));
        assert_eq!(c.read(refused(), t0), Some(40), "the metric vanished");
        assert_eq!(c.failures(), 2);
        // Logged: the first failure, then once per minute, whatever the
        // number of ticks in between.
        let mut c = KernelCounter::<u64>::new("x");
        let logged: Vec<bool> = [0, 1, 30, 59, 60, 61, 125]
            .iter()
            .map(|&s| c.failed(t0 + Duration::from_secs(s)))
            .collect();
        assert_eq!(logged, [true, false, false, false, true, false, true]);
        assert_eq!(c.failures(), 7);
    }
}
