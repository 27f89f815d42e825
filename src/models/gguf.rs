//! LLaMA-family models in one GGUF file (llama.cpp's format), read with candle's
//! `gguf_file`: the configuration from the `llama.*` metadata, every tensor dequantised to
//! f32 under its Hugging Face name, and the tokenizer from `tokenizer.ggml.*`
//! (candle's `TokenizerFromGguf`). llama.cpp stores the query and key projections permuted
//! for its rotary layout; they are put back as transformers does when it loads a GGUF.

use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

use super::llama::{LlamaConfig, RopeParameters};

fn read_content(path: &Path) -> Result<(Content, std::fs::File)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content = Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
    Ok((content, file))
}

fn meta<'a>(c: &'a Content, key: &str) -> Result<&'a Value> {
    c.metadata
        .get(key)
        .with_context(|| format!("the GGUF metadata has no `{key}`"))
}

fn meta_usize(c: &Content, key: &str) -> Result<usize> {
    let v = meta(c, key)?;
    Ok(v.to_u64().or_else(|_| v.to_u32().map(u64::from))? as usize)
}

fn meta_f64(c: &Content, key: &str) -> Result<f64> {
    let v = meta(c, key)?;
    Ok(v.to_f32().map(f64::from).or_else(|_| v.to_f64())?)
}

/// The model's configuration from the GGUF metadata.
pub fn config(path: &Path) -> Result<LlamaConfig> {
    let (c, _) = read_content(path)?;
    config_of(&c)
}

fn config_of(c: &Content) -> Result<LlamaConfig> {
    let arch = meta(c, "general.architecture")?.to_string()?.clone();
    if arch != "llama" {
        bail!("GGUF architecture `{arch}` is not supported (llama is)");
    }
    let p = |k: &str| format!("{arch}.{k}");
    let vocab = match meta(c, &p("vocab_size")) {
        Ok(_) => meta_usize(c, &p("vocab_size"))?,
        Err(_) => meta(c, "tokenizer.ggml.tokens")?.to_vec()?.len(),
    };
    let heads = meta_usize(c, &p("attention.head_count"))?;
    let id = |k: &str| meta(c, k).ok().and_then(|v| v.to_u32().ok());
    let cfg = LlamaConfig {
        hidden_size: meta_usize(c, &p("embedding_length"))?,
        intermediate_size: meta_usize(c, &p("feed_forward_length"))?,
        num_attention_heads: heads,
        num_key_value_heads: Some(meta_usize(c, &p("attention.head_count_kv")).unwrap_or(heads)),
        num_hidden_layers: meta_usize(c, &p("block_count"))?,
        rms_norm_eps: meta_f64(c, &p("attention.layer_norm_rms_epsilon"))?,
        rope_theta: None,
        rope_parameters: Some(RopeParameters {
            rope_theta: meta_f64(c, &p("rope.freq_base")).unwrap_or(10_000.0),
            rope_type: Some("default".into()),
        }),
        vocab_size: vocab,
        max_position_embeddings: meta_usize(c, &p("context_length")).unwrap_or(2048),
        tie_word_embeddings: !c.tensor_infos.contains_key("output.weight"),
        head_dim: None,
        attention_bias: c.tensor_infos.contains_key("blk.0.attn_q.bias"),
        model_type: Some("llama".into()),
        mlp_bias: false,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id").map(|v| serde_json::json!(v)),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The Hugging Face name of a llama.cpp tensor name.
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let (module, kind) = part.rsplit_once('.')?;
            let hf = match module {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}.{kind}")
        }
    })
}

/// Undoes llama.cpp's permutation of a query/key projection (weight `[out, in]` or bias
/// `[out]`): within each head it interleaved the two rotary halves.
fn unpermute(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let out = dims[0];
    let rest: usize = dims[1..].iter().product();
    Ok(t.reshape((heads, out / heads / 2, 2, rest))?
        .transpose(1, 2)?
        .reshape(dims)?)
}

/// Every tensor, dequantised to f32, under its Hugging Face name.
pub fn tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let (c, mut file) = read_content(path)?;
    let cfg = config_of(&c)?;
    let mut out = HashMap::new();
    for name in c.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else {
            continue; // e.g. rope_freqs: recomputed from the config
        };
        let q = c
            .tensor(&mut file, name, device)
            .with_context(|| format!("cannot read tensor {name} of {}", path.display()))?;
        let mut t = q.dequantize(device)?.to_dtype(DType::F32)?;
        if name.contains(".attn_q.") {
            t = unpermute(&t, cfg.num_attention_heads)?;
        } else if name.contains(".attn_k.") {
            t = unpermute(&t, cfg.kv_heads())?;
        }
        out.insert(hf, t);
    }
    Ok(out)
}

/// The tokenizer built from the GGUF metadata.
pub fn tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let (c, _) = read_content(path)?;
    let mut tok = tokenizers::Tokenizer::from_gguf(&c)
        .map_err(|e| anyhow::anyhow!("cannot build the tokenizer of {}: {e}", path.display()))?;
    let pre = meta(&c, "tokenizer.ggml.pre")
        .and_then(|v| Ok(v.to_string()?.clone()))
        .unwrap_or_default();
    if pre == "smollm" {
        // candle knows no `smollm` pre-tokenizer and falls back to GPT-2's, which adds a
        // space before the text. SmolLM's own (and llama.cpp's) splits digits one by one
        // and adds no space.
        use tokenizers::pre_tokenizers::{
            byte_level::ByteLevel, digits::Digits, sequence::Sequence,
        };
        tok.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
    }
    Ok(tok)
}

/// The chat template (Jinja) in the GGUF metadata, `tokenizer.chat_template`, if any.
pub fn chat_template(path: &Path) -> Result<Option<String>> {
    let (c, _) = read_content(path)?;
    Ok(match c.metadata.get("tokenizer.chat_template") {
        Some(v) => Some(v.to_string()?.clone()),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: w.reshape(heads, 2, out/heads/2, in).swapaxes(1, 2).reshape(out, in)
        let (heads, out, inp) = (2, 8, 3);
        let w = Tensor::arange(0f32, (out * inp) as f32, &Device::Cpu)
            .unwrap()
            .reshape((out, inp))
            .unwrap();
        let permuted = w
            .reshape((heads, 2, out / heads / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((out, inp))
            .unwrap();
        let back = unpermute(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
