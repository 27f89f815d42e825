//! `peft-workbench import-run`: a run trained elsewhere — by transformers' `Trainer`
//! (`trainer_state.json`), by LLaMA-Factory (`trainer_log.jsonl`), or by one of our recipes
//! (`recipe/output/`) — turned into a run folder of ours, so its curves overlay the runs
//! trained here and its adapter works in the playground, export and merge.
//!
//! What the outside log does not say stays unknown (NaN in `summary.json`, written as
//! `null`, shown blank): the initial evaluation, the metric, peak memory, tokens per second.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::files::{ensure_new_folder, save_json, write_dir_atomic};
use crate::train::Summary;

/// One logged training step of an outside run; what its log leaves out is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutsideStep {
    pub step: usize,
    pub loss: f64,
    pub lr: Option<f64>,
    /// Seconds since the start.
    pub elapsed_s: Option<f64>,
    /// Input tokens seen so far (the Trainer's `num_input_tokens_seen`, LLaMA-Factory's
    /// `total_tokens`): the x axis by tokens.
    pub tokens_seen: Option<f64>,
}

/// The curves of an outside run: its training steps, and (step, evaluation loss).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OutsideLog {
    pub steps: Vec<OutsideStep>,
    pub evals: Vec<(usize, f64)>,
    pub runtime_s: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub batch_size: Option<usize>,
    /// What wrote it, for the run's note.
    pub source: &'static str,
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// `trainer_state.json` as transformers' Trainer (and LLaMA-Factory, and our recipes) write
/// it: `log_history` holds `loss` entries and `eval_loss` entries by `step`.
pub fn read_trainer_state(path: &Path) -> Result<OutsideLog> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let state: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let history = state
        .get("log_history")
        .and_then(Value::as_array)
        .with_context(|| format!("{} has no log_history list", path.display()))?;
    let mut log = OutsideLog {
        source: "transformers Trainer (trainer_state.json)",
        batch_size: state
            .get("train_batch_size")
            .and_then(Value::as_u64)
            .map(|b| b as usize),
        tokens_per_second: state.get("tokens_per_second").and_then(number),
        ..OutsideLog::default()
    };
    for (i, e) in history.iter().enumerate() {
        let at = || format!("{} log_history[{i}]", path.display());
        let step = || -> Result<usize> {
            e.get("step")
                .and_then(Value::as_u64)
                .map(|s| s as usize)
                .with_context(|| format!("{}: an entry without a whole `step`", at()))
        };
        if let Some(loss) = e.get("loss") {
            let loss = number(loss).with_context(|| format!("{}: `loss` is not a number", at()))?;
            log.steps.push(OutsideStep {
                step: step()?,
                loss,
                lr: e.get("learning_rate").and_then(number),
                elapsed_s: None,
                tokens_seen: e.get("num_input_tokens_seen").and_then(number),
            });
        } else if let Some(loss) = e.get("eval_loss") {
            let loss =
                number(loss).with_context(|| format!("{}: `eval_loss` is not a number", at()))?;
            log.evals.push((step()?, loss));
        } else if let Some(t) = e.get("train_runtime").and_then(number) {
            log.runtime_s = Some(t);
        }
    }
    log.runtime_s = log
        .runtime_s
        .or_else(|| state.get("train_runtime").and_then(number));
    Ok(log)
}

