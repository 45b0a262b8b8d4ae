//! The AF_PACKET backend: for hosts (or drivers) without XDP.
//!
//! # Receive: TPACKET_V3, not pnet
//! The issue suggested pnet first. pnet's datalink channel does one
//! `poll()` + `recvfrom()` per frame into its own buffer (two syscalls and
//! a copy per frame, no batching), one `poll()` + `sendto()` per frame
//! sent, and its socket also receives what it sends. A TPACKET_V3
//! memory-mapped RX ring hands over whole blocks of frames: one `poll()`
//! wakes the worker for hundreds of frames, and reading them costs no
//! syscall. Its price is latency at low load: a block reaches user space
//! when it is full or when its retire timer fires, so a lone frame waits up
//! to [`PacketOptions::rx_retire_timeout_ms`] (1 ms by default).
//!
//! Why TPACKET_V3 and not pnet: measured, not assumed. The ignored test
//! `director/tests/afpacket_vs_pnet.rs`, run as root with
//! `cargo test -p xvs-director --release --test afpacket_vs_pnet -- --ignored --nocapture`,
//! floods 200 000 64-byte UDP frames through a veth pair (a raw socket with
//! `sendmmsg` on one CPU, the receiver pinned to the other, nft dropping the
//! frames after the taps as [`KernelFilter`] does) three times per variant,
//! alternating. On the 2-core development VM (Linux 6.18, 1-minute load
//! average 1.00 before and 0.92 after the run), min / median / max of 3:
//!
//! | | pnet 0.35 (default config, 100 ms read timeout) | `PacketIo` (default options) |
//! |---|---|---|
//! | receive: received, Mframes/s | 0.348 / 0.350 / 0.365 | 0.393 / 0.446 / 0.463 |
//! | receive: lost, % of sent | 6.8 / 8.1 / 9.0 | 0 / 0 / 0 |
//! | receive: receiver CPU, ns/frame | 2453 / 2568 / 2702 | 107 / 107 / 121 |
//! | echo: echoed, Mframes/s | 0.079 / 0.103 / 0.129 | 0.221 / 0.332 / 0.338 |
//! | echo: lost, % of sent | 67 / 71 / 73 | 12 / 23 / 32 |
//! | echo: echoer CPU, ns/frame | 5651 / 6757 / 7444 | 2288 / 2299 / 3422 |
//!
//! The sender managed only 0.38–0.46 Mframes/s (on veth it also pays for
//! the receiving side's kernel work), so receiving with `PacketIo` never
//! reached its limit: it kept up with every frame at ~0.11 µs of CPU per
//! frame, all of it in user space, where pnet spent ~2.5 µs (~89% of it in
//! the kernel) and still lost 7–9%. Echoing, both are bound by the
//! kernel's transmit path (on veth the `send()` also runs the peer's
//! receive; 96–98% of `PacketIo`'s echo time is system time), and
//! `PacketIo` echoes about three times as many frames as pnet. Under a concurrent
//! build (load average 4) the gap widened: pnet lost 58–64% receiving
//! (0.05 Mframes/s) while `PacketIo` still lost none.
//!
//! The ring is shared with the kernel and the pipeline rewrites frames in
//! place and may grow them (a tunnel header into the headroom, an ICMP
//! reply over the frame), so each frame is copied once into the worker's
//! buffer, behind [`HEADROOM`] bytes; the block goes back to the kernel as
//! soon as its last frame is copied.
//!
//! # Transmit: a TX ring, one `send()` per burst
//! Frames to send are copied into the interface's `PACKET_TX_RING` slots
//! during the burst and the ring is flushed with one zero-length `send()`
//! per interface at the end (`sendmmsg` would need the same copy plus an
//! iovec per frame). `PACKET_QDISC_BYPASS` skips the qdisc layer, as AF_XDP
//! does, and `PACKET_LOSS` makes the kernel skip a malformed slot instead
//! of stopping the ring. `PACKET_IGNORE_OUTGOING` keeps a worker from
//! receiving its own transmits (and the kernel's). Bypassing the qdisc
//! also bypasses the taps on transmit: `tcpdump` on the director's host
//! does not see what the director sends.
//!
//! # Several workers
//! With `queues` > 1, every worker's socket on an interface joins one
//! `PACKET_FANOUT_HASH` group, so each frame reaches one worker and a flow
//! always the same one. A socket joins with a drop-everything BPF filter
//! in place, removed once it is in the group, so that it never receives a
//! frame that another worker also receives.
//!
//! The `queue` of an [`IoInterface`] is informational here: the fanout
//! hash, not a NIC queue, decides which worker sees a frame.
//!
//! # The kernel's copy
//! A packet tap leaves the kernel its own frame: `PassToKernel` costs
//! nothing, and [`KernelFilter`] keeps the kernel from also handling what
//! the director handles. Interfaces must not coalesce frames (GRO/LRO,
//! and TSO on a local veth peer): a coalesced frame longer than
//! [`PacketOptions::max_frame`] is not given to the pipeline and is counted
//! by [`PacketIo::oversized_frames`].

