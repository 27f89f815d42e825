//! Models with the injection points PEFT methods need.

pub mod bert;
pub mod gguf;
pub mod gpt2;
pub mod layers;
pub mod linear;
pub mod llama;
pub mod weights;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};

use std::path::{Path, PathBuf};

pub use linear::{Linear, LinearAdapter, Projection};

pub use crate::kernels::max_abs_diff;
pub use bert::{Bert, BertConfig};
pub use gpt2::{Gpt2, Gpt2Config};
pub use llama::{Llama, LlamaConfig};
pub use weights::Weights;

/// Where in a block a sub-layer adapter sits: on the attention output or on the MLP output,
/// before each is added back to the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    AfterAttention,
    AfterMlp,
}

/// A module applied to a sub-layer's output (adapter tuning). It is also given the residual
/// stream the output joins, so it can say how large its contribution is beside it.
pub trait SublayerAdapter: Send + Sync + std::fmt::Debug {
    fn forward(&self, h: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor>;
}

/// How a method attaches to a model while it is built. Every hook defaults to nothing, so
/// a method implements only the ones it uses.
pub trait Injector {
    /// Whether the base tensor of this checkpoint name trains (full fine-tuning, Freeze).
    fn trains_base(&self, _name: &str) -> bool {
        false
    }
    /// A tensor that takes the place of the checkpoint's (an imported full, Freeze or BitFit
    /// export).
    fn replace_base(&self, _name: &str) -> Option<Tensor> {
        None
    }
    /// An adapter for the projection at `path` (e.g. `model.layers.0.self_attn.q_proj`),
    /// given the frozen projection it wraps.
    fn linear_adapter(
        &mut self,
        _path: &str,
        _base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        Ok(None)
    }
    /// A module after a sub-layer of block `layer`.
    fn sublayer_adapter(
        &mut self,
        _layer: usize,
        _site: Site,
        _hidden: usize,
    ) -> Result<Option<Box<dyn SublayerAdapter>>> {
        Ok(None)
    }
}

/// The plain base model.
pub struct NoMethod;
impl Injector for NoMethod {}

/// What a forward pass is given besides token ids.
#[derive(Debug, Default, Clone)]
pub struct Hooks {
    /// `[n, hidden]` virtual-token embeddings placed before the input (prompt tuning, P-tuning).
    pub prompt_embeds: Option<Tensor>,
    /// Per layer, keys and values `[B or 1, kv_heads, P, head_dim]` placed before the
    /// sequence's own (prefix tuning, P-tuning v2); a batch of 1 is shared by every example.
    pub kv_prefix: Option<Vec<(Tensor, Tensor)>>,
}

/// The folder of the built-in model, shipped in `assets/models/builtin`.
pub fn builtin_model_dir() -> PathBuf {
    crate::assets_dir().join("models").join("builtin")
}

/// The shape of a model of any supported family: what methods count, size and attach by.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// A decoder of the LLaMA family (LLaMA, SmolLM2, Mistral, Qwen2).
    Llama(LlamaConfig),
    /// A BERT encoder with a sequence-classification head.
    Bert(BertConfig),
    /// A GPT-2-family decoder.
    Gpt2(Gpt2Config),
}

/// The families `ModelFiles::open` reads, by `model_type`.
pub const SUPPORTED_MODEL_TYPES: &str = "llama, mistral, qwen2, gpt2 (decoders); bert (encoder)";