/// `H:MM:SS` (or `D day(s), H:MM:SS`) as Python's `timedelta` prints it, in seconds.
fn timedelta_seconds(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once(", ") {
        Some((d, c)) => (d.split_whitespace().next()?.parse::<f64>().ok()?, c),
        None => (0.0, text),
    };
    let parts: Vec<f64> = clock
        .split(':')
        .map(|p| p.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else { return None };
    Some(days * 86400.0 + h * 3600.0 + m * 60.0 + s)
}

/// LLaMA-Factory's `trainer_log.jsonl`: one line per logging step (`current_steps`, `loss`,
/// `lr`, `elapsed_time`), evaluation lines with `eval_loss`.
pub fn read_trainer_log(path: &Path) -> Result<OutsideLog> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut log = OutsideLog {
        source: "LLaMA-Factory (trainer_log.jsonl)",
        ..OutsideLog::default()
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let e: Value = serde_json::from_str(line).with_context(|| format!("{at}: not JSON"))?;
        let step =
            e.get("current_steps")
                .and_then(Value::as_u64)
                .with_context(|| format!("{at}: no whole `current_steps`"))? as usize;
        let elapsed = e
            .get("elapsed_time")
            .and_then(Value::as_str)
            .and_then(timedelta_seconds);
        if let Some(loss) = e.get("eval_loss").filter(|v| !v.is_null()) {
            let loss =
                number(loss).with_context(|| format!("{at}: `eval_loss` is not a number"))?;
            log.evals.push((step, loss));
        }
        if let Some(loss) = e.get("loss").filter(|v| !v.is_null()) {
            let loss = number(loss).with_context(|| format!("{at}: `loss` is not a number"))?;
            log.steps.push(OutsideStep {
                step,
                loss,
                lr: e.get("lr").and_then(number),
                elapsed_s: elapsed,
                tokens_seen: e.get("total_tokens").and_then(number),
            });
        }
        if let Some(t) = e.get("throughput").and_then(number) {
            log.tokens_per_second = Some(t);
        }
        log.runtime_s = elapsed.or(log.runtime_s);
    }
    if log.steps.is_empty() {
        bail!("{} holds no training loss", path.display());
    }
    Ok(log)
}

/// The outside run's log: `trainer_state.json` where there is one (the Trainer writes it
/// at the end, LLaMA-Factory too), else LLaMA-Factory's `trainer_log.jsonl`. Where both
/// are, the state's steps take the clock, tokens and throughput of LLaMA-Factory's lines
/// (the Trainer's log history has no time per step).
pub fn read_log(dir: &Path) -> Result<OutsideLog> {
    let state = dir.join("trainer_state.json");
    let factory = dir.join("trainer_log.jsonl");
    let mut log = if state.is_file() {
        let mut log = read_trainer_state(&state)?;
        if factory.is_file() {
            let lines = read_trainer_log(&factory)?;
            let by_step: std::collections::HashMap<usize, &OutsideStep> =
                lines.steps.iter().map(|s| (s.step, s)).collect();
            for s in &mut log.steps {
                if let Some(line) = by_step.get(&s.step) {
                    s.elapsed_s = s.elapsed_s.or(line.elapsed_s);
                    s.tokens_seen = s.tokens_seen.or(line.tokens_seen);
                }
            }
            log.tokens_per_second = log.tokens_per_second.or(lines.tokens_per_second);
            log.source = "LLaMA-Factory (trainer_state.json, trainer_log.jsonl)";
        }
        log
    } else if factory.is_file() {
        read_trainer_log(&factory)?
    } else {
        bail!(
            "{} holds neither trainer_state.json (transformers' Trainer) nor trainer_log.jsonl (LLaMA-Factory)",
            dir.display()
        );
    };
    if log.steps.is_empty() {
        bail!("{}: the log holds no training loss", dir.display());
    }
    if log.runtime_s.is_none()
        && let Ok(text) = std::fs::read_to_string(dir.join("all_results.json"))
        && let Ok(all) = serde_json::from_str::<Value>(&text)
    {
        log.runtime_s = all.get("train_runtime").and_then(number);
    }
    Ok(log)
}