#[path = "packet_filter.rs"]
mod filter;
#[path = "packet_ring.rs"]
mod ring;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use filter::{FilterInterface, FilterRule, KernelFilter, PRIORITY, TABLE, ruleset};
use ring::{BLOCK_STATUS, BlockCursor, Geometry, PKT_STATUS, TX_DATA_OFFSET};

use super::packet_sys as sys;
use super::{Burst, IoError, IoInterface, IoStats, RxFrame, WorkerIo};
use crate::pipeline::{HEADROOM, IfaceId, MAX_BURST, Verdict};

/// Makes frames sent on a raw packet socket skip the qdisc layer (and the
/// transmit taps), as the TX ring's sockets do: `PACKET_QDISC_BYPASS`. For
/// a load generator's own socket (`xvs-pktgen`).
///
/// # Errors
/// Not a packet socket, or the kernel refused the option.
pub fn set_qdisc_bypass(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    sys::set_packet_int(fd, libc::PACKET_QDISC_BYPASS, 1)
}

/// Sizes and sharing of one worker's sockets. Every worker of a director
/// must be given the same options (the fanout group ids come from them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOptions {
    /// Workers sharing each interface (one per queue); above 1 they form
    /// a fanout group per interface.
    pub queues: u32,
    /// Base of the fanout group ids: the group of an interface is
    /// `fanout_group + ifindex`. Defaults to one derived from the process
    /// id, so that two directors on one host do not share groups.
    pub fanout_group: u16,
    /// Bytes per RX block (a multiple of the page size).
    pub rx_block_size: u32,
    /// RX blocks per socket.
    pub rx_block_count: u32,
    /// Longest a partly filled block waits before it is handed over.
    pub rx_retire_timeout_ms: u32,
    /// TX slots per socket.
    pub tx_frames: u32,
    /// Largest frame received or sent, Ethernet header included: the
    /// interface MTU + 18 at least (2000 covers MTU 1500 with VLAN tags).
    pub max_frame: u32,
}

impl PacketOptions {
    /// Defaults for `queues` workers: 16 RX blocks of 256 KiB (4 MiB per
    /// interface and worker), 1024 TX slots, 1 ms retire timeout.
    #[must_use]
    pub fn new(queues: u32) -> Self {
        Self {
            queues: queues.max(1),
            fanout_group: (std::process::id() as u16).wrapping_mul(31),
            rx_block_size: 1 << 18,
            rx_block_count: 16,
            rx_retire_timeout_ms: 1,
            tx_frames: 1024,
            max_frame: 2000,
        }
    }
}

/// The operator's next step for an errno, if there is an obvious one.
fn hint(err: &io::Error, what: &'static str) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => ". Run as root or with CAP_NET_RAW",
        Some(libc::ENODEV | libc::ENXIO) => ". Check the interface name with `ip link`",
        Some(libc::EAFNOSUPPORT) => ". The kernel lacks AF_PACKET (CONFIG_PACKET)",
        Some(libc::ENOMEM) => ". Lower the ring sizes (rx_block_size, rx_block_count, tx_frames)",
        Some(libc::EINVAL | libc::ENOPROTOOPT) if what == SET_FANOUT => {
            ". Another program uses this fanout group id with other settings: choose another fanout_group"
        }
        Some(libc::EINVAL | libc::ENOPROTOOPT) if what == SET_IGNORE_OUTGOING => {
            ". PACKET_IGNORE_OUTGOING needs Linux 4.20 or later"
        }
        Some(libc::EINVAL | libc::ENOPROTOOPT) if what == SET_VERSION || what == SET_TX_RING => {
            ". TPACKET_V3 with a TX ring needs Linux 4.11 or later"
        }
        _ => "",
    }
}

