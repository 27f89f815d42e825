//! Seeded initialisers, so a run with a given seed starts from the same weights every time
//! (candle's own random tensors are not seeded).

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, rngs::StdRng};
use rand_distr::{Distribution, Normal};

/// U(−bound, bound) of `shape`.
pub fn uniform(rng: &mut StdRng, shape: &[usize], bound: f32, device: &Device) -> Result<Var> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..=bound)).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, device)?)
}

/// N(0, std²) of `shape`.
pub fn normal(rng: &mut StdRng, shape: &[usize], std: f32, device: &Device) -> Result<Var> {
    let n: usize = shape.iter().product();
    let dist = Normal::new(0.0f32, std).expect("std is finite and positive");
    let v: Vec<f32> = (0..n).map(|_| dist.sample(rng)).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, device)?)
}

/// A constant of `shape`.
pub fn constant(shape: &[usize], value: f32, device: &Device) -> Result<Var> {
    Var::from_tensor(&(Tensor::ones(shape, candle_core::DType::F32, device)? * value as f64)?)
}

/// A trainable `nn.Linear(in_dim, out_dim)` with PyTorch's default initialisation
/// (weight and bias U(±1/√in)).
#[derive(Debug, Clone)]
pub struct TrainLinear {
    pub weight: Var,
    pub bias: Var,
}

impl TrainLinear {
    pub fn new(rng: &mut StdRng, in_dim: usize, out_dim: usize, device: &Device) -> Result<Self> {
        let bound = 1.0 / (in_dim as f32).sqrt();
        Ok(Self {
            weight: uniform(rng, &[out_dim, in_dim], bound, device)?,
            bias: uniform(rng, &[out_dim], bound, device)?,
        })
    }

    /// `x: [rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }

    pub fn param_count(in_dim: usize, out_dim: usize) -> usize {
        in_dim * out_dim + out_dim
    }

    /// Its tensors named `{prefix}.weight`, `{prefix}.bias`.
    pub fn named(&self, prefix: &str) -> [(String, Var); 2] {
        [
            (format!("{prefix}.weight"), self.weight.clone()),
            (format!("{prefix}.bias"), self.bias.clone()),
        ]
    }
}
