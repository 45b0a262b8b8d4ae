//! Parsers of the /proc files the host scope reads: pure functions over
//! the text, `None` for text they do not recognise (never a panic).

/// CPU time from /proc/stat's first line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq + steal (guest time is already
    /// inside user and nice).
    pub busy: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

/// The aggregate `cpu` line of /proc/stat.
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Some(CpuTimes {
        busy,
        total: busy + field(3) + field(4),
    })
}

/// The CPUs online, counted from /proc/stat's `cpuN` lines.
pub fn count_cpus(text: &str) -> Option<u32> {
    let n = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (n > 0).then_some(n as u32)
}

/// (MemTotal, MemAvailable) in bytes, from /proc/meminfo.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|v| v * 1024)
    };
    Some((kib("MemTotal")?, kib("MemAvailable")?))
}

/// Memory in use, permille of `total`, when `available` of it is free.
pub fn used_permille(total: u64, available: u64) -> Option<u16> {
    (total > 0)
        .then(|| (total.saturating_sub(available).saturating_mul(1000) / total).min(1000) as u16)
}

/// Packets (received, sent) over every interface of /proc/net/dev but lo.
pub fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let (mut rx, mut tx, mut seen) = (0u64, 0u64, false);
    for line in text.lines().skip(2) {
        let (name, counters) = line.split_once(':')?;
        if name.trim() == "lo" {
            seen = true;
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // bytes packets errs drop fifo frame compressed multicast | bytes packets …
        rx = rx.wrapping_add(*v.get(1)?);
        tx = tx.wrapping_add(*v.get(9)?);
        seen = true;
    }
    seen.then_some((rx, tx))
}

/// Reads and writes completed on the devices `is_disk` accepts, from
/// /proc/diskstats (fields 4 and 8).
pub fn parse_diskstats(text: &str, is_disk: impl Fn(&str) -> bool) -> Option<(u64, u64)> {
    let (mut reads, mut writes) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let name = f.get(2)?;
        if !is_disk(name) {
            continue;
        }
        reads = reads.wrapping_add(f.get(3)?.parse::<u64>().ok()?);
        writes = writes.wrapping_add(f.get(7)?.parse::<u64>().ok()?);
    }
    Some((reads, writes))
}

/// The 1-minute load average of /proc/loadavg, in hundredths.
pub fn parse_loadavg(text: &str) -> Option<u32> {
    let first = text.split_whitespace().next()?;
    let (whole, frac) = first.split_once('.').unwrap_or((first, "0"));
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<u32>().ok()?.checked_mul(100)? + frac.get(..2)?.parse::<u32>().ok()?)
}

/// ESTABLISHED sockets of /proc/net/tcp or tcp6 whose local port is one
/// of `ports`.
pub fn count_established(text: &str, ports: &[u16]) -> Option<u32> {
    let mut n = 0;
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (_, local, _, state) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
        if state == "01" && ports.contains(&port) {
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
        std::fs::read_to_string(format!("{path}{name}")).unwrap()
    }

    #[test]
    fn stat_from_this_machine() {
        let text = fixture("proc-stat");
        let t = parse_stat(&text).unwrap();
        // cpu  260044 582996 125561 2142357 6988 0 4009 36929 0 0
        assert_eq!(t.busy, 260044 + 582996 + 125561 + 4009 + 36929);
        assert_eq!(t.total, t.busy + 2142357 + 6988);
        assert_eq!(count_cpus(&text), Some(2));
        assert_eq!(parse_stat("cpu 1 2"), None, "too few fields");
        assert_eq!(parse_stat("cpu 1 2 x 4"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn meminfo_from_this_machine() {
        let (total, available) = parse_meminfo(&fixture("proc-meminfo")).unwrap();
        assert_eq!(total, 24683792 * 1024);
        assert_eq!(available, 23580404 * 1024);
        assert_eq!(used_permille(total, available), Some(44));
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None, "no MemAvailable");
        assert_eq!(used_permille(0, 0), None);
    }

    #[test]
    fn net_dev_leaves_out_lo() {
        assert_eq!(parse_net_dev(&fixture("proc-net-dev")), Some((5333, 3008)));
        assert_eq!(parse_net_dev("a\nb\n  eth0: 1 2\n"), None, "short line");
        assert_eq!(parse_net_dev(""), None);
    }

    #[test]
    fn diskstats_counts_whole_disks_only() {
        let text = fixture("proc-diskstats");
        assert_eq!(
            parse_diskstats(&text, |d| d == "vda"),
            Some((717155, 124035))
        );
        assert_eq!(parse_diskstats(&text, |_| false), Some((0, 0)));
        assert_eq!(parse_diskstats("8 0 sda x 1 2 3 4", |_| true), None);
    }

    #[test]
    fn loadavg_in_hundredths() {
        assert_eq!(parse_loadavg(&fixture("proc-loadavg")), Some(470));
        assert_eq!(parse_loadavg("12.5 1 1"), Some(1250));
        assert_eq!(parse_loadavg("0.07"), Some(7));
        assert_eq!(parse_loadavg("3"), Some(300));
        assert_eq!(parse_loadavg("x.1"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn established_to_service_ports() {
        assert_eq!(
            count_established(&fixture("proc-net-tcp"), &[8080]),
            Some(3)
        );
        assert_eq!(
            count_established(&fixture("proc-net-tcp6"), &[443]),
            Some(2)
        );
        assert_eq!(
            count_established(&fixture("proc-net-tcp"), &[443, 22]),
            Some(0)
        );
        assert_eq!(count_established("hdr\n 0: zz", &[80]), None);
    }
}
