//! A BERT-family encoder (learned positions, post-LayerNorm blocks, GELU MLP) with the
//! sequence-classification head of transformers' `BertForSequenceClassification`: the
//! `[CLS]` state through the pooler (dense + tanh), then a linear `classifier`. Written for
//! training like the LLaMA model: the slow LayerNorm and softmax (which have a backward),
//! every projection through `Injector::linear_adapter`, every sub-layer output through
//! `Injector::sublayer_adapter`, and `Hooks` for prompt embeddings and key/value prefixes.
//!
//! Tensor names are those of `BertForSequenceClassification` (`bert.encoder.layer.0…`,
//! `classifier.weight`), so module paths, exports and merged checkpoints load in
//! transformers as that class; a bare `BertModel` file (no `bert.` prefix, as
//! sentence-transformers ships them) is renamed on load. The base model's dropout is off
//! while training, so a run depends only on its seed.

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::layers::{LayerNorm, with_prefix};
use super::linear::{Linear, Projection};
use super::weights::Weights;
use super::{Hooks, Injector, Site, SublayerAdapter};

/// The keys of a BERT `config.json` this model reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub vocab_size: usize,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub pad_token_id: u32,
    /// Class names of the classification head, in id order. Set by a run from its dataset;
    /// read from `id2label` for a checkpoint that has a head.
    #[serde(skip)]
    pub labels: Vec<String>,
    /// Seed of a newly initialised head (the run's seed).
    #[serde(skip)]
    pub head_seed: u64,
}

fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// The prefix `BertForSequenceClassification` puts before the encoder's tensor names.
pub const PREFIX: &str = "bert.";

impl BertConfig {
    pub fn from_value(v: serde_json::Value, path: &Path) -> Result<Self> {
        let mut labels: Vec<(usize, String)> = v
            .get("id2label")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, l)| Some((k.parse().ok()?, l.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        labels.sort();
        let mut cfg: Self = serde_json::from_value(v)
            .with_context(|| format!("{} is not a BERT config", path.display()))?;
        // transformers writes a generic LABEL_0/LABEL_1 map into every config; only a head
        // in the checkpoint gives it meaning, and the run's dataset names the classes.
        cfg.labels = labels.into_iter().map(|(_, l)| l).collect();
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        super::layers::check_heads(
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
        )?;
        super::layers::gelu_is_tanh("hidden_act", &self.hidden_act)?;
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Classes of the head (two when no dataset has named them yet).
    pub fn num_labels(&self) -> usize {
        self.labels.len().max(2)
    }

    pub fn layer_prefix(i: usize) -> String {
        format!("{PREFIX}encoder.layer.{i}")
    }

    /// Every projection in load order: (module path, in, out, has a bias).
    pub fn projections(&self) -> Vec<(String, usize, usize, bool)> {
        let (h, inter) = (self.hidden_size, self.intermediate_size);
        let mut out = Vec::new();
        for i in 0..self.num_hidden_layers {
            let p = Self::layer_prefix(i);
            for (name, i_dim, o_dim) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", h, inter),
                ("output.dense", inter, h),
            ] {
                out.push((format!("{p}.{name}"), i_dim, o_dim, true));
            }
        }
        out
    }

    /// Names of the LayerNorm gains and shifts.
    pub fn norm_params(&self) -> Vec<String> {
        let mut mods = vec![format!("{PREFIX}embeddings.LayerNorm")];
        for i in 0..self.num_hidden_layers {
            let p = Self::layer_prefix(i);
            mods.push(format!("{p}.attention.output.LayerNorm"));
            mods.push(format!("{p}.output.LayerNorm"));
        }
        mods.into_iter()
            .flat_map(|m| [format!("{m}.weight"), format!("{m}.bias")])
            .collect()
    }

    /// Every tensor of the model with its shape, head included.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let e = |n: &str| format!("{PREFIX}embeddings.{n}");
        let mut out = vec![
            (e("word_embeddings.weight"), vec![self.vocab_size, h]),
            (
                e("position_embeddings.weight"),
                vec![self.max_position_embeddings, h],
            ),
            (
                e("token_type_embeddings.weight"),
                vec![self.type_vocab_size, h],
            ),
            (e("LayerNorm.weight"), vec![h]),
            (e("LayerNorm.bias"), vec![h]),
        ];
        let mut projections = self.projections().into_iter();
        for _ in 0..self.num_hidden_layers {
            for _ in 0..6 {
                let (path, i_dim, o_dim, _) = projections.next().expect("six per layer");
                out.push((format!("{path}.weight"), vec![o_dim, i_dim]));
                out.push((format!("{path}.bias"), vec![o_dim]));
                if path.ends_with("output.dense") {
                    let norm = path.replace(".dense", ".LayerNorm");
                    out.push((format!("{norm}.weight"), vec![h]));
                    out.push((format!("{norm}.bias"), vec![h]));
                }
            }
        }
        out.push((format!("{PREFIX}pooler.dense.weight"), vec![h, h]));
        out.push((format!("{PREFIX}pooler.dense.bias"), vec![h]));
        out.push(("classifier.weight".into(), vec![self.num_labels(), h]));
        out.push(("classifier.bias".into(), vec![self.num_labels()]));
        out
    }

