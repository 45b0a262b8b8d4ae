//! The per-frame cost of the pipeline's two main paths, for instruction
//! profiles (`valgrind --tool=callgrind`) where the machine's timers are
//! too noisy. Builds the bench's director, then either processes the ACK
//! of one established VS/NAT flow `N` times (`ack`, the default), or the
//! SYNs of `N` fresh flows (`syn`: schedule, insert, forward; the clock
//! moves so that half-open connections expire, with housekeeping, as in the
//! criterion bench). Compare two values of `N` to take the set-up out.
//!
//! `valgrind --tool=callgrind target/release/examples/hot_profile 200000 [ack|syn|syn-hk] [sync]`
//! (`syn-hk` adds the housekeeping sweeps; `syn` needs `N` below the
//! table's capacity; `sync` turns the state sync's connection events on,
//! with queues that hold every event of a run of up to 2^20 frames, as a
//! daemon draining them keeps them from filling).
#![allow(clippy::unwrap_used)]

use etherparse::PacketBuilder;
use xvs_director::config::ClusterConfig;
use xvs_director::pipeline::{Director, HEADROOM, IfaceId};

/// The pipeline benchmark's cluster.
const CONFIG: &str = include_str!("../benches/pipeline.toml");

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let config = ClusterConfig::parse("bench.toml", CONFIG).unwrap();
    let director = Director::new(&config, 0, 0x5eed).unwrap();
    if std::env::args().nth(3).as_deref() == Some("sync") {
        // The same room whatever N, so that setting it up cancels out.
        let room = 1 << 20;
        let feed = xvs_director::conn::ConnFeed::new(room, room);
        director.set_feed(Some(std::sync::Arc::new(feed)));
    }
    let mut worker = director.worker(1);
    let frame = |syn: bool| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 1, 0xfe], [2, 0, 0, 0, 1, 1])
            .ipv4([10, 0, 0, 1], [203, 0, 113, 10], 64)
            .tcp(40000, 80, 1, 65_535);
        let b = if syn { b.syn() } else { b.ack(1) };
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    };
    let mode = std::env::args().nth(2).unwrap_or_default();
    let syn_mode = mode.starts_with("syn");
    let housekeeping = mode == "syn-hk";
    let (syn, ack) = (frame(true), frame(false));
    let mut buf = vec![0u8; HEADROOM + 2048];
    for f in [&syn, &ack] {
        buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        director.process(&mut worker, &mut buf, HEADROOM, f.len(), IfaceId(0), 1);
    }
    let mut sent = 0usize;
    if syn_mode {
        let mut fresh = syn.clone();
        for i in 0..n {
            // A new client address and port per SYN (checksums are not
            // fixed up: the pipeline does not verify TCP checksums).
            let c = 0x0a10_0000u32 + (i as u32 >> 12);
            fresh[26..30].copy_from_slice(&c.to_be_bytes());
            fresh[34..36].copy_from_slice(&(1024 + (i & 0xfff) as u16 * 15).to_be_bytes());
            fresh[24..26].copy_from_slice(&[0, 0]);
            let sum = xvs_packet::checksum::checksum(&fresh[14..34]);
            fresh[24..26].copy_from_slice(&sum.to_be_bytes());
            buf[HEADROOM..HEADROOM + fresh.len()].copy_from_slice(&fresh);
            let now = 2 + (i as u64 / 32);
            let out = director.process(
                &mut worker,
                &mut buf,
                HEADROOM,
                fresh.len(),
                IfaceId(0),
                now,
            );
            sent += usize::from(matches!(
                out.verdict,
                xvs_director::pipeline::Verdict::Transmit { .. }
            ));
            if housekeeping && i % 32 == 31 {
                director.housekeeping(now, 4096);
            }
        }
        println!("{sent} of {n} forwarded");
        return;
    }
    for i in 0..n {
        buf[HEADROOM..HEADROOM + ack.len()].copy_from_slice(&ack);
        let out = director.process(
            &mut worker,
            &mut buf,
            HEADROOM,
            ack.len(),
            IfaceId(0),
            2 + (i as u64 >> 10),
        );
        sent += usize::from(matches!(
            out.verdict,
            xvs_director::pipeline::Verdict::Transmit { .. }
        ));
    }
    println!("{sent} of {n} forwarded");
}
