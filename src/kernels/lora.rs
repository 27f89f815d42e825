//! LoRA's adapted projection, `x Wᵀ + b + s·(x Aᵀ) Bᵀ`, as one op with its backward pass.

use candle_core::{CpuStorage, CustomOp3, D, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fused::slices;
use super::gemm::{View, matmul_into, product};

/// The adapted projection of `x: [.., in]` with `A: [r, in]`, `B: [out, r]`, the frozen f32
/// base `weight: [out, in]` (and `bias`) on the CPU, scaled by `scaling`: one op
/// ([`FusedLora`]). The caller checks the fused kernels are available.
pub fn lora_linear(
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    scaling: f64,
) -> candle_core::Result<Tensor> {
    let op = FusedLora {
        weight: weight.clone(),
        bias: bias.cloned(),
        scaling,
    };
    // The op folds x's leading dims itself: no reshape nodes, whose backward passes would
    // each cost a zero-filled buffer and an add.
    x.contiguous()?
        .apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}

/// `x Wᵀ + b + s·(x Aᵀ) Bᵀ` for `x: [.., in]` (any leading dims, read as rows), `A: [r, in]`, `B: [out, r]` and a frozen
/// f32 base `W` on the CPU, as one op.
///
/// Composed from candle ops, the branch keeps the base output, the branch output and its
/// scaled copy for the backward pass: three tensors the size of the projection's output,
/// per adapted projection per layer, none of which the gradients need. This op keeps `x`,
/// `A` and `B` (the base is not an input: it is frozen) and recomputes the rank-r `x Aᵀ`,
/// a sliver of the projection's work, when differentiating.
struct FusedLora {
    weight: Tensor,
    bias: Option<Tensor>,
    scaling: f64,
}

impl CustomOp3 for FusedLora {
    fn name(&self) -> &'static str {
        "fused-lora"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        crate::kernels::fused::with_cpu_storage(&self.weight, |w, lw| {
            self.fwd((x, lx), (a, la), (b, lb), (w, lw))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let in_dim = x.dim(D::Minus1)?;
        let rows = x.elem_count() / in_dim.max(1);
        let (r, out) = (a.dim(0)?, b.dim(0)?);
        let (x, a, b, g) = (
            x.contiguous()?,
            a.contiguous()?,
            b.contiguous()?,
            g.contiguous()?,
        );
        let w = self.weight.contiguous()?;
        let s = self.scaling as f32;
        let threads = rayon::current_num_threads();
        // Straight into the three gradients' buffers: the base and branch parts of x's
        // gradient summed by the GEMM itself, the scaling applied to rank-r products.
        let (gx, ga, gb) = slices(&[&x, &a, &b, &g, &w], |t| {
            let [x, a, b, g, w] = [t[0], t[1], t[2], t[3], t[4]];
            let (x, a) = (View::rows(x, rows, in_dim), View::rows(a, r, in_dim));
            let (b, g) = (View::rows(b, out, r), View::rows(g, rows, out));
            let u = product(x, a.t(), threads);
            let mut gu = product(g, b, threads);
            gu.iter_mut().for_each(|v| *v *= s);
            let mut gb = product(g.t(), View::rows(&u, rows, r), threads);
            gb.iter_mut().for_each(|v| *v *= s);
            let gu = View::rows(&gu, rows, r);
            let ga = product(gu.t(), x, threads);
            let mut gx = product(g, View::rows(w, out, in_dim), threads);
            matmul_into(&mut gx, gu, a, true, threads);
            Ok((gx, ga, gb))
        })?;
        let dev = x.device();
        let gx = Tensor::from_vec(gx, x.shape(), dev)?;
        let ga = Tensor::from_vec(ga, (r, in_dim), dev)?;
        let gb = Tensor::from_vec(gb, (out, r), dev)?;
        Ok((Some(gx), Some(ga), Some(gb)))
    }
}

type Arg<'a> = (&'a CpuStorage, &'a Layout);

impl FusedLora {
    fn fwd(
        &self,
        (x, lx): Arg,
        (a, la): Arg,
        (b, lb): Arg,
        (w, lw): Arg,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, in_dim, lx2) = super::matmul_t::rows_layout(lx, "fused LoRA")?;
        let (r, in_a) = la.shape().dims2()?;
        let (out, r_b) = lb.shape().dims2()?;
        if in_a != in_dim || r_b != r || lw.shape().dims() != [out, in_dim] {
            candle_core::bail!(
                "fused LoRA: x {:?}, A {:?}, B {:?}, W {:?}",
                lx.shape().dims(),
                la.shape().dims(),
                lb.shape().dims(),
                lw.shape().dims()
            );
        }
        let bias = match &self.bias {
            Some(bias) => Some(bias.flatten_all()?.to_vec1::<f32>()?),
            None => None,
        };
        let threads = rayon::current_num_threads();
        let x = View::of(x, &lx2)?;
        let (a, b, w) = (View::of(a, la)?, View::of(b, lb)?, View::of(w, lw)?);
        // y = x Wᵀ, then y += (s · x Aᵀ) Bᵀ summed by the GEMM itself: the branch's
        // output never has a buffer of its own.
        let mut y = product(x, w.t(), threads);
        let mut u = product(x, a.t(), threads);
        let s = self.scaling as f32;
        u.iter_mut().for_each(|v| *v *= s);
        matmul_into(&mut y, View::rows(&u, rows, r), b.t(), true, threads);
        if let Some(bias) = &bias {
            y.par_chunks_mut(out).for_each(|y| {
                for (y, b) in y.iter_mut().zip(bias) {
                    *y += b;
                }
            });
        }
        let y = CpuStorage::F32(y);
        Ok((y, super::with_last_dim(lx.shape(), out)))
    }
}
