//! The directors' connection-state sync messages (issue #18): one UDP
//! datagram each, authenticated with the cluster key, carrying batches of
//! connection records from one director to its peer.
//!
//! Contract: [`Packet::new_checked`] checks every length, count, kind and
//! field of a message — the header, each record's type, length and address
//! families, the trailer's reserved bytes — so that afterwards no accessor
//! and no [`Packet::records`] iteration can panic or fail; a truncated or
//! oversized record is an error, never a panic. [`Packet::verify`] then
//! compares the tag in constant time. [`MessageBuilder`] writes a message
//! up to the operator's [`MaxLen`] (ipvsadm's `--sync-maxlen`): records
//! are added until one does not fit, then the message is signed.
//!
//! ```text
//!  0       4     5      6        7       8         12         16           20    24      26       28
//!  | magic | ver | kind | syncid | flags | epoch | sequence | peer epoch | ack | count | length |
//!  28: records (Data) or the missing range (Nack: from, to; 4 bytes each)
//!  end - 20: | key id | reserved (3) | HMAC-SHA256 truncated to 16 bytes |
//! ```
//!
//! Why each header field is there:
//! - *magic* and *version*: a datagram of something else, or of a later
//!   layout, is refused before anything else is read.
//! - *kind*: [`Kind`]: data, the receiver's acknowledgements and negative
//!   acknowledgements, the sender's keepalive, a request for a full table.
//! - *syncid*: ipvsadm's `--syncid` (0–255): several director pairs may
//!   share a segment; a receiver ignores messages of another syncid.
//! - *flags*: on data only, [`Flags::BULK_START`] and [`Flags::BULK_END`]
//!   mark the first and last message of a full table transfer, so that a
//!   receiver knows when it holds the whole table.
//! - *epoch*: a random non-zero number the sender picks when it starts: a
//!   restart is a new epoch, and sequences count within an epoch.
//! - *sequence*: a data message's number in its epoch (RFC 1982 serial
//!   arithmetic, [`seq_after`]); in a keepalive ([`Kind::Hello`]) the last
//!   data sequence sent, so that a receiver notices the loss of the last
//!   messages before a pause. Zero in the other kinds.
//! - *peer epoch*: the epoch of the director the message is for, as the
//!   sender last heard it (0: not heard yet). It binds each message to the
//!   receiver's current run, so that no message captured before a restart
//!   of the receiver is accepted after it ([`EpochGuard`]).
//! - *ack*: in [`Kind::Ack`] and [`Kind::Nack`], cumulative: every data
//!   sequence of the peer's epoch up to this one has been received. Zero in
//!   the other kinds.
//! - *count* and *length*: the number of records and the whole message's
//!   length, trailer included: both are checked against the bytes, so a
//!   datagram cut short or padded is refused whatever carried it.
//!
//! The trailer's tag is HMAC-SHA256 over the whole message with the tag
//! read as zero, truncated to 16 bytes (as keepalived's `auth_hmac`, and
//! with the same [`AuthKey`]: the cluster key of the `[ha]` section). The
//! key id is signed too, so a message cannot be moved under another id.
//!
//! Records (type, length, then the fields; addresses are 4 or 16 bytes as
//! the families byte says, each address with its own family):
//!
//! ```text
//! upsert (1): | 1 | len | proto | families | flags | method | tcp state | 0 |
//!             | cport | vport | rport | timeout ms (4) | client | vip | real server |   30 to 66 bytes
//! delete (2): | 2 | len | proto | families | flags | 0 | cport | vport | client | vip | 18 to 42 bytes
//! ```
//!
//! Replays: the receiver keeps an [`EpochGuard`] per peer. The rule: data,
//! acks and nacks are accepted only when their *peer epoch* is the
//! receiver's own current epoch (a keepalive or a bulk request may also
//! carry 0, from a sender that has not heard of the receiver yet); a
//! message in an epoch the guard has seen replaced (the peer restarted
//! since) is refused; a message in an epoch never seen is the peer's
//! restart and replaces the current one. Within an epoch, each data
//! sequence is delivered once by the reliability layer (the director's
//! `sync::reliable`), which counts the rest as duplicates. What remains
//! open: the guard remembers the last [`RETIRED_EPOCHS`] replaced epochs
//! only, so after more restarts of the peer than that within one run of
//! the receiver, a captured message of the oldest forgotten epoch that was
//! sent to this same run would be taken for a restart (and repaired by the
//! full transfer that a restart asks for).

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::Mac;

use crate::ip::IpProtocol;
use crate::ipv4::{be16, be32};
pub use crate::vrrp::{AuthKey, AuthKeyError};

/// The first four bytes of every sync message: "XVSS".
pub const MAGIC: [u8; 4] = *b"XVSS";
/// The layout described in this module.
pub const VERSION: u8 = 1;
/// Bytes of the truncated HMAC-SHA256 tag.
pub const TAG_LEN: usize = 16;
/// Bytes of a Nack's body: the first and last missing sequence.
pub const NACK_BODY_LEN: usize = 8;
/// How many replaced epochs of a peer an [`EpochGuard`] refuses.
pub const RETIRED_EPOCHS: usize = 8;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const SYNCID: usize = 6;
    pub const FLAGS: usize = 7;
    pub const EPOCH: Range<usize> = 8..12;
    pub const SEQUENCE: Range<usize> = 12..16;
    pub const PEER_EPOCH: Range<usize> = 16..20;
    pub const ACK: Range<usize> = 20..24;
    pub const COUNT: Range<usize> = 24..26;
    pub const LENGTH: Range<usize> = 26..28;
}

mod trailer {
    use core::ops::Range;
    pub const KEY_ID: usize = 0;
    pub const RESERVED: Range<usize> = 1..4;
    pub const TAG: Range<usize> = 4..20;
}

mod record {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const LEN: usize = 1;
    pub const PROTO: usize = 2;
    pub const FAMILIES: usize = 3;
    pub const FLAGS: usize = 4;
    // Upsert.
    pub const METHOD: usize = 5;
    pub const TCP_STATE: usize = 6;
    pub const RESERVED: usize = 7;
    pub const CPORT: Range<usize> = 8..10;
    pub const VPORT: Range<usize> = 10..12;
    pub const RPORT: Range<usize> = 12..14;
    pub const TIMEOUT: Range<usize> = 14..18;
    pub const UPSERT_ADDRS: usize = 18;
    // Delete.
    pub const DELETE_RESERVED: usize = 5;
    pub const DELETE_CPORT: Range<usize> = 6..8;
    pub const DELETE_VPORT: Range<usize> = 8..10;
    pub const DELETE_ADDRS: usize = 10;
}

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = field::LENGTH.end;
/// Bytes of the authentication trailer.
pub const TRAILER_LEN: usize = trailer::TAG.end;
/// The shortest message: a header and a trailer.
pub const MIN_MESSAGE_LEN: usize = HEADER_LEN + TRAILER_LEN;

