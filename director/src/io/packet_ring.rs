//! The layout of TPACKET_V3 rings, as pure functions over bytes.
//!
//! An RX ring is a row of blocks; the kernel fills one block at a time
//! with variable-sized frames, each a `tpacket3_hdr` followed (at
//! `tp_mac`) by the frame, chained by `tp_next_offset`, and hands the
//! block to user space by setting `TP_STATUS_USER` in the block's
//! descriptor — when the block is full or its retire timer fires. A TX
//! ring is a row of fixed slots, each a `tpacket3_hdr` followed by the
//! frame at [`TX_DATA_OFFSET`]; user space marks a slot
//! `TP_STATUS_SEND_REQUEST` and the kernel sets it back to
//! `TP_STATUS_AVAILABLE` once the frame has left.
//!
//! Walking a block is done here over a `&[u8]`, with every offset checked,
//! so that a synthetic block can test it and a corrupt one cannot panic.

use std::mem::{offset_of, size_of};

use libc::{tpacket_block_desc, tpacket_hdr_v1, tpacket3_hdr};

/// Where the block status word lies in a block descriptor.
pub(crate) const BLOCK_STATUS: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, block_status);
const BLOCK_NUM_PKTS: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, num_pkts);
const BLOCK_FIRST_PKT: usize =
    offset_of!(tpacket_block_desc, hdr) + offset_of!(tpacket_hdr_v1, offset_to_first_pkt);

const PKT_NEXT: usize = offset_of!(tpacket3_hdr, tp_next_offset);
const PKT_SNAPLEN: usize = offset_of!(tpacket3_hdr, tp_snaplen);
const PKT_LEN: usize = offset_of!(tpacket3_hdr, tp_len);
/// Where a slot's status word lies (RX frames and TX slots alike).
pub(crate) const PKT_STATUS: usize = offset_of!(tpacket3_hdr, tp_status);
const PKT_MAC: usize = offset_of!(tpacket3_hdr, tp_mac);

/// Where the frame starts in a TX slot: the kernel reads it at
/// `TPACKET3_HDRLEN - sizeof(sockaddr_ll)`, the aligned header size.
pub(crate) const TX_DATA_OFFSET: usize = libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();

/// One frame in a block: `block[start..start + len]`, `wire_len` bytes on
/// the wire (more than `len` when the ring truncated it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingFrame {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) wire_len: usize,
}

/// Position of the reader inside a block handed to user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockCursor {
    offset: usize,
    remaining: u32,
    /// The block's headers pointed outside it: its rest was skipped.
    pub(crate) corrupt: bool,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let raw = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([raw[0], raw[1]]))
}

impl BlockCursor {
    /// Starts reading a block whose status says it belongs to user space.
    pub(crate) fn open(block: &[u8]) -> Self {
        match (
            read_u32(block, BLOCK_NUM_PKTS),
            read_u32(block, BLOCK_FIRST_PKT),
        ) {
            (Some(remaining), Some(first)) => Self {
                offset: first as usize,
                remaining,
                corrupt: false,
            },
            _ => Self {
                offset: 0,
                remaining: 0,
                corrupt: true,
            },
        }
    }

    /// The next frame of the block, or `None` when the block is done.
    pub(crate) fn next(&mut self, block: &[u8]) -> Option<RingFrame> {
        if self.remaining == 0 {
            return None;
        }
        let header = self.offset;
        let parsed = (|| {
            let next = read_u32(block, header + PKT_NEXT)?;
            let snaplen = read_u32(block, header + PKT_SNAPLEN)? as usize;
            let wire_len = read_u32(block, header + PKT_LEN)? as usize;
            let mac = usize::from(read_u16(block, header + PKT_MAC)?);
            let start = header.checked_add(mac)?;
            block.get(start..start.checked_add(snaplen)?)?;
            Some((next, start, snaplen, wire_len))
        })();
        let Some((next, start, len, wire_len)) = parsed else {
            self.remaining = 0;
            self.corrupt = true;
            return None;
        };
        self.remaining -= 1;
        if self.remaining > 0 {
            if next == 0 {
                // More frames announced but no link to them.
                self.remaining = 0;
                self.corrupt = true;
            }
            self.offset = header + next as usize;
        }
        Some(RingFrame {
            start,
            len,
            wire_len,
        })
    }
}

/// One ring's request, as `PACKET_RX_RING`/`PACKET_TX_RING` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingRequest {
    pub(crate) tp_block_size: u32,
    pub(crate) tp_block_nr: u32,
    pub(crate) tp_frame_size: u32,
    pub(crate) tp_frame_nr: u32,
    pub(crate) tp_retire_blk_tov: u32,
}

impl RingRequest {
    /// The kernel's structure.
    pub(crate) fn to_req3(self) -> libc::tpacket_req3 {
        libc::tpacket_req3 {
            tp_block_size: self.tp_block_size,
            tp_block_nr: self.tp_block_nr,
            tp_frame_size: self.tp_frame_size,
            tp_frame_nr: self.tp_frame_nr,
            tp_retire_blk_tov: self.tp_retire_blk_tov,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        }
    }
}

