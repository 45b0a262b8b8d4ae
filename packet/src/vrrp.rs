//! VRRP version 3 advertisements (RFC 9568) for IPv4 and IPv6, and
//! keepalived's `auth_hmac` trailer (draft-cassen-vrrp-auth-hmac).
//!
//! Contract: [`Packet`] is a view over a VRRP message, the bytes after the
//! IP header. [`Packet::new_checked`] refuses anything but a version-3
//! advertisement whose address list fits; the bytes after the addresses
//! are either nothing or exactly one [`TRAILER_LEN`]-byte `auth_hmac`
//! trailer, as keepalived accepts them. After that no accessor can panic.
//! The checksum (§5.2.8) covers an IPv4 or IPv6 pseudo-header, so it is
//! checked with the addresses of the IP header ([`Packet::verify_checksum`]);
//! [`receive`] does that and the other receive checks of RFC 9568 §7.1
//! that need the IP header (protocol 112, TTL / hop limit 255) on a whole
//! datagram, with the crate's IPv4 and IPv6 views.
//!
//! The checksum's extent follows keepalived: over IPv4 it covers the VRRP
//! message only (the pseudo-header's length is the message's), over IPv6
//! the whole IPv6 payload, trailer included (the kernel's `IPV6_CHECKSUM`
//! computes it that way on the sender's raw socket).
//!
//! ```text
//!  0        1      2          3           4                  6          8
//!  | ver|type | VRID | priority | addr count | rsvd|max adver int | checksum |
//!  8: addr count IPv4 (4 bytes) or IPv6 (16 bytes) addresses
//!  then, optionally, the auth_hmac trailer (28 bytes):
//!  | ext type | key id | reserved (2) | sec (4) | subsec (2) | ctr (2) | HMAC (16) |
//! ```
//!
//! The trailer's tag is HMAC-SHA256 truncated to 128 bits over a 20-byte
//! pseudo-header (family 4 or 6, VRRP version, VRID, a zero byte, the
//! sender's address padded to 16 bytes), then the message with its checksum
//! read as zero, then the trailer with its tag read as zero. Binding the
//! sender and the VRID stops an advert signed for one router or instance
//! from being replayed as another's. Its 64-bit sequence (`sec`, `subsec`,
//! `ctr`) is the sender's clock with a counter for ties ([`SequenceSource`]);
//! the receiver refuses a stale timestamp before spending a digest on it and
//! a sequence not above the sender's last after the tag verified
//! ([`ReplayGuard`]). The clocks are the caller's: nothing here reads one.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::checksum;
use crate::ethernet::{self, EtherType, MacAddr};
use crate::ip::IpProtocol;
use crate::ipv4::{be16, be32};
use crate::{ipv4, ipv6};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The VRRP version this module reads and writes.
pub const VERSION: u8 = 3;
/// The only VRRP packet type: an advertisement.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// The IPv4 multicast group of VRRP (224.0.0.18).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (ff02::12).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit every advert is sent with and must arrive with: a
/// receiver refuses any other, so an advert cannot come from off-link.
pub const TTL: u8 = 255;
/// The largest maximum advertisement interval: 12 bits of centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;
/// Bytes of the `auth_hmac` trailer.
pub const TRAILER_LEN: usize = trailer::HMAC.end;
/// Bytes of the truncated HMAC-SHA256 tag.
pub const HMAC_LEN: usize = 16;
/// The trailer's `ext_type` for HMAC-SHA256 truncated to 128 bits.
pub const EXT_HMAC_SHA256_128: u8 = 1;
/// The shortest key keepalived accepts (and so do we).
pub const MIN_KEY_LEN: usize = 32;
/// The longest key keepalived accepts.
pub const MAX_KEY_LEN: usize = 64;
/// Bytes of the pseudo-header bound into the tag.
const PSEUDO_LEN: usize = 20;
/// The largest IPv4 header [`emit_frame`] writes (no options).
const IPV4_HEADER_LEN: usize = ipv4::HEADER_LEN;
/// IPv4's type of service on adverts, as keepalived sends them
/// (precedence "internetwork control").
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

mod field {
    use core::ops::Range;
    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    pub const INTERVAL: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

mod trailer {
    use core::ops::Range;
    pub const EXT_TYPE: usize = 0;
    pub const KEY_ID: usize = 1;
    pub const RESERVED: Range<usize> = 2..4;
    pub const SEC: Range<usize> = 4..8;
    pub const SUBSEC: Range<usize> = 8..10;
    pub const CTR: Range<usize> = 10..12;
    pub const HMAC: Range<usize> = 12..28;
}

/// Bytes of the fixed VRRP header, before the addresses.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// The address family of an advert: which addresses it lists, which IP
/// header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: 4-byte addresses, to 224.0.0.18.
    V4,
    /// IPv6: 16-byte addresses, to ff02::12.
    V6,
}

impl Family {
    /// Bytes of one address.
    pub const fn address_len(self) -> usize {
        match self {
            Self::V4 => 4,
            Self::V6 => 16,
        }
    }

    /// The family of `addr`.
    pub const fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    const fn pseudo_tag(self) -> u8 {
        match self {
            Self::V4 => 4,
            Self::V6 => 6,
        }
    }
}

/// Why an advert was refused, or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpError {
    /// Shorter than its header, or than its count of addresses says.
    Truncated,
    /// Bytes after the addresses that are not one `auth_hmac` trailer.
    BadLength,
    /// A VRRP version other than 3.
    BadVersion(u8),
    /// A type other than advertisement (1).
    BadType(u8),
    /// The checksum does not verify.
    BadChecksum,
    /// The IP header is not one VRRP is carried in (not protocol 112, or
    /// an IP header the crate's views refuse).
    NotVrrp,
    /// TTL / hop limit other than 255: sent from off-link, or forwarded.
    BadTtl(u8),
    /// An address of another family than the advert's.
    FamilyMismatch,
    /// More addresses than the count field holds (255), or an interval
    /// above 12 bits.
    FieldOverflow,
    /// The caller's buffer cannot hold the advert.
    BufferTooSmall,
}

