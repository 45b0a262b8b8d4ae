//! Sending whole Ethernet frames that the kernel would not write itself:
//! the gratuitous ARPs and unsolicited neighbour advertisements of an
//! address takeover (`xvs_packet::announce`).
//!
//! # Contract
//! An AF_PACKET socket bound to one interface that only sends: it is opened
//! and bound with protocol 0, so the kernel queues no received frame to it
//! (nothing to drain, nothing that fills). A frame goes out as it is, Ethernet
//! header included, through the interface's queueing discipline: whether or
//! not the address is still tentative for the kernel, and whether or not an
//! XDP program is attached (XDP sees received frames only).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::packet_sys;

/// An AF_PACKET socket bound to one interface, for whole frames the kernel
/// does not write itself.
#[derive(Debug)]
pub struct FrameSender {
    fd: OwnedFd,
    ifindex: u32,
}

impl FrameSender {
    /// A sender on the interface of index `ifindex`.
    ///
    /// # Errors
    /// Not root (`EPERM`), or no such interface (`ENODEV`).
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let fd = packet_sys::packet_socket()?;
        packet_sys::bind_interface_protocol(fd.as_fd(), ifindex, 0)?;
        Ok(Self { fd, ifindex })
    }

    /// The interface's index.
    #[must_use]
    pub const fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `frame` (a whole Ethernet frame) out of the interface.
    ///
    /// # Errors
    /// The link is down (`ENETDOWN`), the queue is full (`EAGAIN` /
    /// `ENOBUFS`), the frame is longer than the MTU allows (`EMSGSIZE`) or
    /// was sent short.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live borrowed slice of the length passed;
        // the kernel only reads it.
        let rc = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc as usize == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {rc} of {} bytes", frame.len()),
            ))
        }
    }
}

impl AsFd for FrameSender {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
