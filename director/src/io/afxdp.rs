//! The AF_XDP backend (xsk-rs): one UMEM per worker, shared by that
//! worker's sockets on every interface, so a frame received on the client
//! side leaves by the server side from the same buffer — no copy.
//!
//! # Frames
//! Every UMEM frame is 4 KiB. The kernel writes a received packet 256 bytes
//! (`XDP_PACKET_HEADROOM`) into its frame; the pipeline gets the packet with
//! [`HEADROOM`] bytes of that space in front of it, and the rest of the
//! frame behind it, to grow the packet (an ICMP reply) or prepend an outer
//! header (VS/TUN). xsk-rs transmits a frame from the address it was
//! received at, so a packet whose start moved back is shifted forward to
//! that address before transmission (only tunnelled packets; a `memmove`
//! of one packet).
//!
//! Frames are owned by exactly one of: the free list, a fill ring, an rx
//! ring, this burst, a tx ring, a completion ring. Received frames go back
//! to the free list when dropped, or to a tx ring and then, once sent,
//! through the completion ring; fill rings are topped up from the free
//! list after every burst.
//!
//! # Several queues
//! A worker may serve several receive queues of an interface (the
//! director serves every queue, and there may be more queues than
//! workers: [`super::queues`]). Each (interface, queue) gets its own
//! socket, with its own fill and completion rings, on the worker's one
//! UMEM; a frame leaves an interface through the first of the worker's
//! sockets there. The UMEM is shared by all of them, so the rings shrink
//! as sockets are added ([`AfXdpOptions`]) rather than the UMEM growing
//! without bound.
//!
//! # Modes
//! Zero-copy is tried first when allowed; drivers without it (veth) refuse
//! the bind and the socket is made in copy mode, which [`AfXdpIo::describe`]
//! reports. `need_wakeup` is always asked for: the kernel is kicked
//! (`sendto`) only when it says it needs to be.

use std::io::{self, Write};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::time::Duration;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::xdp::XdpProgram;
use super::{Burst, IoError, IoInterface, IoStats, KernelCounter, RxFrame, WorkerIo};
use crate::pipeline::{DropReason, HEADROOM, IfaceId, MAX_BURST, Verdict};

/// UMEM frame size.
const FRAME_SIZE: u32 = 4096;

