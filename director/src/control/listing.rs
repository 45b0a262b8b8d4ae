//! Connection listings (`xvsadm -L -c`), walked off the control thread.
//!
//! The connection table's reads are lock-free, so any thread may walk it
//! while the workers go on; the control socket's per-client thread does,
//! in chunks of [`CONNECTIONS_PER_CHUNK`](super::proto::CONNECTIONS_PER_CHUNK)
//! entries that it writes out before it reads on. Memory is one chunk per
//! listing, however large the table, and the control thread (changes,
//! reloads, health transitions) is never involved.

use core::ops::ControlFlow;

use crate::conn::{ConnTable, Connection, Millis};
use crate::control::proto::{ConnView, Proto};
use xvs_packet::IpProtocol;

/// One connection as `-L -c` shows it, or `None` for what ipvsadm does not
/// list (ICMP entries).
#[must_use]
pub fn conn_view(c: &Connection, now: Millis) -> Option<ConnView> {
    let (proto, state) = match c.proto {
        IpProtocol::Tcp => (Proto::Tcp, c.tcp_state.to_string()),
        IpProtocol::Udp => (Proto::Udp, "UDP".to_owned()),
        _ => return None,
    };
    Some(ConnView {
        proto,
        client: (c.client, c.cport),
        vip: (c.vip, c.vport),
        server: (c.real_server, c.rport),
        state,
        expires_secs: u32::try_from(c.deadline.saturating_sub(now) / 1000).unwrap_or(u32::MAX),
    })
}

/// Walks `table` and hands `send` its entries in chunks of at most
/// `per_chunk` (at least one), in table order; `send` may keep the chunk's
/// buffer empty or full, it is cleared after each call. Stops at the first
/// error of `send`. Returns how many entries were sent.
///
/// # Errors
/// The first error of `send` (the reader has gone, say).
pub fn for_each_chunk<E>(
    table: &ConnTable,
    now: Millis,
    per_chunk: usize,
    mut send: impl FnMut(&mut Vec<ConnView>) -> Result<(), E>,
) -> Result<u64, E> {
    let per_chunk = per_chunk.max(1);
    let mut chunk = Vec::with_capacity(per_chunk);
    let mut sent = 0u64;
    let walk = table.try_for_each(|c| {
        let Some(view) = conn_view(c, now) else {
            return ControlFlow::Continue(());
        };
        chunk.push(view);
        if chunk.len() < per_chunk {
            return ControlFlow::Continue(());
        }
        let n = chunk.len() as u64;
        let result = send(&mut chunk);
        chunk.clear();
        match result {
            Ok(()) => {
                sent += n;
                ControlFlow::Continue(())
            }
            Err(e) => ControlFlow::Break(e),
        }
    });
    if let ControlFlow::Break(e) = walk {
        return Err(e);
    }
    if !chunk.is_empty() {
        let n = chunk.len() as u64;
        send(&mut chunk)?;
        sent += n;
    }
    Ok(sent)
}
