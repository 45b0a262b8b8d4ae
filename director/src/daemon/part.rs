//! The lifecycle every long-running part of the director shares, and the
//! ordered set that drives it.
//!
//! A part is built from what it needs (paths, addresses, channels, shared
//! handles) without side effects, then [`Part::start`]ed. [`Parts`] starts
//! them in the order they were added and stops them in the reverse order,
//! each exactly once: when a start fails, the parts already started are
//! stopped before the error is returned, and a second [`Parts::stop`] does
//! nothing. The order is the contract, so it is tested here with parts
//! that only record what happens to them.

use serde_json::{Map, Value};

use crate::control::proto::{Reply, Request};
use crate::io::KernelCounter;
use crate::io::xdp::{XdpCounters, XdpProgram};
use crate::pipeline::Snapshot;
use crate::run::Live;

use super::Error;

/// What a part may read of the running data plane while it ticks or stops:
/// the workers' counters and the XDP program's. `live` is `None` when the
/// workers never started (a start that failed before them).
#[derive(Debug)]
pub struct Running<'a> {
    /// The workers, if they were started.
    pub live: Option<&'a Live>,
    /// The XDP program, when an interface uses AF_XDP.
    pub program: Option<&'a XdpProgram>,
    /// The XDP program's counters as last read (a failed read is counted
    /// and logged, not hidden): shared by the stats file and the metrics.
    pub xdp_counters: &'a mut KernelCounter<XdpCounters>,
}

impl Running<'_> {
    /// The XDP program's counters (`None` without a program, or before a
    /// first successful read).
    pub fn xdp(&mut self) -> Option<XdpCounters> {
        self.xdp_counters
            .read(self.program?.counters(), std::time::Instant::now())
    }
}

/// One long-running part of the director: the control socket, the metrics
/// endpoint, the neighbour watcher, the stats file, the agent receiver,
/// HA; later state sync and the dashboard.
pub trait Part {
    /// The part's name in logs and in [`Parts::status`].
    fn name(&self) -> &'static str;

    /// Starts the part's threads, sockets or files.
    ///
    /// # Errors
    /// The part could not start; [`Parts`] then stops the ones started
    /// before it.
    fn start(&mut self) -> Result<(), Error>;

    /// A change was published: `snapshot` is the state the workers now
    /// use. Called after every published change (a control request, a
    /// reload, a health transition), on the main thread; a part applies
    /// the difference it cares about. The change is already in force, so
    /// a part that cannot follow logs why and keeps what it has.
    fn reconfigure(&mut self, snapshot: &Snapshot) {
        let _ = snapshot;
    }

    /// Called on every turn of the main loop (about every 100 ms): the
    /// part's periodic work on the main thread, if it has any.
    fn tick(&mut self, running: &mut Running<'_>) {
        let _ = running;
    }

    /// A control request only this part can answer (the sync's
    /// `--start-daemon` / `--stop-daemon`), on the main thread; `None`:
    /// not this part's.
    fn command(&mut self, request: &Request) -> Option<Reply> {
        let _ = request;
        None
    }

    /// What the part is doing, as JSON: the stats file, the logs and the
    /// dashboard render the same document, and a part adds fields without
    /// a change to the others' types.
    fn status(&self) -> Value;

    /// Stops the part: threads joined, sockets closed, files written for
    /// the last time. Called once by [`Parts`]; safe to call again.
    fn stop(&mut self, running: &mut Running<'_>);
}

/// Parts in start order.
#[derive(Default)]
pub struct Parts {
    parts: Vec<Box<dyn Part>>,
    /// How many of `parts` are started and not yet stopped (always a
    /// prefix: they start in order and stop in reverse).
    started: usize,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.parts.iter().map(|p| p.name()).collect();
        f.debug_struct("Parts")
            .field("parts", &names)
            .field("started", &self.started)
            .finish()
    }
}

impl Parts {
    /// No parts.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `part` after the others: it starts after them and stops
    /// before them.
    pub fn add(&mut self, part: Box<dyn Part>) {
        self.parts.push(part);
    }

    /// Starts every part not yet started, in order.
    ///
    /// # Errors
    /// The first part that failed to start; the parts started before it
    /// are stopped (in reverse order) before this returns.
    pub fn start(&mut self, running: &mut Running<'_>) -> Result<(), Error> {
        while self.started < self.parts.len() {
            if let Err(e) = self.parts[self.started].start() {
                self.stop(running);
                return Err(e);
            }
            self.started += 1;
        }
        Ok(())
    }

    /// Gives every started part the published `snapshot`, in start order.
    pub fn reconfigure(&mut self, snapshot: &Snapshot) {
        for part in &mut self.parts[..self.started] {
            part.reconfigure(snapshot);
        }
    }

    /// One turn of every started part's periodic work, in start order.
    pub fn tick(&mut self, running: &mut Running<'_>) {
        for part in &mut self.parts[..self.started] {
            part.tick(running);
        }
    }