impl fmt::Display for VrrpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated VRRP advert"),
            Self::BadLength => {
                f.write_str("bytes after the VRRP addresses are not one 28-byte auth_hmac trailer")
            }
            Self::BadVersion(v) => write!(f, "VRRP version {v} (only version 3 is spoken)"),
            Self::BadType(t) => write!(f, "VRRP type {t} (only 1, advertisement, exists)"),
            Self::BadChecksum => f.write_str("VRRP checksum does not verify"),
            Self::NotVrrp => f.write_str("not a VRRP datagram (IP protocol 112)"),
            Self::BadTtl(t) => write!(f, "VRRP advert with TTL/hop limit {t}, not 255"),
            Self::FamilyMismatch => f.write_str("addresses of both families in one VRRP advert"),
            Self::FieldOverflow => {
                f.write_str("more than 255 addresses, or an interval above 4095 centiseconds")
            }
            Self::BufferTooSmall => f.write_str("buffer too short for the VRRP advert"),
        }
    }
}

impl core::error::Error for VrrpError {}

/// A view over a VRRP message (what follows the IP header).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer of `family` without checks.
    pub const fn new_unchecked(buffer: T, family: Family) -> Self {
        Self { buffer, family }
    }

    /// Wraps a version-3 advertisement of `family`: see [`Packet::check_len`].
    pub fn new_checked(buffer: T, family: Family) -> Result<Self, VrrpError> {
        let packet = Self::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Version 3, type advertisement, the addresses present, and after
    /// them nothing or one trailer. Afterwards no accessor can panic.
    pub fn check_len(&self) -> Result<(), VrrpError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(VrrpError::Truncated);
        }
        if self.version() != VERSION {
            return Err(VrrpError::BadVersion(self.version()));
        }
        if self.kind() != TYPE_ADVERTISEMENT {
            return Err(VrrpError::BadType(self.kind()));
        }
        let message = self.message_len();
        match b.len().checked_sub(message) {
            None => Err(VrrpError::Truncated),
            Some(0 | TRAILER_LEN) => Ok(()),
            Some(_) => Err(VrrpError::BadLength),
        }
    }

    /// The family given when the view was made.
    pub const fn family(&self) -> Family {
        self.family
    }

    /// The version (high nibble of the first byte).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The type (low nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    /// The virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// The sender's priority: 255 for the address owner, 0 for a master
    /// that is stopping.
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// The count of addresses.
    pub fn address_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// The maximum advertisement interval, centiseconds (12 bits).
    pub fn max_advert_interval(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::INTERVAL]) & MAX_INTERVAL_CS
    }

    /// The 4 reserved bits before the interval (sent as zero, ignored).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::INTERVAL.start] >> 4
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Bytes of the message: the header and the addresses.
    pub fn message_len(&self) -> usize {
        HEADER_LEN + usize::from(self.address_count()) * self.family.address_len()
    }

    /// The message's address `index` (below [`Packet::address_count`]).
    pub fn address(&self, index: usize) -> Option<IpAddr> {
        if index >= usize::from(self.address_count()) {
            return None;
        }
        let len = self.family.address_len();
        let at = HEADER_LEN + index * len;
        let raw = self.buffer.as_ref().get(at..at + len)?;
        Some(match self.family {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            Family::V6 => {
                let mut a = [0; 16];
                a.copy_from_slice(raw);
                IpAddr::V6(Ipv6Addr::from(a))
            }
        })
    }

    /// The addresses in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..usize::from(self.address_count())).filter_map(|i| self.address(i))
    }

    /// The `auth_hmac` trailer, when the advert carries one.
    pub fn trailer(&self) -> Option<Trailer<'_>> {
        let bytes = self.buffer.as_ref().get(self.message_len()..)?;
        (bytes.len() == TRAILER_LEN).then_some(Trailer { bytes })
    }

    /// True when the checksum verifies for an advert from `src` to `dst`
    /// (the IP header's addresses; a family other than the advert's fails).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        checksum_of(self.buffer.as_ref(), self.message_len(), src, dst).is_some_and(|sum| sum == 0)
    }

    /// Checks the trailer's tag with `key` (in constant time) for an advert
    /// sent by `src`. Nothing of the freshness: that is [`ReplayGuard`]'s.
    pub fn verify_hmac(&self, src: IpAddr, key: &AuthKey) -> Result<(), AuthError> {
        let trailer = self.trailer().ok_or(AuthError::Missing)?;
        if trailer.ext_type() != EXT_HMAC_SHA256_128 || trailer.reserved() != 0 {
            return Err(AuthError::Malformed);
        }
        if trailer.key_id() != key.id {
            return Err(AuthError::UnknownKey(trailer.key_id()));
        }
        if Family::of(src) != self.family {
            return Err(AuthError::BadHmac);
        }
        let b = self.buffer.as_ref();
        let mac = tag_state(key, self.family, self.vrid(), src, b, self.message_len());
        mac.verify_truncated_left(trailer.hmac())
            .map_err(|_| AuthError::BadHmac)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// The HMAC state after the pseudo-header, the message with its checksum
/// read as zero, and the trailer's first 12 bytes and 16 zeros (keepalived's
/// `pdu_hmac`).
fn tag_state(
    key: &AuthKey,
    family: Family,
    vrid: u8,
    src: IpAddr,
    b: &[u8],
    message_len: usize,
) -> HmacSha256 {
    let mut pseudo = [0u8; PSEUDO_LEN];
    pseudo[0] = family.pseudo_tag();
    pseudo[1] = VERSION;
    pseudo[2] = vrid;
    match src {
        IpAddr::V4(a) => pseudo[4..8].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => pseudo[4..20].copy_from_slice(&a.octets()),
    }
    let mut mac = key.mac.clone();
    mac.update(&pseudo);
    mac.update(&b[..field::CHECKSUM.start]);
    mac.update(&[0; 2]);
    mac.update(&b[field::CHECKSUM.end..message_len + trailer::HMAC.start]);
    mac.update(&[0; HMAC_LEN]);
    mac
}

/// The checksum over `b` as sent from `src` to `dst`: zero for a message
/// whose field is right, the value to write when the field is zero.
/// `None` for addresses of mixed families.
fn checksum_of(b: &[u8], message_len: usize, src: IpAddr, dst: IpAddr) -> Option<u16> {
    let vrrp = IpProtocol::Vrrp;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let message = b.get(..message_len)?;
            let pseudo = checksum::pseudo_header_v4(s, d, vrrp, message.len() as u16);
            Some(checksum::finish(checksum::combine(
                pseudo,
                checksum::sum(message),
            )))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let pseudo = checksum::pseudo_header_v6(&s, &d, vrrp, b.len() as u32);
            Some(checksum::finish(checksum::combine(
                pseudo,
                checksum::sum(b),
            )))
        }
        _ => None,
    }
}

