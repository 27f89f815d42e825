//! Mean cross-entropy of logits `[N, V]` against target ids `[N]`, fused on the CPU.
//!
//! candle's `cross_entropy` is `log_softmax` then a gather: five passes over the logits,
//! each allocating a logits-sized tensor, and as many again in the backward pass. For a
//! language model's head that is `N × 49 152` floats per pass (200 MB at 8 × 128 tokens).
//! Here the forward pass reads each row twice (max, then the sum of exponentials) and
//! writes nothing of that size; the backward pass writes the gradient
//! `(softmax(z) − onehot(t)) / N` once. Other devices and dtypes use candle's.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use crate::kernels::fast_math as fm;
use crate::kernels::gemm::{View, matmul_into, matmul_uninit, product};

pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let fused = crate::kernels::fused::available_for(logits)
        && targets.dtype() == DType::U32
        && logits.rank() == 2;
    if !fused {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    let logits = logits.contiguous()?;
    let targets = targets.contiguous()?;
    logits.apply_op2(&targets, CrossEntropy { grad_scale: None })
}

/// Mean cross-entropy of the logits `hidden · weightᵀ` (`hidden: [N, H]`, an output head
/// `weight: [V, H]`) against `targets: [N]`, without ever holding the `[N, V]` logits.
///
/// The loss ends the graph, so the logits' gradient `(softmax(z) − onehot(t)) / N` is known
/// as soon as a row's logits are. The forward pass therefore computes the logits a slice of
/// rows at a time, turns each slice into its gradient in place and multiplies it by the
/// head straight away, keeping only `∂loss/∂hidden` (`[N, H]`) for the backward pass. For a
/// language model's head that removes the two logits-sized tensors (200 MB each at
/// 8 × 128 tokens over 49 152 entries) that otherwise sit on top of every activation at the
/// step's peak, and two passes over each. Same GEMMs, same per-row arithmetic as the head
/// followed by [`cross_entropy`]. A trained head (full fine-tuning trains the tied
/// embedding) gets its gradient `Σ over slices of ∂z_sliceᵀ · hidden_slice` summed as the
/// slices go, one head-sized buffer instead of four logits-sized tensors. Other devices
/// and dtypes take the unfused path.
pub fn linear_cross_entropy(hidden: &Tensor, weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    linear_cross_entropy_in_slices(hidden, weight, targets, LOGITS_PER_SLICE)
}

/// [`linear_cross_entropy`] holding at most `max_logits` logits at a time.
fn linear_cross_entropy_in_slices(
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    max_logits: usize,
) -> Result<Tensor> {
    let fused = crate::kernels::fused::available_for(hidden)
        && crate::kernels::fused::available_for(weight)
        && targets.dtype() == DType::U32
        && hidden.rank() == 2
        && weight.rank() == 2;
    if !fused {
        let logits = crate::kernels::matmul_t::matmul_t(hidden, weight)?;
        return cross_entropy(&logits, targets);
    }
    let op = LinearCrossEntropy {
        max_logits,
        want_grad: hidden.track_op(),
        want_weight_grad: weight.track_op(),
        grad: Mutex::new(None),
        weight_grad: Mutex::new(None),
    };
    hidden
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &targets.contiguous()?, op)
}

/// Logits are computed at most this many floats (128 MB) at a time: a few hundred rows of a
/// large vocabulary, all rows of a small one. The head's GEMMs run faster on more rows (the
/// backward one, `[rows, 49 152] · [49 152, 576]` for SmolLM2, at about 224, 258 and 272
/// GFLOP/s for 341, 512 and 1024 rows, best of six, 2 threads), so slices are as large as
/// this allows.
pub(crate) const LOGITS_PER_SLICE: usize = 32 << 20;

/// Rows per slice for `n` rows of `v` logits, at most `max_logits` logits a slice: as few
/// slices as that allows, of equal size (the last one the remainder), so that no slice is
/// a sliver that reads the whole head for a few rows.
fn rows_per_slice(n: usize, v: usize, max_logits: usize) -> usize {
    let most = (max_logits / v.max(1)).clamp(1, n.max(1));
    n.max(1).div_ceil(n.max(1).div_ceil(most))
}

struct LinearCrossEntropy {
    /// The most logits held at once.
    max_logits: usize,
    /// Whether `hidden` needs a gradient, i.e. whether the forward pass computes it.
    want_grad: bool,
    /// Whether the head is trained, i.e. whether the forward pass computes its gradient.
    want_weight_grad: bool,
    /// `∂(mean loss)/∂hidden`, left by the forward pass for the backward one.
    grad: Mutex<Option<Tensor>>,
    /// `∂(mean loss)/∂weight`, likewise.
    weight_grad: Mutex<Option<Tensor>>,
}

