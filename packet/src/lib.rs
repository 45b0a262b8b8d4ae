//! `xvs-packet`: zero-copy views over the frames the xvs director touches,
//! checksums (full and incremental), flow keys, and in-place rewrites for
//! VS/NAT, VS/DR and VS/TUN.
//!
//! Contract: no I/O, no allocation, no `unsafe`. Every view has a checked
//! constructor after which no accessor can panic; receive paths use only the
//! checked forms. Errors are small `Copy` enums that the director maps
//! one-to-one onto drop reasons.
#![forbid(unsafe_code)]
#![no_std]

#[cfg(test)]
extern crate std;

pub mod flow;
pub mod ip;

pub use flow::{FlowKey, FlowOrigin};
pub use ip::IpProtocol;