const RECORD_UPSERT: u8 = 1;
const RECORD_DELETE: u8 = 2;
const FAMILY_CLIENT_V6: u8 = 1;
const FAMILY_VIP_V6: u8 = 2;
const FAMILY_SERVER_V6: u8 = 4;
const RFLAG_ACTIVE: u8 = 1;
const RFLAG_NO_OUTPUT: u8 = 2;
const RFLAG_TEMPLATE: u8 = 4;

/// Why a message was refused, or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncError {
    /// Shorter than a header and a trailer, or than its length field says.
    Truncated,
    /// Longer than its length field says.
    TrailingBytes,
    /// Not a sync message: the magic is wrong.
    BadMagic,
    /// A version this build does not know.
    UnknownVersion(u8),
    /// A message kind this version does not define.
    UnknownKind(u8),
    /// A header or trailer field holds a value its kind never carries
    /// (epoch 0, flags on other than data, a sequence or ack where the kind
    /// has none, a body where it has none, reserved bytes set).
    BadField,
    /// A record type this version does not define.
    UnknownRecord(u8),
    /// A record cut short by the end of the message, or whose length,
    /// families or flags do not agree with its type.
    BadRecord,
    /// The records do not fill the body exactly as the count says.
    CountMismatch,
    /// Signed with another key id than the receiver's key.
    UnknownKey(u8),
    /// The tag does not match (forged, corrupted, or another key).
    BadTag,
    /// A `--sync-maxlen` outside [`MaxLen::MIN`]..=[`MaxLen::MAX`].
    BadMaxLen(usize),
    /// The caller's buffer cannot hold the message.
    BufferTooSmall,
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated sync message"),
            Self::TrailingBytes => f.write_str("sync message longer than its length field"),
            Self::BadMagic => f.write_str("not a sync message (bad magic)"),
            Self::UnknownVersion(v) => write!(f, "unknown sync message version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown sync message kind {k}"),
            Self::BadField => f.write_str("a sync header field holds a value its kind never has"),
            Self::UnknownRecord(t) => write!(f, "unknown sync record type {t}"),
            Self::BadRecord => f.write_str("a sync record is cut short or malformed"),
            Self::CountMismatch => f.write_str("sync records do not match their count"),
            Self::UnknownKey(id) => write!(f, "sync message signed with unknown key id {id}"),
            Self::BadTag => f.write_str("sync message authentication tag does not match"),
            Self::BadMaxLen(n) => write!(
                f,
                "sync-maxlen {n} is outside {}..={} bytes",
                MaxLen::MIN,
                MaxLen::MAX
            ),
            Self::BufferTooSmall => f.write_str("buffer too short for the sync message"),
        }
    }
}

impl core::error::Error for SyncError {}

/// RFC 1982 serial arithmetic over 32 bits: `a` comes after `b`.
pub const fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Connection records, with a sequence number (sender → receiver).
    Data,
    /// Cumulative acknowledgement (receiver → sender).
    Ack,
    /// These data sequences are missing: send them again (receiver →
    /// sender). Carries the cumulative ack too.
    Nack {
        /// The first missing sequence.
        from: u32,
        /// The last missing sequence (`from` or after it).
        to: u32,
    },
    /// Keepalive with the last data sequence sent (sender → receiver).
    Hello,
    /// Send me your whole table (receiver → sender).
    BulkRequest,
}

impl Kind {
    /// The code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Self::Data => 1,
            Self::Ack => 2,
            Self::Nack { .. } => 3,
            Self::Hello => 4,
            Self::BulkRequest => 5,
        }
    }

    /// Bytes of the body other than records.
    const fn fixed_body_len(self) -> usize {
        match self {
            Self::Nack { .. } => NACK_BODY_LEN,
            _ => 0,
        }
    }
}

/// A data message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// The first message of a full table transfer.
    pub const BULK_START: Self = Self(1);
    /// The last message of a full table transfer.
    pub const BULK_END: Self = Self(2);
    /// No flags.
    pub const EMPTY: Self = Self(0);
    const KNOWN: u8 = Self::BULK_START.0 | Self::BULK_END.0;

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A message's header as the API speaks it (the count and length are
/// the builder's and the view's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What it is for; a Nack's range is part of it.
    pub kind: Kind,
    /// ipvsadm's `--syncid`.
    pub syncid: u8,
    /// Data only: bulk transfer markers.
    pub flags: Flags,
    /// The sender's epoch (non-zero).
    pub epoch: u32,
    /// Data: its sequence. Hello: the last data sequence sent. Else 0.
    pub sequence: u32,
    /// The receiving peer's epoch as the sender knows it (0: unknown).
    pub peer_epoch: u32,
    /// Ack and Nack: every peer data sequence up to this one arrived. Else 0.
    pub ack: u32,
}

impl Header {
    /// The checks [`Packet::new_checked`] makes of a header, shared with
    /// the builder so that it never writes what a receiver refuses.
    const fn is_valid(&self) -> bool {
        if self.epoch == 0 {
            return false;
        }
        let data = matches!(self.kind, Kind::Data);
        if (!data && self.flags.0 != 0) || self.flags.0 & !Flags::KNOWN != 0 {
            return false;
        }
        let has_sequence = matches!(self.kind, Kind::Data | Kind::Hello);
        if !has_sequence && self.sequence != 0 {
            return false;
        }
        match self.kind {
            Kind::Ack => true,
            Kind::Nack { from, to } => from == to || seq_after(to, from),
            _ => self.ack == 0,
        }
    }
}

/// ipvsadm's `--sync-maxlen`: the largest message, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaxLen(u16);

impl MaxLen {
    /// The smallest accepted: room for a few records of any family.
    pub const MIN: usize = 256;
    /// The largest UDP payload over IPv4.
    pub const MAX: usize = 65_507;
    /// The largest UDP payload over IPv4 in a 1500-byte MTU, ipvsadm's
    /// default.
    pub const DEFAULT: Self = Self(1472);

    /// `len` bytes, if within [`MaxLen::MIN`]..=[`MaxLen::MAX`].
    pub const fn new(len: usize) -> Result<Self, SyncError> {
        if len < Self::MIN || len > Self::MAX {
            return Err(SyncError::BadMaxLen(len));
        }
        Ok(Self(len as u16))
    }

