//! `schedule()` cost for the common algorithms at 10 and 1000 real servers,
//! and the Maglev table build for 1000 servers at 65537 slots (the Maglev
//! paper reports 1.8 ms for that build).
//!
//! Run: `cargo bench -p xvs-sched --bench schedule -- --warm-up-time 1 --measurement-time 3`

use core::net::{IpAddr, Ipv4Addr};
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use xvs_packet::{FlowKey, IpProtocol};
use xvs_sched::mh::MaglevHashing;
use xvs_sched::{
    MhTableSize, RealServerId, RealServerSpec, SchedContext, Service, ServiceConfig, SplitMix64,
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn service(name: &str, n: usize, table: MhTableSize) -> Service {
    let mut c = ServiceConfig::tcp(VIP, 80);
    c.options.mh_table_size = table;
    let mut s = Service::new(c, "rr", 0).expect("scheduler name");
    for i in 0..n {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0A00_0001u32 + i as u32));
        let weight = 1 + (i as u32 % 5);
        s.add_server(&RealServerSpec::new(addr, 80, weight))
            .expect("distinct servers");
    }
    // Some load so that the least-connection scans compare real numbers.
    for i in 0..n {
        let id = RealServerId(i as u32);
        for _ in 0..(i * 7919 % 13) {
            s.servers().bind_conn(id);
        }
    }
    s.set_scheduler(name, 0).expect("scheduler name");
    s
}

fn flows() -> Vec<FlowKey> {
    let mut rng = SplitMix64::new(7);
    (0..1024)
        .map(|_| {
            let r = rng.next_u64();
            FlowKey {
                proto: IpProtocol::Tcp,
                src: IpAddr::V4(Ipv4Addr::from(r as u32)),
                dst: VIP,
                sport: (r >> 32) as u16,
                dport: 80,
            }
        })
        .collect()
}

fn bench_schedule(c: &mut Criterion) {
    let flows = flows();
    let mut group = c.benchmark_group("schedule");
    for name in ["rr", "wrr", "wlc", "sh", "mh"] {
        for n in [10usize, 1000] {
            let s = service(name, n, MhTableSize::DEFAULT);
            let mut rng = SplitMix64::new(1);
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let f = &flows[i & 1023];
                    i = i.wrapping_add(1);
                    let mut ctx = SchedContext {
                        now: 0,
                        random: &mut rng,
                    };
                    black_box(s.schedule(black_box(f), &mut ctx))
                });
            });
        }
    }
    group.finish();
}

fn bench_mh_build(c: &mut Criterion) {
    let s = service("rr", 1000, MhTableSize::DEFAULT);
    let size = MhTableSize::new(65537).expect("65537 is selectable");
    c.bench_function("mh_build/1000_servers_65537_slots", |b| {
        b.iter(|| black_box(MaglevHashing::build_table(black_box(s.servers()), size)));
    });
}

criterion_group!(benches, bench_schedule, bench_mh_build);
criterion_main!(benches);
