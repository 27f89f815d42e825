//! `RunConfig`: the single description of a run. The GUI, `presets/*.toml` and the CLI all
//! build one; a run is reproducible from its saved `config.toml` and seed.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::peft::MethodConfig;

/// Everything a training run needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `"builtin"` or a path to a Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[serde(default = "default_model")]
    pub model: String,
    /// `"builtin:<task>"` or a path to a `.jsonl` / `.csv` file.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// Optional separate evaluation file; without it a user dataset holds out a tenth for evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_dataset: Option<String>,
    /// The form of the dataset's rows (`alpaca`, `sharegpt`, `messages`,
    /// `prompt_completion`, `text`, `text_label`); unset, each row's form is read from its
    /// fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_format: Option<crate::data::DatasetFormat>,
    /// Optimizer steps to run.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Examples per optimizer step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longer examples are cut to this many tokens.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// Evaluate every this many steps (and at the start and the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// At most this many evaluation examples are scored at each evaluation.
    #[serde(default = "default_eval_examples")]
    pub eval_examples: usize,
    /// Save a checkpoint (trained tensors, optimizer moments, progress) every this many
    /// steps, so a stopped or killed run can be resumed; 0 saves only when a run is stopped.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Draw each batch from examples of similar length (as Hugging Face's Trainer does with
    /// `group_by_length`): shuffled pools of 50 batches are sorted by length and cut into
    /// batches, and the batches are shuffled. Less padding, so more steps in the same time;
    /// an epoch's last few examples that do not fill a batch wait for the next epoch's shuffle.
    #[serde(default)]
    pub group_by_length: bool,
    /// For conversations: learn only the last assistant turn of each (the earlier ones are
    /// context), instead of every assistant turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_turn_only: bool,
    /// Seed of the data order and of the method's initialisation.
    #[serde(default)]
    pub seed: u64,
    /// `"cpu"`, or `"cuda:N"` when built with the `cuda` feature.
    #[serde(default = "default_device")]
    pub device: String,
    /// Number format of the training step; anything but f32 needs a CUDA device.
    #[serde(default)]
    pub precision: Precision,
    /// The experiment the run belongs to (a comparison is one; runs started from the form
    /// join the form's): the window groups, filters and shows runs by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The remote machine the run trained on, once it has come home (None: this one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Stop when the evaluations stop improving, keeping the best evaluation's trained
    /// tensors in `best/` beside `adapter/`. Unset: the run goes to `steps`, keeping no best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// The fine-tuning method and its own parameters.
    #[serde(default)]
    pub method: MethodConfig,
    /// AdamW and its learning-rate schedule.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
}

/// A learning rate as people write it: three significant digits at most, no trailing zeros
/// (`1.5e-3`, `3e-3`; a rate nudged to 2.9999999999999997e-3 reads `3e-3`). One digit was
/// not enough: a table showed the comparison's 1.5e-3 as `2e-3`.
pub fn rate_text(lr: f64) -> String {
    let text = format!("{lr:.2e}");
    match text.split_once('e') {
        Some((mantissa, exp)) if mantissa.contains('.') => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exp}")
        }
        _ => text,
    }
}

/// AdamW with warm-up and a decay schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached after the warm-up.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Decoupled weight decay (AdamW), applied to trainable tensors only.
    #[serde(default)]
    pub weight_decay: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    #[serde(default = "default_warmup")]
    pub warmup_steps: usize,
    /// How the learning rate falls after the warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Gradients whose global L2 norm exceeds this are scaled down to it; 0 turns clipping off.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
}

/// The number format a run computes in. Under bf16 and f16 the frozen base weights are
/// stored in it and every projection's matrix product runs in it (the bulk of the work and
/// of the memory); trained parameters keep f32 master copies, and the residual stream,
/// normalisations, softmax and loss stay f32, so only the products lose precision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Whether a run on `device` (`cpu`, `cuda:N`) may compute in this format: f32
    /// anywhere, bf16/f16 on CUDA only (candle's CPU products in them are slower than f32).
    pub fn runs_on(self, device: &str) -> bool {
        self == Precision::F32 || device.starts_with("cuda")
    }

    /// The dtype the base weights are stored and multiplied in.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::Bf16 => candle_core::DType::BF16,
            Precision::F16 => candle_core::DType::F16,
        }
    }
}

