//! AdaLoRA (Zhang et al., 2023), numerically as Hugging Face PEFT: each targeted projection
//! gets an update in SVD form `B·diag(E)·A` (P·Λ·Q), A and B ~ N(0, 0.02), E = 0, added as
//! `x (A ⊙ E)ᵀ Bᵀ · alpha / (init_r + 1e-5)`. After every optimizer step the importance of
//! each entry, |p·∇p|, is smoothed (Ī ← β1 Ī + (1−β1) I) with its uncertainty
//! (Ū ← β2 Ū + (1−β2) |I − Ī|); a singular triplet scores s(E_i) + mean s(A_i·) +
//! mean s(B_·i) with s = Ī·Ū. The total rank budget stays at init_r per matrix for `tinit`
//! steps, decays cubically to target_r until `tfinal` steps before the end, and every
//! `delta_t` steps the lowest-scoring triplets have their E zeroed. An orthogonality
//! regulariser, the mean of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F, joins the loss.

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor, Var, backprop::GradStore};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

use super::export::save_safetensors;
use super::init;
use super::lora::{matches_target, require_attached, validate_branch};
use super::{ExportContext, Method, RankAllocation};
use crate::files::save_json;
use crate::models::{Injector, LinearAdapter, ModelConfig, Projection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaloraConfig {
    /// Rank every matrix starts with.
    #[serde(default = "default_init_r")]
    pub init_r: usize,
    /// Average rank per matrix at the end of the budget schedule.
    #[serde(default = "default_target_r")]
    pub target_r: usize,
    /// The update is scaled by alpha / init_r.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f32,
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
    /// Steps at the full budget before pruning starts; when unset, `tinit_fraction` of
    /// the run's steps, so a shortened run keeps the schedule's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tinit: Option<usize>,
    /// Steps at the end trained with the final allocation fixed; when unset,
    /// `tfinal_fraction` of the run's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tfinal: Option<usize>,
    /// Share of the run at the full budget, used when `tinit` is unset.
    #[serde(default = "default_tinit_fraction")]
    pub tinit_fraction: f64,
    /// Share of the run at the end with the allocation fixed, used when `tfinal` is unset.
    #[serde(default = "default_tfinal_fraction")]
    pub tfinal_fraction: f64,
    /// Reallocate the budget every this many steps.
    #[serde(default = "default_delta_t")]
    pub delta_t: usize,
    /// Smoothing of the importance.
    #[serde(default = "default_beta")]
    pub beta1: f64,
    /// Smoothing of the importance's uncertainty.
    #[serde(default = "default_beta")]
    pub beta2: f64,
    /// Weight of the orthogonality regulariser in the loss.
    #[serde(default = "default_orth")]
    pub orth_reg_weight: f64,
}

fn default_init_r() -> usize {
    12
}
fn default_target_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["q_proj".into(), "v_proj".into()]
}
fn default_tinit_fraction() -> f64 {
    0.1
}
fn default_tfinal_fraction() -> f64 {
    0.2
}
fn default_delta_t() -> usize {
    1
}
fn default_beta() -> f64 {
    0.85
}
fn default_orth() -> f64 {
    0.5
}

impl Default for AdaloraConfig {
    fn default() -> Self {
        Self {
            init_r: default_init_r(),
            target_r: default_target_r(),
            alpha: default_alpha(),
            dropout: 0.0,
            target_modules: default_targets(),
            tinit: None,
            tfinal: None,
            tinit_fraction: default_tinit_fraction(),
            tfinal_fraction: default_tfinal_fraction(),
            delta_t: default_delta_t(),
            beta1: default_beta(),
            beta2: default_beta(),
            orth_reg_weight: default_orth(),
        }
    }
}

