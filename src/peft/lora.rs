//! LoRA (Hu et al., 2021), numerically as Hugging Face PEFT does it:
//! `y = W x + B A dropout(x) · scaling`, scaling = alpha / r (alpha / √r with rsLoRA),
//! A Kaiming-uniform (a = √5, i.e. U(±1/√in)), B zeros, so training starts at the base model.

use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::save_vars;
use super::init;
use super::{ExportContext, Method};
use crate::files::save_json;
use crate::models::linear::on_rows;
use crate::models::{Injector, LinearAdapter, ModelConfig, Projection};

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
        if self.rank == 0 {
            return Err(("rank".into(), "must be at least 1".into()));
        }
        validate_branch(self.alpha, self.dropout, &self.target_modules)
    }

    /// Σ r·(in + out) over the targeted projections.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        model
            .projections()
            .iter()
            .filter(|(p, ..)| matches_target(p, &self.target_modules))
            .map(|(_, i, o, _)| self.rank * (i + o))
            .sum()
    }

    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }
}

/// Checks the keys every LoRA-family method has.
pub fn validate_branch(
    alpha: f64,
    dropout: f32,
    target_modules: &[String],
) -> std::result::Result<(), (String, String)> {
    let bad = |k: &str, w: &str| Err((k.to_string(), w.to_string()));
    if !alpha.is_finite() || alpha <= 0.0 {
        return bad("alpha", "must be a positive finite number");
    }
    if !(0.0..1.0).contains(&dropout) {
        return bad("dropout", "must be in [0, 1)");
    }
    if target_modules.is_empty() {
        return bad(
            "target_modules",
            "name at least one projection, e.g. [\"q_proj\", \"v_proj\"]",
        );
    }
    Ok(())
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
    pub(crate) a: Var,
    pub(crate) b: Var,
    pub(crate) scaling: f64,
    pub(crate) dropout: f32,
}

impl LoraBranch {
    /// `B·A·dropout(x)·scaling` with the shape of the projection's output.
    pub fn delta(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = if train && self.dropout > 0.0 {
            candle_nn::ops::dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        let delta = on_rows(&x, |x| x.matmul(&self.a.t()?)?.matmul(&self.b.t()?))?;
        delta * self.scaling
    }

    /// The whole adapted projection as one op (`kernels::lora`) where it can run: a frozen f32
    /// base on the CPU, and no dropout to apply.
    fn fused_forward(
        &self,
        x: &Tensor,
        base: &Projection,
        train: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        use crate::kernels::fused::available_for;
        let frozen = |t: &Tensor| available_for(t) && !t.track_op();
        if !(available_for(x)
            && frozen(&base.weight)
            && base.bias.as_ref().is_none_or(frozen)
            && (!train || self.dropout == 0.0))
        {
            return Ok(None);
        }
        let (a, b) = (self.a.as_tensor(), self.b.as_tensor());
        let y = crate::kernels::lora::lora_linear(
            x,
            a,
            b,
            &base.weight,
            base.bias.as_ref(),
            self.scaling,
        )?;
        Ok(Some(y))
    }

    /// `B·A·scaling`, `[out, in]`: what merging adds to the weight.
    pub fn delta_weight(&self) -> candle_core::Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())? * self.scaling
    }
}

impl LinearAdapter for LoraBranch {
    fn forward(&self, x: &Tensor, base: &Projection, train: bool) -> candle_core::Result<Tensor> {
        if let Some(y) = self.fused_forward(x, base, train)? {
            return Ok(y);
        }
        base.forward(x)? + self.delta(x, train)?
    }

    fn low_rank_factors(&self) -> candle_core::Result<Option<(Tensor, Tensor)>> {
        Ok(Some((
            (self.b.as_tensor() * self.scaling)?,
            self.a.as_tensor().clone(),
        )))
    }

    /// `W + s·B·A`, as PEFT's `merge`.
    fn merged(&self, base: &Projection) -> candle_core::Result<Option<Projection>> {
        Ok(Some(Projection {
            weight: (base.weight_f32()? + self.delta_weight()?)?,
            bias: base.bias.clone(),
        }))
    }
}