/// Learning-rate decay after the warm-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from `lr` down to 0 at the last step.
    #[default]
    Cosine,
    /// A straight line from `lr` down to 0 at the last step.
    Linear,
    /// `lr` throughout.
    Constant,
}

impl Schedule {
    pub const ALL: [Schedule; 3] = [Schedule::Cosine, Schedule::Linear, Schedule::Constant];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Cosine => "cosine",
            Schedule::Linear => "linear",
            Schedule::Constant => "constant",
        }
    }
}

fn default_model() -> String {
    "builtin".into()
}
fn default_dataset() -> String {
    "builtin:reviews-zh".into()
}
fn default_steps() -> usize {
    300
}
fn default_batch_size() -> usize {
    8
}
fn default_max_seq_len() -> usize {
    128
}
fn default_eval_every() -> usize {
    25
}
fn default_eval_examples() -> usize {
    128
}
fn default_checkpoint_every() -> usize {
    100
}
fn default_device() -> String {
    "cpu".into()
}
fn default_lr() -> f64 {
    1e-3
}
fn default_warmup() -> usize {
    10
}
fn default_clip() -> f64 {
    1.0
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            weight_decay: 0.0,
            warmup_steps: default_warmup(),
            schedule: Schedule::default(),
            max_grad_norm: default_clip(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            model: default_model(),
            dataset: default_dataset(),
            eval_dataset: None,
            dataset_format: None,
            steps: default_steps(),
            batch_size: default_batch_size(),
            max_seq_len: default_max_seq_len(),
            eval_every: default_eval_every(),
            eval_examples: default_eval_examples(),
            checkpoint_every: default_checkpoint_every(),
            group_by_length: false,
            last_turn_only: false,
            seed: 0,
            device: default_device(),
            precision: Precision::default(),
            experiment: None,
            machine: None,
            early_stopping: None,
            method: MethodConfig::default(),
            optimizer: OptimizerConfig::default(),
        }
    }
}

/// The keys of `configs` side by side: each key any of them has, its value in each (None:
/// that config leaves it out), and whether they differ.
pub fn side_by_side(configs: &[&RunConfig]) -> Vec<(String, Vec<Option<String>>, bool)> {
    let flat: Vec<_> = configs.iter().map(|c| c.flat_keys()).collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let values: Vec<Option<String>> = flat.iter().map(|f| f.get(k).cloned()).collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            (k.clone(), values, differs)
        })
        .collect()
}

/// `[early_stopping]`: what is watched and how long a run waits for it to improve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Evaluations in a row without improvement after which the run stops.
    pub patience: usize,
    /// An evaluation improves on the best only by more than this (in the monitored
    /// quantity's own units).
    #[serde(default)]
    pub min_delta: f64,
    #[serde(default)]
    pub monitor: Monitor,
}

/// The quantity early stopping watches: the evaluation loss (lower is better) or the task's
/// metric (in its own direction: accuracy up, perplexity down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    #[default]
    EvalLoss,
    Metric,
}

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::EvalLoss => "eval_loss",
            Monitor::Metric => "metric",
        }
    }
}

/// A configuration that cannot describe a run, with the offending key named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("invalid value for `{key}`: {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