const LOOKUP: &str = "looking up the interface";
const SET_VERSION: &str = "setting PACKET_VERSION to TPACKET_V3";
const SET_TX_RING: &str = "setting up the TX ring (PACKET_TX_RING)";
const SET_FANOUT: &str = "joining the fanout group (PACKET_FANOUT)";
const SET_IGNORE_OUTGOING: &str = "setting PACKET_IGNORE_OUTGOING";

fn os_error(what: &'static str, iface: &str, source: io::Error) -> IoError {
    IoError::Os {
        what,
        iface: iface.to_owned(),
        hint: hint(&source, what),
        source,
    }
}

/// One interface's socket, its rings and where this worker is in them.
#[derive(Debug)]
struct PacketSocket {
    // Field order is drop order: unmap the rings before closing the socket.
    ring: sys::RingMap,
    fd: OwnedFd,
    id: IfaceId,
    name: String,
    geometry: Geometry,
    /// The RX block the kernel fills next (and that this worker reads).
    rx_block: usize,
    /// Set while this worker is walking `rx_block`.
    rx_cursor: Option<BlockCursor>,
    /// The next TX slot to fill.
    tx_head: usize,
    /// Slots were marked for sending since the last successful flush.
    tx_pending: bool,
}

impl PacketSocket {
    fn open(
        iface: &IoInterface,
        options: &PacketOptions,
        geometry: Geometry,
    ) -> Result<Self, IoError> {
        let name = iface.name.as_str();
        let ifindex = sys::interface_index(name).map_err(|e| os_error(LOOKUP, name, e))?;
        let fd =
            sys::packet_socket().map_err(|e| os_error("opening an AF_PACKET socket", name, e))?;
        let sock = fd.as_fd();
        let fanout = options.queues > 1;
        if fanout {
            sys::attach_drop_all_filter(sock)
                .map_err(|e| os_error("attaching the start-up filter", name, e))?;
        }
        sys::set_packet_int(
            sock,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V3 as u32,
        )
        .map_err(|e| os_error(SET_VERSION, name, e))?;
        sys::set_packet_int(sock, libc::PACKET_LOSS, 1)
            .map_err(|e| os_error("setting PACKET_LOSS", name, e))?;
        sys::set_option(
            sock,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &geometry.rx.to_req3(),
        )
        .map_err(|e| os_error("setting up the RX ring (PACKET_RX_RING)", name, e))?;
        sys::set_option(
            sock,
            libc::SOL_PACKET,
            libc::PACKET_TX_RING,
            &geometry.tx.to_req3(),
        )
        .map_err(|e| os_error(SET_TX_RING, name, e))?;
        let ring = sys::RingMap::map(sock, geometry.rx_len() + geometry.tx_len())
            .map_err(|e| os_error("mapping the rings", name, e))?;
        sys::set_packet_int(sock, libc::PACKET_QDISC_BYPASS, 1)
            .map_err(|e| os_error("setting PACKET_QDISC_BYPASS", name, e))?;
        sys::set_packet_int(sock, libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(|e| os_error(SET_IGNORE_OUTGOING, name, e))?;
        sys::bind_interface(sock, ifindex)
            .map_err(|e| os_error("binding to the interface", name, e))?;
        if fanout {
            let id = u32::from(options.fanout_group.wrapping_add(ifindex as u16));
            // A fanout group receives through its own hook, which ignores
            // the socket's PACKET_IGNORE_OUTGOING: the group needs the flag.
            let kind = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            sys::set_packet_int(sock, libc::PACKET_FANOUT, id | (kind << 16))
                .map_err(|e| os_error(SET_FANOUT, name, e))?;
            sys::detach_filter(sock)
                .map_err(|e| os_error("removing the start-up filter", name, e))?;
        }
        Ok(Self {
            ring,
            fd,
            id: iface.id,
            name: iface.name.clone(),
            geometry,
            rx_block: 0,
            rx_cursor: None,
            tx_head: 0,
            tx_pending: false,
        })
    }

    fn rx_block_size(&self) -> usize {
        self.geometry.rx.tp_block_size as usize
    }

    /// The current RX block's status word.
    fn rx_status(&self) -> &AtomicU32 {
        let offset = self.rx_block * self.rx_block_size() + BLOCK_STATUS;
        // SAFETY: `offset` lies inside the RX ring (rx_block < block count)
        // and is 4-aligned (blocks are page-aligned, BLOCK_STATUS is 8);
        // the kernel writes this word concurrently, hence the atomic view.
        unsafe { AtomicU32::from_ptr(self.ring.base().add(offset).cast()) }
    }

    /// The current RX block as bytes, for a lifetime the caller picks so
    /// that the socket's other fields stay usable while it is read.
    ///
    /// # Safety
    /// For as long as the returned slice lives, the block must belong to
    /// user space (its status has `TP_STATUS_USER`, read with acquire
    /// ordering; only then does the kernel leave it alone) and the socket
    /// must not be dropped (the mapping must stay).
    unsafe fn rx_bytes<'a>(&self) -> &'a [u8] {
        let size = self.rx_block_size();
        // SAFETY: the block lies inside the mapping; the caller guarantees
        // that the kernel does not write it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ring.base().add(self.rx_block * size), size) }
    }

    /// Gives the current block back to the kernel and moves to the next.
    fn release_block(&mut self) {
        self.rx_status()
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx_cursor = None;
        self.rx_block = (self.rx_block + 1) % self.geometry.rx.tp_block_nr as usize;
    }

    /// True if a block is waiting (or being read) on this socket.
    fn rx_ready(&self) -> bool {
        self.rx_cursor.is_some()
            || self.rx_status().load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// True if a frame of `len` bytes fits a TX slot.
    fn fits(&self, len: usize) -> bool {
        TX_DATA_OFFSET + len <= self.geometry.tx.tp_frame_size as usize
    }

    /// Copies `frame` into the next TX slot; false if the ring is full or
    /// the frame does not fit a slot.
    fn enqueue(&mut self, frame: &[u8]) -> bool {
        if !self.fits(frame.len()) {
            return false;
        }
        let slot_offset = self.geometry.rx_len() + self.geometry.tx_slot_offset(self.tx_head);
        // SAFETY: the slot lies inside the TX ring, right after the RX ring
        // in the mapping (tx_head < tp_frame_nr).
        let slot = unsafe { self.ring.base().add(slot_offset) };
        // SAFETY: the status word is inside the slot and 4-aligned (slots
        // are 16-aligned); the kernel writes it concurrently.
        let status = unsafe { AtomicU32::from_ptr(slot.add(PKT_STATUS).cast()) };
        if status.load(Ordering::Acquire) != libc::TP_STATUS_AVAILABLE {
            return false;
        }
        // SAFETY: an AVAILABLE slot belongs to user space until it is
        // marked SEND_REQUEST below; the frame fits behind the header
        // (checked above), and the header words are aligned (u32 at 0, 12
        // and 16 of a 16-aligned slot). `frame` is the worker's buffer,
        // which never overlaps the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(TX_DATA_OFFSET), frame.len());
            let header = slot.cast::<libc::tpacket3_hdr>();
            (&raw mut (*header).tp_next_offset).write(0);
            (&raw mut (*header).tp_snaplen).write(frame.len() as u32);
            (&raw mut (*header).tp_len).write(frame.len() as u32);
        }
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx_head = (self.tx_head + 1) % self.geometry.tx.tp_frame_nr as usize;
        self.tx_pending = true;
        true
    }

    /// Asks the kernel to send the marked slots.
    fn flush(&mut self) -> Result<(), IoError> {
        if !self.tx_pending {
            return Ok(());
        }
        match sys::kick_tx(self.fd.as_fd()) {
            Ok(()) => {
                self.tx_pending = false;
                Ok(())
            }
            // The slots stay marked and go with the next flush.
            Err(e) if is_transient(&e) => Ok(()),
            Err(e) => Err(os_error("sending from the TX ring", &self.name, e)),
        }
    }
}

/// Errors after which a socket is still usable: a full device queue, a
/// signal, a link that is down for now.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR | libc::ENETDOWN)
    )
}