    /// The bytes.
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

impl Default for MaxLen {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A connection's key: what names it in both directors' tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Transport protocol.
    pub proto: IpProtocol,
    /// The client's address (a masked network for a template).
    pub client: IpAddr,
    /// The client's port (0 for a template).
    pub cport: u16,
    /// The virtual address.
    pub vip: IpAddr,
    /// The virtual port.
    pub vport: u16,
    /// A persistence template rather than a connection.
    pub template: bool,
}

/// A connection as the backup needs it to forward the next packet the way
/// the master would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnState {
    /// Which connection.
    pub key: ConnKey,
    /// The real server's address.
    pub real_server: IpAddr,
    /// The real server's port.
    pub rport: u16,
    /// The forwarding method's code (`xvs_proto::ForwardMethod::code`; the
    /// receiver refuses codes it does not know).
    pub method: u8,
    /// The TCP state's code (`xvs_sched::TcpState::code`, IPVS's
    /// numbering; 0 for protocols without states).
    pub tcp_state: u8,
    /// Counted in the real server's active connections (a half-open
    /// connection is not).
    pub active: bool,
    /// No reply seen yet on a DR/TUN connection (IPVS's NO_OUTPUT).
    pub no_output: bool,
    /// Milliseconds until it expires on the sender unless a packet re-arms
    /// it.
    pub timeout_ms: u32,
}

/// One record of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    /// Create the connection or update it to this state.
    Upsert(ConnState),
    /// The connection is gone.
    Delete(ConnKey),
}