    /// The answer of the first started part that takes `request`.
    pub fn command(&mut self, request: &Request) -> Option<Reply> {
        self.parts[..self.started]
            .iter_mut()
            .find_map(|part| part.command(request))
    }

    /// Every part's status under its name (a part not started says so).
    #[must_use]
    pub fn status(&self) -> Value {
        let mut doc = Map::new();
        for (i, part) in self.parts.iter().enumerate() {
            let status = if i < self.started {
                part.status()
            } else {
                serde_json::json!({ "running": false })
            };
            doc.insert(part.name().to_owned(), status);
        }
        Value::Object(doc)
    }

    /// Stops the started parts in reverse start order; a part is stopped
    /// once, however often this is called.
    pub fn stop(&mut self, running: &mut Running<'_>) {
        while self.started > 0 {
            self.started -= 1;
            self.parts[self.started].stop(running);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::config::ClusterConfig;
    use crate::control::table::ServiceTable;
    use crate::test_support::two_interfaces;

    /// What happened to the fake parts, in order: `start a`, `stop a`…
    type Journal = Rc<RefCell<Vec<String>>>;

    /// A part that records its lifecycle and can be told to fail its start.
    struct Recorder {
        name: &'static str,
        journal: Journal,
        fail_start: bool,
        services_seen: Option<usize>,
    }

    impl Part for Recorder {
        fn name(&self) -> &'static str {
            self.name
        }

        fn start(&mut self) -> Result<(), Error> {
            self.journal
                .borrow_mut()
                .push(format!("start {}", self.name));
            if self.fail_start {
                return Err(Error::Signal(std::io::Error::other(self.name)));
            }
            Ok(())
        }

        fn reconfigure(&mut self, snapshot: &Snapshot) {
            self.services_seen = Some(snapshot.services.len());
            self.journal
                .borrow_mut()
                .push(format!("reconfigure {}", self.name));
        }

        fn status(&self) -> Value {
            serde_json::json!({ "running": true, "services": self.services_seen })
        }

        fn stop(&mut self, _running: &mut Running<'_>) {
            self.journal
                .borrow_mut()
                .push(format!("stop {}", self.name));
        }
    }

    fn parts(names: &[&'static str], failing: Option<&str>) -> (Parts, Journal) {
        let journal = Journal::default();
        let mut parts = Parts::new();
        for &name in names {
            parts.add(Box::new(Recorder {
                name,
                journal: Rc::clone(&journal),
                fail_start: failing == Some(name),
                services_seen: None,
            }));
        }
        (parts, journal)
    }

    fn snapshot() -> Snapshot {
        let config = ClusterConfig::parse(
            "t.toml",
            concat!(
                two_interfaces!(),
                r#"
[[services]]
proto = "tcp"
vip = "203.0.113.10"
port = 80
[[services.real_servers]]
address = "192.0.2.11"
"#
            ),
        )
        .unwrap();
        ServiceTable::from_config(&config, 1).unwrap().snapshot()
    }

    fn taken(journal: &Journal) -> Vec<String> {
        std::mem::take(&mut *journal.borrow_mut())
    }

    #[test]
    fn parts_start_in_order_follow_every_change_and_stop_in_reverse_once() {
        let (mut parts, journal) = parts(&["a", "b", "c"], None);
        let mut xdp_counters = KernelCounter::new("test counters");
        let mut running = Running {
            live: None,
            program: None,
            xdp_counters: &mut xdp_counters,
        };
        parts.start(&mut running).unwrap();
        assert_eq!(taken(&journal), ["start a", "start b", "start c"]);

        parts.reconfigure(&snapshot());
        assert_eq!(
            taken(&journal),
            ["reconfigure a", "reconfigure b", "reconfigure c"]
        );
        let status = parts.status();
        for name in ["a", "b", "c"] {
            assert_eq!(status[name]["services"], 1, "{status}");
        }

        parts.stop(&mut running);
        parts.stop(&mut running);
        assert_eq!(taken(&journal), ["stop c", "stop b", "stop a"]);
        assert_eq!(parts.status()["a"]["running"], false);
        // Stopped parts no longer follow changes.
        parts.reconfigure(&snapshot());
        assert!(taken(&journal).is_empty());
    }

    #[test]
    fn a_failed_start_stops_the_parts_started_before_it_and_no_others() {
        let (mut parts, journal) = parts(&["a", "b", "c", "d"], Some("c"));
        let mut xdp_counters = KernelCounter::new("test counters");
        let mut running = Running {
            live: None,
            program: None,
            xdp_counters: &mut xdp_counters,
        };
        let e = parts.start(&mut running).unwrap_err();
        assert!(e.to_string().contains('c'), "{e}");
        assert_eq!(
            taken(&journal),
            ["start a", "start b", "start c", "stop b", "stop a"]
        );
        let status = parts.status();
        assert_eq!(status["c"]["running"], false, "{status}");
        assert_eq!(status["d"]["running"], false, "{status}");
        // The shutdown that follows a failed start stops nothing twice.
        parts.stop(&mut running);
        assert!(taken(&journal).is_empty());
    }
}