/// One worker's AF_PACKET sockets, one per interface.
#[derive(Debug)]
pub struct PacketIo {
    sockets: Vec<PacketSocket>,
    /// Socket index by `IfaceId.0`; `usize::MAX` where none.
    route: Vec<usize>,
    /// The worker's frame buffers, one per frame of a burst: headroom,
    /// frame, room to grow.
    bufs: Vec<Box<[u8]>>,
    max_frame: usize,
    queues: u32,
    /// The socket to read first in the next burst (fairness).
    first: usize,
    stats: IoStats,
    oversized: u64,
    corrupt_blocks: u64,
    pollfds: Vec<libc::pollfd>,
}

impl PacketIo {
    /// Opens one socket per interface, with rings sized by `options`.
    ///
    /// # Errors
    /// An interface that does not exist, missing privileges ("run as root
    /// or with CAP_NET_RAW"), ring sizes the kernel refuses, a fanout group
    /// taken by another program.
    pub fn open(interfaces: &[IoInterface], options: &PacketOptions) -> Result<Self, IoError> {
        if interfaces.is_empty() {
            return Err(IoError::Other("AF_PACKET: no interface to open".to_owned()));
        }
        let geometry = Geometry::new(
            options.rx_block_size,
            options.rx_block_count,
            options.rx_retire_timeout_ms,
            options.tx_frames,
            options.max_frame,
            sys::page_size(),
        )
        .map_err(|e| IoError::Other(format!("AF_PACKET options: {e}")))?;
        let mut route = Vec::new();
        let mut sockets = Vec::with_capacity(interfaces.len());
        for iface in interfaces {
            let slot = usize::from(iface.id.0);
            if route.len() <= slot {
                route.resize(slot + 1, usize::MAX);
            }
            if route[slot] != usize::MAX {
                return Err(IoError::Other(format!(
                    "AF_PACKET: interface {} (id {}) is listed twice",
                    iface.name, iface.id.0
                )));
            }
            route[slot] = sockets.len();
            sockets.push(PacketSocket::open(iface, options, geometry)?);
        }
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let max_frame = options.max_frame as usize;
        Ok(Self {
            sockets,
            route,
            bufs: (0..MAX_BURST)
                .map(|_| vec![0; HEADROOM + max_frame.max(2048)].into_boxed_slice())
                .collect(),
            max_frame,
            queues: options.queues,
            first: 0,
            stats: IoStats::default(),
            oversized: 0,
            corrupt_blocks: 0,
            pollfds,
        })
    }