impl ModelConfig {
    /// Reads a Hugging Face `config.json`, choosing the family by its `model_type`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let arch = v
            .get("model_type")
            .and_then(|m| m.as_str())
            .unwrap_or("llama")
            .to_string();
        match arch.as_str() {
            "llama" | "mistral" | "qwen2" => Ok(Self::Llama(LlamaConfig::from_value(v, path)?)),
            "bert" => Ok(Self::Bert(BertConfig::from_value(v, path)?)),
            "gpt2" => Ok(Self::Gpt2(Gpt2Config::from_value(v, path)?)),
            other => bail!(
                "unsupported model_type `{other}` in {} (supported: {SUPPORTED_MODEL_TYPES})",
                path.display()
            ),
        }
    }

    /// `llama`, `qwen2`, `bert`, …
    pub fn family(&self) -> String {
        match self {
            Self::Llama(c) => c.model_type.clone().unwrap_or_else(|| "llama".into()),
            Self::Bert(_) => "bert".into(),
            Self::Gpt2(_) => "gpt2".into(),
        }
    }

    /// Whether the model classifies sequences (an encoder with a head) rather than
    /// predicting the next token.
    pub fn is_classifier(&self) -> bool {
        matches!(self, Self::Bert(_))
    }

    pub fn as_llama(&self) -> Option<&LlamaConfig> {
        match self {
            Self::Llama(c) => Some(c),
            Self::Bert(_) | Self::Gpt2(_) => None,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Llama(c) => c.hidden_size,
            Self::Bert(c) => c.hidden_size,
            Self::Gpt2(c) => c.n_embd,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Llama(c) => c.num_hidden_layers,
            Self::Bert(c) => c.num_hidden_layers,
            Self::Gpt2(c) => c.n_layer,
        }
    }

    pub fn num_heads(&self) -> usize {
        match self {
            Self::Llama(c) => c.num_attention_heads,
            Self::Bert(c) => c.num_attention_heads,
            Self::Gpt2(c) => c.n_head,
        }
    }

    pub fn kv_heads(&self) -> usize {
        match self {
            Self::Llama(c) => c.kv_heads(),
            Self::Bert(c) => c.num_attention_heads,
            Self::Gpt2(c) => c.n_head,
        }
    }

    pub fn head_dim(&self) -> usize {
        match self {
            Self::Llama(c) => c.head_dim(),
            Self::Bert(c) => c.head_dim(),
            Self::Gpt2(c) => c.head_dim(),
        }
    }

    /// Width of the keys and values one layer stores per position.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads() * self.head_dim()
    }

    pub fn intermediate_size(&self) -> usize {
        match self {
            Self::Llama(c) => c.intermediate_size,
            Self::Bert(c) => c.intermediate_size,
            Self::Gpt2(c) => c.inner(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Llama(c) => c.vocab_size,
            Self::Bert(c) => c.vocab_size,
            Self::Gpt2(c) => c.vocab_size,
        }
    }

    pub fn max_positions(&self) -> usize {
        match self {
            Self::Llama(c) => c.max_position_embeddings,
            Self::Bert(c) => c.max_position_embeddings,
            Self::Gpt2(c) => c.n_positions,
        }
    }

    /// Every projection in load order: (module path, in features, out features, has a bias).
    pub fn projections(&self) -> Vec<(String, usize, usize, bool)> {
        match self {
            Self::Llama(c) => c.projections(),
            Self::Bert(c) => c.projections(),
            Self::Gpt2(c) => c.projections(),
        }
    }

    /// Names of the normalisation parameters (RMSNorm gains; LayerNorm gains and shifts).
    pub fn norm_params(&self) -> Vec<String> {
        match self {
            Self::Llama(c) => c.norm_weights(),
            Self::Bert(c) => c.norm_params(),
            Self::Gpt2(c) => c.norm_params(),
        }
    }

    /// Every tensor of the model with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            Self::Llama(c) => c.tensor_shapes(),
            Self::Bert(c) => c.tensor_shapes(),
            Self::Gpt2(c) => c.tensor_shapes(),
        }
    }

    pub fn param_count(&self) -> usize {
        match self {
            Self::Llama(c) => c.param_count(),
            Self::Bert(c) => c.param_count(),
            Self::Gpt2(c) => c.param_count(),
        }
    }

    /// The module path of block `i` (`model.layers.3`, `bert.encoder.layer.3`).
    pub fn layer_prefix(&self, i: usize) -> String {
        match self {
            Self::Llama(_) => format!("model.layers.{i}"),
            Self::Bert(_) => BertConfig::layer_prefix(i),
            Self::Gpt2(_) => Gpt2Config::layer_prefix(i),
        }
    }

    /// Modules a task head adds that train under every method (PEFT's `modules_to_save`).
    pub fn head_modules(&self) -> &'static [&'static str] {
        match self {
            Self::Llama(_) | Self::Gpt2(_) => &[],
            Self::Bert(_) => &["classifier"],
        }
    }

    pub fn eos_id(&self) -> Option<u32> {
        match self {
            Self::Llama(c) => c.eos_id(),
            Self::Gpt2(c) => c.eos_token_id,
            Self::Bert(_) => None,
        }
    }
}