impl RunConfig {
    /// Reads a TOML file and applies `key=value` overrides (dotted paths such as `method.rank=4`).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_with(&text, overrides)
    }

    /// Parses TOML text, applies overrides, and validates the result.
    pub fn from_toml_with(text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        // Re-read as text so that errors carry a position, which names the key.
        let doc = toml::to_string(&table).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let cfg: RunConfig = toml::from_str(&doc).map_err(|e| describe_error(&doc, &e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML, as written to a run's `config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("RunConfig always serialises")
    }

    /// Every key of the configuration with its value as TOML writes it, nested tables
    /// flattened (`optimizer.lr`, `method.target_modules`), in key order. Keys a config
    /// leaves out (an unset `eval_dataset`) are absent.
    pub fn flat_keys(&self) -> std::collections::BTreeMap<String, String> {
        fn walk(
            prefix: &str,
            v: &toml::Value,
            out: &mut std::collections::BTreeMap<String, String>,
        ) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        let value = toml::Value::try_from(self).expect("RunConfig always serialises");
        walk("", &value, &mut out);
        out
    }

    /// Checks every value a run depends on; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.steps == 0 {
            return Err(invalid("steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if self.max_seq_len < 2 {
            return Err(invalid("max_seq_len", "must be at least 2"));
        }
        if self.eval_every == 0 {
            return Err(invalid("eval_every", "must be at least 1"));
        }
        if self.eval_examples == 0 {
            return Err(invalid("eval_examples", "must be at least 1"));
        }
        if let Some(es) = &self.early_stopping {
            if es.patience == 0 {
                return Err(invalid(
                    "early_stopping.patience",
                    "must be at least 1 (evaluations without improvement)",
                ));
            }
            if !es.min_delta.is_finite() || es.min_delta < 0.0 {
                return Err(invalid(
                    "early_stopping.min_delta",
                    "must be a finite number >= 0",
                ));
            }
        }
        let o = &self.optimizer;
        if !o.lr.is_finite() || o.lr <= 0.0 {
            return Err(invalid(
                "optimizer.lr",
                format!("{} is not a positive finite number", o.lr),
            ));
        }
        if !o.weight_decay.is_finite() || o.weight_decay < 0.0 {
            return Err(invalid(
                "optimizer.weight_decay",
                "must be a finite number >= 0",
            ));
        }
        if !o.max_grad_norm.is_finite() || o.max_grad_norm < 0.0 {
            return Err(invalid(
                "optimizer.max_grad_norm",
                "must be a finite number >= 0",
            ));
        }
        for (key, b) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(invalid(key, "must be in [0, 1)"));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(invalid("optimizer.eps", "must be a positive finite number"));
        }
        if self.device != "cpu" && !self.device.starts_with("cuda") {
            return Err(invalid(
                "device",
                format!("`{}` is neither \"cpu\" nor \"cuda:N\"", self.device),
            ));
        }
        if !self.precision.runs_on(&self.device) {
            return Err(invalid(
                "precision",
                format!(
                    "{} trains on a CUDA device only; on the CPU training is f32 (set precision = \"f32\" or device = \"cuda:0\")",
                    self.precision.name()
                ),
            ));
        }
        self.method
            .validate()
            .map_err(|(key, why)| invalid(&format!("method.{key}"), why))?;
        if let crate::peft::MethodConfig::Adalora(c) = &self.method {
            c.validate_steps(self.steps)
                .map_err(|(key, why)| invalid(&format!("method.{key}"), why))?;
        }
        Ok(())
    }
}

