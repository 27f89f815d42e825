//! P-Tuning v2 (Liu et al., 2022): deep prompts — n trainable key and value positions in
//! every attention layer, trained directly with no reparameterisation. In Hugging Face PEFT
//! this is prefix tuning with `prefix_projection = false`; it is built, trained and exported
//! as exactly that.

use anyhow::Result;
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::prefix_tuning::{PrefixTuning, PrefixTuningConfig};
use super::prompt_tuning::{default_tokens, validate_tokens};
use crate::models::ModelConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PTuningV2Config {
    /// Prompt length n in every layer.
    #[serde(default = "default_tokens")]
    pub num_virtual_tokens: usize,
    /// When set, the prompts start as the keys and values the model computes for this text
    /// (repeated or cut to n); otherwise N(0, 1) as in PEFT.
    #[serde(default)]
    pub init_text: String,
}

impl Default for PTuningV2Config {
    fn default() -> Self {
        Self {
            num_virtual_tokens: default_tokens(),
            init_text: String::new(),
        }
    }
}

impl PTuningV2Config {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        validate_tokens(self.num_virtual_tokens)
    }

    fn as_prefix(&self) -> PrefixTuningConfig {
        PrefixTuningConfig {
            num_virtual_tokens: self.num_virtual_tokens,
            prefix_projection: false,
            ..Default::default()
        }
    }

    /// n · layers · 2 · kv_dim.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        self.as_prefix().param_count(model)
    }

    pub fn build(&self, model: &ModelConfig, seed: u64, device: Device) -> Result<PrefixTuning> {
        let text = (!self.init_text.trim().is_empty()).then(|| self.init_text.clone());
        Ok(PrefixTuning::new(self.as_prefix(), model, seed, device)?.with_init_text(text))
    }
}