/// How hard to try for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy where the driver has it, copy mode otherwise.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// Sizes of one worker's AF_XDP resources.
#[derive(Debug, Clone, Copy)]
pub struct AfXdpOptions {
    /// UMEM frames per worker: grown when the worker has so many sockets
    /// that even rings of [`MIN_RING`] entries would not all fit.
    pub frames: u32,
    /// Entries of each rx, tx, fill and completion ring (a power of two),
    /// for a worker with two sockets; halved (down to [`MIN_RING`]) while
    /// the rx and fill rings of all its sockets would hold more than
    /// `frames`.
    pub ring_size: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        Self {
            frames: 8192,
            ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

/// The smallest ring a socket gets, however many queues its worker serves.
pub const MIN_RING: u32 = 64;

/// Ring entries per socket and UMEM frames for a worker with `sockets`
/// sockets. A socket's received frames sit in its fill ring or its rx ring,
/// so the UMEM must hold both rings of every socket, with the free list
/// and the tx rings taking what the rx rings do not hold at the moment.
fn socket_sizes(options: &AfXdpOptions, sockets: u32) -> (u32, u32) {
    let sockets = u64::from(sockets.max(1));
    let frames = u64::from(options.frames);
    let mut ring = options.ring_size.max(MIN_RING);
    while ring > MIN_RING && 2 * u64::from(ring) * sockets > frames {
        ring /= 2;
    }
    let needed = 2 * u64::from(ring) * sockets;
    let frames = u32::try_from(frames.max(needed)).unwrap_or(u32::MAX);
    (ring, frames)
}

/// One (interface, queue)'s socket and rings.
struct Port {
    id: IfaceId,
    name: String,
    queue: u32,
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    comp: CompQueue,
    /// Frames to transmit on this port at the end of the burst.
    pending: Vec<FrameDesc>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// One worker's AF_XDP sockets on every interface it serves.
#[derive(Debug)]
pub struct AfXdpIo {
    umem: Umem,
    ports: Vec<Port>,
    free: Vec<FrameDesc>,
    batch: Vec<FrameDesc>,
    /// Bytes from a packet's first byte to the end of its frame.
    data_room: usize,
    zero_copy: bool,
    /// Entries of each ring.
    ring_size: usize,
    stats: IoStats,
    /// Each port's kernel receive drops, as last read (`stats` takes
    /// `&self`: read on the worker's thread only).
    kernel_dropped: std::cell::RefCell<Vec<KernelCounter<u64>>>,
}

fn config_error(what: impl std::fmt::Display) -> IoError {
    IoError::Other(format!("AF_XDP configuration: {what}"))
}

impl AfXdpIo {
    /// Opens one socket per entry of `interfaces` (an interface appears
    /// once per queue this worker serves on it), all on one UMEM, and
    /// registers each with `program` so that the frames it redirects on
    /// that queue reach this worker.
    ///
    /// # Errors
    /// The kernel refused the UMEM or a socket (no AF_XDP support, no
    /// privileges, zero-copy demanded but unsupported).
    pub fn open(
        interfaces: &[IoInterface],
        options: AfXdpOptions,
        program: &mut XdpProgram,
    ) -> Result<Self, IoError> {
        if interfaces.is_empty() {
            return Err(config_error("a worker needs at least one interface"));
        }
        let sockets = u32::try_from(interfaces.len()).unwrap_or(u32::MAX);
        let (ring_size, frames) = socket_sizes(&options, sockets);
        let ring = QueueSize::new(ring_size).map_err(config_error)?;
        let umem_config = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(config_error)?)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .frame_headroom(0)
            .build()
            .map_err(config_error)?;
        let data_room = umem_config.mtu() as usize;
        let frames = NonZeroU32::new(frames)
            .ok_or_else(|| config_error("the UMEM needs at least one frame"))?;
        let (umem, free) = Umem::new(umem_config, frames, false).map_err(|e| {
            IoError::Other(format!(
                "creating the AF_XDP UMEM ({frames} frames of {FRAME_SIZE} bytes): {e}. \
                 Is the memlock limit too low (ulimit -l)?"
            ))
        })?;

        let mut this = Self {
            umem,
            ports: Vec::with_capacity(interfaces.len()),
            free,
            batch: vec![FrameDesc::default(); MAX_BURST],
            data_room,
            zero_copy: false,
            ring_size: ring_size as usize,
            stats: IoStats::default(),
            kernel_dropped: std::cell::RefCell::new(Vec::new()),
        };
        for iface in interfaces {
            let port = this.open_port(iface, options, ring)?;
            program.insert_socket(&iface.name, iface.queue, port.rx.fd().as_raw_fd())?;
            this.ports.push(port);
        }
        this.refill();
        Ok(this)
    }

    fn open_port(
        &mut self,
        iface: &IoInterface,
        options: AfXdpOptions,
        ring: QueueSize,
    ) -> Result<Port, IoError> {
        let name = Interface::new(
            std::ffi::CString::new(iface.name.as_str())
                .map_err(|_| config_error(format!("interface name {:?}", iface.name)))?,
        );
        let first_socket = self.ports.is_empty();
        let try_zero_copy = first_socket && options.zero_copy != ZeroCopy::Off;
        let attempt = |zero_copy: bool| {
            let mut bind = BindFlags::XDP_USE_NEED_WAKEUP;
            bind |= if zero_copy {
                BindFlags::XDP_ZEROCOPY
            } else {
                BindFlags::XDP_COPY
            };
            let config = SocketConfig::builder()
                .rx_queue_size(ring)
                .tx_queue_size(ring)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(bind)
                .build();
            // SAFETY: the program is not loaded by libxdp (INHIBIT_PROG_LOAD:
            // ours is), which is what sharing the UMEM requires; the UMEM
            // outlives the sockets (every queue holds a handle to it).
            unsafe { Socket::new(config, &self.umem, &name, iface.queue) }
        };
        let created = if try_zero_copy {
            match attempt(true) {
                Ok(s) => {
                    self.zero_copy = true;
                    Ok(s)
                }
                Err(_) if options.zero_copy == ZeroCopy::Auto => attempt(false),
                Err(e) => Err(e),
            }
        } else {
            attempt(false)
        };
        let (tx, rx, rings) = created.map_err(|e| {
            let source = io::Error::other(e.to_string());
            IoError::os(
                "creating the AF_XDP socket",
                &iface.name,
                source,
                ". Needs root and a kernel with AF_XDP (5.10 or later); \
                 otherwise run with --backend packet",
            )
        })?;
        let Some((fill, comp)) = rings else {
            return Err(config_error(format!(
                "{} queue {} is served twice by one worker",
                iface.name, iface.queue
            )));
        };
        Ok(Port {
            id: iface.id,
            name: iface.name.clone(),
            queue: iface.queue,
            tx,
            rx,
            fill,
            comp,
            pending: Vec::with_capacity(64),
        })
    }

    /// Takes back transmitted frames and tops up every fill ring.
    fn refill(&mut self) {
        for port in &mut self.ports {
            loop {
                // SAFETY: completed frames belong to this UMEM; they are
                // no longer the kernel's once consumed.
                let n = unsafe { port.comp.consume(&mut self.batch) };
                if n == 0 {
                    break;
                }
                self.free.extend_from_slice(&self.batch[..n]);
            }
        }
        let ports = self.ports.len().max(1);
        for port in &mut self.ports {
            let room = port.fill.nb_free_exact() as usize;
            // Share the free frames among the ports' fill rings.
            let n = room
                .min(self.free.len().div_ceil(ports))
                .min(self.free.len());
            if n == 0 {
                continue;
            }
            let from = self.free.len() - n;
            // SAFETY: the frames come from the free list, owned by nobody
            // else, and belong to this UMEM; `n` fits the ring (checked).
            let given = unsafe { port.fill.produce(&self.free[from..]) };
            if given > 0 {
                self.free.truncate(from);
            }
        }
        // Zero-copy drivers stop receiving when the fill ring ran dry and
        // say so with need_wakeup; a zero-timeout poll restarts them.
        // (Copy mode never sets the flag.)
        for port in &mut self.ports {
            if port.fill.needs_wakeup() {
                let _ = port.fill.wakeup(port.rx.fd_mut(), 0);
            }
        }
    }

    /// Queues a copy of `frame` for `iface` (a frame another backend
    /// received) in a free UMEM frame; it leaves with the next flush.
    /// Counted as dropped when no frame is free or it does not fit.
    pub fn send_copy(&mut self, iface: IfaceId, frame: &[u8]) {
        let Some(port) = self.ports.iter_mut().find(|p| p.id == iface) else {
            self.stats.tx_dropped += 1;
            return;
        };
        if frame.len() > self.data_room {
            self.stats.tx_dropped += 1;
            return;
        }
        let Some(mut desc) = self.free.pop() else {
            self.stats.tx_dropped += 1;
            return;
        };
        // SAFETY: the frame comes from the free list: no ring and no other
        // view holds it.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let mut cursor = data.cursor();
        cursor.set_pos(0);
        if cursor.write_all(frame).is_err() {
            self.stats.tx_dropped += 1;
            self.free.push(desc);
            return;
        }
        port.pending.push(desc);
    }

    /// Takes back the frames the kernel has sent and tops up the fill
    /// rings.
    pub fn reclaim(&mut self) {
        self.refill();
    }

    /// Hands every queued transmit to the kernel.
    ///
    /// # Errors
    /// Kicking the kernel failed for good.
    pub fn flush(&mut self) -> Result<(), IoError> {
        self.transmit_pending()
    }

    /// The sockets' descriptors, for a caller that polls them with others.
    #[must_use]
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.ports.iter().map(|p| p.rx.fd().as_raw_fd()).collect()
    }

    /// Puts every port's pending frames on its tx ring and kicks the
    /// kernel. In copy mode one kick sends at most a few dozen frames (the
    /// kernel's generic transmit budget), so the port is kicked again while
    /// frames wait in its ring — a bounded number of times — and a frame is
    /// dropped only when the ring stays full through all of that.
    fn transmit_pending(&mut self) -> Result<(), IoError> {
        let ring = self.ring_size;
        for port in &mut self.ports {
            if port.pending.is_empty() {
                continue;
            }
            let mut sent = 0;
            for _ in 0..MAX_KICKS {
                let room = port.tx.nb_free_exact() as usize;
                let n = room.min(port.pending.len() - sent);
                if n > 0 {
                    // SAFETY: pending frames were received into this UMEM
                    // and are owned by this burst alone; `n` fits the ring
                    // (checked).
                    sent += unsafe { port.tx.produce(&port.pending[sent..sent + n]) };
                }
                let waiting = (port.tx.nb_free_exact() as usize) < ring;
                if waiting && port.tx.needs_wakeup() {
                    port.tx
                        .wakeup()
                        .map_err(|e| IoError::os("kicking AF_XDP transmit", &port.name, e, ""))?;
                }
                if sent == port.pending.len() && !(waiting && port.tx.needs_wakeup()) {
                    break;
                }
            }
            self.stats.tx_frames += sent as u64;
            let unsent = port.pending.len() - sent;
            if unsent > 0 {
                self.stats.tx_dropped += unsent as u64;
                self.free.extend_from_slice(&port.pending[sent..]);
            }
            port.pending.clear();
        }
        Ok(())
    }
}

/// Kicks of one port's transmit per burst at most: enough for a burst of
/// [`MAX_BURST`] frames at the kernel's copy-mode budget of 32 per kick,
/// with room to spare.
const MAX_KICKS: usize = 4;

/// The frames of one rx ring's burst, lent to the pipeline.
struct XdpBurst<'a> {
    umem: &'a Umem,
    descs: &'a mut [FrameDesc],
    rx: IfaceId,
    data_room: usize,
}

