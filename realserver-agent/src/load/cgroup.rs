//! A cgroup as the scope of the CPU, memory and disk figures: where its
//! files are (v2 or v1, detected), and parsers of those files (pure
//! functions over the text).
//!
//! v2: `cpu.stat` (`usage_usec`), `cpu.max` (quota), `memory.current` and
//! `memory.max`, `io.stat` (`rios`, `wios`). v1: `cpuacct.usage`
//! (nanoseconds), `cpu.cfs_quota_us`/`cpu.cfs_period_us`,
//! `memory.usage_in_bytes`/`memory.limit_in_bytes`,
//! `blkio.throttle.io_serviced` (`Read`, `Write`; some kernels count only
//! devices that have a throttle rule).

use std::path::{Path, PathBuf};

/// Which cgroup files a scope reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// The unified hierarchy: one directory.
    V2(PathBuf),
    /// One directory per v1 controller.
    V1 {
        /// Under the cpuacct controller.
        cpuacct: PathBuf,
        /// Under the cpu controller (quota), if mounted.
        cpu: Option<PathBuf>,
        /// Under the memory controller.
        memory: PathBuf,
        /// Under the blkio controller.
        blkio: PathBuf,
    },
}

/// A cgroup path that is in neither hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cgroup \"{path}\" was found neither in cgroup v2 ({root}/{path}/cpu.stat) nor under the v1 controllers ({root}/cpuacct/{path}): give its path relative to the hierarchy's root, as in /proc/PID/cgroup, or scope = \"host\""
)]
pub struct CgroupNotFound {
    /// The path asked for.
    pub path: String,
    /// Where cgroups are mounted.
    pub root: String,
}

impl Cgroup {
    /// Finds cgroup `path` (as /proc/PID/cgroup names it) under `root`
    /// (/sys/fs/cgroup): v2 when `root` is the unified hierarchy (it has
    /// `cgroup.controllers`) and the cgroup's `cpu.stat` is there, else v1
    /// when the cgroup exists under the cpuacct controller, else v2 under
    /// `root/unified` (the hybrid layout).
    pub fn find(root: &Path, path: &str) -> Result<Self, CgroupNotFound> {
        let rel = path.trim_start_matches('/');
        let v2 = |base: PathBuf| {
            let dir = base.join(rel);
            (base.join("cgroup.controllers").exists() && dir.join("cpu.stat").exists())
                .then_some(Self::V2(dir))
        };
        if let Some(found) = v2(root.to_path_buf()) {
            return Ok(found);
        }
        let controller = |names: &[&str]| {
            names
                .iter()
                .map(|n| root.join(n).join(rel))
                .find(|d| d.is_dir())
        };
        if let Some(cpuacct) = controller(&["cpuacct", "cpu,cpuacct"]) {
            return Ok(Self::V1 {
                cpuacct,
                cpu: controller(&["cpu", "cpu,cpuacct"]),
                memory: root.join("memory").join(rel),
                blkio: root.join("blkio").join(rel),
            });
        }
        v2(root.join("unified")).ok_or_else(|| CgroupNotFound {
            path: path.to_owned(),
            root: root.display().to_string(),
        })
    }

    /// The file holding CPU time used, and its unit in nanoseconds.
    pub fn cpu_usage_file(&self) -> (PathBuf, u64) {
        match self {
            Self::V2(d) => (d.join("cpu.stat"), 1000),
            Self::V1 { cpuacct, .. } => (cpuacct.join("cpuacct.usage"), 1),
        }
    }

    /// The files of the CPU quota (v2: one; v1: quota and period).
    pub fn cpu_quota_files(&self) -> Option<(PathBuf, Option<PathBuf>)> {
        match self {
            Self::V2(d) => Some((d.join("cpu.max"), None)),
            Self::V1 { cpu, .. } => cpu.as_ref().map(|c| {
                (
                    c.join("cpu.cfs_quota_us"),
                    Some(c.join("cpu.cfs_period_us")),
                )
            }),
        }
    }

    /// The files of memory in use and its limit.
    pub fn memory_files(&self) -> (PathBuf, PathBuf) {
        match self {
            Self::V2(d) => (d.join("memory.current"), d.join("memory.max")),
            Self::V1 { memory, .. } => (
                memory.join("memory.usage_in_bytes"),
                memory.join("memory.limit_in_bytes"),
            ),
        }
    }

    /// The file of I/O operations completed.
    pub fn io_file(&self) -> PathBuf {
        match self {
            Self::V2(d) => d.join("io.stat"),
            Self::V1 { blkio, .. } => blkio.join("blkio.throttle.io_serviced"),
        }
    }

    /// Parses [`io_file`](Self::io_file): (reads, writes).
    pub fn parse_io(&self, text: &str) -> Option<(u64, u64)> {
        match self {
            Self::V2(_) => parse_io_stat(text),
            Self::V1 { .. } => parse_io_serviced(text),
        }
    }

    /// Parses the CPU usage file (v2 `cpu.stat`, v1 `cpuacct.usage`) in
    /// its own unit.
    pub fn parse_cpu_usage(&self, text: &str) -> Option<u64> {
        match self {
            Self::V2(_) => parse_cpu_stat(text),
            Self::V1 { .. } => parse_number(text),
        }
    }
}

/// A file holding one unsigned number.
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `usage_usec` of a v2 `cpu.stat`.
pub fn parse_cpu_stat(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()
}