impl CustomOp3 for LinearCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-linear-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        h: &CpuStorage,
        lh: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        t: &CpuStorage,
        lt: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, width) = lh.shape().dims2()?;
        let (v, width_w) = lw.shape().dims2()?;
        if width != width_w {
            bail!("linear cross-entropy: hidden states of {width} for a head of {width_w}");
        }
        let Some((ts, te)) = lt.contiguous_offsets() else {
            bail!("linear cross-entropy: non-contiguous targets");
        };
        let t = &t.as_slice::<u32>()?[ts..te];
        if t.len() != n {
            bail!("linear cross-entropy: {n} rows but {} targets", t.len());
        }
        if let Some(bad) = t.iter().find(|&&x| x as usize >= v) {
            bail!("cross-entropy: target {bad} is outside a vocabulary of {v}");
        }
        let (Some((h0, h1)), Some((w0, w1))) = (lh.contiguous_offsets(), lw.contiguous_offsets())
        else {
            bail!("linear cross-entropy: non-contiguous input");
        };
        let (h, w) = (&h.as_slice::<f32>()?[h0..h1], &w.as_slice::<f32>()?[w0..w1]);
        let head = View::rows(w, v, width);
        let per_row = 1.0 / n.max(1) as f32;
        let slice = rows_per_slice(n, v, self.max_logits);
        let threads = rayon::current_num_threads();
        let mut total = 0f64;
        let mut grad = Vec::with_capacity(if self.want_grad { n * width } else { 0 });
        // Made by the first slice's product (no buffer reserved ahead only to be replaced).
        let mut weight_grad = Vec::new();
        let any_grad = self.want_grad || self.want_weight_grad;
        for start in (0..n).step_by(slice) {
            let rows = slice.min(n - start);
            let hs = View::rows(&h[start * width..(start + rows) * width], rows, width);
            let mut z = product(hs, head.t(), threads);
            total += z
                .par_chunks_mut(v)
                .zip(t[start..start + rows].par_iter())
                .map(|(row, &target)| {
                    let target = target as usize;
                    if !any_grad {
                        let (max, lse) = log_sum_exp(row);
                        return (max + lse - row[target]) as f64;
                    }
                    // The exponentials are written over the logits as they are summed (the
                    // row is still in cache), so the gradient pass only scales them: one
                    // exponential per logit, not two.
                    let z_target = row[target];
                    let (max, sum) = fm::simd(
                        #[inline(always)]
                        || {
                            let max = fm::max(row);
                            let sum = fm::exp_shifted_in_place(row, max, 1.0);
                            let per_sum = per_row / sum;
                            for x in row.iter_mut() {
                                *x = fm::flush_tiny(*x * per_sum);
                            }
                            (max, sum)
                        },
                    );
                    row[target] -= per_row;
                    (max + sum.ln() - z_target) as f64
                })
                .sum::<f64>();
            let dz = View::rows(&z, rows, v);
            if self.want_grad {
                // Straight after the previous slices' rows, in the buffer's spare room.
                let dh = &mut grad.spare_capacity_mut()[..rows * width];
                matmul_uninit(dh, dz, head, threads);
                // SAFETY: `matmul_uninit` wrote these `rows · width` values, which follow
                // the `start · width` written before (capacity `n · width`).
                #[allow(unsafe_code)]
                unsafe {
                    grad.set_len((start + rows) * width)
                };
            }
            if self.want_weight_grad {
                // The first slice's product fills the buffer; the others add to it.
                if start == 0 {
                    weight_grad = product(dz.t(), hs, threads);
                } else {
                    matmul_into(&mut weight_grad, dz.t(), hs, true, threads);
                }
            }
        }
        if self.want_weight_grad && n == 0 {
            weight_grad = vec![0f32; v * width];
        }
        let cpu = candle_core::Device::Cpu;
        if self.want_grad {
            let g = Tensor::from_vec(grad, (n, width), &cpu)?;
            *self.grad.lock().expect("not poisoned") = Some(g);
        }
        if self.want_weight_grad {
            let g = Tensor::from_vec(weight_grad, (v, width), &cpu)?;
            *self.weight_grad.lock().expect("not poisoned") = Some(g);
        }
        Ok((
            CpuStorage::F32(vec![(total / n.max(1) as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _w: &Tensor,
        _t: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let scale = grad_loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let scaled = |g: &Mutex<Option<Tensor>>| -> Result<Option<Tensor>> {
            let g = g.lock().expect("not poisoned").clone();
            match g {
                Some(g) if scale != 1.0 => Ok(Some(g.affine(scale as f64, 0.0)?)),
                g => Ok(g),
            }
        };
        Ok((scaled(&self.grad)?, scaled(&self.weight_grad)?, None))
    }
}

/// The rows of a contiguous `[N, V]` f32 tensor and its `[N]` u32 targets, checked.
fn rows<'a>(
    z: &'a CpuStorage,
    lz: &Layout,
    t: &'a CpuStorage,
    lt: &Layout,
) -> Result<(&'a [f32], &'a [u32], usize)> {
    let (n, v) = lz.shape().dims2()?;
    let (Some((zs, ze)), Some((ts, te))) = (lz.contiguous_offsets(), lt.contiguous_offsets())
    else {
        bail!("cross-entropy: non-contiguous input");
    };
    let z = &z.as_slice::<f32>()?[zs..ze];
    let t = &t.as_slice::<u32>()?[ts..te];
    if t.len() != n {
        bail!("cross-entropy: {n} rows of logits but {} targets", t.len());
    }
    if let Some(bad) = t.iter().find(|&&x| x as usize >= v) {
        bail!("cross-entropy: target {bad} is outside a vocabulary of {v}");
    }
    Ok((z, t, v))
}

/// `max` and `ln Σ exp(z − max)` of one row.
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    fm::simd(
        #[inline(always)]
        || {
            let max = fm::max(row);
            (max, fm::sum_exp_shifted(row, max).ln())
        },
    )
}

/// Forward (`grad_scale` None): the mean loss. Backward (`Some(s)`): the logits' gradient
/// `s · (softmax(z) − onehot(t)) / N`.
struct CrossEntropy {
    grad_scale: Option<f32>,
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        z: &CpuStorage,
        lz: &Layout,
        t: &CpuStorage,
        lt: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (z, t, v) = rows(z, lz, t, lt)?;
        let n = t.len().max(1);
        let Some(scale) = self.grad_scale else {
            // Per-row losses summed in f64, so the mean does not depend on the thread split.
            let total: f64 = z
                .par_chunks(v)
                .zip(t.par_iter())
                .map(|(row, &target)| {
                    let (max, lse) = log_sum_exp(row);
                    (max + lse - row[target as usize]) as f64
                })
                .sum();
            return Ok((
                CpuStorage::F32(vec![(total / n as f64) as f32]),
                Shape::from(()),
            ));
        };
        let per_row = scale / n as f32;
        let mut out = vec![0f32; z.len()];
        out.par_chunks_mut(v)
            .zip(z.par_chunks(v))
            .zip(t.par_iter())
            .for_each(|((g, row), &target)| {
                let (max, lse) = log_sum_exp(row);
                let shift = max + lse;
                fm::simd(
                    #[inline(always)]
                    || {
                        for (g, x) in g.iter_mut().zip(row) {
                            *g = fm::flush_tiny(fm::exp(x - shift) * per_row);
                        }
                    },
                );
                g[target as usize] -= per_row;
            });
        Ok((CpuStorage::F32(out), lz.shape().clone()))
    }

    fn bwd(
        &self,
        z: &Tensor,
        t: &Tensor,
        _loss: &Tensor,
        grad_loss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad_loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let grad = z.apply_op2_no_bwd(
            t,
            &CrossEntropy {
                grad_scale: Some(scale),
            },
        )?;
        Ok((Some(grad), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Same loss and gradient as candle's log-softmax cross-entropy.
    #[test]
    fn matches_candle_cross_entropy_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let z = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (7, 50), &dev)?))?;
        let t = Tensor::new(&[0u32, 49, 3, 3, 17, 25, 8], &dev)?;
        let ours = cross_entropy(z.as_tensor(), &t)?;
        let theirs = candle_nn::loss::cross_entropy(z.as_tensor(), &t)?;
        let (a, b) = (ours.to_scalar::<f32>()?, theirs.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        // Through a scale, as when the loss joins a larger objective.
        let ga = (ours * 2.5)?.backward()?;
        let gb = (theirs * 2.5)?.backward()?;
        let d = (ga.get(z.as_tensor()).unwrap() - gb.get(z.as_tensor()).unwrap())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "{d}");
        Ok(())
    }

    /// The fused head-and-loss gives the loss and the hidden states' gradient of the head's
    /// logits followed by `cross_entropy`, over several slices of rows, through a scale.
    #[test]
    fn linear_cross_entropy_matches_the_head_then_the_loss() -> Result<()> {
        let dev = Device::Cpu;
        let (n, width, vocab) = (70, 24, 3000);
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, width), &dev)?)?;
        let w = Tensor::randn(0f32, 0.3, (vocab, width), &dev)?;
        let t: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % vocab as u32).collect();
        let t = Tensor::new(t.as_slice(), &dev)?;
        // Slices of at most 30 rows: 24, 24 and 22.
        let max_logits = 30 * vocab;
        assert_eq!(rows_per_slice(n, vocab, max_logits), 24);
        let ours = linear_cross_entropy_in_slices(h.as_tensor(), &w, &t, max_logits)?;
        let logits = h.as_tensor().matmul(&w.t()?)?;
        let theirs = candle_nn::loss::cross_entropy(&logits, &t)?;
        let (a, b) = (ours.to_scalar::<f32>()?, theirs.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        let ga = (ours * 0.75)?.backward()?;
        let gb = (theirs * 0.75)?.backward()?;
        let (ga, gb) = (
            ga.get(h.as_tensor()).unwrap(),
            gb.get(h.as_tensor()).unwrap(),
        );
        let d = crate::kernels::max_abs_diff(ga, gb)?;
        let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(
            scale > 1e-4 && d < 1e-5 * scale.max(1.0),
            "{d} (largest {scale})"
        );
        // Without a gradient to keep, nothing is computed for one.
        let no_grad = linear_cross_entropy_in_slices(&h.as_tensor().detach(), &w, &t, max_logits)?;
        assert_eq!(no_grad.to_scalar::<f32>()?, a);
        Ok(())
    }

    /// A trained head gets the gradient of head-then-cross-entropy, summed over slices (two
    /// here, the second short), and so does the hidden state beside it.
    #[test]
    fn linear_cross_entropy_trains_a_trained_head() -> Result<()> {
        let dev = Device::Cpu;
        let (n, vocab) = (71, 3000);
        let max_logits = 40 * vocab;
        assert_eq!(rows_per_slice(n, vocab, max_logits), 36);
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, 8), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (vocab, 8), &dev)?)?;
        let t: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % vocab as u32).collect();
        let t = Tensor::new(t.as_slice(), &dev)?;
        let ours =
            (linear_cross_entropy_in_slices(h.as_tensor(), w.as_tensor(), &t, max_logits)? * 1.5)?;
        let logits = h.as_tensor().matmul(&w.as_tensor().t()?)?;
        let theirs = (candle_nn::loss::cross_entropy(&logits, &t)? * 1.5)?;
        let (a, b) = (ours.to_scalar::<f32>()?, theirs.to_scalar::<f32>()?);
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        let (g, gt) = (ours.backward()?, theirs.backward()?);
        for x in [&h, &w] {
            let ours = g.get(x.as_tensor()).expect("a gradient");
            let theirs = gt.get(x.as_tensor()).unwrap();
            let d = crate::kernels::max_abs_diff(ours, theirs)?;
            let scale = theirs.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                scale > 1e-4 && d < 1e-5 * scale.max(1.0),
                "{d} (largest {scale})"
            );
        }
        Ok(())
    }

    /// Slices are as few as the limit allows and even, and always hold at least one row.
    #[test]
    fn slices_are_even_and_within_the_limit() {
        // SmolLM2's head at 8 × 128 tokens: two slices of 512 rows, not 682 and 342.
        assert_eq!(rows_per_slice(1024, 49_152, LOGITS_PER_SLICE), 512);
        for (n, v, max) in [
            (1024, 49_152, 16 << 20),
            (7, 10, 30),
            (5, 100, 10),
            (0, 5, 10),
        ] {
            let rows = rows_per_slice(n, v, max);
            let slices = n.max(1).div_ceil(rows);
            assert!(
                rows >= 1 && (rows * v <= max || rows == 1),
                "{n} {v} {max}: {rows}"
            );
            // One slice fewer could not hold them all within the limit.
            assert!(
                slices == 1 || (n.div_ceil(slices - 1)) * v > max,
                "{n} {v} {max}"
            );
            // The last slice is at most one row per slice short of the others.
            let last = n.max(1) - rows * (slices - 1);
            assert!(
                last >= 1 && last + slices > rows,
                "{n} {v} {max}: last {last}"
            );
        }
    }

    #[test]
    fn a_target_outside_the_vocabulary_is_an_error() -> Result<()> {
        let z = Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?;
        let t = Tensor::new(&[1u32, 4], &Device::Cpu)?;
        let e = cross_entropy(&z, &t).unwrap_err().to_string();
        assert!(e.contains("target 4"), "{e}");
        Ok(())
    }
}