    /// Frames not given to the pipeline because they were longer than
    /// `max_frame` or truncated by the ring (coalesced by GRO/LRO/TSO).
    #[must_use]
    pub fn oversized_frames(&self) -> u64 {
        self.oversized
    }

    /// RX blocks whose headers pointed outside the block (never expected
    /// from a kernel; skipped rather than trusted).
    #[must_use]
    pub fn corrupt_blocks(&self) -> u64 {
        self.corrupt_blocks
    }

    /// Adds the kernel's receive drops (ring full) to the counters.
    fn collect_kernel_drops(&mut self) {
        for s in &self.sockets {
            // Statistics only: a failure here must not stop the data path.
            if let Ok(st) = sys::packet_stats(s.fd.as_fd()) {
                self.stats.kernel_rx_dropped += u64::from(st.tp_drops);
            }
        }
    }

    /// Sends `buf[start..start + len]` out of `iface`, counting the outcome.
    fn transmit(
        &mut self,
        buf: usize,
        iface: IfaceId,
        start: usize,
        len: usize,
    ) -> Result<(), IoError> {
        let frame = start
            .checked_add(len)
            .and_then(|end| self.bufs.get(buf)?.get(start..end));
        let Some(frame) = frame else {
            self.stats.tx_dropped += 1;
            return Ok(());
        };
        send_on(
            &mut self.sockets,
            &self.route,
            &mut self.stats,
            iface,
            frame,
        )
    }

    /// Queues a copy of `frame` for `iface` (a frame another backend
    /// received); it leaves with the next flush.
    ///
    /// # Errors
    /// The socket failed for good.
    pub fn send_copy(&mut self, iface: IfaceId, frame: &[u8]) -> Result<(), IoError> {
        send_on(
            &mut self.sockets,
            &self.route,
            &mut self.stats,
            iface,
            frame,
        )
    }

    /// Hands every queued transmit to the kernel.
    ///
    /// # Errors
    /// A socket failed for good.
    pub fn flush(&mut self) -> Result<(), IoError> {
        for socket in &mut self.sockets {
            socket.flush()?;
        }
        Ok(())
    }

    /// True when a frame waits in some receive ring.
    #[must_use]
    pub fn rx_ready(&self) -> bool {
        self.sockets.iter().any(PacketSocket::rx_ready)
    }