/// A view over the 28-byte `auth_hmac` trailer of a checked [`Packet`].
#[derive(Debug, Clone, Copy)]
pub struct Trailer<'a> {
    bytes: &'a [u8],
}

impl Trailer<'_> {
    /// The scheme: [`EXT_HMAC_SHA256_128`] is the only one.
    pub fn ext_type(&self) -> u8 {
        self.bytes[trailer::EXT_TYPE]
    }

    /// The id of the key that claims to sign it.
    pub fn key_id(&self) -> u8 {
        self.bytes[trailer::KEY_ID]
    }

    /// Sent as zero.
    pub fn reserved(&self) -> u16 {
        be16(&self.bytes[trailer::RESERVED])
    }

    /// The sender's UTC seconds since the Unix epoch (low 32 bits).
    pub fn seconds(&self) -> u32 {
        be32(&self.bytes[trailer::SEC])
    }

    /// A binary fraction of the second, in 1/65536.
    pub fn subseconds(&self) -> u16 {
        be16(&self.bytes[trailer::SUBSEC])
    }

    /// The tie-breaker within one timestamp.
    pub fn counter(&self) -> u16 {
        be16(&self.bytes[trailer::CTR])
    }

    /// The 64-bit sequence: seconds, subseconds, counter.
    pub fn sequence(&self) -> u64 {
        (u64::from(self.seconds()) << 32)
            | (u64::from(self.subseconds()) << 16)
            | u64::from(self.counter())
    }

    /// The truncated tag.
    pub fn hmac(&self) -> &[u8] {
        &self.bytes[trailer::HMAC]
    }
}

/// An `auth_hmac` key with its id (1–255), ready to sign and verify.
///
/// Holds the HMAC state after the key. Its `Debug` shows the id, never
/// the key.
#[derive(Clone)]
pub struct AuthKey {
    id: u8,
    mac: HmacSha256,
}

/// Why bytes and an id cannot be an [`AuthKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKeyError {
    /// Key id 0: keepalived's ids are 1–255.
    ZeroId,
    /// Shorter than [`MIN_KEY_LEN`] or longer than [`MAX_KEY_LEN`] bytes.
    BadLength(usize),
}

impl fmt::Display for AuthKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroId => f.write_str("a VRRP auth_hmac key id is 1 to 255"),
            Self::BadLength(n) => write!(
                f,
                "a VRRP auth_hmac key is {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes, not {n} \
                 (make one with `head -c 32 /dev/urandom`)"
            ),
        }
    }
}

impl core::error::Error for AuthKeyError {}

impl AuthKey {
    /// The key `secret`, known to both sides as `id`.
    pub fn new(id: u8, secret: &[u8]) -> Result<Self, AuthKeyError> {
        if id == 0 {
            return Err(AuthKeyError::ZeroId);
        }
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&secret.len()) {
            return Err(AuthKeyError::BadLength(secret.len()));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| AuthKeyError::BadLength(secret.len()))?;
        Ok(Self { id, mac })
    }

    /// Its id.
    pub const fn id(&self) -> u8 {
        self.id
    }

    /// The HMAC state after the key, for the crate's other signed formats
    /// (the directors' [`sync`](crate::sync) messages use the same key).
    pub(crate) const fn mac(&self) -> &HmacSha256 {
        &self.mac
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why an advert's trailer was refused (keepalived's outcomes of
/// `vrrp_auth_hmac_check`, but `Missing`, which is the caller's call in
/// keepalived's migration modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The advert carries no trailer.
    Missing,
    /// An unknown scheme, or the reserved field not zero.
    Malformed,
    /// Signed with a key id the receiver does not hold.
    UnknownKey(u8),
    /// The tag does not match (forged, corrupted, another sender, VRID or key).
    BadHmac,
    /// The timestamp is outside the freshness window.
    Stale,
    /// The sequence is not above the sender's last accepted.
    Replayed,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no auth_hmac trailer"),
            Self::Malformed => f.write_str("malformed auth_hmac trailer"),
            Self::UnknownKey(id) => write!(f, "unknown auth_hmac key id {id}"),
            Self::BadHmac => f.write_str("auth_hmac tag does not match"),
            Self::Stale => f.write_str("auth_hmac timestamp outside the freshness window"),
            Self::Replayed => f.write_str("auth_hmac sequence not above the last accepted"),
        }
    }
}

impl core::error::Error for AuthError {}

/// A wall-clock reading: UTC seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WallClock {
    /// Seconds since the Unix epoch.
    pub secs: u64,
    /// Nanoseconds within the second (below 10⁹).
    pub nanos: u32,
}

impl WallClock {
    /// The sequence of this instant with the counter zero: the low 32 bits
    /// of the seconds, then the fraction in 1/65536 s.
    pub fn sequence(self) -> u64 {
        let subsec = (u64::from(self.nanos.min(999_999_999)) << 16) / 1_000_000_000;
        (u64::from(self.secs as u32) << 32) | (subsec << 16)
    }
}

/// RFC 1982 serial arithmetic over 64 bits: `a` comes after `b`.
pub const fn sequence_after(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

/// Seconds between two 32-bit timestamps, in serial arithmetic (positive
/// when `now` is after `then`).
const fn seconds_since(now: u32, then: u32) -> i64 {
    now.wrapping_sub(then) as i32 as i64
}

/// How a receiver judges freshness (keepalived's `anti_replay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AntiReplay {
    /// Timestamps further than this many seconds from the receiver's clock
    /// are stale; a sender's high-water mark expires once outside it (so a
    /// sender whose clock was stepped back recovers). The default.
    Time {
        /// The window, seconds (keepalived: 1–300, default
        /// max(3 × advert interval, 5 s)).
        window_s: u32,
    },
    /// Only strict growth of the sequence: no clock needed, but the mark
    /// never expires.
    Monotonic,
}

/// The sender's side: the 64-bit sequence of each advert it signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SequenceSource {
    last: u64,
}

impl SequenceSource {
    /// A source that has sent nothing.
    pub const fn new() -> Self {
        Self { last: 0 }
    }

