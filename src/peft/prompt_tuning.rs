//! Prompt Tuning (Lester et al., 2021): n trainable virtual-token embeddings placed before
//! the input embeddings; the model is untouched. Initialised as PEFT does: `random`
//! (N(0, 1), `nn.Embedding`'s default), `text` (the embeddings of a tokenised text, repeated
//! or cut to n) or `sample_vocab` (the embeddings of n random vocabulary tokens).

use anyhow::{Result, bail};
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::save_safetensors;
use super::init;
use super::{ExportContext, Method};
use crate::files::save_json;
use crate::models::{Hooks, Injector, Model, ModelConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PromptInit {
    Random,
    Text,
    #[default]
    SampleVocab,
}

impl PromptInit {
    pub const ALL: [PromptInit; 3] = [
        PromptInit::Random,
        PromptInit::Text,
        PromptInit::SampleVocab,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PromptInit::Random => "random",
            PromptInit::Text => "text",
            PromptInit::SampleVocab => "sample_vocab",
        }
    }

    /// PEFT's `prompt_tuning_init` value.
    fn peft_name(self) -> &'static str {
        match self {
            PromptInit::Random => "RANDOM",
            PromptInit::Text => "TEXT",
            PromptInit::SampleVocab => "SAMPLE_VOCAB",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTuningConfig {
    /// Number n of virtual tokens.
    #[serde(default = "default_tokens")]
    pub num_virtual_tokens: usize,
    /// How the virtual tokens start.
    #[serde(default)]
    pub init: PromptInit,
    /// The text whose embeddings start the prompt when `init = "text"`.
    #[serde(default)]
    pub init_text: String,
}

pub(crate) fn default_tokens() -> usize {
    10
}

impl Default for PromptTuningConfig {
    fn default() -> Self {
        Self {
            num_virtual_tokens: default_tokens(),
            init: PromptInit::default(),
            init_text: String::new(),
        }
    }
}

/// Checks a virtual-token count (shared by the prompt methods).
pub(crate) fn validate_tokens(n: usize) -> std::result::Result<(), (String, String)> {
    if n == 0 || n > 512 {
        return Err((
            "num_virtual_tokens".into(),
            "must be between 1 and 512".into(),
        ));
    }
    Ok(())
}

impl PromptTuningConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        validate_tokens(self.num_virtual_tokens)?;
        if self.init == PromptInit::Text && self.init_text.trim().is_empty() {
            return Err((
                "init_text".into(),
                "give the text whose embeddings start the prompt, or choose another init".into(),
            ));
        }
        Ok(())
    }

    /// n × hidden.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        self.num_virtual_tokens * model.hidden_size()
    }
}

pub struct PromptTuning {
    cfg: PromptTuningConfig,
    rng: StdRng,
    /// `[n, hidden]`.
    prompt: Var,
}

impl PromptTuning {
    pub fn new(
        cfg: PromptTuningConfig,
        model: &ModelConfig,
        seed: u64,
        device: Device,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5072_6f6d);
        let prompt = init::normal(
            &mut rng,
            &[cfg.num_virtual_tokens, model.hidden_size()],
            1.0,
            &device,
        )?;
        Ok(Self { cfg, rng, prompt })
    }
}

impl Injector for PromptTuning {}

/// `ids` repeated or cut to exactly `n` (PEFT's rule for text initialisation).
pub(crate) fn fit_ids(ids: &[u32], n: usize) -> Vec<u32> {
    ids.iter().copied().cycle().take(n).collect()
}

/// The token ids of an `init_text`, repeated or cut to `n`, as a `[1, n]` tensor.
pub(crate) fn init_text_ids(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    n: usize,
    device: &Device,
) -> Result<Tensor> {
    let enc = tokenizer
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenise init_text: {e}"))?;
    if enc.get_ids().is_empty() {
        bail!("init_text gives no tokens");
    }
    Ok(Tensor::new(fit_ids(enc.get_ids(), n).as_slice(), device)?.unsqueeze(0)?)
}

