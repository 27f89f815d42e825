//! The trainer: takes a `RunConfig`, an event sink and a stop check, and returns a summary.
//! It knows nothing of any UI.

pub mod allocator;
pub mod bench;
pub mod checkpoint;
pub mod cpu_threads;
mod data_order;
pub mod data_summary;
pub mod devices;
mod early_stopping;
mod evaluate;
pub mod events;
pub use crate::kernels::loss;
pub mod memory;
pub mod optim;
pub mod recipe_data;
pub mod run_dir;
pub mod schedule;
pub mod worker;

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor, Var, backprop::GradStore};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::config::RunConfig;
use crate::data::{
    self, Dataset, Metric,
    batch::{Batch, ClassBatch, Encoded, EvalSet, encode_all, encode_choices, encode_labeled},
    template::ChatRendering,
};
use crate::files::{save_json, write_atomic, write_dir_atomic};
use crate::models::{Decoder, Hooks, LoadedModel, Model, ModelConfig, ModelFiles};
use crate::peft::{BuildContext, ExportContext, Method, import::ImportedAdapter};
use data_order::DataOrder;
pub use devices::{DeviceInfo, available_devices, device_for};
pub use early_stopping::{BestEval, EarlyStoppingState};
use evaluate::metric_value;
pub use evaluate::{
    AdapterEvaluation, evaluate, evaluate_adapter, evaluate_adapter_until, evaluate_until,
    measure_adapter,
};
pub use events::{
    Chance, Command, EndedEarly, EvalPoint, Event, RankAllocation, RunId, StepPoint, Summary,
};
pub use memory::{peak_rss_bytes, reset_peak_rss};

/// The id batches are padded with: a decoder's end-of-sequence token (the config's, else
/// the tokenizer's usual names), an encoder's padding token.
fn pad_id(cfg: &ModelConfig, tok: &tokenizers::Tokenizer) -> Result<u32> {
    if let ModelConfig::Bert(c) = cfg {
        return Ok(c.pad_token_id);
    }
    cfg.eos_id()
        .or_else(|| {
            ["<|endoftext|>", "</s>", "<|im_end|>", "<eos>"]
                .iter()
                .find_map(|t| tok.token_to_id(t))
        })
        .context("the model names no end-of-sequence token (eos_token_id in config.json)")
}

/// Final hidden states `[scored, hidden]` at the positions of a batch whose next token is
/// scored.
fn scored_hidden(model: &dyn Decoder, hooks: &Hooks, batch: &Batch, train: bool) -> Result<Tensor> {
    let hidden = model.forward_hidden(&batch.inputs, hooks, train)?;
    let (b, t, h) = hidden.dims3()?;
    // Prompt embeddings (if any) come first; the real tokens are the last `l` positions.
    let l = batch.inputs.dim(1)?;
    let hidden = hidden.narrow(1, t - l, l)?.reshape((b * l, h))?;
    // Only the scored positions go through the output head: for prompt/completion data that
    // is a few tokens per example instead of all of them.
    Ok(hidden.index_select(&batch.positions, 0)?)
}

/// The training loss of one batch (mean cross-entropy over its scored tokens, or over its
/// examples' classes) and the real tokens it holds.
fn batch_loss(
    model: &Model,
    hooks: &Hooks,
    picked: &[&Encoded],
    pad: u32,
    device: &Device,
) -> Result<(Tensor, usize)> {
    if let Model::Bert(m) = model {
        let batch = ClassBatch::new(picked, pad, device)?;
        let logits = m.classify(&batch.ids, &batch.lengths, hooks, true)?;
        return Ok((
            loss::cross_entropy(&logits, &batch.labels)?,
            batch.real_tokens,
        ));
    }
    let batch = Batch::new(picked, pad, device)?;
    let model = model.decoder()?;
    let hidden = scored_hidden(model, hooks, &batch, true)?;
    Ok((
        loss::linear_cross_entropy(&hidden, model.output_weight(), &batch.targets)?,
        batch.real_tokens,
    ))
}

/// Scales gradients down so their global L2 norm is at most `max_norm`; returns the norm.
fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .to_dtype(DType::F32)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * scale)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

