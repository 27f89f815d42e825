//! A LLaMA-family decoder (RMSNorm, rotary embeddings, SwiGLU MLP, grouped-query attention)
//! in the Hugging Face layout, written for training: every op here has a backward pass
//! (the slow RMSNorm and softmax, rotary embeddings from plain tensor ops), and the hooks
//! PEFT methods need are explicit: each projection goes through `Injector::linear_adapter`,
//! each sub-layer output through `Injector::sublayer_adapter`, and `Hooks` carries prompt
//! embeddings and per-layer key/value prefixes.

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::linear::Linear;
use super::weights::Weights;
use super::{Decoder, Hooks, Injector, Site, SublayerAdapter};

/// The keys of a Hugging Face `config.json` that this model reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// transformers ≤ 4 writes `rope_theta` at the top level …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f64>,
    /// … transformers 5 writes it under `rope_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<RopeParameters>,
    pub vocab_size: usize,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub attention_bias: bool,
    /// `llama`, `mistral` or `qwen2` (Qwen2 always has query/key/value biases and no
    /// output-projection bias, whatever `attention_bias` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RopeParameters {
    pub rope_theta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    /// LLaMA's own default when a config names none.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|r| r.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }
    /// First end-of-sequence id (configs write either a number or a list).
    pub fn eos_id(&self) -> Option<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|n| n.as_u64()).map(|n| n as u32)
            }
            _ => None,
        }
    }

    /// Reads a `config.json` that must describe a LLaMA-family decoder.
    pub fn from_file(path: &Path) -> Result<Self> {
        match super::ModelConfig::from_file(path)? {
            super::ModelConfig::Llama(c) => Ok(c),
            other => bail!(
                "{} describes a {} model, not a LLaMA-family decoder",
                path.display(),
                other.family()
            ),
        }
    }

    /// A config read from a `config.json` whose `model_type` is of the LLaMA family.
    pub fn from_value(v: serde_json::Value, path: &Path) -> Result<Self> {
        let cfg: Self = serde_json::from_value(v)
            .with_context(|| format!("{} is not a LLaMA config", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0 || self.kv_heads() == 0 {
            bail!("config has zero attention heads");
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            );
        }
        Ok(())
    }

    /// Whether the query, key and value projections have biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type.as_deref() == Some("qwen2")
    }

    /// Whether the attention output projection has a bias (LLaMA's `attention_bias`).
    pub fn o_bias(&self) -> bool {
        self.attention_bias && self.model_type.as_deref() != Some("qwen2")
    }

    /// Every projection of the model in load order: (module path, in features, out
    /// features, has a bias). Methods use it to count their parameters before loading.
    pub fn projections(&self) -> Vec<(String, usize, usize, bool)> {
        let h = self.hidden_size;
        let hd = self.head_dim();
        let (nh, nkv, inter) = (
            self.num_attention_heads,
            self.kv_heads(),
            self.intermediate_size,
        );
        let (ab, ob, mb) = (self.qkv_bias(), self.o_bias(), self.mlp_bias);
        let mut out = Vec::new();
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            for (name, in_dim, out_dim, bias) in [
                ("self_attn.q_proj", h, nh * hd, ab),
                ("self_attn.k_proj", h, nkv * hd, ab),
                ("self_attn.v_proj", h, nkv * hd, ab),
                ("self_attn.o_proj", nh * hd, h, ob),
                ("mlp.gate_proj", h, inter, mb),
                ("mlp.up_proj", h, inter, mb),
                ("mlp.down_proj", inter, h, mb),
            ] {
                out.push((format!("{p}.{name}"), in_dim, out_dim, bias));
            }
        }
        out
    }

    /// Checkpoint names of the normalisation weights (RMSNorm gains).
    pub fn norm_weights(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.num_hidden_layers {
            out.push(format!("model.layers.{i}.input_layernorm.weight"));
            out.push(format!("model.layers.{i}.post_attention_layernorm.weight"));
        }
        out.push("model.norm.weight".into());
        out
    }

    /// Every checkpoint tensor this config implies, with its shape (the output head only
    /// when untied).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        let mut projections = self.projections().into_iter().peekable();
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            while let Some((path, ..)) = projections.peek() {
                if !path.starts_with(&format!("{p}.")) {
                    break;
                }
                let (path, in_dim, out_dim, bias) = projections.next().expect("peeked");
                out.push((format!("{path}.weight"), vec![out_dim, in_dim]));
                if bias {
                    out.push((format!("{path}.bias"), vec![out_dim]));
                }
            }
        }
        out.push(("model.norm.weight".into(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".into(), vec![self.vocab_size, h]));
        }
        out
    }

    /// Width of the keys and values one layer stores per position.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads() * self.head_dim()
    }

    /// Parameters of the model this config describes (tied head counted once).
    pub fn param_count(&self) -> usize {
        let h = self.hidden_size;
        let hd = self.head_dim();
        let q = h * self.num_attention_heads * hd;
        let kv = 2 * h * self.kv_heads() * hd;
        let o = self.num_attention_heads * hd * h;
        let mlp = 3 * h * self.intermediate_size;
        let layer = q + kv + o + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_hidden_layers * layer + h
    }
}

