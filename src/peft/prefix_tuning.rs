//! Prefix Tuning (Li & Liang, 2021), as Hugging Face PEFT's prefix encoder: every attention
//! layer gets n extra key and value positions before the sequence (like a cache). While
//! training they are reparameterised, `Embedding(n, d) → Linear(d, h) → Tanh →
//! Linear(h, layers·2·d)` with d the key/value width (grouped-query models get prefixes of
//! their key/value heads, as PEFT does); after training only the resulting prefixes are
//! kept, and that is what the export holds.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::init::{self, TrainLinear};
use super::prompt_tuning::{
    default_tokens, init_text_ids, prompt_learning_config, save_prompt_adapter, validate_tokens,
};
use super::{ExportContext, Method};
use crate::models::{Hooks, Injector, ModelConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixTuningConfig {
    /// Prefix length n (positions added to every layer's keys and values).
    #[serde(default = "default_tokens")]
    pub num_virtual_tokens: usize,
    /// Width h of the reparameterisation MLP.
    #[serde(default = "default_encoder_hidden")]
    pub encoder_hidden_size: usize,
    /// Train through the MLP (the paper's method). Off trains the prefixes directly, which
    /// is P-Tuning v2.
    #[serde(default = "yes")]
    pub prefix_projection: bool,
}

fn default_encoder_hidden() -> usize {
    128
}
fn yes() -> bool {
    true
}

impl Default for PrefixTuningConfig {
    fn default() -> Self {
        Self {
            num_virtual_tokens: default_tokens(),
            encoder_hidden_size: default_encoder_hidden(),
            prefix_projection: true,
        }
    }
}

impl PrefixTuningConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        validate_tokens(self.num_virtual_tokens)?;
        if self.encoder_hidden_size == 0 {
            return Err(("encoder_hidden_size".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// With the projection `n·d + (d·h + h) + (h·2Ld + 2Ld)`; without, `n·2Ld`.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        let (n, d, h) = (
            self.num_virtual_tokens,
            model.kv_dim(),
            self.encoder_hidden_size,
        );
        let out = 2 * model.num_layers() * d;
        if self.prefix_projection {
            n * d + TrainLinear::param_count(d, h) + TrainLinear::param_count(h, out)
        } else {
            n * out
        }
    }
}

/// Splits prefixes `[n, layers·2·kv_dim]` (PEFT's layout) into one (key, value) pair per
/// layer, each `[1, kv_heads, n, head_dim]`: reshaped `(n, 2L, kv_heads, head_dim)` and
/// permuted so entry 2l is layer l's key and 2l + 1 its value.
pub fn prefix_to_kv(flat: &Tensor, model: &ModelConfig) -> Result<Vec<(Tensor, Tensor)>> {
    let n = flat.dim(0)?;
    let layers = model.num_layers();
    let per = flat
        .reshape((n, 2 * layers, model.kv_heads(), model.head_dim()))?
        .permute((1, 2, 0, 3))?;
    (0..layers)
        .map(|l| {
            Ok((
                per.get(2 * l)?.unsqueeze(0)?,
                per.get(2 * l + 1)?.unsqueeze(0)?,
            ))
        })
        .collect()
}

/// Where the prefixes come from.
enum Source {
    /// `[n, kv_dim]` embeddings through the MLP.
    Projection {
        embedding: Var,
        transform: (TrainLinear, TrainLinear),
    },
    /// The prefixes themselves, `[n, layers·2·kv_dim]` (P-Tuning v2).
    Direct(Var),
}

pub struct PrefixTuning {
    cfg: PrefixTuningConfig,
    model: ModelConfig,
    source: Source,
    /// Start directly trained prefixes from the keys and values the model computes for
    /// this text (P-Tuning v2's `init_text`).
    init_text: Option<String>,
}

impl PrefixTuning {
    /// Both encoders start as PEFT's: embeddings N(0, 1) (`nn.Embedding`), linear layers
    /// with PyTorch's default initialisation.
    pub fn new(
        cfg: PrefixTuningConfig,
        model: &ModelConfig,
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5072_6566);
        let (n, d, h) = (
            cfg.num_virtual_tokens,
            model.kv_dim(),
            cfg.encoder_hidden_size,
        );
        let width = 2 * model.num_layers() * d;
        let source = if cfg.prefix_projection {
            Source::Projection {
                embedding: init::normal(&mut rng, &[n, d], 1.0, &device)?,
                transform: (
                    TrainLinear::new(&mut rng, d, h, &device)?,
                    TrainLinear::new(&mut rng, h, width, &device)?,
                ),
            }
        } else {
            Source::Direct(init::normal(&mut rng, &[n, width], 1.0, &device)?)
        };
        Ok(Self {
            cfg,
            model: model.clone(),
            source,
            init_text: None,
        })
    }

    /// Directly trained prefixes start from the model's own keys and values of `text`
    /// (tokenised, repeated or cut to n) instead of N(0, 1).
    pub fn with_init_text(mut self, text: Option<String>) -> Self {
        self.init_text = text;
        self
    }

    /// The prefixes `[n, layers·2·kv_dim]` as they are now.
    pub fn prefixes(&self) -> Result<Tensor> {
        Ok(match &self.source {
            Source::Projection {
                embedding,
                transform,
            } => {
                let x = transform.0.forward(embedding.as_tensor())?.tanh()?;
                transform.1.forward(&x)?
            }
            Source::Direct(p) => p.as_tensor().clone(),
        })
    }
}

