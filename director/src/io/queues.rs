//! Which receive queues the director serves, and which worker serves each.
//!
//! A NIC spreads the flows it receives over its receive queues (RSS; a
//! veth: the queue its peer transmitted on), and an AF_XDP socket receives
//! the frames of one queue only. The XDP program redirects a frame to the
//! socket of the queue it arrived on; on a queue without one the frame goes
//! to the kernel, which answers a SYN to a local VIP with a reset. So on
//! AF_XDP every receive queue of every interface is served by default, and
//! a worker may serve several (one socket per queue, all on its one UMEM).
//!
//! `--queues N` serves the first N queues only (0 to N-1), and is refused when an AF_XDP
//! interface has more: the remedy, steering the NIC onto fewer queues
//! (`ethtool -L`), changes the host's configuration, which is the
//! operator's call and not the director's — and a veth cannot be steered
//! at all (its receive queue is the one its peer picked).
//!
//! Workers: a worker transmits on an AF_XDP interface through a socket of
//! its own there, and a queue takes the sockets of one UMEM only, so there
//! are at most as many workers as the AF_XDP interface with the fewest
//! queues has; by default also at most one per CPU. Queue `q` of an
//! interface goes to worker `q mod workers`.
//!
//! AF_PACKET: a packet socket receives the frames of every queue, and the
//! workers share each interface through a fanout group: queues constrain
//! nothing there, and `--queues N` (without `--workers`) keeps meaning N
//! workers, as it always has.

use super::xdp::MAX_QUEUES;

/// What `--queues` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueCount {
    /// Every receive queue of every interface (the default).
    #[default]
    All,
    /// The first N queues of every interface (0 to N-1; all of an
    /// interface that has fewer).
    First(u32),
}

impl std::str::FromStr for QueueCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(Self::All);
        }
        match s.parse::<u32>() {
            Ok(0) | Err(_) => Err(format!(
                "{s:?} is neither `all` nor a number of queues (1 or more)"
            )),
            Ok(n) => Ok(Self::First(n)),
        }
    }
}

impl std::fmt::Display for QueueCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::First(n) => write!(f, "{n}"),
        }
    }
}

/// One interface as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInterface {
    /// Kernel name (for the messages).
    pub name: String,
    /// Receive queues in use ([`crate::kernel::rx_queue_count`]).
    pub rx_queues: u32,
    /// Driven by AF_XDP (true) or AF_PACKET (false).
    pub xdp: bool,
}

/// Why no plan fits; each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--queues N` leaves queues of an AF_XDP interface without a socket.
    #[error(
        "--queues {asked}: interface \"{iface}\" has {queues} receive queues, and the director \
         would serve only the first {asked}: new connections arriving on the others would reach \
         the kernel, which refuses them with a reset. Omit --queues to serve all {queues} (a \
         worker serves several when there are more queues than workers; --workers bounds the \
         threads), or give the interface {asked} queues: `ethtool -L {iface} combined {asked}`"
    )]
    QueuesLeftOut {
        /// The interface.
        iface: String,
        /// Its receive queues.
        queues: u32,
        /// `--queues`.
        asked: u32,
    },
    /// More queues than the XDP program can address.
    #[error(
        "interface \"{iface}\" has {queues} receive queues, and the director's XDP program serves \
         at most {max} per interface: reduce them with `ethtool -L {iface} combined {max}`"
    )]
    TooManyQueues {
        /// The interface.
        iface: String,
        /// Its receive queues.
        queues: u32,
        /// What the program addresses.
        max: u32,
    },
    /// More workers than an AF_XDP interface has queues to give them.
    #[error(
        "--workers {asked}: interface \"{iface}\" has {queues} receive queue(s) to serve, and \
         every worker needs one of its own on each AF_XDP interface: use --workers {queues} or \
         fewer"
    )]
    TooManyWorkers {
        /// The interface with the fewest queues.
        iface: String,
        /// Its served queues.
        queues: u32,
        /// `--workers`.
        asked: u32,
    },
    /// `--workers 0`.
    #[error("--workers 0: the director needs at least one worker")]
    NoWorkers,
}

/// The workers, and the queues each serves on each interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePlan {
    /// Worker threads.
    pub workers: u32,
    /// Per interface (in the order given): the queues served, `0..n`.
    served: Vec<u32>,
}

impl QueuePlan {
    /// How many queues of interface `iface` are served (`0..n`).
    #[must_use]
    pub fn served(&self, iface: usize) -> u32 {
        self.served.get(iface).copied().unwrap_or(0)
    }