/// Checks the rank fits the projection and makes PEFT's initial factors: A U(±1/√in), B 0.
pub fn new_branch(
    cfg: &LoraConfig,
    path: &str,
    base: &Projection,
    rng: &mut StdRng,
    device: &Device,
) -> Result<LoraBranch> {
    let (in_dim, out_dim) = (base.in_dim(), base.out_dim());
    let r = cfg.rank;
    if r > in_dim.min(out_dim) {
        bail!(
            "rank {r} exceeds the smaller side of {path} ({out_dim} × {in_dim}); use at most {}",
            in_dim.min(out_dim)
        );
    }
    let a = init::uniform(rng, &[r, in_dim], 1.0 / (in_dim as f32).sqrt(), device)?;
    let b = Var::zeros((out_dim, r), candle_core::DType::F32, device)?;
    Ok(LoraBranch {
        a,
        b,
        scaling: cfg.scaling(),
        dropout: cfg.dropout,
    })
}

/// Fails when a method that wraps projections found none of its targets (`attached` = how
/// many it wrapped), listing the projections the model has.
pub fn require_attached(
    attached: usize,
    targets: &[String],
    module_names: &[String],
) -> Result<()> {
    if attached > 0 {
        return Ok(());
    }
    let mut leaves: Vec<&str> = module_names
        .iter()
        .filter_map(|n| n.rsplit('.').next())
        .collect();
    leaves.sort();
    leaves.dedup();
    bail!(
        "no module matches target_modules {targets:?}; this model's projections are: {}",
        leaves.join(", ")
    )
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
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if !matches_target(path, &self.cfg.target_modules) {
            return Ok(None);
        }
        let branch = new_branch(&self.cfg, path, base, &mut self.rng, &self.device)?;
        self.branches
            .push((path.to_string(), branch.a.clone(), branch.b.clone()));
        Ok(Some(Box::new(branch)))
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
        require_attached(self.branches.len(), &self.cfg.target_modules, module_names)
    }

    /// A Hugging Face PEFT adapter folder: `adapter_config.json` + `adapter_model.safetensors`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        export_lora_folder(dir, &self.vars(), &self.cfg, ctx.base_model, false)
    }
}

/// Writes a PEFT `LORA` folder (DoRA's too, with `use_dora`).
pub fn export_lora_folder(
    dir: &Path,
    vars: &[(String, Var)],
    cfg: &LoraConfig,
    base_model: &str,
    use_dora: bool,
) -> Result<()> {
    save_vars(&dir.join("adapter_model.safetensors"), vars)?;
    save_json(
        &dir.join("adapter_config.json"),
        &lora_adapter_config(cfg, base_model, use_dora),
    )
}

/// PEFT's `adapter_config.json` for LoRA (and DoRA, which is LoRA with `use_dora`).
pub fn lora_adapter_config(
    cfg: &LoraConfig,
    base_model: &str,
    use_dora: bool,
) -> serde_json::Value {
    let mut targets = cfg.target_modules.clone();
    targets.sort();
    serde_json::json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": cfg.rank,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": use_dora,
        "use_rslora": cfg.use_rslora,
    })
}

