//! A benchmark of the training step (not a test): a model, a method, a batch of random
//! tokens of a fixed length, every position scored. Reports the median step after warm-up.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use std::time::Instant;

use super::peak_rss_bytes;
use crate::models::{LoadedModel, ModelFiles};
use crate::peft::{BuildContext, MethodConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// "builtin", a model folder or a .gguf file.
    #[arg(long, default_value = "builtin")]
    pub model: String,
    /// A method kind (its default parameters), e.g. lora, full, prefix-tuning.
    #[arg(long, default_value = "lora")]
    pub method: String,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed steps (after two warm-up steps).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Take the method and its parameters from this run configuration instead of --method.
    #[arg(long)]
    pub preset: Option<std::path::PathBuf>,
    /// Time greedy generation of this many new tokens instead of training: a prompt of
    /// `--prompt` random tokens, the key/value cache, no early stop, median of `--steps`.
    #[arg(long)]
    pub generate: Option<usize>,
    /// Prompt length for `--generate`.
    #[arg(long, default_value_t = 32)]
    pub prompt: usize,
    /// Threads for the matmuls and element-wise kernels (default: every core). candle reads
    /// its thread count once from the environment, so the bench reruns itself with it set.
    #[arg(long)]
    pub threads: Option<usize>,
    /// "cpu" or "cuda:N".
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, or bf16 / f16 (mixed precision; CUDA only).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::config::Precision,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub method: String,
    pub batch: usize,
    pub seq: usize,
    /// Seconds to read the weights and build the model with the method attached.
    pub load_seconds: f64,
    /// Training tokens per second, from the median step.
    pub tokens_per_second: f64,
    pub ms_per_step: f64,
    /// The fastest timed step: on a machine shared with other work, the figure least
    /// disturbed by it (compare builds by this over several steps).
    pub fastest_ms_per_step: f64,
    /// Forward pass only (no gradients), tokens per second, median.
    pub forward_tokens_per_second: f64,
    pub peak_rss_bytes: u64,
    pub trainable_params: usize,
    /// Threads candle computes with.
    pub threads: usize,
    pub device: String,
    pub precision: &'static str,
    /// The step's useful work per token (decoders): 4 × the parameters a token passes
    /// through (forward, and the gradient of each activation), 2 × more for every trained
    /// base parameter (its weight gradient), plus attention's products (12 × keys × width
    /// per layer, forward and backward; virtual keys included). Prompt embeddings pass
    /// through every block too: their work is spread over the real tokens.
    pub useful_flops_per_token: Option<f64>,
    /// That work at the measured rate, GFLOP/s.
    pub useful_gflops: Option<f64>,
    /// candle's plain f32 matmul on the step's own projection shapes (`[tokens, hidden]`
    /// by the square, the widening and the narrowing weight), timed in this process right
    /// after the steps, GFLOP/s.
    pub matmul_gflops: f64,
    /// `useful_gflops / matmul_gflops`: how much of the matmul rate the step turns into
    /// useful work (the rest: element-wise ops, copies, the optimizer, bookkeeping).
    pub useful_fraction: Option<f64>,
}

/// What `bench --generate` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateBenchResult {
    pub model: String,
    pub method: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub load_seconds: f64,
    /// The prompt's forward pass (filling the cache) and the first token's logits.
    pub prefill_ms: f64,
    /// Tokens after the first, over the time after the prompt: one cached step each.
    pub decode_tokens_per_second: f64,
    pub peak_rss_bytes: u64,
    pub threads: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// With `--threads T`, runs this same command in a child process whose environment sets
/// `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` to T, and returns its exit status; None when
/// no thread count is asked for or this process already has it.
pub fn rerun_with_threads(a: &BenchArgs) -> Result<Option<std::process::ExitStatus>> {
    let Some(t) = a.threads else {
        return Ok(None);
    };
    let want = t.to_string();
    if std::env::var("RAYON_NUM_THREADS").as_deref() == Ok(want.as_str()) {
        return Ok(None);
    }
    let exe = std::env::current_exe().context("cannot find this program to rerun it")?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", &want)
        .env("CANDLE_NUM_THREADS", &want)
        .status()
        .context("cannot rerun the bench with the thread count set")?;
    Ok(Some(status))
}