/// Rotary tables `cos`, `sin` of shape `[positions, head_dim]` (each half repeated, as
/// `rotate_half` expects), built once.
#[derive(Debug)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
    /// The same tables for the fused CPU kernel.
    tables: crate::kernels::fused::RopeTables,
}

impl Rotary {
    fn new(cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let hd = cfg.head_dim();
        let n = cfg.max_position_embeddings.min(16_384);
        let theta = cfg.rope_theta();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
        let pos = Tensor::arange(0u32, n as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        let freqs = Tensor::cat(&[&freqs, &freqs], 1)?;
        let (cos, sin) = (freqs.cos()?, freqs.sin()?);
        let tables = crate::kernels::fused::RopeTables {
            cos: std::sync::Arc::new(cos.flatten_all()?.to_vec1()?),
            sin: std::sync::Arc::new(sin.flatten_all()?.to_vec1()?),
            head_dim: hd,
        };
        Ok(Self { cos, sin, tables })
    }

    /// A projection's output `[B, T, heads·D]` split into heads `[B, heads, T, D]` and, with
    /// `Some(offset)`, rotated at positions `offset..`.
    fn heads(&self, x: &Tensor, heads: usize, rotate_from: Option<usize>) -> Result<Tensor> {
        let (b, t, width) = x.dims3()?;
        if let Some(offset) = rotate_from
            && offset + t > self.cos.dim(0)?
        {
            bail!(
                "sequence of {} positions exceeds the model's {}",
                offset + t,
                self.cos.dim(0)?
            );
        }
        if crate::kernels::fused::available_for(x) {
            let rope = rotate_from.map(|o| (&self.tables, o));
            return Ok(crate::kernels::fused::to_heads(x, heads, rope)?);
        }
        let x = x
            .reshape((b, t, heads, width / heads))?
            .transpose(1, 2)?
            .contiguous()?;
        match rotate_from {
            Some(offset) => self.apply(&x, offset),
            None => Ok(x),
        }
    }

    /// Rotates `x: [B, H, T, D]` at positions `offset..offset + T` (composed from candle
    /// ops, as a GPU runs it; on the CPU [`Rotary::heads`] rotates in its own pass). The
    /// caller, [`Rotary::heads`], has checked the positions fit the table.
    fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, _, t, d) = x.dims4()?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
    }
}

#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Not candle's fast rms_norm: it has no backward pass.
        Ok(crate::kernels::fused::rms_norm(x, &self.weight, self.eps)?)
    }
}

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// `x: [B, T, hidden]`; `prefix`: this layer's extra keys and values `[B, kv_heads, P, D]`,
    /// which sit before the sequence (already rotated, as a cache would hold them). Returns
    /// the output and every key and value it attended to (prefix first): the next cache.
    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        prefix: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (self.heads, self.kv_heads, self.head_dim);
        let p = prefix.map(|(pk, _)| pk.dim(2)).transpose()?.unwrap_or(0);
        let projected = [
            self.q_proj.forward(x, train)?,
            self.k_proj.forward(x, train)?,
            self.v_proj.forward(x, train)?,
        ];
        let q = rotary.heads(&projected[0], h, Some(p))?;
        let k = rotary.heads(&projected[1], kvh, Some(p))?;
        let v = rotary.heads(&projected[2], kvh, None)?;
        let (k, v, _) = super::layers::with_prefix(k, v, prefix)?;
        let s = p + t;
        let rep = h / kvh;
        // Grouped-query attention without copying keys: the `rep` query heads that share a
        // key/value head are stacked along the time axis, one matmul per kv head.
        let scale = 1.0 / (hd as f64).sqrt();
        if crate::kernels::fused::available_for(&q) {
            let out = crate::kernels::fused::attention(&q, &k, &v, scale, t, p)?;
            let y = self.o_proj.forward(&out, train)?;
            // Read only by the fused heads split (a permutation backwards).
            for t in &projected {
                crate::kernels::fused::release_activation(t)?;
            }
            if self.o_proj.backward_ignores_input() {
                crate::kernels::fused::release_activation(&out)?;
            }
            return Ok((y, (k, v)));
        }
        // The composed form a GPU runs.
        let q = q.reshape((b, kvh, rep * t, hd))?;
        let scores = q.matmul(&k.t()?)?;
        let mask = causal_mask(t, p, x.device())?;
        let scores = (scores * scale)?
            .reshape((b, kvh, rep, t, s))?
            .broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?.reshape((b, kvh, rep * t, s))?;
        let out = probs.matmul(&v)?;
        let out = out
            .reshape((b, h, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, h * hd))?;
        Ok((self.o_proj.forward(&out, train)?, (k, v)))
    }
}

