//! What the packet crate's integration tests share: the skip rules (the
//! director's one copy) and a pcap writer for tshark.
#![allow(
    dead_code,
    reason = "each test binary that includes this module uses its own part of it"
)]

#[path = "../../../director/tests/common/skip.rs"]
pub mod skip;

use std::path::Path;

/// Writes `frames` as a classic little-endian pcap file, one a second.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend([0u8; 8]);
    out.extend(65_535u32.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend((1_790_000_000 + i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    std::fs::write(path, out).unwrap();
}