    /// The queues of interface `iface` that worker `worker` serves.
    pub fn queues(&self, worker: u32, iface: usize) -> impl Iterator<Item = u32> + use<> {
        let workers = self.workers.max(1);
        (0..self.served(iface)).filter(move |q| q % workers == worker)
    }
}

/// Plans the workers and their queues for `ifaces` (see the module notes):
/// `queues` is `--queues`, `workers` is `--workers`, `cpus` the CPUs this
/// process may run on.
///
/// # Errors
/// `--queues N` would leave an AF_XDP interface's queues unserved, an
/// interface has more queues than the XDP program addresses, or
/// `--workers` asks for more workers than an AF_XDP interface has queues.
pub fn plan(
    ifaces: &[PlanInterface],
    queues: QueueCount,
    workers: Option<u32>,
    cpus: u32,
) -> Result<QueuePlan, PlanError> {
    let mut served = Vec::with_capacity(ifaces.len());
    // The AF_XDP interface with the fewest served queues: it bounds the
    // workers.
    let mut narrowest: Option<(&str, u32)> = None;
    for iface in ifaces {
        let rx = iface.rx_queues.max(1);
        let n = match queues {
            QueueCount::All => rx,
            QueueCount::First(asked) => {
                if iface.xdp && asked < rx {
                    return Err(PlanError::QueuesLeftOut {
                        iface: iface.name.clone(),
                        queues: rx,
                        asked,
                    });
                }
                asked.min(rx)
            }
        };
        if iface.xdp {
            if n > MAX_QUEUES {
                return Err(PlanError::TooManyQueues {
                    iface: iface.name.clone(),
                    queues: n,
                    max: MAX_QUEUES,
                });
            }
            if narrowest.is_none_or(|(_, m)| n < m) {
                narrowest = Some((&iface.name, n));
            }
        }
        served.push(n);
    }
    let workers = match workers {
        Some(0) => return Err(PlanError::NoWorkers),
        Some(asked) => {
            if let Some((iface, n)) = narrowest
                && asked > n
            {
                return Err(PlanError::TooManyWorkers {
                    iface: iface.to_owned(),
                    queues: n,
                    asked,
                });
            }
            asked
        }
        None => {
            let wanted = match queues {
                // AF_PACKET workers fan out over any number of queues:
                // --queues N has always meant N of them.
                QueueCount::First(n) => n,
                QueueCount::All => served.iter().copied().max().unwrap_or(1).min(cpus.max(1)),
            };
            narrowest.map_or(wanted, |(_, n)| wanted.min(n)).max(1)
        }
    };
    Ok(QueuePlan { workers, served })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, rx_queues: u32, xdp: bool) -> PlanInterface {
        PlanInterface {
            name: name.to_owned(),
            rx_queues,
            xdp,
        }
    }

    /// Worker by worker, the queues it serves on each interface.
    fn layout(plan: &QueuePlan, ifaces: usize) -> Vec<Vec<Vec<u32>>> {
        (0..plan.workers)
            .map(|w| (0..ifaces).map(|i| plan.queues(w, i).collect()).collect())
            .collect()
    }

    #[test]
    fn queue_count_parses_all_or_a_positive_number() {
        assert_eq!("all".parse::<QueueCount>(), Ok(QueueCount::All));
        assert_eq!("4".parse::<QueueCount>(), Ok(QueueCount::First(4)));
        for bad in ["0", "-1", "", "four", "All"] {
            let e = bad.parse::<QueueCount>().unwrap_err();
            assert!(e.contains("`all`"), "{bad}: {e}");
        }
        assert_eq!(QueueCount::default().to_string(), "all");
    }

    #[test]
    fn by_default_every_queue_is_served_with_one_worker_per_cpu_at_most() {
        // The case: 4-queue interfaces, 2 CPUs: 2 workers, each
        // serving 2 queues on each side.
        let ifaces = [iface("d-cli", 4, true), iface("d-srv", 4, true)];
        let p = plan(&ifaces, QueueCount::All, None, 2).unwrap();
        assert_eq!(p.workers, 2);
        assert_eq!(
            layout(&p, 2),
            [[[0, 2], [0, 2]], [[1, 3], [1, 3]]].map(|w| w.map(Vec::from).to_vec())
        );
        // Enough CPUs: one worker per queue.
        let p = plan(&ifaces, QueueCount::All, None, 16).unwrap();
        assert_eq!(p.workers, 4);
        assert_eq!(p.queues(3, 0).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn the_interface_with_fewest_queues_bounds_the_workers_but_every_queue_is_served() {
        // 4 client-side queues, 1 server-side: one worker serves them all.
        let ifaces = [iface("d-cli", 4, true), iface("d-srv", 1, true)];
        let p = plan(&ifaces, QueueCount::All, None, 8).unwrap();
        assert_eq!(p.workers, 1);
        assert_eq!(layout(&p, 2), [vec![vec![0, 1, 2, 3], vec![0]]]);
        // Every queue of every interface belongs to exactly one worker.
        let ifaces = [iface("a", 6, true), iface("b", 4, true)];
        let p = plan(&ifaces, QueueCount::All, None, 3).unwrap();
        assert_eq!(p.workers, 3);
        for (i, f) in ifaces.iter().enumerate() {
            let mut all: Vec<u32> = (0..p.workers).flat_map(|w| p.queues(w, i)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..f.rx_queues).collect::<Vec<_>>(), "{}", f.name);
            assert!((0..p.workers).all(|w| p.queues(w, i).next().is_some()));
        }
    }

    #[test]
    fn fewer_queues_than_an_xdp_interface_has_are_refused_with_the_fix() {
        let ifaces = [iface("d-cli", 4, true), iface("d-srv", 1, true)];
        let e = plan(&ifaces, QueueCount::First(1), None, 2).unwrap_err();
        assert_eq!(
            e,
            PlanError::QueuesLeftOut {
                iface: "d-cli".to_owned(),
                queues: 4,
                asked: 1
            }
        );
        let text = e.to_string();
        for part in [
            "\"d-cli\" has 4 receive queues",
            "only the first 1:",
            "Omit --queues",
            "ethtool -L d-cli combined 1",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        // As many as the interface has, or more: served (all of them).
        let p = plan(&ifaces, QueueCount::First(4), None, 2).unwrap();
        assert_eq!((p.served(0), p.served(1), p.workers), (4, 1, 1));
    }

    #[test]
    fn workers_are_bounded_by_the_narrowest_xdp_interface() {
        let ifaces = [iface("d-cli", 4, true), iface("d-srv", 2, true)];
        let p = plan(&ifaces, QueueCount::All, Some(2), 1).unwrap();
        assert_eq!(p.workers, 2);
        assert_eq!(layout(&p, 2)[1], [vec![1, 3], vec![1]]);
        let p = plan(&ifaces, QueueCount::All, Some(1), 8).unwrap();
        assert_eq!(layout(&p, 2), [vec![vec![0, 1, 2, 3], vec![0, 1]]]);
        let e = plan(&ifaces, QueueCount::All, Some(3), 8).unwrap_err();
        assert!(e.to_string().contains("\"d-srv\" has 2"), "{e}");
        assert!(e.to_string().contains("--workers 2 or fewer"), "{e}");
        assert_eq!(
            plan(&ifaces, QueueCount::All, Some(0), 8),
            Err(PlanError::NoWorkers)
        );
    }

    #[test]
    fn more_queues_than_the_program_addresses_are_refused() {
        let ifaces = [iface("eth0", 96, true)];
        let e = plan(&ifaces, QueueCount::All, None, 8).unwrap_err();
        assert!(
            e.to_string().contains("`ethtool -L eth0 combined 64`"),
            "{e}"
        );
        // AF_PACKET does not care.
        let ifaces = [iface("eth0", 96, false)];
        assert_eq!(plan(&ifaces, QueueCount::All, None, 8).unwrap().workers, 8);
    }

    #[test]
    fn af_packet_sees_every_queue_and_keeps_queues_as_its_worker_count() {
        let ifaces = [iface("d-cli", 4, false), iface("d-srv", 4, false)];
        // Fewer than the interface has: fine, the packet socket sees all.
        let p = plan(&ifaces, QueueCount::First(2), None, 8).unwrap();
        assert_eq!(p.workers, 2);
        let ifaces = [iface("d-cli", 1, false), iface("d-srv", 1, false)];
        assert_eq!(plan(&ifaces, QueueCount::All, None, 8).unwrap().workers, 1);
        assert_eq!(
            plan(&ifaces, QueueCount::First(3), None, 8)
                .unwrap()
                .workers,
            3
        );
        // Mixed: the AF_XDP side bounds the workers, the AF_PACKET side
        // does not.
        let ifaces = [iface("d-cli", 2, true), iface("d-srv", 1, false)];
        let p = plan(&ifaces, QueueCount::All, None, 8).unwrap();
        assert_eq!((p.workers, p.served(0)), (2, 2));
    }
}
