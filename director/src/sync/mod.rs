//! Connection-state sync between the two directors of an HA pair (issue
//! #18): every connection the backup needs to forward the next packet as
//! the master would, sent reliably and authenticated.
//!
//! Built so far, pure and without I/O: the reliability layer
//! ([`reliable`]: conntrackd's FTFW model — sequence numbers, a bounded
//! resend queue, acks, Nacks on a gap, keepalives, full table transfers and
//! the "in sync" state a preempting master waits for), and the connection
//! table's side ([`table`]: a resumable export of the table and of the
//! persistence templates as upsert records, the records of the workers'
//! connection events, the import of
//! the peer's records into this director's table, synced connections
//! bound to their real servers only at their first packet here). The
//! workers' events come through `crate::conn::feed` (the data plane's
//! side: bounded lock-free queues, half-open connections apart), turned on
//! with `Director::set_feed`. The messages on the wire are
//! `xvs_packet::sync` (defined once, in the packet crate);
//! [`reliable::Envelope::header`] and [`reliable::Envelope::from_header`]
//! map between the two. The daemon part that drives them over a socket
//! (`[sync]`) is `crate::daemon::sync`; what it shows the rest of the
//! director (the "in sync" flag the HA part waits on, its figures) is
//! [`shared`].
//!
//! How a daemon drives it, per peer: one epoch (a random non-zero `u32`
//! drawn at start) shared by a [`reliable::Sender`] and a
//! [`reliable::Receiver`]. A received datagram is checked
//! (`Packet::new_checked`), its syncid compared, its tag verified, then
//! handed to both as an envelope (each ignores the kinds that are not its
//! own); both are ticked on a timer. Their `Send` outputs are written with
//! `MessageBuilder` (header from `Envelope::header`, then the records) and
//! signed.

pub mod reliable;
pub mod shared;
pub mod table;
