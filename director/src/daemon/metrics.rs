//! The Prometheus endpoint, as a part: bound at start, each scrape
//! rendered by the main thread, closed at stop.

use std::net::SocketAddr;

use crossbeam::channel::Sender;
use log::info;
use serde_json::{Value, json};

use crate::control::metrics::MetricsServer;
use crate::control::plane::ControlMsg;

use super::Error;
use super::part::{Part, Running};

/// The metrics endpoint.
#[derive(Debug)]
pub struct MetricsPart {
    addr: SocketAddr,
    to_main: Sender<ControlMsg>,
    server: Option<MetricsServer>,
}

impl MetricsPart {
    /// An endpoint at `addr` that asks `to_main` for each scrape.
    #[must_use]
    pub fn new(addr: SocketAddr, to_main: Sender<ControlMsg>) -> Self {
        Self {
            addr,
            to_main,
            server: None,
        }
    }
}

impl Part for MetricsPart {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn start(&mut self) -> Result<(), Error> {
        let server = MetricsServer::bind(self.addr, self.to_main.clone())?;
        info!("metrics at http://{}/metrics", server.addr());
        self.server = Some(server);
        Ok(())
    }

    fn status(&self) -> Value {
        let addr = self.server.as_ref().map_or(self.addr, MetricsServer::addr);
        json!({ "running": self.server.is_some(), "listen": addr.to_string() })
    }

    fn stop(&mut self, _running: &mut Running<'_>) {
        self.server = None;
    }
}
