//! Why the director could not start, or stopped on a failure. Each
//! variant keeps the text the operator (and the end-to-end scripts) read.

use crate::config::ConfigError;
use crate::control::snapshot::BuildError;
use crate::control::{metrics, socket};
use crate::io::IoError;
use crate::io::queues::PlanError;
use crate::kernel::KernelError;

/// Why the director could not start, or stopped on a failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Interface facts, queue counts or the neighbour watcher.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The first service table could not be built.
    #[error(transparent)]
    Table(#[from] BuildError),
    /// An interface lock, the XDP program, a socket or the kernel filter.
    #[error(transparent)]
    Io(#[from] IoError),
    /// SIGTERM, SIGINT or SIGHUP could not be caught.
    #[error("installing the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    /// `[ha]` could not start: what, and what to do.
    #[error("HA: {0}")]
    Ha(String),
    /// `[sync]` could not start: what, and what to do.
    #[error("sync: {0}")]
    Sync(String),
    /// An `--iface` that is not `NAME=BACKEND`.
    #[error("--iface {spec}: expected NAME=xdp or NAME=packet")]
    IfaceSyntax {
        /// What was given.
        spec: String,
    },
    /// An `--iface` with a backend other than `xdp` or `packet`.
    #[error("--iface {spec}: unknown backend {backend:?}; use xdp or packet")]
    IfaceBackend {
        /// What was given.
        spec: String,
        /// The backend it names.
        backend: String,
    },
    /// An `--iface` naming an interface the configuration does not have.
    #[error("--iface {spec}: {name:?} is not one of the director's interfaces ({})", names.join(", "))]
    IfaceUnknown {
        /// What was given.
        spec: String,
        /// The interface it names.
        name: String,
        /// The configuration's interfaces.
        names: Vec<String>,
    },
    /// Discovery did not report a configured interface.
    #[error("interface \"{0}\": the kernel did not report it")]
    NotReported(String),
    /// Workers and queues do not fit.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The health checks or the workers.
    #[error(transparent)]
    Start(#[from] crate::run::StartError),
    /// The control socket.
    #[error(transparent)]
    ControlSocket(#[from] socket::BindError),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] metrics::BindError),
    /// The agents' receiver could not bind its socket or start its thread.
    #[error("agents: receiving reports on UDP {listen}: {source}; check [agents] listen")]
    AgentReceiver {
        /// `[agents] listen`.
        listen: std::net::SocketAddr,
        /// The system's answer.
        source: std::io::Error,
    },
    /// An `[agents]` key file could not be read at start.
    #[error("agents: {0}")]
    AgentKey(#[from] crate::config::KeyProblem),
    /// A worker stopped on an error; the director shut down.
    #[error("a worker stopped: {0}")]
    Worker(String),
}
