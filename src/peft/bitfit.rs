//! BitFit (Ben Zaken et al., 2022): only the bias terms train, plus the normalisation gains
//! (the LayerNorm parameters of the original; RMSNorm has only a gain). LLaMA-family models
//! have no biases, so on them BitFit adds zero-initialised biases to the projections (the
//! model starts unchanged) unless `add_missing_biases` is off — the UI says which happens.

use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::export_trained_base;
use super::{ExportContext, Method, MethodConfig};
use crate::models::{Injector, LinearAdapter, ModelConfig, Projection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitfitConfig {
    /// Add a zero-initialised trainable bias to projections that have none.
    #[serde(default = "yes")]
    pub add_missing_biases: bool,
    /// Train the normalisation gains too.
    #[serde(default = "yes")]
    pub train_norms: bool,
}

fn yes() -> bool {
    true
}

impl Default for BitfitConfig {
    fn default() -> Self {
        Self {
            add_missing_biases: true,
            train_norms: true,
        }
    }
}

impl BitfitConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        Ok(())
    }

    /// The model's biases and norm parameters this trains, plus the biases it adds (a
    /// classifier's head aside, which trains anyway).
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        let existing: usize = model
            .tensor_shapes()
            .iter()
            .filter(|(n, _)| !n.starts_with("classifier.") && self.trains(n))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        let added: usize = model
            .projections()
            .iter()
            .filter(|(.., has_bias)| !*has_bias && self.add_missing_biases)
            .map(|(_, _, o, _)| o)
            .sum();
        existing + added
    }

    fn trains(&self, name: &str) -> bool {
        name.ends_with(".bias") || (self.train_norms && Self::is_norm(name))
    }

    /// What the user should know on a model without bias terms: a template with one `{}`
    /// hole (the projections' count), so the window can say it in its own language.
    pub fn note_template(&self, model: &ModelConfig) -> Option<(&'static str, usize)> {
        let projections = model.projections();
        if projections.iter().any(|p| p.3) {
            return None;
        }
        Some(if self.add_missing_biases {
            (
                "This model has no bias terms: BitFit adds zero-initialised biases to its {} projections.",
                projections.len(),
            )
        } else if self.train_norms {
            (
                "This model has no bias terms: BitFit trains only the normalisation gains.",
                0,
            )
        } else {
            (
                "This model has no bias terms: turn on added biases or norm gains, or BitFit trains nothing.",
                0,
            )
        })
    }

    pub fn note_for(&self, model: &ModelConfig) -> Option<String> {
        let (template, n) = self.note_template(model)?;
        Some(template.replacen("{}", &n.to_string(), 1))
    }

    fn is_norm(name: &str) -> bool {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        let leaf = module.rsplit('.').next().unwrap_or(module).to_lowercase();
        leaf.contains("norm") || leaf.starts_with("ln")
    }
}

#[derive(Debug)]
pub(crate) struct AddedBias(pub(crate) Var);

impl LinearAdapter for AddedBias {
    fn forward(&self, x: &Tensor, base: &Projection, _train: bool) -> candle_core::Result<Tensor> {
        base.forward(x)?.broadcast_add(self.0.as_tensor())
    }
}

pub struct Bitfit {
    cfg: BitfitConfig,
    device: Device,
    /// Biases this method added, by the checkpoint name they export under.
    added: Vec<(String, Var)>,
}

impl Bitfit {
    pub fn new(cfg: BitfitConfig, model: &ModelConfig, device: Device) -> Result<Self> {
        if cfg.param_count(model) == 0 {
            bail!(
                "BitFit has nothing to train: this model has no bias terms and both add_missing_biases and train_norms are off"
            );
        }
        Ok(Self {
            cfg,
            device,
            added: Vec::new(),
        })
    }
}

impl Injector for Bitfit {
    fn trains_base(&self, name: &str) -> bool {
        self.cfg.trains(name)
    }

    fn linear_adapter(
        &mut self,
        path: &str,
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        if base.bias.is_some() || !self.cfg.add_missing_biases {
            return Ok(None);
        }
        let bias = Var::zeros(base.out_dim(), candle_core::DType::F32, &self.device)?;
        self.added.push((format!("{path}.bias"), bias.clone()));
        Ok(Some(Box::new(AddedBias(bias))))
    }
}

impl Method for Bitfit {
    fn vars(&self) -> Vec<(String, Var)> {
        self.added.clone()
    }

    /// The project's format: trained biases and gains under their checkpoint names
    /// (added biases as `<projection>.bias`) and `method.json`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let added: Vec<(String, Tensor)> = self
            .added
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        export_trained_base(dir, &MethodConfig::Bitfit(self.cfg.clone()), ctx, &added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_biases_and_gains() {
        let b = Bitfit {
            cfg: BitfitConfig::default(),
            device: Device::Cpu,
            added: Vec::new(),
        };
        assert!(b.trains_base("model.layers.0.self_attn.q_proj.bias"));
        assert!(b.trains_base("model.layers.0.input_layernorm.weight"));
        assert!(b.trains_base("model.norm.weight"));
        assert!(!b.trains_base("model.layers.0.self_attn.q_proj.weight"));
        assert!(!b.trains_base("model.embed_tokens.weight"));
    }
}
