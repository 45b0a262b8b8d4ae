//! The entry layout: a connection's words, the life word (deadline,
//! TCP state, flags, generation) and its packing helpers.

use super::*;

// The words of a connection as `Raw` holds them after a read.
pub(super) const WORDS: usize = 9;
pub(super) const W_CLIENT: usize = 0; // and 1
pub(super) const W_VIP: usize = 2; // and 3
pub(super) const W_SERVER: usize = 4; // high word, then low word
pub(super) const W_PORTS: usize = 6;
pub(super) const W_SERVER_ID: usize = 7;
pub(super) const W_LIFE: usize = 8;

// Where they live: one 64-byte line per entry holds everything but the
// high word of an IPv6 real server's address, which sits in a side array
// read only for IPv6 real servers.
pub(super) const ENTRY_WORDS: usize = 8;
pub(super) const E_CLIENT: usize = 0; // and 1
pub(super) const E_VIP: usize = 2; // and 3
pub(super) const E_SERVER_LO: usize = 4;
pub(super) const E_PORTS: usize = 5;
pub(super) const E_SERVER_ID: usize = 6; // the free-list link while free
pub(super) const E_LIFE: usize = 7;

// Ports word: cport | vport << 16 | rport << 32 | proto << 48 | kind << 56.
pub(super) const KIND_METHOD_MASK: u64 = 0b11;
pub(super) const KIND_CLIENT_V6: u64 = 1 << 2;
pub(super) const KIND_SERVER_V6: u64 = 1 << 3;
/// The ports-word bits an inbound key decides: cport, vport, proto, client family.
pub(super) const INBOUND_PORTS_MASK: u64 = 0xffff_ffff | (0xff << 48) | (KIND_CLIENT_V6 << 56);
/// The ports-word bits a reply key decides: cport, rport, proto, both families.
pub(super) const REPLY_PORTS_MASK: u64 =
    0xffff | (0xffff << 32) | (0xff << 48) | ((KIND_CLIENT_V6 | KIND_SERVER_V6) << 56);

// Life word: deadline | state << 40 | flags << 44 | gen << 52.
pub(super) const DEADLINE_BITS: u32 = 40;
pub(super) const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;
pub(super) const STATE_SHIFT: u32 = 40;
pub(super) const FLAGS_SHIFT: u32 = 44;
pub(super) const GEN_SHIFT: u32 = 52;
pub(super) const GEN_MASK: u64 = 0xfff;

pub(super) const LIFE_LIVE: u64 = 1 << FLAGS_SHIFT;
pub(super) const LIFE_DYING: u64 = 2 << FLAGS_SHIFT;
/// Live, but not in the reply index yet: [`ConnTable::finish_replies`]
/// links it (or, if it died meanwhile, takes back the slot it added).
pub(super) const LIFE_REPLY_PENDING: u64 = 32 << FLAGS_SHIFT;
/// [`ConnFlags::SYNCED`] in the life word.
pub(super) const LIFE_SYNCED: u64 = (ConnFlags::SYNCED.0 as u64) << FLAGS_SHIFT;

/// The latest deadline the table can hold: 2^40 ms ≈ 34.8 years of
/// monotonic time; later deadlines are clamped to it.
pub const MAX_DEADLINE: Millis = DEADLINE_MASK;

/// Per-connection flags a caller can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnFlags(pub(super) u8);

impl ConnFlags {
    /// Counted in the real server's `activeconns` (else `inactconns`).
    pub const ACTIVE: Self = Self(1 << 2);
    /// No reply seen yet on a connection whose replies bypass the director
    /// (DR/TUN): the kernel's NO_OUTPUT; cleared by the first reply.
    pub const NO_OUTPUT: Self = Self(1 << 3);
    /// A persistence template, not a connection.
    pub const TEMPLATE: Self = Self(1 << 4);
    /// Copied from the peer director by the state sync and not seen
    /// carrying traffic here yet: not bound to its real server (counted in
    /// neither `activeconns` nor `inactconns`, as IPVS leaves synced
    /// entries out of scheduling). The first packet forwarded on it binds
    /// it ([`ConnTable::adopt`]); until then `ACTIVE` says only which
    /// counter it will join.
    pub const SYNCED: Self = Self(1 << 6);

    /// No flags.
    pub const EMPTY: Self = Self(0);

    /// Whether every flag of `other` is set.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub(super) const fn life_bits(self) -> u64 {
        (self.0 as u64) << FLAGS_SHIFT
    }

    pub(super) const fn from_life(life: u64) -> Self {
        // Only the public bits; LIVE/DYING are the table's own.
        Self(
            ((life >> FLAGS_SHIFT) as u8)
                & (Self::ACTIVE.0 | Self::NO_OUTPUT.0 | Self::TEMPLATE.0 | Self::SYNCED.0),
        )
    }
}

pub(super) const fn life_deadline(life: u64) -> Millis {
    life & DEADLINE_MASK
}

pub(super) const fn life_gen(life: u64) -> u16 {
    ((life >> GEN_SHIFT) & GEN_MASK) as u16
}

pub(super) const fn life_state(life: u64) -> TcpState {
    match TcpState::from_code(((life >> STATE_SHIFT) & 0xf) as u8) {
        Some(s) => s,
        None => TcpState::None,
    }
}

pub(super) const fn life_visible(life: u64) -> bool {
    life & (LIFE_LIVE | LIFE_DYING) == LIFE_LIVE
}

pub(super) const fn make_life(
    deadline: Millis,
    state: TcpState,
    flags: ConnFlags,
    gen_: u16,
) -> u64 {
    let deadline = if deadline > DEADLINE_MASK {
        DEADLINE_MASK
    } else {
        deadline
    };
    deadline
        | ((state.code() as u64) << STATE_SHIFT)
        | flags.life_bits()
        | LIFE_LIVE
        | (((gen_ as u64) & GEN_MASK) << GEN_SHIFT)
}

pub(super) fn addr_words(addr: IpAddr) -> (u64, u64, bool) {
    match addr {
        IpAddr::V4(a) => (0, u64::from(u32::from(a)), false),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            ((v >> 64) as u64, v as u64, true)
        }
    }
}

pub(super) fn words_addr(hi: u64, lo: u64, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
    } else {
        IpAddr::V4(Ipv4Addr::from(lo as u32))
    }
}

/// One cache line: a lookup that finds its connection reads this line and
/// its bucket's, nothing else (IPv4 real servers; IPv6 ones add a word of
/// `server_hi`).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Entry(pub(super) [AtomicU64; ENTRY_WORDS]);

/// Raw words of an entry read consistently.
pub(super) struct Raw {
    pub(super) w: [u64; WORDS],
}

impl Raw {
    pub(super) fn ports(&self) -> u64 {
        self.w[W_PORTS]
    }
}
