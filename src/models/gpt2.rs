//! A GPT-2-family decoder (learned positions, pre-LayerNorm blocks, one fused query/key/value
//! projection `c_attn`, tanh-GELU MLP, head tied to the token embeddings), written for
//! training like the other models here: the slow LayerNorm, a causal softmax with a backward
//! pass, every projection through `Injector::linear_adapter`, every sub-layer output through
//! `Injector::sublayer_adapter`, and `Hooks` for prompt embeddings and key/value prefixes.
//!
//! GPT-2 stores its projections as `Conv1D` weights `[in, out]`, the transpose of
//! `nn.Linear`'s. They are transposed once when read, so every method sees `[out, in]`
//! projections as on the other models; `file_layout` turns them back for a merged
//! checkpoint, and PEFT exports say `fan_in_fan_out = true` (their LoRA matrices have the
//! same shapes either way). Tensor names are `GPT2LMHeadModel`'s (`transformer.h.0…`); a
//! bare `GPT2Model` file (the released checkpoints) is renamed on load.

use anyhow::{Context, Result, bail};
use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::layers::{LayerNorm, with_prefix};
use super::linear::Linear;
use super::weights::Weights;
use super::{Decoder, Hooks, Injector, Site, SublayerAdapter};

/// The keys of a GPT-2 `config.json` this model reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gpt2Config {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default = "default_positions")]
    pub n_positions: usize,
    pub vocab_size: usize,
    /// MLP width; 4 × n_embd when absent.
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_positions() -> usize {
    1024
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}

/// The prefix `GPT2LMHeadModel` puts before the transformer's tensor names.
pub const PREFIX: &str = "transformer.";

/// The projections stored as `Conv1D` (`[in, out]`).
const CONV1D: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

