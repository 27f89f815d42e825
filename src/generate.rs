//! Text generation for decoder models with a key/value cache: the prompt runs once, then
//! each new token runs alone against the cached keys and values of everything before it
//! (the method's prefixes and prompt embeddings included). Greedy, or sampling with a
//! temperature and nucleus (top-p) cut, seeded.

use anyhow::{Result, bail};
use candle_core::{D, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::models::{Decoder, Hooks};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Sample only among the most likely tokens whose probabilities sum to this.
    pub top_p: f64,
    pub max_tokens: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 64,
            seed: 0,
        }
    }
}

/// Picks the next token from `logits` `[vocab]`.
fn pick(logits: &Tensor, s: &Sampling, rng: &mut StdRng) -> Result<u32> {
    if s.temperature <= 0.0 {
        return Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?);
    }
    let probs = candle_nn::ops::softmax_last_dim(&(logits / s.temperature)?)?.to_vec1::<f32>()?;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
    let mut kept = Vec::new();
    let mut mass = 0.0f64;
    for i in order {
        kept.push(i);
        mass += probs[i] as f64;
        if mass >= s.top_p {
            break;
        }
    }
    let mut r = rng.random::<f64>() * mass;
    for &i in &kept {
        r -= probs[i] as f64;
        if r <= 0.0 {
            return Ok(i as u32);
        }
    }
    Ok(*kept.last().expect("at least one token is kept") as u32)
}

/// Continues `prompt` until a `stop` token, `max_tokens`, or `on_token` answering false.
/// Returns the new tokens (a stop token is not included).
pub fn generate(
    model: &dyn Decoder,
    hooks: &Hooks,
    prompt: &[u32],
    s: &Sampling,
    stop: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt gives no tokens");
    }
    let device = model.device();
    let mut rng = StdRng::seed_from_u64(s.seed);
    let ids = Tensor::new(prompt, device)?.unsqueeze(0)?;
    // Each token's forward pass runs on candle's pool, as a training step does (see the
    // step loop in `train::train`); `on_token` stays on the caller's thread.
    let (logits, mut cache) = device.with_context(|| -> Result<_> {
        let (hidden, cache) = model.forward_cached(&ids, hooks, false)?;
        let last = hidden.get(0)?.get(hidden.dim(1)? - 1)?;
        Ok((model.logits(&last)?, cache))
    })?;
    let mut next = pick(&logits, s, &mut rng)?;
    let mut out = Vec::new();
    while out.len() < s.max_tokens && !stop.contains(&next) {
        out.push(next);
        if !on_token(next) || out.len() == s.max_tokens {
            break;
        }
        let step = Hooks {
            prompt_embeds: None,
            kv_prefix: Some(cache),
        };
        let ids = Tensor::new(&[next], device)?.unsqueeze(0)?;
        let (logits, c) = device.with_context(|| -> Result<_> {
            let (hidden, c) = model.forward_cached(&ids, &step, false)?;
            Ok((model.logits(&hidden.get(0)?.get(0)?)?, c))
        })?;
        cache = c;
        next = pick(&logits, s, &mut rng)?;
    }
    Ok(out)
}

/// `user` as one user message in `model`'s own chat template, ready for the assistant's
/// answer (the plain template where the model has none): what the playground and
/// `generate --chat` send, rendered as training renders conversations.
pub fn chat_prompt(model: &str, user: &str) -> Result<String> {
    let files = crate::models::ModelFiles::open(model)?;
    let chat = crate::data::template::ChatRendering::for_model(&files, false)?;
    chat.prompt(&[crate::data::chat::Turn {
        role: crate::data::chat::Role::User,
        content: user.to_string(),
    }])
}

/// Loads the model (and adapter) and continues `text`, passing each new piece of text to
/// `on_text` as it is decoded; returns the whole continuation.
pub fn generate_text(
    model: &str,
    adapter: Option<&std::path::Path>,
    text: &str,
    s: &Sampling,
    device: &candle_core::Device,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<String> {
    let (loaded, hooks) = crate::peft::import::load_adapted(model, adapter, device)?;
    let tok = &loaded.tokenizer;
    let prompt = tok
        .encode(text, true)
        .map_err(|e| anyhow::anyhow!("tokenizer failed: {e}"))?
        .get_ids()
        .to_vec();
    let stop: Vec<u32> = ["<|endoftext|>", "<|im_end|>", "</s>", "<eos>"]
        .iter()
        .filter_map(|t| tok.token_to_id(t))
        .chain(loaded.model.config().eos_id())
        .collect();
    // Decode the whole continuation each time and hand out what is new, so multi-token
    // characters (byte-level BPE) come out whole.
    let mut ids = Vec::new();
    let mut shown = 0;
    let mut failed = None;
    generate(
        loaded.model.decoder()?,
        &hooks,
        &prompt,
        s,
        &stop,
        &mut |id| {
            ids.push(id);
            match tok.decode(&ids, true) {
                Ok(text) if text.len() > shown && text.is_char_boundary(shown) => {
                    let keep = on_text(&text[shown..]);
                    shown = text.len();
                    keep
                }
                Ok(_) => true,
                Err(e) => {
                    failed = Some(e.to_string());
                    false
                }
            }
        },
    )?;
    if let Some(e) = failed {
        bail!("cannot decode the generated tokens: {e}");
    }
    tok.decode(&ids, true)
        .map_err(|e| anyhow::anyhow!("cannot decode the generated tokens: {e}"))
}

/// A classifier's answer: each class and its probability, most likely first, from the model
/// (and adapter, whose `labels.json` names the classes; `LABEL_i` otherwise).
pub fn classify_text(
    model: &str,
    adapter: Option<&std::path::Path>,
    text: &str,
    device: &candle_core::Device,
) -> Result<Vec<(String, f32)>> {
    let (_, logits) = crate::peft::import::last_logits(model, adapter, text, device)?;
    let names = match adapter {
        Some(a) => crate::peft::import::read_labels(a)?,
        None => None,
    }
    .unwrap_or_else(|| (0..logits.len()).map(|i| format!("LABEL_{i}")).collect());
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    let mut out: Vec<(String, f32)> = names
        .into_iter()
        .zip(exp)
        .map(|(n, e)| (n, e / total))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_keeps_only_the_likely_tokens() {
        let logits = Tensor::new(&[5.0f32, 4.0, -10.0, -10.0], &candle_core::Device::Cpu).unwrap();
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.9,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            assert!(pick(&logits, &s, &mut rng).unwrap() < 2);
        }
        let greedy = Sampling::default();
        assert_eq!(pick(&logits, &greedy, &mut rng).unwrap(), 0);
    }
}
