//! Per-frame pipeline benchmarks (issue 4): [`Director::process`] on
//! * an ACK of an established VS/NAT connection, client → real server,
//!   with 1M connections in the table (target ≤ 100 ns per frame, i.e.
//!   ≥ 10 Mpps per core), visiting the connections in a scattered order
//!   over the whole table, and one hot connection for reference;
//! * a real server's ACK on the NAT reply path, server → client, the same
//!   way;
//! * the SYN of a fresh flow (target ≥ 3 Mpps per core, ≤ 333 ns): a new
//!   connection is scheduled (wlc over five real servers), inserted and
//!   forwarded, in the same 1M table.
//!
//! What one iteration includes: copying a 54-byte template frame into the
//! receive buffer (the rewrite is in place, so every frame starts from its
//! template again; `frame_copy_only` measures that copy alone) and one
//! `process` call — parse, table lookup or schedule + insert, TCP state
//! update, NAT rewrite with incremental checksums, MACs. Templates are read
//! sequentially from an array laid out in the visiting order, so the copy
//! costs little; the table's cache misses are paid in full.
//!
//! The SYN path keeps the table from filling: SYN_RECV lasts 1 s in this
//! config and the clock moves 1 ms every 32 SYNs, with a housekeeping pass
//! of 4096 entries then (a full sweep every 268 ms of clock), so about 40k
//! half-open connections stay in the table next to the 1M established ones.
//! `syn_new_flow` times only the `process` calls (housekeeping is the
//! control thread's work); `syn_new_flow_with_housekeeping` times both.
//!
//! `cargo bench -p xvs-director --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use xvs_director::config::ClusterConfig;
use xvs_director::pipeline::{
    Burst, Director, HEADROOM, IfaceId, Outcome, RxFrame, Verdict, Worker,
};

const CONNS: usize = 1_000_000;
/// Fresh flows cycled through by the SYN benchmark.
const SYN_FLOWS: usize = 1 << 18;
/// Every template frame is 54 bytes (Ethernet, IPv4, TCP without options),
/// stored at this stride.
const FRAME_LEN: usize = 54;
const STRIDE: usize = 64;
const SYNS_PER_MS: u64 = 32;
const HOUSEKEEPING_BUDGET: usize = 4096;

const CLIENT_SIDE: IfaceId = IfaceId(0);
const SERVER_SIDE: IfaceId = IfaceId(1);
const CLIENT_IF_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const SERVER_IF_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];
const VIP: [u8; 4] = [203, 0, 113, 10];

/// The benchmark's cluster (shared with `examples/hot_profile.rs`).
const CONFIG: &str = include_str!("pipeline.toml");

/// Client `i`: 4096 ports on each of many addresses of 10.0.0.0/8 (off
/// link, behind the client-side router).
fn client(i: usize) -> ([u8; 4], u16) {
    let addr = Ipv4Addr::from(0x0a00_0000 | (i >> 12) as u32).octets();
    (addr, 1024 + (i & 0xfff) as u16 * 15)
}

#[derive(Clone, Copy)]
enum Flags {
    Syn,
    Ack,
}

fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, sport): ([u8; 4], u16),
    (dst, dport): ([u8; 4], u16),
    flags: Flags,
) -> Vec<u8> {
    let tcp = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 65_535);
    let tcp = match flags {
        Flags::Syn => tcp.syn(),
        Flags::Ack => tcp.ack(1),
    };
    let mut out = Vec::with_capacity(FRAME_LEN);
    tcp.write(&mut out, &[]).expect("a frame fits in a Vec");
    assert_eq!(out.len(), FRAME_LEN);
    out
}

/// Frames stored back to back at [`STRIDE`].
struct Templates(Vec<u8>);

impl Templates {
    fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n * STRIDE))
    }

    fn push(&mut self, frame: &[u8]) {
        self.0.extend_from_slice(frame);
        self.0.resize(self.0.len() + STRIDE - frame.len(), 0);
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.0[i * STRIDE..i * STRIDE + FRAME_LEN]
    }
}

struct Fixture {
    director: Director,
    worker: Worker,
    /// Client ACKs of the 1M connections, in the visiting order.
    inbound: Templates,
    /// Real servers' ACKs of the same connections, in the visiting order.
    reply: Templates,
    /// SYNs of flows that have no connection.
    syns: Templates,
    now: u64,
}

fn expect_transmit(verdict: Verdict, what: &str) -> usize {
    match verdict {
        Verdict::Transmit { len, .. } => len,
        other => panic!("{what}: {other:?}"),
    }
}

