//! Fine-tuning methods. Each lives in its own module (config, layers, how it attaches,
//! export); `MethodConfig` is both the registry and the preset format.

pub mod export;
pub mod freeze;
pub mod full;
pub mod lora;

use anyhow::Result;
use candle_core::{Device, Var};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::models::{Injector, LlamaConfig};

/// A method and its parameters, tagged by `kind` in TOML (`[method] kind = "lora"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Every weight trains: the baseline the PEFT methods are measured against.
    Full(full::FullConfig),
    /// Only the last blocks (and optionally named modules) train.
    Freeze(freeze::FreezeConfig),
    /// Low-rank updates `B·A` beside frozen projections.
    Lora(lora::LoraConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Lora(lora::LoraConfig::default())
    }
}

impl MethodConfig {
    /// One default configuration per method, in the order the UI lists them.
    pub fn all_defaults() -> Vec<MethodConfig> {
        vec![
            MethodConfig::Full(full::FullConfig::default()),
            MethodConfig::Freeze(freeze::FreezeConfig::default()),
            MethodConfig::Lora(lora::LoraConfig::default()),
        ]
    }

    /// The `kind` name used in TOML and on the command line.
    pub fn kind(&self) -> &'static str {
        match self {
            MethodConfig::Full(_) => "full",
            MethodConfig::Freeze(_) => "freeze",
            MethodConfig::Lora(_) => "lora",
        }
    }

    /// The name people know the method by.
    pub fn display_name(&self) -> &'static str {
        match self {
            MethodConfig::Full(_) => "Full fine-tuning",
            MethodConfig::Freeze(_) => "Freeze",
            MethodConfig::Lora(_) => "LoRA",
        }
    }

    /// A one-line summary of the parameters that matter, for run lists and legends.
    pub fn short_label(&self) -> String {
        match self {
            MethodConfig::Full(_) => "full".into(),
            MethodConfig::Freeze(c) => format!("freeze last {}", c.trainable_layers),
            MethodConfig::Lora(c) => format!("lora r{} α{}", c.rank, c.alpha),
        }
    }

    /// `Err((key, why))` for a value no run can use.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        match self {
            MethodConfig::Full(_) => Ok(()),
            MethodConfig::Freeze(c) => c.validate(),
            MethodConfig::Lora(c) => c.validate(),
        }
    }

    /// The method, ready to attach to a model of `model` shape.
    pub fn build(&self, model: &LlamaConfig, seed: u64, device: &Device) -> Box<dyn Method> {
        match self {
            MethodConfig::Full(c) => Box::new(full::Full::new(c.clone())),
            MethodConfig::Freeze(c) => {
                Box::new(freeze::Freeze::new(c.clone(), model.num_hidden_layers))
            }
            MethodConfig::Lora(c) => Box::new(lora::Lora::new(c.clone(), seed, device.clone())),
        }
    }
}

/// What an export needs to know besides the method's own tensors.
pub struct ExportContext<'a> {
    /// Recorded as `base_model_name_or_path`.
    pub base_model: &'a str,
    /// Base tensors the run trained (full fine-tuning, Freeze), by checkpoint name.
    pub trained_base: &'a [(String, Var)],
}

/// A method attached to a model.
pub trait Method: Injector + Send {
    /// The method's own trainable tensors, named as they are exported.
    fn vars(&self) -> Vec<(String, Var)>;
    /// Fails if the method found nothing to attach to (e.g. target modules the model lacks).
    fn check_attached(&self, _module_names: &[String]) -> Result<()> {
        Ok(())
    }
    /// Writes the trained weights into `dir` (which exists and is empty).
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()>;
}