/// A memory limit: a number, or none (`max` in v2, v1's page-rounded
/// `i64::MAX`, anything above `ceiling`, the host's memory).
pub fn parse_memory_limit(text: &str, ceiling: u64) -> Option<Option<u64>> {
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    let v: u64 = t.parse().ok()?;
    Some((v < ceiling).then_some(v))
}

/// A CPU quota in thousandths of a CPU: v2 `cpu.max` ("max 100000" or
/// "QUOTA PERIOD"), or v1 quota (-1 = none) and period files. `None` in
/// the result means no quota.
pub fn parse_cpu_quota(quota: &str, period: Option<&str>) -> Option<Option<u64>> {
    let (q, p) = match period {
        None => {
            let mut f = quota.split_whitespace();
            (f.next()?, f.next()?)
        }
        Some(p) => (quota.trim(), p.trim()),
    };
    if q == "max" || q == "-1" {
        return Some(None);
    }
    let (q, p): (u64, u64) = (q.parse().ok()?, p.parse().ok()?);
    (p > 0).then(|| Some(q * 1000 / p))
}

/// Reads and writes of a v2 `io.stat`, summed over devices.
pub fn parse_io_stat(text: &str) -> Option<(u64, u64)> {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            match kv.split_once('=')? {
                ("rios", v) => r = r.wrapping_add(v.parse().ok()?),
                ("wios", v) => w = w.wrapping_add(v.parse().ok()?),
                _ => {}
            }
        }
    }
    Some((r, w))
}

/// Reads and writes of a v1 `blkio.throttle.io_serviced`, summed over
/// devices (the `MAJ:MIN Read N` and `MAJ:MIN Write N` lines).
pub fn parse_io_serviced(text: &str) -> Option<(u64, u64)> {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, "Read", n] => r = r.wrapping_add(n.parse().ok()?),
            [_, "Write", n] => w = w.wrapping_add(n.parse().ok()?),
            [_, _, n] | ["Total", n] => {
                n.parse::<u64>().ok()?;
            }
            [] => {}
            _ => return None,
        }
    }
    Some((r, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read_to_string(format!("{path}{name}")).unwrap()
    }

    #[test]
    fn v2_files() {
        assert_eq!(
            parse_cpu_stat(&fixture("cgroup2-cpu.stat")),
            Some(9769039018)
        );
        assert_eq!(
            parse_number(&fixture("cgroup2-memory.current")),
            Some(1 << 30)
        );
        assert_eq!(
            parse_memory_limit(&fixture("cgroup2-memory.max"), u64::MAX),
            Some(Some(4 << 30))
        );
        assert_eq!(
            parse_memory_limit(&fixture("cgroup2-memory.max.unlimited"), u64::MAX),
            Some(None)
        );
        assert_eq!(
            parse_cpu_quota(&fixture("cgroup2-cpu.max"), None),
            Some(Some(2000))
        );
        assert_eq!(parse_cpu_quota("max 100000\n", None), Some(None));
        assert_eq!(
            parse_io_stat(&fixture("cgroup2-io.stat")),
            Some((192 + 8950, 353 + 1252))
        );
        assert_eq!(parse_io_stat("8:0 rios"), None);
        assert_eq!(parse_cpu_stat("user_usec 5\n"), None);
    }

    #[test]
    fn v1_files() {
        assert_eq!(
            parse_number(&fixture("cgroup1-cpuacct.usage")),
            Some(137916861)
        );
        assert_eq!(
            parse_number(&fixture("cgroup1-memory.usage_in_bytes")),
            Some(401408)
        );
        let host = 24683792 * 1024;
        assert_eq!(
            parse_memory_limit(&fixture("cgroup1-memory.limit_in_bytes"), host),
            Some(None),
            "unlimited"
        );
        assert_eq!(parse_memory_limit("1048576\n", host), Some(Some(1 << 20)));
        assert_eq!(
            parse_cpu_quota(
                &fixture("cgroup1-cpu.cfs_quota_us"),
                Some(&fixture("cgroup1-cpu.cfs_period_us"))
            ),
            Some(Some(500))
        );
        assert_eq!(parse_cpu_quota("-1", Some("100000")), Some(None));
        assert_eq!(
            parse_io_serviced(&fixture("cgroup1-blkio.throttle.io_serviced")),
            Some((3, 50))
        );
        assert_eq!(parse_io_serviced("Total 0\n"), Some((0, 0)));
        assert_eq!(parse_io_serviced("8:0 Read x\n"), None);
    }

    #[test]
    fn finds_v1_and_v2_layouts() {
        let root = std::env::temp_dir().join(format!("xvs-agent-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for c in ["cpuacct", "cpu", "memory", "blkio"] {
            std::fs::create_dir_all(root.join(c).join("web/nginx")).unwrap();
        }
        let found = Cgroup::find(&root, "/web/nginx").unwrap();
        assert_eq!(
            found.cpu_usage_file().0,
            root.join("cpuacct/web/nginx/cpuacct.usage")
        );
        assert_eq!(
            found.io_file(),
            root.join("blkio/web/nginx/blkio.throttle.io_serviced")
        );
        assert!(Cgroup::find(&root, "/other").is_err());

        // Hybrid: the v2 hierarchy at root/unified.
        std::fs::create_dir_all(root.join("unified/app")).unwrap();
        std::fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
        std::fs::write(root.join("unified/app/cpu.stat"), "usage_usec 1\n").unwrap();
        assert_eq!(
            Cgroup::find(&root, "app").unwrap(),
            Cgroup::V2(root.join("unified/app"))
        );
        let err = Cgroup::find(&root, "/missing").unwrap_err().to_string();
        assert!(err.contains("scope = \"host\""), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
