//! Where a method's update went: for each trained part of the model, how much it changed
//! what the model computes, measured from a saved adapter against the base weights.
//!
//! - Adapted projections (LoRA, DoRA, AdaLoRA, IA3): the relative change of the effective
//!   weight, ‖W' − W‖_F / ‖W‖_F, with W' the projection the adapter folds into (s·BA for
//!   LoRA; DoRA's magnitude-rescaled W + s·BA; AdaLoRA's s·PΛQ; IA3's W·diag(l)).
//! - Replaced tensors (full fine-tuning, Freeze, BitFit): ‖T' − T‖_F / ‖T‖_F per tensor.
//! - Virtual tokens (Prompt Tuning, P-Tuning): each token's norm over the mean norm of the
//!   model's real token embeddings, one cell per token.
//! - Key/value prefixes (Prefix Tuning, P-Tuning v2): per layer, the prefix keys' and
//!   values' root-mean-square entry.
//!
//! - Bottleneck adapters (Houlsby, Pfeiffer) add layers whose effect is an activation, not a
//!   weight change: each is measured while the run evaluates, as the RMS of what it adds
//!   over the RMS of the residual stream it joins (`Method::take_activation_cells`), and
//!   joined to the map with [`UpdateMap::with_activations`]. An adapter folder alone cannot
//!   say that, so a map measured from files only lists them as unmeasured.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::import::ImportedAdapter;
use crate::models::ModelFiles;

/// One trained part: its layer (None: before the layers, e.g. a virtual token), its module
/// within the layer, and the measured value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateCell {
    pub layer: Option<usize>,
    pub module: String,
    pub value: f64,
    /// A low-rank update's singular values, largest first (LoRA, DoRA, AdaLoRA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub singular_values: Vec<f64>,
}

impl UpdateCell {
    /// How many directions the update uses: exp of the entropy of its normalised singular
    /// values (Roy and Vetterli's effective rank), between 1 and the rank; 0 for no update.
    pub fn effective_rank(&self) -> Option<f64> {
        effective_rank(&self.singular_values)
    }
}

pub fn effective_rank(sv: &[f64]) -> Option<f64> {
    if sv.is_empty() {
        return None;
    }
    let total: f64 = sv.iter().sum();
    if total <= 0.0 {
        return Some(0.0);
    }
    let entropy: f64 = sv
        .iter()
        .map(|s| s / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    Some(entropy.exp())
}

/// The singular values of `B·A` (`[out, r]`, `[r, in]`), largest first, without forming it:
/// they are the square roots of the eigenvalues of `Lᵀ(BᵀB)L`, with `LLᵀ` the Cholesky
/// factor of `AAᵀ` (r × r matrices, a Jacobi eigen-solve in f64).
pub fn low_rank_singular_values(b: &Tensor, a: &Tensor) -> Result<Vec<f64>> {
    let gram = |t: &Tensor| -> Result<Vec<Vec<f64>>> {
        let t = t.to_dtype(DType::F64)?;
        Ok(t.t()?.matmul(&t)?.to_vec2::<f64>()?)
    };
    let s = gram(b)?; // BᵀB
    let t = gram(&a.t()?)?; // AAᵀ
    let r = s.len();
    // Cholesky of AAᵀ, nudged on its diagonal so a pruned (zero) rank does not stop it.
    let trace: f64 = (0..r).map(|i| t[i][i]).sum();
    let jitter = 1e-12 * trace.max(1e-300);
    let mut l = vec![vec![0.0f64; r]; r];
    for i in 0..r {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][i] = (t[i][i] + jitter - sum).max(0.0).sqrt();
            } else {
                l[i][j] = if l[j][j] > 0.0 {
                    (t[i][j] - sum) / l[j][j]
                } else {
                    0.0
                };
            }
        }
    }
    // C = Lᵀ S L.
    let mut sl = vec![vec![0.0f64; r]; r];
    for i in 0..r {
        for j in 0..r {
            sl[i][j] = (0..r).map(|k| s[i][k] * l[k][j]).sum();
        }
    }
    let mut c = vec![vec![0.0f64; r]; r];
    for i in 0..r {
        for j in 0..r {
            c[i][j] = (0..r).map(|k| l[k][i] * sl[k][j]).sum();
        }
    }
    let mut sv: Vec<f64> = jacobi_eigenvalues(c)
        .into_iter()
        .map(|x| x.max(0.0).sqrt())
        .collect();
    sv.sort_by(|x, y| y.total_cmp(x));
    Ok(sv)
}

