//! A worker whose interfaces do not all use the same backend: AF_XDP on
//! those whose driver has XDP, AF_PACKET on the others (`--iface
//! NAME=packet`). Each backend receives and sends on its own interfaces; a
//! frame that must leave by an interface of the other backend is copied
//! into it (the one copy a shared UMEM cannot save here), and the buffer it
//! arrived in is released.

use std::os::fd::RawFd;
use std::time::Duration;

use super::afxdp::AfXdpIo;
use super::packet::PacketIo;
use super::{Burst, IoError, IoStats, WorkerIo};
use crate::pipeline::{DropReason, IfaceId, Verdict};

/// AF_XDP and AF_PACKET interfaces served by one worker.
#[derive(Debug)]
pub struct MixedIo {
    xdp: AfXdpIo,
    packet: PacketIo,
    /// By `IfaceId.0`: true when the interface is on AF_XDP.
    on_xdp: Vec<bool>,
    handed_over: u64,
    sleeps: u64,
}

impl MixedIo {
    /// Joins a worker's AF_XDP sockets and its AF_PACKET sockets;
    /// `xdp_ifaces` names the interfaces the AF_XDP part serves.
    #[must_use]
    pub fn new(xdp: AfXdpIo, packet: PacketIo, xdp_ifaces: &[IfaceId]) -> Self {
        let len = xdp_ifaces
            .iter()
            .map(|i| usize::from(i.0) + 1)
            .max()
            .unwrap_or(0);
        let mut on_xdp = vec![false; len];
        for i in xdp_ifaces {
            on_xdp[usize::from(i.0)] = true;
        }
        Self {
            xdp,
            packet,
            on_xdp,
            handed_over: 0,
            sleeps: 0,
        }
    }
}

/// Queues a copy of a frame on an interface of the other backend.
type SendCopy<'a> = dyn FnMut(IfaceId, &[u8]) -> Result<(), IoError> + 'a;

/// After `decide`, moves every transmit bound for the other backend's
/// interfaces into `send`, and marks its buffer for release.
fn hand_over(
    burst: &mut dyn Burst,
    verdicts: &mut [Verdict],
    on_xdp: &[bool],
    from_xdp: bool,
    handed_over: &mut u64,
    send: &mut SendCopy<'_>,
) -> Result<(), IoError> {
    for (i, v) in verdicts.iter_mut().enumerate() {
        let Verdict::Transmit { iface, start, len } = *v else {
            continue;
        };
        let target_xdp = on_xdp.get(usize::from(iface.0)).copied().unwrap_or(false);
        if target_xdp == from_xdp {
            continue;
        }
        let f = burst.frame(i);
        if let Some(bytes) = f.buf.get(start..start + len) {
            send(iface, bytes)?;
            *handed_over += 1;
        }
        // The receiving backend only releases the buffer; the pipeline
        // has already counted the frame as transmitted.
        *v = Verdict::Drop(DropReason::EthernetTruncated);
    }
    Ok(())
}

impl WorkerIo for MixedIo {
    fn run_burst(
        &mut self,
        burst: usize,
        decide: &mut dyn FnMut(&mut dyn Burst, &mut [Verdict]),
    ) -> Result<usize, IoError> {
        let Self {
            xdp,
            packet,
            on_xdp,
            handed_over,
            ..
        } = self;
        let mut failure = None;
        let from_xdp = xdp.run_burst(burst, &mut |b, v| {
            decide(b, v);
            let mut send = |iface, bytes: &[u8]| packet.send_copy(iface, bytes);
            if let Err(e) = hand_over(b, v, on_xdp, true, handed_over, &mut send) {
                failure = Some(e);
            }
        })?;
        let from_packet = packet.run_burst(burst, &mut |b, v| {
            decide(b, v);
            let mut send = |iface, bytes: &[u8]| {
                xdp.send_copy(iface, bytes);
                Ok(())
            };
            if let Err(e) = hand_over(b, v, on_xdp, false, handed_over, &mut send) {
                failure = Some(e);
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        xdp.flush()?;
        packet.flush()?;
        Ok(from_xdp + from_packet)
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), IoError> {
        self.xdp.flush()?;
        self.packet.flush()?;
        if self.packet.rx_ready() {
            return Ok(());
        }
        let fds: Vec<RawFd> = self
            .xdp
            .fds()
            .into_iter()
            .chain(self.packet.fds())
            .collect();
        self.sleeps += 1;
        super::poll_readable(&fds, timeout)?;
        self.xdp.reclaim();
        Ok(())
    }

    fn stats(&self) -> IoStats {
        let mut total = self.xdp.stats();
        total += self.packet.stats();
        total.sleeps += self.sleeps;
        total
    }

    fn describe(&self) -> String {
        format!(
            "{} + {} ({} frames copied between them)",
            self.xdp.describe(),
            self.packet.describe(),
            self.handed_over
        )
    }
}