const fn addr_len(a: IpAddr) -> usize {
    match a {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

const fn family_bit(a: IpAddr, bit: u8) -> u8 {
    match a {
        IpAddr::V4(_) => 0,
        IpAddr::V6(_) => bit,
    }
}

const fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

const fn len_of(v6: bool) -> usize {
    if v6 { 16 } else { 4 }
}

fn put_addr(b: &mut [u8], a: IpAddr) -> usize {
    match a {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            b[..16].copy_from_slice(&a.octets());
            16
        }
    }
}

/// Reads an address of `v6`'s family at the start of `b` (long enough).
fn get_addr(b: &[u8], v6: bool) -> IpAddr {
    if v6 {
        let mut a = [0; 16];
        a.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

impl Record {
    /// Bytes it takes in a message.
    pub const fn wire_len(&self) -> usize {
        match self {
            Self::Upsert(c) => {
                record::UPSERT_ADDRS
                    + addr_len(c.key.client)
                    + addr_len(c.key.vip)
                    + addr_len(c.real_server)
            }
            Self::Delete(k) => record::DELETE_ADDRS + addr_len(k.client) + addr_len(k.vip),
        }
    }

    /// Writes it at the start of `b` (at least [`Record::wire_len`] bytes).
    fn emit(&self, b: &mut [u8]) {
        let len = self.wire_len();
        let b = &mut b[..len];
        b[record::LEN] = len as u8;
        match self {
            Self::Upsert(c) => {
                let k = &c.key;
                b[record::TYPE] = RECORD_UPSERT;
                b[record::PROTO] = k.proto.into();
                b[record::FAMILIES] = family_bit(k.client, FAMILY_CLIENT_V6)
                    | family_bit(k.vip, FAMILY_VIP_V6)
                    | family_bit(c.real_server, FAMILY_SERVER_V6);
                b[record::FLAGS] = flag(c.active, RFLAG_ACTIVE)
                    | flag(c.no_output, RFLAG_NO_OUTPUT)
                    | flag(k.template, RFLAG_TEMPLATE);
                b[record::METHOD] = c.method;
                b[record::TCP_STATE] = c.tcp_state;
                b[record::RESERVED] = 0;
                b[record::CPORT].copy_from_slice(&k.cport.to_be_bytes());
                b[record::VPORT].copy_from_slice(&k.vport.to_be_bytes());
                b[record::RPORT].copy_from_slice(&c.rport.to_be_bytes());
                b[record::TIMEOUT].copy_from_slice(&c.timeout_ms.to_be_bytes());
                let mut at = record::UPSERT_ADDRS;
                at += put_addr(&mut b[at..], k.client);
                at += put_addr(&mut b[at..], k.vip);
                put_addr(&mut b[at..], c.real_server);
            }
            Self::Delete(k) => {
                b[record::TYPE] = RECORD_DELETE;
                b[record::PROTO] = k.proto.into();
                b[record::FAMILIES] =
                    family_bit(k.client, FAMILY_CLIENT_V6) | family_bit(k.vip, FAMILY_VIP_V6);
                b[record::FLAGS] = flag(k.template, RFLAG_TEMPLATE);
                b[record::DELETE_RESERVED] = 0;
                b[record::DELETE_CPORT].copy_from_slice(&k.cport.to_be_bytes());
                b[record::DELETE_VPORT].copy_from_slice(&k.vport.to_be_bytes());
                let mut at = record::DELETE_ADDRS;
                at += put_addr(&mut b[at..], k.client);
                put_addr(&mut b[at..], k.vip);
            }
        }
    }

    /// Reads the record at the start of `b`, and its length; every field
    /// checked.
    fn parse(b: &[u8]) -> Result<(Self, usize), SyncError> {
        if b.len() <= record::LEN {
            return Err(SyncError::BadRecord);
        }
        let (kind, len) = (b[record::TYPE], usize::from(b[record::LEN]));
        let fixed = match kind {
            RECORD_UPSERT => record::UPSERT_ADDRS,
            RECORD_DELETE => record::DELETE_ADDRS,
            other => return Err(SyncError::UnknownRecord(other)),
        };
        if len < fixed || b.len() < len {
            return Err(SyncError::BadRecord);
        }
        let b = &b[..len];
        let families = b[record::FAMILIES];
        let flags = b[record::FLAGS];
        let client_v6 = families & FAMILY_CLIENT_V6 != 0;
        let vip_v6 = families & FAMILY_VIP_V6 != 0;
        let proto = IpProtocol::from(b[record::PROTO]);
        let template = flags & RFLAG_TEMPLATE != 0;
        if kind == RECORD_UPSERT {
            let server_v6 = families & FAMILY_SERVER_V6 != 0;
            let want = fixed + len_of(client_v6) + len_of(vip_v6) + len_of(server_v6);
            if families & !(FAMILY_CLIENT_V6 | FAMILY_VIP_V6 | FAMILY_SERVER_V6) != 0
                || flags & !(RFLAG_ACTIVE | RFLAG_NO_OUTPUT | RFLAG_TEMPLATE) != 0
                || b[record::RESERVED] != 0
                || len != want
            {
                return Err(SyncError::BadRecord);
            }
            let client = get_addr(&b[fixed..], client_v6);
            let at = fixed + len_of(client_v6);
            let vip = get_addr(&b[at..], vip_v6);
            let real_server = get_addr(&b[at + len_of(vip_v6)..], server_v6);
            let state = ConnState {
                key: ConnKey {
                    proto,
                    client,
                    cport: be16(&b[record::CPORT]),
                    vip,
                    vport: be16(&b[record::VPORT]),
                    template,
                },
                real_server,
                rport: be16(&b[record::RPORT]),
                method: b[record::METHOD],
                tcp_state: b[record::TCP_STATE],
                active: flags & RFLAG_ACTIVE != 0,
                no_output: flags & RFLAG_NO_OUTPUT != 0,
                timeout_ms: be32(&b[record::TIMEOUT]),
            };
            return Ok((Self::Upsert(state), len));
        }
        let want = fixed + len_of(client_v6) + len_of(vip_v6);
        if families & !(FAMILY_CLIENT_V6 | FAMILY_VIP_V6) != 0
            || flags & !RFLAG_TEMPLATE != 0
            || b[record::DELETE_RESERVED] != 0
            || len != want
        {
            return Err(SyncError::BadRecord);
        }
        let client = get_addr(&b[fixed..], client_v6);
        let vip = get_addr(&b[fixed + len_of(client_v6)..], vip_v6);
        let key = ConnKey {
            proto,
            client,
            cport: be16(&b[record::DELETE_CPORT]),
            vip,
            vport: be16(&b[record::DELETE_VPORT]),
            template,
        };
        Ok((Self::Delete(key), len))
    }
}

/// A view over a received message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a datagram that is one whole, well-formed message: see
    /// [`Packet::check_len`]. Says nothing of its authenticity.
    pub fn new_checked(buffer: T) -> Result<Self, SyncError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Magic, version, kind, the length field against the bytes, the
    /// header's fields for its kind, every record and the count, the
    /// trailer's reserved bytes. Afterwards no accessor can panic.
    pub fn check_len(&self) -> Result<(), SyncError> {
        let b = self.buffer.as_ref();
        if b.len() <= field::VERSION {
            return Err(SyncError::Truncated);
        }
        if b[field::MAGIC] != MAGIC {
            return Err(SyncError::BadMagic);
        }
        if b[field::VERSION] != VERSION {
            return Err(SyncError::UnknownVersion(b[field::VERSION]));
        }
        if b.len() < MIN_MESSAGE_LEN {
            return Err(SyncError::Truncated);
        }
        let code = b[field::KIND];
        if !(1..=5).contains(&code) {
            return Err(SyncError::UnknownKind(code));
        }
        let length = usize::from(be16(&b[field::LENGTH]));
        if b.len() < length {
            return Err(SyncError::Truncated);
        }
        if b.len() > length {
            return Err(SyncError::TrailingBytes);
        }
        let body = &b[HEADER_LEN..length - TRAILER_LEN];
        let count = be16(&b[field::COUNT]);
        let kind = self.kind_unchecked();
        let fixed = kind.fixed_body_len();
        if body.len() < fixed {
            return Err(SyncError::BadField);
        }
        if !self.header().is_valid() {
            return Err(SyncError::BadField);
        }
        if kind != Kind::Data && (count != 0 || body.len() != fixed) {
            return Err(SyncError::BadField);
        }
        if b[length - TRAILER_LEN..][trailer::RESERVED] != [0; 3] {
            return Err(SyncError::BadField);
        }
        let mut rest = &body[fixed..];
        for _ in 0..count {
            if rest.is_empty() {
                return Err(SyncError::CountMismatch);
            }
            let (_, len) = Record::parse(rest)?;
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(SyncError::CountMismatch);
        }
        Ok(())
    }

    /// The kind, with a Nack's range (after the check, the code is known).
    fn kind_unchecked(&self) -> Kind {
        let b = self.buffer.as_ref();
        match b[field::KIND] {
            2 => Kind::Ack,
            3 => match b.get(HEADER_LEN..HEADER_LEN + NACK_BODY_LEN) {
                Some(r) => Kind::Nack {
                    from: be32(&r[..4]),
                    to: be32(&r[4..]),
                },
                None => Kind::Nack { from: 0, to: 0 },
            },
            4 => Kind::Hello,
            5 => Kind::BulkRequest,
            _ => Kind::Data,
        }
    }

    /// The header.
    pub fn header(&self) -> Header {
        let b = self.buffer.as_ref();
        Header {
            kind: self.kind_unchecked(),
            syncid: b[field::SYNCID],
            flags: Flags(b[field::FLAGS]),
            epoch: be32(&b[field::EPOCH]),
            sequence: be32(&b[field::SEQUENCE]),
            peer_epoch: be32(&b[field::PEER_EPOCH]),
            ack: be32(&b[field::ACK]),
        }
    }

    /// The number of records.
    pub fn record_count(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::COUNT])
    }

    fn trailer(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - TRAILER_LEN..]
    }

    /// The id of the key that claims to sign it.
    pub fn key_id(&self) -> u8 {
        self.trailer()[trailer::KEY_ID]
    }

    /// Checks the tag with `key`, in constant time.
    pub fn verify(&self, key: &AuthKey) -> Result<(), SyncError> {
        if self.key_id() != key.id() {
            return Err(SyncError::UnknownKey(self.key_id()));
        }
        let b = self.buffer.as_ref();
        let signed = b.len() - TAG_LEN;
        let mut mac = key.mac().clone();
        mac.update(&b[..signed]);
        mac.update(&[0; TAG_LEN]);
        mac.verify_truncated_left(&b[signed..])
            .map_err(|_| SyncError::BadTag)
    }

    /// The records, in order (none but in data messages).
    pub fn records(&self) -> Records<'_> {
        let b = self.buffer.as_ref();
        let body = match self.kind_unchecked() {
            Kind::Data => &b[HEADER_LEN..b.len() - TRAILER_LEN],
            _ => &[],
        };
        Records {
            rest: body,
            left: self.record_count(),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The records of a checked [`Packet`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    left: u16,
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.left == 0 {
            return None;
        }
        // Checked by `check_len`: an error here would end the iteration.
        let (r, len) = Record::parse(self.rest).ok()?;
        self.rest = &self.rest[len..];
        self.left -= 1;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

/// Writes one message: the header at once, then records until one does not
/// fit, then the trailer with [`MessageBuilder::sign`].
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    buf: &'a mut [u8],
    limit: usize,
    len: usize,
    count: u16,
    data: bool,
}

impl<'a> MessageBuilder<'a> {
    /// A message with `header`, at most `max_len` bytes, in `buf`. Refuses
    /// a header a receiver would refuse ([`SyncError::BadField`]) and a
    /// buffer that cannot hold even the record-less message.
    pub fn new(buf: &'a mut [u8], max_len: MaxLen, header: &Header) -> Result<Self, SyncError> {
        if !header.is_valid() {
            return Err(SyncError::BadField);
        }
        let limit = buf.len().min(max_len.get());
        let body = header.kind.fixed_body_len();
        if limit < MIN_MESSAGE_LEN + body {
            return Err(SyncError::BufferTooSmall);
        }
        let b = &mut buf[..HEADER_LEN + body];
        b[field::MAGIC].copy_from_slice(&MAGIC);
        b[field::VERSION] = VERSION;
        b[field::KIND] = header.kind.code();
        b[field::SYNCID] = header.syncid;
        b[field::FLAGS] = header.flags.0;
        b[field::EPOCH].copy_from_slice(&header.epoch.to_be_bytes());
        b[field::SEQUENCE].copy_from_slice(&header.sequence.to_be_bytes());
        b[field::PEER_EPOCH].copy_from_slice(&header.peer_epoch.to_be_bytes());
        b[field::ACK].copy_from_slice(&header.ack.to_be_bytes());
        if let Kind::Nack { from, to } = header.kind {
            b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&from.to_be_bytes());
            b[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&to.to_be_bytes());
        }
        Ok(Self {
            buf,
            limit,
            len: HEADER_LEN + body,
            count: 0,
            data: matches!(header.kind, Kind::Data),
        })
    }

    /// Adds `record` if it fits; false when the message is full (or is not
    /// a data message): send this one and start the next.
    pub fn push(&mut self, record: &Record) -> bool {
        let len = record.wire_len();
        if !self.data || self.count == u16::MAX || self.len + len + TRAILER_LEN > self.limit {
            return false;
        }
        record.emit(&mut self.buf[self.len..]);
        self.len += len;
        self.count += 1;
        true
    }

    /// The records added so far.
    pub const fn record_count(&self) -> u16 {
        self.count
    }

    /// The message's length once signed.
    pub const fn wire_len(&self) -> usize {
        self.len + TRAILER_LEN
    }

    /// Writes count, length and the trailer signed with `key`; returns the
    /// message's length (the bytes to send are `buf[..len]`).
    pub fn sign(self, key: &AuthKey) -> usize {
        let total = self.wire_len();
        let b = &mut self.buf[..total];
        b[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        b[field::LENGTH].copy_from_slice(&(total as u16).to_be_bytes());
        let t = &mut b[self.len..];
        t[trailer::KEY_ID] = key.id();
        t[trailer::RESERVED].fill(0);
        t[trailer::TAG].fill(0);
        let mut mac = key.mac().clone();
        mac.update(b);
        let tag = mac.finalize().into_bytes();
        b[total - TAG_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        total
    }
}

/// Why an authentic message is not taken (see the module's replay rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Its peer epoch is not the receiver's current epoch: sent to an
    /// earlier run of this director (or, for data, acks and nacks, by a
    /// sender that has not heard of this run yet).
    WrongPeerEpoch,
    /// Its epoch is one the peer has since replaced by restarting.
    RetiredEpoch,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPeerEpoch => {
                f.write_str("sync message addressed to another run of this director")
            }
            Self::RetiredEpoch => f.write_str("sync message from a run the peer has since left"),
        }
    }
}