impl Gpt2Config {
    pub fn from_value(v: serde_json::Value, path: &Path) -> Result<Self> {
        let cfg: Self = serde_json::from_value(v)
            .with_context(|| format!("{} is not a GPT-2 config", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        super::layers::check_heads(("n_embd", self.n_embd), ("n_head", self.n_head))?;
        super::layers::gelu_is_tanh("activation_function", &self.activation_function)?;
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    pub fn layer_prefix(i: usize) -> String {
        format!("{PREFIX}h.{i}")
    }

    /// Every projection in load order: (module path, in, out, has a bias).
    pub fn projections(&self) -> Vec<(String, usize, usize, bool)> {
        let (h, inner) = (self.n_embd, self.inner());
        let mut out = Vec::new();
        for i in 0..self.n_layer {
            let p = Self::layer_prefix(i);
            for (name, i_dim, o_dim) in [
                ("attn.c_attn", h, 3 * h),
                ("attn.c_proj", h, h),
                ("mlp.c_fc", h, inner),
                ("mlp.c_proj", inner, h),
            ] {
                out.push((format!("{p}.{name}"), i_dim, o_dim, true));
            }
        }
        out
    }

    /// Names of the LayerNorm gains and shifts.
    pub fn norm_params(&self) -> Vec<String> {
        let mut mods: Vec<String> = (0..self.n_layer)
            .flat_map(|i| {
                let p = Self::layer_prefix(i);
                [format!("{p}.ln_1"), format!("{p}.ln_2")]
            })
            .collect();
        mods.push(format!("{PREFIX}ln_f"));
        mods.into_iter()
            .flat_map(|m| [format!("{m}.weight"), format!("{m}.bias")])
            .collect()
    }

    /// Every tensor with its shape as the model holds it (projections `[out, in]`).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.n_embd;
        let mut out = vec![
            (format!("{PREFIX}wte.weight"), vec![self.vocab_size, h]),
            (format!("{PREFIX}wpe.weight"), vec![self.n_positions, h]),
        ];
        let mut projections = self.projections().into_iter();
        for i in 0..self.n_layer {
            let p = Self::layer_prefix(i);
            for norm in ["ln_1", "ln_2"] {
                out.push((format!("{p}.{norm}.weight"), vec![h]));
                out.push((format!("{p}.{norm}.bias"), vec![h]));
            }
            for _ in 0..4 {
                let (path, i_dim, o_dim, _) = projections.next().expect("four per layer");
                out.push((format!("{path}.weight"), vec![o_dim, i_dim]));
                out.push((format!("{path}.bias"), vec![o_dim]));
            }
        }
        out.push((format!("{PREFIX}ln_f.weight"), vec![h]));
        out.push((format!("{PREFIX}ln_f.bias"), vec![h]));
        out
    }

    pub fn param_count(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    fn is_conv1d(name: &str) -> bool {
        name.strip_suffix(".weight")
            .is_some_and(|m| CONV1D.iter().any(|c| m.ends_with(c)))
    }

    /// Puts a file's tensors under `GPT2LMHeadModel`'s names, drops the attention-mask
    /// buffers old checkpoints carry and the tied head, and turns the `Conv1D` weights into
    /// `[out, in]`.
    pub fn prepare_weights(&self, w: &mut Weights) -> Result<()> {
        w.retain(|n| {
            !(n.ends_with(".attn.bias")
                || n.ends_with(".attn.masked_bias")
                || n == "lm_head.weight")
        });
        if !w.contains(&format!("{PREFIX}wte.weight")) {
            w.rename(|n| format!("{PREFIX}{n}"));
        }
        let conv: Vec<String> = w
            .tensors()
            .keys()
            .filter(|n| Self::is_conv1d(n))
            .cloned()
            .collect();
        for name in conv {
            let t = w.tensors()[&name].t()?.contiguous()?;
            w.insert(&name, t);
        }
        Ok(())
    }

    /// A tensor as a GPT-2 checkpoint stores it (`Conv1D` weights back to `[in, out]`).
    pub fn file_layout(name: &str, t: &Tensor) -> Result<Tensor> {
        Ok(if Self::is_conv1d(name) {
            t.t()?.contiguous()?
        } else {
            t.clone()
        })
    }
}

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    after_attn: Option<Box<dyn SublayerAdapter>>,
    after_mlp: Option<Box<dyn SublayerAdapter>>,
    heads: usize,
    head_dim: usize,
    tanh_gelu: bool,
}

impl Block {
    fn forward(
        &self,
        x: &Tensor,
        prefix: Option<&(Tensor, Tensor)>,
        train: bool,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, h) = x.dims3()?;
        let (nh, hd) = (self.heads, self.head_dim);
        // What each step below frees once read: see `fused::release_activation` (CPU only).
        let release = crate::kernels::fused::release_activation;
        let normed = self.ln_1.forward(x)?;
        let qkv = self.c_attn.forward(&normed, train)?;
        if self.c_attn.backward_ignores_input() {
            release(&normed)?;
        }
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * h, h)?
                .reshape((b, t, nh, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        // Split into copies, whose gradient reads nothing; at a single position a split can
        // be a view of `qkv` itself, which must then stay.
        if t > 1 {
            release(&qkv)?;
        }
        let (k, v, p) = with_prefix(k, v, prefix)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let ctx = if crate::kernels::fused::available_for(&q) {
            crate::kernels::fused::attention(&q, &k, &v, scale, t, p)?
        } else {
            let scores = q.matmul(&k.t()?)?;
            let mask = super::llama::causal_mask(t, p, x.device())?;
            let probs =
                candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(&mask)?, D::Minus1)?;
            probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?
        };
        let a = self.attn_proj.forward(&ctx, train)?;
        if self.attn_proj.backward_ignores_input() {
            release(&ctx)?;
        }
        let a = match &self.after_attn {
            Some(ad) => ad.forward(&a, x, train)?,
            None => a,
        };
        let x = (x + &a)?;
        release(&a)?;
        let normed = self.ln_2.forward(&x)?;
        let inner = self.c_fc.forward(&normed, train)?;
        if self.c_fc.backward_ignores_input() {
            release(&normed)?;
        }
        // GELU's gradient reads its input (kept), not its output.
        let activated = if self.tanh_gelu {
            inner.gelu()?
        } else {
            inner.gelu_erf()?
        };
        let m = self.mlp_proj.forward(&activated, train)?;
        if self.mlp_proj.backward_ignores_input() {
            release(&activated)?;
        }
        let m = match &self.after_mlp {
            Some(ad) => ad.forward(&m, &x, train)?,
            None => m,
        };
        let out = (&x + &m)?;
        release(&m)?;
        Ok((out, (k, v)))
    }
}

#[derive(Debug)]
pub struct Gpt2 {
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    cfg: Gpt2Config,
}

impl Gpt2 {
    /// Builds the model; `w` must have been through `Gpt2Config::prepare_weights`.
    pub fn load(cfg: &Gpt2Config, w: &mut Weights, inj: &mut dyn Injector) -> Result<Self> {
        cfg.validate()?;
        let h = cfg.n_embd;
        let eps = cfg.layer_norm_epsilon;
        let wte = w.get_matrix(&format!("{PREFIX}wte.weight"), &[cfg.vocab_size, h], inj)?;
        let wpe = w.get(&format!("{PREFIX}wpe.weight"), &[cfg.n_positions, h], inj)?;
        let mut projections = cfg.projections().into_iter();
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = Gpt2Config::layer_prefix(i);
            let mut lin = || -> Result<Linear> {
                let (path, in_dim, out_dim, bias) = projections.next().expect("four per layer");
                super::layers::projection(w, inj, &path, (in_dim, out_dim, bias))
            };
            let (c_attn, attn_proj, c_fc, mlp_proj) = (lin()?, lin()?, lin()?, lin()?);
            blocks.push(Block {
                ln_1: LayerNorm::load(w, &format!("{p}.ln_1"), h, eps, inj)?,
                c_attn,
                attn_proj,
                ln_2: LayerNorm::load(w, &format!("{p}.ln_2"), h, eps, inj)?,
                c_fc,
                mlp_proj,
                after_attn: inj.sublayer_adapter(i, Site::AfterAttention, h)?,
                after_mlp: inj.sublayer_adapter(i, Site::AfterMlp, h)?,
                heads: cfg.n_head,
                head_dim: cfg.head_dim(),
                tanh_gelu: super::layers::gelu_is_tanh(
                    "activation_function",
                    &cfg.activation_function,
                )?,
            });
        }
        let ln_f = LayerNorm::load(w, &format!("{PREFIX}ln_f"), h, eps, inj)?;
        Ok(Self {
            wte,
            wpe,
            blocks,
            ln_f,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Token embeddings of `ids: [B, T]` → `[B, T, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        super::layers::embed(&self.wte, ids)
    }

    /// Keys and values each layer computes for `ids`.
    pub fn key_values(&self, ids: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        Ok(self.forward_cached(ids, &Hooks::default(), false)?.1)
    }
}

impl Decoder for Gpt2 {
    fn device(&self) -> &Device {
        self.wte.device()
    }

    fn forward_cached(
        &self,
        ids: &Tensor,
        hooks: &Hooks,
        train: bool,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        let x = self.embed(ids)?;
        let (b, _) = ids.dims2()?;
        let x = match &hooks.prompt_embeds {
            Some(p) => {
                let p = p.unsqueeze(0)?.broadcast_as((b, p.dim(0)?, p.dim(1)?))?;
                Tensor::cat(&[&p, &x], 1)?
            }
            None => x,
        };
        let prefix_len = match &hooks.kv_prefix {
            Some(kv) if kv.len() != self.blocks.len() => bail!(
                "{} key/value prefixes given for {} layers",
                kv.len(),
                self.blocks.len()
            ),
            Some(kv) => kv[0].0.dim(2)?,
            None => 0,
        };
        // Positions continue after a key/value prefix (a cache), as transformers counts a past.
        let len = x.dim(1)?;
        if prefix_len + len > self.cfg.n_positions {
            bail!(
                "sequence of {} positions exceeds the model's {}",
                prefix_len + len,
                self.cfg.n_positions
            );
        }
        let mut x = x.broadcast_add(&self.wpe.narrow(0, prefix_len, len)?)?;
        let mut cache = Vec::with_capacity(self.blocks.len());
        for (i, block) in self.blocks.iter().enumerate() {
            let prefix = hooks.kv_prefix.as_ref().map(|kv| &kv[i]);
            let (next, kv) = block.forward(&x, prefix, train)?;
            x = next;
            cache.push(kv);
        }
        Ok((self.ln_f.forward(&x)?, cache))
    }

    fn output_weight(&self) -> &Tensor {
        &self.wte
    }
}
