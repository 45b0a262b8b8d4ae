//! `xvs-director`: the director's data plane (per-frame pipeline, connection
//! table, forwarding, AF_XDP and AF_PACKET I/O) and control plane (state,
//! config and reload, health checks, HA, state sync, metrics).
//!
//! Not built yet: the data-plane issue starts it. All `unsafe` of the
//! workspace will live under `src/io/`; everything else forbids it.
#![deny(unsafe_code)]