    pub fn param_count(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Puts a file's tensors under `BertForSequenceClassification`'s names and adds a newly
    /// initialised head (N(0, 0.02) weights, zero bias, as transformers initialises it)
    /// when the checkpoint has none for this many classes.
    pub fn prepare_weights(&self, w: &mut Weights) -> Result<()> {
        // transformers saves the position-id buffer with the weights; it is not a parameter.
        w.retain(|n| !n.ends_with("embeddings.position_ids"));
        let bare = !w.contains(&format!("{PREFIX}embeddings.word_embeddings.weight"));
        if bare {
            w.rename(|n| {
                if n.starts_with("classifier.") {
                    n.to_string()
                } else {
                    format!("{PREFIX}{n}")
                }
            });
        }
        let (n, h) = (self.num_labels(), self.hidden_size);
        let fits = w
            .tensors()
            .get("classifier.weight")
            .is_some_and(|t| t.dims() == [n, h]);
        if !fits {
            let device = w
                .tensors()
                .values()
                .next()
                .map(|t| t.device().clone())
                .unwrap_or(Device::Cpu);
            let mut rng = StdRng::seed_from_u64(self.head_seed ^ 0xc1a5_51f1);
            let normal = Normal::new(0.0f32, 0.02).expect("valid");
            let values: Vec<f32> = (0..n * h).map(|_| normal.sample(&mut rng)).collect();
            w.insert(
                "classifier.weight",
                Tensor::from_vec(values, (n, h), &device)?,
            );
            w.insert("classifier.bias", Tensor::zeros(n, DType::F32, &device)?);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    after_attn: Option<Box<dyn SublayerAdapter>>,
    after_mlp: Option<Box<dyn SublayerAdapter>>,
    heads: usize,
    head_dim: usize,
    tanh_gelu: bool,
}

impl Layer {
    fn heads(&self, proj: &Linear, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        Ok(proj
            .forward(x, train)?
            .reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// `x: [B, T, hidden]`, `mask: [B, 1, 1, P + T]` (0 where a key may be seen, a large
    /// negative number on padding), `prefix`: this layer's extra keys and values.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, h) = x.dims3()?;
        let q = self.heads(&self.query, x, train)?;
        let k = self.heads(&self.key, x, train)?;
        let v = self.heads(&self.value, x, train)?;
        let (k, v, _) = with_prefix(k, v, prefix)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let a = self.attn_out.forward(&ctx, train)?;
        let a = match &self.after_attn {
            Some(ad) => ad.forward(&a, x, train)?,
            None => a,
        };
        let x = self.attn_norm.forward(&(a + x)?)?;
        let inner = self.intermediate.forward(&x, train)?;
        let inner = if self.tanh_gelu {
            inner.gelu()?
        } else {
            inner.gelu_erf()?
        };
        let m = self.output.forward(&inner, train)?;
        let m = match &self.after_mlp {
            Some(ad) => ad.forward(&m, &x, train)?,
            None => m,
        };
        Ok((self.out_norm.forward(&(m + x)?)?, (k, v)))
    }
}

#[derive(Debug)]
pub struct Bert {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Projection,
    classifier: Projection,
    cfg: BertConfig,
}

impl Bert {
    /// Builds the model; `w` must have been through `BertConfig::prepare_weights`.
    pub fn load(cfg: &BertConfig, w: &mut Weights, inj: &mut dyn Injector) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let e = |n: &str| format!("{PREFIX}embeddings.{n}");
        let word_embeddings =
            w.get_matrix(&e("word_embeddings.weight"), &[cfg.vocab_size, h], inj)?;
        let position_embeddings = w.get(
            &e("position_embeddings.weight"),
            &[cfg.max_position_embeddings, h],
            inj,
        )?;
        let token_type_embeddings = w.get(
            &e("token_type_embeddings.weight"),
            &[cfg.type_vocab_size, h],
            inj,
        )?;
        let embed_norm = LayerNorm::load(w, &e("LayerNorm"), h, eps, inj)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        let mut projections = cfg.projections().into_iter();
        for i in 0..cfg.num_hidden_layers {
            let p = BertConfig::layer_prefix(i);
            let mut lin = || -> Result<Linear> {
                let (path, in_dim, out_dim, bias) = projections.next().expect("six per layer");
                super::layers::projection(w, inj, &path, (in_dim, out_dim, bias))
            };
            let (query, key, value, attn_out) = (lin()?, lin()?, lin()?, lin()?);
            let (intermediate, output) = (lin()?, lin()?);
            layers.push(Layer {
                query,
                key,
                value,
                attn_out,
                attn_norm: LayerNorm::load(
                    w,
                    &format!("{p}.attention.output.LayerNorm"),
                    h,
                    eps,
                    inj,
                )?,
                intermediate,
                output,
                out_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps, inj)?,
                after_attn: inj.sublayer_adapter(i, Site::AfterAttention, h)?,
                after_mlp: inj.sublayer_adapter(i, Site::AfterMlp, h)?,
                heads: cfg.num_attention_heads,
                head_dim: cfg.head_dim(),
                tanh_gelu: super::layers::gelu_is_tanh("hidden_act", &cfg.hidden_act)?,
            });
        }
        let pooler = Projection {
            weight: w.get_matrix(&format!("{PREFIX}pooler.dense.weight"), &[h, h], inj)?,
            bias: Some(w.get(&format!("{PREFIX}pooler.dense.bias"), &[h], inj)?),
        };
        let n = cfg.num_labels();
        // The head always trains, under every method (PEFT's `modules_to_save`).
        let classifier = Projection {
            weight: w.get_trained("classifier.weight", &[n, h], inj)?,
            bias: Some(w.get_trained("classifier.bias", &[n], inj)?),
        };
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embed_norm,
            layers,
            pooler,
            classifier,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.word_embeddings.device()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Word embeddings of `ids: [B, T]` → `[B, T, hidden]` (what prompt tuning starts from).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        super::layers::embed(&self.word_embeddings, ids)
    }

    /// Final hidden states `[B, n + T, hidden]` and each layer's keys and values, for
    /// `ids: [B, T]` of which the first `lengths[b]` are real (the rest padding).
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        hooks: &Hooks,
        train: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let (b, t) = ids.dims2()?;
        if lengths.len() != b {
            bail!("{} lengths for a batch of {b}", lengths.len());
        }
        let device = ids.device();
        let x = self.embed(ids)?;
        let (x, n) = match &hooks.prompt_embeds {
            Some(p) => {
                let (n, h) = p.dims2()?;
                let p = p.unsqueeze(0)?.broadcast_as((b, n, h))?;
                (Tensor::cat(&[&p, &x], 1)?, n)
            }
            None => (x, 0),
        };
        let prefix_len = match &hooks.kv_prefix {
            Some(kv) if kv.len() != self.layers.len() => bail!(
                "{} key/value prefixes given for {} layers",
                kv.len(),
                self.layers.len()
            ),
            Some(kv) => kv[0].0.dim(2)?,
            None => 0,
        };
        // Positions continue after a key/value prefix, as transformers' BERT counts a past.
        let len = n + t;
        if prefix_len + len > self.cfg.max_position_embeddings {
            bail!(
                "sequence of {} positions exceeds the model's {}",
                prefix_len + len,
                self.cfg.max_position_embeddings
            );
        }
        let pos = self.position_embeddings.narrow(0, prefix_len, len)?;
        let token_type = self.token_type_embeddings.narrow(0, 0, 1)?;
        let x = x.broadcast_add(&pos)?.broadcast_add(&token_type)?;
        let mut x = self.embed_norm.forward(&x)?;
        // Prefix and prompt positions are always seen; padding never.
        let keys = prefix_len + len;
        let mut mask = Vec::with_capacity(b * keys);
        for &l in lengths {
            mask.extend((0..keys).map(|j| if j < prefix_len + n + l { 0.0f32 } else { -1e9 }));
        }
        let mask = Tensor::from_vec(mask, (b, 1, 1, keys), device)?;
        let mut cache = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = hooks.kv_prefix.as_ref().map(|kv| &kv[i]);
            let (next, kv) = layer.forward(&x, &mask, prefix, train)?;
            x = next;
            cache.push(kv);
        }
        Ok((x, cache))
    }

    /// The pooler's output `[B, hidden]`: tanh(dense(state at position 0)).
    pub fn pooled(&self, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.pooler.forward(&first)?.tanh()?)
    }

    /// Class logits `[B, labels]` of `ids: [B, T]` with `lengths` real tokens each.
    pub fn classify(
        &self,
        ids: &Tensor,
        lengths: &[usize],
        hooks: &Hooks,
        train: bool,
    ) -> Result<Tensor> {
        let (hidden, _) = self.forward_cached(ids, lengths, hooks, train)?;
        let pooled = self.pooled(&hidden)?;
        Ok(self.classifier.forward(&pooled)?)
    }

    /// Keys and values each layer computes for `ids` (P-Tuning v2 starting from a text).
    pub fn key_values(&self, ids: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let lengths = vec![ids.dim(1)?; ids.dim(0)?];
        Ok(self
            .forward_cached(ids, &lengths, &Hooks::default(), false)?
            .1)
    }
}
