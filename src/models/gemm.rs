//! Matrix products on plain slices, through the `gemm` crate (the GEMM candle's CPU matmul
//! runs), for fused kernels made of many small products.
//!
//! candle's batched matmul splits every product of the batch across the thread pool: for
//! attention's products (`[R·T, D] · [D, S]` per batch entry and key/value head, a few
//! MFLOP each) that is a hand-off between threads and a wake-up per product, and a
//! zero-filled output buffer per call. Here a kernel runs each small product on one thread
//! and spreads the independent products over the pool instead (see [`threads_per_product`]),
//! writing straight into its own buffers.

use gemm::Parallelism;

/// A matrix over a slice: element `(i, j)` at `data[i · row_stride + j · col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` as a row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, reading the same values.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside the slice.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// How many threads each of `products` independent products should use: one when there
/// are enough products to keep every thread of the pool busy (the caller then runs them
/// in parallel), else the whole pool for each (the caller runs them one after another).
pub fn threads_per_product(products: usize) -> usize {
    let pool = rayon::current_num_threads().max(1);
    if products >= 2 * pool { 1 } else { pool }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`, for a row-major
/// `dst: [lhs.rows, rhs.cols]`, on `threads` threads (1: the calling thread only).
pub fn matmul_into(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool, threads: usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul_into: [{m}, {k}] · [{}, {n}]", rhs.rows);
    assert_eq!(
        dst.len(),
        m * n,
        "matmul_into: output of {} for [{m}, {n}]",
        dst.len()
    );
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul_into: view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let stride = |s: usize| s as isize;
    // SAFETY: the asserts above keep every element gemm reads (lhs, rhs) and writes (dst,
    // row-major [m, n]) inside its slice; `dst` is borrowed mutably, so it aliases neither
    // input.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            stride(n),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook triple loop.
    fn reference(lhs: View, rhs: View) -> Vec<f32> {
        let mut out = vec![0f32; lhs.rows * rhs.cols];
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                out[i * rhs.cols + j] = (0..lhs.cols)
                    .map(|l| {
                        lhs.data[i * lhs.row_stride + l * lhs.col_stride]
                            * rhs.data[l * rhs.row_stride + j * rhs.col_stride]
                    })
                    .sum();
            }
        }
        out
    }

    #[test]
    fn products_and_transposes_match_the_triple_loop_and_accumulate() {
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 7.0)
                .collect()
        };
        let (m, k, n) = (37, 19, 29);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let bt = values(n * k, 3);
        for threads in [1, 2] {
            for (lhs, rhs) in [
                (View::rows(&a, m, k), View::rows(&b, k, n)),
                (View::rows(&a, m, k), View::rows(&bt, n, k).t()),
                (View::rows(&a, k, m).t(), View::rows(&b, k, n)),
            ] {
                let want = reference(lhs, rhs);
                let mut got = vec![f32::NAN; m * n];
                matmul_into(&mut got, lhs, rhs, false, threads);
                let close = |x: &[f32], y: &[f32]| {
                    x.iter()
                        .zip(y)
                        .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
                };
                assert!(close(&got, &want), "{threads} threads");
                matmul_into(&mut got, lhs, rhs, true, threads);
                let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
                assert!(close(&got, &twice), "accumulated, {threads} threads");
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_its_slice_is_refused() {
        let a = vec![1f32; 10];
        let mut out = vec![0f32; 9];
        matmul_into(
            &mut out,
            View::rows(&a, 3, 4),
            View::rows(&a, 4, 3),
            false,
            1,
        );
    }
}
