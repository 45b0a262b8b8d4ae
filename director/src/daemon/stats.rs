//! The counters for the operator, as a part: the stats file (written every
//! interval and once more at exit, after the workers stopped, so that it
//! holds their last counts), the periodic counter lines in the log, and
//! the one-time notice of an interface bringing partial checksums.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::{Value, json};

use crate::control::agents::AgentShared;
use crate::pipeline::Director;
use crate::run::{Clock, Live, PartialChecksumNotice};

use super::Error;
use super::part::{Part, Running};

/// The stats file and the counter lines in the log.
#[derive(Debug)]
pub struct StatsPart {
    director: Arc<Director>,
    file: Option<PathBuf>,
    file_every: Duration,
    log_every: Option<Duration>,
    /// `None` until the first turn: the first turn writes the file at once.
    file_at: Option<Instant>,
    log_at: Instant,
    writes: u64,
    partial_notice: PartialChecksumNotice,
    /// The agents' receiver and figures (with `[agents]`), and the clock
    /// their report times are on.
    agents: Option<(Arc<AgentShared>, Clock)>,
    /// The HA router's view and counters (with `[ha]`).
    ha: Option<Arc<crate::ha::router::Shared>>,
    /// The connection sync's figures (with `[sync]`).
    sync: Option<Arc<crate::sync::shared::SyncShared>>,
}

impl StatsPart {
    /// Writes the connection sync's figures too (`"sync"`).
    #[must_use]
    pub fn with_sync(mut self, sync: Option<Arc<crate::sync::shared::SyncShared>>) -> Self {
        self.sync = sync;
        self
    }

    /// Counters of `director`'s workers: to `file` every `file_every`, to
    /// the log every `log_every`; with `agents`, the agents' reports by
    /// result and their figures in the file too; with `ha`, the HA state
    /// and its counters.
    #[must_use]
    pub fn new(
        director: Arc<Director>,
        file: Option<PathBuf>,
        file_every: Duration,
        log_every: Option<Duration>,
        agents: Option<(Arc<AgentShared>, Clock)>,
        ha: Option<Arc<crate::ha::router::Shared>>,
    ) -> Self {
        Self {
            director,
            file,
            file_every,
            log_every,
            file_at: None,
            log_at: Instant::now(),
            writes: 0,
            partial_notice: PartialChecksumNotice::default(),
            agents,
            ha,
            sync: None,
        }
    }

    fn write(&mut self, live: &Live, running: &mut Running<'_>) {
        let Some(path) = &self.file else {
            return;
        };
        write_stats(
            path,
            live,
            running,
            self.agents.as_ref(),
            self.ha.as_deref(),
            self.sync.as_deref(),
        );
        self.writes += 1;
    }
}

impl Part for StatsPart {
    fn name(&self) -> &'static str {
        "stats"
    }

    /// Nothing to open: the file is written whole at each turn.
    fn start(&mut self) -> Result<(), Error> {
        self.log_at = Instant::now();
        Ok(())
    }

    fn tick(&mut self, running: &mut Running<'_>) {
        let Some(live) = running.live else {
            return;
        };
        let (counters, _) = live.counters();
        for iface in self
            .partial_notice
            .news(&counters, &self.director.state().interfaces)
        {
            info!(
                "{}: frames arrive with partial TCP/UDP checksums (a sender's checksum offload is on); the director completes them before forwarding (counter partial_checksum_completed)",
                iface.name
            );
        }
        if self
            .file_at
            .is_none_or(|at| at.elapsed() >= self.file_every)
        {
            self.file_at = Some(Instant::now());
            self.write(live, running);
        }
        if let Some(every) = self.log_every
            && self.log_at.elapsed() >= every
        {
            self.log_at = Instant::now();
            log_counters(live);
        }
    }

    fn status(&self) -> Value {
        json!({ "running": true, "file": self.file, "writes": self.writes })
    }

    /// The last write of the file and the last counter lines, once the
    /// workers have stopped.
    fn stop(&mut self, running: &mut Running<'_>) {
        let Some(live) = running.live else {
            return;
        };
        self.write(live, running);
        log_counters(live);
    }
}

/// The counters as the stats file holds them, with the XDP program's.
fn write_stats(
    path: &Path,
    live: &Live,
    running: &mut Running<'_>,
    agents: Option<&(Arc<AgentShared>, Clock)>,
    ha: Option<&crate::ha::router::Shared>,
    sync: Option<&crate::sync::shared::SyncShared>,
) {
    let mut doc = live.stats_json();
    if let Some((shared, clock)) = agents {
        doc["agents"] = shared.json(clock.now());
    }
    if let Some(ha) = ha {
        doc["ha"] = ha.json(Instant::now());
    }
    if let Some(sync) = sync {
        doc["sync"] = sync.json(Instant::now());
    }
    if let Some(c) = running.xdp() {
        // As the metrics count them: a frame for the director that found no
        // socket on its queue went to the kernel.
        let delivered = c.to_director.saturating_sub(c.no_socket);
        doc["xdp"] = json!({
            "frames": c.frames,
            "to_director": delivered,
            "no_socket": c.no_socket,
            "to_kernel": c.frames.saturating_sub(delivered),
            "read_failures": running.xdp_counters.failures(),
        });
    }
    // Replaced atomically, so that readers never see half a file.
    let tmp = path.with_extension("tmp");
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            serde_json::to_writer(&mut f, &doc)?;
            f.write_all(b"\n")
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        warn!("writing the stats file {}: {e}", path.display());
    }
}

/// The periodic counter lines: totals, then one line per service.
pub(super) fn log_counters(live: &Live) {
    let (c, io) = live.counters();
    let drops: u64 = c.drops.iter().sum();
    info!(
        "frames {} transmitted {} passed {} dropped {} (tx dropped {}, kernel rx dropped {})",
        c.frames, c.transmitted, c.passed, drops, io.tx_dropped, io.kernel_rx_dropped
    );
    let stats = live.stats_json();
    if let Some(services) = stats["services"].as_array() {
        for svc in services {
            let servers: Vec<String> = svc["real_servers"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            format!(
                                "{} conns {} active {}",
                                r["address"].as_str().unwrap_or("?"),
                                r["conns"],
                                r["active_conns"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            info!(
                "  {} {}:{}: conns {} | {}",
                svc["proto"].as_str().unwrap_or("?"),
                svc["vip"].as_str().unwrap_or("?"),
                svc["port"],
                svc["conns"],
                servers.join(" | ")
            );
        }
    }
    if let Some(drops) = stats["drops"].as_object()
        && !drops.is_empty()
    {
        let list: Vec<String> = drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        info!("  drops: {}", list.join(", "));
    }
    if let Some(by) = stats["partial_checksum_completed_by_interface"].as_object()
        && !by.is_empty()
    {
        let list: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        info!("  partial checksums completed: {}", list.join(", "));
    }
}