    /// The next sequence at `now`: the clock's if it is after the last,
    /// else the last plus one. Under [`AntiReplay::Time`], a last sequence
    /// more than the window ahead of the clock (the clock was stepped back)
    /// restarts from the clock, which receivers would otherwise refuse.
    pub fn next(&mut self, now: WallClock, mode: AntiReplay) -> u64 {
        let clock = now.sequence();
        if sequence_after(clock, self.last) {
            self.last = clock;
            return clock;
        }
        let ahead = seconds_since((self.last >> 32) as u32, (clock >> 32) as u32);
        self.last = match mode {
            AntiReplay::Time { window_s } if ahead > i64::from(window_s) => clock,
            _ => self.last.wrapping_add(1),
        };
        self.last
    }
}

/// The receiver's freshness check for one sender (keyed by its address;
/// keepalived keeps one per unicast peer and a few for multicast senders).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayGuard {
    mode: AntiReplay,
    mark: Option<u64>,
}

impl ReplayGuard {
    /// A guard that has accepted nothing yet.
    pub const fn new(mode: AntiReplay) -> Self {
        Self { mode, mark: None }
    }

    /// Before the tag is checked: refuses a timestamp outside the window
    /// of `now_secs` (a cheap refusal of old captures; trusts nothing).
    pub fn check_window(&self, trailer: &Trailer<'_>, now_secs: u64) -> Result<(), AuthError> {
        match self.mode {
            AntiReplay::Time { window_s } => {
                let delta = seconds_since(now_secs as u32, trailer.seconds());
                if delta.abs() > i64::from(window_s) {
                    return Err(AuthError::Stale);
                }
                Ok(())
            }
            AntiReplay::Monotonic => Ok(()),
        }
    }

    /// After the tag verified: accepts `sequence` if it comes after the
    /// high-water mark (serial arithmetic) and raises the mark to it; a
    /// refused sequence changes nothing. Under [`AntiReplay::Time`] a mark
    /// outside the window of `now_secs` is forgotten first.
    pub fn accept(&mut self, sequence: u64, now_secs: u64) -> Result<(), AuthError> {
        if let (Some(mark), AntiReplay::Time { window_s }) = (self.mark, self.mode) {
            let age = seconds_since(now_secs as u32, (mark >> 32) as u32);
            if age.abs() > i64::from(window_s) {
                self.mark = None;
            }
        }
        if self
            .mark
            .is_some_and(|mark| !sequence_after(sequence, mark))
        {
            return Err(AuthError::Replayed);
        }
        self.mark = Some(sequence);
        Ok(())
    }

    /// The window check, the tag, then the sequence: all of keepalived's
    /// checks of a received trailer, in its order.
    pub fn verify<T: AsRef<[u8]>>(
        &mut self,
        packet: &Packet<T>,
        src: IpAddr,
        key: &AuthKey,
        now_secs: u64,
    ) -> Result<(), AuthError> {
        let trailer = packet.trailer().ok_or(AuthError::Missing)?;
        if trailer.ext_type() != EXT_HMAC_SHA256_128 || trailer.reserved() != 0 {
            return Err(AuthError::Malformed);
        }
        self.check_window(&trailer, now_secs)?;
        packet.verify_hmac(src, key)?;
        self.accept(trailer.sequence(), now_secs)
    }

    /// The last sequence accepted.
    pub const fn mark(&self) -> Option<u64> {
        self.mark
    }
}

/// The addresses an advert lists, of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses<'a> {
    /// IPv4 addresses.
    V4(&'a [Ipv4Addr]),
    /// IPv6 addresses.
    V6(&'a [Ipv6Addr]),
}

impl Addresses<'_> {
    /// Their family.
    pub const fn family(&self) -> Family {
        match self {
            Self::V4(_) => Family::V4,
            Self::V6(_) => Family::V6,
        }
    }

    const fn len(&self) -> usize {
        match self {
            Self::V4(a) => a.len(),
            Self::V6(a) => a.len(),
        }
    }
}

/// What an advert says: the contents of one VRRP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert<'a> {
    /// The virtual router id.
    pub vrid: u8,
    /// The sender's priority (0 when stopping, 255 when address owner).
    pub priority: u8,
    /// The maximum advertisement interval, centiseconds (at most 4095).
    pub max_advert_interval: u16,
    /// The virtual addresses.
    pub addresses: Addresses<'a>,
}

/// The signature an advert carries, if any.
#[derive(Debug, Clone, Copy)]
pub enum Signing<'a> {
    /// No trailer (`auth = none`: keepalived without `auth_hmac`).
    None,
    /// An `auth_hmac` trailer with this key and sequence.
    Hmac {
        /// The key (its id goes on the wire).
        key: &'a AuthKey,
        /// From the sender's [`SequenceSource`].
        sequence: u64,
    },
}

impl Advert<'_> {
    /// Bytes of the VRRP message this advert writes, trailer included.
    pub fn wire_len(&self, signing: &Signing<'_>) -> usize {
        let trailer = match signing {
            Signing::None => 0,
            Signing::Hmac { .. } => TRAILER_LEN,
        };
        HEADER_LEN + self.addresses.len() * self.addresses.family().address_len() + trailer
    }

    /// Writes the VRRP message sent from `src` to `dst` (for the checksum
    /// and the tag) into the start of `buf`, signed as `signing` says, with
    /// its checksum; returns its length.
    pub fn emit(
        &self,
        src: IpAddr,
        dst: IpAddr,
        signing: &Signing<'_>,
        buf: &mut [u8],
    ) -> Result<usize, VrrpError> {
        let family = self.addresses.family();
        if Family::of(src) != family || Family::of(dst) != family {
            return Err(VrrpError::FamilyMismatch);
        }
        let count = u8::try_from(self.addresses.len()).map_err(|_| VrrpError::FieldOverflow)?;
        if self.max_advert_interval > MAX_INTERVAL_CS {
            return Err(VrrpError::FieldOverflow);
        }
        let len = self.wire_len(signing);
        let b = buf.get_mut(..len).ok_or(VrrpError::BufferTooSmall)?;
        b[field::VER_TYPE] = (VERSION << 4) | TYPE_ADVERTISEMENT;
        b[field::VRID] = self.vrid;
        b[field::PRIORITY] = self.priority;
        b[field::COUNT] = count;
        b[field::INTERVAL].copy_from_slice(&self.max_advert_interval.to_be_bytes());
        b[field::CHECKSUM].fill(0);
        match self.addresses {
            Addresses::V4(list) => {
                for (chunk, a) in b[HEADER_LEN..].chunks_exact_mut(4).zip(list) {
                    chunk.copy_from_slice(&a.octets());
                }
            }
            Addresses::V6(list) => {
                for (chunk, a) in b[HEADER_LEN..].chunks_exact_mut(16).zip(list) {
                    chunk.copy_from_slice(&a.octets());
                }
            }
        }
        let message_len = HEADER_LEN + usize::from(count) * family.address_len();
        if let Signing::Hmac { key, sequence } = signing {
            let t = &mut b[message_len..];
            t[trailer::EXT_TYPE] = EXT_HMAC_SHA256_128;
            t[trailer::KEY_ID] = key.id;
            t[trailer::RESERVED].fill(0);
            t[trailer::SEC].copy_from_slice(&((sequence >> 32) as u32).to_be_bytes());
            t[trailer::SUBSEC].copy_from_slice(&((sequence >> 16) as u16).to_be_bytes());
            t[trailer::CTR].copy_from_slice(&(*sequence as u16).to_be_bytes());
            t[trailer::HMAC].fill(0);
            let tag = tag_state(key, family, self.vrid, src, b, message_len).finalize();
            b[message_len + trailer::HMAC.start..].copy_from_slice(&tag.into_bytes()[..HMAC_LEN]);
        }
        let sum = checksum_of(b, message_len, src, dst).ok_or(VrrpError::FamilyMismatch)?;
        b[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        Ok(len)
    }
}