/// Stops a run whose loss is no longer a number, naming the step.
fn ensure_finite(loss: f64, step: usize, lr: f64) -> Result<()> {
    if !loss.is_finite() {
        bail!(
            "loss became {loss} at step {step}: training diverged; lower the learning rate (now {lr})"
        );
    }
    Ok(())
}

/// Examples tokenised for `model`: next-token examples for a decoder (`eos` closes them),
/// labelled ones for a classifier; and how many were cut to `max_len`.
fn encode_for(
    model: &ModelConfig,
    tok: &tokenizers::Tokenizer,
    examples: &[data::Example],
    eos: u32,
    max_len: usize,
    chat: &ChatRendering,
) -> Result<(Vec<Encoded>, usize)> {
    match model {
        ModelConfig::Bert(c) => encode_labeled(tok, examples, &c.labels, max_len),
        ModelConfig::Llama(_) | ModelConfig::Gpt2(_) => {
            encode_all(tok, examples, eos, max_len, chat)
        }
    }
}

/// The run's dataset, read as `dataset_format` says (or row by row).
fn load_dataset(cfg: &RunConfig) -> Result<Dataset> {
    data::load_as(
        &cfg.dataset,
        cfg.eval_dataset.as_deref(),
        cfg.seed,
        cfg.dataset_format,
    )
}

/// How `dataset`'s conversations are rendered for the run's model: its own chat template
/// (read only when there are conversations, so a model whose template does not compile
/// still trains on other data), or the plain one.
fn chat_rendering(cfg: &RunConfig, files: &ModelFiles, dataset: &Dataset) -> Result<ChatRendering> {
    let has_chat = dataset
        .train
        .iter()
        .chain(&dataset.eval)
        .any(|e| matches!(e, data::Example::Chat { .. }));
    if !has_chat {
        return Ok(ChatRendering::default());
    }
    ChatRendering::for_model(files, cfg.last_turn_only)
}

/// The first `cfg.eval_examples` evaluation examples of `dataset`, encoded as the run
/// scores them (for a decoder on labelled data: answered with each label), and how many
/// were cut to `max_seq_len`.
fn encode_eval(
    cfg: &RunConfig,
    model: &ModelConfig,
    dataset: &Dataset,
    tok: &tokenizers::Tokenizer,
    eos: u32,
    chat: &ChatRendering,
) -> Result<(EvalSet, usize)> {
    let examples: Vec<_> = dataset
        .eval
        .iter()
        .take(cfg.eval_examples)
        .cloned()
        .collect();
    match model {
        ModelConfig::Llama(_) | ModelConfig::Gpt2(_) if dataset.metric == Metric::Accuracy => {
            encode_choices(tok, &examples, &dataset.labels()?, eos, cfg.max_seq_len)
        }
        _ => {
            let (encoded, cut) = encode_for(model, tok, &examples, eos, cfg.max_seq_len, chat)?;
            Ok((EvalSet::Examples(encoded), cut))
        }
    }
}

/// Opens the run's model; a classifier learns the dataset's classes, its new head seeded by
/// the run. Returns the metric the run reports.
fn open_for_task(cfg: &RunConfig, dataset: &Dataset) -> Result<(ModelFiles, Metric)> {
    let mut files = ModelFiles::open(&cfg.model)?;
    let metric = match &mut files.config {
        ModelConfig::Bert(c) => {
            if !dataset.is_labeled() {
                bail!(
                    "{} is a classifier: it trains on {{\"text\", \"label\"}} examples, and {} has prompt/completion or plain text ones (try builtin:sentiment-labels)",
                    cfg.model,
                    dataset.name
                );
            }
            c.labels = dataset.labels()?;
            c.head_seed = cfg.seed;
            Metric::Accuracy
        }
        ModelConfig::Llama(_) | ModelConfig::Gpt2(_) => dataset.metric,
    };
    Ok((files, metric))
}

/// Everything a run holds once its model and data are loaded.
struct Prepared {
    model: Model,
    model_cfg: ModelConfig,
    method: Box<dyn Method>,
    loaded_trained: Vec<(String, Var)>,
    train: Vec<Encoded>,
    eval: EvalSet,
    metric: Metric,
    pad: u32,
    device: Device,
    total_params: usize,
}

