//! A frame generator inside the kernel: `BPF_PROG_TEST_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18) with a two-instruction
//! XDP program that answers `XDP_TX`, so that the kernel transmits
//! `repeat` copies of one frame out of an interface in one system call.
//! The benchmark's load generator (`xvs-pktgen send --engine xdp-live`)
//! is built on it.
//!
//! Why not a socket: on the 2-vCPU testbed machine a raw AF_PACKET socket
//! or AF_XDP in copy mode pays for one skb per frame in the sender and
//! tops out near the paths it is meant to load (0.2–1.2 Mpps), while the
//! live-frames run hands each frame to the veth's peer as an `xdp_frame`
//! (no skb, no copy from user space after the first) at several times
//! that. It needs no BTF and no tracepoint, unlike xdp-tools'
//! `xdp-trafficgen`, which does not load on kernels without BTF.
//!
//! Where frames go: `XDP_TX` in a live run transmits out of the
//! `ingress_ifindex` given in the context. On a veth the frame lands in the
//! peer's XDP receive ring, which exists only while the peer runs an XDP
//! program or has GRO on (`ethtool -K PEER gro on`); otherwise the kernel
//! drops the frames, and the sender's `tx_dropped` says so. Frames the
//! peer's ring had no room for are counted there too: the kernel does not
//! report per-frame success to the caller.
//!
//! The data of the frame is copied into the kernel's page pool once per
//! call and reused: the program does not change it, so every copy is the
//! frame given.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `XDP_TX`: send the frame back out of the interface it "arrived" on.
const XDP_TX: i32 = 3;
/// Frames the kernel sends between looks at pending signals and the
/// scheduler (the kernel's own limit is 256).
const BATCH: u32 = 64;

/// The loaded generator program.
#[derive(Debug)]
pub struct LiveFrames {
    program: OwnedFd,
}

fn insn(code: u8, imm: i32) -> libxdp_sys::bpf_insn {
    libxdp_sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        // dst_reg r0, src_reg r0.
        _bitfield_1: libxdp_sys::bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm,
    }
}

impl LiveFrames {
    /// Loads the program (`r0 = XDP_TX; exit`).
    ///
    /// # Errors
    /// The kernel refused it: no privileges (CAP_BPF, CAP_NET_ADMIN).
    pub fn load() -> io::Result<Self> {
        // BPF_ALU64 | BPF_MOV | BPF_K, then BPF_JMP | BPF_EXIT.
        let insns = [insn(0xb7, XDP_TX), insn(0x95, 0)];
        // SAFETY: the name and licence are NUL-terminated literals, `insns`
        // is a live array of `insns.len()` instructions, and a null `opts`
        // means defaults; libbpf copies what it keeps.
        let fd = unsafe {
            libxdp_sys::bpf_prog_load(
                libxdp_sys::bpf_prog_type_BPF_PROG_TYPE_XDP,
                c"xvs_livegen".as_ptr(),
                c"GPL".as_ptr(),
                insns.as_ptr(),
                insns.len(),
                std::ptr::null_mut(),
            )
        };
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: libbpf returned a new descriptor that nothing else owns.
        let program = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { program })
    }

    /// Transmits `repeat` copies of `frame` out of the interface
    /// `ifindex`. Returns when they were handed to the driver (or dropped
    /// by it); a pending signal ends the call early with `EINTR`.
    ///
    /// # Errors
    /// The kernel refused the run: a frame shorter than an Ethernet header
    /// or longer than a page minus XDP's head- and tailroom, no such
    /// interface, or a kernel older than 5.18.
    pub fn send(&self, frame: &[u8], ifindex: u32, repeat: u32) -> io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(io::Error::other)?;
        // The kernel's `struct xdp_md` (data, data_end, data_meta,
        // ingress_ifindex, rx_queue_index, egress_ifindex): data_end must
        // be the frame's length.
        let ctx: [u32; 6] = [0, len, 0, ifindex, 0, 0];
        let mut opts = libxdp_sys::bpf_test_run_opts {
            sz: size_of::<libxdp_sys::bpf_test_run_opts>(),
            data_in: frame.as_ptr().cast(),
            data_out: std::ptr::null_mut(),
            data_size_in: len,
            data_size_out: 0,
            ctx_in: ctx.as_ptr().cast(),
            ctx_out: std::ptr::null_mut(),
            ctx_size_in: u32::try_from(size_of_val(&ctx)).map_err(io::Error::other)?,
            ctx_size_out: 0,
            retval: 0,
            repeat: i32::try_from(repeat.max(1)).unwrap_or(i32::MAX),
            duration: 0,
            flags: libxdp_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            cpu: 0,
            batch_size: BATCH,
        };
        // SAFETY: `opts` is a fully initialised bpf_test_run_opts whose
        // input pointers reference live buffers of the sizes it states;
        // live-frames mode writes no output buffer (both are null).
        let rc =
            unsafe { libxdp_sys::bpf_prog_test_run_opts(self.program.as_raw_fd(), &raw mut opts) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }
}