/// Writes a prompt-learning adapter: its one tensor `prompt_embeddings` and its config.
pub(crate) fn save_prompt_adapter(
    dir: &Path,
    prompt: Tensor,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    save_safetensors(
        &dir.join("adapter_model.safetensors"),
        &[("prompt_embeddings".into(), prompt)],
    )?;
    save_json(
        &dir.join("adapter_config.json"),
        &serde_json::Value::Object(config),
    )
}

/// The fields PEFT writes for every prompt-learning method.
pub(crate) fn prompt_learning_config(
    peft_type: &str,
    num_virtual_tokens: usize,
    token_dim: usize,
    num_layers: usize,
    num_attention_heads: usize,
    base_model: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "inference_mode": true,
        "num_attention_heads": num_attention_heads,
        "num_layers": num_layers,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": num_virtual_tokens,
        "peft_type": peft_type,
        "revision": null,
        "task_type": "CAUSAL_LM",
        "token_dim": token_dim,
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

impl Method for PromptTuning {
    fn vars(&self) -> Vec<(String, Var)> {
        vec![("prompt_embeddings".into(), self.prompt.clone())]
    }

    fn on_loaded(&mut self, model: &Model, tokenizer: &tokenizers::Tokenizer) -> Result<()> {
        let n = self.cfg.num_virtual_tokens;
        let device = self.prompt.device().clone();
        let ids = match self.cfg.init {
            PromptInit::Random => return Ok(()),
            PromptInit::Text => init_text_ids(tokenizer, &self.cfg.init_text, n, &device)?,
            PromptInit::SampleVocab => {
                let vocab = model.config().vocab_size() as u32;
                let ids: Vec<u32> = (0..n).map(|_| self.rng.random_range(0..vocab)).collect();
                Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?
            }
        };
        self.prompt.set(&model.embed(&ids)?.squeeze(0)?)?;
        Ok(())
    }

    fn hooks(&self, _train: bool) -> Result<Hooks> {
        Ok(Hooks {
            prompt_embeds: Some(self.prompt.as_tensor().clone()),
            kv_prefix: None,
        })
    }

    /// PEFT's PROMPT_TUNING folder: `prompt_embeddings` `[n, hidden]`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let m = ctx.model;
        let mut c = prompt_learning_config(
            "PROMPT_TUNING",
            self.cfg.num_virtual_tokens,
            m.hidden_size(),
            m.num_layers(),
            m.num_heads(),
            ctx.base_model,
        );
        c.insert(
            "prompt_tuning_init".into(),
            self.cfg.init.peft_name().into(),
        );
        let text = (self.cfg.init == PromptInit::Text).then(|| self.cfg.init_text.clone());
        c.insert("prompt_tuning_init_text".into(), text.into());
        c.insert(
            "tokenizer_name_or_path".into(),
            (self.cfg.init == PromptInit::Text)
                .then(|| ctx.base_model.to_string())
                .into(),
        );
        c.insert("tokenizer_kwargs".into(), serde_json::Value::Null);
        save_prompt_adapter(dir, self.prompt.as_tensor().clone(), c)
    }
}

/// Reads PEFT's `PROMPT_TUNING` or `P_TUNING` adapter (the virtual tokens' embeddings,
/// which P-Tuning saves in the same form) from its tensors (`bag`) and
/// `adapter_config.json` (`cfg`) into `out`.
pub(super) fn import_peft(
    cfg: &serde_json::Value,
    bag: &mut super::import::TensorBag,
    model: &crate::models::ModelConfig,
    out: &mut super::import::ImportedAdapter,
) -> anyhow::Result<()> {
    let subs = cfg["num_transformer_submodules"].as_u64().unwrap_or(1);
    if subs != 1 {
        bail!("num_transformer_submodules = {subs}: only decoder models (1) are supported");
    }
    let p = super::import::prompt_embeddings(cfg, bag, model.hidden_size())?;
    out.hooks.prompt_embeds = Some(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_repeat_or_cut_to_n() {
        assert_eq!(fit_ids(&[1, 2, 3], 7), vec![1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(fit_ids(&[1, 2, 3], 2), vec![1, 2]);
    }
}
