//! Sampling the load this real server reports: CPU and memory in use, packets
//! received and sent per second, disk reads and writes per second, the
//! 1-minute load average, and established connections to the service ports.
//!
//! The scope is the host, or one cgroup (a real server that is a container
//! or a service among others on the host): CPU, memory and disk then come
//! from the cgroup's files ([`cgroup`]), the rest stays the host's. Network
//! figures always come from the agent's own network namespace (/proc/net is
//! per namespace): run the agent in the real server's namespace.
//!
//! Host scope: CPU from /proc/stat (busy ticks over all ticks), memory from
//! /proc/meminfo (`MemTotal − MemAvailable`: page cache the kernel can drop
//! counts as free), packets from /proc/net/dev (every interface but lo),
//! disk operations from /proc/diskstats for whole disks only — a device
//! counts when `/sys/block/NAME/device` exists, which excludes partitions
//! (they are not in /sys/block), and loop, ram, zram, device-mapper and md
//! devices (no `device` link; their I/O lands on the disks below them and
//! would be counted twice). Cgroup scope: CPU time used over the cgroup's
//! quota (or every online CPU when it has none), memory in use over its
//! limit (or the host's memory), reads and writes its I/O statistics count.
//!
//! Every figure that cannot be read or parsed is reported as unknown (the
//! wire's all-ones sentinel) and logged once; a counter that went backwards
//! (a reset) gives one unknown rate. Rates need two samples: the first
//! sample after start has none.

pub mod cgroup;
pub mod procfs;

use std::io;
use std::path::{Path, PathBuf};

use xvs_packet::load_report::LoadFigures;

use self::cgroup::Cgroup;

/// What the figures describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole host (its /proc).
    Host,
    /// One cgroup (CPU, memory, disk).
    Cgroup(Cgroup),
}

/// The files the sampler reads; the tests and the benchmark give fixtures.
pub trait Files {
    /// The text of a file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether block device `name` is a whole disk (module doc).
    fn is_whole_disk(&self, name: &str) -> bool;
}

/// The real files.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFiles;

impl Files for HostFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn is_whole_disk(&self, name: &str) -> bool {
        !name.contains('/') && Path::new("/sys/block").join(name).join("device").exists()
    }
}

/// The figures that are rates or shares of time: counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    at_ms: u64,
    /// (busy, total) in one unit: host ticks, or cgroup nanoseconds used
    /// and the nanoseconds elapsed (total filled in by the next sample).
    cpu: Option<u64>,
    cpu_total: Option<u64>,
    packets: Option<(u64, u64)>,
    disk: Option<(u64, u64)>,
}

/// The figures, for the log line each logs once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Figure {
    Cpu,
    Memory,
    Packets,
    Disk,
    Load,
    Connections,
}

impl Figure {
    const fn name(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Memory => "memory",
            Self::Packets => "packets",
            Self::Disk => "disk operations",
            Self::Load => "load average",
            Self::Connections => "established connections",
        }
    }
}

/// Takes one sample per report, remembering the counters of the last one.
#[derive(Debug)]
pub struct Sampler {
    scope: Scope,
    proc: PathBuf,
    ports: Vec<u16>,
    last: Option<Counters>,
    warned: u8,
}

fn rate(now: u64, then: u64, ms: u64) -> Option<u32> {
    let delta = now.checked_sub(then)?;
    Some((delta.saturating_mul(1000) / ms.max(1)).min(u64::from(u32::MAX - 1)) as u32)
}

impl Sampler {
    /// A sampler of `scope` reading /proc at `proc` and counting
    /// connections to `ports`.
    pub fn new(scope: Scope, proc: impl Into<PathBuf>, ports: Vec<u16>) -> Self {
        Self {
            scope,
            proc: proc.into(),
            ports,
            last: None,
            warned: 0,
        }
    }

    fn read<T>(
        &mut self,
        files: &impl Files,
        figure: Figure,
        path: &Path,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let problem = match files.read(path) {
            Ok(text) => match parse(&text) {
                Some(v) => return Some(v),
                None => "unrecognised content".to_owned(),
            },
            Err(e) => e.to_string(),
        };
        let bit = 1 << figure as u8;
        if self.warned & bit == 0 {
            self.warned |= bit;
            log::warn!(
                "{}: cannot use {}: {problem}; reported as unknown (logged once)",
                figure.name(),
                path.display()
            );
        }
        None
    }