impl core::error::Error for ReplayError {}

/// What an accepted message says of the peer's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochChange {
    /// The epoch already current.
    Same,
    /// The first epoch heard from this peer.
    First,
    /// A new epoch: the peer restarted (its previous epoch is retired).
    Restarted {
        /// The epoch it replaced.
        previous: u32,
    },
}

/// The receiver's replay rule for one peer's epochs (module docs): fixed
/// size, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochGuard {
    current: Option<u32>,
    retired: [u32; RETIRED_EPOCHS],
    next_slot: usize,
}

impl EpochGuard {
    /// A guard that has heard nothing.
    pub const fn new() -> Self {
        Self {
            current: None,
            retired: [0; RETIRED_EPOCHS],
            next_slot: 0,
        }
    }

    /// Checks an authenticated message's `header` for a receiver whose own
    /// epoch is `own_epoch`, and follows the peer's epoch. A refused
    /// message changes nothing.
    pub fn check(&mut self, header: &Header, own_epoch: u32) -> Result<EpochChange, ReplayError> {
        let may_be_unaddressed = matches!(header.kind, Kind::Hello | Kind::BulkRequest);
        let addressed = header.peer_epoch == own_epoch;
        if !(addressed || (may_be_unaddressed && header.peer_epoch == 0)) {
            return Err(ReplayError::WrongPeerEpoch);
        }
        let epoch = header.epoch;
        match self.current {
            Some(current) if current == epoch => Ok(EpochChange::Same),
            _ if epoch == 0 || self.retired.contains(&epoch) => Err(ReplayError::RetiredEpoch),
            None => {
                self.current = Some(epoch);
                Ok(EpochChange::First)
            }
            Some(previous) => {
                self.retired[self.next_slot] = previous;
                self.next_slot = (self.next_slot + 1) % RETIRED_EPOCHS;
                self.current = Some(epoch);
                Ok(EpochChange::Restarted { previous })
            }
        }
    }

    /// The peer's current epoch.
    pub const fn current(&self) -> Option<u32> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuthKey {
        AuthKey::new(3, &[0x5a; 32]).unwrap()
    }

    fn header(kind: Kind) -> Header {
        let data = kind == Kind::Data;
        Header {
            kind,
            syncid: 7,
            flags: if data {
                Flags::BULK_START
            } else {
                Flags::EMPTY
            },
            epoch: 0xdead_beef,
            sequence: if matches!(kind, Kind::Data | Kind::Hello) {
                0xffff_fffe
            } else {
                0
            },
            peer_epoch: 0x0102_0304,
            ack: if matches!(kind, Kind::Ack | Kind::Nack { .. }) {
                41
            } else {
                0
            },
        }
    }

    fn upsert(client: &str, vip: &str, server: &str) -> Record {
        Record::Upsert(ConnState {
            key: ConnKey {
                proto: IpProtocol::Tcp,
                client: client.parse().unwrap(),
                cport: 40_000,
                vip: vip.parse().unwrap(),
                vport: 443,
                template: false,
            },
            real_server: server.parse().unwrap(),
            rport: 8443,
            method: 1,
            tcp_state: 3,
            active: true,
            no_output: true,
            timeout_ms: 900_000,
        })
    }