impl AdaloraConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        let bad = |k: &str, w: &str| Err((k.to_string(), w.to_string()));
        if self.init_r == 0 {
            return bad("init_r", "must be at least 1");
        }
        if self.target_r == 0 || self.target_r > self.init_r {
            return bad("target_r", "must be between 1 and init_r");
        }
        validate_branch(self.alpha, self.dropout, &self.target_modules)?;
        if self.delta_t == 0 {
            return bad("delta_t", "must be at least 1");
        }
        for (k, f) in [
            ("tinit_fraction", self.tinit_fraction),
            ("tfinal_fraction", self.tfinal_fraction),
        ] {
            if !(0.0..1.0).contains(&f) {
                return bad(k, "must be in [0, 1)");
            }
        }
        if self.tinit_fraction + self.tfinal_fraction >= 1.0 {
            return bad(
                "tinit_fraction",
                "tinit_fraction + tfinal_fraction must be less than 1",
            );
        }
        for (k, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(k, "must be in [0, 1)");
            }
        }
        if !self.orth_reg_weight.is_finite() || self.orth_reg_weight < 0.0 {
            return bad("orth_reg_weight", "must be a finite number >= 0");
        }
        Ok(())
    }

    /// (tinit, tfinal) in steps for a run of `steps`: the absolute values where set, else
    /// the fractions of the run (rounded down).
    pub fn phases(&self, steps: usize) -> (usize, usize) {
        let share = |f: f64| (f * steps as f64).floor() as usize;
        (
            self.tinit.unwrap_or_else(|| share(self.tinit_fraction)),
            self.tfinal.unwrap_or_else(|| share(self.tfinal_fraction)),
        )
    }

    /// The schedule needs room between its warm-up and its final phase.
    pub fn validate_steps(&self, steps: usize) -> std::result::Result<(), (String, String)> {
        let (tinit, tfinal) = self.phases(steps);
        if tinit + tfinal >= steps {
            let key = if self.tinit.is_some() {
                "tinit"
            } else {
                "tfinal"
            };
            return Err((
                key.into(),
                format!(
                    "tinit + tfinal ({tinit} + {tfinal}) must be less than the run's {steps} steps \
                     (leave them unset to follow the run's length: tinit_fraction, tfinal_fraction)"
                ),
            ));
        }
        Ok(())
    }

    /// Per targeted matrix `init_r·(in + out + 1)` (A, B and E).
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        model
            .projections()
            .iter()
            .filter(|(p, ..)| matches_target(p, &self.target_modules))
            .map(|(_, i, o, _)| self.init_r * (i + o + 1))
            .sum()
    }

    /// PEFT's `budget_schedule`: (total budget, whether to mask) at 0-based `step`.
    pub fn budget(&self, step: usize, total: usize, matrices: usize) -> (usize, bool) {
        let init_bgt = self.init_r * matrices;
        let target_bgt = self.target_r * matrices;
        let (tinit, tfinal) = self.phases(total);
        if step <= tinit {
            (init_bgt, false)
        } else if step > total - tfinal {
            (target_bgt, true)
        } else {
            let span = (total - tfinal - tinit) as f64;
            let coeff = 1.0 - (step - tinit) as f64 / span;
            let b = (init_bgt - target_bgt) as f64 * coeff.powi(3) + target_bgt as f64;
            (b as usize, step.is_multiple_of(self.delta_t))
        }
    }
}

#[derive(Debug)]
pub(crate) struct SvdBranch {
    pub(crate) a: Var,
    pub(crate) e: Var,
    pub(crate) b: Var,
    /// alpha / (init_r + 1e-5), fixed even when ranks are pruned (as PEFT keeps `ranknum`).
    pub(crate) scale: f64,
    pub(crate) dropout: f32,
}

impl LinearAdapter for SvdBranch {
    fn low_rank_factors(&self) -> candle_core::Result<Option<(Tensor, Tensor)>> {
        let qe = self.a.as_tensor().broadcast_mul(self.e.as_tensor())?;
        Ok(Some(((self.b.as_tensor() * self.scale)?, qe)))
    }

