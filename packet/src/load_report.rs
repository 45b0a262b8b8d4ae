//! The real-server agent's load report: one UDP datagram a second from
//! `xvs-agent run` to each director, authenticated with HMAC-SHA256.
//!
//! Contract: a fixed layout of [`REPORT_LEN`] bytes, integers in network
//! byte order, no floats (fractions are permille, the load average is in
//! hundredths), a field the agent could not measure carries the all-ones
//! sentinel ([`UNKNOWN_U16`], [`UNKNOWN_U32`]) and decodes to `None`.
//! Decoding never allocates and never panics: [`ReportPacket::new_checked`]
//! checks length, magic and version and exposes the key id, so that the
//! receiver picks the key (an unknown key id is its decision, not an
//! error here); [`ReportPacket::verify`] then compares the tag in constant
//! time and only after that reads the fields.
//!
//! The real server's address is inside the authenticated bytes: the
//! director matches a report to real servers by this address, never by
//! the UDP source, so a report captured for one server cannot be replayed
//! as another's. Freshness is the receiver's: [`ReplayGuard`] keeps, per
//! sender, the last sequence number accepted and refuses a timestamp
//! outside the allowed skew. The agent starts its sequence at its start
//! time in microseconds, so a restarted agent goes on above where it
//! stopped.
//!
//! ```text
//!  0       4     5     6      7        8          12                     44
//!  | magic | ver | state | family | reserved | key id | identity (32, NUL-padded) |
//!  44                    60             68           76           80
//!  | address (16; v4 in the first 4) | timestamp ms | sequence | interval ms |
//!  80     82     84      88      92         96          100         104          108      140
//!  | cpu‰ | mem‰ | rx p/s | tx p/s | reads/s | writes/s | load1×100 | established | HMAC-SHA256 |
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::ipv4::{be16, be32};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The first four bytes of every report: "XVSL".
pub const MAGIC: [u8; 4] = *b"XVSL";
/// The layout described in this module.
pub const VERSION: u8 = 1;
/// Bytes of an agent identity on the wire (UTF-8, NUL-padded).
pub const IDENTITY_LEN: usize = 32;
/// Bytes of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// The shortest key [`ReportKey::new`] accepts (the README asks for 32).
pub const MIN_KEY_LEN: usize = 16;
/// A 16-bit figure the agent could not measure.
pub const UNKNOWN_U16: u16 = u16::MAX;
/// A 32-bit figure the agent could not measure.
pub const UNKNOWN_U32: u32 = u32::MAX;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const STATE: usize = 5;
    pub const FAMILY: usize = 6;
    pub const RESERVED: usize = 7;
    pub const KEY_ID: Range<usize> = 8..12;
    pub const IDENTITY: Range<usize> = 12..44;
    pub const ADDRESS: Range<usize> = 44..60;
    pub const TIMESTAMP: Range<usize> = 60..68;
    pub const SEQUENCE: Range<usize> = 68..76;
    pub const INTERVAL: Range<usize> = 76..80;
    pub const CPU: Range<usize> = 80..82;
    pub const MEMORY: Range<usize> = 82..84;
    pub const RX_PACKETS: Range<usize> = 84..88;
    pub const TX_PACKETS: Range<usize> = 88..92;
    pub const DISK_READS: Range<usize> = 92..96;
    pub const DISK_WRITES: Range<usize> = 96..100;
    pub const LOAD1: Range<usize> = 100..104;
    pub const ESTABLISHED: Range<usize> = 104..108;
    pub const TAG: Range<usize> = 108..140;
}

/// Bytes covered by the tag: everything before it.
pub const SIGNED_LEN: usize = field::TAG.start;
/// Length of a version-1 report.
pub const REPORT_LEN: usize = field::TAG.end;

