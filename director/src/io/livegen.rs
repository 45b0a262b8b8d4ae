//! A frame generator inside the kernel: `BPF_PROG_TEST_RUN` in live-frames
//! mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, Linux 5.18) with a small XDP
//! program, built here for one frame, that answers `XDP_TX`, so that the
//! kernel transmits
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
//! The kernel copies the frame into its page pool once per page and
//! recycles pages without copying it again; since a path downstream may
//! edit a frame in place (a router's new Ethernet header, NAT), the
//! program writes the whole frame over each repetition before sending it.
//! A program that transmits only a random share of the repetitions
//! ([`LiveFrames::load_share`]) sets a rate below full speed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `XDP_TX`: send the frame back out of the interface it "arrived" on.
const XDP_TX: i32 = 3;
/// `XDP_DROP`: give the frame back to the page pool at once.
const XDP_DROP: i32 = 1;
/// The helper `bpf_get_prandom_u32`.
const HELPER_PRANDOM_U32: i32 = 7;
/// Frames the kernel sends between looks at pending signals and the
/// scheduler (the kernel's own limit is 256).
const BATCH: u32 = 64;

/// The loaded generator program.
#[derive(Debug)]
pub struct LiveFrames {
    program: OwnedFd,
}

fn insn(code: u8, off: i16, imm: i32) -> libxdp_sys::bpf_insn {
    libxdp_sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        // dst_reg r0, src_reg r0.
        _bitfield_1: libxdp_sys::bpf_insn::new_bitfield_1(0, 0),
        off,
        imm,
    }
}

/// BPF_ALU64 | BPF_MOV | BPF_K: `r0 = imm`.
const MOV_R0: u8 = 0xb7;
/// BPF_JMP | BPF_EXIT.
const EXIT: u8 = 0x95;
/// BPF_JMP | BPF_CALL.
const CALL: u8 = 0x85;
/// BPF_JMP32 | BPF_JGT | BPF_K: `if (u32)r0 > (u32)imm goto +off`.
const JGT32: u8 = 0x26;

/// BPF_LDX | BPF_MEM | BPF_W: `dst = *(u32 *)(src + off)`.
const LDX_W: u8 = 0x61;
/// BPF_ALU64 | BPF_MOV | BPF_X: `dst = src`.
const MOV_X: u8 = 0xbf;
/// BPF_ALU64 | BPF_ADD | BPF_K: `dst += imm`.
const ADD_K: u8 = 0x07;
/// BPF_JMP | BPF_JGT | BPF_X: `if dst > src goto +off`.
const JGT_X: u8 = 0x2d;
/// BPF_ST | BPF_MEM | BPF_W: `*(u32 *)(dst + off) = imm`.
const ST_W: u8 = 0x62;
/// BPF_ST | BPF_MEM | BPF_B: `*(u8 *)(dst + off) = imm`.
const ST_B: u8 = 0x72;

fn insn_regs(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> libxdp_sys::bpf_insn {
    libxdp_sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: libxdp_sys::bpf_insn::new_bitfield_1(dst, src),
        off,
        imm,
    }
}

