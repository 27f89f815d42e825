//! The order training examples are drawn in, replayable to any point on resume.

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};

/// The order training examples are drawn in: a fresh shuffle of all of them each epoch,
/// from one seeded generator, so the order can be replayed to any point on resume.
/// Grouped by length, each epoch is cut into batches of similar length instead (see
/// `RunConfig::group_by_length`).
pub(super) struct DataOrder {
    rng: StdRng,
    /// The epoch's examples still to draw, or its batches when grouped; drawn from the end.
    left: Vec<usize>,
    batches: Vec<Vec<usize>>,
    /// Each example's length in tokens when batches are grouped by length.
    lengths: Option<Vec<usize>>,
    len: usize,
}

/// Batches per pool that is sorted by length: Hugging Face's `LengthGroupedSampler` uses
/// 50, so a batch's examples are alike in length yet drawn from across the epoch.
const LENGTH_POOL_BATCHES: usize = 50;

impl DataOrder {
    pub(super) fn new(seed: u64, len: usize, lengths: Option<Vec<usize>>) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            left: Vec::new(),
            batches: Vec::new(),
            lengths,
            len,
        }
    }

    fn next(&mut self) -> usize {
        if self.left.is_empty() {
            self.left = (0..self.len).collect();
            self.left.shuffle(&mut self.rng);
        }
        self.left.pop().expect("refilled above")
    }

    /// The examples of the next optimizer step.
    pub(super) fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let Some(lengths) = &self.lengths else {
            return (0..size).map(|_| self.next()).collect();
        };
        if size > self.len {
            // Fewer examples than a batch: every batch repeats them, as ungrouped.
            return (0..size).map(|_| self.next()).collect();
        }
        if self.batches.is_empty() {
            let mut all: Vec<usize> = (0..self.len).collect();
            all.shuffle(&mut self.rng);
            for pool in all.chunks_mut(size * LENGTH_POOL_BATCHES) {
                pool.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
                self.batches.extend(
                    pool.chunks(size)
                        .filter(|b| b.len() == size)
                        .map(<[usize]>::to_vec),
                );
            }
            self.batches.shuffle(&mut self.rng);
        }
        self.batches.pop().expect("refilled above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grouped_by_length_pad_less_and_cover_each_epoch_once() {
        // 1003 examples of lengths 1..=120 in a scattered order, batches of 8.
        let lengths: Vec<usize> = (0..1003).map(|i| 1 + (i * 37) % 120).collect();
        let padded = |order: &mut DataOrder| -> (usize, Vec<usize>) {
            let (mut padded, mut seen) = (0, Vec::new());
            for _ in 0..1003 / 8 {
                let b = order.next_batch(8);
                assert_eq!(b.len(), 8);
                padded += 8 * b.iter().map(|&i| lengths[i]).max().unwrap();
                seen.extend(b);
            }
            (padded, seen)
        };
        let mut grouped = DataOrder::new(3, 1003, Some(lengths.clone()));
        let (grouped_tokens, mut seen) = padded(&mut grouped);
        let (plain_tokens, _) = padded(&mut DataOrder::new(3, 1003, None));
        let real: usize = lengths.iter().sum();
        // One epoch: 125 whole batches, no example twice, the 3 left over wait.
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
        assert!(
            grouped_tokens < real * 11 / 10 && plain_tokens > real * 3 / 2,
            "real {real}, grouped {grouped_tokens}, plain {plain_tokens}"
        );
        // The same seed replays the same batches (resume), and a new epoch starts afresh.
        let mut again = DataOrder::new(3, 1003, Some(lengths.clone()));
        let mut first = DataOrder::new(3, 1003, Some(lengths));
        for _ in 0..200 {
            assert_eq!(again.next_batch(8), first.next_batch(8));
        }
    }
}
