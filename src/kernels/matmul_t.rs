//! `x · Wᵀ` as one op whose backward pass computes only the gradients the graph needs.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::kernels::gemm::{View, product};

/// `x · Wᵀ` as one op, for a frozen or a trained weight.
///
/// candle's matmul backward always computes the gradient of both operands; for a frozen
/// weight that is a whole extra GEMM per projection per step (a third of a PEFT step's
/// matmul work) and a weight-sized tensor kept in the gradient store, thrown away unused.
/// This op gives a gradient to the operands that are part of the graph only. For a trained
/// weight, candle's form is a matmul on the transposed weight: the weight's gradient comes
/// back transposed, through a transpose node that copies it into a zero-filled buffer.
/// Here it is computed as `gᵀ · x`, in the weight's own layout.
///
/// `x` may have any leading dims (`[.., k]`, contiguous): they are folded into the GEMM's
/// rows here rather than by reshape nodes around the op, because candle's backward pass
/// gives every node a zero-filled gradient buffer and an add (two reshapes per projection
/// per layer, each a pass over an activation-sized tensor, for nothing).
struct MatmulT;

/// `[.., k]` as the rows of a GEMM: `(rows, k)` and the contiguous 2-D layout over them.
pub fn rows_layout(l: &Layout, what: &str) -> Result<(usize, usize, Layout)> {
    let dims = l.shape().dims();
    let Some((&k, lead)) = dims.split_last() else {
        candle_core::bail!("{what}: a scalar has no rows");
    };
    if !l.is_contiguous() {
        candle_core::bail!("{what}: non-contiguous input");
    }
    let m = lead.iter().product::<usize>();
    Ok((
        m,
        k,
        Layout::contiguous_with_offset((m, k), l.start_offset()),
    ))
}

use super::with_last_dim;

impl MatmulT {
    /// `[.., k] · [n, k]ᵀ` through the backend's own GEMM, reading the weight transposed in place.
    fn fwd<S: BackendStorage>(x: &S, lx: &Layout, w: &S, lw: &Layout) -> Result<(S, Shape)> {
        let (m, k, rows) = rows_layout(lx, "matmul")?;
        let (n, k2) = lw.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("matmul: x is [{m}, {k}] but the weight is [{n}, {k2}]");
        }
        let out = x.matmul(w, (1, m, n, k), &rows, &lw.transpose(0, 1)?)?;
        Ok((out, with_last_dim(lx.shape(), n)))
    }
}

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if !(matches!(x, CpuStorage::F32(_)) && matches!(w, CpuStorage::F32(_))) {
            return Self::fwd(x, lx, w, lw);
        }
        // f32 through the GEMM straight into a new buffer: candle's zero-fills it first.
        let (xv, wv) = (View::of(x, lx)?, View::of(w, lw)?);
        if xv.dims().1 != wv.dims().1 {
            candle_core::bail!(
                "matmul: x is {:?} but the weight is {:?}",
                lx.dims(),
                lw.dims()
            );
        }
        let y = product(xv, wv.t(), rayon::current_num_threads());
        Ok((CpuStorage::F32(y), with_last_dim(lx.shape(), wv.dims().0)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        lx: &Layout,
        w: &candle_core::CudaStorage,
        lw: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Self::fwd(x, lx, w, lw)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The gradient is detached: these reshapes add no graph nodes. So are the operands
        // read here, or the gradients made from them would hold the graph alive.
        let (n, k) = w.dims2()?;
        let rows = grad_y.elem_count() / n.max(1);
        let g = grad_y.reshape((rows, n))?;
        let gx = match x.track_op() {
            true => Some(g.matmul(&w.detach())?.reshape(x.shape())?),
            false => None,
        };
        let gw = match w.track_op() {
            true => Some(g.t()?.matmul(&x.detach().reshape((rows, k))?)?),
            false => None,
        };
        Ok((gx, gw))
    }
}

