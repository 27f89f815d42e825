//! The projection every PEFT method that works on weights hooks into.

use candle_core::{Result, Tensor};

pub use crate::kernels::matmul_t::{matmul_t, on_rows};

/// A frozen projection `y = x Wᵀ + b`; the weight is `[out, in]` as in PyTorch's
/// `nn.Linear`.
#[derive(Debug, Clone)]
pub struct Projection {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Projection {
    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The weight in f32, whatever it is stored in: adapters that combine it with their own
    /// (f32) parameters element by element — a merge, DoRA's norms — work on this.
    pub fn weight_f32(&self) -> Result<Tensor> {
        self.weight.to_dtype(candle_core::DType::F32)
    }

    /// `x Wᵀ` without the bias. Works on `[.., in]` by folding the leading dims into one, so
    /// the matmul is a single large GEMM.
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        matmul_t(x, &self.weight)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.forward_no_bias(x)?;
        self.add_bias(&y)
    }

    pub fn add_bias(&self, y: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y.clone()),
        }
    }
}

/// Replaces what a frozen projection computes: LoRA adds a low-rank term, IA3 rescales the
/// input or the output, DoRA renormalises the weight. `train` is false at evaluation,
/// turning dropout off.
pub trait LinearAdapter: Send + Sync + std::fmt::Debug {
    fn forward(&self, x: &Tensor, base: &Projection, train: bool) -> Result<Tensor>;

    /// The plain projection that computes what this adapted one does (the adapter folded
    /// into the weights), or `None` when the adapter cannot be folded.
    fn merged(&self, _base: &Projection) -> Result<Option<Projection>> {
        Ok(None)
    }

    /// `(B, A)` with the low-rank update `B·A` (`[out, r]`, `[r, in]`, scaling folded into
    /// B) for a low-rank adapter (LoRA, DoRA's direction, AdaLoRA's `PΛ`, `Q`); None for
    /// others. The update map reads its singular values from them.
    fn low_rank_factors(&self) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }

    /// `Some(l)` when this adapter only scales the projection's input column by column,
    /// `y = (x ⊙ l) Wᵀ + b` (IA3 on a feed-forward projection): the scaling can then join
    /// an op fused with the step before.
    fn input_scale(&self) -> Option<&Tensor> {
        None
    }
}

/// A projection, optionally passed through an adapter.
#[derive(Debug)]
pub struct Linear {
    base: Projection,
    adapter: Option<Box<dyn LinearAdapter>>,
}

impl Linear {
    pub fn new(base: Projection, adapter: Option<Box<dyn LinearAdapter>>) -> Self {
        Self { base, adapter }
    }

    pub fn weight(&self) -> &Tensor {
        &self.base.weight
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.adapter {
            Some(a) => a.forward(x, &self.base, train),
            None => self.base.forward(x),
        }
    }

    /// What an op fusing this projection with the step before needs to know, when the
    /// projection has no bias, its weight is not trained and its adapter (if any) only
    /// scales its input: the weight, and that scale.
    pub fn frozen_weight_and_input_scale(&self) -> Option<(&Tensor, Option<&Tensor>)> {
        if self.base.bias.is_some() || self.base.weight.track_op() {
            return None;
        }
        match &self.adapter {
            None => Some((&self.base.weight, None)),
            Some(a) => a.input_scale().map(|l| (&self.base.weight, Some(l))),
        }
    }

    /// Whether the backward pass leaves this projection's input unread: a frozen weight
    /// and no adapter (its gradient for the input needs only the weight).
    pub fn backward_ignores_input(&self) -> bool {
        self.adapter.is_none() && !self.base.weight.track_op()
    }

    /// The projection without its adapter.
    pub fn forward_base(&self, x: &Tensor) -> Result<Tensor> {
        self.base.forward(x)
    }
}