impl Burst for XdpBurst<'_> {
    fn len(&self) -> usize {
        self.descs.len()
    }

    fn frame(&mut self, i: usize) -> RxFrame<'_> {
        let desc = &mut self.descs[i];
        let len = desc.lengths().data();
        // SAFETY: `desc` was consumed from the rx ring this burst, so the
        // frame is ours alone until we put it on a ring again.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let packet = data.contents_mut().as_mut_ptr();
        // SAFETY: the frame runs from XDP_PACKET_HEADROOM (256) bytes
        // before the packet (frame_headroom is 0) to `data_room` bytes
        // after its start, all inside the UMEM mapping and inside this one
        // frame; the returned borrow of `self` keeps any other frame view
        // of it from existing at the same time.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(packet.sub(HEADROOM), HEADROOM + self.data_room)
        };
        RxFrame {
            buf,
            start: HEADROOM,
            len,
            rx: self.rx,
        }
    }
}

impl WorkerIo for AfXdpIo {
    fn run_burst(
        &mut self,
        burst: usize,
        decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
    ) -> Result<usize, IoError> {
        let burst = burst.clamp(1, self.batch.len());
        let mut received = 0;
        let mut verdicts = [Verdict::PassToKernel; MAX_BURST];
        for p in 0..self.ports.len() {
            // SAFETY: the rx ring hands back frames of this UMEM.
            let n = unsafe { self.ports[p].rx.consume(&mut self.batch[..burst]) };
            if n == 0 {
                continue;
            }
            received += n;
            let verdicts = &mut verdicts[..n];
            verdicts.fill(Verdict::Drop(DropReason::EthernetTruncated));
            decide(
                &mut XdpBurst {
                    umem: &self.umem,
                    descs: &mut self.batch[..n],
                    rx: self.ports[p].id,
                    data_room: self.data_room,
                },
                verdicts,
            );
            for (&verdict, &desc) in verdicts.iter().zip(&self.batch[..n]) {
                let mut desc = desc;
                match verdict {
                    Verdict::Transmit { iface, start, len } => {
                        let Some(port) = self.ports.iter_mut().find(|p| p.id == iface) else {
                            self.stats.tx_dropped += 1;
                            self.free.push(desc);
                            continue;
                        };
                        let fits =
                            start + len <= HEADROOM + self.data_room && len <= self.data_room;
                        if !fits {
                            self.stats.tx_dropped += 1;
                            self.free.push(desc);
                            continue;
                        }
                        // SAFETY: still our frame (consumed this burst).
                        let mut data = unsafe { self.umem.data_mut(&mut desc) };
                        if start != HEADROOM {
                            let packet = data.contents_mut().as_mut_ptr();
                            // SAFETY: both ranges lie in this frame (checked
                            // above); `copy` handles the overlap.
                            unsafe {
                                std::ptr::copy(packet.sub(HEADROOM).add(start), packet, len);
                            }
                        }
                        data.cursor().set_pos(len);
                        port.pending.push(desc);
                    }
                    Verdict::PassToKernel => {
                        self.stats.pass_unreachable += 1;
                        self.free.push(desc);
                    }
                    Verdict::Drop(_) => self.free.push(desc),
                }
            }
        }
        self.stats.rx_frames += received as u64;
        self.transmit_pending()?;
        self.refill();
        Ok(received)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        self.stats.sleeps += 1;
        super::poll_readable(&self.fds(), timeout)?;
        // Frames sent while we slept have completed: take them back.
        self.refill();
        Ok(())
    }

