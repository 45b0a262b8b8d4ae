//! The connection table that every worker shares: fixed capacity, indexed
//! both ways, lock-free to read, with no stop-the-world anywhere.
//!
//! # Contract
//! * **Capacity** is fixed when the table is built (`[conn_table] capacity`
//!   in the config); nothing allocates afterwards. Each connection costs
//!   [`ConnTable::bytes_per_entry`] bytes *including both indexes*: 64 for
//!   the entry (one cache line), 8 for the high word of an IPv6 real
//!   server's address kept beside it, and 16 per index at full load, 104
//!   in all.
//! * **Indexes.** *Inbound* — (proto, client, client port, VIP, virtual
//!   port) → entry, for every packet from a client (persistence templates
//!   live here too, flagged [`ConnFlags::TEMPLATE`], and only
//!   [`ConnTable::lookup_template`] sees them). *Reply* — (proto, real
//!   server, real port, client, client port) → entry, for NAT connections
//!   only, since only NAT replies pass through the director.
//! * **Lookups never block and never wait.** They take no lock, write no
//!   shared memory and retry nothing: a candidate entry that is being
//!   recycled while it is read is simply skipped. Two workers looking up
//!   concurrently share only read-only cache lines, so lookups scale with
//!   cores. A lookup returns a [`Connection`] copy valid at one instant.
//! * **Updates are lock-free.** A connection's mutable part (deadline, TCP
//!   state, flags) is one 64-bit word changed by compare-and-swap, so the
//!   two directions of a NAT connection, seen by two workers, are
//!   serialised without a lock and every active/inactive change is reported
//!   to exactly one caller ([`ConnTable::on_tcp_segment`]).
//! * **Inserts are lock-free**: a free-list pop (Treiber stack with an ABA
//!   tag) and a compare-and-swap per index slot. Inserts do not check for
//!   duplicates: the caller inserts after a lookup missed, and a flow is
//!   steered to one worker by RSS, so a duplicate needs two workers to see
//!   the first packet of the same flow at once; it is then harmless (lookups
//!   find one of the two, the other expires on its own timer). A worker
//!   may defer a new NAT connection's reply-index link to the end of its
//!   receive burst ([`ConnTable::open_hashed`], [`ConnTable::finish_replies`]):
//!   the connection is live for its client at once, and no reply can come
//!   before the burst's frames leave. A life-word bit marks it pending;
//!   updates keep the bit, and a connection removed while pending leaves
//!   its link to the finisher, which takes back the slot it adds.
//! * **Time** is an argument ([`Millis`], monotonic); the table never reads
//!   a clock.
//! * **Expiry** is lazy and incremental. A connection whose deadline has
//!   passed is invisible to lookups at once, whether or not it has been
//!   reclaimed yet. Reclaiming (unlinking it from both indexes and freeing
//!   its slot) is done by [`ConnTable::expire`], which examines a bounded
//!   number of entries per call from a shared cursor and hands each expired
//!   connection to a callback, where the caller unbinds it from its real
//!   server (active/inactive counters). The control thread calls it
//!   periodically; any thread may (the cursor is shared, so concurrent
//!   sweepers examine disjoint ranges). A sweep of the whole table every few
//!   seconds keeps reclaiming timely: at 1M entries a budget of 64k entries
//!   every 100 ms does it in 1.6 s.
//! * **State sync.** [`ConnTable::insert_synced`] adds a connection copied
//!   from the peer director, flagged [`ConnFlags::SYNCED`] (bound to no
//!   real server); its first TCP segment clears the flag in the same
//!   compare-and-swap as its transition and says so to exactly one caller
//!   ([`ActivityChange::AdoptedActive`]/`AdoptedInactive`), other packets
//!   through [`ConnTable::adopt`]. The established ACK's fast path tests
//!   the flag with the liveness bits, at no cost. [`ConnTable::walk`] reads
//!   the table in resumable chunks for full transfers.
//! * **Full table policy.** When no entry is free, [`ConnTable::insert`]
//!   returns [`InsertError::Full`] and counts it
//!   ([`ConnTable::refused_full`]); nothing is evicted, so established
//!   connections never make room for a SYN flood. The pipeline then
//!   forwards the packet statelessly — it schedules by a hash of the flow
//!   (as sh/mh would) so that later packets of the same flow land on the
//!   same real server while the table stays full — and counts it as such.
//!   Expired entries are reclaimed by the sweeper only; a worker that meets
//!   a full table may run a small [`ConnTable::expire`] itself.
//!
//! # Layout and memory ordering
//! A connection is nine `AtomicU64` words: client, VIP and real-server
//! address (two words each, IPv4 stored in the low word with a family bit
//! in the ports word), ports + protocol + method, real-server id (the
//! free-list link while free), and the *life* word. Eight of them make the
//! entry, one aligned cache line; the high word of the real server's
//! address, zero unless it is IPv6, lives in a side array (`server_hi`)
//! that only connections to IPv6 real servers read, so a lookup touches
//! its bucket's line and its entry's line and no third. The life word is
//! deadline (40 bits of ms), TCP state (4), flags (8), generation (12).
//! The key words (`server_hi` included) are written only
//! while an entry is not live, so the life word doubles as a seqlock: a
//! reader loads life (Acquire), the other words (Relaxed), fences (Acquire)
//! and loads life again; a changed generation or a dead entry means the
//! entry was recycled under it and the candidate is skipped. A freed entry's
//! life is cleared before it goes back on the free list and the next insert
//! fences (Release) before writing, which is the seqlock writer's protocol
//! spread over the remover and the inserter.
//!
//! Each index is an array of 64-byte buckets of seven slots plus an
//! overflow count (folly F14's scheme): a slot holds a 32-bit hash tag and
//! the entry number. An insert that finds its home bucket full increments
//! the bucket's overflow count before using the next bucket, and a removal
//! decrements the counts it passed; a lookup goes on to the next bucket only
//! while the count is non-zero. Slots are emptied on removal — no tombstones
//! that would slowly lengthen every probe. Buckets are sized for four
//! entries each at full capacity (57% slot load), so a lookup reads one
//! bucket line and the entry's lines. The hash is keyed with a seed
//! (a folded multiply over the key words) so that an attacker who cannot
//! see the seed cannot aim flows at one bucket.
//!
//! No `unsafe`: everything is `AtomicU64`. The entries and both indexes
//! ask for transparent huge pages ([`crate::io::mem`]) before they are
//! first written, which takes most TLB misses out of a lookup.
//!
//! # Speed
//! A lookup in a table far larger than the caches costs two dependent
//! cache misses (the bucket, then the entry), plus two TLB misses where
//! huge pages were refused; that, not the code, sets the time of one lookup.
//! Workers receive frames in bursts, so [`ConnTable::lookup_inbound_batch`]
//! and [`ConnTable::lookup_reply_batch`] first issue the bucket and entry
//! reads of a whole burst ([`ConnTable::BATCH`], as prefetches that do not
//! wait for their lines) and only then run the lookups, so that the misses
//! overlap. An insert's reply-index slot is a random line written by
//! compare-and-swap, which waits for the line: deferred to the end of the
//! burst, the slots of all its new connections are fetched together.
//! `benches/conntable.rs` measures lookups on one and two threads;
//! `benches/pipeline.rs` the whole per-frame path.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

use xvs_packet::{FlowKey, IpProtocol};

use crate::io::mem::{huge_boxed_slice, prefetch};

use super::ForwardMethod;
use super::state::{
    ActivityChange, Millis, PacketDirection, ProtoState, TcpEvent, TcpState, Timeouts, Transition,
    tcp_transition,
};

mod entry;
mod hash;
mod index;
mod types;

use entry::*;
pub use entry::{ConnFlags, MAX_DEADLINE};
use hash::*;
use index::*;
pub use types::*;

/// The connection table (see the module docs).
#[derive(Debug)]
pub struct ConnTable {
    entries: Box<[Entry]>,
    /// The high word of each entry's real-server address (0 for IPv4).
    server_hi: Box<[AtomicU64]>,
    inbound: Index,
    reply: Index,
    inbound_hash: Hasher,
    reply_hash: Hasher,
    /// Treiber stack of free entries: ABA tag << 32 | (index + 1).
    free_head: AtomicU64,
    sweep_cursor: AtomicUsize,
    live: AtomicUsize,
    refused_full: AtomicU64,
}

impl ConnTable {
    /// The largest capacity (entry numbers are 32-bit with 0 reserved).
    pub const MAX_CAPACITY: u32 = u32::MAX - 1;

    /// A table for `capacity` connections (clamped to
    /// [`ConnTable::MAX_CAPACITY`]); `seed` keys the index hashes. A
    /// capacity of 0 gives a table that refuses every insert.
    #[must_use]
    pub fn new(capacity: u32, seed: u64) -> Self {
        let capacity = capacity.min(Self::MAX_CAPACITY) as usize;
        let entries: Box<[Entry]> = huge_boxed_slice(capacity, |_| Entry::default());
        // Thread the free list through the entries: 0 → 1 → … → last.
        for (i, e) in entries.iter().enumerate() {
            let next = if i + 1 < capacity { i as u64 + 2 } else { 0 };
            e.0[E_SERVER_ID].store(next, Ordering::Relaxed);
        }
        let head = if capacity > 0 { 1 } else { 0 };
        Self {
            entries,
            server_hi: huge_boxed_slice(capacity, |_| AtomicU64::new(0)),
            inbound: Index::new(capacity),
            reply: Index::new(capacity),
            inbound_hash: Hasher::new(seed),
            reply_hash: Hasher::new(seed ^ 0x5265_706c_7920_6964),
            free_head: AtomicU64::new(head),
            sweep_cursor: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            refused_full: AtomicU64::new(0),
        }
    }

    /// How many connections the table can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Connections (and templates) in the table, expired-but-unreclaimed
    /// ones included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// No entry in use.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts refused because the table was full, since it was built.
    #[must_use]
    pub fn refused_full(&self) -> u64 {
        self.refused_full.load(Ordering::Relaxed)
    }

