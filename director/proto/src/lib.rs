//! `xvs-proto`: the types that two xvs binaries share, defined once.
//!
//! - [`service`]: what names things across the cluster — a service's
//!   [`Protocol`], its [`ServiceId`] (protocol, virtual address, port) and
//!   a real server's [`ForwardMethod`]. The director's configuration,
//!   service table, connection table and health checks, `xvsadm` and
//!   `xvs-agent` all use these, so that one concept has one type.
//! - [`control`]: the control socket's protocol (what `xvsadm` sends the
//!   director and what it answers: JSON lines) and the client that speaks
//!   it.
//!
//! # Why a crate, and why under `director/`
//! `xvsadm` and `xvs-agent` need these types but none of the director's
//! data plane: before this crate, `xvsadm` linked xsk-rs, libxdp, tokio
//! and rustls only to get the control socket's messages. This crate
//! depends on serde, thiserror and serde_json (the control socket's
//! encoding, which its client needs) and on nothing of ours, so a tool
//! that speaks to the director links none of the data plane. It is nested
//! under `director/` because the director owns these contracts (it serves
//! the control socket, and will receive the agents' reports) and the
//! workspace's top level keeps one folder per role (packet, sched,
//! director, realserver-agent, tools, testbed).
//!
//! # What goes here and what goes to `xvs-packet`
//! Structured documents live here as serde types: today the control
//! socket's JSON lines. Formats with a fixed byte layout on the network go
//! to `xvs-packet`, whole — the view, the values it decodes into and its
//! authentication — in the style of its other protocols (checked
//! constructors, no allocation, a fuzz target per decoder): the agent's
//! load report is `xvs_packet::load_report`, and the heartbeat/VRRP
//! advertisements and state-sync messages will join it there. `xvs-packet`
//! depends on nothing of ours, so a value that such a format carries and
//! that also names something here (a [`ServiceId`] in a sync message) is
//! converted at the edge, by the binary that decodes it.
#![forbid(unsafe_code)]

pub mod control;
pub mod service;

pub use service::{ForwardMethod, Protocol, ServiceId};