fn fixture() -> Fixture {
    let config = ClusterConfig::parse("bench.toml", CONFIG).expect("the bench config is valid");
    let director = Director::new(&config, 0, 0x5eed).expect("the bench config builds");
    let mut worker = director.worker(1);
    let mut buf = vec![0u8; HEADROOM + 2048];
    let now = 1;
    // Visit order: a fixed stride co-prime with CONNS scatters consecutive
    // frames over the whole table.
    let order = |j: usize| (j * 7_368_787) % CONNS;
    let mut real_server = vec![([0u8; 4], 0u16, [0u8; 6]); CONNS];
    for (i, rs) in real_server.iter_mut().enumerate() {
        let c = client(i);
        for flags in [Flags::Syn, Flags::Ack] {
            let f = frame(ROUTER_MAC, CLIENT_IF_MAC, c, (VIP, 80), flags);
            buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(&f);
            let out =
                director.process(&mut worker, &mut buf, HEADROOM, FRAME_LEN, CLIENT_SIDE, now);
            expect_transmit(out.verdict, "pre-populating");
            let dest = *director
                .state()
                .dests
                .get(out.dest.expect("forwarded"))
                .expect("a destination of the state");
            let std::net::IpAddr::V4(addr) = dest.addr else {
                unreachable!("IPv4 real servers")
            };
            let addr = addr.octets();
            *rs = (addr, dest.port, [2, 0, 0, 0, 2, addr[3]]);
        }
    }
    assert_eq!(director.table().len(), CONNS);
    let mut inbound = Templates::with_capacity(CONNS);
    let mut reply = Templates::with_capacity(CONNS);
    for j in 0..CONNS {
        let i = order(j);
        let c = client(i);
        let (addr, port, mac) = real_server[i];
        inbound.push(&frame(ROUTER_MAC, CLIENT_IF_MAC, c, (VIP, 80), Flags::Ack));
        reply.push(&frame(mac, SERVER_IF_MAC, (addr, port), c, Flags::Ack));
    }
    let mut syns = Templates::with_capacity(SYN_FLOWS);
    for i in 0..SYN_FLOWS {
        // Clients beyond the pre-populated ones.
        syns.push(&frame(
            ROUTER_MAC,
            CLIENT_IF_MAC,
            client(CONNS + (1 << 12) + i),
            (VIP, 80),
            Flags::Syn,
        ));
    }
    Fixture {
        director,
        worker,
        inbound,
        reply,
        syns,
        now,
    }
}

/// Copies template `i` into `buf` and processes it; returns the length
/// transmitted (0 if not transmitted).
#[inline(always)]
fn run_one(f: &mut Fixture, which: Which, i: usize, buf: &mut [u8], now: u64) -> usize {
    let (templates, rx) = match which {
        Which::Inbound => (&f.inbound, CLIENT_SIDE),
        Which::Reply => (&f.reply, SERVER_SIDE),
        Which::Syn => (&f.syns, CLIENT_SIDE),
    };
    buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(templates.get(i));
    let out = f
        .director
        .process(&mut f.worker, buf, HEADROOM, FRAME_LEN, rx, now);
    match out.verdict {
        Verdict::Transmit { len, .. } => len,
        _ => 0,
    }
}

/// Frames per receive burst in the burst benchmarks.
const BURST: usize = 64;

/// A receive burst: one buffer per frame, all from one interface.
struct Bufs {
    bufs: Vec<Vec<u8>>,
    rx: IfaceId,
}

impl Burst for Bufs {
    fn len(&self) -> usize {
        self.bufs.len()
    }

    fn frame(&mut self, i: usize) -> RxFrame<'_> {
        RxFrame {
            buf: &mut self.bufs[i],
            start: HEADROOM,
            len: FRAME_LEN,
            rx: self.rx,
        }
    }
}

#[derive(Clone, Copy)]
enum Which {
    Inbound,
    Reply,
    Syn,
}

