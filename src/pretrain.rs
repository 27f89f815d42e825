//! Pretraining the built-in model from scratch: a byte-level BPE tokenizer trained on the
//! corpus, a randomly initialised LLaMA, and full training on chunks of the corpus. The
//! result is a Hugging Face model folder (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) that transformers loads unchanged.

use anyhow::{Context, Result, anyhow, bail};
use candle_core::{Device, Tensor};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::config::RunConfig;
use crate::data::{Dataset, Example, Metric};
use crate::files::save_json;
use crate::models::LlamaConfig;
use crate::peft::{MethodConfig, export::save_safetensors, full::FullConfig};
use crate::train::{self, Event, Summary};

pub const SPECIAL: &str = "<|endoftext|>";

/// Shape and schedule of a pretraining run.
#[derive(Debug, Clone, clap::Args)]
pub struct PretrainArgs {
    /// UTF-8 text file; one paragraph or verse per line.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Output model folder.
    #[arg(long)]
    pub out: PathBuf,
    /// 12 000 covers the corpus's ~3 800 recurring hanzi as single tokens (0.77 tokens
    /// per character on the reviews, 0.25 on the KJV) beside English words.
    #[arg(long, default_value_t = 12000)]
    pub vocab: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 6)]
    pub layers: usize,
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    #[arg(long, default_value_t = 4)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = 768)]
    pub intermediate: usize,
    #[arg(long, default_value_t = 3000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Corpus chunk length in UTF-8 bytes: 480 is about 120 tokens of English (four bytes
    /// a token) and of Chinese alike (three bytes a character, 0.77 tokens a character).
    #[arg(long, default_value_t = 480)]
    pub chunk_chars: usize,
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue pretraining the model in this folder (its tokenizer, shape and weights)
    /// instead of starting from random weights; the shape options are then ignored.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Steps of linear warm-up of the learning rate.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
}

/// Trains a byte-level BPE tokenizer on `corpus` and saves it as `tokenizer.json`.
pub fn train_tokenizer(corpus: &Path, vocab: usize, out: &Path) -> Result<tokenizers::Tokenizer> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(SPECIAL, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
    .with_post_processor(Some(ByteLevel::default().trim_offsets(false).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()
    .map_err(|e| anyhow!("cannot build tokenizer: {e}"))?;
    let file = corpus
        .to_str()
        .context("corpus path is not UTF-8")?
        .to_string();
    tok.train_from_files(&mut trainer, vec![file])
        .map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
    let tok: tokenizers::Tokenizer = tok.into();
    tok.save(out.join("tokenizer.json"), true)
        .map_err(|e| anyhow!("cannot save tokenizer: {e}"))?;
    save_json(
        &out.join("tokenizer_config.json"),
        &serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": SPECIAL,
            "eos_token": SPECIAL,
            "unk_token": SPECIAL,
            "pad_token": SPECIAL,
            "model_max_length": 1024,
            "clean_up_tokenization_spaces": false,
            "add_prefix_space": false,
        }),
    )?;
    Ok(tok)
}

/// A Hugging Face `config.json` for a small LLaMA with tied embeddings.
pub fn model_config(a: &PretrainArgs, vocab_size: usize, eos: u32) -> LlamaConfig {
    LlamaConfig {
        hidden_size: a.hidden,
        intermediate_size: a.intermediate,
        num_attention_heads: a.heads,
        num_key_value_heads: Some(a.kv_heads),
        num_hidden_layers: a.layers,
        rms_norm_eps: 1e-5,
        rope_theta: Some(10_000.0),
        rope_parameters: Some(crate::models::llama::RopeParameters {
            rope_theta: 10_000.0,
            rope_type: Some("default".into()),
        }),
        vocab_size,
        max_position_embeddings: 1024,
        tie_word_embeddings: true,
        head_dim: Some(a.hidden / a.heads),
        attention_bias: false,
        model_type: None,
        mlp_bias: false,
        bos_token_id: Some(eos),
        eos_token_id: Some(serde_json::json!(eos)),
    }
}

/// Random weights as GPT-style init: N(0, 0.02) for matrices, ones for norms.
pub fn init_weights(cfg: &LlamaConfig, seed: u64) -> Result<Vec<(String, Tensor)>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("valid");
    let dev = Device::Cpu;
    let mut mat = |rows: usize, cols: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
        Ok(Tensor::from_vec(v, (rows, cols), &dev)?)
    };
    let h = cfg.hidden_size;
    let hd = cfg.head_dim();
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        mat(cfg.vocab_size, h)?,
    )];
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        for (name, r, c) in [
            ("self_attn.q_proj", cfg.num_attention_heads * hd, h),
            ("self_attn.k_proj", cfg.kv_heads() * hd, h),
            ("self_attn.v_proj", cfg.kv_heads() * hd, h),
            ("self_attn.o_proj", h, cfg.num_attention_heads * hd),
            ("mlp.gate_proj", cfg.intermediate_size, h),
            ("mlp.up_proj", cfg.intermediate_size, h),
            ("mlp.down_proj", h, cfg.intermediate_size),
        ] {
            out.push((format!("{p}.{name}.weight"), mat(r, c)?));
        }
        for n in ["input_layernorm", "post_attention_layernorm"] {
            out.push((
                format!("{p}.{n}.weight"),
                Tensor::ones(h, candle_core::DType::F32, &dev)?,
            ));
        }
    }
    out.push((
        "model.norm.weight".into(),
        Tensor::ones(h, candle_core::DType::F32, &dev)?,
    ));
    Ok(out)
}

