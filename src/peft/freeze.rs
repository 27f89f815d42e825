//! Freeze tuning (as LLaMA-Factory's `freeze`): everything is frozen except the last N
//! blocks (optionally only some of their sub-modules) and any extra named modules.

use anyhow::Result;
use candle_core::Var;
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::{ExportContext, Method, MethodConfig, export::export_trained_base};
use crate::models::{Injector, ModelConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeConfig {
    /// How many of the last blocks train.
    #[serde(default = "default_layers")]
    pub trainable_layers: usize,
    /// Which parts of those blocks train: `["all"]`, or names such as `"mlp"`, `"self_attn"`,
    /// `"q_proj"`, `"input_layernorm"`.
    #[serde(default = "default_modules")]
    pub trainable_modules: Vec<String>,
    /// Modules outside the blocks that also train, e.g. `"norm"`, `"embed_tokens"`.
    #[serde(default)]
    pub extra_modules: Vec<String>,
}

fn default_layers() -> usize {
    2
}
fn default_modules() -> Vec<String> {
    vec!["all".into()]
}

impl Default for FreezeConfig {
    fn default() -> Self {
        Self {
            trainable_layers: default_layers(),
            trainable_modules: default_modules(),
            extra_modules: Vec::new(),
        }
    }
}

impl FreezeConfig {
    /// Elements of the base tensors this configuration trains.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        let f = Freeze::new(self.clone(), model.num_layers());
        model
            .tensor_shapes()
            .iter()
            .filter(|(n, _)| !n.starts_with("classifier.") && f.trains_base(n))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.trainable_layers == 0 && self.extra_modules.is_empty() {
            return Err((
                "trainable_layers".into(),
                "must be at least 1 unless extra_modules names something to train".into(),
            ));
        }
        if self.trainable_modules.is_empty() {
            return Err((
                "trainable_modules".into(),
                "use [\"all\"] or name sub-modules".into(),
            ));
        }
        Ok(())
    }
}

pub struct Freeze {
    cfg: FreezeConfig,
    num_layers: usize,
}

impl Freeze {
    pub fn new(cfg: FreezeConfig, num_layers: usize) -> Self {
        Self { cfg, num_layers }
    }

    fn first_trainable_layer(&self) -> usize {
        self.num_layers.saturating_sub(self.cfg.trainable_layers)
    }
}

impl Injector for Freeze {
    fn trains_base(&self, name: &str) -> bool {
        let module = name
            .strip_suffix(".weight")
            .or(name.strip_suffix(".bias"))
            .unwrap_or(name);
        if let Some((idx, inner)) = crate::models::layer_of(module) {
            return idx >= self.first_trainable_layer()
                && self
                    .cfg
                    .trainable_modules
                    .iter()
                    .any(|m| m == "all" || inner.split('.').any(|part| part == m));
        }
        self.cfg
            .extra_modules
            .iter()
            .any(|m| module == m || module.ends_with(&format!(".{m}")))
    }
}

impl Method for Freeze {
    fn vars(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        export_trained_base(dir, &MethodConfig::Freeze(self.cfg.clone()), ctx, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_last_blocks_and_named_parts() {
        let f = Freeze::new(
            FreezeConfig {
                trainable_layers: 2,
                trainable_modules: vec!["mlp".into()],
                extra_modules: vec!["norm".into()],
            },
            6,
        );
        assert!(f.trains_base("model.layers.5.mlp.up_proj.weight"));
        assert!(f.trains_base("model.layers.4.mlp.down_proj.weight"));
        assert!(!f.trains_base("model.layers.3.mlp.down_proj.weight"));
        assert!(!f.trains_base("model.layers.5.self_attn.q_proj.weight"));
        assert!(f.trains_base("model.norm.weight"));
        assert!(!f.trains_base("model.layers.5.input_layernorm.weight"));
        assert!(!f.trains_base("model.embed_tokens.weight"));
        let all = Freeze::new(FreezeConfig::default(), 6);
        assert!(all.trains_base("model.layers.5.input_layernorm.weight"));
    }
}