/// `[T, P + T]`: 0 where query i may see key j (every prefix key, and real keys up to i),
/// −∞ elsewhere. Right padding needs no other mask: padded keys come after every real query.
pub(super) fn causal_mask(t: usize, p: usize, device: &Device) -> Result<Tensor> {
    let s = p + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j <= p + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, s), device)?)
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        // Frozen gate and up projections without adapters: the whole block is one op.
        if let (Some((wg, None)), Some((wu, None)), Some((wd, scale))) = (
            self.gate_proj.frozen_weight_and_input_scale(),
            self.up_proj.frozen_weight_and_input_scale(),
            self.down_proj.frozen_weight_and_input_scale(),
        ) && let Some(y) = crate::kernels::fused::frozen_mlp(x, wg, wu, wd, scale)?
        {
            return Ok(y);
        }
        let gate = self.gate_proj.forward(x, train)?;
        let up = self.up_proj.forward(x, train)?;
        if let Some((w, scale)) = self.down_proj.frozen_weight_and_input_scale()
            && let Some(y) = crate::kernels::fused::swiglu_down(&gate, &up, w, scale)?
        {
            return Ok(y);
        }
        let hidden = crate::kernels::fused::swiglu(&gate, &up)?;
        Ok(self.down_proj.forward(&hidden, train)?)
    }
}

#[derive(Debug)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    after_attn: Option<Box<dyn SublayerAdapter>>,
    after_mlp: Option<Box<dyn SublayerAdapter>>,
}

impl Block {
    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        prefix: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let attn = &self.self_attn;
        let normed = self.input_layernorm.forward(x)?;
        let (a, kv) = attn.forward(&normed, rotary, prefix, train)?;
        let a = match &self.after_attn {
            Some(ad) => ad.forward(&a, x, train)?,
            None => a,
        };
        let x = (x + &a)?;
        let release =
            |t: &Tensor| -> Result<()> { Ok(crate::kernels::fused::release_activation(t)?) };
        // The norm's gradient reads its input, not its output; a residual add reads
        // neither of its inputs.
        let qkv = [&attn.q_proj, &attn.k_proj, &attn.v_proj];
        if qkv.iter().all(|l| l.backward_ignores_input()) {
            release(&normed)?;
        }
        release(&a)?;
        let normed = self.post_attention_layernorm.forward(&x)?;
        let m = self.mlp.forward(&normed, train)?;
        let mlp = &self.mlp;
        if mlp.gate_proj.backward_ignores_input() && mlp.up_proj.backward_ignores_input() {
            release(&normed)?;
        }
        let m = match &self.after_mlp {
            Some(ad) => ad.forward(&m, &x, train)?,
            None => m,
        };
        let out = (&x + &m)?;
        release(&m)?;
        Ok((out, kv))
    }
}

#[derive(Debug)]
pub struct Llama {
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// `None` when tied to the input embeddings.
    lm_head: Option<Tensor>,
    rotary: Rotary,
    cfg: LlamaConfig,
}

