//! RMSNorm: x / √(mean(x²) + ε) ⊙ w over the last axis.

use super::*;

/// candle-nn's `rms_norm_slow` is seven ops, each keeping its output for the backward pass
/// (seven activation-sized tensors per norm, two norms per block); this keeps none but its
/// output and recomputes the row's scale when differentiated.
struct RmsNorm {
    eps: f32,
}

/// `1 / √(mean(x²) + ε)` of one row.
#[inline(always)]
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (fm::dot(x, x) / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (data(xs, lx, "rms norm")?, data(ws, lw, "rms norm")?);
        let d = w.len();
        if lx.dims().last() != Some(&d) {
            bail!("rms norm: rows of {:?}, weight of {d}", lx.dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(16)
            .for_each(|(o, x)| {
                fm::simd(
                    #[inline(always)]
                    || {
                        let r = inv_rms(x, self.eps);
                        for (o, (x, w)) in o.iter_mut().zip(x.iter().zip(w)) {
                            *o = x * r * w;
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let want_w = w.track_op();
        let out = x.apply_op3_no_bwd(
            w,
            &grad,
            &RmsNormGrad {
                eps: self.eps,
                want_w,
            },
        )?;
        let rows = x.elem_count() / w.elem_count();
        let d_x = out.narrow(0, 0, rows)?.reshape(x.shape())?;
        let d_w = if want_w { Some(out.get(rows)?) } else { None };
        Ok((Some(d_x), d_w))
    }
}

/// `[rows (+ 1), d]`: d/dx = r ⊙ (g⊙w − n · mean(g⊙w⊙n)) per row with n = x·r, and, when the
/// weight is trained, one more row d/dw = Σ_rows g ⊙ n.
struct RmsNormGrad {
    eps: f32,
    want_w: bool,
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "fused-rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ws: &CpuStorage,
        lw: &Layout,
        gs: &CpuStorage,
        lg: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, g) = data3((xs, lx), (ws, lw), (gs, lg), "rms norm grad")?;
        let d = w.len();
        let rows = x.len() / d;
        if g.len() != x.len() {
            bail!("rms norm grad: {} values, {} gradients", x.len(), g.len());
        }
        let mut out = vec![0f32; (rows + self.want_w as usize) * d];
        let (d_x, d_w) = out.split_at_mut(rows * d);
        // Blocks of rows, each with its own partial d/dw, summed after.
        const BLOCK: usize = 32;
        let partial_w: Vec<Vec<f32>> = d_x
            .par_chunks_mut(BLOCK * d)
            .zip(x.par_chunks(BLOCK * d).zip(g.par_chunks(BLOCK * d)))
            .map(|(dx, (x, g))| {
                let mut pw = if self.want_w {
                    vec![0f32; d]
                } else {
                    Vec::new()
                };
                let mut gw = vec![0f32; d];
                let rows = dx.chunks_mut(d).zip(x.chunks(d).zip(g.chunks(d)));
                fm::simd(
                    #[inline(always)]
                    || {
                        for (dx, (x, g)) in rows {
                            let r = inv_rms(x, self.eps);
                            for (gw, (g, w)) in gw.iter_mut().zip(g.iter().zip(w)) {
                                *gw = g * w;
                            }
                            // mean(g⊙w⊙n) = r · (g⊙w)·x / d
                            let c = r * fm::dot(&gw, x) / d as f32;
                            for (dx, (gw, x)) in dx.iter_mut().zip(gw.iter().zip(x)) {
                                *dx = r * (gw - x * r * c);
                            }
                            if self.want_w {
                                for (pw, (g, x)) in pw.iter_mut().zip(g.iter().zip(x)) {
                                    *pw += g * x * r;
                                }
                            }
                        }
                    },
                );
                pw
            })
            .collect();
        if self.want_w {
            for p in &partial_w {
                for (a, b) in d_w.iter_mut().zip(p) {
                    *a += b;
                }
            }
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((rows + self.want_w as usize, d)),
        ))
    }
}

/// RMSNorm over the last axis of `x` with weight `w` (`[d]`); candle-nn's differentiable
/// composition where the fused kernel cannot run.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if !fusable(&[x, w]) || w.rank() != 1 || x.dims().last() != Some(&w.elem_count()) {
        return candle_nn::ops::rms_norm_slow(x, w, eps);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}