    /// The figures at `now_ms` (milliseconds on any monotonic clock).
    pub fn sample(&mut self, files: &impl Files, now_ms: u64) -> LoadFigures {
        let proc = self.proc.clone();
        let mut c = Counters {
            at_ms: now_ms,
            ..Counters::default()
        };
        let stat = self.read(files, Figure::Cpu, &proc.join("stat"), |t| {
            Some((procfs::parse_stat(t)?, procfs::count_cpus(t)?))
        });
        let meminfo = self.read(
            files,
            Figure::Memory,
            &proc.join("meminfo"),
            procfs::parse_meminfo,
        );
        let mut memory =
            meminfo.and_then(|(total, available)| procfs::used_permille(total, available));
        match self.scope.clone() {
            Scope::Host => {
                c.cpu = stat.map(|(t, _)| t.busy);
                c.cpu_total = stat.map(|(t, _)| t.total);
                c.disk = self.read(files, Figure::Disk, &proc.join("diskstats"), |t| {
                    procfs::parse_diskstats(t, |d| files.is_whole_disk(d))
                });
            }
            Scope::Cgroup(cg) => {
                let (file, ns_per_unit) = cg.cpu_usage_file();
                let used = self.read(files, Figure::Cpu, &file, |t| cg.parse_cpu_usage(t));
                let quota = match cg.cpu_quota_files() {
                    Some((q, p)) => {
                        let period = p.and_then(|p| files.read(&p).ok());
                        files
                            .read(&q)
                            .ok()
                            .and_then(|t| cgroup::parse_cpu_quota(&t, period.as_deref()))
                            .flatten()
                    }
                    None => None,
                };
                let millicpus = quota.or(stat.map(|(_, n)| u64::from(n) * 1000));
                c.cpu = used.map(|u| u.saturating_mul(ns_per_unit));
                // Nanoseconds of CPU the cgroup may use per millisecond.
                c.cpu_total = millicpus.map(|m| m.saturating_mul(1000));
                let (current, max) = cg.memory_files();
                let host_total = meminfo.map_or(u64::MAX, |(t, _)| t);
                let used = self.read(files, Figure::Memory, &current, cgroup::parse_number);
                let limit = files
                    .read(&max)
                    .ok()
                    .and_then(|t| cgroup::parse_memory_limit(&t, host_total))
                    .map(|l| l.unwrap_or(host_total));
                memory = match (used, limit) {
                    (Some(u), Some(l)) if l > 0 && l != u64::MAX => {
                        Some((u.saturating_mul(1000) / l).min(1000) as u16)
                    }
                    _ => None,
                };
                c.disk = self.read(files, Figure::Disk, &cg.io_file(), |t| cg.parse_io(t));
            }
        }
        c.packets = self.read(
            files,
            Figure::Packets,
            &proc.join("net/dev"),
            procfs::parse_net_dev,
        );
        let load1 = self.read(
            files,
            Figure::Load,
            &proc.join("loadavg"),
            procfs::parse_loadavg,
        );
        let ports = self.ports.clone();
        let established = if ports.is_empty() {
            None
        } else {
            let v4 = self.read(files, Figure::Connections, &proc.join("net/tcp"), |t| {
                procfs::count_established(t, &ports)
            });
            // No tcp6 file: IPv6 is off, which is not an unknown count.
            let v6 = match files.read(&proc.join("net/tcp6")) {
                Ok(t) => procfs::count_established(&t, &ports),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0),
                Err(_) => None,
            };
            v4.zip(v6).map(|(a, b)| a + b)
        };

