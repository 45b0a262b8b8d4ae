//! The types both planes speak: what the control plane builds and
//! publishes and what the data plane reads and reports, named once here
//! so that neither has to import the other to use them.
//!
//! # Contract
//! This module is a leaf: it imports nothing from the rest of the crate
//! (only `std`, the packet crate and serde), so every module may import it
//! without dragging a plane along. Dependencies otherwise run one way: the
//! data plane (`pipeline`, `conn`, `io`) imports none of the control
//! plane's modules (`config`, `control`, `health`, `run`), which the test
//! `tests/data_plane_imports.rs` checks (wire types both planes carry, such
//! as the control socket's `ServiceParams` in a snapshot, come from the
//! `xvs-proto` crate, not from the control plane); the control plane builds
//! the [`Snapshot`](crate::pipeline::Snapshot) the data plane reads.
//!
//! - [`IfaceId`], [`InterfaceRole`], [`IpNet`]: an interface, the side it
//!   faces and its addresses ([`interface`]).
//! - [`Verdict`] and [`DropReason`]: what the pipeline decides for a frame
//!   and why a frame was dropped, which the I/O backends carry out and the
//!   metrics count ([`verdict`]).
//! - [`DestIndex`]: a destination's number, which the service table hands
//!   out, the connection table stores and every per-destination array is
//!   indexed by.

pub mod interface;
pub mod verdict;

pub use interface::{IfaceId, InterfaceRole, IpNet};
pub use verdict::{DropReason, Verdict};

/// A destination's number, global across services.
pub type DestIndex = u32;