impl Llama {
    pub fn load(
        cfg: &LlamaConfig,
        w: &mut Weights,
        inj: &mut dyn Injector,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.hidden_size;
        let hd = cfg.head_dim();
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let embed_tokens = w.get_matrix("model.embed_tokens.weight", &[cfg.vocab_size, h], inj)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut lin =
                |name: &str, in_dim: usize, out_dim: usize, bias: bool| -> Result<Linear> {
                    let path = format!("{p}.{name}");
                    super::layers::projection(w, inj, &path, (in_dim, out_dim, bias))
                };
            let self_attn = Attention {
                q_proj: lin("self_attn.q_proj", h, nh * hd, cfg.qkv_bias())?,
                k_proj: lin("self_attn.k_proj", h, nkv * hd, cfg.qkv_bias())?,
                v_proj: lin("self_attn.v_proj", h, nkv * hd, cfg.qkv_bias())?,
                o_proj: lin("self_attn.o_proj", nh * hd, h, cfg.o_bias())?,
                heads: nh,
                kv_heads: nkv,
                head_dim: hd,
            };
            let mlp = Mlp {
                gate_proj: lin("mlp.gate_proj", h, cfg.intermediate_size, cfg.mlp_bias)?,
                up_proj: lin("mlp.up_proj", h, cfg.intermediate_size, cfg.mlp_bias)?,
                down_proj: lin("mlp.down_proj", cfg.intermediate_size, h, cfg.mlp_bias)?,
            };
            let eps = cfg.rms_norm_eps as f32;
            layers.push(Block {
                input_layernorm: RmsNorm {
                    weight: w.get(&format!("{p}.input_layernorm.weight"), &[h], inj)?,
                    eps,
                },
                self_attn,
                post_attention_layernorm: RmsNorm {
                    weight: w.get(&format!("{p}.post_attention_layernorm.weight"), &[h], inj)?,
                    eps,
                },
                mlp,
                after_attn: inj.sublayer_adapter(i, Site::AfterAttention, h)?,
                after_mlp: inj.sublayer_adapter(i, Site::AfterMlp, h)?,
            });
        }
        let norm = RmsNorm {
            weight: w.get("model.norm.weight", &[h], inj)?,
            eps: cfg.rms_norm_eps as f32,
        };
        let lm_head = if cfg.tie_word_embeddings || !w.contains("lm_head.weight") {
            None
        } else {
            Some(w.get_matrix("lm_head.weight", &[cfg.vocab_size, h], inj)?)
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: Rotary::new(cfg, device)?,
            cfg: cfg.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Embeddings of `ids: [B, T]` → `[B, T, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        super::layers::embed(&self.embed_tokens, ids)
    }

    /// Final hidden states `[B, n + T, hidden]` (n prompt embeddings first, if any).
    pub fn forward_hidden(&self, ids: &Tensor, hooks: &Hooks, train: bool) -> Result<Tensor> {
        Ok(self.forward_cached(ids, hooks, train)?.0)
    }

    /// Final hidden states and, per layer, every key and value attended to (the hooks'
    /// prefix, then this sequence's, rotated): pass them back as `kv_prefix` to continue the
    /// sequence one token at a time without recomputing it.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        hooks: &Hooks,
        train: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let x = self.embed(ids)?;
        let mut x = match &hooks.prompt_embeds {
            Some(p) => {
                let b = x.dim(0)?;
                let p = p.unsqueeze(0)?.broadcast_as((b, p.dim(0)?, p.dim(1)?))?;
                Tensor::cat(&[&p, &x], 1)?
            }
            None => x,
        };
        if let Some(kv) = &hooks.kv_prefix
            && kv.len() != self.layers.len()
        {
            bail!(
                "{} key/value prefixes given for {} layers",
                kv.len(),
                self.layers.len()
            );
        }
        let mut cache = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = hooks.kv_prefix.as_ref().map(|kv| &kv[i]);
            let (next, kv) = layer.forward(&x, &self.rotary, prefix, train)?;
            x = next;
            cache.push(kv);
        }
        Ok((self.norm.forward(&x)?, cache))
    }

    /// Full forward: logits `[B, n + T, vocab]`.
    pub fn forward(&self, ids: &Tensor, hooks: &Hooks, train: bool) -> Result<Tensor> {
        Decoder::forward(self, ids, hooks, train)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Keys and values each layer computes for `ids` (rotated), as a cache would hold them:
    /// `[B, kv_heads, T, D]` per layer. Used to check the prefix hook against a real prefix and
    /// to start P-Tuning v2's prompts from a text.
    pub fn key_values(&self, ids: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        Ok(self.forward_cached(ids, &Hooks::default(), false)?.1)
    }
}

impl Decoder for Llama {
    fn device(&self) -> &Device {
        Llama::device(self)
    }

    fn forward_cached(
        &self,
        ids: &Tensor,
        hooks: &Hooks,
        train: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        Llama::forward_cached(self, ids, hooks, train)
    }

    fn output_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }
}
