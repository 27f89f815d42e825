//! Matrix products on plain slices, through the `gemm` crate (the GEMM candle's CPU matmul
//! runs), for fused kernels made of many small products.
//!
//! candle's batched matmul splits every product of the batch across the thread pool: for
//! attention's products (`[R·T, D] · [D, S]` per batch entry and key/value head, a few
//! MFLOP each) that is a hand-off between threads and a wake-up per product, and a
//! zero-filled output buffer per call. Here a kernel runs each small product on one thread
//! and spreads the independent products over the pool instead (see [`threads_per_product`]),
//! writing straight into its own buffers.

use candle_core::{CpuStorage, Layout, Result, bail};
use gemm::Parallelism;
use std::mem::MaybeUninit;

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

    /// The f32 matrix a CPU storage holds under a 2-D `layout` (any strides, e.g. a
    /// transposed weight), or the rows `[.., cols]` of a contiguous one of any rank.
    pub fn of(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let data = &storage.as_slice::<f32>()?[layout.start_offset()..];
        let dims = layout.dims();
        if let [rows, cols] = *dims {
            let [row_stride, col_stride] = *layout.stride() else {
                bail!("a 2-D layout with {} strides", layout.stride().len());
            };
            let view = Self {
                data,
                rows,
                cols,
                row_stride,
                col_stride,
            };
            if !view.in_bounds() {
                bail!("a [{rows}, {cols}] layout past the end of its storage");
            }
            return Ok(view);
        }
        let Some(&cols) = dims.last() else {
            bail!("a scalar is not a matrix");
        };
        if !layout.is_contiguous() || data.len() < layout.shape().elem_count() {
            bail!("a non-contiguous {dims:?} input is not a matrix of rows");
        }
        Ok(Self::rows(
            data,
            layout.shape().elem_count() / cols.max(1),
            cols,
        ))
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
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
    check(dst.len(), lhs, rhs);
    // SAFETY: `check` keeps every element gemm reads (lhs, rhs) and writes (dst, row-major
    // [m, n]) inside its slice; `dst` is borrowed mutably, so it aliases neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm_raw(dst.as_mut_ptr(), lhs, rhs, accumulate, threads)
    }
}

/// `dst = lhs · rhs` into a buffer not written yet, which this writes whole: the
/// [`written`] counterpart of [`matmul_into`].
pub fn matmul_uninit(dst: &mut [MaybeUninit<f32>], lhs: View, rhs: View, threads: usize) {
    check(dst.len(), lhs, rhs);
    // SAFETY: as in `matmul_into`; without `accumulate` `dst` is only written, every
    // element of it.
    #[allow(unsafe_code)]
    unsafe {
        gemm_raw(dst.as_mut_ptr().cast(), lhs, rhs, false, threads)
    }
}

/// `lhs · rhs` as a new row-major `[lhs.rows, rhs.cols]` buffer, written once by the GEMM.
pub fn product(lhs: View, rhs: View, threads: usize) -> Vec<f32> {
    // SAFETY: `matmul_uninit` writes every element of the slice it is given.
    #[allow(unsafe_code)]
    unsafe {
        written(lhs.rows * rhs.cols, |dst| {
            matmul_uninit(dst, lhs, rhs, threads)
        })
    }
}

/// A new vector of `n` values that `fill` writes, without zero-filling it first.
///
/// The step allocates a fresh buffer per op, from a heap that keeps freed memory for reuse
/// (see `train::allocator`), and `vec![0.0; n]` zero-fills a reused chunk: a pass over
/// memory the op then overwrites anyway. On a SmolLM2-135M LoRA step such fills (`memset`)
/// took 9 % of the cycles.
///
/// # Safety
/// `fill` must initialise every element of the slice it is given.
#[allow(unsafe_code)]
pub unsafe fn written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: the first `n` elements are initialised, by the caller's promise.
    unsafe { out.set_len(n) };
    out
}

/// Panics unless `lhs · rhs` fits an output of `len` values and both views lie inside
/// their slices: every bound the raw GEMM relies on.
fn check(len: usize, lhs: View, rhs: View) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: [{m}, {k}] · [{}, {n}]", rhs.rows);
    assert_eq!(len, m * n, "matmul: output of {len} for [{m}, {n}]");
    assert!(
        lhs.in_bounds() && rhs.in_bounds(),
        "matmul: view out of bounds"
    );
}

/// `dst = lhs · rhs` (or `+=` with `accumulate`) through gemm.
///
/// # Safety
/// `dst` points to `lhs.rows · rhs.cols` writable values, initialised when `accumulate`,
/// aliasing neither view, and the views passed [`check`].
#[allow(unsafe_code)]
unsafe fn gemm_raw(dst: *mut f32, lhs: View, rhs: View, accumulate: bool, threads: usize) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: `dst` holds m · n writable values.
            unsafe { std::slice::from_raw_parts_mut(dst.cast::<MaybeUninit<f32>>(), m * n) }
                .fill(MaybeUninit::new(0.0));
        }
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let stride = |s: usize| s as isize;
    // SAFETY: the caller's bounds; gemm reads `dst` only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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
                assert!(close(&product(lhs, rhs, threads), &want), "new buffer");
                matmul_into(&mut got, lhs, rhs, true, threads);
                let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
                assert!(close(&got, &twice), "accumulated, {threads} threads");
            }
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        let none: [f32; 0] = [];
        let p = product(View::rows(&none, 3, 0), View::rows(&none, 0, 2), 1);
        assert_eq!(p, vec![0.0; 6]);
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
