//! DoRA (Liu et al., 2024), as Hugging Face PEFT computes it: the adapted weight
//! `W' = W + s·B·A` is split into a learned magnitude `m` (one per output row, initialised to
//! the row norms of `W`) and a direction `W' / ‖W'‖`. The norm is treated as a constant in
//! the backward pass (the paper's §4.3), so
//! `y = (m / ‖W'‖) ⊙ (x Wᵀ + s·B·A·dropout(x)) + b`.
//! At the start `B = 0` and `m = ‖W‖`, so the model is exactly the base model.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use std::path::Path;

use super::lora::{
    LoraBranch, LoraConfig, export_lora_folder, matches_target, new_branch, require_attached,
};
use super::{ExportContext, Method};
use crate::models::{Injector, LinearAdapter, ModelConfig, Projection};

/// LoRA's count plus one magnitude per output of each targeted projection.
pub fn param_count(cfg: &LoraConfig, model: &ModelConfig) -> usize {
    cfg.param_count(model)
        + model
            .projections()
            .iter()
            .filter(|(p, ..)| matches_target(p, &cfg.target_modules))
            .map(|(_, _, o, _)| o)
            .sum::<usize>()
}

#[derive(Debug)]
pub struct DoraBranch {
    pub(crate) lora: LoraBranch,
    /// `[out]`.
    pub(crate) magnitude: Var,
}

impl DoraBranch {
    /// `m / ‖W + s·B·A‖` per output row, the norm detached.
    fn row_scale(&self, base: &Projection) -> candle_core::Result<Tensor> {
        let adapted = (base.weight_f32()? + self.lora.delta_weight()?)?;
        let norm = adapted.sqr()?.sum(1)?.sqrt()?.detach();
        self.magnitude.as_tensor() / norm
    }
}

impl LinearAdapter for DoraBranch {
    fn low_rank_factors(&self) -> candle_core::Result<Option<(Tensor, Tensor)>> {
        self.lora.low_rank_factors()
    }

    fn forward(&self, x: &Tensor, base: &Projection, train: bool) -> candle_core::Result<Tensor> {
        let direction = (base.forward_no_bias(x)? + self.lora.delta(x, train)?)?;
        let y = direction.broadcast_mul(&self.row_scale(base)?)?;
        base.add_bias(&y)
    }

    /// `m / ‖W + s·B·A‖ ⊙ (W + s·B·A)`, row by row; the bias is unchanged.
    fn merged(&self, base: &Projection) -> candle_core::Result<Option<Projection>> {
        let adapted = (base.weight_f32()? + self.lora.delta_weight()?)?;
        let scale = self.row_scale(base)?.unsqueeze(1)?;
        Ok(Some(Projection {
            weight: adapted.broadcast_mul(&scale)?,
            bias: base.bias.clone(),
        }))
    }
}

pub struct Dora {
    cfg: LoraConfig,
    rng: StdRng,
    device: Device,
    /// (module path, A, B, magnitude) in model order.
    branches: Vec<(String, Var, Var, Var)>,
}

impl Dora {
    pub fn new(cfg: LoraConfig, seed: u64, device: Device) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed ^ 0x446f_5241),
            device,
            branches: Vec::new(),
        }
    }
}

impl Injector for Dora {
    fn linear_adapter(
        &mut self,
        path: &str,
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if !matches_target(path, &self.cfg.target_modules) {
            return Ok(None);
        }
        let lora = new_branch(&self.cfg, path, base, &mut self.rng, &self.device)?;
        let magnitude = Var::from_tensor(&base.weight_f32()?.sqr()?.sum(1)?.sqrt()?)?;
        self.branches.push((
            path.to_string(),
            lora.a.clone(),
            lora.b.clone(),
            magnitude.clone(),
        ));
        Ok(Some(Box::new(DoraBranch { lora, magnitude })))
    }
}

impl Method for Dora {
    fn vars(&self) -> Vec<(String, Var)> {
        self.branches
            .iter()
            .flat_map(|(p, a, b, m)| {
                [
                    (format!("base_model.model.{p}.lora_A.weight"), a.clone()),
                    (format!("base_model.model.{p}.lora_B.weight"), b.clone()),
                    (
                        format!("base_model.model.{p}.lora_magnitude_vector"),
                        m.clone(),
                    ),
                ]
            })
            .collect()
    }

    fn check_attached(&self, module_names: &[String]) -> Result<()> {
        require_attached(self.branches.len(), &self.cfg.target_modules, module_names)
    }

    /// PEFT's LoRA folder with `use_dora: true` and each `lora_magnitude_vector`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        export_lora_folder(dir, &self.vars(), &self.cfg, ctx.base_model, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A's, B's and m's gradients against finite differences of the same function with the
    /// weight norm held at its value (the detached norm DoRA's backward pass uses).
    #[test]
    fn gradients_match_finite_differences_with_the_norm_held() {
        let dev = Device::Cpu;
        let base = Projection {
            weight: Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap(),
            bias: Some(Tensor::randn(0f32, 1.0, 5, &dev).unwrap()),
        };
        let cfg = LoraConfig {
            rank: 2,
            alpha: 3.0,
            ..Default::default()
        };
        let mut dora = Dora::new(cfg, 3, dev.clone());
        let branch = dora.linear_adapter("q_proj", &base).unwrap().unwrap();
        let vars = dora.vars();
        for (_, v) in &vars {
            let t = v.as_tensor();
            v.set(&(t + t.randn_like(0.0, 0.5).unwrap()).unwrap())
                .unwrap();
        }
        let x = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let c = Tensor::randn(0f32, 1.0, (3, 5), &dev).unwrap();
        let objective = |norm: Option<&Tensor>| -> f32 {
            let y = match norm {
                None => branch.forward(&x, &base, false).unwrap(),
                Some(n) => {
                    let (a, b, m) = (&vars[0].1, &vars[1].1, &vars[2].1);
                    let delta = x
                        .matmul(&a.t().unwrap())
                        .unwrap()
                        .matmul(&b.t().unwrap())
                        .unwrap();
                    let dir = (base.forward_no_bias(&x).unwrap() + (delta * 1.5).unwrap()).unwrap();
                    let y = dir.broadcast_mul(&(m.as_tensor() / n).unwrap()).unwrap();
                    base.add_bias(&y).unwrap()
                }
            };
            (y * &c)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let loss = (branch.forward(&x, &base, false).unwrap() * &c)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let (a, b) = (vars[0].1.as_tensor(), vars[1].1.as_tensor());
        let adapted = (&base.weight + (b.matmul(a).unwrap() * 1.5).unwrap()).unwrap();
        let norm = adapted.sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        assert!((objective(None) - objective(Some(&norm))).abs() < 1e-4);
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let start = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for i in 0..start.len() {
                let probe = |d: f32| {
                    let mut v = start.clone();
                    v[i] += d;
                    var.set(&Tensor::from_vec(v, var.as_tensor().shape(), &dev).unwrap())
                        .unwrap();
                    objective(Some(&norm))
                };
                let fd = (probe(1e-2) - probe(-1e-2)) / 2e-2;
                var.set(&Tensor::from_vec(start.clone(), var.as_tensor().shape(), &dev).unwrap())
                    .unwrap();
                assert!(
                    (fd - g[i]).abs() <= 5e-3 + 0.02 * g[i].abs(),
                    "{name}[{i}]: analytic {} vs numeric {fd}",
                    g[i]
                );
            }
        }
    }
}
