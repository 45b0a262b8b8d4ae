//! What the director runs with: a plain struct the binary fills from its
//! command line, and a test fills by hand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::io::afxdp::ZeroCopy;
use crate::io::queues::QueueCount;
use crate::run::PollMode;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A cluster file: loaded at start, read again on SIGHUP, `xvsadm
    /// --reload` and (with `autoreload`) when it changes.
    File(PathBuf),
    /// A configuration built elsewhere (the binary's quick start): there is
    /// no file to reload.
    Given(Box<ClusterConfig>),
}

/// How frames reach the director on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AF_XDP with our XDP program.
    Xdp,
    /// AF_PACKET, with an nftables filter keeping the kernel off the
    /// director's frames.
    Packet,
}

/// Everything the director runs with besides the configuration's content.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration.
    pub config: ConfigSource,
    /// The backend of every interface `interface_backends` does not name.
    pub backend: Backend,
    /// `NAME=xdp` or `NAME=packet`, overriding `backend` for one interface.
    pub interface_backends: Vec<String>,
    /// The receive queues served on each interface.
    pub queues: QueueCount,
    /// Worker threads (`None`: one per queue, at most one per CPU).
    pub workers: Option<u32>,
    /// Busy-poll or adaptive.
    pub poll: PollMode,
    /// AF_XDP zero-copy.
    pub zero_copy: ZeroCopy,
    /// CPUs to pin workers to, in worker order.
    pub cpus: Vec<usize>,
    /// The stats file, written every `stats_interval` and at exit.
    pub stats_file: Option<PathBuf>,
    /// Time between two writes of the stats file.
    pub stats_interval: Duration,
    /// The control socket, overriding the config's.
    pub control_socket: Option<PathBuf>,
    /// The metrics endpoint, overriding the config's.
    pub metrics_listen: Option<SocketAddr>,
    /// Time between two counter lines in the log (`None`: no such lines).
    pub log_interval: Option<Duration>,
}