/// The PEFT adapter of an outside run: in `adapter/` (our recipes) or the folder itself
/// (the Trainer's and LLaMA-Factory's `output_dir`).
pub fn find_adapter(dir: &Path) -> Option<PathBuf> {
    [dir.join("adapter"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("adapter_config.json").is_file() || d.join(OUR_METHOD_FILE).is_file())
}

/// Our own adapter format's description (methods PEFT lacks: a bottleneck-adapter
/// recipe's output is written in it).
const OUR_METHOD_FILE: &str = "method.json";

/// The run's configuration: our recipe's own (`../recipe.json` beside `output/`), else what
/// the adapter's `adapter_config.json` and the log say, the rest left at our defaults.
fn config_for(dir: &Path, adapter: &Path, log: &OutsideLog) -> Result<RunConfig> {
    if let Some(recipe) = dir.parent().map(|p| p.join("recipe.json"))
        && let Ok(text) = std::fs::read_to_string(&recipe)
    {
        let r: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", recipe.display()))?;
        let mut cfg: RunConfig = serde_json::from_value(r["config"].clone())
            .with_context(|| format!("{}: its `config` is not a run", recipe.display()))?;
        // The run may name its model relative to where it was trained; the recipe names a
        // model folder by its absolute path, which holds wherever the import runs.
        if let Some(base) = r["base_model"].as_str().map(Path::new)
            && cfg.model != "builtin"
            && base.is_absolute()
            && base.is_dir()
        {
            cfg.model = base.display().to_string();
        }
        return Ok(cfg);
    }
    if let Ok(text) = std::fs::read_to_string(adapter.join(OUR_METHOD_FILE)) {
        let file = adapter.join(OUR_METHOD_FILE);
        let m: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        return outside_config(&m["method"], m["base_model_name_or_path"].as_str(), log);
    }
    let file = adapter.join("adapter_config.json");
    let a: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    let strings = |key: &str| -> Vec<String> {
        match &a[key] {
            Value::Array(v) => v
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let method = match a["peft_type"].as_str().unwrap_or("") {
        "LORA" => {
            let kind = if a["use_dora"].as_bool() == Some(true) {
                "dora"
            } else {
                "lora"
            };
            serde_json::json!({
                "kind": kind,
                "rank": a["r"].as_u64().unwrap_or(8),
                "alpha": a["lora_alpha"].as_f64().unwrap_or(8.0),
                "dropout": a["lora_dropout"].as_f64().unwrap_or(0.0),
                "target_modules": strings("target_modules"),
                "use_rslora": a["use_rslora"].as_bool().unwrap_or(false),
            })
        }
        "IA3" => serde_json::json!({
            "kind": "ia3",
            "target_modules": strings("target_modules"),
            "feedforward_modules": strings("feedforward_modules"),
        }),
        "PROMPT_TUNING" => serde_json::json!({
            "kind": "prompt-tuning",
            "num_virtual_tokens": a["num_virtual_tokens"].as_u64().unwrap_or(10),
        }),
        "PREFIX_TUNING" => serde_json::json!({
            "kind": if a["prefix_projection"].as_bool() == Some(true) { "prefix-tuning" } else { "p-tuning-v2" },
            "num_virtual_tokens": a["num_virtual_tokens"].as_u64().unwrap_or(10),
        }),
        "P_TUNING" => serde_json::json!({
            "kind": "p-tuning",
            "num_virtual_tokens": a["num_virtual_tokens"].as_u64().unwrap_or(10),
        }),
        other => bail!(
            "{}: peft_type {other:?} is not one the workbench imports (LORA, IA3, PROMPT_TUNING, PREFIX_TUNING, P_TUNING)",
            file.display()
        ),
    };
    outside_config(&method, a["base_model_name_or_path"].as_str(), log)
}

/// The dataset an outside run's configuration names: its log does not say which it was.
const OUTSIDE_DATA: &str = "imported";

/// A run configuration for an outside run: its method, base model, and the peak rate,
/// steps and batch its log shows; the rest at our defaults.
fn outside_config(method: &Value, base_model: Option<&str>, log: &OutsideLog) -> Result<RunConfig> {
    let lr = log.steps.iter().filter_map(|s| s.lr).fold(0.0f64, f64::max);
    let steps = log.steps.last().map_or(1, |s| s.step).max(1);
    let mut table = toml::Table::new();
    // Our own exports name the built-in model so.
    let model = match base_model {
        Some(crate::train::BUILTIN_EXPORT_NAME) => "builtin",
        Some(name) => name,
        None => "unknown",
    };
    table.insert("model".into(), model.into());
    table.insert("dataset".into(), OUTSIDE_DATA.into());
    table.insert("steps".into(), (steps as i64).into());
    table.insert(
        "batch_size".into(),
        (log.batch_size.unwrap_or(1).max(1) as i64).into(),
    );
    let method: toml::Value = serde_json::from_value(method.clone())?;
    table.insert("method".into(), method);
    if lr > 0.0 {
        let mut o = toml::Table::new();
        o.insert("lr".into(), lr.into());
        table.insert("optimizer".into(), o.into());
    }
    Ok(RunConfig::from_toml_with(&toml::to_string(&table)?, &[])?)
}

/// A new run folder in `runs_dir` for the outside run in `dir`: sortable by time like the
/// folders of runs trained here, named by the outside folder.
pub fn default_folder(runs_dir: &Path, dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    runs_dir.join(format!("{secs}-imported-{name}"))
}

/// What `import` made of the outside run.
#[derive(Debug, Clone)]
pub struct Imported {
    pub out: PathBuf,
    pub steps: usize,
    pub evals: usize,
    pub source: &'static str,
    /// The adapter's metric, measured here on the run's evaluation examples.
    pub measured: Option<crate::train::AdapterEvaluation>,
    /// Why it was not measured, where it was asked for.
    pub not_measured: Option<String>,
}

/// Turns the outside run in `dir` into a run folder of ours at `out` (new; written whole or
/// not at all): `config.toml`, `metrics.jsonl`, `summary.json`, `adapter/`, and a note
/// saying where it came from.
///
/// With `measure` (its stop flag), an outside run whose evaluation examples are known — a
/// recipe's output, which keeps its run's configuration — has its adapter evaluated here
/// as our runs are at their end, so its task metric stands beside theirs (the table, the
/// trade-off view); its log holds only losses. When that cannot be done (the base model is
/// not on this machine, say) the metric stays blank and `not_measured` says why.
pub fn import(
    dir: &Path,
    out: &Path,
    measure: Option<&(dyn Fn() -> bool + Sync)>,
) -> Result<Imported> {
    ensure_new_folder(out, "")?;
    let log = read_log(dir)?;
    let adapter = find_adapter(dir).with_context(|| {
        format!(
            "{} holds no adapter (PEFT's adapter_config.json, or the workbench's method.json, there or in adapter/)",
            dir.display()
        )
    })?;
    let cfg = config_for(dir, &adapter, &log)?;
    // The trained values: the adapter's tensors.
    let weights = ["adapter_model.safetensors", "model.safetensors"]
        .iter()
        .map(|f| adapter.join(f))
        .find(|p| p.is_file())
        .with_context(|| format!("{} has no adapter_model.safetensors", adapter.display()))?;
    let trainable: usize = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
        .with_context(|| format!("cannot read {}", weights.display()))?
        .values()
        .map(|t| t.elem_count())
        .sum();
    let total = crate::models::ModelFiles::open(&cfg.model)
        .map(|m| m.config.param_count() + trainable)
        .unwrap_or(0);
    let (measured, not_measured) = match measure {
        None => (None, None),
        Some(_) if cfg.dataset == OUTSIDE_DATA => (
            None,
            Some("its log does not name its evaluation examples".to_string()),
        ),
        Some(stop) => match crate::train::measure_adapter(&cfg, &adapter, stop) {
            Ok(m) => (Some(m), None),
            Err(e) if e.is::<crate::Stopped>() => return Err(e),
            Err(e) => (None, Some(crate::describe(&e))),
        },
    };
    let nan = f64::NAN;
    let last_step = log.steps.last().map_or(0, |s| s.step);
    let summary = Summary {
        method: cfg.method.kind().into(),
        trainable_params: trainable,
        total_params: total,
        steps: last_step,
        stopped_early: false,
        initial_eval_loss: log.evals.first().filter(|e| e.0 == 0).map_or(nan, |e| e.1),
        final_train_loss: log.steps.last().map_or(nan, |s| s.loss),
        final_eval_loss: log
            .evals
            .last()
            .map(|e| e.1)
            .or(measured.as_ref().map(|m| m.loss))
            .unwrap_or(nan),
        metric_name: measured
            .as_ref()
            .map_or("eval_loss", |m| m.metric_name)
            .into(),
        initial_metric_value: nan,
        metric_value: measured.as_ref().map_or(nan, |m| m.metric),
        chance: measured.as_ref().and_then(|m| m.chance),
        tokens_per_second: log.tokens_per_second.unwrap_or(nan),
        peak_rss_bytes: 0,
        wall_seconds: log.runtime_s.unwrap_or(nan),
        best: None,
        ended_early: None,
    };
    write_dir_atomic(out, |d| {
        std::fs::write(d.join("config.toml"), cfg.to_toml())?;
        let mut metrics = std::io::BufWriter::new(std::fs::File::create(d.join("metrics.jsonl"))?);
        let mut line = |v: Value| -> Result<()> {
            serde_json::to_writer(&mut metrics, &v)?;
            metrics.write_all(b"\n")?;
            Ok(())
        };
        let metric_at = |step: usize| match &measured {
            Some(m) if step == last_step => Value::from(m.metric),
            _ => Value::Null,
        };
        for &(step, loss) in log.evals.iter().filter(|e| e.0 == 0) {
            line(
                serde_json::json!({"type": "eval", "step": step, "loss": loss, "metric": metric_at(step)}),
            )?;
        }
        let mut evals = log.evals.iter().filter(|e| e.0 > 0).peekable();
        for s in &log.steps {
            let step = s.step;
            line(serde_json::json!({
                "type": "step", "step": step, "loss": s.loss, "lr": s.lr,
                "elapsed_s": s.elapsed_s, "tokens_seen": s.tokens_seen,
                "tokens_per_second": log.tokens_per_second,
            }))?;
            while let Some(&&(s, l)) = evals.peek()
                && s <= step
            {
                line(
                    serde_json::json!({"type": "eval", "step": s, "loss": l, "metric": metric_at(s)}),
                )?;
                evals.next();
            }
        }
        for &(s, l) in evals {
            line(
                serde_json::json!({"type": "eval", "step": s, "loss": l, "metric": metric_at(s)}),
            )?;
        }
        // The metric measured here, as a run of ours ends: at its last step, on the log's
        // own evaluation there if it has one.
        if let Some(m) = &measured
            && !log.evals.iter().any(|e| e.0 == last_step)
        {
            line(serde_json::json!({
                "type": "eval", "step": last_step, "loss": m.loss, "metric": m.metric,
            }))?;
        }
        metrics.flush()?;
        drop(metrics);
        save_json(&d.join("summary.json"), &serde_json::to_value(&summary)?)?;
        let copy = d.join("adapter");
        std::fs::create_dir(&copy)?;
        for entry in std::fs::read_dir(&adapter)? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = name.to_str().is_some_and(|n| {
                n.starts_with("adapter_") || n.ends_with(".json") || n == "model.safetensors"
            });
            if entry.file_type()?.is_file() && keep {
                std::fs::copy(entry.path(), copy.join(&name))?;
            }
        }
        let mut note = format!(
            "imported from {} ({}): what its log does not say is left blank",
            std::path::absolute(dir)?.display(),
            log.source
        );
        if let Some(m) = &measured {
            note.push_str(&format!(
                "; its {} was measured here on the run's evaluation examples",
                m.metric_name
            ));
        }
        save_json(
            &d.join("notes.json"),
            &serde_json::json!({ "tags": ["imported"], "note": note }),
        )?;
        Ok(())
    })?;
    Ok(Imported {
        out: out.to_path_buf(),
        steps: log.steps.len(),
        evals: log.evals.len(),
        source: log.source,
        measured,
        not_measured,
    })
}
