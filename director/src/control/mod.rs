//! The control plane: the service table operators change ([`table`]), the
//! control socket's protocol ([`proto`]) and server ([`socket`]), the
//! owner of it all on the main thread ([`plane`]), rate estimation
//! ([`estimator`]), connection listings walked off that thread
//! ([`listing`]), health checks applied to the table ([`health`](mod@health)),
//! what a reload cannot apply ([`reload`]), the Prometheus metrics
//! ([`metrics`]), the data plane's first state built from a config
//! ([`snapshot`]) and the weights that follow the real-server agents'
//! load reports ([`agents`]).

pub mod agents;
pub mod estimator;
pub mod health;
pub mod listing;
pub mod metrics;
pub mod plane;
pub mod reload;
pub mod snapshot;
pub mod socket;
pub mod table;

/// The control socket's protocol, defined in `xvs-proto` so that `xvsadm`
/// needs none of the director; re-exported under its old path.
pub use xvs_proto::control as proto;
