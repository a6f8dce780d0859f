//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! [`LargestAlloc`] is the global allocator of every target: it records the
//! largest single allocation made while a closure runs, so a target can
//! assert that no length field read from the input made a decoder allocate
//! more than the input (or the configured limit) justifies. libFuzzer's own
//! `-malloc_limit_mb` only catches allocations in the gigabytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Wraps the system allocator, remembering the largest allocation since the
/// last [`LargestAlloc::measure`] began.
pub struct LargestAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the only addition is
// an atomic maximum, which neither allocates nor touches the memory.
unsafe impl GlobalAlloc for LargestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

impl LargestAlloc {
    /// Runs `f` and returns its result with the largest single allocation
    /// (in bytes) made meanwhile. The targets run single-threaded.
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
        LARGEST.store(0, Ordering::Relaxed);
        let r = f();
        (r, LARGEST.load(Ordering::Relaxed))
    }
}

/// Declares [`LargestAlloc`] as the target's global allocator.
#[macro_export]
macro_rules! use_largest_alloc {
    () => {
        #[global_allocator]
        static ALLOC: $crate::LargestAlloc = $crate::LargestAlloc;
    };
}