    fn forward(&self, x: &Tensor, base: &Projection, train: bool) -> candle_core::Result<Tensor> {
        let xd = if train && self.dropout > 0.0 {
            candle_nn::ops::dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        let dims = x.dims().to_vec();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = xd.reshape((rows, dims[dims.len() - 1]))?;
        let ae = self.a.as_tensor().broadcast_mul(self.e.as_tensor())?;
        let delta = (x2.matmul(&ae.t()?)?.matmul(&self.b.t()?)? * self.scale)?;
        let mut out = dims;
        *out.last_mut().expect("non-empty") = base.out_dim();
        base.forward(x)? + delta.reshape(out)?
    }

    /// `W + B·(A ⊙ E)·scale`.
    fn merged(&self, base: &Projection) -> candle_core::Result<Option<Projection>> {
        let ae = self.a.as_tensor().broadcast_mul(self.e.as_tensor())?;
        let delta = (self.b.as_tensor().matmul(&ae)? * self.scale)?;
        Ok(Some(Projection {
            weight: (base.weight_f32()? + delta)?,
            bias: base.bias.clone(),
        }))
    }
}

/// Smoothed importance and uncertainty of one tensor's entries.
struct Sensitivity {
    avg: Tensor,
    unc: Tensor,
}

impl Sensitivity {
    fn update(this: &mut Option<Self>, p: &Tensor, g: &Tensor, b1: f64, b2: f64) -> Result<()> {
        let ipt = (p * g)?.abs()?;
        let (avg, unc) = match this.take() {
            Some(s) => (s.avg, s.unc),
            None => (ipt.zeros_like()?, ipt.zeros_like()?),
        };
        let avg = ((avg * b1)? + (&ipt * (1.0 - b1))?)?;
        let unc = ((unc * b2)? + ((&ipt - &avg)?.abs()? * (1.0 - b2))?)?;
        *this = Some(Self { avg, unc });
        Ok(())
    }

    fn score(&self) -> Result<Tensor> {
        Ok((&self.avg * &self.unc)?)
    }
}

struct Triplet {
    path: String,
    a: Var,
    e: Var,
    b: Var,
    sens: [Option<Sensitivity>; 3],
    /// Which ranks the last allocation kept; `None` until the first one.
    pattern: Option<Vec<bool>>,
}

pub struct Adalora {
    cfg: AdaloraConfig,
    total_steps: usize,
    rng: StdRng,
    device: Device,
    triplets: Vec<Triplet>,
}

impl Adalora {
    pub fn new(cfg: AdaloraConfig, total_steps: usize, seed: u64, device: Device) -> Self {
        Self {
            cfg,
            total_steps,
            rng: StdRng::seed_from_u64(seed ^ 0x4164_614c),
            device,
            triplets: Vec::new(),
        }
    }

    fn update_importance(&mut self, grads: &GradStore) -> Result<()> {
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        for t in &mut self.triplets {
            for (i, v) in [&t.a, &t.e, &t.b].into_iter().enumerate() {
                if let Some(g) = grads.get(v.as_tensor()) {
                    Sensitivity::update(&mut t.sens[i], v.as_tensor(), g, b1, b2)?;
                }
            }
        }
        Ok(())
    }

    /// Score of every triplet, per matrix: s(E_i) + mean_j s(A_ij) + mean_k s(B_ki).
    fn triplet_scores(&self) -> Result<Vec<Vec<f32>>> {
        self.triplets
            .iter()
            .map(|t| {
                let [Some(sa), Some(se), Some(sb)] = &t.sens else {
                    return Ok(vec![0.0; self.cfg.init_r]);
                };
                let s = ((se.score()?.flatten_all()? + sa.score()?.mean(1)?)?
                    + sb.score()?.mean(0)?)?;
                Ok(s.to_vec1::<f32>()?)
            })
            .collect()
    }

    /// Zeroes E where the triplet's score is at or below the threshold that leaves `budget`
    /// ranks in total, and remembers the pattern.
    fn mask_to_budget(&mut self, budget: usize) -> Result<()> {
        let scores = self.triplet_scores()?;
        let total = self.cfg.init_r * self.triplets.len();
        let k = total.saturating_sub(budget);
        let threshold = if k == 0 {
            f32::NEG_INFINITY
        } else {
            let mut all: Vec<f32> = scores.iter().flatten().copied().collect();
            all.sort_by(f32::total_cmp);
            all[k - 1]
        };
        for (t, s) in self.triplets.iter_mut().zip(&scores) {
            t.pattern = Some(s.iter().map(|v| *v > threshold).collect());
        }
        self.apply_patterns()
    }

