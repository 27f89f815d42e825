//! A whole feed-forward block of frozen weights as one op.

use super::swiglu::{Swiglu, swiglu_grad};
use super::*;

/// A whole feed-forward block of frozen weights, `((silu(x W_gᵀ) ⊙ x W_uᵀ) ⊙ l) W_dᵀ` (`l`
/// only with `scaled`: IA3 on the down projection), as one op whose only activation input
/// is `x`.
///
/// As two projections and [`Swiglu`], the backward pass gives `gate` and `up` gradients of
/// their own: two graph edges on the block's widest tensors, each of which candle's
/// backward pass fills into a zeroed buffer and adds, then two more into `x`, added again.
/// Here the op keeps `gate` and `up` (as the SwiGLU op kept them) and their gradients never
/// leave it: `dx = d_gate W_g + d_up W_u`, summed by the GEMM.
struct FrozenMlp {
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    scaled: bool,
    /// Whether a backward pass can follow (an input is part of a graph): only then are
    /// `gate` and `up` kept.
    keep: bool,
    /// `gate` and `up`, from the forward pass to the backward one, which takes them.
    kept: std::sync::Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl FrozenMlp {
    /// `(hidden, inner, out)`, checked across the three weights.
    fn sizes(&self) -> Result<(usize, usize, usize)> {
        let (inner, hidden) = self.gate.dims2()?;
        let (out, inner_d) = self.down.dims2()?;
        if self.up.dims() != [inner, hidden] || inner_d != inner {
            bail!(
                "frozen MLP: gate {:?}, up {:?}, down {:?}",
                self.gate.dims(),
                self.up.dims(),
                self.down.dims()
            );
        }
        Ok((hidden, inner, out))
    }
}

impl CustomOp2 for FrozenMlp {
    fn name(&self) -> &'static str {
        "fused-frozen-mlp"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        ls: &CpuStorage,
        ll: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (hidden, inner, out) = self.sizes()?;
        let x = data(xs, lx, "frozen MLP")?;
        let l = if self.scaled {
            Some(data(ls, ll, "frozen MLP scale")?)
        } else {
            None
        };
        if lx.dims().last() != Some(&hidden) || l.is_some_and(|l| l.len() != inner) {
            bail!(
                "frozen MLP: input {:?} (scale {:?}) for weights {hidden} → {inner} → {out}",
                lx.dims(),
                l.map(|l| l.len())
            );
        }
        let rows = x.len() / hidden.max(1);
        let threads = rayon::current_num_threads();
        let x = View::rows(x, rows, hidden);
        let (gate, up, y) = slices(&[&self.gate, &self.up, &self.down], |w| {
            let (wg, wu) = (
                View::rows(w[0], inner, hidden),
                View::rows(w[1], inner, hidden),
            );
            let (gate, up) = (product(x, wg.t(), threads), product(x, wu.t(), threads));
            let h = Swiglu::product(&gate, &up, l);
            let h = View::rows(&h, rows, inner);
            let y = product(h, View::rows(w[2], out, inner).t(), threads);
            Ok((gate, up, y))
        })?;
        if self.keep {
            *self.kept.lock().expect("not poisoned") = Some((gate, up));
        }
        Ok((
            CpuStorage::F32(y),
            crate::kernels::with_last_dim(lx.shape(), out),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (hidden, inner, out) = self.sizes()?;
        let Some((gate, up)) = self.kept.lock().expect("not poisoned").take() else {
            bail!("frozen MLP: a second backward pass through one forward pass");
        };
        let rows = gate.len() / inner.max(1);
        let grad = grad.contiguous()?;
        let l = if self.scaled {
            Some(scale.flatten_all()?.to_vec1::<f32>()?)
        } else {
            None
        };
        let threads = rayon::current_num_threads();
        let (dx, d_l) = slices(&[&grad, &self.gate, &self.up, &self.down], |t| {
            let wd = View::rows(t[3], out, inner);
            let dh = product(View::rows(t[0], rows, out), wd, threads);
            let (d_gate, d_up, d_l) = swiglu_grad(&gate, &up, &dh, l.as_deref(), inner);
            drop((gate, up, dh));
            let (wg, wu) = (
                View::rows(t[1], inner, hidden),
                View::rows(t[2], inner, hidden),
            );
            let mut dx = product(View::rows(&d_gate, rows, inner), wg, threads);
            matmul_into(&mut dx, View::rows(&d_up, rows, inner), wu, true, threads);
            Ok((dx, d_l))
        })?;
        let dev = x.device();
        let d_scale = match d_l {
            Some(d_l) => Some(Tensor::from_vec(d_l, scale.shape(), dev)?),
            None => None,
        };
        Ok((Some(Tensor::from_vec(dx, x.shape(), dev)?), d_scale))
    }
}

/// `((silu(x W_gᵀ) ⊙ x W_uᵀ) ⊙ l) Wᵀ_d` (without `l` when `scale` is `None`) as one op when
/// the three weights (`[inner, hidden]`, `[inner, hidden]`, `[out, inner]`) are frozen f32,
/// `l` an f32 vector `[inner]` and all is on the CPU; `None` where it cannot run (the caller
/// composes the parts).
pub fn frozen_mlp(
    x: &Tensor,
    gate: &Tensor,
    up: &Tensor,
    down: &Tensor,
    scale: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let weights = [gate, up, down];
    if !fusable(&[x, gate, up, down])
        || weights.iter().any(|w| w.track_op() || w.rank() != 2)
        || x.rank() < 2
        || x.dims().last() != Some(&gate.dim(1)?)
    {
        return Ok(None);
    }
    if let Some(l) = scale
        && (!fusable(&[l]) || l.dims() != [gate.dim(0)?])
    {
        return Ok(None);
    }
    let op = FrozenMlp {
        gate: gate.contiguous()?,
        up: up.contiguous()?,
        down: down.contiguous()?,
        scaled: scale.is_some(),
        keep: x.track_op() || scale.is_some_and(|l| l.track_op()),
        kept: std::sync::Mutex::new(None),
    };
    if op.sizes().is_err() {
        return Ok(None);
    }
    let scale = match scale {
        Some(l) => l.contiguous()?,
        None => Tensor::zeros(1, DType::F32, x.device())?,
    };
    Ok(Some(x.contiguous()?.apply_op2(&scale, op)?))
}