/// A one-line message naming the dotted key an error points at.
fn describe_error(doc: &str, e: &toml::de::Error) -> ConfigError {
    let Some(span) = e.span() else {
        return ConfigError::Parse(e.message().to_string());
    };
    let before = &doc[..span.start.min(doc.len())];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = doc[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')));
    let path = match section {
        Some(sec) if !key.is_empty() && !key.starts_with('[') => format!("{sec}.{key}"),
        _ => key.to_string(),
    };
    if path.is_empty() {
        return ConfigError::Parse(e.message().to_string());
    }
    invalid(&path, e.message())
}

/// Sets `a.b.c = value` in a TOML table. The value is read as TOML (numbers, booleans,
/// arrays) and falls back to a plain string, so `dataset=path/to/file.jsonl` needs no quotes.
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw) = item.split_once('=').ok_or_else(|| {
        ConfigError::Parse(format!("override `{item}` is not of the form key=value"))
    })?;
    let key = key.trim();
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Parse(format!(
            "override key `{key}` is empty or malformed"
        )));
    }
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| invalid(key, format!("`{part}` is not a table")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// What the `gui` command was asked for besides the runs folder (no window needed to hold it).
#[derive(Debug, Default)]
pub struct WindowOptions {
    /// A run to start at launch (`gui --start PRESET`).
    pub start: Option<RunConfig>,
    /// Record frame times while runs train, and write their summary here at exit.
    pub frame_log: Option<std::path::PathBuf>,
    /// Close the window after this long.
    pub exit_after: Option<std::time::Duration>,
}

#[cfg(test)]
mod tests {

    #[test]
    fn side_by_side_lists_exactly_the_keys_that_differ() {
        let a = RunConfig::default();
        let mut b = RunConfig::default();
        b.optimizer.lr = 2e-3;
        b.seed = 7;
        b.eval_dataset = Some("eval.jsonl".into());
        let rows = side_by_side(&[&a, &b]);
        let differing: Vec<&str> = rows.iter().filter(|r| r.2).map(|r| r.0.as_str()).collect();
        assert_eq!(differing, ["eval_dataset", "optimizer.lr", "seed"]);
        let lr = rows.iter().find(|r| r.0 == "optimizer.lr").unwrap();
        assert_eq!(
            lr.1,
            [Some(a.optimizer.lr.to_string()), Some("0.002".into())]
        );
        let ed = rows.iter().find(|r| r.0 == "eval_dataset").unwrap();
        assert_eq!(ed.1[0], None);
        // A method's own parameters are keys too; another method differs in its kind.
        let c = RunConfig {
            method: crate::peft::MethodConfig::all_defaults()
                .into_iter()
                .find(|m| m.kind() == "ia3")
                .unwrap(),
            ..RunConfig::default()
        };
        let rows = side_by_side(&[&a, &c]);
        assert!(rows.iter().any(|r| r.0 == "method.kind" && r.2));
        assert!(rows.iter().all(|r| r.0.starts_with("method.") || !r.2));
    }

    use super::*;

    #[test]
    fn rates_read_as_written() {
        assert_eq!(rate_text(1.5e-3), "1.5e-3");
        assert_eq!(rate_text(3e-3), "3e-3");
        assert_eq!(rate_text(2.9999999999999997e-3), "3e-3");
        assert_eq!(rate_text(1e-1), "1e-1");
        assert_eq!(rate_text(1.25e-4), "1.25e-4");
    }

    const ISSUE_EXAMPLE: &str = r#"
model = "builtin"
dataset = "builtin:sentiment"
steps = 300
batch_size = 8
max_seq_len = 128
eval_every = 25
seed = 0
device = "cpu"

[method]
kind = "lora"
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "v_proj"]

[optimizer]
lr = 1e-3
weight_decay = 0.0
warmup_steps = 10
schedule = "cosine"
"#;

    #[test]
    fn parses_the_documented_shape_and_round_trips() {
        let cfg = RunConfig::from_toml_with(ISSUE_EXAMPLE, &[]).unwrap();
        assert_eq!(cfg.steps, 300);
        match &cfg.method {
            MethodConfig::Lora(l) => {
                assert_eq!(l.rank, 8);
                assert_eq!(l.target_modules, vec!["q_proj", "v_proj"]);
            }
            other => panic!("expected lora, got {other:?}"),
        }
        let again = RunConfig::from_toml_with(&cfg.to_toml(), &[]).unwrap();
        assert_eq!(cfg, again);
    }

    #[test]
    fn overrides_set_dotted_keys() {
        let cfg = RunConfig::from_toml_with(
            ISSUE_EXAMPLE,
            &[
                "method.rank=4".into(),
                "dataset=path/to/file.jsonl".into(),
                "optimizer.lr=5e-4".into(),
                "method.target_modules=[\"q_proj\"]".into(),
            ],
        )
        .unwrap();
        let MethodConfig::Lora(l) = &cfg.method else {
            panic!()
        };
        assert_eq!(l.rank, 4);
        assert_eq!(l.target_modules, vec!["q_proj"]);
        assert_eq!(cfg.dataset, "path/to/file.jsonl");
        assert_eq!(cfg.optimizer.lr, 5e-4);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["method.rnak=4".into()]).unwrap_err();
        assert!(e.to_string().contains("rnak"), "{e}");
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["stpes=4".into()]).unwrap_err();
        assert!(e.to_string().contains("stpes"), "{e}");
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["optimizer.lr=-1".into()]).unwrap_err();
        assert!(e.to_string().contains("optimizer.lr"), "{e}");
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["method.rank=0".into()]).unwrap_err();
        assert!(e.to_string().contains("method.rank"), "{e}");
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["batch_size=0".into()]).unwrap_err();
        assert!(e.to_string().contains("batch_size"), "{e}");
        let e = RunConfig::from_toml_with(ISSUE_EXAMPLE, &["steps=ten".into()]).unwrap_err();
        assert!(e.to_string().contains("steps"), "{e}");
        let e =
            RunConfig::from_toml_with(ISSUE_EXAMPLE, &["method.kind=bogus".into()]).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