/// Reads PEFT's `LORA` adapter (LoRA, rsLoRA, per-module alphas, DoRA) from its tensors
/// (`bag`) and `adapter_config.json` (`cfg`) into `out`.
pub(super) fn import_peft(
    cfg: &serde_json::Value,
    bag: &mut super::import::TensorBag,
    _model: &crate::models::ModelConfig,
    out: &mut super::import::ImportedAdapter,
) -> anyhow::Result<()> {
    use super::dora::DoraBranch;
    use super::import::var;
    use anyhow::Context;
    let f = |k: &str| cfg[k].as_f64();
    let alpha = f("lora_alpha").context("adapter_config.json has no lora_alpha")?;
    let rslora = cfg["use_rslora"].as_bool().unwrap_or(false);
    let dora = cfg["use_dora"].as_bool().unwrap_or(false);
    let patterns: Vec<(String, f64)> = cfg["alpha_pattern"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_f64().map(|a| (k.clone(), a)))
                .collect()
        })
        .unwrap_or_default();
    for path in bag.paths_with(".lora_A.weight") {
        let a = bag.take(&format!("base_model.model.{path}.lora_A.weight"))?;
        let b = bag.take(&format!("base_model.model.{path}.lora_B.weight"))?;
        let r = a.dim(0)?;
        let alpha = patterns
            .iter()
            .find(|(k, _)| matches_target(&path, std::slice::from_ref(k)))
            .map(|(_, a)| *a)
            .unwrap_or(alpha);
        let scaling = if rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        let lora = LoraBranch {
            a: var(&a)?,
            b: var(&b)?,
            scaling,
            dropout: 0.0,
        };
        let adapter: Box<dyn LinearAdapter> = if dora {
            let key = format!("base_model.model.{path}.lora_magnitude_vector");
            let m = bag
                .take(&key)
                .or_else(|_| bag.take(&format!("{key}.weight")))?;
            Box::new(DoraBranch {
                lora,
                magnitude: var(&m.flatten_all()?)?,
            })
        } else {
            Box::new(lora)
        };
        out.linear.insert(path, adapter);
    }
    if dora {
        out.description = "PEFT LORA with DoRA".into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused branch gives the composed one's output and the gradients of the input and
    /// of both factors, with a bias, on `[B, T, in]` input.
    #[test]
    fn fused_branch_matches_the_composed_one() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (in_dim, out_dim, r) = (12, 10, 3);
        let base = Projection {
            weight: Tensor::randn(0f32, 0.5, (out_dim, in_dim), &dev)?,
            bias: Some(Tensor::randn(0f32, 0.5, out_dim, &dev)?),
        };
        let branch = LoraBranch {
            a: Var::from_tensor(&Tensor::randn(0f32, 0.5, (r, in_dim), &dev)?)?,
            b: Var::from_tensor(&Tensor::randn(0f32, 0.5, (out_dim, r), &dev)?)?,
            scaling: 1.7,
            dropout: 0.0,
        };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5, in_dim), &dev)?)?;
        let fused = branch
            .fused_forward(x.as_tensor(), &base, true)?
            .expect("the fused op runs here");
        let composed = crate::kernels::fused::without_fused_kernels(|| {
            assert!(branch.fused_forward(x.as_tensor(), &base, true)?.is_none());
            branch.forward(x.as_tensor(), &base, true)
        })?;
        assert!(crate::models::max_abs_diff(&fused, &composed)? < 1e-5);
        let w = Tensor::randn(0f32, 1.0, fused.shape(), &dev)?;
        let ga = (fused * &w)?.sum_all()?.backward()?;
        let gb = (composed * &w)?.sum_all()?.backward()?;
        for v in [&x, &branch.a, &branch.b] {
            let (a, b) = (
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
            );
            let d = crate::models::max_abs_diff(a, b)?;
            assert!(d < 1e-5, "{d}");
        }
        Ok(())
    }

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
        // A base projection giving [10, 20] for this x.
        let base = Projection {
            weight: Tensor::new(&[[10f32, 0.0, 0.0], [0.0, 20.0, 0.0]], &dev).unwrap(),
            bias: None,
        };
        let y = branch
            .forward(&x, &base, true)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // A·x = 3; B·3 = [1.5, -3]; ×2 = [3, -6]
        assert_eq!(y, vec![vec![13.0, 14.0]]);
    }

    fn proj(in_dim: usize, out_dim: usize) -> Projection {
        Projection {
            weight: Tensor::zeros((out_dim, in_dim), candle_core::DType::F32, &Device::Cpu)
                .unwrap(),
            bias: None,
        }
    }

    #[test]
    fn init_matches_peft_bounds() {
        let mut l = Lora::new(LoraConfig::default(), 0, Device::Cpu);
        l.linear_adapter("m.q_proj", &proj(64, 32))
            .unwrap()
            .unwrap();
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
        assert!(
            l.linear_adapter("m.k_proj", &proj(64, 32))
                .unwrap()
                .is_none()
        );
        assert!(
            l.linear_adapter("m.v_proj", &proj(4, 32)).is_err(),
            "rank 8 > 4 refused"
        );
    }
}