        let last = self.last.replace(c);
        let mut figures = LoadFigures {
            memory_permille: memory,
            load1_centi: load1,
            established,
            ..LoadFigures::default()
        };
        if let Some(p) = last {
            let ms = now_ms.saturating_sub(p.at_ms);
            figures.cpu_permille = match (&self.scope, c.cpu, p.cpu, c.cpu_total, p.cpu_total) {
                (Scope::Host, Some(b), Some(pb), Some(t), Some(pt)) => {
                    let (busy, total) = (b.checked_sub(pb), t.checked_sub(pt));
                    busy.zip(total)
                        .filter(|&(_, t)| t > 0)
                        .map(|(b, t)| (b.saturating_mul(1000) / t).min(1000) as u16)
                }
                (Scope::Cgroup(_), Some(u), Some(pu), Some(per_ms), _) => u
                    .checked_sub(pu)
                    .filter(|_| ms > 0 && per_ms > 0)
                    .map(|d| (d.saturating_mul(1000) / per_ms.saturating_mul(ms)).min(1000) as u16),
                _ => None,
            };
            if let (Some((rx, tx)), Some((prx, ptx))) = (c.packets, p.packets) {
                figures.rx_packets_per_s = rate(rx, prx, ms);
                figures.tx_packets_per_s = rate(tx, ptx, ms);
            }
            if let (Some((r, w)), Some((pr, pw))) = (c.disk, p.disk) {
                figures.disk_reads_per_s = rate(r, pr, ms);
                figures.disk_writes_per_s = rate(w, pw, ms);
            }
        }
        figures
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Files from a map; anything else is missing.
    #[derive(Default)]
    struct Fixture(HashMap<PathBuf, String>);

    impl Fixture {
        fn from_dir(pairs: &[(&str, &str)]) -> Self {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
            let mut f = Self::default();
            for (path, name) in pairs {
                f.set(
                    path,
                    &std::fs::read_to_string(format!("{dir}{name}")).unwrap(),
                );
            }
            f
        }
        fn set(&mut self, path: &str, text: &str) {
            self.0.insert(PathBuf::from(path), text.to_owned());
        }
    }

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

    const HOST: &[(&str, &str)] = &[
        ("/proc/stat", "proc-stat"),
        ("/proc/meminfo", "proc-meminfo"),
        ("/proc/net/dev", "proc-net-dev"),
        ("/proc/diskstats", "proc-diskstats"),
        ("/proc/loadavg", "proc-loadavg"),
        ("/proc/net/tcp", "proc-net-tcp"),
        ("/proc/net/tcp6", "proc-net-tcp6"),
    ];

    #[test]
    fn host_scope_two_samples() {
        let mut files = Fixture::from_dir(HOST);
        let mut s = Sampler::new(Scope::Host, "/proc", vec![8080, 443]);
        let first = s.sample(&files, 10_000);
        assert_eq!(first.cpu_permille, None, "no rate from one sample");
        assert_eq!(first.rx_packets_per_s, None);
        assert_eq!(first.memory_permille, Some(44));
        assert_eq!(first.load1_centi, Some(470));
        assert_eq!(first.established, Some(5));
        // Half a second later: 50 of 100 ticks busy, 1000 packets in,
        // 10 disk reads.
        files.set(
            "/proc/stat",
            "cpu  260069 582996 125561 2142382 6988 0 4009 36929 0 0\ncpu0 1\n",
        );
        files.set(
            "/proc/net/dev",
            "h\nh\n lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n eth0: 0 6333 0 0 0 0 0 0 0 3008 0 0 0 0 0 0\n",
        );
        files.set(
            "/proc/diskstats",
            " 254 0 vda 717165 0 0 0 124035 0 0 0 0 0 0\n 254 1 vda1 99 0 0 0 99 0 0 0 0 0 0\n",
        );
        let second = s.sample(&files, 10_500);
        assert_eq!(second.cpu_permille, Some(500));
        assert_eq!(second.rx_packets_per_s, Some(2000));
        assert_eq!(second.tx_packets_per_s, Some(0));
        assert_eq!(second.disk_reads_per_s, Some(20));
        assert_eq!(second.disk_writes_per_s, Some(0));
    }