/// Cuts the corpus into chunks of whole lines of at most `chars` characters; every 50th
/// chunk is held out for evaluation.
pub fn corpus_dataset(text: &str, chars: usize) -> Result<Dataset> {
    let mut chunks = Vec::new();
    let mut cur = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !cur.is_empty() && cur.len() + line.len() + 1 > chars {
            chunks.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    if chunks.len() < 100 {
        bail!(
            "the corpus gives only {} chunks; pretraining needs a larger text",
            chunks.len()
        );
    }
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, c) in chunks.into_iter().enumerate() {
        let ex = Example::Text { text: c };
        if i % 50 == 49 {
            eval.push(ex)
        } else {
            train.push(ex)
        }
    }
    Ok(Dataset {
        name: "pretraining corpus".into(),
        train,
        eval,
        metric: Metric::Perplexity,
    })
}

/// The whole pipeline; `emit` receives the trainer's events.
pub fn pretrain(a: &PretrainArgs, emit: &mut dyn FnMut(Event)) -> Result<Summary> {
    std::fs::create_dir_all(&a.out)?;
    match &a.from {
        None => {
            let tok = train_tokenizer(&a.corpus, a.vocab, &a.out)?;
            let eos = tok
                .token_to_id(SPECIAL)
                .context("special token missing after training")?;
            let cfg = model_config(a, tok.get_vocab_size(true), eos);
            save_json(&a.out.join("config.json"), &config_json(&cfg))?;
            save_safetensors(
                &a.out.join("model.safetensors"),
                &init_weights(&cfg, a.seed)?,
            )?;
        }
        Some(from) => start_from(from, &a.out)?,
    }

    let text = std::fs::read_to_string(&a.corpus)
        .with_context(|| format!("cannot read {}", a.corpus.display()))?;
    let dataset = corpus_dataset(&text, a.chunk_chars)?;
    let mut run_cfg = RunConfig {
        model: a.out.display().to_string(),
        dataset: format!("pretrain:{}", a.corpus.display()),
        steps: a.steps,
        batch_size: a.batch,
        max_seq_len: 256,
        eval_every: 100,
        eval_examples: 256,
        // The run folder is temporary and pretraining is never resumed.
        checkpoint_every: 0,
        seed: a.seed,
        method: MethodConfig::Full(FullConfig {}),
        ..RunConfig::default()
    };
    run_cfg.optimizer.lr = a.lr;
    run_cfg.optimizer.warmup_steps = a.warmup;
    run_cfg.optimizer.weight_decay = 0.01;
    let run_dir = a.out.join(".pretrain-run");
    // The folder is this command's scratch space: one left by a pretraining that died is
    // cleared (a live one keeps its lock, and the run below is refused).
    if run_dir.exists() && train::run_dir::holder(&run_dir).is_none() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("cannot clear {}", run_dir.display()))?;
    }
    let summary = train::run(
        &run_cfg,
        0,
        Some(&run_dir),
        Some(dataset),
        emit,
        &mut || false,
    )?;
    // The trained weights replace the random ones; the run's log is kept beside them.
    let trained = candle_core::safetensors::load(
        run_dir.join("adapter").join("model.safetensors"),
        &Device::Cpu,
    )?;
    let mut named: Vec<(String, Tensor)> = trained
        .into_iter()
        .collect::<HashMap<_, _>>()
        .into_iter()
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    save_safetensors(&a.out.join("model.safetensors"), &named)?;
    std::fs::rename(
        run_dir.join("metrics.jsonl"),
        a.out.join("pretrain_metrics.jsonl"),
    )?;
    std::fs::rename(
        run_dir.join("config.toml"),
        a.out.join("pretrain_config.toml"),
    )?;
    save_json(
        &a.out.join("pretrain_summary.json"),
        &serde_json::to_value(&summary)?,
    )?;
    std::fs::remove_dir_all(&run_dir)?;
    Ok(summary)
}

/// Files of a pretrained model folder that a continued pretraining starts from; the
/// earlier stage's record moves into `earlier/` so the whole history stays with the weights.
const MODEL_FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];
const RECORD_FILES: [&str; 3] = [
    "pretrain_config.toml",
    "pretrain_metrics.jsonl",
    "pretrain_summary.json",
];

fn start_from(from: &Path, out: &Path) -> Result<()> {
    let same = from.canonicalize().ok() == out.canonicalize().ok();
    if same {
        bail!(
            "--from and --out are the same folder ({}); write the continued model elsewhere",
            out.display()
        );
    }
    for f in MODEL_FILES {
        std::fs::copy(from.join(f), out.join(f))
            .with_context(|| format!("{} lacks {f}", from.display()))?;
    }
    let earlier = out.join("earlier");
    if from.join("pretrain_summary.json").exists() {
        std::fs::create_dir_all(&earlier)?;
        for f in RECORD_FILES {
            std::fs::copy(from.join(f), earlier.join(f))
                .with_context(|| format!("{} lacks {f}", from.display()))?;
        }
        // Older stages of the earlier model come along one level further down.
        if from.join("earlier").is_dir() {
            copy_dir(&from.join("earlier"), &earlier.join("earlier"))?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// `config.json` as transformers writes it for `LlamaForCausalLM`.
pub fn config_json(cfg: &LlamaConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).expect("serialisable");
    v["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    v["model_type"] = serde_json::json!("llama");
    v["hidden_act"] = serde_json::json!("silu");
    v["torch_dtype"] = serde_json::json!("float32");
    v["attention_dropout"] = serde_json::json!(0.0);
    v["initializer_range"] = serde_json::json!(0.02);
    v["pretraining_tp"] = serde_json::json!(1);
    v["use_cache"] = serde_json::json!(true);
    v
}