fn prepare(
    cfg: &RunConfig,
    dataset: Option<Dataset>,
    emit: &mut dyn FnMut(Event),
    run: RunId,
) -> Result<Prepared> {
    cfg.validate()?;
    let device = device_for(&cfg.device)?;
    // Data first (it needs only the tokenizer): the memory check uses the longest example,
    // and a bad dataset is reported before the weights are read.
    let dataset = match dataset {
        Some(d) => d,
        None => load_dataset(cfg)?,
    };
    let (files, metric) = open_for_task(cfg, &dataset)?;
    let model_cfg = files.config.clone();
    let tokenizer = files.tokenizer()?;
    let eos = pad_id(&model_cfg, &tokenizer)?;
    let chat = chat_rendering(cfg, &files, &dataset)?;
    let (train, cut_train) = encode_for(
        &model_cfg,
        &tokenizer,
        &dataset.train,
        eos,
        cfg.max_seq_len,
        &chat,
    )?;
    let (eval, cut_eval) = encode_eval(cfg, &model_cfg, &dataset, &tokenizer, eos, &chat)?;
    let longest = train
        .iter()
        .chain(eval.sequences())
        .map(|e| e.ids.len())
        .max()
        .unwrap_or(1);
    let need = memory::training_bytes(
        &model_cfg,
        cfg.method.trainable_params(&model_cfg),
        cfg.batch_size,
        longest + cfg.method.virtual_tokens(),
    );
    // The estimate is of host memory; on a GPU the activations live in device memory and
    // running out of it is reported by CUDA itself.
    if device.is_cpu() {
        memory::check_fits(need, memory::available_bytes())?;
    }
    let mut method = cfg.method.build(&BuildContext {
        model: &model_cfg,
        seed: cfg.seed,
        device: &device,
        total_steps: cfg.steps,
    })?;
    let loaded = LoadedModel::load_in(&files, method.as_mut(), &device, cfg.precision.dtype())?;
    let module_names: Vec<String> = loaded
        .weights
        .tensors()
        .keys()
        .filter_map(|k| k.strip_suffix(".weight").map(str::to_string))
        .collect();
    method.check_attached(&module_names)?;
    method.on_loaded(&loaded.model, &loaded.tokenizer)?;
    if let Some(note) = cfg.method.for_model(&model_cfg).1 {
        emit(Event::Notice { run, text: note });
    }
    if cut_train + cut_eval > 0 {
        emit(Event::Notice {
            run,
            text: format!(
                "{} training and {} evaluation examples were longer than max_seq_len = {} and were cut",
                cut_train, cut_eval, cfg.max_seq_len
            ),
        });
    }
    if train.is_empty() || eval.is_empty() {
        bail!(
            "{}: no example has a token to predict after tokenisation",
            dataset.name
        );
    }
    let base_params: usize = loaded
        .weights
        .tensors()
        .values()
        .map(|t| t.elem_count())
        .sum();
    let method_params: usize = method.vars().iter().map(|(_, v)| v.elem_count()).sum();
    Ok(Prepared {
        loaded_trained: loaded.weights.trained().to_vec(),
        model: loaded.model,
        model_cfg,
        method,
        train,
        eval,
        metric,
        pad: eos,
        device,
        total_params: base_params + method_params,
    })
}

/// How exports name the built-in model as their base (`base_model_name_or_path`).
pub const BUILTIN_EXPORT_NAME: &str = "peft-workbench/builtin";

/// The base model as an export names it: the config's `model`, the built-in one by
/// [`BUILTIN_EXPORT_NAME`].
pub fn exported_base_name(model: &str) -> String {
    if model == "builtin" {
        BUILTIN_EXPORT_NAME.to_string()
    } else {
        model.to_string()
    }
}

/// A finished run's update map (`crate::peft::update_map`), beside `adapter/`.
pub const UPDATE_MAP_FILE: &str = "update_map.json";

