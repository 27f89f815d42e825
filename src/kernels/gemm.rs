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
    let call = Call {
        lhs,
        rhs,
        accumulate,
        threads,
    };
    if m <= FEW_ROWS && n > m && rhs.row_stride == 1 && rhs.col_stride != 1 {
        // SAFETY: the caller's promise.
        unsafe { few_rows_by_transposed_weight(dst, call) };
        return;
    }
    if threads > 1 && (m == 1 || n == 1) && k > 2 && m * n * k >= SPLIT_VECTOR_PRODUCT_FROM {
        // SAFETY: the caller's promise, passed on part by part.
        unsafe { vector_product_split(dst, call) };
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

/// A product's operands and how to run it, as [`gemm_raw`]'s special cases take them.
#[derive(Clone, Copy)]
struct Call<'a> {
    lhs: View<'a>,
    rhs: View<'a>,
    accumulate: bool,
    threads: usize,
}

/// Up to this many rows, [`few_rows_by_transposed_weight`] takes a product of rows by a
/// transposed weight.
const FEW_ROWS: usize = 64;

/// `x · Wᵀ` for a few rows `x: [m, k]` (a short prompt's tokens; a decoded token at m = 1)
/// and a weight `W: [n, k]` stored row by row, as `(W · xᵀ)ᵀ`.
///
/// gemm turns a product with a row-major output into its transpose, so `x · Wᵀ` runs as
/// `W · xᵀ` with the weight on the left, which gemm repacks whole: a pass over the weight
/// for a few rows of work. Asked for `W · xᵀ` itself, gemm runs `x · Wᵀ` with the weight on
/// the right read in place. Best of 30, 2 threads, `[32, 1536] · [1536, 576]`: 2.1–2.4 ms
/// directly, 0.32–0.46 ms this way with the transpose of the small result included; the
/// two agree bit for bit. From about 96 rows on the direct call is as fast.
///
/// # Safety
/// As [`gemm_raw`].
#[allow(unsafe_code)]
unsafe fn few_rows_by_transposed_weight(dst: *mut f32, call: Call) {
    let (m, n) = (call.lhs.rows, call.rhs.cols);
    if m == 1 {
        // A row and a column are the same n values in memory: no transpose to make.
        // SAFETY: as the caller's; `dst` holds the `[n, 1]` result.
        unsafe {
            gemm_raw(
                dst,
                call.rhs.t(),
                call.lhs.t(),
                call.accumulate,
                call.threads,
            )
        };
        return;
    }
    let transposed = product(call.rhs.t(), call.lhs.t(), call.threads);
    // SAFETY: `dst` holds m · n writable values (initialised when accumulating).
    let dst = unsafe { std::slice::from_raw_parts_mut(dst.cast::<MaybeUninit<f32>>(), m * n) };
    for (i, row) in dst.chunks_exact_mut(n).enumerate() {
        let column = transposed[i..].iter().step_by(m);
        if call.accumulate {
            for (d, t) in row.iter_mut().zip(column) {
                // SAFETY: initialised, as the caller promised for an accumulating product.
                let sum = unsafe { d.assume_init() } + t;
                *d = MaybeUninit::new(sum);
            }
        } else {
            for (d, t) in row.iter_mut().zip(column) {
                *d = MaybeUninit::new(*t);
            }
        }
    }
}

/// Products with one row or one column smaller than this (multiply-adds) stay on one
/// thread: splitting costs a hand-off to the pool, a few microseconds.
const SPLIT_VECTOR_PRODUCT_FROM: usize = 1 << 16;

/// A destination pointer that parts of one product write through from several threads.
#[derive(Clone, Copy)]
struct Destination(*mut f32);
// SAFETY: each thread writes its own disjoint part of the buffer (see
// `vector_product_split`), which outlives the parallel loop.
#[allow(unsafe_code)]
unsafe impl Send for Destination {}
#[allow(unsafe_code)]
unsafe impl Sync for Destination {}

impl Destination {
    /// The pointer `offset` values on. (A method, so that a closure captures the whole
    /// `Send` wrapper rather than the raw pointer inside it.)
    ///
    /// # Safety
    /// As [`pointer::add`].
    #[allow(unsafe_code)]
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller's promise.
        unsafe { self.0.add(offset) }
    }
}