/// Eigenvalues of a small symmetric matrix by cyclic Jacobi rotations.
fn jacobi_eigenvalues(mut m: Vec<Vec<f64>>) -> Vec<f64> {
    let n = m.len();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i][i] * m[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if m[p][q] == 0.0 {
                    continue;
                }
                let theta = (m[q][q] - m[p][p]) / (2.0 * m[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (cos, sin) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                // Columns p and q, then rows p and q (p < q).
                for row in m.iter_mut() {
                    let (x, y) = (row[p], row[q]);
                    row[p] = cos * x - sin * y;
                    row[q] = sin * x + cos * y;
                }
                let (upper, lower) = m.split_at_mut(q);
                for (a, b) in upper[p].iter_mut().zip(lower[0].iter_mut()) {
                    let (x, y) = (*a, *b);
                    *a = cos * x - sin * y;
                    *b = sin * x + cos * y;
                }
            }
        }
    }
    (0..n).map(|i| m[i][i]).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateMap {
    /// What the values are (for the colour scale's title).
    pub measure: String,
    pub cells: Vec<UpdateCell>,
    /// Trained parts the map does not measure (bottleneck adapters), said in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
    /// Prompt Tuning and P-Tuning: each virtual token's nearest vocabulary tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nearest: Vec<NearestTokens>,
}

/// What the activation cells of bottleneck adapters measure.
pub const ACTIVATION_MEASURE: &str = "adapter output RMS / residual stream RMS (eval batch)";

impl UpdateMap {
    /// The map with the activation cells measured while the run evaluated (none: as it is).
    pub fn with_activations(mut self, cells: &[UpdateCell]) -> Self {
        if cells.is_empty() {
            return self;
        }
        if self.cells.is_empty() {
            self.measure = ACTIVATION_MEASURE.to_string();
        }
        self.cells.extend_from_slice(cells);
        self.unmeasured = None;
        self
    }
}

/// A virtual token's nearest tokens of the vocabulary by cosine similarity to their input
/// embeddings (the reading of soft prompts in Lester et al., 2021), best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearestTokens {
    pub virtual_token: usize,
    pub nearest: Vec<(String, f64)>,
}

/// How many nearest tokens are kept per virtual token.
pub const NEAREST: usize = 5;

/// The `k` nearest rows of `embeddings` `[V, h]` to each row of `prompt` `[n, h]` by
/// cosine similarity, named by the tokenizer.
pub fn nearest_tokens(
    prompt: &Tensor,
    embeddings: &Tensor,
    tokenizer: &tokenizers::Tokenizer,
    k: usize,
) -> Result<Vec<NearestTokens>> {
    let unit = |t: &Tensor| -> Result<Tensor> {
        let t = t.to_dtype(DType::F32)?;
        let norms = t.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        Ok(t.broadcast_div(&norms)?)
    };
    let sims = unit(prompt)?
        .matmul(&unit(embeddings)?.t()?)?
        .to_vec2::<f32>()?;
    sims.into_iter()
        .enumerate()
        .map(|(i, row)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            let k = k.min(row.len());
            order.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| row[b].total_cmp(&row[a]));
            order.truncate(k);
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let nearest = order
                .into_iter()
                .map(|id| {
                    let text = tokenizer
                        .decode(&[id as u32], false)
                        .map_err(|e| anyhow::anyhow!("cannot decode token {id}: {e}"))?;
                    // A token holding part of a character (a byte of a hanzi's UTF-8)
                    // decodes to U+FFFD alone: it is named by its vocabulary entry instead.
                    let text = match tokenizer.id_to_token(id as u32) {
                        Some(raw) if text.contains('\u{FFFD}') => raw,
                        _ => text,
                    };
                    Ok((text, row[id] as f64))
                })
                .collect::<Result<_>>()?;
            Ok(NearestTokens {
                virtual_token: i,
                nearest,
            })
        })
        .collect()
}

