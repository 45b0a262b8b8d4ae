//! `xvs-agent`: runs on each real server. It will report CPU, memory, network
//! and disk load to the director over authenticated UDP, run allow-listed
//! commands, and set the host up for DR and TUN (VIP on loopback, ARP
//! sysctls, XDP decapsulation).
//!
//! Not built yet: a later issue fills this crate in.
#![forbid(unsafe_code)]
