//! Models with the injection points PEFT methods need.

pub mod linear;
pub mod llama;
pub mod weights;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};

use std::path::{Path, PathBuf};

pub use linear::{Linear, LinearAdapter, Projection};
pub use llama::{Llama, LlamaConfig};
pub use weights::Weights;

/// Where in a block a sub-layer adapter sits: on the attention output or on the MLP output,
/// before each is added back to the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    AfterAttention,
    AfterMlp,
}

/// A module applied to a sub-layer's output (adapter tuning).
pub trait SublayerAdapter: Send + Sync + std::fmt::Debug {
    fn forward(&self, h: &Tensor, train: bool) -> Result<Tensor>;
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

/// Resolves a config's `model` value (`"builtin"` or a path) to a folder.
pub fn resolve_model_dir(model: &str) -> Result<PathBuf> {
    let dir = if model == "builtin" {
        builtin_model_dir()
    } else {
        PathBuf::from(model)
    };
    if !dir.is_dir() {
        bail!("model folder {} does not exist", dir.display());
    }
    if !dir.join("config.json").is_file() {
        bail!(
            "{} has no config.json: not a Hugging Face model folder",
            dir.display()
        );
    }
    Ok(dir)
}

/// Reads `tokenizer.json` from a model folder.
pub fn load_tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let path = dir.join("tokenizer.json");
    tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()))
}

/// A model folder read and built with a method attached.
pub struct LoadedModel {
    pub model: Llama,
    pub weights: Weights,
    pub tokenizer: tokenizers::Tokenizer,
    pub dir: PathBuf,
}

impl LoadedModel {
    pub fn load(dir: &Path, inj: &mut dyn Injector, device: &Device) -> Result<Self> {
        let cfg = LlamaConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = load_tokenizer(dir)?;
        let mut weights = Weights::load_dir(dir, device)?;
        let model = Llama::load(&cfg, &mut weights, inj, device)
            .with_context(|| format!("cannot build the model of {}", dir.display()))?;
        Ok(Self {
            model,
            weights,
            tokenizer,
            dir: dir.to_path_buf(),
        })
    }
}