    fn records() -> [Record; 6] {
        let template = Record::Upsert(ConnState {
            key: ConnKey {
                proto: IpProtocol::Udp,
                client: "198.51.100.0".parse().unwrap(),
                cport: 0,
                vip: "203.0.113.1".parse().unwrap(),
                vport: 53,
                template: true,
            },
            real_server: "192.0.2.11".parse().unwrap(),
            rport: 53,
            method: 0,
            tcp_state: 0,
            active: false,
            no_output: false,
            timeout_ms: u32::MAX,
        });
        [
            upsert("198.51.100.7", "203.0.113.1", "192.0.2.11"),
            upsert("2001:db8:1::7", "2001:db8:2::1", "2001:db8:3::11"),
            // Mixed families: xvs never makes one, the codec carries it.
            upsert("198.51.100.7", "203.0.113.1", "2001:db8:3::11"),
            template,
            Record::Delete(ConnKey {
                proto: IpProtocol::Tcp,
                client: "198.51.100.7".parse().unwrap(),
                cport: 40_000,
                vip: "203.0.113.1".parse().unwrap(),
                vport: 443,
                template: false,
            }),
            Record::Delete(ConnKey {
                proto: IpProtocol::Unknown(132),
                client: "2001:db8:1::7".parse().unwrap(),
                cport: 1,
                vip: "2001:db8:2::1".parse().unwrap(),
                vport: 65_535,
                template: true,
            }),
        ]
    }