impl Injector for PrefixTuning {}

/// The inverse of [`prefix_to_kv`]: per-layer keys and values `[1, kv_heads, n, head_dim]`
/// packed as `[n, layers·2·kv_dim]`.
pub fn kv_to_prefix(kv: &[(Tensor, Tensor)]) -> Result<Tensor> {
    let per: Vec<Tensor> = kv
        .iter()
        .flat_map(|(k, v)| [k.squeeze(0), v.squeeze(0)])
        .collect::<candle_core::Result<_>>()?;
    let stacked = Tensor::stack(&per, 0)?; // [2L, kv_heads, n, head_dim]
    let (l2, h, n, d) = stacked.dims4()?;
    Ok(stacked.permute((2, 0, 1, 3))?.reshape((n, l2 * h * d))?)
}

impl Method for PrefixTuning {
    fn on_loaded(
        &mut self,
        model: &crate::models::Model,
        tokenizer: &tokenizers::Tokenizer,
    ) -> Result<()> {
        let (Some(text), Source::Direct(prefixes)) = (&self.init_text, &self.source) else {
            return Ok(());
        };
        let ids = init_text_ids(
            tokenizer,
            text,
            self.cfg.num_virtual_tokens,
            prefixes.device(),
        )?;
        prefixes.set(&kv_to_prefix(&model.key_values(&ids)?)?)?;
        Ok(())
    }

    fn vars(&self) -> Vec<(String, Var)> {
        match &self.source {
            Source::Projection {
                embedding,
                transform,
            } => {
                let mut v = vec![(
                    "prompt_encoder.embedding.weight".to_string(),
                    embedding.clone(),
                )];
                v.extend(transform.0.named("prompt_encoder.transform.0"));
                v.extend(transform.1.named("prompt_encoder.transform.2"));
                v
            }
            Source::Direct(p) => vec![("prompt_encoder.embedding.weight".into(), p.clone())],
        }
    }

    fn hooks(&self, _train: bool) -> Result<Hooks> {
        Ok(Hooks {
            prompt_embeds: None,
            kv_prefix: Some(prefix_to_kv(&self.prefixes()?, &self.model)?),
        })
    }

    /// PEFT's PREFIX_TUNING folder: `prompt_embeddings` `[n, layers·2·kv_dim]` (the MLP's
    /// output), with `token_dim` and `num_attention_heads` of the key/value heads.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let m = ctx.model;
        let mut c = prompt_learning_config(
            "PREFIX_TUNING",
            self.cfg.num_virtual_tokens,
            m.kv_dim(),
            m.num_layers(),
            m.kv_heads(),
            ctx.base_model,
        );
        let hidden = self
            .cfg
            .prefix_projection
            .then_some(self.cfg.encoder_hidden_size);
        c.insert("encoder_hidden_size".into(), hidden.into());
        c.insert(
            "prefix_projection".into(),
            self.cfg.prefix_projection.into(),
        );
        save_prompt_adapter(dir, self.prefixes()?, c)
    }
}

/// Reads PEFT's `PREFIX_TUNING` adapter (the key/value prefixes of every layer) from its
/// tensors (`bag`) and `adapter_config.json` (`cfg`) into `out`.
pub(super) fn import_peft(
    cfg: &serde_json::Value,
    bag: &mut super::import::TensorBag,
    model: &crate::models::ModelConfig,
    out: &mut super::import::ImportedAdapter,
) -> anyhow::Result<()> {
    let width = 2 * model.num_layers() * model.kv_dim();
    let p = super::import::prompt_embeddings(cfg, bag, width)?;
    out.hooks.kv_prefix = Some(prefix_to_kv(&p, model)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_key_values_inverts_the_split() {
        let model = ModelConfig::Llama(
            serde_json::from_value(serde_json::json!({
                "hidden_size": 16, "intermediate_size": 8, "num_attention_heads": 4,
                "num_key_value_heads": 2, "num_hidden_layers": 3, "vocab_size": 10
            }))
            .unwrap(),
        );
        let flat = Tensor::arange(0f32, (5 * 3 * 2 * 8) as f32, &Device::Cpu)
            .unwrap()
            .reshape((5, 48))
            .unwrap();
        let kv = prefix_to_kv(&flat, &model).unwrap();
        assert_eq!(kv.len(), 3);
        assert_eq!(kv[0].0.dims(), &[1, 2, 5, 4]);
        // Row 0 holds layer 0's key (heads 0, 1), then its value, then layer 1's key...
        assert_eq!(
            kv[0]
                .1
                .get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            vec![8.0, 9.0, 10.0, 11.0]
        );
        let back = kv_to_prefix(&kv).unwrap();
        assert_eq!(
            back.to_vec2::<f32>().unwrap(),
            flat.to_vec2::<f32>().unwrap()
        );
    }
}