    #[test]
    fn missing_and_garbled_files_are_unknown_never_a_panic() {
        let mut files = Fixture::default();
        let mut s = Sampler::new(Scope::Host, "/proc", vec![80]);
        for _ in 0..2 {
            assert_eq!(s.sample(&files, 0), LoadFigures::default());
        }
        for (path, _) in HOST {
            files.set(path, "\u{0}garbage\n:\n1 2 3\n");
        }
        for at in [1000, 2000] {
            assert_eq!(s.sample(&files, at), LoadFigures::default());
        }
        // A counter that went backwards gives no rate.
        let mut files = Fixture::from_dir(HOST);
        let mut s = Sampler::new(Scope::Host, "/proc", vec![]);
        s.sample(&files, 0);
        files.set(
            "/proc/net/dev",
            "h\nh\n eth0: 0 1 0 0 0 0 0 0 0 1 0 0 0 0 0 0\n",
        );
        let f = s.sample(&files, 1000);
        assert_eq!(f.rx_packets_per_s, None);
        assert_eq!(f.established, None, "no service ports");
        assert_eq!(f.cpu_permille, None, "no CPU time passed");
        assert_eq!(f.disk_reads_per_s, Some(0));
    }

    #[test]
    fn cgroup_v1_scope() {
        let cg = Cgroup::V1 {
            cpuacct: "/cg/cpuacct/rs".into(),
            cpu: Some("/cg/cpu/rs".into()),
            memory: "/cg/memory/rs".into(),
            blkio: "/cg/blkio/rs".into(),
        };
        let mut files = Fixture::from_dir(&[
            ("/proc/stat", "proc-stat"),
            ("/proc/meminfo", "proc-meminfo"),
            ("/cg/cpuacct/rs/cpuacct.usage", "cgroup1-cpuacct.usage"),
            ("/cg/cpu/rs/cpu.cfs_quota_us", "cgroup1-cpu.cfs_quota_us"),
            ("/cg/cpu/rs/cpu.cfs_period_us", "cgroup1-cpu.cfs_period_us"),
            (
                "/cg/memory/rs/memory.usage_in_bytes",
                "cgroup1-memory.usage_in_bytes",
            ),
            (
                "/cg/memory/rs/memory.limit_in_bytes",
                "cgroup1-memory.limit_in_bytes",
            ),
            (
                "/cg/blkio/rs/blkio.throttle.io_serviced",
                "cgroup1-blkio.throttle.io_serviced",
            ),
        ]);
        let mut s = Sampler::new(Scope::Cgroup(cg), "/proc", vec![]);
        let first = s.sample(&files, 0);
        // 401408 bytes of the host's 24683792 KiB (no limit): under 1 ‰.
        assert_eq!(first.memory_permille, Some(0));
        // A quarter of a second of CPU in one second, with a quota of half
        // a CPU: 500 ‰; 4 more writes.
        files.set("/cg/cpuacct/rs/cpuacct.usage", "387916861\n");
        files.set(
            "/cg/blkio/rs/blkio.throttle.io_serviced",
            "254:0 Read 3\n254:0 Write 54\nTotal 57\n",
        );
        files.set("/cg/memory/rs/memory.limit_in_bytes", "802816\n");
        let second = s.sample(&files, 1000);
        assert_eq!(second.cpu_permille, Some(500));
        assert_eq!(second.disk_reads_per_s, Some(0));
        assert_eq!(second.disk_writes_per_s, Some(4));
        assert_eq!(second.memory_permille, Some(500));
    }

    #[test]
    fn cgroup_v2_scope_without_quota_uses_every_cpu() {
        let mut files = Fixture::from_dir(&[
            ("/proc/stat", "proc-stat"),
            ("/proc/meminfo", "proc-meminfo"),
            ("/cg/rs/cpu.stat", "cgroup2-cpu.stat"),
            ("/cg/rs/memory.current", "cgroup2-memory.current"),
            ("/cg/rs/memory.max", "cgroup2-memory.max"),
            ("/cg/rs/io.stat", "cgroup2-io.stat"),
        ]);
        files.set("/cg/rs/cpu.max", "max 100000\n");
        let mut s = Sampler::new(Scope::Cgroup(Cgroup::V2("/cg/rs".into())), "/proc", vec![]);
        assert_eq!(s.sample(&files, 0).memory_permille, Some(250));
        // One CPU-second in one second on a 2-CPU host: 500 ‰.
        files.set("/cg/rs/cpu.stat", "usage_usec 9770039018\n");
        assert_eq!(s.sample(&files, 1000).cpu_permille, Some(500));
    }
}
