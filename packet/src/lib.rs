//! `xvs-packet`: zero-copy views over the frames the xvs director touches,
//! checksums (full and incremental), flow keys, and in-place rewrites for
//! VS/NAT, VS/DR and VS/TUN; and the project's own wire formats, such as
//! the real-server agent's authenticated [`load_report`], the directors'
//! [`vrrp`] advertisements and their connection-state [`sync`] messages.
//!
//! Contract: no I/O, no allocation, no `unsafe`. Every view has a checked
//! constructor after which no accessor can panic; receive paths use only the
//! checked forms. Errors are small `Copy` enums that the director maps
//! one-to-one onto drop reasons.
#![forbid(unsafe_code)]
// Tests use std's prelude; the library itself needs only `core`.
#![cfg_attr(not(test), no_std)]

pub mod flow;
pub mod ip;

pub use flow::{FlowKey, FlowOrigin};
pub use ip::IpProtocol;
pub mod announce;
pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmp_error;
pub mod ipv4;
pub mod ipv6;
pub mod load_report;
pub mod offload;
pub mod parse;
pub mod rewrite;
pub mod sync;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod vrrp;

pub use parse::{FrameKind, IpFrame, ParseError, Parsed, parse, parse_into};

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod proptests;