    fn apply_patterns(&mut self) -> Result<()> {
        for t in &self.triplets {
            if let Some(p) = &t.pattern {
                let keep: Vec<f32> = p.iter().map(|k| if *k { 1.0 } else { 0.0 }).collect();
                let keep = Tensor::from_vec(keep, (p.len(), 1), &self.device)?;
                t.e.set(&t.e.as_tensor().mul(&keep)?)?;
            }
        }
        Ok(())
    }

    fn allocation(&self, budget: usize) -> RankAllocation {
        RankAllocation {
            budget,
            init_r: self.cfg.init_r,
            ranks: self
                .triplets
                .iter()
                .map(|t| {
                    let r = match &t.pattern {
                        Some(p) => p.iter().filter(|k| **k).count(),
                        None => self.cfg.init_r,
                    };
                    (t.path.clone(), r)
                })
                .collect(),
        }
    }
}

impl Injector for Adalora {
    fn linear_adapter(
        &mut self,
        path: &str,
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if !matches_target(path, &self.cfg.target_modules) {
            return Ok(None);
        }
        let (in_dim, out_dim, r) = (base.in_dim(), base.out_dim(), self.cfg.init_r);
        if r > in_dim.min(out_dim) {
            bail!(
                "init_r {r} exceeds the smaller side of {path} ({out_dim} × {in_dim}); use at most {}",
                in_dim.min(out_dim)
            );
        }
        let a = init::normal(&mut self.rng, &[r, in_dim], 0.02, &self.device)?;
        let b = init::normal(&mut self.rng, &[out_dim, r], 0.02, &self.device)?;
        let e = Var::zeros((r, 1), DType::F32, &self.device)?;
        self.triplets.push(Triplet {
            path: path.to_string(),
            a: a.clone(),
            e: e.clone(),
            b: b.clone(),
            sens: [None, None, None],
            pattern: None,
        });
        Ok(Some(Box::new(SvdBranch {
            a,
            e,
            b,
            scale: self.cfg.alpha / (r as f64 + 1e-5),
            dropout: self.cfg.dropout,
        })))
    }
}

impl Method for Adalora {
    fn vars(&self) -> Vec<(String, Var)> {
        self.triplets
            .iter()
            .flat_map(|t| {
                let p = &t.path;
                [
                    (format!("base_model.model.{p}.lora_A"), t.a.clone()),
                    (format!("base_model.model.{p}.lora_E"), t.e.clone()),
                    (format!("base_model.model.{p}.lora_B"), t.b.clone()),
                ]
            })
            .collect()
    }

    fn check_attached(&self, module_names: &[String]) -> Result<()> {
        require_attached(self.triplets.len(), &self.cfg.target_modules, module_names)
    }

    fn extra_loss(&self) -> Result<Option<Tensor>> {
        if self.cfg.orth_reg_weight == 0.0 || self.triplets.is_empty() {
            return Ok(None);
        }
        let mut terms = Vec::new();
        for t in &self.triplets {
            let a = t.a.as_tensor();
            let b = t.b.as_tensor();
            for cov in [a.matmul(&a.t()?)?, b.t()?.matmul(b)?] {
                let eye = Tensor::eye(cov.dim(0)?, DType::F32, cov.device())?;
                terms.push((cov - eye)?.sqr()?.sum_all()?.sqrt()?);
            }
        }
        let n = terms.len() as f64;
        let sum = Tensor::stack(&terms, 0)?.sum_all()?;
        Ok(Some(((sum / n)? * self.cfg.orth_reg_weight)?))
    }

