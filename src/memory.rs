//! How the process's allocator treats the CPU backends' large buffers.
//!
//! A U-Net step on the CPU allocates and frees tens of multi-MB buffers (activations, their
//! gradients, im2col scratch). glibc's `malloc`, by default, hands such freed memory back to the
//! kernel (it serves large requests with `mmap` until its adaptive threshold has grown, and trims
//! the top of its heaps above a threshold of its own), so the next step faults every page in
//! again and the kernel zeroes it: 10–15 % of an MNIST U-Net training step on the 2-core machine
//! here (README, "The allocator"). [`keep_freed_memory`] fixes both thresholds so that freed
//! memory stays in the process for the next step. The examples call it first thing; a program
//! of your own may too, or use an allocator that caches (mimalloc, jemalloc) instead.

/// The largest request glibc serves from its heaps rather than with its own `mmap` once
/// [`keep_freed_memory`] has run: its upper limit on 64-bit targets (`HEAP_MAX_SIZE / 2`).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// The free memory glibc may keep at the top of a heap before it returns some to the kernel,
/// once [`keep_freed_memory`] has run.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// Keeps memory that is freed in this process for reuse instead of returning it to the kernel:
/// sets glibc's `M_MMAP_THRESHOLD` to [`MMAP_THRESHOLD`] and `M_TRIM_THRESHOLD` to
/// [`TRIM_THRESHOLD`] with `mallopt`. The process then holds on to its peak heap
/// (for the MNIST U-Net's training step, a few hundred MB) until it exits.
///
/// Returns whether glibc accepted both settings: `false` on targets other than Linux with glibc
/// (musl, macOS, Windows), where it does nothing. A program whose `#[global_allocator]` is not
/// the system's gets `true` and no effect: that allocator decides for itself.
///
/// Process-wide, so call it once at the start of `main`, before the work begins: it changes
/// speed only, never results.
///
/// ```
/// let kept = score_sde::memory::keep_freed_memory();
/// assert_eq!(kept, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets allocator parameters; both values are within the ranges
        // glibc accepts (it returns 0 for a value it rejects, and changes nothing then).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
