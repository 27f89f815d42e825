//! Fused CPU kernels, each with its backward pass, for the element-wise parts of a LLaMA
//! block: rotary embedding, causal softmax, and SwiGLU.
//!
//! candle-nn's fast versions of these have no backward pass (gradients silently stop), and
//! the differentiable "slow" forms chain five to eight ops, each allocating a tensor and
//! each differentiated on its own. Here each is one pass forward and one or two backward.
//! Every op is checked against the slow composition (values and gradients) in the tests
//! below. Other devices use the slow forms.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;
use std::sync::Arc;

/// The contiguous f32 data of a CPU tensor argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => bail!("{what}: non-contiguous input"),
    }
}

fn fusable(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

// ---------------------------------------------------------------------------------------
// Rotary embedding (the "rotate half" form LLaMA uses).

/// Rotation tables `[positions, head_dim]` (each half repeated), kept as plain vectors so
/// the kernel can read them.
#[derive(Debug, Clone)]
pub struct RopeTables {
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
    pub head_dim: usize,
}

struct Rope {
    tables: RopeTables,
    offset: usize,
    /// Rotate by −θ: the backward pass of a rotation is the inverse rotation.
    inverse: bool,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "rope")?;
        let (_, _, t, d) = l.shape().dims4()?;
        let half = d / 2;
        let (cos, sin) = (&self.tables.cos, &self.tables.sin);
        if (self.offset + t) * d > cos.len() {
            bail!("rope: {} positions exceed the table", self.offset + t);
        }
        let sign = if self.inverse { -1.0 } else { 1.0 };
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(t * d)
            .zip(x.par_chunks(t * d))
            .for_each(|(o, x)| {
                for p in 0..t {
                    let row = (self.offset + p) * d;
                    let (xr, or) = (&x[p * d..(p + 1) * d], &mut o[p * d..(p + 1) * d]);
                    for i in 0..half {
                        let (c, s) = (cos[row + i], sign * sin[row + i]);
                        let (a, b) = (xr[i], xr[i + half]);
                        or[i] = a * c - b * s;
                        or[i + half] = b * c + a * s;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope {
            tables: self.tables.clone(),
            offset: self.offset,
            inverse: !self.inverse,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// `x: [B, H, T, D]` rotated at positions `offset..offset + T`.
pub fn rope(x: &Tensor, tables: &RopeTables, offset: usize) -> Result<Tensor> {
    let x = x.contiguous()?;
    x.apply_op1(Rope {
        tables: tables.clone(),
        offset,
        inverse: false,
    })
}

// ---------------------------------------------------------------------------------------
// Scaled, causally masked softmax over the last axis.

/// `softmax(scale · x)` over rows of length `s = p + t`, where the row of query `i` (the row
/// index modulo `t`) sees keys `0..=p + i` and the rest get probability 0.
struct CausalSoftmax {
    scale: f32,
    t: usize,
    p: usize,
}

impl CausalSoftmax {
    fn visible(&self, row: usize) -> usize {
        self.p + row % self.t + 1
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "fused-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "softmax")?;
        let len = self.p + self.t;
        if l.shape().dims().last() != Some(&len) {
            bail!("softmax: rows of {:?}, expected {len}", l.shape().dims());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(len)
            .zip(x.par_chunks(len))
            .enumerate()
            .for_each(|(r, (o, x))| {
                let n = self.visible(r);
                let max = x[..n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, x) in o[..n].iter_mut().zip(&x[..n]) {
                    *o = ((x - max) * self.scale).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o[..n].iter_mut().for_each(|v| *v *= inv);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    /// `scale · y ⊙ (g − Σ g ⊙ y)` row by row (masked entries have y = 0, so no gradient).
    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad * y)?.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some(
            ((grad.broadcast_sub(&dot)? * y)? * self.scale as f64)?,
        ))
    }
}

/// `softmax(scale · scores)` with the causal mask of `t` queries after `p` prefix keys,
/// over the last axis (`p + t` long); rows are queries in order, repeating every `t`.
pub fn causal_softmax(scores: &Tensor, scale: f64, t: usize, p: usize) -> Result<Tensor> {
    let scores = scores.contiguous()?;
    scores.apply_op1(CausalSoftmax {
        scale: scale as f32,
        t,
        p,
    })
}

// ---------------------------------------------------------------------------------------
// SwiGLU: silu(gate) ⊙ up.

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

struct Swiglu;

impl CustomOp2 for Swiglu {
    fn name(&self) -> &'static str {
        "fused-swiglu"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        lg: &Layout,
        us: &CpuStorage,
        lu: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (data(gs, lg, "swiglu")?, data(us, lu, "swiglu")?);
        // Collected straight into the output: no zero-filled buffer first.
        let out: Vec<f32> = g
            .par_iter()
            .with_min_len(4096)
            .zip(u.par_iter())
            .map(|(g, u)| g * sigmoid(*g) * u)
            .collect();
        Ok((CpuStorage::F32(out), lg.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let d_gate = gate.apply_op3_no_bwd(up, &grad, &SwigluGrad { wrt_gate: true })?;
        let d_up = gate.apply_op3_no_bwd(up, &grad, &SwigluGrad { wrt_gate: false })?;
        Ok((Some(d_gate), Some(d_up)))
    }
}

/// d/dgate = grad ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))); d/dup = grad ⊙ g σ(g).
struct SwigluGrad {
    wrt_gate: bool,
}

impl CustomOp3 for SwigluGrad {
    fn name(&self) -> &'static str {
        "fused-swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        gate_l: &Layout,
        up: &CpuStorage,
        up_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, u, d) = (
            data(gate, gate_l, "swiglu grad")?,
            data(up, up_l, "swiglu grad")?,
            data(grad, grad_l, "swiglu grad")?,
        );
        let out: Vec<f32> = g
            .par_iter()
            .with_min_len(4096)
            .zip(u.par_iter().zip(d.par_iter()))
            .map(|(g, (u, d))| {
                let s = sigmoid(*g);
                if self.wrt_gate {
                    d * u * s * (1.0 + g * (1.0 - s))
                } else {
                    d * g * s
                }
            })
            .collect();
        Ok((CpuStorage::F32(out), gate_l.shape().clone()))
    }
}

/// `silu(gate) ⊙ up`.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if !fusable(&[gate, up]) || gate.dims() != up.dims() {
        return gate.silu()? * up;
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, Swiglu)
}

/// Whether the fused kernels can run on `x`'s device and dtype.
pub fn available_for(x: &Tensor) -> bool {
    fusable(&[x])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device, Var};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::models::max_abs_diff(a, b).unwrap()
    }

    /// Values and the gradient of a weighted sum (weights make every output matter
    /// differently) against the composition of candle ops.
    fn check(
        x: &Var,
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        slow: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let (a, b) = (fused(x.as_tensor())?, slow(x.as_tensor())?);
        assert!(
            max_diff(&a, &b) < 1e-5,
            "values differ by {}",
            max_diff(&a, &b)
        );
        let w = Tensor::randn(0f32, 1.0, a.shape(), a.device())?;
        let ga = (a * &w)?.sum_all()?.backward()?;
        let gb = (b * &w)?.sum_all()?.backward()?;
        let (ga, gb) = (
            ga.get(x.as_tensor()).unwrap(),
            gb.get(x.as_tensor()).unwrap(),
        );
        assert!(
            max_diff(ga, gb) < 1e-4,
            "gradients differ by {}",
            max_diff(ga, gb)
        );
        Ok(())
    }

    #[test]
    fn rope_matches_rotate_half_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let (positions, d) = (20, 8);
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
            .collect();
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        for p in 0..positions {
            for h in 0..2 {
                let _ = h;
                for f in &inv {
                    cos.push((p as f32 * f).cos());
                    sin.push((p as f32 * f).sin());
                }
            }
        }
        let cos_t = Tensor::from_vec(cos.clone(), (positions, d), &dev)?;
        let sin_t = Tensor::from_vec(sin.clone(), (positions, d), &dev)?;
        let tables = RopeTables {
            cos: Arc::new(cos),
            sin: Arc::new(sin),
            head_dim: d,
        };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5, d), &dev)?)?;
        let offset = 4;
        check(
            &x,
            |x| rope(x, &tables, offset),
            |x| {
                let (c, s) = (cos_t.narrow(0, offset, 5)?, sin_t.narrow(0, offset, 5)?);
                let x1 = x.narrow(D::Minus1, 0, d / 2)?;
                let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                x.broadcast_mul(&c)? + rotated.broadcast_mul(&s)?
            },
        )
    }

    #[test]
    fn causal_softmax_matches_scale_mask_softmax_and_its_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let (t, p) = (4, 3);
        // Two heads' rows stacked, as grouped-query attention stacks them.
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (2, 2 * t, p + t), &dev)?)?;
        let mask: Vec<f32> = (0..2 * t)
            .flat_map(|r| {
                (0..p + t).map(move |j| {
                    if j <= p + r % t {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (2 * t, p + t), &dev)?;
        check(
            &x,
            |x| causal_softmax(x, 0.125, t, p),
            |x| candle_nn::ops::softmax(&(x * 0.125)?.broadcast_add(&mask)?, D::Minus1),
        )
    }

    #[test]
    fn swiglu_matches_silu_times_up_and_both_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let g = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 7), &dev)?)?;
        let u = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
        check(&g, |g| swiglu(g, &u), |g| g.silu()? * &u)?;
        let u = Var::from_tensor(&u)?;
        let gt = g.as_tensor().clone();
        check(&u, |u| swiglu(&gt, u), |u| gt.silu()? * u)
    }
}
