//! One rtnetlink socket: send a request, receive and parse what comes back.
//! Parsing is separate from receiving ([`parse_messages`]) so that tests
//! feed it bytes built in memory.

use std::io;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// Receive buffer: the kernel sizes dump datagrams to fit 32 KiB.
const RECV_BUFFER: usize = 64 * 1024;

/// A routing netlink socket.
#[derive(Debug)]
pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// What one receive brought.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Parsed messages, in order.
    pub messages: Vec<NetlinkMessage<RouteNetlinkMessage>>,
    /// Messages that did not parse (skipped).
    pub undecodable: usize,
}

impl Netlink {
    /// A socket in the calling thread's network namespace whose receives
    /// give up after `timeout`.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::milliseconds(ms.max(1)),
        )?;
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    /// Joins a multicast group (`RTNLGRP_*` number) and enlarges the
    /// receive buffer so that a burst of notifications fits.
    pub fn subscribe(&self, group: u32, rx_buffer: usize) -> io::Result<()> {
        self.socket.set_rx_buf_sz(rx_buffer)?;
        self.socket.add_membership(group)
    }

    /// Sends `message` with `flags` (NLM_F_REQUEST is added); returns its
    /// sequence number.
    pub fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let kernel = SocketAddr::new(0, 0);
        self.socket.send_to(&bytes, &kernel, 0)?;
        Ok(self.seq)
    }

    /// One datagram from the kernel, parsed. A timeout is an error of kind
    /// `WouldBlock` or `TimedOut`.
    pub fn recv(&mut self) -> io::Result<Received> {
        let mut space = &mut self.buf[..];
        let n = self.socket.recv(&mut space, 0)?;
        let n = n.min(self.buf.len());
        Ok(parse_messages(&self.buf[..n]))
    }

    /// Sends `message` with `flags` and NLM_F_ACK and collects the kernel's
    /// answers up to its acknowledgement (a request that changes something
    /// answers with the acknowledgement alone); an error answer is the
    /// error, with the kernel's errno.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(message, flags | NLM_F_ACK)?;
        let mut out = Vec::new();
        loop {
            let received = self.recv()?;
            for message in received.messages {
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    /// Sends a dump request and collects every answer up to NLMSG_DONE.
    pub fn dump(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(request, NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            let received = self.recv()?;
            for message in received.messages {
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    _ => {}
                }
            }
        }
    }
}

/// Every netlink message in `bytes`, in order; a message that does not
/// parse is counted and skipped, a damaged length ends the walk.
pub(crate) fn parse_messages(bytes: &[u8]) -> Received {
    let mut out = Received::default();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Ok(buffer) = NetlinkBuffer::new_checked(rest) else {
            out.undecodable += 1;
            break;
        };
        let len = buffer.length() as usize;
        if len == 0 {
            break;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len.min(rest.len())]) {
            Ok(message) => out.messages.push(message),
            Err(_) => out.undecodable += 1,
        }
        // Messages are 4-byte aligned.
        offset = offset.saturating_add((len + 3) & !3);
    }
    out
}

/// True for a receive that merely timed out.
pub(crate) fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Serialises `messages` as the kernel would send them (for tests).
#[cfg(test)]
pub(crate) fn serialize_all(messages: &[(u16, RouteNetlinkMessage)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (flags, message) in messages {
        let mut header = NetlinkHeader::default();
        header.flags = *flags;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message.clone()));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        bytes.resize((bytes.len() + 3) & !3, 0);
        out.extend_from_slice(&bytes);
    }
    out
}