/// A product with one row (`[1, k] · [k, n]`) or one column (`[m, k] · [k, 1]`), split along
/// its long side into one part per thread.
///
/// gemm computes such matrix-vector products on the calling thread alone, whatever
/// parallelism it is given. Every token that generation decodes is made of them (each
/// projection, and the output head: `[1, 576] · [576, 49152]` on SmolLM2), so on two cores
/// half of the machine sat idle while it streamed the weights.
///
/// # Safety
/// As [`gemm_raw`]; `m == 1` or `n == 1`.
#[allow(unsafe_code)]
unsafe fn vector_product_split(dst: *mut f32, call: Call) {
    use rayon::prelude::*;
    let (lhs, rhs) = (call.lhs, call.rhs);
    let (m, n) = (lhs.rows, rhs.cols);
    let long = m.max(n);
    // Parts of whole 64-byte runs: fewer cache lines written from both threads.
    let part = long.div_ceil(call.threads).next_multiple_of(16);
    let dst = Destination(dst);
    (0..long.div_ceil(part)).into_par_iter().for_each(|i| {
        let (start, len) = (i * part, part.min(long - i * part));
        // SAFETY: the part's rows (m > 1) or columns (m == 1) of `dst`, a contiguous run of
        // `len` values since the other side is 1, lie inside it and no other part's; the
        // sub-views stay inside the views the caller checked.
        unsafe {
            if m == 1 {
                let rhs = View {
                    data: &rhs.data[start * rhs.col_stride..],
                    cols: len,
                    ..rhs
                };
                gemm_raw(dst.at(start), lhs, rhs, call.accumulate, 1);
            } else {
                let lhs = View {
                    data: &lhs.data[start * lhs.row_stride..],
                    rows: len,
                    ..lhs
                };
                gemm_raw(dst.at(start), lhs, rhs, call.accumulate, 1);
            }
        }
    });
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

    /// Values in a few steps around zero, different per seed.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed * 11) % 23) as f32 - 11.0) / 7.0)
            .collect()
    }

    /// Checks `lhs · rhs` against the triple loop on each of `threads`, written into a
    /// buffer of NaNs, into a new buffer, and accumulated onto the first result.
    fn check_product(lhs: View, rhs: View, threads: &[usize]) {
        let want = reference(lhs, rhs);
        let close = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
        };
        let shape = (lhs.dims(), rhs.dims());
        for &t in threads {
            let mut got = vec![f32::NAN; want.len()];
            matmul_into(&mut got, lhs, rhs, false, t);
            assert!(close(&got, &want), "{shape:?} on {t} threads");
            assert!(close(&product(lhs, rhs, t), &want), "new buffer, {shape:?}");
            matmul_into(&mut got, lhs, rhs, true, t);
            let twice: Vec<f32> = want.iter().map(|w| 2.0 * w).collect();
            assert!(close(&got, &twice), "accumulated, {shape:?} on {t} threads");
        }
    }

    #[test]
    fn products_and_transposes_match_the_triple_loop_and_accumulate() {
        let (m, k, n) = (37, 19, 29);
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let bt = values(n * k, 3);
        for (lhs, rhs) in [
            (View::rows(&a, m, k), View::rows(&b, k, n)),
            (View::rows(&a, m, k), View::rows(&bt, n, k).t()),
            (View::rows(&a, k, m).t(), View::rows(&b, k, n)),
        ] {
            check_product(lhs, rhs, &[1, 2]);
        }
    }

    #[test]
    fn products_with_one_row_or_column_split_over_threads_match_the_triple_loop() {
        // Long enough to be split, with a last part shorter than the others.
        let (k, long) = (67, 1013);
        let (x, w) = (values(k, 1), values(long * k, 2));
        for (lhs, rhs) in [
            // A decoded token's projection: a row times a transposed weight.
            (View::rows(&x, 1, k), View::rows(&w, long, k).t()),
            (View::rows(&x, 1, k), View::rows(&w, k, long)),
            // A column: the weight on the left.
            (View::rows(&w, long, k), View::rows(&x, k, 1)),
            (View::rows(&w, k, long).t(), View::rows(&x, k, 1)),
        ] {
            assert!(lhs.rows * rhs.cols * k >= SPLIT_VECTOR_PRODUCT_FROM);
            check_product(lhs, rhs, &[1, 2, 3]);
        }
    }

    #[test]
    fn a_few_rows_by_a_transposed_weight_match_the_triple_loop() {
        let (k, n) = (45, 301);
        let w = values(n * k, 1);
        for m in [1, 2, 7, FEW_ROWS] {
            let x = values(m * k, m);
            check_product(View::rows(&x, m, k), View::rows(&w, n, k).t(), &[1, 2]);
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