    /// Bytes the table holds, entries and both indexes.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.entries)
            + size_of_val(&*self.server_hi)
            + size_of_val(&*self.inbound.buckets)
            + size_of_val(&*self.reply.buckets)
    }

    /// Bytes per connection at full capacity, both indexes included.
    #[must_use]
    pub fn bytes_per_entry(&self) -> f64 {
        self.memory_bytes() as f64 / self.capacity().max(1) as f64
    }

    // -- keys --

    #[inline(always)]
    fn inbound_hash_of(
        &self,
        proto: u8,
        client: (u64, u64, bool),
        cport: u16,
        vip: (u64, u64),
        vport: u16,
    ) -> u64 {
        let ports = u64::from(cport)
            | (u64::from(vport) << 16)
            | (u64::from(proto) << 48)
            | (u64::from(client.2) << 58);
        self.inbound_hash
            .hash([client.0, client.1, vip.0, vip.1, ports])
    }

    #[inline(always)]
    fn reply_hash_of(
        &self,
        proto: u8,
        server: (u64, u64, bool),
        rport: u16,
        client: (u64, u64, bool),
        cport: u16,
    ) -> u64 {
        let ports = u64::from(cport)
            | (u64::from(rport) << 32)
            | (u64::from(proto) << 48)
            | (u64::from(client.2) << 58)
            | (u64::from(server.2) << 59);
        self.reply_hash
            .hash([server.0, server.1, client.0, client.1, ports])
    }

    fn entry_hashes(&self, w: &[u64; WORDS]) -> (u64, u64) {
        let ports = w[W_PORTS];
        let kind = ports >> 56;
        let proto = (ports >> 48) as u8;
        let client = (w[W_CLIENT], w[W_CLIENT + 1], kind & KIND_CLIENT_V6 != 0);
        let server = (w[W_SERVER], w[W_SERVER + 1], kind & KIND_SERVER_V6 != 0);
        let cport = ports as u16;
        let vport = (ports >> 16) as u16;
        let rport = (ports >> 32) as u16;
        (
            self.inbound_hash_of(proto, client, cport, (w[W_VIP], w[W_VIP + 1]), vport),
            self.reply_hash_of(proto, server, rport, client, cport),
        )
    }

    // -- reading --

    /// The key words of entry `idx` (all but life), as they are now: no
    /// consistency check (that is [`ConnTable::read`]'s seqlock).
    #[inline(always)]
    fn load_words(&self, idx: usize) -> [u64; WORDS] {
        let e = &self.entries[idx].0;
        let mut w = [0u64; WORDS];
        w[W_CLIENT] = e[E_CLIENT].load(Ordering::Relaxed);
        w[W_CLIENT + 1] = e[E_CLIENT + 1].load(Ordering::Relaxed);
        w[W_VIP] = e[E_VIP].load(Ordering::Relaxed);
        w[W_VIP + 1] = e[E_VIP + 1].load(Ordering::Relaxed);
        w[W_SERVER + 1] = e[E_SERVER_LO].load(Ordering::Relaxed);
        let ports = e[E_PORTS].load(Ordering::Relaxed);
        w[W_PORTS] = ports;
        w[W_SERVER_ID] = e[E_SERVER_ID].load(Ordering::Relaxed);
        if (ports >> 56) & KIND_SERVER_V6 != 0 {
            w[W_SERVER] = self.server_hi[idx].load(Ordering::Relaxed);
        }
        w
    }

    /// Reads entry `idx` if it is visible, consistently (seqlock on life).
    #[inline(always)]
    fn read(&self, idx: usize) -> Option<Raw> {
        let e = &self.entries[idx].0;
        let l1 = e[E_LIFE].load(Ordering::Acquire);
        if !life_visible(l1) {
            return None;
        }
        let mut w = self.load_words(idx);
        fence(Ordering::Acquire);
        let l2 = e[E_LIFE].load(Ordering::Relaxed);
        if !life_visible(l2) || life_gen(l1) != life_gen(l2) {
            return None;
        }
        w[W_LIFE] = l2;
        Some(Raw { w })
    }

    #[inline(always)]
    fn decode(idx: usize, raw: &Raw) -> Connection {
        let w = &raw.w;
        let ports = raw.ports();
        let kind = ports >> 56;
        let life = w[W_LIFE];
        Connection {
            handle: ConnHandle {
                index: idx as u32,
                gen_: life_gen(life),
            },
            proto: IpProtocol::from((ports >> 48) as u8),
            client: words_addr(w[W_CLIENT], w[W_CLIENT + 1], kind & KIND_CLIENT_V6 != 0),
            cport: ports as u16,
            vip: words_addr(w[W_VIP], w[W_VIP + 1], kind & KIND_CLIENT_V6 != 0),
            vport: (ports >> 16) as u16,
            real_server: words_addr(w[W_SERVER], w[W_SERVER + 1], kind & KIND_SERVER_V6 != 0),
            rport: (ports >> 32) as u16,
            server_id: w[W_SERVER_ID] as u32,
            method: ForwardMethod::from_code((kind & KIND_METHOD_MASK) as u8),
            tcp_state: life_state(life),
            flags: ConnFlags::from_life(life),
            deadline: life_deadline(life),
        }
    }

    #[inline(always)]
    fn lookup_inbound_kind(
        &self,
        key: &FlowKey,
        hash: InboundHash,
        now: Millis,
        template: bool,
    ) -> Option<Connection> {
        debug_assert_eq!(hash, self.inbound_hash(key), "a hash of another key");
        let hash = hash.0;
        let proto = u8::from(key.proto);
        let client = addr_words(key.src);
        let vip = addr_words(key.dst);
        let want_ports = u64::from(key.sport)
            | (u64::from(key.dport) << 16)
            | (u64::from(proto) << 48)
            | (u64::from(client.2) << 58);
        self.inbound.find(hash, |idx| {
            let raw = self.read(idx)?;
            let w = &raw.w;
            let life = w[W_LIFE];
            let matches = w[W_CLIENT] == client.0
                && w[W_CLIENT + 1] == client.1
                && w[W_VIP] == vip.0
                && w[W_VIP + 1] == vip.1
                && raw.ports() & INBOUND_PORTS_MASK == want_ports
                && ConnFlags::from_life(life).contains(ConnFlags::TEMPLATE) == template
                && life_deadline(life) > now;
            matches.then(|| Self::decode(idx, &raw))
        })
    }

    /// The connection a client's packet belongs to: `key.src` = client,
    /// `key.dst` = VIP. Expired connections are not returned; templates
    /// never are.
    #[must_use]
    #[inline]
    pub fn lookup_inbound(&self, key: &FlowKey, now: Millis) -> Option<Connection> {
        self.lookup_inbound_kind(key, self.inbound_hash(key), now, false)
    }

    /// Where `key` (client → VIP) lands in the inbound index.
    #[must_use]
    #[inline(always)]
    pub fn inbound_hash(&self, key: &FlowKey) -> InboundHash {
        InboundHash(self.inbound_hash_of_key(key))
    }

    /// [`ConnTable::lookup_inbound`] with the key's hash already known.
    #[must_use]
    #[inline]
    pub fn lookup_inbound_hashed(
        &self,
        key: &FlowKey,
        hash: InboundHash,
        now: Millis,
    ) -> Option<Connection> {
        self.lookup_inbound_kind(key, hash, now, false)
    }

    /// A persistence template: `key.src` = the client's masked address,
    /// `key.sport` = 0, `key.dst`/`key.dport` = VIP and the template's port.
    #[must_use]
    pub fn lookup_template(&self, key: &FlowKey, now: Millis) -> Option<Connection> {
        self.lookup_inbound_kind(key, self.inbound_hash(key), now, true)
    }

    /// The NAT connection a real server's reply belongs to: `key.src` =
    /// real server, `key.dst` = client. Expired connections are not returned.
    #[must_use]
    #[inline]
    pub fn lookup_reply(&self, key: &FlowKey, now: Millis) -> Option<Connection> {
        self.lookup_reply_at(key, self.reply_hash_of_key(key), now)
    }

    /// Where `key` (real server → client) lands in the reply index.
    #[must_use]
    #[inline(always)]
    pub fn reply_hash(&self, key: &FlowKey) -> ReplyHash {
        ReplyHash(self.reply_hash_of_key(key))
    }

    /// [`ConnTable::lookup_reply`] with the key's hash already known.
    #[must_use]
    #[inline]
    pub fn lookup_reply_hashed(
        &self,
        key: &FlowKey,
        hash: ReplyHash,
        now: Millis,
    ) -> Option<Connection> {
        debug_assert_eq!(hash, self.reply_hash(key), "a hash of another key");
        self.lookup_reply_at(key, hash.0, now)
    }

    /// [`ConnTable::lookup_reply`] with the key's reply-index hash known.
    #[inline(always)]
    fn lookup_reply_at(&self, key: &FlowKey, hash: u64, now: Millis) -> Option<Connection> {
        let proto = u8::from(key.proto);
        let server = addr_words(key.src);
        let client = addr_words(key.dst);
        let want_ports = u64::from(key.dport)
            | (u64::from(key.sport) << 32)
            | (u64::from(proto) << 48)
            | (u64::from(client.2) << 58)
            | (u64::from(server.2) << 59);
        self.reply.find(hash, |idx| {
            let raw = self.read(idx)?;
            let w = &raw.w;
            let matches = w[W_SERVER] == server.0
                && w[W_SERVER + 1] == server.1
                && w[W_CLIENT] == client.0
                && w[W_CLIENT + 1] == client.1
                && raw.ports() & REPLY_PORTS_MASK == want_ports
                && life_deadline(w[W_LIFE]) > now;
            matches.then(|| Self::decode(idx, &raw))
        })
    }

    /// How many lookups [`ConnTable::lookup_inbound_batch`] overlaps at once.
    pub const BATCH: usize = 32;

    #[inline(always)]
    fn inbound_hash_of_key(&self, key: &FlowKey) -> u64 {
        let vip = addr_words(key.dst);
        self.inbound_hash_of(
            u8::from(key.proto),
            addr_words(key.src),
            key.sport,
            (vip.0, vip.1),
            key.dport,
        )
    }

    fn reply_hash_of_key(&self, key: &FlowKey) -> u64 {
        self.reply_hash_of(
            u8::from(key.proto),
            addr_words(key.src),
            key.sport,
            addr_words(key.dst),
            key.dport,
        )
    }

    /// Starts the memory reads of up to [`ConnTable::BATCH`] lookups before
    /// doing any of them: first a prefetch of every home bucket, then, bucket
    /// by bucket, a prefetch of the entry of its first tag match. Prefetches
    /// do not wait for their lines, so the misses of the whole batch overlap
    /// instead of queueing one behind the other, and the lookups that follow
    /// find their lines in cache.
    fn warm(&self, index: &Index, hashes: &[u64]) {
        for &h in hashes {
            prefetch(&index.buckets[index.home(h)]);
        }
        for &h in hashes {
            let bucket = &index.buckets[index.home(h)];
            let tag = h << 32;
            for slot in &bucket.slots {
                let v = slot.load(Ordering::Relaxed);
                if v != 0 && (v & 0xffff_ffff_0000_0000) == tag {
                    prefetch(&self.entries[(v as u32 - 1) as usize]);
                    break;
                }
            }
        }
    }

    /// [`ConnTable::lookup_inbound`] for a batch of packets (a receive
    /// burst): `out[i]` gets the answer for `keys[i]` (the shorter of the
    /// two slices decides how many). Same answers, much less time per key
    /// on a table larger than the caches, because the misses of
    /// [`ConnTable::BATCH`] lookups overlap.
    pub fn lookup_inbound_batch(
        &self,
        keys: &[FlowKey],
        now: Millis,
        out: &mut [Option<Connection>],
    ) {
        for (keys, out) in keys.chunks(Self::BATCH).zip(out.chunks_mut(Self::BATCH)) {
            let mut hashes = [0u64; Self::BATCH];
            for (h, k) in hashes.iter_mut().zip(keys) {
                *h = self.inbound_hash_of_key(k);
            }
            self.warm(&self.inbound, &hashes[..keys.len()]);
            for ((o, k), h) in out.iter_mut().zip(keys).zip(hashes) {
                *o = self.lookup_inbound_kind(k, InboundHash(h), now, false);
            }
        }
    }

    /// Issues the inbound-index reads of the keys whose hashes are given,
    /// in [`ConnTable::BATCH`]-sized chunks, ahead of their lookups (see
    /// [`ConnTable::lookup_inbound_batch`]): for callers that look up one
    /// packet at a time after a parse of the whole burst.
    pub fn warm_inbound(&self, hashes: &[InboundHash]) {
        for chunk in hashes.chunks(Self::BATCH) {
            let mut raw = [0u64; Self::BATCH];
            for (r, h) in raw.iter_mut().zip(chunk) {
                *r = h.0;
            }
            self.warm(&self.inbound, &raw[..chunk.len()]);
        }
    }

    /// [`ConnTable::warm_inbound`] for the reply index.
    pub fn warm_reply(&self, hashes: &[ReplyHash]) {
        for chunk in hashes.chunks(Self::BATCH) {
            let mut raw = [0u64; Self::BATCH];
            for (r, h) in raw.iter_mut().zip(chunk) {
                *r = h.0;
            }
            self.warm(&self.reply, &raw[..chunk.len()]);
        }
    }

    /// [`ConnTable::lookup_reply`] for a batch of packets, as
    /// [`ConnTable::lookup_inbound_batch`].
    pub fn lookup_reply_batch(
        &self,
        keys: &[FlowKey],
        now: Millis,
        out: &mut [Option<Connection>],
    ) {
        for (keys, out) in keys.chunks(Self::BATCH).zip(out.chunks_mut(Self::BATCH)) {
            let mut hashes = [0u64; Self::BATCH];
            for (h, k) in hashes.iter_mut().zip(keys) {
                *h = self.reply_hash_of_key(k);
            }
            self.warm(&self.reply, &hashes[..keys.len()]);
            for ((o, k), h) in out.iter_mut().zip(keys).zip(hashes) {
                *o = self.lookup_reply_at(k, h, now);
            }
        }
    }

    /// The connection behind a handle, if it is still the same live
    /// connection (expired or not).
    #[must_use]
    pub fn get(&self, handle: ConnHandle) -> Option<Connection> {
        let idx = handle.index as usize;
        if idx >= self.entries.len() {
            return None;
        }
        let raw = self.read(idx)?;
        (life_gen(raw.w[W_LIFE]) == handle.gen_).then(|| Self::decode(idx, &raw))
    }

    /// Calls `f` with every live connection (templates included), in
    /// table order: a consistent copy of each entry, read without locks
    /// while workers go on (`ipvsadm -L -c`). Costs one pass over the
    /// whole table: for operators, not for the data path.
    pub fn for_each(&self, mut f: impl FnMut(&Connection)) {
        for idx in 0..self.entries.len() {
            if let Some(raw) = self.read(idx) {
                f(&Self::decode(idx, &raw));
            }
        }
    }

    /// As [`ConnTable::for_each`], stopping at the first connection for
    /// which `f` breaks (a listing whose reader has gone stops walking).
    pub fn try_for_each<B>(
        &self,
        mut f: impl FnMut(&Connection) -> core::ops::ControlFlow<B>,
    ) -> core::ops::ControlFlow<B> {
        for idx in 0..self.entries.len() {
            if let Some(raw) = self.read(idx) {
                f(&Self::decode(idx, &raw))?;
            }
        }
        core::ops::ControlFlow::Continue(())
    }

    // -- free list --

    fn pop_free(&self) -> Option<usize> {
        let mut head = self.free_head.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let idx = (top - 1) as usize;
            // May be stale if another thread pops `idx` meanwhile; the tag
            // in the head then differs and the exchange fails.
            let next = self.entries[idx].0[E_SERVER_ID].load(Ordering::Relaxed) as u32;
            let new = (((head >> 32) + 1) << 32) | u64::from(next);
            match self.free_head.compare_exchange_weak(
                head,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(idx),
                Err(h) => head = h,
            }
        }
    }

    fn push_free(&self, idx: usize) {
        let mut head = self.free_head.load(Ordering::Acquire);
        loop {
            self.entries[idx].0[E_SERVER_ID].store(head & 0xffff_ffff, Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | (idx as u64 + 1);
            match self.free_head.compare_exchange_weak(
                head,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    // -- writing --

    /// Adds a connection in state NONE, inactive, expiring at `now +
    /// timeout` (the kernel gives a new connection a short timer until its
    /// first packet runs the state machine: call [`ConnTable::on_tcp_segment`]
    /// or [`ConnTable::on_packet`] next, or insert with [`ConnTable::open`],
    /// which does both at once). DR/TUN connections start with NO_OUTPUT.
    /// The caller binds it to its real server (`inactconns`).
    ///
    /// # Errors
    /// [`InsertError::Full`] when every entry is in use (counted).
    pub fn insert(
        &self,
        conn: &NewConnection,
        now: Millis,
        timeout: Millis,
    ) -> Result<ConnHandle, InsertError> {
        self.insert_with(
            conn,
            None,
            TcpState::None,
            initial_flags(conn),
            now.saturating_add(timeout),
            false,
        )
        .map(|(handle, _, _)| handle)
    }

    /// Adds a connection together with its first packet, a client's: the
    /// entry is published already in the state that packet leads to, with
    /// that state's timer, so the packet costs no second write to the
    /// entry and no read back. Returns the connection as stored and
    /// whether the packet made it active (the caller moves it from
    /// `inactconns` to `activeconns` then, e.g. a sloppy TCP service
    /// opening on an ACK).
    ///
    /// # Errors
    /// [`InsertError::Full`] when every entry is in use (counted).
    pub fn open(
        &self,
        conn: &NewConnection,
        now: Millis,
        first: FirstPacket<'_>,
    ) -> Result<(Connection, ActivityChange), InsertError> {
        let key = FlowKey {
            proto: conn.proto,
            src: conn.client,
            dst: conn.vip,
            sport: conn.cport,
            dport: conn.vport,
        };
        self.open_hashed(conn, self.inbound_hash(&key), now, first, false)
            .map(|(c, a, _)| (c, a))
    }

    /// [`ConnTable::open`] with the hash of the connection's inbound key
    /// (client, client port → VIP, virtual port) already known.
    ///
    /// With `defer_reply`, a NAT connection is live and found by its
    /// client's packets at once, but enters the reply index only when the
    /// returned [`PendingReply`] goes through [`ConnTable::finish_replies`].
    /// A worker does that at the end of a receive burst, before it
    /// transmits: no reply can come before the first packet has left, and
    /// the reply-index lines of a whole burst are then fetched together
    /// instead of one stalled insert per new connection.
    ///
    /// # Errors
    /// [`InsertError::Full`] when every entry is in use (counted).
    pub fn open_hashed(
        &self,
        conn: &NewConnection,
        hash: InboundHash,
        now: Millis,
        first: FirstPacket<'_>,
        defer_reply: bool,
    ) -> Result<(Connection, ActivityChange, Option<PendingReply>), InsertError> {
        let mut activity = ActivityChange::Unchanged;
        let flags = initial_flags(conn);
        let (state, flags, deadline) = match first {
            FirstPacket::Tcp(event, timeouts) => {
                let current = ProtoState {
                    tcp: TcpState::None,
                    active: false,
                    no_output: flags.contains(ConnFlags::NO_OUTPUT),
                };
                let (next, transition) =
                    tcp_transition(current, PacketDirection::FromClient, event);
                activity = transition.activity;
                let mut bits = flags.0 & !(ConnFlags::ACTIVE.0 | ConnFlags::NO_OUTPUT.0);
                if next.active {
                    bits |= ConnFlags::ACTIVE.0;
                }
                if next.no_output {
                    bits |= ConnFlags::NO_OUTPUT.0;
                }
                let deadline = now.saturating_add(timeouts.tcp_ms(next.tcp));
                (next.tcp, ConnFlags(bits), deadline)
            }
            FirstPacket::Other { timeout } => (TcpState::None, flags, now.saturating_add(timeout)),
        };
        let (handle, life, pending) =
            self.insert_with(conn, Some(hash), state, flags, deadline, defer_reply)?;
        let connection = Connection {
            handle,
            proto: conn.proto,
            client: conn.client,
            cport: conn.cport,
            vip: conn.vip,
            vport: conn.vport,
            real_server: conn.real_server,
            rport: conn.rport,
            server_id: conn.server_id,
            method: conn.method,
            tcp_state: state,
            flags,
            deadline: life_deadline(life),
        };
        Ok((connection, activity, pending))
    }

    /// Adds the deferred connections of `pending` to the reply index (see
    /// [`ConnTable::open_hashed`]): prefetches every bucket first, so that
    /// their misses overlap, then links each connection that is still the
    /// same live one. One that died meanwhile (its remover left the reply
    /// index alone, seeing it pending) gets its slot taken back.
    pub fn finish_replies(&self, pending: &[PendingReply]) {
        for p in pending {
            prefetch(&self.reply.buckets[self.reply.home(p.hash)]);
        }
        for p in pending {
            let idx = p.handle.index as usize;
            let Some(entry) = self.entries.get(idx) else {
                continue;
            };
            let linked = self.reply.insert(p.hash, idx);
            let word = &entry.0[E_LIFE];
            let mut life = word.load(Ordering::Acquire);
            loop {
                if !life_visible(life)
                    || life_gen(life) != p.handle.gen_
                    || life & LIFE_REPLY_PENDING == 0
                {
                    // Removed (or reused) while pending: nobody else
                    // will take this slot back.
                    if linked {
                        self.reply.remove(p.hash, idx);
                    }
                    break;
                }
                match word.compare_exchange_weak(
                    life,
                    life & !LIFE_REPLY_PENDING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(l) => life = l,
                }
            }
        }
    }

    /// Takes a free entry, writes `conn`'s key words, links it into its
    /// indexes and publishes it live in `state` with `flags`, expiring at
    /// `deadline`; returns its handle and life word.
    fn insert_with(
        &self,
        conn: &NewConnection,
        inbound_hash: Option<InboundHash>,
        state: TcpState,
        flags: ConnFlags,
        deadline: Millis,
        defer_reply: bool,
    ) -> Result<(ConnHandle, u64, Option<PendingReply>), InsertError> {
        let Some(idx) = self.pop_free() else {
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        };
        let e = &self.entries[idx].0;
        let gen_ = (life_gen(e[E_LIFE].load(Ordering::Relaxed)) + 1) & GEN_MASK as u16;
        // Seqlock writer: the entry is not live (its remover cleared life
        // before freeing it); order that before the new key words.
        fence(Ordering::Release);
        let client = addr_words(conn.client);
        let vip = addr_words(conn.vip);
        let server = addr_words(conn.real_server);
        let kind = u64::from(conn.method.code())
            | if client.2 { KIND_CLIENT_V6 } else { 0 }
            | if server.2 { KIND_SERVER_V6 } else { 0 };
        let ports = u64::from(conn.cport)
            | (u64::from(conn.vport) << 16)
            | (u64::from(conn.rport) << 32)
            | (u64::from(u8::from(conn.proto)) << 48)
            | (kind << 56);
        let mut w = [0; WORDS];
        w[W_CLIENT] = client.0;
        w[W_CLIENT + 1] = client.1;
        w[W_VIP] = vip.0;
        w[W_VIP + 1] = vip.1;
        w[W_SERVER] = server.0;
        w[W_SERVER + 1] = server.1;
        w[W_PORTS] = ports;
        w[W_SERVER_ID] = u64::from(conn.server_id);
        for (at, v) in [
            (E_CLIENT, client.0),
            (E_CLIENT + 1, client.1),
            (E_VIP, vip.0),
            (E_VIP + 1, vip.1),
            (E_SERVER_LO, server.1),
            (E_PORTS, ports),
            (E_SERVER_ID, u64::from(conn.server_id)),
        ] {
            e[at].store(v, Ordering::Relaxed);
        }
        self.server_hi[idx].store(server.0, Ordering::Relaxed);
        let (h_in, h_reply) = match inbound_hash {
            Some(h) => {
                let h_reply = self.reply_hash_of(
                    u8::from(conn.proto),
                    server,
                    conn.rport,
                    client,
                    conn.cport,
                );
                debug_assert_eq!(
                    (h.0, h_reply),
                    self.entry_hashes(&w),
                    "a hash of another key"
                );
                (h.0, h_reply)
            }
            None => self.entry_hashes(&w),
        };
        let in_reply = conn.method.sees_replies() && !conn.template;
        // Publish in the indexes first and go live last: until then readers
        // that reach the entry skip it and the sweeper leaves it alone.
        let defer = in_reply && defer_reply;
        let indexed = self.inbound.insert(h_in, idx)
            && (!in_reply || defer || self.reply.insert(h_reply, idx));
        if !indexed {
            // Cannot happen (indexes have more slots than the table has
            // entries); give the entry back rather than lose it.
            self.inbound.remove(h_in, idx);
            self.push_free(idx);
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(InsertError::Full);
        }
        let pending_bit = if defer { LIFE_REPLY_PENDING } else { 0 };
        let life = make_life(deadline, state, flags, gen_) | pending_bit;
        e[E_LIFE].store(life, Ordering::Release);
        self.live.fetch_add(1, Ordering::Relaxed);
        let handle = ConnHandle {
            index: idx as u32,
            gen_,
        };
        let pending = defer.then_some(PendingReply {
            handle,
            hash: h_reply,
        });
        Ok((handle, life, pending))
    }

    /// Applies `change` to a connection's life word atomically: `change`
    /// gets the current (state, flags, deadline) and returns the new ones
    /// plus a result; it may run more than once under contention.
    ///
    /// `change` also returns a slack: when state and flags stay the same
    /// and the new deadline is later than the current one by less than the
    /// slack, the word is left as it is:
    /// a packet of an established flow then costs a read, not an atomic
    /// write to a shared cache line, and the connection's timer is at most
    /// `slack` short of exact.
    fn update<R>(
        &self,
        handle: ConnHandle,
        mut change: impl FnMut(TcpState, ConnFlags, Millis) -> (TcpState, ConnFlags, Millis, Millis, R),
    ) -> Result<R, Gone> {
        let idx = handle.index as usize;
        let word = &self.entries.get(idx).ok_or(Gone)?.0[E_LIFE];
        let mut life = word.load(Ordering::Acquire);
        loop {
            if !life_visible(life) || life_gen(life) != handle.gen_ {
                return Err(Gone);
            }
            let (old_state, old_flags, old_deadline) = (
                life_state(life),
                ConnFlags::from_life(life),
                life_deadline(life),
            );
            let (state, flags, deadline, slack, r) = change(old_state, old_flags, old_deadline);
            if state == old_state
                && flags == old_flags
                && deadline >= old_deadline
                && deadline - old_deadline < slack
            {
                return Ok(r);
            }
            let new = make_life(deadline, state, flags, handle.gen_) | (life & LIFE_REPLY_PENDING);
            match word.compare_exchange_weak(life, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(r),
                Err(l) => life = l,
            }
        }
    }

    /// Runs one TCP segment through the state machine atomically and
    /// re-arms the timer with the new state's timeout. The returned
    /// [`Transition`] says whether to move the connection between the real
    /// server's `activeconns` and `inactconns`; exactly one caller sees each
    /// change. The first segment of a synced connection
    /// ([`ConnFlags::SYNCED`]) clears the flag and says
    /// [`ActivityChange::AdoptedActive`] or
    /// [`ActivityChange::AdoptedInactive`]: bind it now.
    ///
    /// # Errors
    /// [`Gone`] when the connection was removed (expired and reclaimed).
    pub fn on_tcp_segment(
        &self,
        handle: ConnHandle,
        direction: PacketDirection,
        event: TcpEvent,
        now: Millis,
        timeouts: &Timeouts,
    ) -> Result<Transition, Gone> {
        // Most segments are an ACK of an established flow, which leaves the
        // state as it is (both the INPUT and INPUT_ONLY tables) and whose
        // new timer is usually within the slack of the old one: such a
        // segment needs only this one read of the life word. A server's
        // ACK while NO_OUTPUT is set clears it, and a synced connection's
        // first packet binds it (the same mask as the liveness test, so
        // no extra work here): not this path.
        if event == TcpEvent::Ack
            && let Some(entry) = self.entries.get(handle.index as usize)
        {
            let life = entry.0[E_LIFE].load(Ordering::Acquire);
            let timeout = timeouts.tcp_ms(TcpState::Established);
            let deadline = now.saturating_add(timeout);
            let old = life_deadline(life);
            if life & (LIFE_LIVE | LIFE_DYING | LIFE_SYNCED) == LIFE_LIVE
                && life_gen(life) == handle.gen_
                && life_state(life) == TcpState::Established
                && (direction == PacketDirection::FromClient
                    || !ConnFlags::from_life(life).contains(ConnFlags::NO_OUTPUT))
                && deadline >= old
                && deadline - old < rearm_slack(timeout)
            {
                return Ok(Transition {
                    from: TcpState::Established,
                    to: TcpState::Established,
                    activity: ActivityChange::Unchanged,
                    first_reply: false,
                });
            }
        }
        self.update(handle, |state, flags, _| {
            let current = ProtoState {
                tcp: state,
                active: flags.contains(ConnFlags::ACTIVE),
                no_output: flags.contains(ConnFlags::NO_OUTPUT),
            };
            let (next, mut transition) = tcp_transition(current, direction, event);
            let synced = flags.contains(ConnFlags::SYNCED);
            let mut bits =
                flags.0 & !(ConnFlags::ACTIVE.0 | ConnFlags::NO_OUTPUT.0 | ConnFlags::SYNCED.0);
            if next.active {
                bits |= ConnFlags::ACTIVE.0;
            }
            if next.no_output {
                bits |= ConnFlags::NO_OUTPUT.0;
            }
            if synced {
                transition.activity = ActivityChange::adopted(next.active);
            }
            let timeout = timeouts.tcp_ms(next.tcp);
            let deadline = now.saturating_add(timeout);
            (
                next.tcp,
                ConnFlags(bits),
                deadline,
                rearm_slack(timeout),
                transition,
            )
        })
    }

    /// A packet of a connection without TCP states (UDP, ICMP, templates):
    /// re-arms the timer to `now + timeout`; a reply clears NO_OUTPUT.
    ///
    /// # Errors
    /// [`Gone`] when the connection was removed.
    pub fn on_packet(
        &self,
        handle: ConnHandle,
        direction: PacketDirection,
        now: Millis,
        timeout: Millis,
    ) -> Result<(), Gone> {
        self.update(handle, |state, flags, _| {
            let flags = match direction {
                PacketDirection::FromServer => ConnFlags(flags.0 & !ConnFlags::NO_OUTPUT.0),
                PacketDirection::FromClient => flags,
            };
            (
                state,
                flags,
                now.saturating_add(timeout),
                rearm_slack(timeout),
                (),
            )
        })
    }

    /// Sets a connection's deadline (templates are re-armed this way; a
    /// controlling template whose timer fires gets 60 s more).
    ///
    /// # Errors
    /// [`Gone`] when the connection was removed.
    pub fn set_deadline(&self, handle: ConnHandle, deadline: Millis) -> Result<(), Gone> {
        self.update(handle, |state, flags, _| (state, flags, deadline, 0, ()))
    }

    /// Adds a connection copied from the peer director (the state sync's
    /// import): published at once in `state` with `flags` plus
    /// [`ConnFlags::SYNCED`], expiring at `deadline`, in both indexes
    /// (NAT) like any other. The caller binds nothing: the pipeline binds
    /// it to its real server at its first packet ([`ConnTable::adopt`]).
    ///
    /// # Errors
    /// [`InsertError::Full`] when every entry is in use (counted).
    pub fn insert_synced(
        &self,
        conn: &NewConnection,
        state: TcpState,
        flags: ConnFlags,
        deadline: Millis,
    ) -> Result<ConnHandle, InsertError> {
        let flags = ConnFlags(
            (flags.0 & (ConnFlags::ACTIVE.0 | ConnFlags::NO_OUTPUT.0))
                | initial_flags(conn).0 & ConnFlags::TEMPLATE.0
                | ConnFlags::SYNCED.0,
        );
        self.insert_with(conn, None, state, flags, deadline, false)
            .map(|(handle, _, _)| handle)
    }

    /// Sets a connection's TCP state, its ACTIVE and NO_OUTPUT flags and its
    /// deadline to what the peer director reports (the state sync's update
    /// of an entry it already has). Returns the flags before and after:
    /// when the entry is bound (not [`ConnFlags::SYNCED`]) and ACTIVE
    /// changed, the caller moves it between its real server's counters;
    /// exactly one caller sees each change, as with
    /// [`ConnTable::on_tcp_segment`].
    ///
    /// # Errors
    /// [`Gone`] when the connection was removed.
    pub fn sync_update(
        &self,
        handle: ConnHandle,
        state: TcpState,
        flags: ConnFlags,
        deadline: Millis,
    ) -> Result<(ConnFlags, ConnFlags), Gone> {
        let taken = ConnFlags::ACTIVE.0 | ConnFlags::NO_OUTPUT.0;
        self.update(handle, |_, old, _| {
            let new = ConnFlags((old.0 & !taken) | (flags.0 & taken));
            (state, new, deadline, 0, (old, new))
        })
    }

    /// Binds a synced connection ([`ConnFlags::SYNCED`]) to this director:
    /// clears the flag and returns the flags it had when it was cleared
    /// (their ACTIVE says which real-server counter it joins now) to the
    /// one caller that cleared it; `None` to every other (already bound).
    /// Every activity change reported afterwards is relative to those
    /// flags.
    ///
    /// # Errors
    /// [`Gone`] when the connection was removed.
    pub fn adopt(&self, handle: ConnHandle) -> Result<Option<ConnFlags>, Gone> {
        self.update(handle, |state, flags, deadline| {
            if flags.contains(ConnFlags::SYNCED) {
                let bound = ConnFlags(flags.0 & !ConnFlags::SYNCED.0);
                (state, bound, deadline, 0, Some(flags))
            } else {
                // Unchanged, and a slack of 1 leaves the word unwritten.
                (state, flags, deadline, 1, None)
            }
        })
    }

    /// A resumable walk over the table (the state sync's full transfer and
    /// refresh): calls `f` with every live connection (templates included)
    /// among the entries `from..from + budget`, each read consistently as
    /// [`ConnTable::for_each`] reads them, stopping early after a
    /// connection for which `f` breaks. Returns where the next call
    /// starts, or `None` once the end of the table was examined. Entries
    /// inserted or removed while a walk goes on may or may not be seen;
    /// every connection live throughout the walk is seen exactly once (a
    /// connection keeps its entry for its whole life). A budget of 0
    /// counts as 1, so that a loop of walks always ends.
    pub fn walk(
        &self,
        from: usize,
        budget: usize,
        mut f: impl FnMut(&Connection) -> core::ops::ControlFlow<()>,
    ) -> Option<usize> {
        let n = self.entries.len();
        let end = from.saturating_add(budget.max(1)).min(n);
        let mut idx = from.min(end);
        while idx < end {
            let here = idx;
            idx += 1;
            if let Some(raw) = self.read(here)
                && f(&Self::decode(here, &raw)).is_break()
            {
                break;
            }
        }
        (idx < n).then_some(idx)
    }

    /// Unlinks a claimed entry from both indexes and frees it.
    fn reclaim(&self, idx: usize, life: u64) -> Connection {
        let e = &self.entries[idx].0;
        let mut w = self.load_words(idx);
        w[W_LIFE] = life;
        let raw = Raw { w };
        let conn = Self::decode(idx, &raw);
        let (h_in, h_reply) = self.entry_hashes(&raw.w);
        self.inbound.remove(h_in, idx);
        // A connection still pending has no reply slot of its own yet:
        // `finish_replies` sees it died and takes back the one it adds.
        if conn.method.sees_replies() && !conn.is_template() && life & LIFE_REPLY_PENDING == 0 {
            self.reply.remove(h_reply, idx);
        }
        // Not live any more, generation kept (the next insert bumps it).
        e[E_LIFE].store(life & (GEN_MASK << GEN_SHIFT), Ordering::Release);
        self.push_free(idx);
        self.live.fetch_sub(1, Ordering::Relaxed);
        conn
    }

    /// Removes a connection now, expired or not (the kernel's connection
    /// reuse on a SYN in TIME_WAIT/CLOSE, or a one-packet connection). The
    /// returned copy says which counter the caller must decrement.
    pub fn remove(&self, handle: ConnHandle) -> Option<Connection> {
        let idx = handle.index as usize;
        let word = &self.entries.get(idx)?.0[E_LIFE];
        let mut life = word.load(Ordering::Acquire);
        loop {
            if !life_visible(life) || life_gen(life) != handle.gen_ {
                return None;
            }
            match word.compare_exchange_weak(
                life,
                life | LIFE_DYING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.reclaim(idx, life)),
                Err(l) => life = l,
            }
        }
    }

    /// The incremental sweeper: examines the next `budget` entries (from a
    /// cursor shared by all callers, wrapping around) and reclaims those
    /// whose deadline is at or before `now`, calling `on_expired` for each
    /// after it left both indexes (unbind it from its real server there).
    /// Returns how many were reclaimed. Never blocks other threads; a
    /// packet that re-arms a connection concurrently wins or loses cleanly
    /// (compare-and-swap on the life word).
    pub fn expire(
        &self,
        now: Millis,
        budget: usize,
        mut on_expired: impl FnMut(&Connection),
    ) -> usize {
        let n = self.entries.len();
        if n == 0 {
            return 0;
        }
        let budget = budget.min(n);
        let start = self.sweep_cursor.fetch_add(budget, Ordering::Relaxed) % n;
        let mut reclaimed = 0;
        for i in 0..budget {
            let idx = (start + i) % n;
            let word = &self.entries[idx].0[E_LIFE];
            let life = word.load(Ordering::Acquire);
            if life_visible(life)
                && life_deadline(life) <= now
                && word
                    .compare_exchange(life, life | LIFE_DYING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                let conn = self.reclaim(idx, life);
                on_expired(&conn);
                reclaimed += 1;
            }
        }
        reclaimed
    }
}

#[cfg(test)]
mod tests {

    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::conn::state::{ActivityChange, TcpEvent};

    /// Seeded randomness for tests (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(last: u16) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
    }

    fn conn(client: IpAddr, cport: u16, method: ForwardMethod) -> NewConnection {
        let (vip, rs) = if client.is_ipv6() {
            (v6(0x10), v6(0x11))
        } else {
            (v4(203, 0, 113, 10), v4(192, 0, 2, 11))
        };
        NewConnection {
            proto: IpProtocol::Tcp,
            client,
            cport,
            vip,
            vport: 80,
            real_server: rs,
            rport: 8080,
            server_id: 7,
            method,
            template: false,
        }
    }

    fn inbound_key(c: &NewConnection) -> FlowKey {
        FlowKey {
            proto: c.proto,
            src: c.client,
            dst: c.vip,
            sport: c.cport,
            dport: c.vport,
        }
    }

    fn reply_key(c: &NewConnection) -> FlowKey {
        FlowKey {
            proto: c.proto,
            src: c.real_server,
            dst: c.client,
            sport: c.rport,
            dport: c.cport,
        }
    }

    /// The high word of an IPv6 real server's address lives outside the
    /// entry: it must come back with the connection, stop mattering when
    /// the entry is reused for an IPv4 server, and tell apart two IPv6
    /// servers that differ only there.
    #[test]
    fn ipv6_real_servers_keep_their_whole_address_through_reuse() {
        let t = ConnTable::new(1, 23);
        let mut c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::Nat);
        c.real_server = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 0x11));
        let h = t.insert(&c, 0, 1_000).unwrap();
        assert_eq!(t.get(h).unwrap().real_server, c.real_server);
        assert_eq!(t.lookup_reply(&reply_key(&c), 0).unwrap().handle, h);
        let mut other = reply_key(&c);
        other.src = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, 0x11));
        assert!(
            t.lookup_reply(&other, 0).is_none(),
            "differs in the high word only"
        );
        t.remove(h).unwrap();
        let v4_server = conn(v4(198, 51, 100, 7), 40001, ForwardMethod::Nat);
        let h = t.insert(&v4_server, 0, 1_000).unwrap();
        assert_eq!(t.get(h).unwrap().real_server, v4_server.real_server);
        assert_eq!(t.lookup_reply(&reply_key(&v4_server), 0).unwrap().handle, h);
        assert!(t.lookup_reply(&reply_key(&c), 0).is_none());
    }

    #[test]
    fn nat_connection_is_found_both_ways_with_every_field() {
        for client in [v4(198, 51, 100, 7), v6(0x7)] {
            let t = ConnTable::new(16, 1);
            let c = conn(client, 40000, ForwardMethod::Nat);
            let h = t.insert(&c, 1_000, 2_000).unwrap();
            let got = t.lookup_inbound(&inbound_key(&c), 1_500).unwrap();
            assert_eq!(got.handle, h);
            assert_eq!(
                (got.proto, got.client, got.cport, got.vip, got.vport),
                (c.proto, c.client, c.cport, c.vip, c.vport)
            );
            assert_eq!(
                (got.real_server, got.rport, got.server_id),
                (c.real_server, 8080, 7)
            );
            assert_eq!(got.method, ForwardMethod::Nat);
            assert_eq!(got.tcp_state, TcpState::None);
            assert_eq!(got.flags, ConnFlags::EMPTY);
            assert_eq!(got.deadline, 3_000);
            assert_eq!(t.lookup_reply(&reply_key(&c), 1_500).unwrap().handle, h);
            // Neither direction matches the other's key.
            assert!(t.lookup_inbound(&reply_key(&c), 1_500).is_none());
            assert!(t.lookup_reply(&inbound_key(&c), 1_500).is_none());
            // Every key field matters.
            let mut k = inbound_key(&c);
            k.sport += 1;
            assert!(t.lookup_inbound(&k, 1_500).is_none());
            let mut k = inbound_key(&c);
            k.dport += 1;
            assert!(t.lookup_inbound(&k, 1_500).is_none());
            let mut k = inbound_key(&c);
            k.proto = IpProtocol::Udp;
            assert!(t.lookup_inbound(&k, 1_500).is_none());
            assert_eq!(t.len(), 1);
        }
    }

    #[test]
    fn batch_lookups_answer_like_single_lookups() {
        let t = ConnTable::new(256, 17);
        let conns: Vec<_> = (0..40u16)
            .map(|p| {
                conn(
                    if p % 2 == 0 {
                        v4(198, 51, 100, 7)
                    } else {
                        v6(7)
                    },
                    p,
                    ForwardMethod::Nat,
                )
            })
            .collect();
        for c in conns.iter().step_by(3) {
            t.insert(c, 0, 1_000).unwrap();
        }
        let inbound: Vec<_> = conns.iter().map(inbound_key).collect();
        let reply: Vec<_> = conns.iter().map(reply_key).collect();
        let mut out = vec![None; conns.len()];
        t.lookup_inbound_batch(&inbound, 5, &mut out);
        for (k, o) in inbound.iter().zip(&out) {
            assert_eq!(*o, t.lookup_inbound(k, 5));
        }
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 14);
        let mut out = vec![None; conns.len()];
        t.lookup_reply_batch(&reply, 5, &mut out);
        for (k, o) in reply.iter().zip(&out) {
            assert_eq!(*o, t.lookup_reply(k, 5));
        }
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 14);
    }

    #[test]
    fn ipv4_and_v4_mapped_ipv6_are_different_clients() {
        let t = ConnTable::new(16, 2);
        let c = conn(v4(198, 51, 100, 7), 1, ForwardMethod::Nat);
        t.insert(&c, 0, 1_000).unwrap();
        let mut k = inbound_key(&c);
        k.src = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
        k.dst = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 10).to_ipv6_mapped());
        assert!(t.lookup_inbound(&k, 0).is_none());
    }

    #[test]
    fn dr_and_tun_connections_have_no_reply_entry_and_start_no_output() {
        for method in [ForwardMethod::DirectRouting, ForwardMethod::Tunnel] {
            let t = ConnTable::new(16, 3);
            let mut c = conn(v4(198, 51, 100, 7), 40000, method);
            c.rport = 80;
            t.insert(&c, 0, 1_000).unwrap();
            let got = t.lookup_inbound(&inbound_key(&c), 0).unwrap();
            assert_eq!(got.method, method);
            assert!(got.flags.contains(ConnFlags::NO_OUTPUT));
            assert!(t.lookup_reply(&reply_key(&c), 0).is_none());
        }
    }

    #[test]
    fn templates_are_seen_only_as_templates() {
        let t = ConnTable::new(16, 4);
        let mut tpl = conn(v4(198, 51, 100, 0), 0, ForwardMethod::Nat);
        tpl.template = true;
        let h = t.insert(&tpl, 0, 360_000).unwrap();
        let key = inbound_key(&tpl);
        assert!(t.lookup_inbound(&key, 0).is_none());
        let got = t.lookup_template(&key, 0).unwrap();
        assert_eq!(got.handle, h);
        assert!(got.is_template());
        assert!(!got.flags.contains(ConnFlags::NO_OUTPUT));
        assert!(t.lookup_reply(&reply_key(&tpl), 0).is_none());
        // A connection with the same key is a different entry.
        let real = conn(v4(198, 51, 100, 0), 0, ForwardMethod::Nat);
        let hc = t.insert(&real, 0, 1_000).unwrap();
        assert_eq!(t.lookup_inbound(&key, 0).unwrap().handle, hc);
        assert_eq!(t.lookup_template(&key, 0).unwrap().handle, h);
    }

    #[test]
    fn expired_connections_vanish_at_once_and_are_reclaimed_by_the_sweeper() {
        let t = ConnTable::new(8, 5);
        let c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::Nat);
        let h = t.insert(&c, 1_000, 2_000).unwrap();
        assert!(t.lookup_inbound(&inbound_key(&c), 2_999).is_some());
        assert!(t.lookup_inbound(&inbound_key(&c), 3_000).is_none());
        assert!(t.lookup_reply(&reply_key(&c), 3_000).is_none());
        assert_eq!(t.len(), 1, "lazy: still holds its entry");
        // Not yet due: the sweeper leaves it.
        assert_eq!(t.expire(2_999, 8, |_| panic!("not due")), 0);
        let mut seen = Vec::new();
        assert_eq!(t.expire(3_000, 8, |c| seen.push(*c)), 1);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].handle, h);
        assert!(t.is_empty());
        assert!(t.get(h).is_none());
        assert_eq!(t.on_packet(h, PacketDirection::FromClient, 0, 1), Err(Gone));
    }

    #[test]
    fn the_sweeper_examines_only_its_budget_and_walks_on() {
        let t = ConnTable::new(8, 6);
        for p in 0..8 {
            t.insert(&conn(v4(198, 51, 100, 7), p, ForwardMethod::Nat), 0, 10)
                .unwrap();
        }
        assert_eq!(t.expire(10, 3, |_| {}), 3);
        assert_eq!(t.len(), 5);
        assert_eq!(t.expire(10, 3, |_| {}), 3);
        assert_eq!(t.expire(10, 3, |_| {}), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_and_counts_without_evicting() {
        let t = ConnTable::new(4, 7);
        let mut handles = Vec::new();
        for p in 0..4 {
            let h = t.insert(
                &conn(v4(198, 51, 100, 7), p, ForwardMethod::Nat),
                0,
                900_000,
            );
            handles.push(h.unwrap());
        }
        let syn = conn(v4(198, 51, 100, 66), 5, ForwardMethod::Nat);
        for _ in 0..3 {
            assert_eq!(t.insert(&syn, 10, 60_000), Err(InsertError::Full));
        }
        assert_eq!(t.refused_full(), 3);
        for h in handles {
            assert!(t.get(h).is_some(), "an existing connection was evicted");
        }
        // One reclaimed entry makes room again.
        let first = conn(v4(198, 51, 100, 7), 0, ForwardMethod::Nat);
        let h = t.lookup_inbound(&inbound_key(&first), 0).unwrap().handle;
        t.remove(h).unwrap();
        assert!(t.insert(&syn, 10, 60_000).is_ok());
        let empty = ConnTable::new(0, 0);
        assert_eq!(empty.insert(&syn, 0, 1), Err(InsertError::Full));
        assert_eq!(empty.expire(0, 10, |_| {}), 0);
    }

    #[test]
    fn tcp_segments_run_the_state_machine_and_report_activity_once() {
        let t = ConnTable::new(8, 8);
        let timeouts = Timeouts::default();
        let c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::Nat);
        let h = t.insert(&c, 0, 3_000).unwrap();
        let tr = t
            .on_tcp_segment(h, PacketDirection::FromClient, TcpEvent::Syn, 10, &timeouts)
            .unwrap();
        assert_eq!(
            (tr.to, tr.activity),
            (TcpState::SynRecv, ActivityChange::BecameActive)
        );
        let got = t.get(h).unwrap();
        assert!(got.is_active());
        assert_eq!(got.deadline, 10 + 60_000);
        let tr = t
            .on_tcp_segment(h, PacketDirection::FromClient, TcpEvent::Ack, 20, &timeouts)
            .unwrap();
        assert_eq!(
            (tr.to, tr.activity),
            (TcpState::Established, ActivityChange::Unchanged)
        );
        assert_eq!(t.get(h).unwrap().deadline, 20 + 900_000);
        let tr = t
            .on_tcp_segment(h, PacketDirection::FromClient, TcpEvent::Rst, 30, &timeouts)
            .unwrap();
        assert_eq!(
            (tr.to, tr.activity),
            (TcpState::Close, ActivityChange::BecameInactive)
        );
        let got = t.get(h).unwrap();
        assert!(!got.is_active());
        assert_eq!(got.deadline, 30 + 10_000);
        assert_eq!(got.tcp_state, TcpState::Close);
    }

    #[test]
    fn open_publishes_what_insert_then_the_first_packet_would() {
        let timeouts = Timeouts::default();
        let events = [
            TcpEvent::Syn,
            TcpEvent::Ack,
            TcpEvent::Fin,
            TcpEvent::Rst,
            TcpEvent::NoFlags,
        ];
        let methods = [
            ForwardMethod::Nat,
            ForwardMethod::DirectRouting,
            ForwardMethod::Tunnel,
        ];
        for (i, (event, method)) in events
            .iter()
            .flat_map(|e| methods.iter().map(move |m| (*e, *m)))
            .enumerate()
        {
            let (two_step, one_step) = (ConnTable::new(4, 21), ConnTable::new(4, 21));
            let c = conn(v4(198, 51, 100, 7), 40000 + i as u16, method);
            let h = two_step.insert(&c, 5, 2_000).unwrap();
            let tr = two_step
                .on_tcp_segment(h, PacketDirection::FromClient, event, 5, &timeouts)
                .unwrap();
            let (opened, activity) = one_step
                .open(&c, 5, FirstPacket::Tcp(event, &timeouts))
                .unwrap();
            let what = format!("{event:?} over {method:?}");
            assert_eq!(activity, tr.activity, "{what}");
            let stored = one_step.get(opened.handle).unwrap();
            assert_eq!(
                stored, opened,
                "{what}: the returned copy is what was stored"
            );
            let expected = two_step.get(h).unwrap();
            assert_eq!(
                (stored.tcp_state, stored.flags, stored.deadline),
                (expected.tcp_state, expected.flags, expected.deadline),
                "{what}"
            );
            let key = FlowKey {
                proto: c.proto,
                src: c.client,
                sport: c.cport,
                dst: c.vip,
                dport: c.vport,
            };
            assert_eq!(one_step.lookup_inbound(&key, 6), Some(stored), "{what}");
        }
        let mut udp = conn(v4(198, 51, 100, 8), 5353, ForwardMethod::Nat);
        udp.proto = IpProtocol::Udp;
        let t = ConnTable::new(4, 22);
        let (opened, activity) = t
            .open(&udp, 7, FirstPacket::Other { timeout: 300_000 })
            .unwrap();
        assert_eq!(activity, ActivityChange::Unchanged);
        assert_eq!(
            (opened.tcp_state, opened.deadline, opened.is_active()),
            (TcpState::None, 300_007, false)
        );
        assert_eq!(t.get(opened.handle), Some(opened));
    }

    /// An ACK on an established connection takes a read-only shortcut
    /// when nothing but a timer within its slack would change; it must
    /// answer exactly as the state machine does, and step aside when the
    /// timer is due or a first reply must clear NO_OUTPUT.
    #[test]
    fn established_acks_agree_with_the_state_machine() {
        use PacketDirection::{FromClient, FromServer};
        let timeouts = Timeouts::default();
        let es = timeouts.tcp_ms(TcpState::Established);
        for method in [ForwardMethod::Nat, ForwardMethod::DirectRouting] {
            let t = ConnTable::new(4, 24);
            let c = conn(v4(198, 51, 100, 7), 40000, method);
            let (opened, _) = t
                .open(&c, 0, FirstPacket::Tcp(TcpEvent::Syn, &timeouts))
                .unwrap();
            let h = opened.handle;
            let segment =
                |direction, event, now| t.on_tcp_segment(h, direction, event, now, &timeouts);
            let tr = segment(FromClient, TcpEvent::Ack, 10).unwrap();
            assert_eq!(tr.to, TcpState::Established, "{method:?}");
            assert_eq!(t.get(h).unwrap().deadline, 10 + es);
            // Within the slack: same answer, nothing written.
            let tr = segment(FromClient, TcpEvent::Ack, 500).unwrap();
            assert_eq!(
                tr,
                Transition {
                    from: TcpState::Established,
                    to: TcpState::Established,
                    activity: ActivityChange::Unchanged,
                    first_reply: false,
                }
            );
            assert_eq!(t.get(h).unwrap().deadline, 10 + es);
            // Past the slack: the timer moves.
            segment(FromClient, TcpEvent::Ack, 1_011).unwrap();
            assert_eq!(t.get(h).unwrap().deadline, 1_011 + es);
            // A server's ACK: a first reply on DR clears NO_OUTPUT even
            // within the slack; on NAT it is just another ACK.
            let tr = segment(FromServer, TcpEvent::Ack, 1_012).unwrap();
            let got = t.get(h).unwrap();
            assert_eq!(tr.first_reply, method == ForwardMethod::DirectRouting);
            assert!(!got.flags.contains(ConnFlags::NO_OUTPUT));
            assert_eq!(got.tcp_state, TcpState::Established);
            // A FIN is never an established ACK.
            let tr = segment(FromClient, TcpEvent::Fin, 1_013).unwrap();
            assert_ne!(tr.to, TcpState::Established, "{method:?}");
            // Nor is a stale handle.
            t.remove(h).unwrap();
            assert_eq!(segment(FromClient, TcpEvent::Ack, 1_014), Err(Gone));
        }
    }

    /// A NAT connection opened with its reply link deferred is found by
    /// its client at once and as a reply once finished; an update while
    /// pending keeps it pending; one removed, or expired and its entry
    /// reused, before the finish leaves no slot behind.
    #[test]
    fn deferred_reply_links_are_added_once_and_never_leak() {
        let timeouts = Timeouts::default();
        let syn = FirstPacket::Tcp(TcpEvent::Syn, &timeouts);
        let t = ConnTable::new(8, 25);
        let open = |c: &NewConnection, now| {
            t.open_hashed(c, t.inbound_hash(&inbound_key(c)), now, syn, true)
                .unwrap()
        };
        let a = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::Nat);
        let (opened, _, pending) = open(&a, 0);
        let pending = pending.expect("a NAT connection defers its reply link");
        assert_eq!(
            t.lookup_inbound(&inbound_key(&a), 1).map(|c| c.handle),
            Some(opened.handle)
        );
        assert!(t.lookup_reply(&reply_key(&a), 1).is_none());
        assert_eq!(t.reply.used(), 0);
        // SYN_RECV → ESTABLISHED rewrites the life word: still pending.
        let tr = t
            .on_tcp_segment(
                opened.handle,
                PacketDirection::FromClient,
                TcpEvent::Ack,
                2,
                &timeouts,
            )
            .unwrap();
        assert_eq!(tr.to, TcpState::Established);
        t.finish_replies(&[pending]);
        assert_eq!(
            t.lookup_reply(&reply_key(&a), 3).map(|c| c.handle),
            Some(opened.handle)
        );
        assert_eq!(t.reply.used(), 1);
        t.remove(opened.handle).unwrap();
        assert_eq!((t.inbound.used(), t.reply.used()), (0, 0));

        // Removed before the finish.
        let (opened, _, pending) = open(&a, 10);
        t.remove(opened.handle).unwrap();
        t.finish_replies(&[pending.unwrap()]);
        assert_eq!((t.inbound.used(), t.reply.used()), (0, 0));

        // Expired and reclaimed by the sweeper, the entry taken by another
        // connection, then the finish.
        let (_, _, pending) = open(&a, 20);
        assert_eq!(t.expire(20 + 61_000, 8, |_| {}), 1);
        let b = conn(v4(198, 51, 100, 8), 40001, ForwardMethod::Nat);
        let hb = t.insert(&b, 61_020, 5_000).unwrap();
        t.finish_replies(&[pending.unwrap()]);
        assert_eq!(t.reply.used(), 1, "only b's own link");
        assert_eq!(t.lookup_reply(&reply_key(&b), 61_021).unwrap().handle, hb);
        assert!(t.lookup_reply(&reply_key(&a), 61_021).is_none());
        t.remove(hb).unwrap();
        assert_eq!((t.inbound.used(), t.reply.used()), (0, 0));

        // Nothing to defer: DR sees no replies; a plain open links at once.
        let dr = conn(v4(198, 51, 100, 9), 40002, ForwardMethod::DirectRouting);
        assert!(open(&dr, 30).2.is_none());
        let (plain, _) = t.open(&b, 30, syn).unwrap();
        assert_eq!(
            t.lookup_reply(&reply_key(&b), 31).unwrap().handle,
            plain.handle
        );
    }

    #[test]
    fn a_reply_clears_no_output_on_dr() {
        let t = ConnTable::new(8, 9);
        let c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::DirectRouting);
        let h = t.insert(&c, 0, 3_000).unwrap();
        let timeouts = Timeouts::default();
        let tr = t
            .on_tcp_segment(h, PacketDirection::FromServer, TcpEvent::Ack, 1, &timeouts)
            .unwrap();
        assert!(tr.first_reply);
        assert!(!t.get(h).unwrap().flags.contains(ConnFlags::NO_OUTPUT));
        let u = ConnTable::new(8, 9);
        let h = u.insert(&c, 0, 3_000).unwrap();
        u.on_packet(h, PacketDirection::FromServer, 5, 300_000)
            .unwrap();
        let got = u.get(h).unwrap();
        assert!(!got.flags.contains(ConnFlags::NO_OUTPUT));
        assert_eq!(got.deadline, 300_005);
        u.set_deadline(h, 42).unwrap();
        assert_eq!(u.get(h).unwrap().deadline, 42);
    }

    #[test]
    fn a_stale_handle_cannot_touch_the_slots_next_connection() {
        let t = ConnTable::new(1, 10);
        let a = conn(v4(198, 51, 100, 7), 1, ForwardMethod::Nat);
        let ha = t.insert(&a, 0, 1_000).unwrap();
        assert!(t.remove(ha).is_some());
        assert!(t.remove(ha).is_none(), "removed twice");
        let b = conn(v4(198, 51, 100, 8), 2, ForwardMethod::Nat);
        let hb = t.insert(&b, 0, 1_000).unwrap();
        assert_eq!(ha.index(), hb.index(), "capacity 1 reuses the slot");
        assert_ne!(ha, hb);
        assert!(t.get(ha).is_none());
        assert_eq!(t.set_deadline(ha, 5), Err(Gone));
        assert!(t.remove(ha).is_none());
        assert_eq!(t.get(hb).unwrap().deadline, 1_000);
        assert!(t.lookup_inbound(&inbound_key(&a), 0).is_none());
    }

    #[test]
    fn synced_connections_are_found_both_ways_and_adopted_once() {
        let t = ConnTable::new(16, 3);
        let c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::Nat);
        let h = t
            .insert_synced(
                &c,
                TcpState::Established,
                ConnFlags::ACTIVE.union(ConnFlags::TEMPLATE),
                5000,
            )
            .unwrap();
        let found = t.lookup_inbound(&inbound_key(&c), 1000).unwrap();
        assert_eq!(found, t.lookup_reply(&reply_key(&c), 1000).unwrap());
        assert_eq!(found.handle, h);
        assert_eq!(found.tcp_state, TcpState::Established);
        assert_eq!(found.deadline, 5000);
        assert!(found.is_synced() && found.is_active());
        assert!(
            !found.is_template(),
            "the template flag is the key's, not the caller's"
        );
        // Without a TCP segment (UDP, ICMP), adopt clears the flag.
        let before = t.adopt(h).unwrap().expect("the first adopter");
        assert!(before.contains(ConnFlags::SYNCED) && before.contains(ConnFlags::ACTIVE));
        assert_eq!(t.adopt(h), Ok(None), "adopted once");
        assert!(!t.get(h).unwrap().is_synced());
        t.remove(h).unwrap();
        assert_eq!(t.adopt(h), Err(Gone));
        // A TCP connection's first segment adopts it, whatever the state
        // machine does: an established connection's ACK too (not the fast
        // path).
        let timeouts = Timeouts::default();
        for (event, active) in [(TcpEvent::Ack, true), (TcpEvent::Fin, false)] {
            let c = conn(v4(198, 51, 100, 8), 40000, ForwardMethod::Nat);
            let h = t
                .insert_synced(&c, TcpState::Established, ConnFlags::ACTIVE, 5000)
                .unwrap();
            let segment = |now| {
                t.on_tcp_segment(h, PacketDirection::FromClient, event, now, &timeouts)
                    .unwrap()
            };
            let tr = segment(2000);
            assert_eq!(tr.activity, ActivityChange::adopted(active), "{event:?}");
            assert!(!t.get(h).unwrap().is_synced());
            assert_ne!(
                segment(2001).activity,
                ActivityChange::adopted(active),
                "once"
            );
            assert_eq!(t.adopt(h), Ok(None));
            t.remove(h).unwrap();
        }
    }

    #[test]
    fn concurrent_adopters_bind_each_synced_connection_once() {
        let t = ConnTable::new(512, 3);
        let handles: Vec<ConnHandle> = (0..500u16)
            .map(|i| {
                let c = conn(v4(198, 51, 100, 7), 1000 + i, ForwardMethod::DirectRouting);
                t.insert_synced(&c, TcpState::Established, ConnFlags::ACTIVE, 9000)
                    .unwrap()
            })
            .collect();
        let wins: Vec<usize> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        handles
                            .iter()
                            .filter(|&&h| t.adopt(h).unwrap().is_some())
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().sum::<usize>(), handles.len(), "{wins:?}");
    }

    #[test]
    fn a_sync_update_sets_state_flags_and_timer_and_says_what_changed() {
        let t = ConnTable::new(16, 3);
        let c = conn(v4(198, 51, 100, 7), 40000, ForwardMethod::DirectRouting);
        let (h, _) = t
            .open(
                &c,
                1000,
                FirstPacket::Tcp(TcpEvent::Syn, &Timeouts::default()),
            )
            .map(|(c, a)| (c.handle, a))
            .unwrap();
        let (was, is) = t
            .sync_update(h, TcpState::FinWait, ConnFlags::NO_OUTPUT, 77_000)
            .unwrap();
        assert!(was.contains(ConnFlags::ACTIVE) && !is.contains(ConnFlags::ACTIVE));
        assert!(
            !is.contains(ConnFlags::SYNCED),
            "a bound connection stays bound"
        );
        let got = t.get(h).unwrap();
        assert_eq!((got.tcp_state, got.deadline), (TcpState::FinWait, 77_000));
        assert!(got.flags.contains(ConnFlags::NO_OUTPUT));
    }

    #[test]
    fn a_walk_in_chunks_sees_every_live_connection_once() {
        let t = ConnTable::new(100, 3);
        let mut live = std::collections::HashSet::new();
        for i in 0..90u16 {
            let c = conn(v4(198, 51, 100, 7), 2000 + i, ForwardMethod::Nat);
            let h = t.insert(&c, 0, 1000).unwrap();
            if i % 3 == 0 {
                t.remove(h).unwrap();
            } else {
                live.insert(h);
            }
        }
        let mut seen = Vec::new();
        let mut cursor = Some(0);
        while let Some(from) = cursor {
            let mut taken = 0;
            cursor = t.walk(from, 7, |c| {
                seen.push(c.handle);
                taken += 1;
                if taken == 3 {
                    core::ops::ControlFlow::Break(())
                } else {
                    core::ops::ControlFlow::Continue(())
                }
            });
            assert!(taken <= 3);
        }
        assert_eq!(seen.len(), live.len(), "each once");
        assert_eq!(
            seen.into_iter().collect::<std::collections::HashSet<_>>(),
            live
        );
        assert_eq!(
            t.walk(100, 5, |_| core::ops::ControlFlow::Continue(())),
            None
        );
        // A budget of 0 still moves on, so a loop of walks ends.
        assert_eq!(
            t.walk(0, 0, |_| core::ops::ControlFlow::Continue(())),
            Some(1)
        );
    }

    #[test]
    fn memory_per_entry_meets_the_target() {
        let t = ConnTable::new(1 << 16, 11);
        // One cache line per entry, so a lookup's entry read is one line.
        assert_eq!((size_of::<Entry>(), align_of::<Entry>()), (64, 64));
        assert_eq!(size_of::<Bucket>(), 64);
        assert!(
            (t.bytes_per_entry() - 104.0).abs() < 0.01,
            "{}",
            t.bytes_per_entry()
        );
        assert!(ConnTable::new(1_000_003, 0).bytes_per_entry() <= 128.0);
    }

    /// Fills a table to capacity so that buckets overflow, then removes
    /// every other connection: the overflow counts must keep every
    /// remaining connection reachable and fall back to zero at the end.
    #[test]
    fn overflowing_buckets_stay_reachable_through_removals() {
        let cap = 4096;
        let t = ConnTable::new(cap, 12);
        let conns: Vec<_> = (0..cap)
            .map(|i| {
                conn(
                    v4(10, (i >> 8) as u8, i as u8, 1),
                    i as u16,
                    ForwardMethod::Nat,
                )
            })
            .collect();
        let handles: Vec<_> = conns
            .iter()
            .map(|c| t.insert(c, 0, 1_000).unwrap())
            .collect();
        let overflowed = t
            .inbound
            .buckets
            .iter()
            .filter(|b| b.overflow.load(Ordering::Relaxed) > 0)
            .count();
        assert!(overflowed > 0, "the test must exercise overflow");
        for (i, h) in handles.iter().enumerate() {
            if i % 2 == 0 {
                t.remove(*h).unwrap();
            }
        }
        for (i, c) in conns.iter().enumerate() {
            assert_eq!(
                t.lookup_inbound(&inbound_key(c), 0).is_some(),
                i % 2 == 1,
                "{i}"
            );
            assert_eq!(
                t.lookup_reply(&reply_key(c), 0).is_some(),
                i % 2 == 1,
                "{i}"
            );
        }
        assert_eq!(t.expire(1_000, cap as usize, |_| {}), cap as usize / 2);
        for index in [&t.inbound, &t.reply] {
            for b in index.buckets.iter() {
                assert_eq!(b.overflow.load(Ordering::Relaxed), 0);
                for s in &b.slots {
                    assert_eq!(s.load(Ordering::Relaxed), 0);
                }
            }
        }
    }

    /// Readers on two threads look up while a writer inserts, updates and
    /// removes: every connection a reader gets back must be the one it
    /// asked for (real server id derived from the key), never a torn mix.
    #[test]
    fn concurrent_readers_never_see_torn_or_foreign_entries() {
        let t = ConnTable::new(512, 13);
        let stop = AtomicBool::new(false);
        let make = |i: u64| {
            let mut c = conn(
                v4(10, 0, (i >> 8) as u8, i as u8),
                (i % 7) as u16 + 1,
                ForwardMethod::Nat,
            );
            c.server_id = (i * 31 + 5) as u32;
            c.rport = (i % 1000) as u16;
            c
        };
        std::thread::scope(|s| {
            for r in 0..2 {
                let (t, stop) = (&t, &stop);
                s.spawn(move || {
                    let mut rng = Rng(r);
                    let mut found = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let i = rng.below(2048);
                        let c = make(i);
                        if let Some(got) = t.lookup_inbound(&inbound_key(&c), 0) {
                            assert_eq!(got.server_id, c.server_id);
                            assert_eq!((got.client, got.cport), (c.client, c.cport));
                            assert_eq!(got.rport, c.rport);
                            found += 1;
                        }
                        if let Some(got) = t.lookup_reply(&reply_key(&c), 0) {
                            assert_eq!(got.server_id, c.server_id);
                        }
                    }
                    assert!(found > 0);
                });
            }
            let mut rng = Rng(99);
            let mut live: Vec<ConnHandle> = Vec::new();
            for _ in 0..200_000 {
                if live.len() < 400 && rng.below(2) == 0 {
                    if let Ok(h) = t.insert(&make(rng.below(2048)), 0, 1_000_000) {
                        live.push(h);
                    }
                } else if !live.is_empty() {
                    let h = live.swap_remove(rng.below(live.len() as u64) as usize);
                    t.remove(h).unwrap();
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    /// Two threads insert and remove at once: the free list and the
    /// indexes must come out whole.
    #[test]
    fn concurrent_writers_keep_free_list_and_indexes_whole() {
        let cap = 1024u32;
        let t = ConnTable::new(cap, 14);
        std::thread::scope(|s| {
            for w in 0..2u16 {
                let t = &t;
                s.spawn(move || {
                    let mut rng = Rng(u64::from(w));
                    let mut mine = Vec::new();
                    for i in 0..100_000u32 {
                        if mine.len() < 400 && rng.below(3) != 0 {
                            let c = conn(v4(10, w as u8, 0, 1), i as u16, ForwardMethod::Nat);
                            mine.push(t.insert(&c, 0, 1_000).unwrap());
                        } else if let Some(h) = mine.pop() {
                            t.remove(h).unwrap();
                        }
                    }
                    for h in mine {
                        t.remove(h).unwrap();
                    }
                });
            }
        });
        assert!(t.is_empty());
        // Every entry is free exactly once: the table fills to capacity again.
        for i in 0..cap {
            t.insert(&conn(v4(10, 9, 9, 9), i as u16, ForwardMethod::Nat), 0, 1)
                .unwrap();
        }
        assert_eq!(
            t.insert(&conn(v4(1, 1, 1, 1), 1, ForwardMethod::Nat), 0, 1),
            Err(InsertError::Full)
        );
    }

    /// The simulation: 100k random connections across 5 real
    /// servers, TCP and UDP, NAT and DR, opened, driven, closed or left to
    /// time out, with the sweeper running as the control thread would. At
    /// the end no entry is left and every active/inactive counter is 0.
    #[test]
    fn simulation_100k_connections_leave_no_entry_and_zero_counters() {
        const SERVERS: usize = 5;
        let t = ConnTable::new(4_096, 15);
        let timeouts = Timeouts::default();
        let mut rng = Rng(2026);
        let mut active = [0i64; SERVERS];
        let mut inactive = [0i64; SERVERS];
        let mut peak_active = 0i64;
        let mut peak_len = 0usize;
        let mut now: Millis = 0;
        let mut opened = 0u32;
        let mut full = 0u32;
        let mut open: Vec<(ConnHandle, NewConnection)> = Vec::new();
        let apply = |a: &mut [i64; SERVERS], i: &mut [i64; SERVERS], s: usize, ch| match ch {
            ActivityChange::BecameActive => {
                a[s] += 1;
                i[s] -= 1;
            }
            ActivityChange::BecameInactive => {
                a[s] -= 1;
                i[s] += 1;
            }
            ActivityChange::Unchanged => {}
            ActivityChange::AdoptedActive | ActivityChange::AdoptedInactive => {
                panic!("no synced connection in this simulation")
            }
        };
        let unbind = |c: &Connection, a: &mut [i64; SERVERS], i: &mut [i64; SERVERS]| {
            let s = c.server_id as usize;
            if c.is_active() { a[s] -= 1 } else { i[s] -= 1 }
        };
        while opened < 100_000 {
            now += rng.below(40);
            match rng.below(10) {
                0..=3 => {
                    let server = rng.below(SERVERS as u64) as usize;
                    let udp = rng.below(4) == 0;
                    let method = if rng.below(3) == 0 {
                        ForwardMethod::DirectRouting
                    } else {
                        ForwardMethod::Nat
                    };
                    let c = NewConnection {
                        proto: if udp {
                            IpProtocol::Udp
                        } else {
                            IpProtocol::Tcp
                        },
                        client: v4(198, 51, (opened >> 16) as u8, (opened >> 8) as u8),
                        cport: opened as u16,
                        vip: v4(203, 0, 113, 10),
                        vport: 80,
                        real_server: v4(192, 0, 2, 11 + server as u8),
                        rport: 80,
                        server_id: server as u32,
                        method,
                        template: false,
                    };
                    opened += 1;
                    let Ok(h) = t.insert(&c, now, 3_000) else {
                        full += 1;
                        continue;
                    };
                    inactive[server] += 1;
                    if udp {
                        t.on_packet(h, PacketDirection::FromClient, now, timeouts.udp_ms())
                            .unwrap();
                    } else {
                        let tr = t
                            .on_tcp_segment(
                                h,
                                PacketDirection::FromClient,
                                TcpEvent::Syn,
                                now,
                                &timeouts,
                            )
                            .unwrap();
                        apply(&mut active, &mut inactive, server, tr.activity);
                    }
                    open.push((h, c));
                }
                4..=8 if !open.is_empty() => {
                    let k = rng.below(open.len() as u64) as usize;
                    let (h, c) = open[k];
                    let dir = if rng.below(2) == 0 {
                        PacketDirection::FromClient
                    } else {
                        PacketDirection::FromServer
                    };
                    let res = if c.proto == IpProtocol::Udp {
                        t.on_packet(h, dir, now, timeouts.udp_ms())
                            .map(|()| ActivityChange::Unchanged)
                    } else {
                        let event = [
                            TcpEvent::Ack,
                            TcpEvent::Ack,
                            TcpEvent::Fin,
                            TcpEvent::Rst,
                            TcpEvent::Syn,
                        ][rng.below(5) as usize];
                        t.on_tcp_segment(h, dir, event, now, &timeouts)
                            .map(|tr| tr.activity)
                    };
                    match res {
                        Ok(ch) => {
                            apply(&mut active, &mut inactive, c.server_id as usize, ch);
                            // A live, unexpired connection is found by key.
                            let got = t.lookup_inbound(&inbound_key(&c), now).unwrap();
                            assert_eq!(got.handle, h);
                            if c.method == ForwardMethod::Nat {
                                assert_eq!(t.lookup_reply(&reply_key(&c), now).unwrap().handle, h);
                            }
                        }
                        Err(Gone) => {
                            open.swap_remove(k);
                        }
                    }
                }
                _ => {}
            }
            if opened.is_multiple_of(64) {
                t.expire(now, 512, |c| unbind(c, &mut active, &mut inactive));
            }
            peak_active = peak_active.max(active.iter().sum());
            peak_len = peak_len.max(t.len());
            assert!(active.iter().chain(&inactive).all(|&n| n >= 0));
        }
        assert!(
            peak_active > 100,
            "the simulation must hold active connections"
        );
        assert_eq!(peak_len, t.capacity(), "the table must fill up");
        assert!(full > 0, "the simulation must exercise a full table");
        // Let everything time out and sweep the whole table.
        now += 3_600_000;
        let mut rounds = 0;
        while !t.is_empty() {
            t.expire(now, 4096, |c| unbind(c, &mut active, &mut inactive));
            rounds += 1;
            assert!(rounds < 100, "the sweeper must make progress");
        }
        assert_eq!(active, [0; SERVERS]);
        assert_eq!(inactive, [0; SERVERS]);
        assert_eq!(t.len(), 0);
        for (h, _) in open {
            assert!(t.get(h).is_none());
        }
        for index in [&t.inbound, &t.reply] {
            assert!(
                index
                    .buckets
                    .iter()
                    .all(|b| b.overflow.load(Ordering::Relaxed) == 0
                        && b.slots.iter().all(|s| s.load(Ordering::Relaxed) == 0))
            );
        }
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Insert { client: u8, port: u16, timeout: u16 },
            Lookup { client: u8, port: u16 },
            Remove { client: u8, port: u16 },
            Advance(u16),
            Expire(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..4u8, 0..6u16, 1..500u16).prop_map(|(client, port, timeout)| Op::Insert {
                    client,
                    port,
                    timeout
                }),
                (0..4u8, 0..6u16).prop_map(|(client, port)| Op::Lookup { client, port }),
                (0..4u8, 0..6u16).prop_map(|(client, port)| Op::Remove { client, port }),
                (0..300u16).prop_map(Op::Advance),
                (1..20u8).prop_map(Op::Expire),
            ]
        }

        proptest! {
            /// The table against a `HashMap` model: same answers for every
            /// lookup, same refusals, nothing lost through the indexes.
            #[test]
            fn behaves_like_a_map(ops in proptest::collection::vec(op(), 1..200)) {
                let t = ConnTable::new(12, 16);
                let mut model: HashMap<(u8, u16), (ConnHandle, Millis)> = HashMap::new();
                let mut now: Millis = 0;
                let key = |client: u8, port: u16| conn(v4(10, 0, 0, client), port, ForwardMethod::Nat);
                for op in ops {
                    match op {
                        Op::Insert { client, port, timeout } => {
                            let visible = model.get(&(client, port)).is_some_and(|&(_, d)| d > now);
                            if visible { continue; } // the pipeline inserts only after a miss
                            if let Some((h, _)) = model.remove(&(client, port)) {
                                t.remove(h); // an expired duplicate the sweeper has not reached
                            }
                            let in_use = t.len();
                            match t.insert(&key(client, port), now, u64::from(timeout)) {
                                Ok(h) => { model.insert((client, port), (h, now + u64::from(timeout))); }
                                Err(InsertError::Full) => prop_assert_eq!(in_use, 12),
                            }
                        }
                        Op::Lookup { client, port } => {
                            let c = key(client, port);
                            let want = model.get(&(client, port)).filter(|&&(_, d)| d > now).map(|&(h, _)| h);
                            prop_assert_eq!(t.lookup_inbound(&inbound_key(&c), now).map(|c| c.handle), want);
                            prop_assert_eq!(t.lookup_reply(&reply_key(&c), now).map(|c| c.handle), want);
                        }
                        Op::Remove { client, port } => {
                            if let Some((h, _)) = model.remove(&(client, port)) {
                                prop_assert!(t.remove(h).is_some());
                            }
                        }
                        Op::Advance(ms) => now += u64::from(ms),
                        Op::Expire(budget) => {
                            t.expire(now, usize::from(budget), |c| {
                                let k = match c.client { IpAddr::V4(a) => a.octets()[3], IpAddr::V6(_) => 255 };
                                let gone = model.remove(&(k, c.cport));
                                assert!(gone.is_some_and(|(h, d)| h == c.handle && d <= now));
                            });
                        }
                    }
                    prop_assert_eq!(t.len(), model.len());
                }
            }
        }
    }
}
