//! The projection every PEFT method that works on weights hooks into.

use candle_core::{Result, Tensor};

/// Changes what a frozen projection returns. LoRA adds a low-rank term; other methods
/// (IA3, DoRA) rescale it. `train` is false at evaluation, turning dropout off.
pub trait LinearAdapter: Send + Sync + std::fmt::Debug {
    fn forward(&self, x: &Tensor, base_out: &Tensor, train: bool) -> Result<Tensor>;
}

/// `y = x Wᵀ + b`, optionally passed through an adapter. The weight is `[out, in]` as in
/// PyTorch's `nn.Linear`.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    adapter: Option<Box<dyn LinearAdapter>>,
}

impl Linear {
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        adapter: Option<Box<dyn LinearAdapter>>,
    ) -> Self {
        Self {
            weight,
            bias,
            adapter,
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let base = self.forward_base(x)?;
        match &self.adapter {
            Some(a) => a.forward(x, &base, train),
            None => Ok(base),
        }
    }

    /// The projection without its adapter. Works on `[.., in]` by folding the leading dims
    /// into one, so the matmul is a single large GEMM.
    pub fn forward_base(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty") = y.dim(1)?;
        y.reshape(out_dims)
    }
}
