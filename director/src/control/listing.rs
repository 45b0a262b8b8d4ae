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
use crate::control::proto::{ConnView, Protocol};
use xvs_packet::IpProtocol;

/// One connection as `-L -c` shows it, or `None` for what ipvsadm does not
/// list (ICMP entries).
#[must_use]
pub fn conn_view(c: &Connection, now: Millis) -> Option<ConnView> {
    let (proto, state) = match c.proto {
        IpProtocol::Tcp => (Protocol::Tcp, c.tcp_state.to_string()),
        IpProtocol::Udp => (Protocol::Udp, "UDP".to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ForwardMethod;
    use crate::conn::NewConnection;

    fn table_with(n: u16) -> ConnTable {
        let table = ConnTable::new(1024, 7);
        for i in 0..n {
            let conn = NewConnection {
                proto: if i % 2 == 0 {
                    IpProtocol::Tcp
                } else {
                    IpProtocol::Udp
                },
                client: "198.51.100.7".parse().unwrap(),
                cport: 1000 + i,
                vip: "203.0.113.10".parse().unwrap(),
                vport: 80,
                real_server: "192.0.2.11".parse().unwrap(),
                rport: 8080,
                server_id: 0,
                method: ForwardMethod::Nat,
                template: false,
            };
            table.insert(&conn, 1_000, 90_000).unwrap();
        }
        table
    }

    #[test]
    fn chunks_hold_at_most_their_size_and_together_every_entry() {
        let table = table_with(25);
        let mut sizes = Vec::new();
        let mut ports = Vec::new();
        let sent = for_each_chunk(&table, 31_000, 10, |chunk| {
            sizes.push(chunk.len());
            ports.extend(chunk.iter().map(|c| c.client.1));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(sent, 25);
        assert_eq!(sizes, [10, 10, 5]);
        ports.sort_unstable();
        assert_eq!(ports, (1000..1025).collect::<Vec<_>>());
    }

    #[test]
    fn a_listing_stops_at_its_first_failed_chunk() {
        let table = table_with(25);
        let mut calls = 0;
        let result = for_each_chunk(&table, 31_000, 10, |_| {
            calls += 1;
            Err("the reader went away")
        });
        assert_eq!(result, Err("the reader went away"));
        assert_eq!(calls, 1);
    }

    #[test]
    fn entries_show_as_ipvsadm_lists_them() {
        let table = table_with(2);
        let mut views = Vec::new();
        for_each_chunk(&table, 31_000, 10, |chunk| {
            views.append(chunk);
            Ok::<(), ()>(())
        })
        .unwrap();
        views.sort_by_key(|v| v.client.1);
        assert_eq!(views[0].proto, Protocol::Tcp);
        assert_eq!(views[0].state, "NONE");
        assert_eq!(views[1].proto, Protocol::Udp);
        assert_eq!(views[1].state, "UDP");
        // 91 s after 1 s, seen at 31 s: 60 s left.
        assert_eq!(views[0].expires_secs, 60);
        assert_eq!(
            views[0].server,
            ("192.0.2.11".parse().unwrap(), 8080),
            "{views:?}"
        );
    }
}
