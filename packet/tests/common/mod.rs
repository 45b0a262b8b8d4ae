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

/// Writes `frames` to a capture named `name` in a temporary folder and has
/// tshark read it twice: with `args` (`-T fields -e …`, preferences), and
/// with `-V` (every field and the expert info, for "Malformed" and the
/// checksum statuses). Returns both outputs; a tshark that fails fails the
/// test with its message.
pub fn tshark(name: &str, frames: &[Vec<u8>], args: &[&str]) -> (String, String) {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("xvs-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join(format!("{name}.pcap"));
    write_pcap(&pcap, frames);
    let fields = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args(args)
        .output()
        .unwrap();
    let verbose = Command::new("tshark")
        .args(["-n", "-V", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&fields.stderr);
    assert!(fields.status.success(), "tshark: {stderr}");
    (
        String::from_utf8(fields.stdout).unwrap(),
        String::from_utf8(verbose.stdout).unwrap(),
    )
}