    /// A signed message of `header` with `records`, in a fresh buffer.
    fn message(h: &Header, rs: &[Record]) -> Vec<u8> {
        let mut buf = vec![0; MaxLen::MAX];
        let mut b = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, h).unwrap();
        for r in rs {
            assert!(b.push(r));
        }
        let n = b.sign(&key());
        buf.truncate(n);
        buf
    }

    const KINDS: [Kind; 5] = [
        Kind::Data,
        Kind::Ack,
        Kind::Nack { from: 42, to: 50 },
        Kind::Hello,
        Kind::BulkRequest,
    ];

    #[test]
    fn every_kind_round_trips() {
        for kind in KINDS {
            let h = header(kind);
            let rs: &[Record] = if kind == Kind::Data { &records() } else { &[] };
            let buf = message(&h, rs);
            let p = Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(p.verify(&key()), Ok(()), "{kind:?}");
            assert_eq!(p.header(), h, "{kind:?}");
            assert_eq!(p.key_id(), 3);
            assert_eq!(p.record_count() as usize, rs.len());
            assert_eq!(p.records().collect::<Vec<_>>(), rs, "{kind:?}");
        }
    }

    #[test]
    fn nack_ranges_may_wrap_but_not_run_backwards() {
        for (from, to, ok) in [
            (5, 5, true),
            (u32::MAX - 1, 2, true),
            (6, 5, false),
            (0, 1 << 31, false),
        ] {
            let h = header(Kind::Nack { from, to });
            let mut buf = [0; 256];
            assert_eq!(
                MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &h).is_ok(),
                ok,
                "{from}..={to}"
            );
        }
    }

    #[test]
    fn layout_is_fixed() {
        let h = header(Kind::Data);
        let buf = message(&h, &records()[..1]);
        assert_eq!(HEADER_LEN, 28);
        assert_eq!(TRAILER_LEN, 20);
        assert_eq!(buf.len(), 28 + 30 + 20);
        assert_eq!(&buf[..4], b"XVSS");
        assert_eq!(buf[4..8], [1, 1, 7, 1], "version, kind, syncid, flags");
        assert_eq!(buf[8..12], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf[12..16], [0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(buf[16..20], [1, 2, 3, 4]);
        assert_eq!(buf[20..24], [0; 4]);
        assert_eq!(buf[24..28], [0, 1, 0, 78], "count, length");
        let r = &buf[28..58];
        assert_eq!(r[..8], [1, 30, 6, 0, 0b011, 1, 3, 0]);
        assert_eq!(r[8..14], [0x9c, 0x40, 0x01, 0xbb, 0x20, 0xfb]);
        assert_eq!(r[14..18], 900_000u32.to_be_bytes());
        assert_eq!(r[18..30], [198, 51, 100, 7, 203, 0, 113, 1, 192, 0, 2, 11]);
        assert_eq!(buf[58..62], [3, 0, 0, 0], "key id, reserved");
        let lens: Vec<_> = records().iter().map(Record::wire_len).collect();
        assert_eq!(lens, [30, 66, 42, 30, 18, 42]);
    }

    #[test]
    fn max_len_is_checked_and_respected_exactly() {
        assert_eq!(MaxLen::new(255), Err(SyncError::BadMaxLen(255)));
        assert_eq!(MaxLen::new(65_508), Err(SyncError::BadMaxLen(65_508)));
        assert_eq!(MaxLen::new(256).map(MaxLen::get), Ok(256));
        assert_eq!(MaxLen::new(65_507).map(MaxLen::get), Ok(65_507));
        assert_eq!(MaxLen::default().get(), 1472);
        let r = records()[0];
        // 48 bytes of header and trailer, then 30 per record.
        for (max, fits) in [(256, 6), (257, 6), (258, 7), (1472, 47)] {
            let mut buf = vec![0; 2000];
            let h = header(Kind::Data);
            let mut b = MessageBuilder::new(&mut buf, MaxLen::new(max).unwrap(), &h).unwrap();
            let mut n = 0;
            while b.push(&r) {
                n += 1;
            }
            assert_eq!(n, fits, "max {max}");
            assert!(b.wire_len() <= max && b.wire_len() + 30 > max, "max {max}");
            let len = b.sign(&key());
            assert_eq!(len, MIN_MESSAGE_LEN + 30 * fits);
            let p = Packet::new_checked(&buf[..len]).unwrap();
            assert_eq!(p.records().count(), fits);
        }
        // A buffer shorter than max_len limits the message instead.
        let mut small = [0; 100];
        let h = header(Kind::Data);
        let mut b = MessageBuilder::new(&mut small, MaxLen::DEFAULT, &h).unwrap();
        assert!(b.push(&r));
        assert!(!b.push(&r), "78 + 30 > 100");
        let mut tiny = [0; MIN_MESSAGE_LEN - 1];
        assert_eq!(
            MessageBuilder::new(&mut tiny, MaxLen::DEFAULT, &h).err(),
            Some(SyncError::BufferTooSmall)
        );
        let mut nack = [0; MIN_MESSAGE_LEN + 7];
        let h = header(Kind::Nack { from: 1, to: 2 });
        assert_eq!(
            MessageBuilder::new(&mut nack, MaxLen::DEFAULT, &h).err(),
            Some(SyncError::BufferTooSmall)
        );
    }

    #[test]
    fn only_data_takes_records() {
        let mut buf = [0; 256];
        let mut b = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &header(Kind::Ack)).unwrap();
        assert!(!b.push(&records()[0]));
        assert_eq!(b.record_count(), 0);
    }

    #[test]
    fn every_truncation_and_padding_is_refused() {
        for kind in KINDS {
            let rs: &[Record] = if kind == Kind::Data { &records() } else { &[] };
            let buf = message(&header(kind), rs);
            for n in 0..buf.len() {
                assert_eq!(
                    Packet::new_checked(&buf[..n]).err(),
                    Some(SyncError::Truncated),
                    "{kind:?} cut at {n}"
                );
            }
            let mut long = buf.clone();
            long.push(0);
            assert_eq!(
                Packet::new_checked(&long[..]).err(),
                Some(SyncError::TrailingBytes)
            );
        }
    }

    /// Edits the bytes of a valid data message, keeping its length field
    /// true (the structure is checked before the tag).
    fn edited(f: impl Fn(&mut Vec<u8>)) -> Result<(), SyncError> {
        let mut b = message(&header(Kind::Data), &records()[..2]);
        f(&mut b);
        let len = b.len() as u16;
        b[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        Packet::new_checked(&b[..]).map(|_| ())
    }

    #[test]
    fn malformed_messages_have_typed_errors() {
        const R: usize = HEADER_LEN; // the first record (v4, 30 bytes)
        type Edit = fn(&mut Vec<u8>);
        let cases: &[(&str, Edit, SyncError)] = &[
            ("bad magic", |b| b[0] = b'Y', SyncError::BadMagic),
            ("version 2", |b| b[4] = 2, SyncError::UnknownVersion(2)),
            ("kind 0", |b| b[5] = 0, SyncError::UnknownKind(0)),
            ("kind 6", |b| b[5] = 6, SyncError::UnknownKind(6)),
            ("epoch 0", |b| b[8..12].fill(0), SyncError::BadField),
            ("unknown flag", |b| b[7] = 4, SyncError::BadField),
            ("ack in data", |b| b[23] = 1, SyncError::BadField),
            ("records in an ack", |b| b[5] = 2, SyncError::BadField),
            (
                "hello with a body",
                |b| {
                    b[5] = 4;
                    b[7] = 0;
                    b[24..26].fill(0);
                },
                SyncError::BadField,
            ),
            (
                "trailer reserved",
                |b| {
                    let at = b.len() - TRAILER_LEN + 2;
                    b[at] = 1;
                },
                SyncError::BadField,
            ),
            ("count one more", |b| b[25] = 3, SyncError::CountMismatch),
            ("count one less", |b| b[25] = 1, SyncError::CountMismatch),
            ("unknown record", |b| b[R] = 9, SyncError::UnknownRecord(9)),
            (
                "record length short",
                |b| b[R + 1] = 29,
                SyncError::BadRecord,
            ),
            (
                "record length long",
                |b| b[R + 1] = 31,
                SyncError::BadRecord,
            ),
            ("record length 0", |b| b[R + 1] = 0, SyncError::BadRecord),
            (
                "record past the end",
                |b| b[R + 1] = 255,
                SyncError::BadRecord,
            ),
            ("families say v6", |b| b[R + 3] = 1, SyncError::BadRecord),
            ("unknown family bit", |b| b[R + 3] = 8, SyncError::BadRecord),
            (
                "unknown record flag",
                |b| b[R + 4] |= 8,
                SyncError::BadRecord,
            ),
            ("record reserved", |b| b[R + 7] = 1, SyncError::BadRecord),
            (
                "one byte of a record",
                |b| {
                    let end = b.len() - TRAILER_LEN;
                    b.insert(end, 1);
                },
                SyncError::CountMismatch,
            ),
            (
                "a record cut",
                |b| {
                    // The second record (66 bytes) loses its last byte.
                    let end = b.len() - TRAILER_LEN;
                    b.remove(end - 1);
                },
                SyncError::BadRecord,
            ),
        ];
        for (what, f, want) in cases {
            assert_eq!(edited(f), Err(*want), "{what}");
        }
        assert_eq!(edited(|_| ()), Ok(()));
        // A Nack without its range, or with a backwards one.
        let nack = message(&header(Kind::Nack { from: 1, to: 2 }), &[]);
        let mut short: Vec<u8> = nack[..HEADER_LEN].to_vec();
        short.extend_from_slice(&nack[HEADER_LEN + NACK_BODY_LEN..]);
        let len = short.len() as u16;
        short[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&short[..]).err(),
            Some(SyncError::BadField)
        );
        let mut backwards = nack.clone();
        backwards[HEADER_LEN + 7] = 0;
        assert_eq!(
            Packet::new_checked(&backwards[..]).err(),
            Some(SyncError::BadField)
        );
        let mut seq = nack;
        seq[15] = 1;
        assert_eq!(
            Packet::new_checked(&seq[..]).err(),
            Some(SyncError::BadField)
        );
    }

    #[test]
    fn another_key_or_key_id_is_refused() {
        let buf = message(&header(Kind::Data), &records());
        let p = Packet::new_checked(&buf[..]).unwrap();
        let other = AuthKey::new(3, &[0xa5; 32]).unwrap();
        assert_eq!(p.verify(&other), Err(SyncError::BadTag));
        let other_id = AuthKey::new(4, &[0x5a; 32]).unwrap();
        assert_eq!(p.verify(&other_id), Err(SyncError::UnknownKey(3)));
        // The right secret under the id the message was moved to.
        let mut moved = buf.clone();
        let at = moved.len() - TRAILER_LEN;
        moved[at] = 4;
        let p = Packet::new_checked(&moved[..]).unwrap();
        assert_eq!(p.verify(&other_id), Err(SyncError::BadTag));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        for kind in KINDS {
            let rs: &[Record] = if kind == Kind::Data { &records() } else { &[] };
            let buf = message(&header(kind), rs);
            let key_id_at = buf.len() - TRAILER_LEN;
            for i in 0..buf.len() * 8 {
                let mut b = buf.clone();
                b[i / 8] ^= 1 << (i % 8);
                let result = Packet::new_checked(&b[..]).and_then(|p| p.verify(&key()));
                assert!(result.is_err(), "{kind:?} bit {i}");
                if i / 8 == key_id_at {
                    assert_eq!(result, Err(SyncError::UnknownKey(b[key_id_at])));
                }
                if i / 8 >= buf.len() - TAG_LEN {
                    assert_eq!(result, Err(SyncError::BadTag), "{kind:?} tag bit {i}");
                }
            }
        }
    }

    #[test]
    fn epoch_guard_follows_restarts_and_refuses_retired_epochs() {
        const OWN: u32 = 77;
        let mut guard = EpochGuard::new();
        let h = |kind, epoch, peer_epoch| Header {
            epoch,
            peer_epoch,
            ..header(kind)
        };
        // Data before the peer heard of us is not for us.
        assert_eq!(
            guard.check(&h(Kind::Data, 10, 0), OWN),
            Err(ReplayError::WrongPeerEpoch)
        );
        assert_eq!(guard.current(), None, "a refusal changes nothing");
        assert_eq!(
            guard.check(&h(Kind::Hello, 10, 0), OWN),
            Ok(EpochChange::First)
        );
        assert_eq!(
            guard.check(&h(Kind::Data, 10, OWN), OWN),
            Ok(EpochChange::Same)
        );
        // Sent to an earlier run of ours.
        for kind in KINDS {
            assert_eq!(
                guard.check(&h(kind, 10, OWN + 1), OWN),
                Err(ReplayError::WrongPeerEpoch),
                "{kind:?}"
            );
        }
        assert_eq!(
            guard.check(&h(Kind::BulkRequest, 11, 0), OWN),
            Ok(EpochChange::Restarted { previous: 10 })
        );
        assert_eq!(
            guard.check(&h(Kind::Data, 10, OWN), OWN),
            Err(ReplayError::RetiredEpoch)
        );
        assert_eq!(guard.current(), Some(11));
        // The last RETIRED_EPOCHS are remembered, older ones forgotten.
        for e in 12..12 + RETIRED_EPOCHS as u32 {
            assert!(matches!(
                guard.check(&h(Kind::Ack, e, OWN), OWN),
                Ok(EpochChange::Restarted { .. })
            ));
        }
        for e in 12..12 + RETIRED_EPOCHS as u32 - 1 {
            assert_eq!(
                guard.check(&h(Kind::Ack, e, OWN), OWN),
                Err(ReplayError::RetiredEpoch),
                "epoch {e}"
            );
        }
        assert_eq!(
            guard.check(&h(Kind::Ack, 10, OWN), OWN),
            Ok(EpochChange::Restarted {
                previous: 11 + RETIRED_EPOCHS as u32
            }),
            "forgotten (the documented limit)"
        );
    }

    /// The fuzz seeds, written by `fuzz/gen_corpus.py` with an encoder of
    /// its own (Python's `hmac`): the same bytes on both sides.
    #[test]
    fn messages_written_independently_verify() {
        let key = AuthKey::new(1, b"xvs-fuzz-sync-message-key-32byte").unwrap();
        let seeds: [(&str, &[u8]); 7] = [
            (
                "data_bulk_start",
                include_bytes!("../fuzz/corpus/sync/data_bulk_start"),
            ),
            (
                "data_bulk_end_empty",
                include_bytes!("../fuzz/corpus/sync/data_bulk_end_empty"),
            ),
            ("ack", include_bytes!("../fuzz/corpus/sync/ack")),
            ("nack", include_bytes!("../fuzz/corpus/sync/nack")),
            (
                "hello_unaddressed",
                include_bytes!("../fuzz/corpus/sync/hello_unaddressed"),
            ),
            (
                "bulk_request",
                include_bytes!("../fuzz/corpus/sync/bulk_request"),
            ),
            (
                "other_key_id",
                include_bytes!("../fuzz/corpus/sync/other_key_id"),
            ),
        ];
        for (name, bytes) in seeds {
            let p = Packet::new_checked(bytes).unwrap();
            let want = if name == "other_key_id" {
                Err(SyncError::UnknownKey(2))
            } else {
                Ok(())
            };
            assert_eq!(p.verify(&key), want, "{name}");
        }
        let p = Packet::new_checked(seeds[0].1).unwrap();
        assert_eq!(
            p.header(),
            Header {
                flags: Flags::BULK_START,
                sequence: 1,
                ..header(Kind::Data)
            }
        );
        let rs: Vec<_> = p.records().collect();
        assert_eq!(rs.len(), 5);
        assert_eq!(rs[0], records()[0]);
        let Record::Delete(k) = rs[4] else {
            panic!("a delete")
        };
        assert!(k.template && k.proto == IpProtocol::Udp && k.vport == 53);
        assert_eq!(
            Packet::new_checked(seeds[3].1).unwrap().header().kind,
            Kind::Nack { from: 42, to: 50 }
        );
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(seq_after(1, 0));
        assert!(seq_after(0, u32::MAX));
        assert!(!seq_after(5, 5));
        assert!(!seq_after(u32::MAX, 0));
    }

    fn arbitrary_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ];
        let key = (
            any::<u8>(),
            addr.clone(),
            any::<u16>(),
            addr.clone(),
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(p, client, cport, vip, vport, template)| ConnKey {
                proto: IpProtocol::from(p),
                client,
                cport,
                vip,
                vport,
                template,
            });
        let state = (
            key.clone(),
            addr,
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            any::<bool>(),
            any::<u32>(),
        )
            .prop_map(
                |(key, real_server, rport, method, tcp_state, active, no_output, timeout_ms)| {
                    Record::Upsert(ConnState {
                        key,
                        real_server,
                        rport,
                        method,
                        tcp_state,
                        active,
                        no_output,
                        timeout_ms,
                    })
                },
            );
        prop_oneof![state, key.prop_map(Record::Delete)]
    }

    proptest::proptest! {
        /// Whatever fits, reads back exactly, in order.
        #[test]
        fn any_records_round_trip(rs in proptest::collection::vec(arbitrary_record(), 0..40)) {
            let mut buf = vec![0; 1472];
            let h = header(Kind::Data);
            let mut b = MessageBuilder::new(&mut buf, MaxLen::DEFAULT, &h).unwrap();
            let taken: Vec<Record> = rs.iter().take_while(|r| b.push(r)).copied().collect();
            let len = b.sign(&key());
            let p = Packet::new_checked(&buf[..len]).unwrap();
            proptest::prop_assert_eq!(p.verify(&key()), Ok(()));
            proptest::prop_assert_eq!(p.records().collect::<Vec<_>>(), taken);
        }

        /// Arbitrary bytes behind a valid magic and version never panic.
        #[test]
        fn arbitrary_bytes_never_panic(rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut bytes = b"XVSS\x01".to_vec();
            bytes.extend(rest);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = p.header();
                proptest::prop_assert_eq!(p.records().count(), usize::from(p.record_count()));
                proptest::prop_assert!(p.verify(&key()).is_err());
            }
        }
    }
}
