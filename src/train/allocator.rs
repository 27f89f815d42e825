//! glibc's allocator, set for a program whose every tensor op allocates a fresh buffer.
//!
//! By default glibc serves buffers over 32 MB (logits, attention scores of a batch) with
//! mmap and hands them back with munmap, gives each thread its own arena (a trainer thread's
//! arena is made of 64 MB mmap'd heaps, so its large buffers are mmap'd too), and trims the
//! heap top once more than 128 KB is free. Each of these gives pages back that the next op
//! faults in again, zeroed by the kernel: on a SmolLM2-135M LoRA step (batch 8 × 128) the
//! step's 2.1 GB of activations were freed and faulted back every step, a tenth of the
//! step in `clear_page`. Served from one heap that is never trimmed while a run trains, a
//! freed buffer is reused by the next step; the memory goes back to the system when a run
//! ends (`return_free_memory`).

/// Call first thing in `main`, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory_for_reuse() {
    // SAFETY: mallopt sets integer parameters of glibc's allocator and takes no pointer;
    // it is called before other threads start. A trim threshold of -1 (as size_t, the
    // largest value) turns trimming off: `i32::MAX` did not, a step frees more than 2 GB.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory_for_reuse() {}

/// Gives the free part of the heap back to the system: after a run, so that an idle
/// workbench does not hold the peak of the last run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn return_free_memory() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps; it is
    // thread-safe and takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_free_memory() {}
