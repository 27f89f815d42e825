//! LoRA (Hu et al., 2021), numerically as Hugging Face PEFT does it:
//! `y = W x + B A dropout(x) · scaling`, scaling = alpha / r (alpha / √r with rsLoRA),
//! A Kaiming-uniform (a = √5, i.e. U(±1/√in)), B zeros, so training starts at the base model.

use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::{save_json, save_safetensors};
use super::{ExportContext, Method};
use crate::models::{Injector, LinearAdapter};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of the update `B·A` (A is r × in, B is out × r).
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// The update is scaled by alpha / r.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the LoRA branch's input during training.
    #[serde(default)]
    pub dropout: f32,
    /// Projections to adapt, matched by the last part of their path (`q_proj` matches
    /// `model.layers.3.self_attn.q_proj`).
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Rank-stabilised scaling alpha / √r (Kalajdzievski, 2023).
    #[serde(default)]
    pub use_rslora: bool,
}

fn default_rank() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            dropout: 0.0,
            target_modules: default_targets(),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let bad = |k: &str, w: &str| Err((k.to_string(), w.to_string()));
        if self.rank == 0 {
            return bad("rank", "must be at least 1");
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad("alpha", "must be a positive finite number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if self.target_modules.is_empty() {
            return bad(
                "target_modules",
                "name at least one projection, e.g. [\"q_proj\", \"v_proj\"]",
            );
        }
        Ok(())
    }

    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

/// Whether the module at `path` is one of `targets` (PEFT's rule: the path ends with
/// `.name`, or is the name).
pub fn matches_target(path: &str, targets: &[String]) -> bool {
    targets
        .iter()
        .any(|t| path == t || path.ends_with(&format!(".{t}")))
}

/// The low-rank branch beside one projection.
#[derive(Debug)]
pub struct LoraBranch {
    a: Var,
    b: Var,
    scaling: f64,
    dropout: f32,
}

impl LinearAdapter for LoraBranch {
    fn forward(&self, x: &Tensor, base_out: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = if train && self.dropout > 0.0 {
            candle_nn::ops::dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, dims[dims.len() - 1]))?;
        let delta = x2.matmul(&self.a.t()?)?.matmul(&self.b.t()?)?;
        let delta = (delta * self.scaling)?.reshape(base_out.shape())?;
        base_out + delta
    }
}

pub struct Lora {
    cfg: LoraConfig,
    rng: StdRng,
    device: Device,
    /// (module path, A, B) in model order.
    branches: Vec<(String, Var, Var)>,
}

impl Lora {
    pub fn new(cfg: LoraConfig, seed: u64, device: Device) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed ^ 0x4c6f_5241),
            device,
            branches: Vec::new(),
        }
    }
}

impl Injector for Lora {
    fn linear_adapter(
        &mut self,
        path: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if !matches_target(path, &self.cfg.target_modules) {
            return Ok(None);
        }
        let r = self.cfg.rank;
        if r > in_dim.min(out_dim) {
            bail!(
                "LoRA rank {r} exceeds the smaller side of {path} ({out_dim} × {in_dim}); use at most {}",
                in_dim.min(out_dim)
            );
        }
        let bound = 1.0 / (in_dim as f32).sqrt();
        let a: Vec<f32> = (0..r * in_dim)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (r, in_dim), &self.device)?)?;
        let b = Var::zeros((out_dim, r), candle_core::DType::F32, &self.device)?;
        self.branches.push((path.to_string(), a.clone(), b.clone()));
        Ok(Some(Box::new(LoraBranch {
            a,
            b,
            scaling: self.cfg.scaling(),
            dropout: self.cfg.dropout,
        })))
    }
}

impl Method for Lora {
    fn vars(&self) -> Vec<(String, Var)> {
        self.branches
            .iter()
            .flat_map(|(p, a, b)| {
                [
                    (format!("base_model.model.{p}.lora_A.weight"), a.clone()),
                    (format!("base_model.model.{p}.lora_B.weight"), b.clone()),
                ]
            })
            .collect()
    }

    fn check_attached(&self, module_names: &[String]) -> Result<()> {
        if self.branches.is_empty() {
            let mut leaves: Vec<&str> = module_names
                .iter()
                .filter_map(|n| n.rsplit('.').next())
                .collect();
            leaves.sort();
            leaves.dedup();
            bail!(
                "no module matches target_modules {:?}; this model's projections are: {}",
                self.cfg.target_modules,
                leaves.join(", ")
            );
        }
        Ok(())
    }

    /// A Hugging Face PEFT adapter folder: `adapter_config.json` + `adapter_model.safetensors`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        save_safetensors(&dir.join("adapter_model.safetensors"), &tensors)?;
        let mut targets = self.cfg.target_modules.clone();
        targets.sort();
        save_json(
            &dir.join("adapter_config.json"),
            &serde_json::json!({
                "alpha_pattern": {},
                "auto_mapping": null,
                "base_model_name_or_path": ctx.base_model,
                "bias": "none",
                "fan_in_fan_out": false,
                "inference_mode": true,
                "init_lora_weights": true,
                "layers_pattern": null,
                "layers_to_transform": null,
                "lora_alpha": self.cfg.alpha,
                "lora_dropout": self.cfg.dropout,
                "modules_to_save": null,
                "peft_type": "LORA",
                "r": self.cfg.rank,
                "rank_pattern": {},
                "revision": null,
                "target_modules": targets,
                "task_type": "CAUSAL_LM",
                "use_dora": false,
                "use_rslora": self.cfg.use_rslora,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_matching_follows_peft() {
        let t = vec!["q_proj".to_string()];
        assert!(matches_target("model.layers.0.self_attn.q_proj", &t));
        assert!(!matches_target("model.layers.0.self_attn.qq_proj", &t));
        assert!(matches_target("q_proj", &t));
    }

    #[test]
    fn branch_adds_scaled_low_rank_product() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[[1f32, 2.0, 0.0]], &dev).unwrap()).unwrap(); // r=1, in=3
        let b = Var::from_tensor(&Tensor::new(&[[0.5f32], [-1.0]], &dev).unwrap()).unwrap(); // out=2
        let branch = LoraBranch {
            a,
            b,
            scaling: 2.0,
            dropout: 0.0,
        };
        let x = Tensor::new(&[[1f32, 1.0, 1.0]], &dev).unwrap();
        let base = Tensor::new(&[[10f32, 20.0]], &dev).unwrap();
        let y = branch
            .forward(&x, &base, true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // A·x = 3; B·3 = [1.5, -3]; ×2 = [3, -6]
        assert_eq!(y, vec![vec![13.0, 14.0]]);
    }

    #[test]
    fn init_matches_peft_bounds() {
        let mut l = Lora::new(LoraConfig::default(), 0, Device::Cpu);
        l.linear_adapter("m.q_proj", 64, 32).unwrap().unwrap();
        let vars = l.vars();
        let a = vars[0]
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = vars[1]
            .1
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(a.iter().all(|v| v.abs() <= 1.0 / 8.0));
        assert!(a.iter().any(|v| v.abs() > 0.05), "A is not just zeros");
        assert!(b.iter().all(|v| *v == 0.0));
        assert!(l.linear_adapter("m.k_proj", 64, 32).unwrap().is_none());
        assert!(
            l.linear_adapter("m.v_proj", 4, 32).is_err(),
            "rank 8 > 4 refused"
        );
    }
}
