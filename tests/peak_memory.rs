//! A run's peak memory is its own (alone in its process: other tests' allocations would
//! move the high-water mark under it).

use peft_workbench::train::{peak_rss_bytes, reset_peak_rss};

#[test]
fn the_peak_starts_afresh_for_each_run() {
    let big = 400usize << 20;
    let buffer = vec![1u8; big];
    std::hint::black_box(&buffer);
    let with_buffer = peak_rss_bytes();
    drop(buffer);
    peft_workbench::train::allocator::return_free_memory();
    assert!(
        with_buffer as usize > big,
        "peak {with_buffer} counts the buffer"
    );
    reset_peak_rss();
    let after = peak_rss_bytes();
    assert!(
        after + (big as u64) / 2 < with_buffer,
        "after the reset the peak is today's memory: {after} vs {with_buffer} before"
    );
}