/// A tensor path's layer and module: `model.layers.3.self_attn.q_proj` → (3,
/// `self_attn.q_proj`); a path without a layer number keeps its whole name.
pub fn layer_and_module(path: &str) -> (Option<usize>, String) {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.iter().position(|p| p.parse::<usize>().is_ok()) {
        Some(i) => (parts[i].parse().ok(), parts[i + 1..].join(".")),
        None => (None, path.to_string()),
    }
}

/// ‖a − b‖_F / ‖b‖_F in f64.
pub fn relative_change(new: &Tensor, base: &Tensor) -> Result<f64> {
    let (new, base) = (new.to_dtype(DType::F32)?, base.to_dtype(DType::F32)?);
    let diff = (&new - &base)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    let norm = base.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((diff / norm.max(1e-30)).sqrt())
}

/// The map of the adapter in `adapter_dir` (ours or PEFT's) on `model`.
pub fn measure(model: &ModelFiles, adapter_dir: &Path) -> Result<UpdateMap> {
    let weights = model.weights(&Device::Cpu)?;
    measure_against(model, weights.tensors(), adapter_dir)
}

/// The names of the base tensors measuring the adapter in `adapter_dir` reads (a run that
/// measures at each evaluation keeps only those).
pub fn base_tensors_read(
    model: &ModelFiles,
    base: &std::collections::HashMap<String, Tensor>,
    adapter_dir: &Path,
) -> Result<Vec<String>> {
    let adapter = ImportedAdapter::load(adapter_dir, &model.config, &Device::Cpu)?;
    Ok(adapter.base_tensors_read(base))
}

/// The same against base tensors already read (a run measuring at each evaluation reads
/// them once).
pub fn measure_against(
    model: &ModelFiles,
    base: &std::collections::HashMap<String, Tensor>,
    adapter_dir: &Path,
) -> Result<UpdateMap> {
    let adapter = ImportedAdapter::load(adapter_dir, &model.config, &Device::Cpu)
        .with_context(|| format!("cannot read the adapter in {}", adapter_dir.display()))?;
    let mut map = adapter.update_map(base)?;
    if let Some(prompt) = &adapter.hooks().prompt_embeds {
        let embeddings = super::import::token_embeddings(base)?;
        map.nearest = nearest_tokens(prompt, embeddings, &model.tokenizer()?, NEAREST)?;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B = U·diag(σ), A = Vᵀ with orthonormal U, V: B·A has exactly the singular values σ.
    #[test]
    fn singular_values_of_a_low_rank_product() {
        let dev = Device::Cpu;
        // Orthonormal columns from a rotation: U [6, 3], V [5, 3].
        let (c, s) = (0.6f64, 0.8f64);
        let u = Tensor::new(
            &[
                [c, -s, 0.0],
                [s, c, 0.0],
                [0.0, 0.0, 1.0],
                [0.0; 3],
                [0.0; 3],
                [0.0; 3],
            ],
            &dev,
        )
        .unwrap();
        let v = Tensor::new(
            &[
                [0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 0.0, c],
                [0.0, 0.0, s],
                [0.0; 3],
            ],
            &dev,
        )
        .unwrap();
        let sigma = Tensor::new(&[3.0f64, 0.5, 0.0], &dev).unwrap();
        let b = u.broadcast_mul(&sigma).unwrap();
        let a = v.t().unwrap();
        let sv = low_rank_singular_values(&b, &a).unwrap();
        for (got, want) in sv.iter().zip([3.0, 0.5, 0.0]) {
            assert!((got - want).abs() < 1e-6, "{sv:?}");
        }
        // Two directions used, unequally: between 1 and 2.
        let er = effective_rank(&sv).unwrap();
        assert!(er > 1.0 && er < 2.0, "{er}");
        assert_eq!(effective_rank(&[0.0, 0.0]), Some(0.0));
        assert!((effective_rank(&[1.0, 1.0, 1.0, 1.0]).unwrap() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn paths_split_into_layer_and_module() {
        assert_eq!(
            layer_and_module("model.layers.3.self_attn.q_proj"),
            (Some(3), "self_attn.q_proj".into())
        );
        assert_eq!(
            layer_and_module("h.11.mlp.c_fc"),
            (Some(11), "mlp.c_fc".into())
        );
        assert_eq!(layer_and_module("lm_head"), (None, "lm_head".into()));
    }
}