    /// PEFT's `update_and_allocate`, called with the 0-based step.
    fn after_step(&mut self, step: usize, grads: &GradStore) -> Result<Option<RankAllocation>> {
        let g = step - 1;
        let total = self.total_steps;
        let final_start = total - self.cfg.phases(total).1;
        let n = self.triplets.len();
        if g < final_start {
            self.update_importance(grads)?;
            let (budget, mask) = self.cfg.budget(g, total, n);
            if mask {
                self.mask_to_budget(budget)?;
                return Ok(Some(self.allocation(budget)));
            }
            // The first step shows the full allocation, so the heat map appears at once.
            return Ok((g == 0).then(|| self.allocation(budget)));
        }
        let target = self.cfg.target_r * n;
        if g == final_start {
            self.mask_to_budget(target)?;
            for t in &mut self.triplets {
                t.sens = [None, None, None];
            }
            return Ok(Some(self.allocation(target)));
        }
        self.apply_patterns()?;
        Ok(None)
    }

    /// Importance averages (`<path>.<A|E|B>.avg|unc`) and kept ranks (`<path>.pattern`).
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for t in &self.triplets {
            for (name, sens) in ["A", "E", "B"].iter().zip(&t.sens) {
                if let Some(s) = sens {
                    out.push((format!("{}.{name}.avg", t.path), s.avg.clone()));
                    out.push((format!("{}.{name}.unc", t.path), s.unc.clone()));
                }
            }
            if let Some(p) = &t.pattern {
                let keep: Vec<f32> = p.iter().map(|k| if *k { 1.0 } else { 0.0 }).collect();
                out.push((
                    format!("{}.pattern", t.path),
                    Tensor::new(keep, &self.device)?,
                ));
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        for t in &mut self.triplets {
            for (name, sens) in ["A", "E", "B"].iter().zip(&mut t.sens) {
                let avg = saved.get(&format!("{}.{name}.avg", t.path));
                let unc = saved.get(&format!("{}.{name}.unc", t.path));
                *sens = match (avg, unc) {
                    (Some(avg), Some(unc)) => Some(Sensitivity {
                        avg: avg.to_device(&self.device)?,
                        unc: unc.to_device(&self.device)?,
                    }),
                    _ => None,
                };
            }
            t.pattern = match saved.get(&format!("{}.pattern", t.path)) {
                Some(p) => Some(p.to_vec1::<f32>()?.iter().map(|v| *v > 0.5).collect()),
                None => None,
            };
        }
        Ok(())
    }

    /// PEFT's ADALORA folder: `lora_A`, `lora_E`, `lora_B` cut to the kept ranks and the
    /// `rank_pattern` they were cut by.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let mut tensors = Vec::new();
        let mut pattern = serde_json::Map::new();
        let any_pattern = self.triplets.iter().any(|t| t.pattern.is_some());
        for t in &self.triplets {
            let p = &t.path;
            let keep = t
                .pattern
                .clone()
                .unwrap_or_else(|| vec![true; self.cfg.init_r]);
            let idx: Vec<u32> = (0..keep.len() as u32)
                .filter(|i| keep[*i as usize])
                .collect();
            let idx = Tensor::new(idx.as_slice(), &self.device)?;
            let (a, e, b) = if idx.elem_count() == 0 {
                (
                    t.a.as_tensor().narrow(0, 0, 0)?,
                    t.e.as_tensor().narrow(0, 0, 0)?,
                    t.b.as_tensor().narrow(1, 0, 0)?,
                )
            } else {
                (
                    t.a.as_tensor().index_select(&idx, 0)?,
                    t.e.as_tensor().index_select(&idx, 0)?,
                    t.b.as_tensor().index_select(&idx, 1)?,
                )
            };
            tensors.push((format!("base_model.model.{p}.lora_A"), a));
            tensors.push((format!("base_model.model.{p}.lora_B"), b));
            tensors.push((format!("base_model.model.{p}.lora_E"), e));
            pattern.insert(format!("{p}.lora_E"), serde_json::json!(keep));
        }
        save_safetensors(&dir.join("adapter_model.safetensors"), &tensors)?;
        let mut targets = self.cfg.target_modules.clone();
        targets.sort();
        let c = &self.cfg;
        let (tinit, tfinal) = c.phases(self.total_steps);
        save_json(
            &dir.join("adapter_config.json"),
            &serde_json::json!({
                "auto_mapping": null,
                "base_model_name_or_path": ctx.base_model,
                "beta1": c.beta1,
                "beta2": c.beta2,
                "bias": "none",
                "deltaT": c.delta_t,
                "fan_in_fan_out": false,
                "inference_mode": true,
                "init_lora_weights": true,
                "init_r": c.init_r,
                "lora_alpha": c.alpha,
                "lora_dropout": c.dropout,
                "modules_to_save": null,
                "orth_reg_weight": c.orth_reg_weight,
                "peft_type": "ADALORA",
                "r": c.init_r,
                "rank_pattern": if any_pattern { serde_json::Value::Object(pattern) } else { serde_json::Value::Null },
                "revision": null,
                "target_modules": targets,
                "target_r": c.target_r,
                "task_type": "CAUSAL_LM",
                "tfinal": tfinal,
                "tinit": tinit,
                "total_step": self.total_steps,
            }),
        )
    }
}

/// Reads PEFT's `ADALORA` adapter (its SVD triplets) from its tensors (`bag`) and
/// `adapter_config.json` (`cfg`) into `out`.
pub(super) fn import_peft(
    cfg: &serde_json::Value,
    bag: &mut super::import::TensorBag,
    _model: &crate::models::ModelConfig,
    out: &mut super::import::ImportedAdapter,
) -> anyhow::Result<()> {
    use super::import::var;
    use anyhow::Context;
    let f = |k: &str| cfg[k].as_f64();
    let alpha = f("lora_alpha").unwrap_or(0.0);
    let init_r = f("init_r").context("adapter_config.json has no init_r")?;
    // PEFT keeps `ranknum` at init_r when it cuts ranks, so the scale stays put.
    let scale = if alpha > 0.0 { alpha } else { init_r } / (init_r + 1e-5);
    for path in bag.paths_with(".lora_A") {
        let a = bag.take(&format!("base_model.model.{path}.lora_A"))?;
        let e = bag.take(&format!("base_model.model.{path}.lora_E"))?;
        let b = bag.take(&format!("base_model.model.{path}.lora_B"))?;
        if a.dim(0)? == 0 {
            continue; // every rank pruned: the projection is unchanged
        }
        out.linear.insert(
            path,
            Box::new(SvdBranch {
                a: var(&a)?,
                e: var(&e.reshape((e.elem_count(), 1))?)?,
                b: var(&b)?,
                scale,
                dropout: 0.0,
            }),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_follows_peft_schedule() {
        let c = AdaloraConfig {
            init_r: 12,
            target_r: 4,
            tinit: Some(10),
            tfinal: Some(20),
            delta_t: 5,
            ..Default::default()
        };
        let n = 3;
        assert_eq!(c.budget(0, 100, n), (36, false));
        assert_eq!(c.budget(10, 100, n), (36, false));
        // Halfway through the decay: (36 − 12)·0.5³ + 12 = 15.
        assert_eq!(c.budget(45, 100, n), (15, true));
        assert_eq!(c.budget(46, 100, n), (14, false));
        assert_eq!(c.budget(81, 100, n), (12, true));
        // The same schedule as fractions of the run, and the same shape on a shorter run.
        let f = AdaloraConfig {
            tinit: None,
            tfinal: None,
            tinit_fraction: 0.1,
            tfinal_fraction: 0.2,
            ..c.clone()
        };
        for step in [0, 10, 45, 46, 81] {
            assert_eq!(f.budget(step, 100, n), c.budget(step, 100, n), "{step}");
        }
        assert_eq!(f.phases(30), (3, 6));
        assert!(f.validate_steps(30).is_ok());
        assert!(
            c.validate_steps(30).is_err(),
            "absolute 10 + 20 fill a 30-step run"
        );
    }
}
