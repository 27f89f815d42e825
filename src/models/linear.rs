//! The projection every PEFT method that works on weights hooks into.

use candle_core::{Result, Tensor};

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

    /// `x Wᵀ` without the bias. Works on `[.., in]` by folding the leading dims into one, so
    /// the matmul is a single large GEMM.
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty") = self.out_dim();
        y.reshape(out_dims)
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

    /// The projection without its adapter.
    pub fn forward_base(&self, x: &Tensor) -> Result<Tensor> {
        self.base.forward(x)
    }
}