/// The model with the method attached, as a run has it before its first step.
struct Setup {
    method_cfg: MethodConfig,
    files: ModelFiles,
    method: Box<dyn crate::peft::Method>,
    loaded: LoadedModel,
    load_seconds: f64,
}

/// The device `--device` names, refusing bf16/f16 on the CPU as a run does.
fn bench_device(a: &BenchArgs) -> Result<Device> {
    if !a.precision.runs_on(&a.device) {
        anyhow::bail!(
            "--precision {} runs on a CUDA device only; on the CPU training is f32",
            a.precision.name()
        );
    }
    super::device_for(&a.device)
}

fn setup(a: &BenchArgs, device: &Device) -> Result<Setup> {
    let method_cfg: MethodConfig = match &a.preset {
        Some(p) => crate::config::RunConfig::load(p, &[])?.method,
        None => serde_json::from_value(serde_json::json!({ "kind": a.method }))
            .with_context(|| format!("unknown method `{}`", a.method))?,
    };
    let t0 = Instant::now();
    let files = ModelFiles::open(&a.model)?;
    let mut method = method_cfg.build(&BuildContext {
        model: &files.config,
        seed: 0,
        device,
        total_steps: a.steps + 2,
    })?;
    let loaded = LoadedModel::load_in(&files, method.as_mut(), device, a.precision.dtype())?;
    method.on_loaded(&loaded.model, &loaded.tokenizer)?;
    Ok(Setup {
        method_cfg,
        files,
        method,
        loaded,
        load_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Greedy generation with the cache (`--generate N`).
pub fn bench_generate(a: &BenchArgs, new_tokens: usize) -> Result<GenerateBenchResult> {
    if new_tokens < 2 || a.prompt == 0 {
        anyhow::bail!("--generate needs at least 2 new tokens and --prompt at least 1");
    }
    let device = bench_device(a)?;
    let s = setup(a, &device)?;
    let decoder = s.loaded.model.decoder()?;
    let hooks = s.method.hooks(false)?;
    let mut rng = StdRng::seed_from_u64(0);
    let vocab = s.files.config.vocab_size() as u32;
    let prompt: Vec<u32> = (0..a.prompt).map(|_| rng.random_range(0..vocab)).collect();
    let sampling = crate::generate::Sampling {
        max_tokens: new_tokens,
        temperature: 0.0,
        ..Default::default()
    };
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for round in 0..a.steps.max(1) + 1 {
        let t = Instant::now();
        let mut first = None;
        let out = crate::generate::generate(decoder, &hooks, &prompt, &sampling, &[], &mut |_| {
            first.get_or_insert_with(|| t.elapsed().as_secs_f64());
            true
        })?;
        let total = t.elapsed().as_secs_f64();
        anyhow::ensure!(out.len() == new_tokens, "generated {} tokens", out.len());
        let first = first.expect("at least one token");
        // The first round warms up.
        if round > 0 {
            prefill.push(first);
            decode.push((new_tokens - 1) as f64 / (total - first).max(1e-9));
        }
    }
    Ok(GenerateBenchResult {
        model: a.model.clone(),
        method: s.method_cfg.kind().into(),
        prompt_tokens: a.prompt,
        new_tokens,
        load_seconds: s.load_seconds,
        prefill_ms: median(prefill) * 1e3,
        decode_tokens_per_second: median(decode),
        peak_rss_bytes: peak_rss_bytes(),
        threads: candle_core::utils::get_num_threads(),
    })
}

pub fn bench(a: &BenchArgs) -> Result<BenchResult> {
    let device = bench_device(a)?;
    let Setup {
        method_cfg,
        files,
        mut method,
        loaded,
        load_seconds,
    } = setup(a, &device)?;
    let model = &loaded.model;
    let mut vars = loaded.weights.trained().to_vec();
    let trained_base: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    // Training keeps only the model and the trained copies (see `train::prepare`): the
    // checkpoint's own tensors of trained weights (all of them, for full fine-tuning) are
    // freed once the model is built, so they must not count in the bench's peak either.
    drop(loaded.weights);
    vars.extend(method.vars());
    let trainable = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut opt = super::optim::AdamW::new(
        &vars,
        &crate::config::OptimizerConfig {
            lr: 1e-4,
            ..Default::default()
        },
    )?;

    let mut rng = StdRng::seed_from_u64(0);
    let vocab = files.config.vocab_size() as u32;
    let tokens: Vec<u32> = (0..a.batch * (a.seq + 1))
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let all = Tensor::from_vec(tokens, (a.batch, a.seq + 1), &device)?;
    let inputs = all.narrow(1, 0, a.seq)?;
    let targets = all.narrow(1, 1, a.seq)?.flatten_all()?;
    let classes: Vec<u32> = (0..a.batch).map(|i| (i % 2) as u32).collect();
    let classes = Tensor::from_vec(classes, a.batch, &device)?;
    let lengths = vec![a.seq; a.batch];
    let loss_of = |method: &dyn crate::peft::Method, train: bool| -> Result<Tensor> {
        let hooks = method.hooks(train)?;
        // A classifier's step: the same tokens, a class per sequence.
        if let crate::models::Model::Bert(model) = model {
            let logits = model.classify(&inputs, &lengths, &hooks, train)?;
            return Ok(super::loss::cross_entropy(&logits, &classes)?);
        }
        let model = model.decoder()?;
        let hidden = model.forward_hidden(&inputs, &hooks, train)?;
        let l = hidden.dim(1)?;
        let hidden = hidden.narrow(1, l - a.seq, a.seq)?.flatten_to(1)?;
        // The forward-only timing asks for no gradient, so none is computed on the way.
        let hidden = if train { hidden } else { hidden.detach() };
        let head = model.output_weight();
        Ok(super::loss::linear_cross_entropy(&hidden, head, &targets)?)
    };

    let mut forward = Vec::new();
    for i in 0..a.steps + 1 {
        let t = Instant::now();
        // On candle's pool, as training runs (see the step loop in `train::train`).
        device.with_context(|| -> Result<f32> {
            Ok(loss_of(method.as_ref(), false)?.to_scalar()?)
        })?;
        if i > 0 {
            forward.push(t.elapsed().as_secs_f64());
        }
    }
    let mut steps = Vec::new();
    for i in 0..a.steps + 2 {
        let t = Instant::now();
        device.with_context(|| -> Result<()> {
            let loss = loss_of(method.as_ref(), true)?;
            let loss = match method.extra_loss()? {
                Some(extra) => (loss + extra)?,
                None => loss,
            };
            let grads = loss.backward()?;
            opt.step(&grads)?;
            method.after_step(i + 1, &grads)?;
            // A GPU runs the step's kernels asynchronously: wait for them before timing.
            Ok(device.synchronize()?)
        })?;
        if i >= 2 {
            steps.push(t.elapsed().as_secs_f64());
        }
    }
    let tokens = (a.batch * a.seq) as f64;
    let fastest = steps.iter().copied().fold(f64::INFINITY, f64::min);
    let step = median(steps);
    let cfg = &files.config;
    let matmul_gflops = plain_matmul_gflops(
        a.batch * a.seq,
        cfg.hidden_size(),
        cfg.intermediate_size(),
        &device,
    )?;
    let useful_flops_per_token = (!cfg.is_classifier())
        .then(|| useful_flops_per_token(cfg, &method_cfg, a.seq, trained_base));
    let useful_gflops = useful_flops_per_token.map(|f| f * tokens / step / 1e9);
    Ok(BenchResult {
        model: a.model.clone(),
        method: method_cfg.kind().into(),
        batch: a.batch,
        seq: a.seq,
        load_seconds,
        tokens_per_second: tokens / step,
        ms_per_step: step * 1e3,
        fastest_ms_per_step: fastest * 1e3,
        forward_tokens_per_second: tokens / median(forward),
        peak_rss_bytes: peak_rss_bytes(),
        trainable_params: trainable,
        threads: candle_core::utils::get_num_threads(),
        device: a.device.clone(),
        precision: a.precision.name(),
        useful_flops_per_token,
        useful_gflops,
        matmul_gflops,
        useful_fraction: useful_gflops.map(|u| u / matmul_gflops),
    })
}

/// The step's useful work per scored token of a decoder (see
/// [`BenchResult::useful_flops_per_token`]); `trained_base`: base parameters the method trains.
fn useful_flops_per_token(
    cfg: &crate::models::ModelConfig,
    method: &MethodConfig,
    seq: usize,
    trained_base: usize,
) -> f64 {
    // Prompt and prefix methods make every query attend to their virtual keys too.
    let keys = seq + method.virtual_tokens();
    let attention = 12 * keys * cfg.hidden_size() * cfg.num_layers();
    let per_token = 4 * cfg.param_count() + 2 * trained_base + attention;
    // Prompt embeddings pass through every block (not the output head) as tokens do: their
    // work, spread over the sequence's real tokens.
    let head = cfg.vocab_size() * cfg.hidden_size();
    let per_prompt_position = 4 * (cfg.param_count() - head) + attention;
    let prompt = method.prepended_positions();
    per_token as f64 + (prompt * per_prompt_position) as f64 / seq as f64
}

/// candle's matmul rate on a step's projection shapes: `[tokens, hidden]` times the square
/// weight and the widening one (transposed, as a projection reads them), `[tokens, inner]`
/// times the narrowing one; total FLOP over the summed median times.
fn plain_matmul_gflops(tokens: usize, hidden: usize, inner: usize, device: &Device) -> Result<f64> {
    let (mut flop, mut seconds) = (0.0, 0.0);
    for (k, n) in [(hidden, hidden), (hidden, inner), (inner, hidden)] {
        let x = Tensor::randn(0f32, 1.0, (tokens, k), device)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), device)?;
        let mut times = Vec::new();
        for i in 0..6 {
            let t = Instant::now();
            x.matmul(&w.t()?)?;
            device.synchronize()?;
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        flop += 2.0 * (tokens * k * n) as f64;
        seconds += median(times);
    }
    Ok(flop / seconds / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelConfig;

    fn method(kind: &str, tokens: usize) -> MethodConfig {
        serde_json::from_value(serde_json::json!({ "kind": kind, "num_virtual_tokens": tokens }))
            .unwrap()
    }

    #[test]
    fn useful_work_counts_what_virtual_tokens_add() {
        let cfg = ModelConfig::from_file(&crate::models::builtin_model_dir().join("config.json"))
            .unwrap();
        let (h, layers, seq) = (cfg.hidden_size(), cfg.num_layers(), 128);
        let params = cfg.param_count();
        let lora: MethodConfig =
            serde_json::from_value(serde_json::json!({ "kind": "lora" })).unwrap();
        let base = useful_flops_per_token(&cfg, &lora, seq, 0);
        assert_eq!(base, (4 * params + 12 * seq * h * layers) as f64);
        // Full fine-tuning adds the weight gradients of what it trains.
        let full = useful_flops_per_token(&cfg, &lora, seq, params);
        assert_eq!(full - base, (2 * params) as f64);
        // A key/value prefix only lengthens attention.
        let prefix = useful_flops_per_token(&cfg, &method("prefix-tuning", 16), seq, 0);
        assert_eq!(prefix - base, (12 * 16 * h * layers) as f64);
        // Prompt embeddings also pass through every block, not the output head: with as many
        // of them as real tokens, each real token carries one more position's block work,
        // and every position attends to twice the keys.
        let prompt = useful_flops_per_token(&cfg, &method("prompt-tuning", seq), seq, 0);
        let body = 4 * (params - cfg.vocab_size() * h);
        let attention = 12 * 2 * seq * h * layers;
        assert_eq!(prompt, (4 * params + attention + body + attention) as f64);
    }
}