/// The virtual router's MAC address: 00-00-5E-00-01-{VRID} for IPv4,
/// 00-00-5E-00-02-{VRID} for IPv6 (RFC 9568 §7.3), the source of its adverts.
pub const fn virtual_mac(family: Family, vrid: u8) -> MacAddr {
    let kind = match family {
        Family::V4 => 1,
        Family::V6 => 2,
    };
    MacAddr([0x00, 0x00, 0x5e, 0x00, kind, vrid])
}

/// The Ethernet multicast address of an IPv4 or IPv6 group (RFC 1112,
/// RFC 2464); `None` for a unicast address.
pub const fn multicast_mac(group: IpAddr) -> Option<MacAddr> {
    match group {
        IpAddr::V4(g) if g.is_multicast() => {
            let o = g.octets();
            Some(MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]))
        }
        IpAddr::V6(g) if g.is_multicast() => {
            let o = g.octets();
            Some(MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]))
        }
        _ => None,
    }
}

/// Writes a whole advert frame into `buf`: Ethernet from the virtual
/// router's MAC to `dst_mac`, an IPv4 header (TTL 255, no options, DSCP
/// "internetwork control" as keepalived sends) or IPv6 header (hop limit
/// 255) from `src` to `dst`, and the VRRP message; returns its length.
pub fn emit_frame(
    advert: &Advert<'_>,
    src: IpAddr,
    dst: IpAddr,
    dst_mac: MacAddr,
    signing: &Signing<'_>,
    buf: &mut [u8],
) -> Result<usize, VrrpError> {
    let family = advert.addresses.family();
    let ip_len = match family {
        Family::V4 => IPV4_HEADER_LEN,
        Family::V6 => ipv6::HEADER_LEN,
    };
    let l4 = ethernet::HEADER_LEN + ip_len;
    let vrrp_len = advert.emit(
        src,
        dst,
        signing,
        buf.get_mut(l4..).ok_or(VrrpError::BufferTooSmall)?,
    )?;
    let mut eth = ethernet::Frame::new_unchecked(&mut buf[..l4 + vrrp_len]);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(virtual_mac(family, advert.vrid));
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            eth.set_ethertype(EtherType::Ipv4);
            let mut ip = ipv4::Packet::new_unchecked(eth.payload_mut());
            ip.set_version_and_header_len(IPV4_HEADER_LEN);
            ip.set_dscp_ecn(TOS_INTERNETWORK_CONTROL);
            ip.set_total_len((IPV4_HEADER_LEN + vrrp_len) as u16);
            ip.set_ident(0);
            ip.set_flags_and_offset(false, false, 0);
            ip.set_ttl(TTL);
            ip.set_protocol(IpProtocol::Vrrp);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            eth.set_ethertype(EtherType::Ipv6);
            let mut ip = ipv6::Packet::new_unchecked(eth.payload_mut());
            ip.set_version_tc_flow(TOS_INTERNETWORK_CONTROL, 0);
            ip.set_payload_len(vrrp_len as u16);
            ip.set_next_header(IpProtocol::Vrrp);
            ip.set_hop_limit(TTL);
            ip.set_src_addr(&s);
            ip.set_dst_addr(&d);
        }
        // `emit` refused mixed families.
        _ => return Err(VrrpError::FamilyMismatch),
    }
    Ok(l4 + vrrp_len)
}

/// A received advert with the addresses of its IP header.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    /// The sender (the IP source): the primary address that breaks ties.
    pub src: IpAddr,
    /// The group or, with unicast peers, this router's address.
    pub dst: IpAddr,
    /// The advert.
    pub packet: Packet<&'a [u8]>,
}

/// The TTL / hop limit check of RFC 9568 §7.1: 255 or the advert is
/// refused. For IPv6 raw sockets, which hand over the payload without its
/// header, the hop limit comes from `IPV6_RECVHOPLIMIT`.
pub const fn check_ttl(ttl: u8) -> Result<(), VrrpError> {
    if ttl == TTL {
        Ok(())
    } else {
        Err(VrrpError::BadTtl(ttl))
    }
}

