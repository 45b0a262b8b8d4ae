//! `xvs-sched`: the scheduler trait and one module per IPVS algorithm
//! (rr wrr lc wlc lblc lblcr dh sh sed nq mh fo ovf twos), with a registry by
//! ipvsadm name. Pure: no I/O, no implicit clocks, no floats in selection.
//!
//! Not built yet: issue "The scheduler crate" fills this crate in.
#![forbid(unsafe_code)]
