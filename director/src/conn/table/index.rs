//! One index (inbound or reply): 64-byte buckets of seven tagged slots
//! plus an overflow count (see the parent module's layout notes).

use super::*;

pub(super) const SLOTS: usize = 7;
/// Entries per bucket at full capacity: 4 of 7 slots.
pub(super) const ENTRIES_PER_BUCKET: usize = 4;

#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Bucket {
    pub(super) slots: [AtomicU64; SLOTS],
    /// How many entries whose probe passed this bucket sit further on.
    pub(super) overflow: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Index {
    pub(super) buckets: Box<[Bucket]>,
}

#[inline(always)]
pub(super) fn slot_value(hash: u64, idx: usize) -> u64 {
    (hash << 32) | (idx as u64 + 1)
}

impl Index {
    pub(super) fn new(capacity: usize) -> Self {
        let n = capacity.div_ceil(ENTRIES_PER_BUCKET).max(1);
        Self {
            buckets: huge_boxed_slice(n, |_| Bucket::default()),
        }
    }

    #[inline(always)]
    pub(super) fn home(&self, hash: u64) -> usize {
        // Lemire's multiply-shift range reduction: any bucket count, no modulo.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline(always)]
    pub(super) fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    pub(super) fn insert(&self, hash: u64, idx: usize) -> bool {
        let value = slot_value(hash, idx);
        let home = self.home(hash);
        let mut b = home;
        for _ in 0..self.buckets.len() {
            for slot in &self.buckets[b].slots {
                if slot.load(Ordering::Relaxed) == 0
                    && slot
                        .compare_exchange(0, value, Ordering::Release, Ordering::Relaxed)
                        .is_ok()
                {
                    return true;
                }
            }
            // Announce the overflow before the entry appears further on, so
            // that a lookup which sees the entry's absence here goes on.
            self.buckets[b].overflow.fetch_add(1, Ordering::AcqRel);
            b = self.next(b);
        }
        // Every slot taken: impossible while slots outnumber entries, but
        // undo the counts rather than leave them wrong.
        self.unwind_overflow(home, self.buckets.len());
        false
    }

    /// Takes back the overflow counts an entry added on its way from `home`
    /// past `passed` buckets.
    pub(super) fn unwind_overflow(&self, home: usize, passed: usize) {
        let mut b = home;
        for _ in 0..passed {
            self.buckets[b].overflow.fetch_sub(1, Ordering::AcqRel);
            b = self.next(b);
        }
    }

    pub(super) fn remove(&self, hash: u64, idx: usize) -> bool {
        let value = slot_value(hash, idx);
        let home = self.home(hash);
        let mut b = home;
        for passed in 0..self.buckets.len() {
            for slot in &self.buckets[b].slots {
                if slot.load(Ordering::Relaxed) == value
                    && slot
                        .compare_exchange(value, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    self.unwind_overflow(home, passed);
                    return true;
                }
            }
            if self.buckets[b].overflow.load(Ordering::Acquire) == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }

    /// Slots in use (tests: nothing may leak).
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| &b.slots)
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Calls `check` with every entry number whose tag matches, in probe
    /// order, until it returns `Some`.
    #[inline(always)]
    pub(super) fn find<R>(
        &self,
        hash: u64,
        mut check: impl FnMut(usize) -> Option<R>,
    ) -> Option<R> {
        let tag = hash << 32;
        let mut b = self.home(hash);
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            for slot in &bucket.slots {
                let v = slot.load(Ordering::Acquire);
                if v != 0
                    && (v & 0xffff_ffff_0000_0000) == tag
                    && let Some(r) = check((v as u32 - 1) as usize)
                {
                    return Some(r);
                }
            }
            if bucket.overflow.load(Ordering::Acquire) == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }
}