/// Checks a whole IPv4 or IPv6 datagram (as an IPv4 raw socket or a packet
/// socket hands it over) as a VRRP advert: the IP header, protocol 112 (an
/// IPv6 extension header is refused: adverts carry none), TTL / hop limit
/// 255, the advert, and its checksum.
pub fn receive(datagram: &[u8]) -> Result<Received<'_>, VrrpError> {
    let (src, dst, ttl, payload, family) = match datagram.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(datagram).map_err(|_| VrrpError::NotVrrp)?;
            if ip.protocol() != IpProtocol::Vrrp || ip.more_frags() || ip.frag_offset() != 0 {
                return Err(VrrpError::NotVrrp);
            }
            let start = ip.header_len();
            let end = usize::from(ip.total_len());
            let payload = datagram.get(start..end).ok_or(VrrpError::NotVrrp)?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.ttl(),
                payload,
                Family::V4,
            )
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(datagram).map_err(|_| VrrpError::NotVrrp)?;
            if ip.next_header() != IpProtocol::Vrrp {
                return Err(VrrpError::NotVrrp);
            }
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            let payload = datagram
                .get(ipv6::HEADER_LEN..end)
                .ok_or(VrrpError::NotVrrp)?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                ip.hop_limit(),
                payload,
                Family::V6,
            )
        }
        _ => return Err(VrrpError::NotVrrp),
    };
    check_ttl(ttl)?;
    let packet = Packet::new_checked(payload, family)?;
    if !packet.verify_checksum(src, dst) {
        return Err(VrrpError::BadChecksum);
    }
    Ok(Received { src, dst, packet })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// keepalived's `test/auth_hmac_test.c` key: bytes 00..1f.
    fn draft_key() -> AuthKey {
        let secret: Vec<u8> = (0u8..32).collect();
        AuthKey::new(1, &secret).unwrap()
    }

    /// The draft appendix images keepalived's test verifies: key 00..1f,
    /// VRID 51, priority 200, sequence 0x6800000080000000. IPv4: from
    /// 198.51.100.10, address 192.0.2.100, a message-only checksum
    /// (the tag reads the checksum as zero, so it does not matter). IPv6:
    /// from fe80::10, address fe80::100.
    const DRAFT_V4: &str = "3133c80100644402c0000264\
                            010100006800000080000000\
                            1b84bc4e8e43892dc6d98448f8ee2265";
    const DRAFT_V6: &str = "3133c8010064a2e9\
                            fe800000000000000000000000000100\
                            010100006800000080000000\
                            c8c56146ebfd66ee10ec4d8186461b78";

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn keepalived_draft_vectors_verify() {
        for (image, family, src) in [
            (DRAFT_V4, Family::V4, v4("198.51.100.10")),
            (DRAFT_V6, Family::V6, v6("fe80::10")),
        ] {
            let bytes = hex(image);
            let p = Packet::new_checked(&bytes[..], family).unwrap();
            assert_eq!((p.vrid(), p.priority(), p.address_count()), (51, 200, 1));
            assert_eq!(p.max_advert_interval(), 100);
            let t = p.trailer().unwrap();
            assert_eq!(t.sequence(), 0x6800_0000_8000_0000);
            assert_eq!((t.key_id(), t.ext_type()), (1, 1));
            assert_eq!(p.verify_hmac(src, &draft_key()), Ok(()), "{family:?}");
            let mut guard = ReplayGuard::new(AntiReplay::Monotonic);
            assert_eq!(guard.verify(&p, src, &draft_key(), 0), Ok(()));
            assert_eq!(
                guard.verify(&p, src, &draft_key(), 0),
                Err(AuthError::Replayed)
            );
        }
    }

    /// Signing the draft's advert ourselves gives the draft's bytes: the
    /// tag byte for byte, and the IPv6 checksum for destination fe80::20.
    #[test]
    fn we_sign_the_draft_vectors_byte_for_byte() {
        let key = draft_key();
        let signing = Signing::Hmac {
            key: &key,
            sequence: 0x6800_0000_8000_0000,
        };
        let vips6 = ["fe80::100".parse().unwrap()];
        let advert = Advert {
            vrid: 51,
            priority: 200,
            max_advert_interval: 100,
            addresses: Addresses::V6(&vips6),
        };
        let mut buf = [0u8; 64];
        let n = advert
            .emit(v6("fe80::10"), v6("fe80::20"), &signing, &mut buf)
            .unwrap();
        assert_eq!(&buf[..n], &hex(DRAFT_V6)[..]);

        let vips4 = ["192.0.2.100".parse().unwrap()];
        let advert = Advert {
            addresses: Addresses::V4(&vips4),
            ..advert
        };
        let n = advert
            .emit(v4("198.51.100.10"), v4("224.0.0.18"), &signing, &mut buf)
            .unwrap();
        let want = hex(DRAFT_V4);
        // Same tag; our checksum has the pseudo-header (RFC 9568 §5.2.8),
        // the draft's image does not.
        assert_eq!(&buf[..6], &want[..6]);
        assert_eq!(&buf[8..n], &want[8..]);
    }

    /// keepalived's table of one flipped byte in the IPv6 image, and the
    /// pseudo-header's binding of source and VRID.
    #[test]
    fn keepalived_mutations_have_keepalived_outcomes() {
        let img = hex(DRAFT_V6);
        let src = v6("fe80::10");
        let t = 24; // the trailer's offset
        let cases: &[(&str, usize, Result<(), AuthError>)] = &[
            ("tampered priority", 2, Err(AuthError::BadHmac)),
            ("tampered advert interval", 5, Err(AuthError::BadHmac)),
            ("tampered checksum", 6, Ok(())),
            ("tampered address", 8 + 15, Err(AuthError::BadHmac)),
            ("unsupported ext type", t, Err(AuthError::Malformed)),
            ("unknown key id", t + 1, Err(AuthError::UnknownKey(0))),
            ("nonzero reserved", t + 2, Err(AuthError::Malformed)),
            ("tampered seconds", t + 4, Err(AuthError::BadHmac)),
            ("tampered counter", t + 10, Err(AuthError::BadHmac)),
            ("tampered hmac", t + 12, Err(AuthError::BadHmac)),
        ];
        for (what, at, want) in cases {
            let mut b = img.clone();
            b[*at] ^= 1;
            let p = Packet::new_checked(&b[..], Family::V6).unwrap();
            let mut guard = ReplayGuard::new(AntiReplay::Monotonic);
            assert_eq!(guard.verify(&p, src, &draft_key(), 0), *want, "{what}");
        }
        let p = Packet::new_checked(&img[..], Family::V6).unwrap();
        assert_eq!(
            p.verify_hmac(v6("fe80::20"), &draft_key()),
            Err(AuthError::BadHmac),
            "another source"
        );
        let mut b = img.clone();
        b[1] = 52;
        let p = Packet::new_checked(&b[..], Family::V6).unwrap();
        assert_eq!(
            p.verify_hmac(src, &draft_key()),
            Err(AuthError::BadHmac),
            "another VRID"
        );
        let other = AuthKey::new(1, &[7; 32]).unwrap();
        let p = Packet::new_checked(&img[..], Family::V6).unwrap();
        assert_eq!(p.verify_hmac(src, &other), Err(AuthError::BadHmac));
    }

    #[test]
    fn every_field_reads_back_and_the_checksum_verifies() {
        let vips = [
            "192.0.2.100".parse().unwrap(),
            "192.0.2.101".parse().unwrap(),
        ];
        let advert = Advert {
            vrid: 7,
            priority: 150,
            max_advert_interval: 4095,
            addresses: Addresses::V4(&vips),
        };
        let (src, dst) = (v4("192.0.2.1"), IpAddr::V4(MULTICAST_V4));
        let mut buf = [0u8; 64];
        let n = advert.emit(src, dst, &Signing::None, &mut buf).unwrap();
        assert_eq!(n, 16);
        let p = Packet::new_checked(&buf[..n], Family::V4).unwrap();
        assert_eq!(buf[0], 0x31);
        assert_eq!((p.vrid(), p.priority(), p.address_count()), (7, 150, 2));
        assert_eq!((p.max_advert_interval(), p.reserved()), (4095, 0));
        assert_eq!(
            p.addresses().collect::<Vec<_>>(),
            vec![v4("192.0.2.100"), v4("192.0.2.101")]
        );
        assert!(p.trailer().is_none());
        assert!(p.verify_checksum(src, dst));
        assert!(
            !p.verify_checksum(v4("192.0.2.2"), dst),
            "pseudo-header covers the source"
        );
        assert!(!p.verify_checksum(v6("::1"), v6("::2")), "another family");
        assert_ne!(checksum::checksum(&buf[..n]), 0, "not a bare sum");
    }

    #[test]
    fn malformed_inputs_have_typed_errors() {
        let mut good = [0u8; 12];
        let vips = ["192.0.2.100".parse().unwrap()];
        let advert = Advert {
            vrid: 1,
            priority: 100,
            max_advert_interval: 100,
            addresses: Addresses::V4(&vips),
        };
        advert
            .emit(
                v4("192.0.2.1"),
                IpAddr::V4(MULTICAST_V4),
                &Signing::None,
                &mut good,
            )
            .unwrap();
        let mut v2 = good;
        v2[0] = 0x21;
        let mut report = good;
        report[0] = 0x32;
        let mut long = [0u8; 13];
        long[..12].copy_from_slice(&good);
        let cases: &[(&str, &[u8], Family, VrrpError)] = &[
            ("empty", &[], Family::V4, VrrpError::Truncated),
            ("header cut", &good[..7], Family::V4, VrrpError::Truncated),
            ("address cut", &good[..11], Family::V4, VrrpError::Truncated),
            ("read as IPv6", &good, Family::V6, VrrpError::Truncated),
            ("version 2", &v2, Family::V4, VrrpError::BadVersion(2)),
            ("type 2", &report, Family::V4, VrrpError::BadType(2)),
            ("one byte more", &long, Family::V4, VrrpError::BadLength),
        ];
        for (what, input, family, want) in cases {
            assert_eq!(
                Packet::new_checked(*input, *family).err(),
                Some(*want),
                "{what}"
            );
        }
        let mut short = [0u8; 11];
        assert_eq!(
            advert.emit(
                v4("192.0.2.1"),
                IpAddr::V4(MULTICAST_V4),
                &Signing::None,
                &mut short
            ),
            Err(VrrpError::BufferTooSmall)
        );
        assert_eq!(
            advert.emit(
                v6("fe80::1"),
                IpAddr::V6(MULTICAST_V6),
                &Signing::None,
                &mut good
            ),
            Err(VrrpError::FamilyMismatch)
        );
        let slow = Advert {
            max_advert_interval: 4096,
            ..advert
        };
        assert_eq!(
            slow.emit(
                v4("192.0.2.1"),
                IpAddr::V4(MULTICAST_V4),
                &Signing::None,
                &mut good
            ),
            Err(VrrpError::FieldOverflow)
        );
        let many = [Ipv4Addr::LOCALHOST; 256];
        let crowded = Advert {
            addresses: Addresses::V4(&many),
            ..advert
        };
        let mut big = [0u8; 2048];
        assert_eq!(
            crowded.emit(
                v4("192.0.2.1"),
                IpAddr::V4(MULTICAST_V4),
                &Signing::None,
                &mut big
            ),
            Err(VrrpError::FieldOverflow)
        );
    }

    fn frame(family: Family, signing: &Signing<'_>, buf: &mut [u8]) -> usize {
        let vips4 = ["192.0.2.100".parse().unwrap()];
        let vips6 = ["2001:db8::100".parse().unwrap()];
        let (addresses, src, dst) = match family {
            Family::V4 => (
                Addresses::V4(&vips4),
                v4("192.0.2.1"),
                IpAddr::V4(MULTICAST_V4),
            ),
            Family::V6 => (
                Addresses::V6(&vips6),
                v6("fe80::1"),
                IpAddr::V6(MULTICAST_V6),
            ),
        };
        let advert = Advert {
            vrid: 51,
            priority: 150,
            max_advert_interval: 100,
            addresses,
        };
        emit_frame(&advert, src, dst, multicast_mac(dst).unwrap(), signing, buf).unwrap()
    }

    #[test]
    fn whole_frames_are_received_and_checked() {
        let key = draft_key();
        for family in [Family::V4, Family::V6] {
            for signing in [
                Signing::None,
                Signing::Hmac {
                    key: &key,
                    sequence: 5,
                },
            ] {
                let mut buf = [0u8; 128];
                let n = frame(family, &signing, &mut buf);
                let eth = ethernet::Frame::new_checked(&buf[..n]).unwrap();
                assert_eq!(eth.src_addr(), virtual_mac(family, 51));
                let r = receive(eth.payload()).unwrap();
                assert_eq!(r.packet.vrid(), 51);
                assert_eq!(
                    r.packet.trailer().is_some(),
                    matches!(signing, Signing::Hmac { .. })
                );
                if let Signing::Hmac { .. } = signing {
                    assert_eq!(r.packet.verify_hmac(r.src, &key), Ok(()));
                }
                // TTL / hop limit 254: forwarded, refused.
                let mut b = buf;
                let ttl_at = ethernet::HEADER_LEN + if family == Family::V4 { 8 } else { 7 };
                b[ttl_at] = 254;
                if family == Family::V4 {
                    let ip_end = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
                    ipv4::Packet::new_unchecked(&mut b[ethernet::HEADER_LEN..ip_end])
                        .fill_checksum();
                }
                let eth = ethernet::Frame::new_checked(&b[..n]).unwrap();
                assert_eq!(receive(eth.payload()).err(), Some(VrrpError::BadTtl(254)));
                // A flipped address bit: the checksum catches it.
                let mut b = buf;
                b[n - 1
                    - if matches!(signing, Signing::Hmac { .. }) {
                        TRAILER_LEN
                    } else {
                        0
                    }] ^= 1;
                let eth = ethernet::Frame::new_checked(&b[..n]).unwrap();
                assert_eq!(receive(eth.payload()).err(), Some(VrrpError::BadChecksum));
            }
        }
        assert_eq!(receive(&[]).err(), Some(VrrpError::NotVrrp));
        assert_eq!(receive(&[0x45; 40]).err(), Some(VrrpError::NotVrrp));
        assert_eq!(
            multicast_mac(IpAddr::V4(MULTICAST_V4)),
            Some(MacAddr([1, 0, 0x5e, 0, 0, 0x12]))
        );
        assert_eq!(
            multicast_mac(IpAddr::V6(MULTICAST_V6)),
            Some(MacAddr([0x33, 0x33, 0, 0, 0, 0x12]))
        );
        assert_eq!(multicast_mac(v4("192.0.2.1")), None);
        assert_eq!(virtual_mac(Family::V6, 9), MacAddr([0, 0, 0x5e, 0, 2, 9]));
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(AuthKey::new(0, &[1; 32]).err(), Some(AuthKeyError::ZeroId));
        assert_eq!(
            AuthKey::new(1, &[1; 31]).err(),
            Some(AuthKeyError::BadLength(31))
        );
        assert_eq!(
            AuthKey::new(1, &[1; 65]).err(),
            Some(AuthKeyError::BadLength(65))
        );
        let k = AuthKey::new(9, &[1; 64]).unwrap();
        assert_eq!(format!("{k:?}"), "AuthKey { id: 9, .. }");
    }

    fn at(secs: u64, nanos: u32) -> WallClock {
        WallClock { secs, nanos }
    }

    #[test]
    fn sequences_follow_the_clock_and_never_go_back() {
        let time = AntiReplay::Time { window_s: 5 };
        let mut s = SequenceSource::new();
        let a = s.next(at(1_000, 500_000_000), time);
        assert_eq!(
            a,
            (1_000u64 << 32) | (0x8000 << 16),
            "half a second is 0x8000"
        );
        assert_eq!(
            s.next(at(1_000, 500_000_000), time),
            a + 1,
            "same instant: counter"
        );
        assert_eq!(
            s.next(at(999, 0), time),
            a + 2,
            "clock a second back: counter"
        );
        // Stepped back further than the window: restart from the clock.
        assert_eq!(s.next(at(990, 0), time), 990u64 << 32);
        let mut m = SequenceSource::new();
        let a = m.next(at(1_000, 0), AntiReplay::Monotonic);
        assert_eq!(
            m.next(at(990, 0), AntiReplay::Monotonic),
            a + 1,
            "monotonic keeps growth"
        );
    }

    #[test]
    fn replay_guard_windows_marks_and_serial_arithmetic() {
        let mut g = ReplayGuard::new(AntiReplay::Time { window_s: 5 });
        let seq = |s: u64, ctr: u64| (s << 32) | ctr;
        assert_eq!(g.accept(seq(1_000, 1), 1_000), Ok(()));
        assert_eq!(g.accept(seq(1_000, 1), 1_000), Err(AuthError::Replayed));
        assert_eq!(g.accept(seq(1_000, 0), 1_000), Err(AuthError::Replayed));
        assert_eq!(g.mark(), Some(seq(1_000, 1)), "a refusal changes nothing");
        assert_eq!(g.accept(seq(1_000, 2), 1_000), Ok(()));
        // A mark outside the window is forgotten: a sender whose clock was
        // stepped back is heard again.
        assert_eq!(g.accept(seq(900, 0), 1_006), Ok(()));
        // Serial arithmetic across the wrap of the 32-bit seconds.
        let mut w = ReplayGuard::new(AntiReplay::Monotonic);
        assert_eq!(w.accept(seq(0xffff_ffff, 0), 0), Ok(()));
        assert_eq!(w.accept(seq(0, 0), 0), Ok(()), "after the wrap comes after");
        assert_eq!(w.accept(seq(0xffff_ffff, 5), 0), Err(AuthError::Replayed));
        assert!(sequence_after(0, u64::MAX));
        assert!(!sequence_after(u64::MAX, 0));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_before_the_tag() {
        let key = draft_key();
        let src = v6("fe80::1");
        let mut buf = [0u8; 128];
        let signing = Signing::Hmac {
            key: &key,
            sequence: 1_000u64 << 32,
        };
        let n = frame(Family::V6, &signing, &mut buf);
        let r = receive(&buf[ethernet::HEADER_LEN..n]).unwrap();
        let mut g = ReplayGuard::new(AntiReplay::Time { window_s: 5 });
        assert_eq!(g.verify(&r.packet, src, &key, 1_006), Err(AuthError::Stale));
        assert_eq!(g.verify(&r.packet, src, &key, 994), Err(AuthError::Stale));
        assert_eq!(g.mark(), None);
        assert_eq!(g.verify(&r.packet, src, &key, 1_005), Ok(()));
        assert_eq!(
            g.verify(&r.packet, src, &key, 1_005),
            Err(AuthError::Replayed)
        );
        let unsigned = frame(Family::V6, &Signing::None, &mut buf);
        let r = receive(&buf[ethernet::HEADER_LEN..unsigned]).unwrap();
        assert_eq!(
            g.verify(&r.packet, src, &key, 1_005),
            Err(AuthError::Missing)
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the view, its accessors, the
        /// checksum or the tag check.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            for family in [Family::V4, Family::V6] {
                if let Ok(p) = Packet::new_checked(&bytes[..], family) {
                    let _ = p.addresses().count();
                    let src = match family { Family::V4 => v4("192.0.2.1"), Family::V6 => v6("fe80::1") };
                    let _ = p.verify_checksum(src, src);
                    let _ = p.verify_hmac(src, &draft_key());
                }
            }
            let _ = receive(&bytes);
        }
    }
}