/// The update map is measured at every evaluation only up to these sizes (trained and
/// whole-model parameters): each evaluation exports the trained tensors, and the base
/// tensors they change are held for the run. Larger runs (full fine-tuning, Freeze) are
/// measured when they end, after their peak memory is recorded.
const LIVE_MAP_MAX_TRAINED: usize = 2_000_000;
const LIVE_MAP_MAX_BASE: usize = 200_000_000;

/// Appends JSON lines to `metrics.jsonl`, flushed at once so a killed run keeps its curve.
struct MetricsLog(Option<std::fs::File>);

impl MetricsLog {
    fn write(&mut self, kind: &str, value: &impl serde::Serialize) -> Result<()> {
        if let Some(f) = &mut self.0 {
            let mut v = serde_json::to_value(value)?;
            v["type"] = serde_json::Value::String(kind.into());
            writeln!(f, "{v}").context("cannot write metrics.jsonl")?;
        }
        Ok(())
    }
}

/// Runs training to the end (or until `stop()` answers true), reporting through `emit`.
/// With `out_dir`, writes `config.toml`, `metrics.jsonl`, a checkpoint every
/// `checkpoint_every` steps and when stopped, and at the end `summary.json` and `adapter/`.
/// `dataset` overrides the config's (used by pretraining, which builds its own).
pub fn run(
    cfg: &RunConfig,
    run: RunId,
    out_dir: Option<&Path>,
    dataset: Option<Dataset>,
    emit: &mut dyn FnMut(Event),
    stop: &mut dyn FnMut() -> bool,
) -> Result<Summary> {
    let mut halt = || if stop() { Halt::Pause } else { Halt::No };
    train(cfg, run, out_dir, dataset, false, emit, &mut halt)
}

/// What the stop check answers between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Go on.
    No,
    /// Stop here keeping a checkpoint, so the run can be resumed ("Stop").
    Pause,
    /// End here as finished, the best evaluation's tensors in `best/` ("Stop and keep
    /// best").
    Finish,
}

/// `run` with the stop check's full answer (the worker's: Stop or Stop and keep best).
pub fn run_until(
    cfg: &RunConfig,
    run: RunId,
    out_dir: Option<&Path>,
    emit: &mut dyn FnMut(Event),
    halt: &mut dyn FnMut() -> Halt,
) -> Result<Summary> {
    train(cfg, run, out_dir, None, false, emit, halt)
}

/// Continues the run saved in `run_dir` from its last checkpoint to its configured number
/// of steps, as if it had never stopped: same data order, optimizer state and method state.
pub fn resume(
    run_dir: &Path,
    run: RunId,
    emit: &mut dyn FnMut(Event),
    stop: &mut dyn FnMut() -> bool,
) -> Result<Summary> {
    let mut halt = || if stop() { Halt::Pause } else { Halt::No };
    resume_until(run_dir, run, emit, &mut halt)
}

/// `resume` with the stop check's full answer.
pub fn resume_until(
    run_dir: &Path,
    run: RunId,
    emit: &mut dyn FnMut(Event),
    halt: &mut dyn FnMut() -> Halt,
) -> Result<Summary> {
    let cfg = RunConfig::load(&run_dir.join("config.toml"), &[])
        .with_context(|| format!("{} is not a run folder", run_dir.display()))?;
    if cfg.dataset.starts_with("pretrain:") {
        bail!("pretraining runs cannot be resumed; run `pretrain` again");
    }
    train(&cfg, run, Some(run_dir), None, true, emit, halt)
}

