//! The data plane's state, built from a config file: the interfaces it
//! describes, the first [`Snapshot`] (through the service table, which
//! goes on editing it), and the [`Director`] that runs it with the
//! config's connection-table size and static neighbours.
//!
//! The pipeline knows nothing of the config ([`crate::types`] says why
//! dependencies run one way): it offers plain constructors from parts
//! ([`Snapshot::new`], [`Director::from_parts`]), and the constructors that
//! read a [`ClusterConfig`] live here, with the control plane. They are
//! methods of the pipeline's types, so callers still write
//! `Director::new(&config, now, seed)`.

use std::sync::Arc;

use crate::config::ClusterConfig;
use crate::conn::Millis;
use crate::control::table::ServiceTable;
use crate::pipeline::{Director, Iface, NeighbourChange, Neighbours, Snapshot};
use crate::types::IfaceId;

/// Why a configuration could not be turned into a running state.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The service table refused a service or real server.
    #[error("services[{service}]: {message}")]
    Scheduler {
        /// The service's position in the config.
        service: usize,
        /// What was wrong.
        message: String,
    },
    /// An interface without a MAC address: discovery did not run.
    #[error(
        "interface \"{interface}\" has no MAC address: write its \"mac\" in the config, or let the live director read it from the kernel (kernel::discover) before building"
    )]
    NoMac {
        /// The interface.
        interface: String,
    },
}

impl Snapshot {
    /// Builds the state for `config` at time `now`.
    ///
    /// # Errors
    /// A scheduler name the scheduler crate does not know, or a real server
    /// it refuses; an interface without a MAC address.
    pub fn build(config: &ClusterConfig, now: Millis) -> Result<Self, BuildError> {
        Ok(ServiceTable::from_config(config, now)?.snapshot())
    }

    /// The interfaces a config describes.
    ///
    /// # Errors
    /// An interface without a MAC address.
    pub fn interfaces_of(config: &ClusterConfig) -> Result<Vec<Iface>, BuildError> {
        config
            .interfaces
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(Iface {
                    id: IfaceId(i as u16),
                    name: c.name.clone(),
                    mac: c.mac.ok_or_else(|| BuildError::NoMac {
                        interface: c.name.clone(),
                    })?,
                    role: c.role,
                    addresses: c.addresses.clone(),
                    mtu: c.effective_mtu(),
                    gateways: c.gateways.clone(),
                })
            })
            .collect()
    }
}

impl Director {
    /// Builds the data plane for `config` at time `now`, with a neighbour
    /// table seeded from the config's static `[[neighbours]]`. `seed` keys
    /// the connection table's hash (use a random one in production).
    ///
    /// # Errors
    /// See [`Snapshot::build`].
    pub fn new(config: &ClusterConfig, now: Millis, seed: u64) -> Result<Self, BuildError> {
        Self::with_neighbours(config, now, seed, Arc::new(Neighbours::new()))
    }

    /// As [`Director::new`], sharing an existing neighbour table (kept
    /// across a rebuild); the config's static `[[neighbours]]` are added
    /// to it.
    ///
    /// # Errors
    /// See [`Snapshot::build`].
    pub fn with_neighbours(
        config: &ClusterConfig,
        now: Millis,
        seed: u64,
        neighbours: Arc<Neighbours>,
    ) -> Result<Self, BuildError> {
        let state = Snapshot::build(config, now)?;
        Ok(Self::with_snapshot(state, config, seed, neighbours))
    }

    /// A data plane running `state` (built by the control plane's
    /// [`ServiceTable`], which keeps editing it), with the connection table
    /// and static neighbours of `config`.
    #[must_use]
    pub fn with_snapshot(
        state: Snapshot,
        config: &ClusterConfig,
        seed: u64,
        neighbours: Arc<Neighbours>,
    ) -> Self {
        neighbours.apply(config.neighbours.iter().filter_map(|n| {
            let iface = state.interfaces.iter().find(|i| i.name == n.interface)?;
            Some(NeighbourChange::Learned {
                iface: iface.id,
                ip: n.address,
                mac: n.mac,
            })
        }));
        Self::from_parts(state, config.conn_table.capacity, seed, neighbours)
    }
}