/// The block index of a tensor or module name in either layout (`model.layers.3.…`,
/// `bert.encoder.layer.3.…`) and the rest of the name after it.
pub fn layer_of(name: &str) -> Option<(usize, &str)> {
    let rest = name
        .strip_prefix("model.layers.")
        .or_else(|| name.strip_prefix("bert.encoder.layer."))
        .or_else(|| name.strip_prefix("transformer.h."))?;
    let (idx, inner) = rest.split_once('.').unwrap_or((rest, ""));
    Some((idx.parse().ok()?, inner))
}

/// What a decoder does, whatever its family: hidden states with a key/value cache, and
/// next-token logits.
pub trait Decoder: Send + Sync {
    fn device(&self) -> &Device;

    /// Final hidden states `[B, n + T, hidden]` (n prompt embeddings first, if any) and,
    /// per layer, every key and value attended to (the hooks' prefix, then this
    /// sequence's): pass them back as `kv_prefix` to continue the sequence one token at a
    /// time without recomputing it.
    fn forward_cached(
        &self,
        ids: &Tensor,
        hooks: &Hooks,
        train: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)>;

    /// The output head `[vocab, hidden]` (tied models: the token embedding table).
    fn output_weight(&self) -> &Tensor;

    /// Logits of hidden states `[.., hidden]` → `[.., vocab]`.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self.output_weight();
        Ok(linear::matmul_t(hidden, head)?)
    }

    fn forward_hidden(&self, ids: &Tensor, hooks: &Hooks, train: bool) -> Result<Tensor> {
        Ok(self.forward_cached(ids, hooks, train)?.0)
    }

    /// Full forward: logits `[B, n + T, vocab]`.
    fn forward(&self, ids: &Tensor, hooks: &Hooks, train: bool) -> Result<Tensor> {
        self.logits(&self.forward_hidden(ids, hooks, train)?)
    }
}

/// A built model of any supported family.
#[derive(Debug)]
pub enum Model {
    Llama(Llama),
    Bert(Bert),
    Gpt2(Gpt2),
}

impl Model {
    pub fn config(&self) -> ModelConfig {
        match self {
            Self::Llama(m) => ModelConfig::Llama(m.config().clone()),
            Self::Bert(m) => ModelConfig::Bert(m.config().clone()),
            Self::Gpt2(m) => ModelConfig::Gpt2(m.config().clone()),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Self::Llama(m) => m.device(),
            Self::Bert(m) => m.device(),
            Self::Gpt2(m) => m.device(),
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Self::Llama(m) => m.num_layers(),
            Self::Bert(m) => m.num_layers(),
            Self::Gpt2(m) => m.num_layers(),
        }
    }

    /// Input embeddings of `ids: [B, T]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Llama(m) => m.embed(ids),
            Self::Bert(m) => m.embed(ids),
            Self::Gpt2(m) => m.embed(ids),
        }
    }

    /// Keys and values each layer computes for `ids`, as a cache holds them.
    pub fn key_values(&self, ids: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        match self {
            Self::Llama(m) => m.key_values(ids),
            Self::Bert(m) => m.key_values(ids),
            Self::Gpt2(m) => m.key_values(ids),
        }
    }

    /// The decoder, for what only a language model does (next-token logits, generation).
    pub fn decoder(&self) -> Result<&dyn Decoder> {
        match self {
            Self::Llama(m) => Ok(m),
            Self::Gpt2(m) => Ok(m),
            Self::Bert(_) => bail!(
                "this is an encoder that classifies text: it has no next-token logits and does not generate"
            ),
        }
    }
}

