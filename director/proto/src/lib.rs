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
//! depends on serde, serde_json and thiserror and nothing of ours, so a
//! tool that speaks to the director builds in seconds. It is nested under
//! `director/` because the director owns these contracts (it is the server
//! of the control socket and the receiver of agent reports) and the
//! workspace's top level keeps one folder per role (packet, sched,
//! director, realserver-agent, tools, testbed).
//!
//! # What goes here and what goes to `xvs-packet`
//! Formats that are structured documents (the control socket's JSON, and
//! the vocabulary the agent's commands and the director's status share)
//! live here as serde types. Formats with a fixed byte layout on the
//! network — the agent's load reports, the heartbeat and VRRP
//! advertisements, state-sync messages and the one authentication
//! envelope around them — will be zero-copy views in `xvs-packet`, in the
//! style of its other protocols (checked constructors, a fuzz target per
//! decoder); the typed values they decode into (a [`ServiceId`] in a sync
//! message, a [`ForwardMethod`] an agent prepares for) are the ones here.
#![forbid(unsafe_code)]

pub mod control;
pub mod service;

pub use service::{ForwardMethod, Protocol, ServiceId};