    /// The sockets' descriptors, for a caller that polls them with others.
    #[must_use]
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.pollfds.iter().map(|p| p.fd).collect()
    }

    /// Reads up to `budget` frames from socket `index` (at most
    /// [`MAX_BURST`]), lends them to `decide` as one burst and carries out
    /// the verdicts.
    fn receive(
        &mut self,
        index: usize,
        budget: usize,
        decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
    ) -> Result<usize, IoError> {
        let budget = budget.min(MAX_BURST);
        let mut received = 0;
        let mut lens = [0usize; MAX_BURST];
        let mut taken = 0;
        let mut losing = false;
        while received < budget {
            let socket = &mut self.sockets[index];
            let mut cursor = match socket.rx_cursor {
                Some(cursor) => cursor,
                None => {
                    let status = socket.rx_status().load(Ordering::Acquire);
                    if status & libc::TP_STATUS_USER == 0 {
                        break;
                    }
                    losing |= status & libc::TP_STATUS_LOSING != 0;
                    // SAFETY: the acquire load above saw TP_STATUS_USER: the
                    // block is ours until `release_block`.
                    BlockCursor::open(unsafe { socket.rx_bytes() })
                }
            };
            // SAFETY: the block belongs to user space (a cursor exists only
            // for such a block, until `release_block`); the slice dies
            // before the block is released and the sockets outlive it.
            let block = unsafe { socket.rx_bytes() };
            let Some(frame) = cursor.next(block) else {
                if cursor.corrupt {
                    self.corrupt_blocks += 1;
                }
                socket.release_block();
                continue;
            };
            socket.rx_cursor = Some(cursor);
            received += 1;
            if frame.len > self.max_frame || frame.len < frame.wire_len {
                self.oversized += 1;
                continue;
            }
            self.bufs[taken][HEADROOM..HEADROOM + frame.len]
                .copy_from_slice(&block[frame.start..frame.start + frame.len]);
            lens[taken] = frame.len;
            taken += 1;
        }
        if taken > 0 {
            let mut verdicts = [Verdict::PassToKernel; MAX_BURST];
            decide(
                &mut PacketBurst {
                    bufs: &mut self.bufs[..taken],
                    lens: &lens[..taken],
                    rx: self.sockets[index].id,
                },
                &mut verdicts[..taken],
            );
            for (i, verdict) in verdicts[..taken].iter().enumerate() {
                if let Verdict::Transmit { iface, start, len } = *verdict {
                    self.transmit(i, iface, start, len)?;
                }
            }
        }
        if losing {
            self.collect_kernel_drops();
        }
        Ok(received)
    }
}

/// Sends `frame` out of `iface` on the socket that serves it, counting the
/// outcome; a full ring is flushed once before the frame is given up.
fn send_on(
    sockets: &mut [PacketSocket],
    route: &[usize],
    stats: &mut IoStats,
    iface: IfaceId,
    frame: &[u8],
) -> Result<(), IoError> {
    let index = route
        .get(usize::from(iface.0))
        .copied()
        .filter(|&i| i != usize::MAX);
    let Some(socket) = index.and_then(|i| sockets.get_mut(i)) else {
        stats.tx_dropped += 1;
        return Ok(());
    };
    if !socket.fits(frame.len()) {
        stats.tx_dropped += 1;
        return Ok(());
    }
    if socket.enqueue(frame) {
        stats.tx_frames += 1;
        return Ok(());
    }
    // Full: send what is queued, then try once more (the kernel frees
    // slots as their frames leave).
    if socket.tx_pending {
        socket.flush()?;
        if socket.enqueue(frame) {
            stats.tx_frames += 1;
            return Ok(());
        }
    }
    stats.tx_dropped += 1;
    Ok(())
}

/// Frames copied out of the rx ring, lent to the pipeline as one burst.
struct PacketBurst<'a> {
    bufs: &'a mut [Box<[u8]>],
    lens: &'a [usize],
    rx: IfaceId,
}

impl Burst for PacketBurst<'_> {
    fn len(&self) -> usize {
        self.lens.len()
    }

    fn frame(&mut self, i: usize) -> RxFrame<'_> {
        RxFrame {
            buf: &mut self.bufs[i],
            start: HEADROOM,
            len: self.lens[i],
            rx: self.rx,
        }
    }
}