/// A model's files: a Hugging Face folder (`config.json`, `*.safetensors`,
/// `tokenizer.json`) or one GGUF file, and the configuration read from them.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub source: ModelSource,
    pub config: ModelConfig,
}

/// A chat template as the model's files hold it, with the special tokens templates use.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplateText {
    /// The Jinja source.
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Folder(PathBuf),
    Gguf(PathBuf),
}

impl ModelFiles {
    /// Resolves a config's `model` value: `"builtin"`, a model folder or a `.gguf` file.
    pub fn open(model: &str) -> Result<Self> {
        let path = if model == "builtin" {
            builtin_model_dir()
        } else {
            PathBuf::from(model)
        };
        if path.is_file() {
            if path
                .extension()
                .is_none_or(|e| !e.eq_ignore_ascii_case("gguf"))
            {
                bail!(
                    "{} is a file but not a .gguf model; give a model folder or a GGUF file",
                    path.display()
                );
            }
            let config = ModelConfig::Llama(gguf::config(&path)?);
            return Ok(Self {
                source: ModelSource::Gguf(path),
                config,
            });
        }
        if !path.is_dir() {
            bail!("model {} does not exist", path.display());
        }
        if !path.join("config.json").is_file() {
            bail!(
                "{} has no config.json: not a Hugging Face model folder",
                path.display()
            );
        }
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        Ok(Self {
            source: ModelSource::Folder(path),
            config,
        })
    }

    pub fn path(&self) -> &Path {
        match &self.source {
            ModelSource::Folder(p) | ModelSource::Gguf(p) => p,
        }
    }

    /// The weights, as f32, under the names the model's family builds from.
    pub fn weights(&self, device: &Device) -> Result<Weights> {
        let mut w = match &self.source {
            ModelSource::Folder(dir) => Weights::load_dir(dir, device)?,
            ModelSource::Gguf(file) => Weights::from_tensors(gguf::tensors(file, device)?),
        };
        match &self.config {
            ModelConfig::Bert(c) => c.prepare_weights(&mut w)?,
            ModelConfig::Gpt2(c) => c.prepare_weights(&mut w)?,
            ModelConfig::Llama(_) => {}
        }
        Ok(w)
    }

