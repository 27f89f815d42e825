//! A frozen projection with its output scaled per column, `y = (x Wᵀ + b) ⊙ l` (IA3 on an
//! attention projection), as one op with its backward pass.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// `(x Wᵀ + b) ⊙ l` for `x: [.., in]`, the frozen f32 `weight: [out, in]` (and `bias`) on
/// the CPU and `l: [out]`: one op ([`OutputScaled`]). The caller checks the fused kernels
/// are available.
pub fn scaled_linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    l: &Tensor,
) -> candle_core::Result<Tensor> {
    let op = OutputScaled {
        weight: weight.clone(),
        bias: bias.cloned(),
        keep: x.track_op() || l.track_op(),
        kept: std::sync::Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&l.contiguous()?, op)
}

/// IA3 on an attention projection, `y = (x Wᵀ + b) ⊙ l`, as one op.
///
/// Composed, the projection's output is a graph node kept by the broadcast multiply, whose
/// backward pass makes a full-size product for the scale's gradient, reduces it, and gives
/// both inputs zero-filled gradient buffers to add into. Here the op keeps the unscaled
/// output itself (what the composition kept) and returns `dx = (g ⊙ l) W` and
/// `dl = Σ over rows of g ⊙ (x Wᵀ + b)`.
struct OutputScaled {
    weight: Tensor,
    bias: Option<Tensor>,
    /// Whether a backward pass can follow: only then is the unscaled output kept.
    keep: bool,
    /// The unscaled output `[rows, out]`, from the forward pass to the backward one.
    kept: std::sync::Mutex<Option<Tensor>>,
}

impl CustomOp2 for OutputScaled {
    fn name(&self) -> &'static str {
        "ia3-output-scaled"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        l: &CpuStorage,
        ll: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, in_dim, lx2) = super::matmul_t::rows_layout(lx, "IA3")?;
        let out = self.weight.dim(0)?;
        if self.weight.dims() != [out, in_dim] || ll.dims() != [out] {
            candle_core::bail!(
                "IA3: x {:?}, scale {:?}, weight {:?}",
                lx.dims(),
                ll.dims(),
                self.weight.dims()
            );
        }
        let Some((l0, l1)) = ll.contiguous_offsets() else {
            candle_core::bail!("IA3: non-contiguous scale");
        };
        let scale = &l.as_slice::<f32>()?[l0..l1];
        let mut u = super::fused::with_cpu_storage(&self.weight, |w, lw| {
            x.matmul(w, (1, rows, out, in_dim), &lx2, &lw.transpose(0, 1)?)
        })?;
        let bias = match &self.bias {
            Some(b) => Some(b.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let CpuStorage::F32(us) = &mut u else {
            candle_core::bail!("IA3: f32 only");
        };
        // One pass: the bias joins the kept output, the scale only the result. Row by row
        // into a buffer of the result's size (an indexed write, not a collected stream).
        let mut y = vec![0f32; us.len()];
        y.par_chunks_mut(out)
            .zip(us.par_chunks_mut(out))
            .for_each(|(y, u)| {
                for (i, (y, u)) in y.iter_mut().zip(u.iter_mut()).enumerate() {
                    if let Some(bias) = &bias {
                        *u += bias[i];
                    }
                    *y = *u * scale[i];
                }
            });
        if self.keep {
            let u = std::mem::take(us);
            let kept = Tensor::from_vec(u, (rows, out), &Device::Cpu)?;
            *self.kept.lock().expect("not poisoned") = Some(kept);
        }
        let shape = super::with_last_dim(lx.shape(), out);
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        l: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(u) = self.kept.lock().expect("not poisoned").take() else {
            candle_core::bail!("IA3: a second backward pass through one forward pass");
        };
        let (rows, out) = u.dims2()?;
        // Detached, as candle's own backward passes read the graph's tensors.
        let (want_dl, want_dx) = (l.track_op(), x.track_op());
        let (g, l) = (grad.reshape((rows, out))?, l.detach());
        let dl = match want_dl {
            true => Some((&g * &u)?.sum(0)?),
            false => None,
        };
        let dx = match want_dx {
            true => Some(
                g.broadcast_mul(&l)?
                    .matmul(&self.weight)?
                    .reshape(x.shape())?,
            ),
            false => None,
        };
        Ok((dx, dl))
    }
}