/// Whether the run saved in `run_dir` can be continued.
pub fn resumable(run_dir: &Path) -> bool {
    let finished = std::fs::read_to_string(run_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
        .is_some_and(|s| !s.stopped_early);
    !finished && checkpoint::exists(run_dir)
}

/// Puts the checkpoint's tensors back into the run's variables, optimizer and method.
fn restore(
    c: &checkpoint::Checkpoint,
    vars: &[(String, Var)],
    opt: &mut optim::AdamW,
    method: &mut dyn Method,
) -> Result<()> {
    let params = c.section("param");
    for (name, var) in vars {
        let t = params.get(name).with_context(|| {
            format!("the checkpoint lacks `{name}`: it belongs to another configuration")
        })?;
        if t.dims() != var.dims() {
            bail!(
                "the checkpoint's `{name}` has shape {:?}, the run's {:?}",
                t.dims(),
                var.dims()
            );
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    opt.load_state(&c.tensors, c.progress.step)?;
    method.load_state(&c.section("method"))
}

fn train(
    cfg: &RunConfig,
    run: RunId,
    out_dir: Option<&Path>,
    dataset: Option<Dataset>,
    resuming: bool,
    emit: &mut dyn FnMut(Event),
    halt: &mut dyn FnMut() -> Halt,
) -> Result<Summary> {
    let started = Instant::now();
    // Held until the run's last file is written: a second process on the same folder is
    // refused instead of mixing its files with this run's. A new run then refuses a folder
    // that already holds one (checked under the lock, so a run that finished a moment ago
    // counts).
    let _lock = match out_dir {
        Some(dir) => {
            let lock = run_dir::lock(dir)?;
            if !resuming {
                run_dir::ensure_no_run(dir)?;
            }
            Some(lock)
        }
        None => None,
    };
    emit(Event::Loading {
        run,
        model: cfg.model.clone(),
    });
    let mut p = prepare(cfg, dataset, emit, run)?;
    let mut vars: Vec<(String, Var)> = p.loaded_trained.clone();
    vars.extend(p.method.vars());
    let trainable: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    if trainable == 0 {
        bail!("the method trains no parameter");
    }
    let mut names = std::collections::HashSet::new();
    if let Some((dup, _)) = vars.iter().find(|(n, _)| !names.insert(n.as_str())) {
        bail!("two trained tensors are both named `{dup}`");
    }
    let plain_vars: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let o = &cfg.optimizer;
    let mut opt = optim::AdamW::new(&vars, o)?;

    let mut progress = checkpoint::Progress::default();
    if resuming {
        let dir = out_dir.context("resuming needs the run folder")?;
        let c = checkpoint::load(dir, &p.device)?;
        restore(&c, &vars, &mut opt, p.method.as_mut())?;
        progress = c.progress;
    }
    let resumed_from = resuming.then_some(progress.step);

    let mut log = MetricsLog(None);
    if let Some(dir) = out_dir {
        let metrics = dir.join("metrics.jsonl");
        if resuming {
            checkpoint::truncate_metrics(&metrics, progress.step)?;
            log.0 = Some(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&metrics)
                    .with_context(|| format!("cannot open {}", metrics.display()))?,
            );
        } else {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create run folder {}", dir.display()))?;
            write_atomic(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
            log.0 = Some(
                std::fs::File::create(&metrics)
                    .with_context(|| format!("cannot create {}", metrics.display()))?,
            );
        }
    }
    emit(Event::Started {
        run,
        trainable_params: trainable,
        total_params: p.total_params,
        steps: cfg.steps,
        metric_name: p.metric.name().into(),
        chance: p.eval.chance_level().map(|level| Chance {
            level,
            examples: p.eval.len(),
        }),
        out_dir: out_dir.map(|d| d.display().to_string()),
        resumed_from,
    });

    // Wall time counts every session of the run.
    let prior_elapsed = progress.elapsed_seconds;
    let elapsed = move || prior_elapsed + started.elapsed().as_secs_f64();
    let eval_bs = cfg.batch_size.max(16);
    let eval_point = |step: usize,
                      p: &Prepared,
                      log: &mut MetricsLog,
                      emit: &mut dyn FnMut(Event)|
     -> Result<(f64, f64)> {
        let hooks = p.method.hooks(false)?;
        // A run's own evaluations end whole: Stop takes effect at the next step.
        let (loss, exact) = evaluate(&p.model, &hooks, &p.eval, eval_bs, p.pad, &p.device)?;
        let point = EvalPoint {
            run,
            step,
            loss,
            metric: metric_value(p.metric, loss, exact),
            elapsed_s: elapsed(),
        };
        log.write("eval", &point)?;
        emit(Event::Eval(point.clone()));
        Ok((point.loss, point.metric))
    };
    let base_model = exported_base_name(&cfg.model);
    // The trained tensors as an adapter folder (`adapter/` at the end, `best/` at each new
    // best evaluation), written whole or not at all.
    // `best/` also holds `best.json`, the evaluation its tensors scored: a run killed after
    // a new best and before its next checkpoint resumes with the checkpoint's older best in
    // its counters, and the folder still says what it holds.
    let export_to = |p: &Prepared, to: &Path, best: Option<&BestEval>| -> Result<()> {
        let ctx = ExportContext {
            base_model: &base_model,
            trained_base: &p.loaded_trained,
            model: &p.model_cfg,
        };
        write_dir_atomic(to, |d| {
            p.method.export(d, &ctx)?;
            crate::peft::export::finish_for_model(d, &p.model_cfg, &p.loaded_trained)?;
            if let Some(b) = best {
                save_json(&d.join("best.json"), &serde_json::to_value(b)?)?;
            }
            Ok(())
        })
    };
    // With `[early_stopping]`: a better evaluation is kept in `best/` (and announced);
    // true once the patience has run out.
    let higher_is_better = p.metric.higher_is_better();
    let consider = |step: usize,
                    (loss, metric): (f64, f64),
                    progress: &mut checkpoint::Progress,
                    p: &Prepared,
                    log: &mut MetricsLog,
                    emit: &mut dyn FnMut(Event)|
     -> Result<bool> {
        let Some(es) = &cfg.early_stopping else {
            return Ok(false);
        };
        let eval = BestEval { step, loss, metric };
        match progress.early.observe(es, higher_is_better, eval) {
            early_stopping::Verdict::Improved => {
                if let Some(dir) = out_dir {
                    export_to(p, &dir.join("best"), Some(&eval))?;
                }
                log.write("best", &serde_json::json!({ "step": step }))?;
                emit(Event::Best { run, step });
                Ok(false)
            }
            early_stopping::Verdict::Waiting => Ok(false),
            early_stopping::Verdict::Stop => Ok(true),
        }
    };
    // Where the update went, at each evaluation: measured from the trained tensors exported
    // to a scratch folder against the base weights read once, while both are small enough
    // for that to take a moment (LoRA on SmolLM2: a few MB exported, the 135 M base read
    // once); larger runs are measured once, when they end.
    // Only the base tensors the map reads are kept (LoRA on q/v of the built-in model:
    // 0.4 M floats of its 7.8 M), so the run's peak memory stays the run's.
    let map_base = match out_dir {
        Some(dir) if trainable <= LIVE_MAP_MAX_TRAINED && p.total_params <= LIVE_MAP_MAX_BASE => {
            ModelFiles::open(&cfg.model).ok().and_then(|files| {
                let mut base = files.weights(&Device::Cpu).ok()?.tensors().clone();
                let scratch = dir.join(".update-map");
                export_to(&p, &scratch, None).ok()?;
                let read = crate::peft::update_map::base_tensors_read(&files, &base, &scratch);
                let _ = std::fs::remove_dir_all(&scratch);
                let read = read.ok()?;
                base.retain(|name, _| read.contains(name));
                Some((files, base))
            })
        }
        _ => None,
    };
    // Bottleneck adapters are measured on the evaluation passes themselves: the latest
    // evaluation's cells, for the live map and the one written at the end.
    let activation_cells = std::cell::RefCell::new(Vec::new());
    let live_map = |step: usize, p: &Prepared, emit: &mut dyn FnMut(Event)| -> Result<()> {
        let cells = p.method.take_activation_cells();
        if !cells.is_empty() {
            *activation_cells.borrow_mut() = cells;
        }
        let (Some(dir), Some((files, base))) = (out_dir, &map_base) else {
            return Ok(());
        };
        let scratch = dir.join(".update-map");
        export_to(p, &scratch, None)?;
        let map = crate::peft::update_map::measure_against(files, base, &scratch)
            .map(|map| map.with_activations(&activation_cells.borrow()));
        let _ = std::fs::remove_dir_all(&scratch);
        // A map that cannot be measured is not worth stopping a run for; the end says why.
        if let Ok(map) = map {
            emit(Event::UpdateMap {
                run,
                step,
                map: Box::new(map),
            });
        }
        Ok(())
    };
    if !resuming {
        progress.initial_eval = eval_point(0, &p, &mut log, emit)?;
        progress.last_eval = progress.initial_eval;
        progress.last_loss = f64::NAN;
        consider(0, progress.initial_eval, &mut progress, &p, &mut log, emit)?;
        live_map(0, &p, emit)?;
    }

    let lengths = cfg
        .group_by_length
        .then(|| p.train.iter().map(|e| e.ids.len()).collect());
    let mut order = DataOrder::new(cfg.seed, p.train.len(), lengths);
    for _ in 0..progress.examples_drawn / cfg.batch_size.max(1) {
        order.next_batch(cfg.batch_size);
    }
    let save_checkpoint = |progress: &mut checkpoint::Progress,
                           opt: &optim::AdamW,
                           method: &dyn Method|
     -> Result<()> {
        let Some(dir) = out_dir else {
            return Ok(());
        };
        progress.elapsed_seconds = elapsed();
        progress.peak_rss_bytes = progress.peak_rss_bytes.max(peak_rss_bytes());
        let mut tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (format!("param/{n}"), v.as_tensor().clone()))
            .collect();
        tensors.extend(opt.state());
        tensors.extend(
            method
                .state()?
                .into_iter()
                .map(|(n, t)| (format!("method/{n}"), t)),
        );
        checkpoint::save(dir, progress, &tensors)
    };
    let mut stopped_early = false;
    let mut ended_early = None;
    for step in progress.step + 1..=cfg.steps {
        match halt() {
            Halt::No => {}
            Halt::Pause => {
                stopped_early = true;
                break;
            }
            Halt::Finish => {
                ended_early = Some(EndedEarly::User);
                break;
            }
        }
        let t0 = Instant::now();
        let picked: Vec<&Encoded> = order
            .next_batch(cfg.batch_size)
            .into_iter()
            .map(|i| &p.train[i])
            .collect();
        let lr = schedule::lr_at(step, cfg.steps, o);
        // The step runs on a thread of candle's CPU pool, so its matmuls and parallel
        // kernels share work with the pool's other threads directly. Called from this
        // thread instead, each of them queued a job into the pool, woke a worker with a
        // system call and slept until it finished: 4-7 % of a SmolLM2 step's samples sat
        // in the kernel's wake-up path, with a third busy thread on two cores.
        let (loss_value, real_tokens, allocation) = p.device.with_context(|| -> Result<_> {
            let hooks = p.method.hooks(true)?;
            let (loss, real_tokens) = batch_loss(&p.model, &hooks, &picked, p.pad, &p.device)?;
            // The curve shows the task loss; a method's regulariser (AdaLoRA) only joins
            // the objective, so every method's curve measures the same thing.
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            ensure_finite(loss_value, step, o.lr)?;
            let objective = match p.method.extra_loss()? {
                Some(extra) => (&loss + extra)?,
                None => loss,
            };
            opt.set_learning_rate(lr);
            let mut grads = objective.backward()?;
            clip_grad_norm(&mut grads, &plain_vars, o.max_grad_norm)?;
            opt.step(&grads)?;
            let allocation = p.method.after_step(step, &grads)?;
            Ok((loss_value, real_tokens, allocation))
        })?;
        if let Some(allocation) = allocation {
            log.write(
                "ranks",
                &serde_json::json!({ "step": step, "allocation": &allocation }),
            )?;
            emit(Event::Ranks {
                run,
                step,
                allocation,
            });
        }
        progress.train_seconds += t0.elapsed().as_secs_f64();
        progress.tokens_seen += real_tokens;
        progress.examples_drawn += cfg.batch_size;
        progress.last_loss = loss_value;
        progress.step = step;
        let point = StepPoint {
            run,
            step,
            loss: loss_value,
            lr,
            tokens_per_second: progress.tokens_seen as f64 / progress.train_seconds.max(1e-9),
            tokens_seen: progress.tokens_seen,
            elapsed_s: elapsed(),
        };
        log.write("step", &point)?;
        emit(Event::Step(point));
        if step % cfg.eval_every == 0 || step == cfg.steps {
            progress.last_eval = eval_point(step, &p, &mut log, emit)?;
            progress.last_eval_step = step;
            live_map(step, &p, emit)?;
            if consider(step, progress.last_eval, &mut progress, &p, &mut log, emit)? {
                ended_early = Some(EndedEarly::Patience);
                emit(Event::Notice {
                    run,
                    text: format!(
                        "early stopping: {} evaluations without improving {}; the best, at step {}, is kept in best/",
                        progress.early.evals_since_best,
                        cfg.early_stopping.map_or("eval_loss", |e| e.monitor.name()),
                        progress.early.best.map_or(0, |b| b.step)
                    ),
                });
                break;
            }
        }
        if cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < cfg.steps {
            save_checkpoint(&mut progress, &opt, p.method.as_ref())?;
        }
    }
    if progress.step > 0 && progress.last_eval_step != progress.step {
        progress.last_eval = eval_point(progress.step, &p, &mut log, emit)?;
        progress.last_eval_step = progress.step;
        live_map(progress.step, &p, emit)?;
        consider(
            progress.step,
            progress.last_eval,
            &mut progress,
            &p,
            &mut log,
            emit,
        )?;
    }
    // A stopped run keeps a checkpoint at the step it reached, so it can go on later.
    if stopped_early && progress.step > 0 {
        save_checkpoint(&mut progress, &opt, p.method.as_ref())?;
    }

    let summary = Summary {
        method: cfg.method.kind().into(),
        trainable_params: trainable,
        total_params: p.total_params,
        steps: progress.step,
        stopped_early,
        initial_eval_loss: progress.initial_eval.0,
        final_train_loss: progress.last_loss,
        final_eval_loss: progress.last_eval.0,
        metric_name: p.metric.name().into(),
        initial_metric_value: progress.initial_eval.1,
        metric_value: progress.last_eval.1,
        chance: p.eval.chance_level().map(|level| Chance {
            level,
            examples: p.eval.len(),
        }),
        tokens_per_second: progress.tokens_seen as f64 / progress.train_seconds.max(1e-9),
        peak_rss_bytes: progress.peak_rss_bytes.max(peak_rss_bytes()),
        wall_seconds: elapsed(),
        best: progress.early.best,
        ended_early,
    };
    if let Some(dir) = out_dir {
        export_to(&p, &dir.join("adapter"), None)?;
        // Where the update went, measured from the adapter just written against the base
        // weights (read again: the loaded model's projections carry the adapter). A map
        // that cannot be measured leaves the run whole and says why.
        let map = ModelFiles::open(&cfg.model)
            .and_then(|files| crate::peft::update_map::measure(&files, &dir.join("adapter")))
            .map(|map| map.with_activations(&activation_cells.borrow()));
        match map {
            Ok(map) => save_json(&dir.join(UPDATE_MAP_FILE), &serde_json::to_value(&map)?)?,
            Err(e) => emit(Event::Notice {
                run,
                text: format!("no update map: {}", crate::describe(&e)),
            }),
        }
        save_json(&dir.join("summary.json"), &serde_json::to_value(&summary)?)?;
        if !stopped_early {
            checkpoint::remove(dir)?;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_loss_stops_the_run_with_its_step() {
        assert!(ensure_finite(2.5, 3, 1e-3).is_ok());
        let e = ensure_finite(f64::NAN, 17, 10.0).unwrap_err().to_string();
        assert!(
            e.contains("NaN") && e.contains("step 17") && e.contains("10"),
            "{e}"
        );
        assert!(ensure_finite(f64::INFINITY, 1, 1.0).is_err());
    }

    #[test]
    fn cuda_without_the_feature_is_refused_with_a_way_out() {
        if !candle_core::utils::cuda_is_available() {
            let e = device_for("cuda:0").unwrap_err().to_string();
            assert!(e.contains("cpu"), "{e}");
        }
        assert!(device_for("tpu").is_err());
        assert!(device_for("cpu").is_ok());
    }
}
