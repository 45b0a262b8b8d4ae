//! The cost of one load report on each side.
//!
//! - agent: one sample of the host scope from this machine's /proc fixture
//!   texts (parsing /proc/stat, meminfo, net/dev, diskstats, loadavg,
//!   net/tcp and tcp6) + encoding + HMAC-SHA256 signing;
//! - director: checking and verifying one received report (what its
//!   receiver pays per report before the replay check). Issue 15's target:
//!   10,000 agents at one report a second in under 5 % of a core, i.e.
//!   under 5 µs a report.
//!
//! Run: `cargo bench -p xvs-agent --bench report -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use xvs_agent::load::{Files, Sampler, Scope};
use xvs_packet::load_report::{
    AgentState, Identity, LoadReport, REPORT_LEN, ReportKey, ReportPacket,
};

/// The fixture texts, in memory (the file system is not what is measured).
struct Fixture(HashMap<PathBuf, String>);

impl Files for Fixture {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn is_whole_disk(&self, name: &str) -> bool {
        name == "vda"
    }
}

fn fixture() -> Fixture {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let files = [
        ("stat", "proc-stat"),
        ("meminfo", "proc-meminfo"),
        ("net/dev", "proc-net-dev"),
        ("diskstats", "proc-diskstats"),
        ("loadavg", "proc-loadavg"),
        ("net/tcp", "proc-net-tcp"),
        ("net/tcp6", "proc-net-tcp6"),
    ];
    Fixture(
        files
            .iter()
            .map(|(p, f)| {
                let text = std::fs::read_to_string(format!("{dir}{f}")).expect("fixture");
                (Path::new("/proc").join(p), text)
            })
            .collect(),
    )
}

fn report(key: &ReportKey) -> LoadReport {
    LoadReport {
        key_id: key.id(),
        identity: Identity::new("rs1.example").expect("identity"),
        address: "192.0.2.11".parse().expect("address"),
        timestamp_ms: 1_790_000_000_000,
        sequence: 1,
        interval_ms: 1000,
        state: AgentState::Ready,
        load: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let key = ReportKey::new(1, &[0x5a; 32]).expect("key");
    let files = fixture();
    let mut sampler = Sampler::new(Scope::Host, "/proc", vec![80, 443, 8080]);
    let mut now = 0;
    let mut buf = [0u8; REPORT_LEN];
    c.bench_function("agent: sample + encode + sign", |b| {
        b.iter(|| {
            now += 1000;
            let mut r = report(&key);
            r.load = sampler.sample(&files, now);
            black_box(r.encode(&key, &mut buf).expect("encode"))
        })
    });
    let mut signed = [0u8; REPORT_LEN];
    report(&key).encode(&key, &mut signed).expect("encode");
    c.bench_function("director: check + verify", |b| {
        b.iter(|| {
            let p = ReportPacket::new_checked(black_box(&signed[..])).expect("header");
            black_box(p.verify(&key).expect("verify"))
        })
    });
    c.bench_function("director: refuse a forged tag", |b| {
        let mut forged = signed;
        forged[REPORT_LEN - 1] ^= 1;
        b.iter(|| {
            let p = ReportPacket::new_checked(black_box(&forged[..])).expect("header");
            black_box(p.verify(&key).is_err())
        })
    });
}

criterion_group!(report_benches, benches);
criterion_main!(report_benches);
