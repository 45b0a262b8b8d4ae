//! Memory for the big tables: the connection table and its indexes are
//! hundreds of MiB read at random, so on 4 KiB pages nearly every lookup
//! also misses the TLB. Backing them with transparent huge pages (2 MiB)
//! removes most of those misses; the kernel's default THP policy on many
//! distributions is `madvise`, which gives huge pages only to memory that
//! asks for them — this module asks.

use std::mem::MaybeUninit;

const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole-huge-page part of `region` with
/// transparent huge pages. Call it before the memory is first written: the
/// pages are then faulted in as huge pages. Returns whether the kernel
/// agreed; refusing (THP disabled, old kernel) only costs speed.
pub fn advise_huge_pages<T>(region: &mut [MaybeUninit<T>]) -> bool {
    let start = region.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(region);
    let aligned_start = start.next_multiple_of(HUGE_PAGE);
    let aligned_end = end / HUGE_PAGE * HUGE_PAGE;
    if aligned_end <= aligned_start {
        return false;
    }
    // SAFETY: the range lies inside `region`, memory this process owns
    // exclusively (a &mut borrow); MADV_HUGEPAGE changes how it is backed,
    // never its contents or its validity.
    let rc = unsafe {
        libc::madvise(
            aligned_start as *mut libc::c_void,
            aligned_end - aligned_start,
            libc::MADV_HUGEPAGE,
        )
    };
    rc == 0
}

/// A boxed slice of `len` values made by `make`, on huge pages where the
/// kernel allows (see [`advise_huge_pages`]).
pub fn huge_boxed_slice<T>(len: usize, mut make: impl FnMut(usize) -> T) -> Box<[T]> {
    let mut v = Vec::with_capacity(len);
    advise_huge_pages(v.spare_capacity_mut());
    v.extend((0..len).map(&mut make));
    v.into_boxed_slice()
}

/// Starts loading the cache line holding `value` without waiting for it:
/// a hint, never a fault, whatever the address. Lookups in tables larger
/// than the caches issue it for a whole receive burst first, so that the
/// misses overlap and the CPU goes on while they are served (a plain load
/// would hold its place in the reorder buffer until the line arrives).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it never faults and never
    // changes memory, and SSE is part of every x86_64 CPU. The pointer comes
    // from a live reference besides.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            core::ptr::from_ref(value).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_value_in_order() {
        let v = huge_boxed_slice(3 << 20, |i| i as u32);
        assert_eq!(v.len(), 3 << 20);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    }

    #[test]
    fn small_regions_are_left_alone() {
        let mut v: Vec<u8> = Vec::with_capacity(4096);
        assert!(!advise_huge_pages(v.spare_capacity_mut()));
    }
}