/// Why a report was refused, or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportError {
    /// Shorter than a report.
    Truncated,
    /// Longer than a report of its version.
    TrailingBytes,
    /// Not a report: the magic is wrong.
    BadMagic,
    /// A version this build does not know.
    UnknownVersion(u8),
    /// The tag does not match (forged, corrupted, or another key).
    BadTag,
    /// Authentic, but a field holds a value no agent writes (an address
    /// family, agent state, reserved byte or identity out of range).
    BadField,
    /// The caller's buffer cannot hold a report.
    BufferTooSmall,
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "truncated (a report is {REPORT_LEN} bytes)"),
            Self::TrailingBytes => write!(f, "longer than a version-{VERSION} report"),
            Self::BadMagic => f.write_str("not a load report (bad magic)"),
            Self::UnknownVersion(v) => write!(f, "unknown report version {v}"),
            Self::BadTag => f.write_str("authentication tag does not match"),
            Self::BadField => f.write_str("a field holds a value no agent writes"),
            Self::BufferTooSmall => write!(f, "buffer shorter than {REPORT_LEN} bytes"),
        }
    }
}

impl core::error::Error for ReportError {}

/// What the agent asks of the director for its real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// In service: weight follows load.
    Ready,
    /// Weight 0: no new connections, established ones drain.
    Drain,
    /// Out of service, as if its health check had failed.
    Maint,
}

impl AgentState {
    const fn to_wire(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Drain => 1,
            Self::Maint => 2,
        }
    }

    const fn from_wire(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Ready),
            1 => Some(Self::Drain),
            2 => Some(Self::Maint),
            _ => None,
        }
    }

    /// The operator's word for it: `ready`, `drain` or `maint`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for AgentState {
    type Err = UnknownAgentState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ready" => Ok(Self::Ready),
            "drain" => Ok(Self::Drain),
            "maint" => Ok(Self::Maint),
            _ => Err(UnknownAgentState),
        }
    }
}

/// A word that is none of `ready`, `drain`, `maint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAgentState;

impl fmt::Display for UnknownAgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an agent state is one of ready, drain, maint")
    }
}

impl core::error::Error for UnknownAgentState {}

/// An agent's name: 1 to [`IDENTITY_LEN`] bytes of UTF-8 without NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    bytes: [u8; IDENTITY_LEN],
    len: u8,
}

/// Why a name cannot be an [`Identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// The empty string.
    Empty,
    /// More than [`IDENTITY_LEN`] bytes.
    TooLong,
    /// Holds a NUL byte.
    Nul,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("an agent identity cannot be empty"),
            Self::TooLong => write!(f, "an agent identity is at most {IDENTITY_LEN} bytes"),
            Self::Nul => f.write_str("an agent identity cannot hold a NUL byte"),
        }
    }
}

impl core::error::Error for IdentityError {}