/// The program: write `frame` over the packet, then transmit it — or,
/// below a `threshold` of `u32::MAX`, only a random share of the
/// repetitions, `(threshold + 1) / 2^32`, dropping the rest.
///
/// The write is needed because the kernel recycles a live run's pages
/// without rewriting their data (it assumes only the program changes
/// it), while a path downstream may edit the frame in place — a router
/// writes a new Ethernet header, NAT rewrites addresses — and the next
/// repetition from that page would carry the edits.
fn program(frame: &[u8], threshold: u32) -> Vec<libxdp_sys::bpf_insn> {
    let len = frame.len();
    let mut p = vec![
        // r2 = ctx->data, r3 = ctx->data_end.
        insn_regs(LDX_W, 2, 1, 0, 0),
        insn_regs(LDX_W, 3, 1, 4, 0),
        // if r2 + len > r3: drop (the verifier's bound, and a guard).
        insn_regs(MOV_X, 4, 2, 0, 0),
        insn_regs(ADD_K, 4, 0, 0, i32::try_from(len).unwrap_or(i32::MAX)),
        // The offset is patched below, once the stores are counted.
        insn_regs(JGT_X, 4, 3, 0, 0),
    ];
    let check = p.len() - 1;
    let words = len / 4;
    for w in 0..words {
        let at = w * 4;
        let word = u32::from_ne_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
        p.push(insn_regs(
            ST_W,
            2,
            0,
            i16::try_from(at).unwrap_or(i16::MAX),
            i32::from_ne_bytes(word.to_ne_bytes()),
        ));
    }
    for (at, &byte) in frame.iter().enumerate().skip(words * 4) {
        p.push(insn_regs(
            ST_B,
            2,
            0,
            i16::try_from(at).unwrap_or(i16::MAX),
            i32::from(byte),
        ));
    }
    if threshold != u32::MAX {
        p.push(insn(CALL, 0, HELPER_PRANDOM_U32));
        // The immediate is compared as an unsigned 32-bit value.
        p.push(insn(JGT32, 2, i32::from_ne_bytes(threshold.to_ne_bytes())));
    }
    p.push(insn(MOV_R0, 0, XDP_TX));
    p.push(insn(EXIT, 0, 0));
    let drop = p.len();
    p.push(insn(MOV_R0, 0, XDP_DROP));
    p.push(insn(EXIT, 0, 0));
    p[check].off = i16::try_from(drop - check - 1).unwrap_or(i16::MAX);
    p
}

impl LiveFrames {
    /// Loads the program that transmits every repetition of `frame`.
    ///
    /// # Errors
    /// The kernel refused it: no privileges (CAP_BPF, CAP_NET_ADMIN), or a
    /// frame too long for a program.
    pub fn load(frame: &[u8]) -> io::Result<Self> {
        Self::load_share(frame, u32::MAX)
    }

    /// Loads a program that transmits a random share of the repetitions of
    /// `frame`, `(threshold + 1) / 2^32`, and drops the rest at once:
    /// thinning the kernel's repetitions frame by frame is how a rate below
    /// the generator's full speed stays smooth within a call (a drop costs
    /// a page-pool recycle, a few nanoseconds). `u32::MAX` transmits all.
    /// Each repetition is `frame` afresh: the program writes the whole frame
    /// into the packet before it transmits it.
    ///
    /// # Errors
    /// The kernel refused it: no privileges (CAP_BPF, CAP_NET_ADMIN), or a
    /// frame too long for a program.
    pub fn load_share(frame: &[u8], threshold: u32) -> io::Result<Self> {
        if frame.len() > 4096 {
            return Err(io::Error::other("a live frame is at most 4096 bytes"));
        }
        let insns = program(frame, threshold);
        // SAFETY: the name and licence are NUL-terminated literals, `insns`
        // is a live vector of `insns.len()` instructions, and a null `opts`
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes the program's stores write, in frame order.
    fn written(p: &[libxdp_sys::bpf_insn]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in p {
            match i.code {
                ST_W => out.extend_from_slice(&i.imm.to_ne_bytes()),
                ST_B => out.push(u8::try_from(i.imm).unwrap()),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn the_program_writes_the_whole_frame_and_its_guard_jumps_to_the_drop() {
        for (len, threshold) in [
            (64usize, u32::MAX),
            (61, u32::MAX),
            (64, 1 << 31),
            (1514, 7),
        ] {
            let frame: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let p = program(&frame, threshold);
            assert_eq!(written(&p), frame, "len {len}");
            let guard = p.iter().position(|i| i.code == JGT_X).unwrap();
            let target = guard + 1 + usize::try_from(p[guard].off).unwrap();
            assert_eq!((p[target].code, p[target].imm), (MOV_R0, XDP_DROP));
            assert_eq!(p[target + 1].code, EXIT);
            assert_eq!(p[guard - 1].imm, i32::try_from(len).unwrap());
            let thinned = p.iter().any(|i| i.code == CALL);
            assert_eq!(thinned, threshold != u32::MAX, "len {len}");
            if thinned {
                let jgt = p.iter().position(|i| i.code == JGT32).unwrap();
                assert_eq!(p[jgt].imm.to_ne_bytes(), threshold.to_ne_bytes());
                let to = jgt + 1 + usize::try_from(p[jgt].off).unwrap();
                assert_eq!((p[to].code, p[to].imm), (MOV_R0, XDP_DROP));
            }
        }
    }
}
