//! Fused CPU kernels, each with its backward pass, for the parts of a LLaMA block between
//! its projections: splitting into heads with the rotary embedding, causal attention,
//! SwiGLU (alone and with a frozen down projection) and RMSNorm.
//!
//! candle-nn's fast versions of the element-wise ones have no backward pass (gradients
//! silently stop), and the differentiable compositions chain five to eight ops, each
//! allocating a tensor, each kept for the backward pass and each given a zero-filled
//! gradient buffer there. Here each is one pass forward and one or two backward, and keeps
//! only what its gradient needs. Every op is checked against the composition (values and
//! gradients) in `tests.rs`. Other devices use the compositions.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, bail,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::fast_math as fm;
use super::gemm::{View, matmul_into, matmul_uninit, product, threads_per_product, written};

/// The contiguous f32 data of a CPU tensor argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => bail!("{what}: non-contiguous input"),
    }
}

/// The three contiguous f32 arguments of a `CustomOp3`.
fn data3<'a>(
    (a, la): (&'a CpuStorage, &Layout),
    (b, lb): (&'a CpuStorage, &Layout),
    (c, lc): (&'a CpuStorage, &Layout),
    what: &str,
) -> Result<(&'a [f32], &'a [f32], &'a [f32])> {
    Ok((data(a, la, what)?, data(b, lb, what)?, data(c, lc, what)?))
}

fn fusable(ts: &[&Tensor]) -> bool {
    FUSED_ON.with(|on| on.get())
        && ts
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

thread_local! {
    static FUSED_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Runs `f` with the fused kernels turned off on this thread: every model then takes the
/// composed candle ops a GPU runs, so the tests check that path's values and gradients on a
/// machine without one. (Graphs are built and differentiated on the calling thread.)
pub fn without_fused_kernels<R>(f: impl FnOnce() -> R) -> R {
    let before = FUSED_ON.with(|on| on.replace(false));
    let out = f();
    FUSED_ON.with(|on| on.set(before));
    out
}

mod attention;
mod frozen_mlp;
mod rms_norm;
mod rope;
mod swiglu;
#[cfg(test)]
mod tests;

pub use attention::attention;
pub use frozen_mlp::frozen_mlp;
pub use rms_norm::rms_norm;
pub use rope::{RopeTables, to_heads};
pub use swiglu::{swiglu, swiglu_down};

/// Frees the data of `x`, an activation of a training step whose consumers have all run,
/// when it is on the CPU and part of the graph; the tensor stays in the graph as a shape.
///
/// candle keeps every op's inputs alive until the backward pass ends, whether that op's
/// gradient reads them or not, so a projection's output (read by nothing but the heads
/// split, whose gradient is a permutation), the attention's output before a frozen output
/// projection, a residual branch before its add, are all held to the end: about a third
/// of a LLaMA step's activations. The caller promises that no later forward op reads `x`
/// and that no backward pass reads it — neither its consumers' (they only need their
/// weights, or nothing) nor that of the op that made it (matmuls, adds and products: none
/// reads its own output). `tests/methods.rs` checks every method's gradients against the
/// composed path, which releases nothing.
pub fn release_activation(x: &Tensor) -> Result<()> {
    if !fusable(&[x]) || !x.track_op() {
        return Ok(());
    }
    x.inplace_op1(&Release)
}

struct Release;

impl candle_core::InplaceOp1 for Release {
    fn name(&self) -> &'static str {
        "release-activation"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, _l: &Layout) -> Result<()> {
        *s = CpuStorage::F32(Vec::new());
        Ok(())
    }
}

/// Runs `f` on the storage of a CPU tensor an op holds besides its arguments (a frozen
/// weight), read in place.
pub fn with_cpu_storage<R>(
    t: &Tensor,
    f: impl FnOnce(&CpuStorage, &Layout) -> Result<R>,
) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => f(s, layout),
        _ => bail!("a fused CPU op was given a tensor that is not on the CPU"),
    }
}

/// Runs `f` on the f32 data of contiguous CPU tensors, in the order given.
pub fn slices<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let data = held
        .iter()
        .map(|(storage, layout)| match &**storage {
            candle_core::Storage::Cpu(s) => data(s, layout, "fused op"),
            _ => bail!("a fused CPU op was given a tensor that is not on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    f(&data)
}

/// Whether the fused kernels can run on `x`'s device and dtype.
pub fn available_for(x: &Tensor) -> bool {
    fusable(&[x])
}
