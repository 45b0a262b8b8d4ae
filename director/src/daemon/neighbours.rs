//! The neighbour watcher, as a part: it learns the kernel's neighbour
//! table and follows it, and asks the kernel to resolve the next hops of
//! every published state, so that a new real server's is known before its
//! first packet.

use std::net::IpAddr;
use std::sync::Arc;

use log::info;
use serde_json::{Value, json};

use crate::kernel::NeighbourWatcher;
use crate::pipeline::{IfaceId, Neighbours, Snapshot};

use super::Error;
use super::part::{Part, Running};

/// The neighbour watcher.
#[derive(Debug)]
pub struct NeighbourPart {
    neighbours: Arc<Neighbours>,
    interfaces: Vec<(IfaceId, u32)>,
    prefetch: Vec<(IfaceId, IpAddr)>,
    watcher: Option<NeighbourWatcher>,
}

impl NeighbourPart {
    /// A watcher filling `neighbours` for `interfaces` (id, kernel index);
    /// `prefetch` lists the next hops to resolve at once.
    #[must_use]
    pub fn new(
        neighbours: Arc<Neighbours>,
        interfaces: Vec<(IfaceId, u32)>,
        prefetch: Vec<(IfaceId, IpAddr)>,
    ) -> Self {
        Self {
            neighbours,
            interfaces,
            prefetch,
            watcher: None,
        }
    }
}

impl Part for NeighbourPart {
    fn name(&self) -> &'static str {
        "neighbours"
    }

    fn start(&mut self) -> Result<(), Error> {
        self.watcher = Some(NeighbourWatcher::spawn(
            Arc::clone(&self.neighbours),
            self.interfaces.clone(),
            std::mem::take(&mut self.prefetch),
        )?);
        Ok(())
    }

    fn reconfigure(&mut self, snapshot: &Snapshot) {
        // New real servers' next hops are resolved now, not at their
        // first packet.
        for (iface, ip) in snapshot.next_hops() {
            if self.neighbours.reader().lookup(iface, ip).is_none() {
                self.neighbours.request(iface, ip);
            }
        }
    }

    fn status(&self) -> Value {
        let Some(watcher) = &self.watcher else {
            return json!({ "running": false });
        };
        let w = watcher.counters();
        json!({
            "running": true,
            "updates_applied": w.updates_applied,
            "resolutions_requested": w.resolutions_requested,
            "dumps": w.dumps,
            "errors": w.errors,
            "requests_lost": self.neighbours.requests_lost(),
        })
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        let Some(mut watcher) = self.watcher.take() else {
            return;
        };
        watcher.stop();
        let w = watcher.counters();
        info!(
            "neighbours: {} kernel updates applied, {} resolutions requested, {} requests lost",
            w.updates_applied,
            w.resolutions_requested,
            self.neighbours.requests_lost()
        );
    }
}