    fn stats(&self) -> IoStats {
        let mut stats = self.stats;
        let mut dropped = self.kernel_dropped.borrow_mut();
        dropped.resize_with(self.ports.len(), || {
            KernelCounter::new("an AF_XDP socket's statistics (XDP_STATISTICS)")
        });
        let now = std::time::Instant::now();
        for (port, counter) in self.ports.iter().zip(dropped.iter_mut()) {
            let read = port
                .rx
                .fd()
                .xdp_statistics()
                .map(|s| s.rx_dropped() + s.rx_ring_full());
            stats.kernel_rx_dropped += counter.read(read, now).unwrap_or(0);
            stats.stats_read_failures += counter.failures();
        }
        stats
    }

    fn describe(&self) -> String {
        let ports: Vec<(&str, u32)> = self
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.queue))
            .collect();
        format!(
            "AF_XDP {} mode, {}",
            if self.zero_copy { "zero-copy" } else { "copy" },
            describe_queues(&ports)
        )
    }
}

/// "queue 0 on eth0, eth1" when every interface has the same queues, else
/// "queues 0, 2 on eth0; queue 0 on eth1" — in the order of `ports`
/// (interface, queue).
fn describe_queues(ports: &[(&str, u32)]) -> String {
    let mut by_iface: Vec<(&str, Vec<u32>)> = Vec::new();
    for &(name, queue) in ports {
        match by_iface.iter_mut().find(|(n, _)| *n == name) {
            Some((_, queues)) => queues.push(queue),
            None => by_iface.push((name, vec![queue])),
        }
    }
    let list = |queues: &[u32]| {
        let numbers: Vec<String> = queues.iter().map(ToString::to_string).collect();
        let word = if queues.len() == 1 { "queue" } else { "queues" };
        format!("{word} {}", numbers.join(", "))
    };
    if let Some((_, first)) = by_iface.first()
        && by_iface.iter().all(|(_, q)| q == first)
    {
        let names: Vec<&str> = by_iface.iter().map(|(n, _)| *n).collect();
        return format!("{} on {}", list(first), names.join(", "));
    }
    let parts: Vec<String> = by_iface
        .iter()
        .map(|(n, q)| format!("{} on {n}", list(q)))
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sockets_keep_the_default_rings_and_more_sockets_share_the_umem() {
        let o = AfXdpOptions::default();
        // One queue on two interfaces: as before multi-queue support.
        assert_eq!(socket_sizes(&o, 2), (2048, 8192));
        assert_eq!(socket_sizes(&o, 1), (2048, 8192));
        // Two queues on each of two interfaces: rings halve, the UMEM
        // stays.
        assert_eq!(socket_sizes(&o, 4), (1024, 8192));
        assert_eq!(socket_sizes(&o, 8), (512, 8192));
        // So many sockets that the smallest rings do not fit: the UMEM
        // grows to hold them.
        assert_eq!(socket_sizes(&o, 128), (MIN_RING, 2 * MIN_RING * 128));
        for sockets in 1..=1024 {
            let (ring, frames) = socket_sizes(&o, sockets);
            assert!(
                ring.is_power_of_two() && ring >= MIN_RING,
                "{sockets}: {ring}"
            );
            assert!(u64::from(frames) >= 2 * u64::from(ring) * u64::from(sockets));
        }
    }

    #[test]
    fn the_description_names_every_queue_served() {
        assert_eq!(
            describe_queues(&[("d-cli", 0), ("d-srv", 0)]),
            "queue 0 on d-cli, d-srv"
        );
        assert_eq!(
            describe_queues(&[("d-cli", 1), ("d-cli", 3), ("d-srv", 1), ("d-srv", 3)]),
            "queues 1, 3 on d-cli, d-srv"
        );
        assert_eq!(
            describe_queues(&[("d-cli", 0), ("d-cli", 1), ("d-srv", 0)]),
            "queues 0, 1 on d-cli; queue 0 on d-srv"
        );
    }
}
