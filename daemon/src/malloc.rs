//! How the C allocator treats the large, short-lived buffers of image transfers.
//!
//! An upload's body arrives in hyper read buffers of a few hundred KiB that are freed on
//! the hashing thread, and downloads read 512 KiB chunks. glibc's defaults serve
//! allocations that size with `mmap` and give freed memory back to the kernel soon after,
//! so every buffer costs fresh pages: page faults and zeroing inside the TLS read path.
//! Keeping those buffers in the heap and its freed memory cached took a 1 GiB upload's
//! server CPU from 1.96 to 1.70 s/GiB (medians of 5 in one run) for 3 MiB more peak RSS
//! (bench/results/malloc-tuning.md); another allocator (mimalloc) saved a little less and
//! more than doubled the peak RSS.

/// Allocations at least this large still go straight to `mmap` (S3 part buffers, which
/// are pooled anyway).
const MMAP_THRESHOLD: i32 = 2 << 20;
/// Freed heap memory up to this much stays with the process instead of going back to the
/// kernel: bounded, and far below the RSS budget.
const TRIM_THRESHOLD: i32 = 16 << 20;

/// Applies the thresholds above; call once, before the runtime starts threads. Where the
/// C library is not glibc this does nothing.
pub fn tune_for_streaming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists, and a rejected value leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