/// `x · Wᵀ` for `x: [.., k]` (any leading dims, at least one), `w: [n, k]`, as one op
/// ([`MatmulT`]) whose backward pass computes only the gradients the graph needs. The
/// product runs in the weight's dtype: in a bf16/f16 run `x` is narrowed to it and the
/// result widened back to `x`'s (the residual stream stays f32), which is where mixed
/// precision saves its time.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() != w.dtype() {
        return matmul_t(&x.to_dtype(w.dtype())?, w)?.to_dtype(x.dtype());
    }
    if x.rank() < 2 {
        return on_rows(x, |x| matmul_t(x, w));
    }
    x.contiguous()?.apply_op2(w, MatmulT)
}

/// `f` applied to `x: [.., in]` with its leading dims folded into one (`[rows, in]`, so a
/// product is a single large GEMM), the result `[rows, out]` given them back: `[.., out]`.
pub fn on_rows(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let (lead, last) = dims.split_at(dims.len().saturating_sub(1));
    let y = f(&x.reshape((lead.iter().product::<usize>(), last[0]))?)?;
    let mut out = lead.to_vec();
    out.push(y.dim(1)?);
    y.reshape(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Same values as candle's matmul, the same gradient for `x`, and none for the weight.
    #[test]
    fn frozen_matmul_matches_matmul_and_skips_the_weight_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::arange(0f32, 12.0, &dev)?.reshape((3, 4))?.sin()?)?;
        let w = Tensor::arange(0f32, 20.0, &dev)?.reshape((5, 4))?.cos()?;
        let ours = matmul_t(x.as_tensor(), &w)?;
        let plain = x.as_tensor().matmul(&w.t()?)?;
        let diff = (&ours - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        let target = Tensor::ones((3, 5), candle_core::DType::F32, &dev)?;
        let g_ours = (ours - &target)?.sqr()?.sum_all()?.backward()?;
        let g_plain = (plain - &target)?.sqr()?.sum_all()?.backward()?;
        let (a, b) = (
            g_ours.get(x.as_tensor()).expect("x has a gradient"),
            g_plain.get(x.as_tensor()).expect("x has a gradient"),
        );
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        // candle's matmul computes a gradient for the (transposed) weight too; ours does not.
        let weight_shaped = |g: &candle_core::backprop::GradStore| {
            g.get_ids()
                .filter_map(|id| g.get_id(*id))
                .filter(|t| t.dims() == [4, 5] || t.dims() == [5, 4])
                .count()
        };
        assert_eq!(
            weight_shaped(&g_ours),
            0,
            "no gradient for the frozen weight"
        );
        assert_eq!(weight_shaped(&g_plain), 1);
        Ok(())
    }

    /// A trained weight gets candle's gradient for it, in its own layout, whatever the
    /// input's leading dims; the input, when it is not part of the graph, gets none.
    #[test]
    fn a_trained_weight_gets_the_gradient_of_matmul() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 4), &dev)?)?;
        let weights = Tensor::randn(0f32, 1.0, (2, 3, 5), &dev)?;
        for x_trained in [true, false] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, 4), &dev)?;
            let x = if x_trained {
                Var::from_tensor(&x)?.as_tensor().clone()
            } else {
                x
            };
            let ours = matmul_t(&x, w.as_tensor())?;
            let plain = x.broadcast_matmul(&w.as_tensor().t()?)?;
            assert!(crate::kernels::max_abs_diff(&ours, &plain)? < 1e-6);
            let g_ours = (ours * &weights)?.sum_all()?.backward()?;
            let g_plain = (plain * &weights)?.sum_all()?.backward()?;
            let (a, b) = (
                g_ours
                    .get(w.as_tensor())
                    .expect("the weight has a gradient"),
                g_plain.get(w.as_tensor()).unwrap(),
            );
            assert_eq!(a.dims(), [5, 4]);
            assert!(crate::kernels::max_abs_diff(a, b)? < 1e-5);
            if x_trained {
                let (a, b) = (
                    g_ours.get(&x).expect("x has a gradient"),
                    g_plain.get(&x).unwrap(),
                );
                assert!(crate::kernels::max_abs_diff(a, b)? < 1e-5);
            } else {
                assert!(g_ours.get(&x).is_none());
            }
        }
        Ok(())
    }
}
