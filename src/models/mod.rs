//! Models with the injection points PEFT methods need.

pub mod fused;
pub mod gguf;
pub mod linear;
pub mod llama;
pub mod weights;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};

use std::path::{Path, PathBuf};

pub use linear::{Linear, LinearAdapter, Projection};

/// Largest absolute elementwise difference of two tensors of one shape (the tests' and the
/// reference checks' measure of agreement).
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}
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

/// A model's files: a Hugging Face folder (`config.json`, `*.safetensors`,
/// `tokenizer.json`) or one GGUF file, and the configuration read from them.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub source: ModelSource,
    pub config: LlamaConfig,
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
            let config = gguf::config(&path)?;
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
        let config = LlamaConfig::from_file(&path.join("config.json"))?;
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

    /// The weights, as f32.
    pub fn weights(&self, device: &Device) -> Result<Weights> {
        match &self.source {
            ModelSource::Folder(dir) => Weights::load_dir(dir, device),
            ModelSource::Gguf(file) => Ok(Weights::from_tensors(gguf::tensors(file, device)?)),
        }
    }

    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        match &self.source {
            ModelSource::Folder(dir) => {
                let path = dir.join("tokenizer.json");
                tokenizers::Tokenizer::from_file(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()))
            }
            ModelSource::Gguf(file) => gguf::tokenizer(file),
        }
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
                let mut cfg = serde_json::to_value(&self.config)?;
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
    pub model: Llama,
    pub weights: Weights,
    pub tokenizer: tokenizers::Tokenizer,
}

impl LoadedModel {
    pub fn load(files: &ModelFiles, inj: &mut dyn Injector, device: &Device) -> Result<Self> {
        let tokenizer = files.tokenizer()?;
        let mut weights = files.weights(device)?;
        let model = Llama::load(&files.config, &mut weights, inj, device)
            .with_context(|| format!("cannot build the model of {}", files.path().display()))?;
        Ok(Self {
            model,
            weights,
            tokenizer,
        })
    }
}