impl Identity {
    /// The identity `name`.
    pub fn new(name: &str) -> Result<Self, IdentityError> {
        let src = name.as_bytes();
        if src.is_empty() {
            return Err(IdentityError::Empty);
        }
        if src.len() > IDENTITY_LEN {
            return Err(IdentityError::TooLong);
        }
        if src.contains(&0) {
            return Err(IdentityError::Nul);
        }
        let mut bytes = [0; IDENTITY_LEN];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self {
            bytes,
            len: src.len() as u8,
        })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` or checked as UTF-8 when decoded.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The wire field: the name then NULs up to [`IDENTITY_LEN`] bytes;
    /// `None` unless it is non-empty UTF-8 padded with NULs only.
    fn from_wire(field: &[u8]) -> Option<Self> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        if field[len..].iter().any(|&b| b != 0) {
            return None;
        }
        Self::new(core::str::from_utf8(&field[..len]).ok()?).ok()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The figures of one report; `None` where the agent could not measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadFigures {
    /// CPU in use, permille of what the scope may use (0–1000).
    pub cpu_permille: Option<u16>,
    /// Memory in use, permille of what the scope may use (0–1000).
    pub memory_permille: Option<u16>,
    /// Packets received per second (all interfaces but lo).
    pub rx_packets_per_s: Option<u32>,
    /// Packets sent per second (all interfaces but lo).
    pub tx_packets_per_s: Option<u32>,
    /// Disk reads completed per second.
    pub disk_reads_per_s: Option<u32>,
    /// Disk writes completed per second.
    pub disk_writes_per_s: Option<u32>,
    /// The 1-minute load average, in hundredths.
    pub load1_centi: Option<u32>,
    /// Established TCP connections to the service ports.
    pub established: Option<u32>,
}

/// One load report, as the agent writes it and the director reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    /// The key that signs it (so that keys can be rotated).
    pub key_id: u32,
    /// Who sends it.
    pub identity: Identity,
    /// The real server it reports for.
    pub address: IpAddr,
    /// When it was sampled, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Strictly increasing per agent.
    pub sequence: u64,
    /// The agent's reporting interval, milliseconds.
    pub interval_ms: u32,
    /// What the agent asks for its server.
    pub state: AgentState,
    /// The load.
    pub load: LoadFigures,
}

/// A cluster key with its id, ready to sign and verify.
///
/// Holds the HMAC state after the key, so that each report costs only the
/// hash of its own bytes. Its `Debug` shows the id, never the key.
#[derive(Clone)]
pub struct ReportKey {
    id: u32,
    mac: HmacSha256,
}

/// Why bytes cannot be a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTooShort;

impl fmt::Display for KeyTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a report key is at least {MIN_KEY_LEN} bytes (make one with `head -c 32 /dev/urandom`)"
        )
    }
}

impl core::error::Error for KeyTooShort {}

impl ReportKey {
    /// The key `secret`, known to both sides as `id`.
    pub fn new(id: u32, secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < MIN_KEY_LEN {
            return Err(KeyTooShort);
        }
        // HMAC takes a key of any length; the length was checked above.
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyTooShort)?;
        Ok(Self { id, mac })
    }

    /// Its id.
    pub const fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for ReportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn opt16(v: u16) -> Option<u16> {
    (v != UNKNOWN_U16).then_some(v)
}

fn opt32(v: u32) -> Option<u32> {
    (v != UNKNOWN_U32).then_some(v)
}

/// A view over a received report.
#[derive(Debug, Clone)]
pub struct ReportPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReportPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a datagram that has a report's length, magic and version.
    pub fn new_checked(buffer: T) -> Result<Self, ReportError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// After this succeeds no accessor can panic.
    pub fn check_len(&self) -> Result<(), ReportError> {
        let b = self.buffer.as_ref();
        if b.len() < field::VERSION + 1 {
            return Err(ReportError::Truncated);
        }
        if b[field::MAGIC] != MAGIC {
            return Err(ReportError::BadMagic);
        }
        if b[field::VERSION] != VERSION {
            return Err(ReportError::UnknownVersion(b[field::VERSION]));
        }
        match b.len() {
            n if n < REPORT_LEN => Err(ReportError::Truncated),
            REPORT_LEN => Ok(()),
            _ => Err(ReportError::TrailingBytes),
        }
    }

    /// The id of the key that claims to sign it: the receiver looks it up
    /// and calls [`verify`](Self::verify) with that key.
    pub fn key_id(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::KEY_ID])
    }

    /// Checks the tag with `key` (in constant time), then reads the report.
    pub fn verify(&self, key: &ReportKey) -> Result<LoadReport, ReportError> {
        let b = self.buffer.as_ref();
        let mut mac = key.mac.clone();
        mac.update(&b[..SIGNED_LEN]);
        mac.verify_slice(&b[field::TAG])
            .map_err(|_| ReportError::BadTag)?;
        if key.id != self.key_id() {
            // The right bytes under the wrong id: a receiver bug, or a key
            // registered under two ids. Never accept it as this key's.
            return Err(ReportError::BadTag);
        }
        self.read()
    }

    fn read(&self) -> Result<LoadReport, ReportError> {
        let b = self.buffer.as_ref();
        let state = AgentState::from_wire(b[field::STATE]).ok_or(ReportError::BadField)?;
        if b[field::RESERVED] != 0 {
            return Err(ReportError::BadField);
        }
        let raw = &b[field::ADDRESS];
        let address = match b[field::FAMILY] {
            4 if raw[4..].iter().all(|&x| x == 0) => {
                IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
            }
            6 => {
                let mut a = [0; 16];
                a.copy_from_slice(raw);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err(ReportError::BadField),
        };
        let identity = Identity::from_wire(&b[field::IDENTITY]).ok_or(ReportError::BadField)?;
        let cpu = opt16(be16(&b[field::CPU]));
        let memory = opt16(be16(&b[field::MEMORY]));
        if cpu.is_some_and(|v| v > 1000) || memory.is_some_and(|v| v > 1000) {
            return Err(ReportError::BadField);
        }
        Ok(LoadReport {
            key_id: self.key_id(),
            identity,
            address,
            timestamp_ms: be64(&b[field::TIMESTAMP]),
            sequence: be64(&b[field::SEQUENCE]),
            interval_ms: be32(&b[field::INTERVAL]),
            state,
            load: LoadFigures {
                cpu_permille: cpu,
                memory_permille: memory,
                rx_packets_per_s: opt32(be32(&b[field::RX_PACKETS])),
                tx_packets_per_s: opt32(be32(&b[field::TX_PACKETS])),
                disk_reads_per_s: opt32(be32(&b[field::DISK_READS])),
                disk_writes_per_s: opt32(be32(&b[field::DISK_WRITES])),
                load1_centi: opt32(be32(&b[field::LOAD1])),
                established: opt32(be32(&b[field::ESTABLISHED])),
            },
        })
    }
}

impl LoadReport {
    /// Writes the report signed with `key` (whose id replaces
    /// [`key_id`](Self::key_id)) into the first [`REPORT_LEN`] bytes of
    /// `buf`; returns that length. A CPU or memory figure above 1000 ‰ is
    /// written as 1000.
    pub fn encode(&self, key: &ReportKey, buf: &mut [u8]) -> Result<usize, ReportError> {
        let b = buf
            .get_mut(..REPORT_LEN)
            .ok_or(ReportError::BufferTooSmall)?;
        b[field::MAGIC].copy_from_slice(&MAGIC);
        b[field::VERSION] = VERSION;
        b[field::STATE] = self.state.to_wire();
        b[field::RESERVED] = 0;
        b[field::KEY_ID].copy_from_slice(&key.id.to_be_bytes());
        b[field::IDENTITY].copy_from_slice(&self.identity.bytes);
        b[field::ADDRESS].fill(0);
        match self.address {
            IpAddr::V4(a) => {
                b[field::FAMILY] = 4;
                b[field::ADDRESS][..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                b[field::FAMILY] = 6;
                b[field::ADDRESS].copy_from_slice(&a.octets());
            }
        }
        b[field::TIMESTAMP].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
        b[field::INTERVAL].copy_from_slice(&self.interval_ms.to_be_bytes());
        let l = &self.load;
        let permille = |v: Option<u16>| v.map_or(UNKNOWN_U16, |v| v.min(1000));
        let count = |v: Option<u32>| v.unwrap_or(UNKNOWN_U32);
        b[field::CPU].copy_from_slice(&permille(l.cpu_permille).to_be_bytes());
        b[field::MEMORY].copy_from_slice(&permille(l.memory_permille).to_be_bytes());
        b[field::RX_PACKETS].copy_from_slice(&count(l.rx_packets_per_s).to_be_bytes());
        b[field::TX_PACKETS].copy_from_slice(&count(l.tx_packets_per_s).to_be_bytes());
        b[field::DISK_READS].copy_from_slice(&count(l.disk_reads_per_s).to_be_bytes());
        b[field::DISK_WRITES].copy_from_slice(&count(l.disk_writes_per_s).to_be_bytes());
        b[field::LOAD1].copy_from_slice(&count(l.load1_centi).to_be_bytes());
        b[field::ESTABLISHED].copy_from_slice(&count(l.established).to_be_bytes());
        let mut mac = key.mac.clone();
        mac.update(&b[..SIGNED_LEN]);
        b[field::TAG].copy_from_slice(&mac.finalize().into_bytes());
        Ok(REPORT_LEN)
    }
}

/// Why an authentic report is not fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Its sequence number is not above the last one accepted from this
    /// sender: a replay, or a datagram overtaken by a later one.
    Replayed,
    /// Its timestamp is further than the allowed skew from the receiver's
    /// clock (older, or from the future).
    Skewed,
}

impl fmt::Display for Freshness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replayed => f.write_str("sequence number not above the last accepted"),
            Self::Skewed => f.write_str("timestamp outside the allowed clock skew"),
        }
    }
}

impl core::error::Error for Freshness {}

/// One sender's freshness check: the receiver keeps one per agent
/// (identity and address) and passes its own clock in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayGuard {
    max_skew_ms: u64,
    last_sequence: Option<u64>,
}

impl ReplayGuard {
    /// A guard that has accepted nothing yet and allows timestamps up to
    /// `max_skew_ms` away from the receiver's clock.
    pub const fn new(max_skew_ms: u64) -> Self {
        Self {
            max_skew_ms,
            last_sequence: None,
        }
    }

    /// Accepts `report` (already verified) if its timestamp is within the
    /// skew of `now_ms` and its sequence above the last accepted, and then
    /// remembers its sequence; a refused report changes nothing.
    pub fn accept(&mut self, report: &LoadReport, now_ms: u64) -> Result<(), Freshness> {
        if report.timestamp_ms.abs_diff(now_ms) > self.max_skew_ms {
            return Err(Freshness::Skewed);
        }
        if self
            .last_sequence
            .is_some_and(|last| report.sequence <= last)
        {
            return Err(Freshness::Replayed);
        }
        self.last_sequence = Some(report.sequence);
        Ok(())
    }

    /// Allows `max_skew_ms` from now on, remembering the last sequence
    /// (a receiver whose allowed skew changes keeps refusing replays).
    pub const fn set_max_skew(&mut self, max_skew_ms: u64) {
        self.max_skew_ms = max_skew_ms;
    }

    /// The last sequence number accepted.
    pub const fn last_sequence(&self) -> Option<u64> {
        self.last_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn key() -> ReportKey {
        ReportKey::new(7, SECRET).unwrap()
    }

    fn report(address: IpAddr) -> LoadReport {
        LoadReport {
            key_id: 7,
            identity: Identity::new("rs1.example").unwrap(),
            address,
            timestamp_ms: 1_790_000_000_123,
            sequence: 1_790_000_000_000_000,
            interval_ms: 1000,
            state: AgentState::Drain,
            load: LoadFigures {
                cpu_permille: Some(425),
                memory_permille: Some(1000),
                rx_packets_per_s: Some(12_345),
                tx_packets_per_s: Some(0),
                disk_reads_per_s: None,
                disk_writes_per_s: Some(3),
                load1_centi: Some(157),
                established: Some(42),
            },
        }
    }

    fn encoded(r: &LoadReport) -> [u8; REPORT_LEN] {
        let mut buf = [0; REPORT_LEN];
        assert_eq!(r.encode(&key(), &mut buf), Ok(REPORT_LEN));
        buf
    }

    #[test]
    fn round_trip_v4_and_v6() {
        for addr in ["192.0.2.11", "2001:db8::11"] {
            let r = report(addr.parse().unwrap());
            let buf = encoded(&r);
            let p = ReportPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(p.key_id(), 7);
            assert_eq!(p.verify(&key()), Ok(r));
        }
    }

    #[test]
    fn layout_is_fixed() {
        let buf = encoded(&report("192.0.2.11".parse().unwrap()));
        assert_eq!(REPORT_LEN, 140);
        assert_eq!(&buf[..4], b"XVSL");
        assert_eq!(buf[4], 1);
        assert_eq!(buf[5], 1, "drain");
        assert_eq!(buf[6], 4);
        assert_eq!(&buf[8..12], &[0, 0, 0, 7]);
        assert_eq!(&buf[12..23], b"rs1.example");
        assert!(buf[23..44].iter().all(|&b| b == 0));
        assert_eq!(&buf[44..48], &[192, 0, 2, 11]);
        assert_eq!(&buf[80..82], &425u16.to_be_bytes());
        assert_eq!(&buf[92..96], &[0xff; 4], "unknown disk reads");
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let buf = encoded(&report("2001:db8::11".parse().unwrap()));
        for i in 0..REPORT_LEN * 8 {
            let mut b = buf;
            b[i / 8] ^= 1 << (i % 8);
            let result = ReportPacket::new_checked(&b[..]).and_then(|p| p.verify(&key()));
            let want = match i / 8 {
                0..4 => ReportError::BadMagic,
                4 => ReportError::UnknownVersion(b[4]),
                _ => ReportError::BadTag,
            };
            assert_eq!(result, Err(want), "bit {i}");
        }
    }

    #[test]
    fn another_key_or_key_id_is_refused() {
        let buf = encoded(&report("192.0.2.11".parse().unwrap()));
        let p = ReportPacket::new_checked(&buf[..]).unwrap();
        let other = ReportKey::new(7, b"fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(p.verify(&other), Err(ReportError::BadTag));
        let same_secret_other_id = ReportKey::new(8, SECRET).unwrap();
        assert_eq!(p.verify(&same_secret_other_id), Err(ReportError::BadTag));
    }

    #[test]
    fn malformed_inputs_have_typed_errors() {
        let buf = encoded(&report("192.0.2.11".parse().unwrap()));
        let cases: &[(&str, &[u8], ReportError)] = &[
            ("empty", &[], ReportError::Truncated),
            ("magic only", b"XVSL", ReportError::Truncated),
            (
                "cut before the tag",
                &buf[..SIGNED_LEN],
                ReportError::Truncated,
            ),
            (
                "one byte short",
                &buf[..REPORT_LEN - 1],
                ReportError::Truncated,
            ),
            ("wrong magic", b"XVSM\x01", ReportError::BadMagic),
            ("version 2", b"XVSL\x02", ReportError::UnknownVersion(2)),
        ];
        for (what, input, want) in cases {
            assert_eq!(
                ReportPacket::new_checked(*input).err(),
                Some(*want),
                "{what}"
            );
        }
        let mut long = [0; REPORT_LEN + 1];
        long[..REPORT_LEN].copy_from_slice(&buf);
        assert_eq!(
            ReportPacket::new_checked(&long[..]).err(),
            Some(ReportError::TrailingBytes)
        );
    }

    /// Signed with the right key but holding a value no agent writes.
    #[test]
    fn authentic_but_bad_fields_are_refused() {
        let good = encoded(&report("192.0.2.11".parse().unwrap()));
        let resign = |f: &dyn Fn(&mut [u8; REPORT_LEN])| {
            let mut b = good;
            f(&mut b);
            let mut mac = key().mac;
            mac.update(&b[..SIGNED_LEN]);
            b[field::TAG].copy_from_slice(&mac.finalize().into_bytes());
            ReportPacket::new_checked(&b[..]).unwrap().verify(&key())
        };
        type Edit<'a> = &'a dyn Fn(&mut [u8; REPORT_LEN]);
        let cases: &[(&str, Edit<'_>)] = &[
            ("state 3", &|b| b[field::STATE] = 3),
            ("family 5", &|b| b[field::FAMILY] = 5),
            ("reserved set", &|b| b[field::RESERVED] = 1),
            ("v4 with bytes past 4", &|b| b[field::ADDRESS][15] = 1),
            ("empty identity", &|b| b[field::IDENTITY].fill(0)),
            ("identity with a gap", &|b| b[field::IDENTITY][30] = b'x'),
            ("identity not UTF-8", &|b| b[field::IDENTITY][0] = 0xff),
            ("cpu above 1000", &|b| {
                b[field::CPU].copy_from_slice(&1001u16.to_be_bytes())
            }),
        ];
        for (what, f) in cases {
            assert_eq!(resign(*f), Err(ReportError::BadField), "{what}");
        }
        assert!(resign(&|_| ()).is_ok());
    }

    #[test]
    fn encode_needs_room_and_clamps_fractions() {
        let mut r = report("192.0.2.11".parse().unwrap());
        let mut short = [0; REPORT_LEN - 1];
        assert_eq!(
            r.encode(&key(), &mut short),
            Err(ReportError::BufferTooSmall)
        );
        r.load.cpu_permille = Some(1500);
        let buf = encoded(&r);
        let back = ReportPacket::new_checked(&buf[..])
            .unwrap()
            .verify(&key())
            .unwrap();
        assert_eq!(back.load.cpu_permille, Some(1000));
    }

    #[test]
    fn keys_and_identities_are_checked() {
        assert_eq!(ReportKey::new(1, &[1; 15]).err(), Some(KeyTooShort));
        let k = ReportKey::new(1, &[1; 16]).unwrap();
        assert_eq!(format!("{k:?}"), "ReportKey { id: 1, .. }");
        assert_eq!(Identity::new(""), Err(IdentityError::Empty));
        assert_eq!(Identity::new(&"x".repeat(33)), Err(IdentityError::TooLong));
        assert_eq!(Identity::new("a\0b"), Err(IdentityError::Nul));
        assert_eq!(Identity::new(&"é".repeat(16)).unwrap().as_str().len(), 32);
        assert_eq!("drain".parse(), Ok(AgentState::Drain));
        assert_eq!("up".parse::<AgentState>(), Err(UnknownAgentState));
    }

    fn arbitrary_report() -> impl proptest::strategy::Strategy<Value = LoadReport> {
        use proptest::prelude::*;
        let permille = prop_oneof![Just(None), (0u16..=1000).prop_map(Some)];
        let count = prop_oneof![Just(None), (0u32..u32::MAX).prop_map(Some)];
        let figures = (
            permille.clone(),
            permille,
            count.clone(),
            count.clone(),
            count.clone(),
            count.clone(),
            count.clone(),
            count,
        )
            .prop_map(|(c, m, rx, tx, r, w, l, e)| LoadFigures {
                cpu_permille: c,
                memory_permille: m,
                rx_packets_per_s: rx,
                tx_packets_per_s: tx,
                disk_reads_per_s: r,
                disk_writes_per_s: w,
                load1_centi: l,
                established: e,
            });
        let address = prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ];
        let state = prop_oneof![
            Just(AgentState::Ready),
            Just(AgentState::Drain),
            Just(AgentState::Maint)
        ];
        (
            "[a-zA-Z0-9.é-]{1,16}",
            address,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            state,
            figures,
        )
            .prop_map(
                |(name, address, ts, seq, interval, state, load)| LoadReport {
                    key_id: 7,
                    identity: Identity::new(&name).unwrap(),
                    address,
                    timestamp_ms: ts,
                    sequence: seq,
                    interval_ms: interval,
                    state,
                    load,
                },
            )
    }

    proptest::proptest! {
        /// Whatever an agent can send, the director reads back exactly.
        #[test]
        fn any_report_round_trips(r in arbitrary_report()) {
            let buf = encoded(&r);
            let back = ReportPacket::new_checked(&buf[..]).unwrap().verify(&key());
            proptest::prop_assert_eq!(back, Ok(r));
        }

        /// Arbitrary bytes behind a valid header never panic and never
        /// verify.
        #[test]
        fn arbitrary_bytes_are_refused(rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 130..150)) {
            let mut bytes = b"XVSL\x01".to_vec();
            bytes.extend(rest);
            let result = ReportPacket::new_checked(&bytes[..]).and_then(|p| p.verify(&key()));
            let want = match bytes.len() {
                REPORT_LEN => ReportError::BadTag,
                n if n < REPORT_LEN => ReportError::Truncated,
                _ => ReportError::TrailingBytes,
            };
            proptest::prop_assert_eq!(result, Err(want));
        }
    }

    #[test]
    fn replay_guard_refuses_old_sequences_and_skewed_clocks() {
        let mut guard = ReplayGuard::new(5_000);
        let mut r = report("192.0.2.11".parse().unwrap());
        let now = r.timestamp_ms;
        assert_eq!(guard.accept(&r, now), Ok(()));
        assert_eq!(guard.accept(&r, now), Err(Freshness::Replayed), "same");
        r.sequence -= 1;
        assert_eq!(guard.accept(&r, now), Err(Freshness::Replayed), "older");
        r.sequence += 2;
        assert_eq!(
            guard.accept(&r, now + 5_001),
            Err(Freshness::Skewed),
            "stale"
        );
        assert_eq!(
            guard.accept(&r, now - 5_001),
            Err(Freshness::Skewed),
            "from the future"
        );
        assert_eq!(guard.last_sequence(), Some(r.sequence - 1), "unchanged");
        assert_eq!(guard.accept(&r, now + 5_000), Ok(()));
        assert_eq!(guard.last_sequence(), Some(r.sequence));
        guard.set_max_skew(10_000);
        r.sequence += 1;
        assert_eq!(guard.accept(&r, now + 5_001), Ok(()), "a wider skew");
        assert_eq!(
            guard.accept(&r, now),
            Err(Freshness::Replayed),
            "the last sequence outlives a change of skew"
        );
    }
}
