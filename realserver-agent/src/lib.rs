//! `xvs-agent`: runs on each real server. It prepares a host to be a VS/DR
//! or VS/TUN real server and undoes that again (`xvs-agent setup` /
//! `teardown`): the VIPs on loopback, the ARP sysctls that keep the real
//! server from claiming them, and the decapsulation of the director's
//! tunnel packets — by kernel tunnel devices, or, on a kernel without them,
//! by a small XDP program of ours. And it reports this server's load to the
//! directors (`xvs-agent run`).
//!
//! - [`plan`]: options → the list of changes (pure);
//! - [`agent`]: carries them out and undoes them, recording each in
//!   [`state`];
//! - [`system`]: the host behind a trait (iproute2 and `/proc/sys`);
//! - [`load`]: samples the load from /proc and cgroup files;
//! - [`run`]: the reporting daemon and its configuration;
//! - [`haproxy`]: the same load as HAProxy's agent-check answer.
//!
//! Not built yet: the command listener.
#![forbid(unsafe_code)]

pub mod agent;
pub mod haproxy;
pub mod load;
pub mod plan;
pub mod run;
pub mod state;
pub mod system;