/// The sizes of one socket's rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// RX ring request (blocks of `rx.tp_block_size`).
    pub(crate) rx: RingRequest,
    /// TX ring request (fixed slots of `tx.tp_frame_size`).
    pub(crate) tx: RingRequest,
}

impl Geometry {
    /// Bytes of the RX ring (mapped first).
    pub(crate) fn rx_len(&self) -> usize {
        self.rx.tp_block_size as usize * self.rx.tp_block_nr as usize
    }

    /// Bytes of the TX ring (mapped right after the RX ring).
    pub(crate) fn tx_len(&self) -> usize {
        self.tx.tp_block_size as usize * self.tx.tp_block_nr as usize
    }

    /// TX slots per TX block.
    pub(crate) fn tx_per_block(&self) -> usize {
        (self.tx.tp_block_size / self.tx.tp_frame_size) as usize
    }

    /// Offset of TX slot `index` from the start of the TX ring, as the
    /// kernel computes it (`packet_lookup_frame`).
    pub(crate) fn tx_slot_offset(&self, index: usize) -> usize {
        let per_block = self.tx_per_block();
        (index / per_block) * self.tx.tp_block_size as usize
            + (index % per_block) * self.tx.tp_frame_size as usize
    }

    /// Computes ring sizes for frames of up to `max_frame` bytes.
    ///
    /// # Errors
    /// A description of the setting that cannot work.
    pub(crate) fn new(
        rx_block_size: u32,
        rx_block_count: u32,
        retire_timeout_ms: u32,
        tx_frames: u32,
        max_frame: u32,
        page: usize,
    ) -> Result<Self, String> {
        let page = page as u32;
        let align = libc::TPACKET_ALIGNMENT as u32;
        if !(64..=65_535).contains(&max_frame) {
            return Err(format!(
                "max_frame {max_frame} is out of range (64 to 65535 bytes)"
            ));
        }
        // A slot holds the header and the largest frame, 16-byte aligned.
        let slot = (TX_DATA_OFFSET as u32 + max_frame).div_ceil(align) * align;
        let rx_slot = (libc::TPACKET3_HDRLEN as u32 + max_frame).div_ceil(align) * align;
        if rx_block_size == 0 || !rx_block_size.is_multiple_of(page) {
            return Err(format!(
                "rx_block_size {rx_block_size} must be a non-zero multiple of the page size ({page})"
            ));
        }
        // The block descriptor (48 bytes) comes before the first frame.
        if rx_block_size < rx_slot + 64 {
            return Err(format!(
                "rx_block_size {rx_block_size} cannot hold a frame of max_frame {max_frame} bytes"
            ));
        }
        if rx_block_count == 0 || tx_frames == 0 {
            return Err("rx_block_count and tx_frames must be at least 1".to_owned());
        }
        if retire_timeout_ms == 0 {
            return Err("rx_retire_timeout_ms must be at least 1".to_owned());
        }
        let tx_block = slot.div_ceil(page).max(16) * page;
        let per_block = tx_block / slot;
        let tx_blocks = tx_frames.div_ceil(per_block);
        let rx_per_block = rx_block_size / rx_slot;
        Ok(Self {
            rx: RingRequest {
                tp_block_size: rx_block_size,
                tp_block_nr: rx_block_count,
                tp_frame_size: rx_slot,
                tp_frame_nr: rx_per_block * rx_block_count,
                tp_retire_blk_tov: retire_timeout_ms,
            },
            tx: RingRequest {
                tp_block_size: tx_block,
                tp_block_nr: tx_blocks,
                tp_frame_size: slot,
                tp_frame_nr: per_block * tx_blocks,
                tp_retire_blk_tov: 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a block as the kernel lays it out: descriptor, then frames
    /// each behind a `tpacket3_hdr`, `tp_mac` bytes from their header.
    fn block(frames: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        let first = 64usize;
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BLOCK_FIRST_PKT..BLOCK_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        let mut at = first;
        for (i, f) in frames.iter().enumerate() {
            let mac = 82u16; // TPACKET3_HDRLEN aligned + 2 (as the kernel does)
            let size = (usize::from(mac) + f.len()).div_ceil(16) * 16;
            let next = if i + 1 == frames.len() {
                0
            } else {
                size as u32
            };
            b[at + PKT_NEXT..at + PKT_NEXT + 4].copy_from_slice(&next.to_ne_bytes());
            b[at + PKT_SNAPLEN..at + PKT_SNAPLEN + 4]
                .copy_from_slice(&(f.len() as u32).to_ne_bytes());
            b[at + PKT_LEN..at + PKT_LEN + 4].copy_from_slice(&(f.len() as u32 + 1).to_ne_bytes());
            b[at + PKT_MAC..at + PKT_MAC + 2].copy_from_slice(&mac.to_ne_bytes());
            let start = at + usize::from(mac);
            b[start..start + f.len()].copy_from_slice(f);
            at += size;
        }
        b
    }

    #[test]
    fn walks_every_frame_of_a_block_in_order() {
        let frames: [&[u8]; 3] = [&[1; 60], &[2; 1514], &[3; 42]];
        let b = block(&frames);
        let mut cursor = BlockCursor::open(&b);
        for f in frames {
            let got = cursor.next(&b).expect("a frame");
            assert_eq!(&b[got.start..got.start + got.len], f);
            assert_eq!(got.wire_len, f.len() + 1);
        }
        assert_eq!(cursor.next(&b), None);
        assert!(!cursor.corrupt);
    }

    #[test]
    fn an_empty_block_yields_nothing() {
        let b = block(&[]);
        let mut cursor = BlockCursor::open(&b);
        assert_eq!(cursor.next(&b), None);
        assert!(!cursor.corrupt);
    }

    #[test]
    fn a_frame_past_the_block_end_stops_the_walk_without_panic() {
        let mut b = block(&[&[1; 60], &[2; 60]]);
        // The second frame's snaplen now runs past the block.
        let second = 64 + (82 + 60usize).div_ceil(16) * 16;
        b[second + PKT_SNAPLEN..second + PKT_SNAPLEN + 4]
            .copy_from_slice(&100_000u32.to_ne_bytes());
        let mut cursor = BlockCursor::open(&b);
        assert!(cursor.next(&b).is_some());
        assert_eq!(cursor.next(&b), None);
        assert!(cursor.corrupt);
    }

    #[test]
    fn a_missing_link_marks_the_block_corrupt() {
        let mut b = block(&[&[1; 60], &[2; 60]]);
        b[64 + PKT_NEXT..64 + PKT_NEXT + 4].copy_from_slice(&0u32.to_ne_bytes());
        let mut cursor = BlockCursor::open(&b);
        assert!(cursor.next(&b).is_some());
        assert_eq!(cursor.next(&b), None);
        assert!(cursor.corrupt);
    }

    #[test]
    fn a_truncated_block_is_corrupt() {
        let mut cursor = BlockCursor::open(&[0u8; 8]);
        assert!(cursor.corrupt);
        assert_eq!(cursor.next(&[0u8; 8]), None);
    }

    #[test]
    fn layout_matches_the_kernel_headers() {
        assert_eq!(BLOCK_STATUS, 8);
        assert_eq!(PKT_STATUS, 20);
        assert_eq!(TX_DATA_OFFSET, 48);
    }

    #[test]
    fn geometry_fits_slots_into_page_sized_blocks() {
        let g = Geometry::new(1 << 18, 8, 1, 1000, 2000, 4096).expect("valid");
        assert_eq!(g.tx.tp_frame_size, 2048);
        assert_eq!(g.tx.tp_block_size % 4096, 0);
        assert_eq!(
            g.tx.tp_frame_nr as usize,
            g.tx_per_block() * g.tx.tp_block_nr as usize
        );
        assert!(g.tx.tp_frame_nr >= 1000);
        assert_eq!(g.rx.tp_frame_nr, (1 << 18) / g.rx.tp_frame_size * 8);
        assert_eq!(g.rx_len(), 8 << 18);
        // Slots never straddle a block: the last slot of block 0 ends in it.
        let per = g.tx_per_block();
        assert!(g.tx_slot_offset(per - 1) + 2048 <= g.tx.tp_block_size as usize);
        assert_eq!(g.tx_slot_offset(per), g.tx.tp_block_size as usize);
    }

    #[test]
    fn geometry_handles_jumbo_frames() {
        let g = Geometry::new(1 << 16, 4, 1, 64, 9018, 4096).expect("valid");
        assert!(g.tx.tp_frame_size as usize >= TX_DATA_OFFSET + 9018);
        assert!(g.tx_per_block() >= 1);
        assert!(g.tx.tp_frame_nr >= 64);
    }

    #[test]
    fn geometry_rejects_what_the_kernel_would() {
        let cases = [
            (
                "block not a page multiple",
                Geometry::new(5000, 4, 1, 64, 2000, 4096),
            ),
            (
                "block smaller than a frame",
                Geometry::new(4096, 4, 1, 64, 9018, 4096),
            ),
            ("no blocks", Geometry::new(1 << 16, 0, 1, 64, 2000, 4096)),
            ("no tx slots", Geometry::new(1 << 16, 4, 1, 0, 2000, 4096)),
            (
                "no retire timeout",
                Geometry::new(1 << 16, 4, 0, 64, 2000, 4096),
            ),
            ("tiny max_frame", Geometry::new(1 << 16, 4, 1, 64, 10, 4096)),
        ];
        for (what, result) in cases {
            assert!(result.is_err(), "{what}");
        }
    }
}