    /// The tokenizer, without any padding or truncation its file asks for (sentence-
    /// transformers' files pad every text to 128 tokens): batching pads and cuts here.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        let mut tok = match &self.source {
            ModelSource::Folder(dir) => {
                let path = dir.join("tokenizer.json");
                tokenizers::Tokenizer::from_file(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()))?
            }
            ModelSource::Gguf(file) => gguf::tokenizer(file)?,
        };
        tok.with_padding(None);
        tok.with_truncation(None)
            .map_err(|e| anyhow::anyhow!("cannot turn off the tokenizer's truncation: {e}"))?;
        Ok(tok)
    }

    /// The model's chat template and the special tokens it refers to: `chat_template.jinja`
    /// or `chat_template` in `tokenizer_config.json` (the template named `default` where
    /// there are several) for a folder, `tokenizer.chat_template` for a GGUF file; `None`
    /// for a model without one.
    pub fn chat_template(&self) -> Result<Option<ChatTemplateText>> {
        let (source, config) = match &self.source {
            ModelSource::Gguf(file) => (gguf::chat_template(file)?, None),
            ModelSource::Folder(dir) => {
                let config: Option<serde_json::Value> =
                    match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
                        Ok(text) => Some(serde_json::from_str(&text).with_context(|| {
                            format!(
                                "{} is not valid JSON",
                                dir.join("tokenizer_config.json").display()
                            )
                        })?),
                        Err(_) => None,
                    };
                let file = dir.join("chat_template.jinja");
                let source = if file.is_file() {
                    Some(
                        std::fs::read_to_string(&file)
                            .with_context(|| format!("cannot read {}", file.display()))?,
                    )
                } else {
                    match config.as_ref().and_then(|c| c.get("chat_template")) {
                        Some(serde_json::Value::String(t)) => Some(t.clone()),
                        Some(serde_json::Value::Array(named)) => named
                            .iter()
                            .find(|t| t["name"] == "default")
                            .and_then(|t| t["template"].as_str())
                            .map(str::to_string),
                        _ => None,
                    }
                };
                (source, config)
            }
        };
        let Some(source) = source else {
            return Ok(None);
        };
        // A special token as tokenizer_config.json names it (a string or an AddedToken
        // object), else the token its id in the model's config stands for.
        let tok = self.tokenizer()?;
        let token = |key: &str, id: Option<u32>| -> String {
            let named = config.as_ref().and_then(|c| match c.get(key) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(v) => v
                    .get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
                None => None,
            });
            named
                .or_else(|| id.and_then(|id| tok.id_to_token(id)))
                .unwrap_or_default()
        };
        let bos_id = match &self.config {
            ModelConfig::Llama(c) => c.bos_token_id,
            _ => None,
        };
        Ok(Some(ChatTemplateText {
            source,
            bos_token: token("bos_token", bos_id),
            eos_token: token("eos_token", self.config.eos_id()),
        }))
    }

    /// Writes what a Hugging Face folder needs besides its weights into `dir`: a folder's
    /// other files are copied; a GGUF model gets `config.json` and `tokenizer.json` made
    /// from its metadata.
    pub fn write_companions(&self, dir: &Path) -> Result<()> {
        match &self.source {
            ModelSource::Folder(src) => {
                for entry in std::fs::read_dir(src)? {
                    let p = entry?.path();
                    let is_weights = p.extension().is_some_and(|e| e == "safetensors")
                        || p.file_name()
                            .is_some_and(|n| n == "model.safetensors.index.json");
                    if p.is_file() && !is_weights {
                        std::fs::copy(&p, dir.join(p.file_name().expect("a file has a name")))
                            .with_context(|| format!("cannot copy {}", p.display()))?;
                    }
                }
            }
            ModelSource::Gguf(_) => {
                let ModelConfig::Llama(config) = &self.config else {
                    bail!("a GGUF model is a LLaMA-family decoder");
                };
                let mut cfg = serde_json::to_value(config)?;
                cfg["model_type"] = "llama".into();
                cfg["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
                cfg["torch_dtype"] = "float32".into();
                std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
                self.tokenizer()?
                    .save(dir.join("tokenizer.json"), false)
                    .map_err(|e| anyhow::anyhow!("cannot write tokenizer.json: {e}"))?;
            }
        }
        Ok(())
    }
}

/// A model read and built with a method attached.
pub struct LoadedModel {
    pub model: Model,
    pub weights: Weights,
    pub tokenizer: tokenizers::Tokenizer,
}

impl LoadedModel {
    pub fn load(files: &ModelFiles, inj: &mut dyn Injector, device: &Device) -> Result<Self> {
        Self::load_in(files, inj, device, candle_core::DType::F32)
    }

    /// Built with its projection and embedding matrices in `matrix_dtype` (bf16/f16 for a
    /// mixed-precision run; see `config::Precision`).
    pub fn load_in(
        files: &ModelFiles,
        inj: &mut dyn Injector,
        device: &Device,
        matrix_dtype: candle_core::DType,
    ) -> Result<Self> {
        let tokenizer = files.tokenizer()?;
        let mut weights = files.weights(device)?;
        weights.set_matrix_dtype(matrix_dtype);
        let model = match &files.config {
            ModelConfig::Llama(c) => Llama::load(c, &mut weights, inj, device).map(Model::Llama),
            ModelConfig::Bert(c) => Bert::load(c, &mut weights, inj).map(Model::Bert),
            ModelConfig::Gpt2(c) => Gpt2::load(c, &mut weights, inj).map(Model::Gpt2),
        }
        .with_context(|| format!("cannot build the model of {}", files.path().display()))?;
        Ok(Self {
            model,
            weights,
            tokenizer,
        })
    }
}
