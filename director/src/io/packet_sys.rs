//! The system calls of the AF_PACKET backend, one thin safe wrapper each
//! (the HA part's frame sender and VRRP socket use some of them too).
//!
//! Every wrapper returns `std::io::Result` with the kernel's `errno` and
//! nothing else: turning an error into an operator's message (which
//! interface, what to do) is [`super::packet`]'s job, where it can be
//! tested without root. Nothing here allocates once a socket is set up.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// `ETH_P_ALL` in network byte order, as `bind()` and `socket()` want it.
pub(crate) const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// Returns the errno of the last failed call as an `io::Error`.
fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Opens an AF_PACKET raw socket that receives nothing until it is bound
/// (protocol 0): rings and options are set before the first frame counts.
pub(crate) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; a non-negative return is a fresh
    // descriptor that nothing else owns.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, value)` for a plain-data option value.
pub(crate) fn set_option<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly the length passed;
    // the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

/// `setsockopt(fd, SOL_PACKET, name, &value)` for an integer option.
pub(crate) fn set_packet_int(fd: BorrowedFd<'_>, name: libc::c_int, value: u32) -> io::Result<()> {
    set_option(fd, libc::SOL_PACKET, name, &value)
}

/// Reads and resets the socket's receive statistics (`PACKET_STATISTICS`).
pub(crate) fn packet_stats(fd: BorrowedFd<'_>) -> io::Result<libc::tpacket_stats_v3> {
    let mut stats = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are live locals; the kernel writes at most
    // `len` bytes into `stats` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            std::ptr::from_mut(&mut stats).cast(),
            &raw mut len,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(stats) }
}

/// Reads and clears the socket's pending error (`SO_ERROR`): 0 if none.
pub(crate) fn take_socket_error(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live locals of the sizes the kernel expects.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            std::ptr::from_mut(&mut err).cast(),
            &raw mut len,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(err) }
}

/// Binds the socket to all protocols (`ETH_P_ALL`) on one interface.
pub(crate) fn bind_interface(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    bind_interface_protocol(fd, ifindex, ETH_P_ALL_BE)
}

/// Binds the socket to one interface for the protocol `protocol_be`
/// (network byte order). Protocol 0 on a socket opened with protocol 0
/// ([`packet_socket`]) receives nothing: a socket that only sends.
pub(crate) fn bind_interface_protocol(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    protocol_be: u16,
) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol_be;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

/// Attaches a classic BPF filter that accepts nothing: a socket joining a
/// fanout group receives no frame of its own before it has joined.
pub(crate) fn attach_drop_all_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    // One instruction: BPF_RET | BPF_K with k = 0 (keep 0 bytes).
    let mut code = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: code.as_mut_ptr(),
    };
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Removes the socket's BPF filter.
pub(crate) fn detach_filter(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_option(fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &0u32)
}

/// Asks the kernel to send every frame marked `TP_STATUS_SEND_REQUEST` in
/// the socket's TX ring, without waiting for completion.
pub(crate) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a zero-length send with a null buffer is how a TX ring is
    // flushed; the kernel reads the ring, not the (absent) buffer.
    let rc = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

/// `poll()` over `fds`; returns how many have events. `EINTR` is returned
/// as an error for the caller to treat as "woken".
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a live, exclusively borrowed slice of pollfd of the
    // length passed; the kernel writes only `revents`.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        Err(last_error())
    } else {
        Ok(rc as usize)
    }
}

/// The interface index of `name`.
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(last_error())
    } else {
        Ok(index)
    }
}

/// The system's page size: ring blocks are multiples of it.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// A shared mapping of a packet socket's rings, unmapped on drop.
#[derive(Debug)]
pub(crate) struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value alone; moving it
// to another thread moves that ownership (the kernel side is thread-agnostic).
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps `len` bytes of the socket's rings (RX ring first, then TX).
    pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping at an address the kernel chooses,
        // so no existing memory is affected. (The ring's pages are the
        // kernel's own, inserted at mmap time: no MAP_POPULATE/LOCKED.)
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_error());
        }
        NonNull::new(ptr.cast::<u8>())
            .map(|base| Self { base, len })
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// First byte of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe exactly the mapping made in `map`,
        // and no reference into it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