impl WorkerIo for PacketIo {
    fn run_burst(
        &mut self,
        burst: usize,
        decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
    ) -> Result<usize, IoError> {
        let count = self.sockets.len();
        let mut received = 0;
        for k in 0..count {
            if received >= burst {
                break;
            }
            let index = (self.first + k) % count;
            received += self.receive(index, burst - received, decide)?;
        }
        self.first = (self.first + 1) % count;
        for socket in &mut self.sockets {
            socket.flush()?;
        }
        self.stats.rx_frames += received as u64;
        Ok(received)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        for socket in &mut self.sockets {
            socket.flush()?;
        }
        if self.sockets.iter().any(PacketSocket::rx_ready) {
            return Ok(());
        }
        // About to sleep: a good moment for a syscall per socket.
        self.collect_kernel_drops();
        let ms = i32::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        self.stats.sleeps += 1;
        for pfd in &mut self.pollfds {
            pfd.revents = 0;
        }
        match sys::poll(&mut self.pollfds, ms) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => return Ok(()),
            Err(e) => {
                let iface = self
                    .sockets
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>();
                return Err(os_error("waiting for frames (poll)", &iface.join(", "), e));
            }
        }
        for (pfd, socket) in self.pollfds.iter().zip(&self.sockets) {
            if pfd.revents & libc::POLLNVAL != 0 {
                return Err(IoError::Other(format!(
                    "AF_PACKET socket on {} was closed under the worker",
                    socket.name
                )));
            }
            if pfd.revents & libc::POLLERR != 0 {
                // The kernel posts ENETDOWN when the link goes down; the
                // socket keeps working when it comes back.
                match sys::take_socket_error(socket.fd.as_fd()) {
                    Ok(0 | libc::ENETDOWN) => {}
                    Ok(errno) => {
                        return Err(os_error(
                            "receiving",
                            &socket.name,
                            io::Error::from_raw_os_error(errno),
                        ));
                    }
                    Err(e) => return Err(os_error("reading the socket error", &socket.name, e)),
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> IoStats {
        self.stats
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.sockets.iter().map(|s| s.name.as_str()).collect();
        let sharing = if self.queues > 1 {
            format!("fanout hash over {} queues", self.queues)
        } else {
            "one queue (no fanout)".to_owned()
        };
        let g = self.sockets.first().map(|s| s.geometry);
        let rings = g.map_or_else(String::new, |g| {
            format!(
                ", rx {}x{} KiB blocks, tx {} slots",
                g.rx.tp_block_nr,
                g.rx.tp_block_size / 1024,
                g.tx.tp_frame_nr
            )
        });
        format!(
            "AF_PACKET TPACKET_V3, {sharing}{rings}, on {}",
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, id: u16) -> IoInterface {
        IoInterface {
            id: IfaceId(id),
            name: name.to_owned(),
            queue: 0,
        }
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let err = PacketIo::open(&[iface("xvsT-none0", 0)], &PacketOptions::new(1))
            .expect_err("no such interface");
        let text = err.to_string();
        assert!(text.contains("xvsT-none0"), "{text}");
        assert!(text.contains("ip link"), "{text}");
    }

    #[test]
    fn no_interfaces_is_an_error() {
        assert!(PacketIo::open(&[], &PacketOptions::new(1)).is_err());
    }

    #[test]
    fn bad_ring_options_are_refused_before_any_socket() {
        let options = PacketOptions {
            rx_block_size: 1000,
            ..PacketOptions::new(1)
        };
        let err = PacketIo::open(&[iface("lo", 0)], &options).expect_err("bad block size");
        assert!(err.to_string().contains("rx_block_size"), "{err}");
    }

    #[test]
    fn hints_tell_the_operator_what_to_do() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        assert!(hint(&eperm, "opening an AF_PACKET socket").contains("CAP_NET_RAW"));
        let e = os_error("opening an AF_PACKET socket", "eth0", eperm);
        let text = e.to_string();
        assert!(
            text.starts_with("opening an AF_PACKET socket on eth0: "),
            "{text}"
        );
        assert!(
            text.ends_with(". Run as root or with CAP_NET_RAW"),
            "{text}"
        );
        let einval = io::Error::from_raw_os_error(libc::EINVAL);
        assert!(hint(&einval, SET_FANOUT).contains("fanout_group"));
        assert!(hint(&einval, SET_IGNORE_OUTGOING).contains("4.20"));
        assert_eq!(hint(&einval, "binding to the interface"), "");
    }

    #[test]
    fn transient_errors_are_told_from_fatal_ones() {
        for errno in [libc::EAGAIN, libc::ENOBUFS, libc::EINTR, libc::ENETDOWN] {
            assert!(
                is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::EBADF, libc::ENXIO, libc::EFAULT] {
            assert!(
                !is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }
}