fn benches(c: &mut Criterion) {
    let started = Instant::now();
    let mut f = fixture();
    println!(
        "pipeline: {} connections in a table of {} ({} MiB), set up in {:.1?}",
        f.director.table().len(),
        f.director.table().capacity(),
        f.director.table().memory_bytes() >> 20,
        started.elapsed()
    );
    let mut buf = vec![0u8; HEADROOM + 2048];
    let now = f.now;

    let mut g = c.benchmark_group("pipeline_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("frame_copy_only", |b| {
        b.iter(|| {
            i = if i + 1 == CONNS { 0 } else { i + 1 };
            buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(f.inbound.get(i));
            black_box(&mut buf);
        });
    });
    for (name, which) in [
        ("nat_inbound_established", Which::Inbound),
        ("nat_reply", Which::Reply),
    ] {
        let mut i = 0;
        g.bench_function(format!("{name}_scattered"), |b| {
            b.iter(|| {
                i = if i + 1 == CONNS { 0 } else { i + 1 };
                black_box(run_one(&mut f, which, i, &mut buf, now))
            });
        });
        g.bench_function(format!("{name}_hot"), |b| {
            b.iter(|| black_box(run_one(&mut f, which, 12_345, &mut buf, now)));
        });
    }

    g.finish();

    // The same frames in receive bursts of 64 (`process_burst`), as live
    // workers hand them over: throughput is per frame.
    let mut g = c.benchmark_group("pipeline_1M_burst64");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut bursts = Bufs {
        bufs: (0..BURST).map(|_| vec![0u8; HEADROOM + 2048]).collect(),
        rx: CLIENT_SIDE,
    };
    let mut outcomes = [Outcome {
        verdict: Verdict::PassToKernel,
        dest: None,
    }; BURST];
    for (name, which) in [
        ("nat_inbound_established", Which::Inbound),
        ("nat_reply", Which::Reply),
    ] {
        let (templates, rx) = match which {
            Which::Inbound => (&f.inbound, CLIENT_SIDE),
            _ => (&f.reply, SERVER_SIDE),
        };
        bursts.rx = rx;
        let mut i = 0;
        g.bench_function(format!("{name}_scattered"), |b| {
            b.iter(|| {
                for buf in &mut bursts.bufs {
                    i = if i + 1 == CONNS { 0 } else { i + 1 };
                    buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(templates.get(i));
                }
                let n = f
                    .director
                    .process_burst(&mut f.worker, &mut bursts, now, &mut outcomes);
                black_box(n)
            });
        });
    }
    // Fresh SYNs in bursts of 64: the clock moves 2 ms and the sweeper
    // runs between bursts (the same 32 SYNs per ms as below), untimed.
    let mut syn_now = now;
    let mut syn_next = SYN_FLOWS / 2;
    bursts.rx = CLIENT_SIDE;
    g.bench_function("syn_new_flow", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                for buf in &mut bursts.bufs {
                    syn_next = if syn_next + 1 == SYN_FLOWS {
                        0
                    } else {
                        syn_next + 1
                    };
                    buf[HEADROOM..HEADROOM + FRAME_LEN].copy_from_slice(f.syns.get(syn_next));
                }
                let start = Instant::now();
                black_box(f.director.process_burst(
                    &mut f.worker,
                    &mut bursts,
                    syn_now,
                    &mut outcomes,
                ));
                timed += start.elapsed();
                syn_now += BURST as u64 / SYNS_PER_MS;
                f.director.housekeeping(syn_now, HOUSEKEEPING_BUDGET * 2);
            }
            timed
        });
    });
    g.finish();
    let mut g = c.benchmark_group("pipeline_1M");
    g.throughput(Throughput::Elements(1));

    // Fresh SYNs: batches of SYNS_PER_MS timed, the clock and the sweeper
    // advanced between batches.
    // Continue where the burst SYNs left the clock and the flows.
    let mut now = syn_now;
    let mut next = syn_next;
    g.bench_function("syn_new_flow", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let batch = SYNS_PER_MS.min(iters - done);
                let start = Instant::now();
                for _ in 0..batch {
                    next = if next + 1 == SYN_FLOWS { 0 } else { next + 1 };
                    black_box(run_one(&mut f, Which::Syn, next, &mut buf, now));
                }
                timed += start.elapsed();
                done += batch;
                now += 1;
                f.director.housekeeping(now, HOUSEKEEPING_BUDGET);
            }
            timed
        });
    });
    let mut in_batch = 0;
    g.bench_function("syn_new_flow_with_housekeeping", |b| {
        b.iter(|| {
            next = if next + 1 == SYN_FLOWS { 0 } else { next + 1 };
            let len = run_one(&mut f, Which::Syn, next, &mut buf, now);
            in_batch += 1;
            if in_batch == SYNS_PER_MS {
                in_batch = 0;
                now += 1;
                f.director.housekeeping(now, HOUSEKEEPING_BUDGET);
            }
            black_box(len)
        });
    });
    g.finish();

    let counters = &f.worker.counters;
    let drops: u64 = counters.drops.iter().sum();
    println!(
        "pipeline: after the runs {} frames, {} transmitted, {} dropped, {} stateless (table full: {} refused); {} entries in the table; clock at {} ms",
        counters.frames,
        counters.transmitted,
        drops,
        counters.stateless,
        f.director.table().refused_full(),
        f.director.table().len(),
        now
    );
    assert_eq!(drops, 0, "a benchmarked frame was dropped");
    assert_eq!(counters.stateless, 0, "the SYN benchmark filled the table");
    assert_eq!(counters.frames, counters.transmitted);
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
