//! The CPU kernels: custom candle ops with hand-written backward passes (attention, RMSNorm,
//! rotary embeddings, SwiGLU, the frozen MLP), the GEMM plumbing they share and SIMD
//! element-wise math. Candle only: nothing here knows a model, a method or the trainer, so
//! `models/` reads like candle-transformers and `peft/` like PEFT's tuners. Every op is
//! checked against the composition of candle ops it replaces, values and gradients.

pub mod adamw;
pub mod fast_math;
pub mod fused;
pub mod gemm;
pub mod lora;
pub mod loss;
pub mod matmul_t;
pub mod scaled_linear;

use candle_core::{Shape, Tensor};

/// Largest absolute elementwise difference of two tensors of one shape (the tests' and the
/// reference checks' measure of agreement).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// The shape `[.., n]`: `x`'s leading dims and a last dim of `n`.
pub(crate) fn with_last_dim(x: &Shape, n: usize) -> Shape {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Shape::from(dims)
}
