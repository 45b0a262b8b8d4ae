//! Connection-table benchmarks (issue 4): lookups with 1M connections in
//! the table (target ≤ 40 ns, the table's share of a ≤ 100 ns frame), the
//! reply-direction lookup, insert, a state update, and lookups on one and
//! two threads (two must give ≥ 1.7× the throughput of one). The memory per
//! connection, both indexes included, is printed before the runs.
//!
//! Keys are visited in a scattered order over the whole table, so lookups
//! pay the cache misses a busy director pays, not a hot-cache best case.
//!
//! `cargo bench -p xvs-director --bench conntable -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xvs_director::ForwardMethod;
use xvs_director::conn::{ConnTable, NewConnection, PacketDirection, TcpEvent, Timeouts};
use xvs_packet::{FlowKey, IpProtocol};

const CONNS: usize = 1_000_000;
const CAPACITY: u32 = 1 << 20;
/// Far in the future: nothing expires during a run.
const TIMEOUT: u64 = 1 << 36;

fn connection(i: usize) -> NewConnection {
    // Clients spread over 198.18.0.0/15 with varied ports, five real servers.
    let i = i as u32;
    NewConnection {
        proto: IpProtocol::Tcp,
        client: IpAddr::V4(Ipv4Addr::from(0xc612_0000 | (i >> 4))),
        cport: 1024 + (i & 0xf) as u16 * 3001,
        vip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        vport: 80,
        real_server: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11 + (i % 5) as u8)),
        rport: 80,
        server_id: i % 5,
        method: ForwardMethod::Nat,
        template: false,
    }
}

fn inbound_key(c: &NewConnection) -> FlowKey {
    FlowKey {
        proto: c.proto,
        src: c.client,
        dst: c.vip,
        sport: c.cport,
        dport: c.vport,
    }
}

fn reply_key(c: &NewConnection) -> FlowKey {
    FlowKey {
        proto: c.proto,
        src: c.real_server,
        dst: c.client,
        sport: c.rport,
        dport: c.cport,
    }
}

struct Fixture {
    table: ConnTable,
    inbound: Vec<FlowKey>,
    reply: Vec<FlowKey>,
}

fn fixture() -> Fixture {
    let table = ConnTable::new(CAPACITY, 0x5eed);
    let mut inbound = Vec::with_capacity(CONNS);
    let mut reply = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let c = connection(i);
        table.insert(&c, 0, TIMEOUT).expect("the table has room");
        inbound.push(inbound_key(&c));
        reply.push(reply_key(&c));
    }
    // Scatter the visiting order (a fixed stride co-prime with CONNS).
    let order = |keys: Vec<FlowKey>| -> Vec<FlowKey> {
        (0..CONNS).map(|i| keys[(i * 7_368_787) % CONNS]).collect()
    };
    Fixture {
        table,
        inbound: order(inbound),
        reply: order(reply),
    }
}

