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
//! Bottleneck adapters (Houlsby, Pfeiffer) add layers whose effect is an activation, not a
//! weight change; they are not measured here.

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
    let device = Device::Cpu;
    let adapter = ImportedAdapter::load(adapter_dir, &model.config, &device)
        .with_context(|| format!("cannot read the adapter in {}", adapter_dir.display()))?;
    let weights = model.weights(&device)?;
    let mut map = adapter.update_map(weights.tensors())?;
    if let Some(prompt) = &adapter.hooks().prompt_embeds {
        let embeddings = super::import::token_embeddings(weights.tensors())?;
        map.nearest = nearest_tokens(prompt, embeddings, &model.tokenizer()?, NEAREST)?;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

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
