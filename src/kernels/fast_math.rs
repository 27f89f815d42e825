//! `exp`, row maxima and sums over `f32` slices written so that the compiler turns them
//! into SIMD loops.
//!
//! The fused kernels (softmax, SwiGLU, cross-entropy) take a few hundred million
//! exponentials per SmolLM2 training step; libm's `expf` is a call per value and took 9 %
//! of the step in a profile. Here `exp` is branch-free arithmetic (Cody–Waite range
//! reduction, the degree-5 minimax polynomial of Cephes' `expf`, the power of two put
//! straight into the exponent bits), inlined into each kernel's loop, which then
//! vectorises. Relative error stays within 2 ulp on the whole range (tested below).
//! Float sums are not reordered by the compiler on its own, so `sum` and `max` keep
//! sixteen partial results explicitly.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n · LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding it rounds to an integer and leaves that integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Beyond these `exp` leaves the normal range of f32: clamped, giving 0-ish and ~3.4e38.
const MAX_ARG: f32 = 88.37;
const MIN_ARG: f32 = -87.33;

/// `e^x`, within 2 ulp for normal results. NaN stays NaN; `x` below −87.3 gives 0 (no
/// subnormal: see [`flush_tiny`]), `x` above 88.4 about 2.6e38 instead of infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(MIN_ARG, MAX_ARG);
    let t = xc * LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    // The integer n sits in t's low mantissa bits: no float-to-int conversion needed.
    let n_int = t.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    let y = if x < MIN_ARG { 0.0 } else { e_r * scale };
    // `clamp` turned NaN into a number; give it back (a blend, not a branch).
    if x.is_nan() { x } else { y }
}

/// Magnitudes below this are written as 0 by [`flush_tiny`].
pub const TINY: f32 = 1e-30;

/// `x`, or 0 when `|x| < 1e-30`.
///
/// Probabilities of far-off tokens or keys come out of a softmax as tiny normal numbers,
/// and a product of two of them with anything small is a subnormal. x86 cores handle
/// subnormal operands and results in microcode, about a hundred times slower: on the
/// built-in model, attention's backward GEMMs ran at 18 GFLOP/s on such values and the
/// training step took twice as long. A value under 1e-30 next to the 1 a softmax row sums
/// to, or to the gradients it joins, changes no f32 result; 0 is exact and fast.
#[inline(always)]
pub fn flush_tiny(x: f32) -> f32 {
    if x.abs() < TINY { 0.0 } else { x }
}

/// `1 / (1 + e^−x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    flush_tiny(1.0 / (1.0 + exp(-x)))
}

/// Runs `f` with the widest vector instructions the CPU has enabled for the code inlined
/// into it: AVX-512, else AVX2 with FMA, on x86-64 (checked once, a cached flag after).
///
/// The build targets baseline x86-64, so a loop over [`exp`] compiled in place runs four
/// lanes wide (SSE2) on a CPU with sixteen. `f` must inline to profit: pass a closure
/// marked `#[inline(always)]` whose loops call only `#[inline(always)]` functions (those
/// here). Results do not change with the width: the loops' lanes are written out (the
/// reductions' sixteen partial sums) and no multiply-add is fused unless the code says so.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

const LANES: usize = 16;

/// The largest value; NaNs are skipped (they still reach the result through `exp`), an
/// empty slice gives −∞.
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(rest) {
        m = if x > m { x } else { m };
    }
    m
}

/// The sum, in sixteen partial sums.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// The dot product, in sixteen partial sums.
#[inline(always)]
pub fn dot(xs: &[f32], ys: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (cx, cy) = (xs.chunks_exact(LANES), ys.chunks_exact(LANES));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for (acc, (x, y)) in acc.iter_mut().zip(a.iter().zip(b)) {
            *acc += x * y;
        }
    }
    acc.iter().sum::<f32>() + rx.iter().zip(ry).map(|(a, b)| a * b).sum::<f32>()
}

/// `x[i] = e^(scale · (x[i] − shift))`, returning their sum, in one pass.
#[inline(always)]
pub fn exp_shifted_in_place(xs: &mut [f32], shift: f32, scale: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *x = exp((*x - shift) * scale);
            *a += *x;
        }
    }
    let mut rest = 0f32;
    for x in chunks.into_remainder() {
        *x = exp((*x - shift) * scale);
        rest += *x;
    }
    acc.iter().sum::<f32>() + rest
}

/// `Σ e^(x[i] − shift)` without writing the values.
#[inline(always)]
pub fn sum_exp_shifted(xs: &[f32], shift: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += exp(x - shift);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&x| exp(x - shift)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Every representable-step sample of the normal range within 2 ulp of the correctly
    /// rounded value (computed in f64).
    #[test]
    fn exp_is_within_two_ulp_over_the_normal_range() {
        let mut worst = (0, 0f32);
        let mut x = MIN_ARG;
        while x < MAX_ARG {
            let want = (x as f64).exp() as f32;
            let u = ulps(exp(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_37;
        }
        for x in [0.0f32, -0.0, 1e-8, -1e-8, 1.0, -1.0, 0.5, 10.0, -10.0] {
            assert!(ulps(exp(x), (x as f64).exp() as f32) <= 2, "{x}");
        }
        assert!(worst.0 <= 2, "{} ulp at {}", worst.0, worst.1);
    }

    #[test]
    fn exp_saturates_and_keeps_nan() {
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(MIN_ARG - 0.01), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(1000.0) > 1e38 && exp(1000.0).is_finite());
        assert_eq!(sigmoid(100.0), 1.0);
        assert_eq!(sigmoid(-100.0), 0.0);
        assert!(sigmoid(-60.0) > 0.0);
        assert_eq!(flush_tiny(-1e-31), 0.0);
        assert_eq!(flush_tiny(2e-30), 2e-30);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn reductions_match_plain_loops() {
        let xs: Vec<f32> = (0..103)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let ys: Vec<f32> = (0..103).map(|i| (i as f32).sin()).collect();
        assert_eq!(
            max(&xs),
            xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * b.abs().max(1.0);
        assert!(close(sum(&xs), xs.iter().sum()));
        assert!(close(
            dot(&xs, &ys),
            xs.iter().zip(&ys).map(|(a, b)| a * b).sum()
        ));
        let m = max(&xs);
        let mut out = xs.clone();
        let s = exp_shifted_in_place(&mut out, m, 0.5);
        let want: f32 = xs.iter().map(|x| ((x - m) * 0.5).exp()).sum();
        assert!(close(s, want), "{s} vs {want}");
        assert!(close(
            sum_exp_shifted(&xs, m),
            xs.iter().map(|x| (x - m).exp()).sum()
        ));
        for (o, x) in out.iter().zip(&xs) {
            assert!(close(*o, ((x - m) * 0.5).exp()));
        }
    }
}