/// `per_thread` lookups on each of `threads` threads at once; wall time.
fn lookups_on_threads(f: &Fixture, threads: usize, per_thread: u64, batched: bool) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let batch = ConnTable::BATCH;
                let mut i = t * (CONNS / threads.max(1));
                let mut out = vec![None; batch];
                let mut found = 0u64;
                let mut done = 0;
                while done < per_thread {
                    if i + batch > CONNS {
                        i = 0;
                    }
                    if batched {
                        f.table
                            .lookup_inbound_batch(&f.inbound[i..i + batch], 1, &mut out);
                        found += out.iter().filter(|o| o.is_some()).count() as u64;
                    } else {
                        for k in &f.inbound[i..i + batch] {
                            found += u64::from(f.table.lookup_inbound(k, 1).is_some());
                        }
                    }
                    i += batch;
                    done += batch as u64;
                }
                black_box(found);
            });
        }
    });
    start.elapsed()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    println!(
        "conntable: {} connections in a table of {}; {:.1} bytes per connection including both indexes ({} MiB)",
        f.table.len(),
        f.table.capacity(),
        f.table.bytes_per_entry(),
        f.table.memory_bytes() >> 20
    );

    let mut g = c.benchmark_group("conntable_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("lookup_inbound", |b| {
        b.iter(|| {
            i = if i + 1 == CONNS { 0 } else { i + 1 };
            black_box(f.table.lookup_inbound(black_box(&f.inbound[i]), 1))
        });
    });
    // A receive burst: BATCH lookups whose cache misses overlap.
    let mut i = 0;
    let mut out = vec![None; ConnTable::BATCH];
    g.throughput(Throughput::Elements(ConnTable::BATCH as u64));
    g.bench_function("lookup_inbound_batch", |b| {
        b.iter(|| {
            i = if i + 2 * ConnTable::BATCH >= CONNS {
                0
            } else {
                i + ConnTable::BATCH
            };
            f.table.lookup_inbound_batch(
                black_box(&f.inbound[i..i + ConnTable::BATCH]),
                1,
                &mut out,
            );
            black_box(&out);
        });
    });
    let mut i = 0;
    g.bench_function("lookup_reply_batch", |b| {
        b.iter(|| {
            i = if i + 2 * ConnTable::BATCH >= CONNS {
                0
            } else {
                i + ConnTable::BATCH
            };
            f.table
                .lookup_reply_batch(black_box(&f.reply[i..i + ConnTable::BATCH]), 1, &mut out);
            black_box(&out);
        });
    });
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("lookup_reply", |b| {
        b.iter(|| {
            i = if i + 1 == CONNS { 0 } else { i + 1 };
            black_box(f.table.lookup_reply(black_box(&f.reply[i]), 1))
        });
    });
    let mut i = 0;
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            i = if i + 1 == CONNS { 0 } else { i + 1 };
            let mut k = f.inbound[i];
            k.dport = 81;
            black_box(f.table.lookup_inbound(black_box(&k), 1))
        });
    });
    let timeouts = Timeouts::default();
    let mut i = 0;
    g.bench_function("lookup_then_tcp_ack", |b| {
        b.iter(|| {
            i = if i + 1 == CONNS { 0 } else { i + 1 };
            if let Some(conn) = f.table.lookup_inbound(&f.inbound[i], 1) {
                let t = f.table.on_tcp_segment(
                    conn.handle,
                    PacketDirection::FromClient,
                    TcpEvent::Ack,
                    1,
                    &timeouts,
                );
                black_box(t.ok());
            }
        });
    });
    // Insert into the 1M table (48k free entries) and remove again, so the
    // table stays at 1M: one insert + one remove per iteration.
    let mut n = 0usize;
    g.bench_function("insert_and_remove", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut conn = connection(n % CONNS);
            conn.vport = 443;
            let h = f.table.insert(&conn, 0, TIMEOUT).expect("room");
            black_box(f.table.remove(h))
        });
    });
    g.finish();

    // The machine's floor for comparison: one random 8-byte read from a
    // 104 MiB array (what a lookup's bucket read costs at best), alone and
    // sixteen independent ones at a time.
    let words = f.table.memory_bytes() / 8;
    let big: Vec<u64> = (0..words as u64).collect();
    let mut g = c.benchmark_group("memory_floor_104MiB");
    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_read", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(big[i.wrapping_mul(7_368_787) % words])
        });
    });
    g.throughput(Throughput::Elements(16));
    g.bench_function("random_read_x16", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for _ in 0..16 {
                i = i.wrapping_add(1);
                sum = sum.wrapping_add(big[i.wrapping_mul(7_368_787) % words]);
            }
            black_box(sum)
        });
    });
    g.finish();
    drop(big);

    let mut g = c.benchmark_group("conntable_1M_threads");
    for batched in [false, true] {
        for threads in [1usize, 2] {
            let name = if batched {
                "lookup_inbound_batch"
            } else {
                "lookup_inbound"
            };
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(format!("{name}_{threads}_threads"), |b| {
                b.iter_custom(|iters| lookups_on_threads(&f, threads, iters, batched));
            });
        }
    }
    g.finish();

    // The scaling figure itself, measured in one go so that it can be quoted.
    let per_thread = 4_000_000;
    let mpps = |threads: u64, d: Duration| (threads * per_thread) as f64 / d.as_secs_f64() / 1e6;
    for batched in [false, true] {
        let one = lookups_on_threads(&f, 1, per_thread, batched);
        let two = lookups_on_threads(&f, 2, per_thread, batched);
        println!(
            "conntable: {} lookups/s on 1 thread {:.1} M, on 2 threads {:.1} M: scaling {:.2}x",
            if batched { "batched" } else { "single" },
            mpps(1, one),
            mpps(2, two),
            mpps(2, two) / mpps(1, one)
        );
    }
}

criterion_group!(conntable, benches);
criterion_main!(conntable);
