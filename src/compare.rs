//! Comparing methods: one run per method on the same model, data and steps, each with its
//! conventional learning rate, run one after another in child processes (so each run's
//! peak memory is its own), then a table of what each cost and achieved:
//! `comparison.csv` and `comparison.md`.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::files::write_atomic;
use crate::peft::MethodConfig;
use crate::train::Summary;

/// A comparison file: the methods and the run they share (`[run]`, a `RunConfig` whose
/// `[method]` is replaced per method).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Method kinds, or `["all"]`.
    pub methods: Vec<String>,
    /// Learning rate per method kind (e.g. the best of a sweep on this model and data);
    /// a method not listed trains at its conventional rate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub learning_rates: BTreeMap<String, f64>,
    pub run: RunConfig,
    /// `--set` overrides applied to every method's run after its method and rate are
    /// chosen (e.g. `eval_dataset=FILE`, `steps=20`, `optimizer.lr=1e-3`).
    #[serde(skip)]
    pub overrides: Vec<String>,
}

impl CompareConfig {
    /// Reads a comparison file; `overrides` (`key=value`, dotted paths of the run) apply to
    /// every method's run and are checked here, against each of them.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: Self = toml::from_str(&text)
            .with_context(|| format!("{} is not a comparison file", path.display()))?;
        c.run.validate()?;
        let kinds: Vec<&str> = MethodConfig::all_defaults()
            .iter()
            .map(|m| m.kind())
            .collect();
        for (kind, lr) in &c.learning_rates {
            if !kinds.contains(&kind.as_str()) {
                bail!(
                    "{}: unknown method `{kind}` in learning_rates (methods: {})",
                    path.display(),
                    kinds.join(", ")
                );
            }
            if !(lr.is_finite() && *lr > 0.0) {
                bail!(
                    "{}: learning_rates.{kind} must be a positive number",
                    path.display()
                );
            }
        }
        c.overrides = overrides.to_vec();
        c.runs()?;
        Ok(c)
    }

    /// One run per method: the method's defaults and its conventional learning rate.
    pub fn runs(&self) -> Result<Vec<RunConfig>> {
        let all = MethodConfig::all_defaults();
        let chosen: Vec<MethodConfig> = if self.methods.iter().any(|m| m == "all") {
            all
        } else {
            self.methods
                .iter()
                .map(|k| {
                    all.iter()
                        .find(|m| m.kind() == k)
                        .cloned()
                        .with_context(|| format!("unknown method `{k}` in methods"))
                })
                .collect::<Result<_>>()?
        };
        if chosen.is_empty() {
            bail!("the comparison names no method");
        }
        chosen
            .into_iter()
            .map(|m| {
                let mut cfg = self.run.clone();
                cfg.optimizer.lr = self
                    .learning_rates
                    .get(m.kind())
                    .copied()
                    .unwrap_or_else(|| m.conventional_lr());
                let kind = m.kind();
                cfg.method = m;
                if self.overrides.is_empty() {
                    return Ok(cfg);
                }
                RunConfig::from_toml_with(&cfg.to_toml(), &self.overrides)
                    .with_context(|| format!("--set for the {kind} run"))
            })
            .collect()
    }
}

/// The comparison the project ships (`presets/compare-all.toml`), whose `[learning_rates]`
/// come from the sweep on its model and data (`scripts/sweep-lr.sh`).
/// Parsed once: the side panel asks for a method's rate every frame.
pub fn shipped() -> &'static CompareConfig {
    static SHIPPED: std::sync::OnceLock<CompareConfig> = std::sync::OnceLock::new();
    SHIPPED.get_or_init(|| {
        toml::from_str(include_str!("../presets/compare-all.toml"))
            .expect("presets/compare-all.toml is a comparison file (a test reads it)")
    })
}

/// The learning rate a comparison trains `method` with in `run`: the swept rate when the
/// shipped comparison has one for the same model and data, else the method's conventional
/// rate. A method compared at a rate too low for the model would look worse than it is.
pub fn learning_rate_for(method: &MethodConfig, run: &RunConfig) -> f64 {
    let shipped = shipped();
    let same_task = shipped.run.model == run.model
        && shipped.run.dataset == run.dataset
        && shipped.run.eval_dataset == run.eval_dataset;
    same_task
        .then(|| shipped.learning_rates.get(method.kind()).copied())
        .flatten()
        .unwrap_or_else(|| method.conventional_lr())
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub run: String,
    pub method: String,
    pub learning_rate: f64,
    pub steps: usize,
    pub trainable_params: usize,
    pub trainable_percent: f64,
    pub adapter_bytes: u64,
    pub peak_rss_bytes: u64,
    pub tokens_per_second: f64,
    pub wall_seconds: f64,
    pub initial_eval_loss: f64,
    pub final_eval_loss: f64,
    pub metric_name: String,
    pub metric: f64,
    /// The metric's chance level on the same evaluation examples (empty where guessing
    /// scores nothing).
    pub chance: Option<f64>,
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The row of a finished run of `cfg`; `run_dir` (if the run has one) gives the adapter's
/// size.
pub fn row(run: &str, cfg: &RunConfig, summary: &Summary, run_dir: Option<&Path>) -> Row {
    Row {
        run: run.to_string(),
        method: summary.method.clone(),
        learning_rate: cfg.optimizer.lr,
        steps: summary.steps,
        trainable_params: summary.trainable_params,
        trainable_percent: 100.0 * summary.trainable_params as f64
            / summary.total_params.max(1) as f64,
        adapter_bytes: run_dir.map_or(0, |d| folder_bytes(&d.join("adapter"))),
        peak_rss_bytes: summary.peak_rss_bytes,
        tokens_per_second: summary.tokens_per_second,
        wall_seconds: summary.wall_seconds,
        initial_eval_loss: summary.initial_eval_loss,
        final_eval_loss: summary.final_eval_loss,
        metric_name: summary.metric_name.clone(),
        metric: summary.metric_value,
        chance: summary.chance.map(|c| c.level),
    }
}

/// `comparison.csv` text.
pub fn to_csv(rows: &[Row]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// `comparison.md` text: a Markdown table, best metric first (lowest eval loss where the
/// metric is a perplexity), with the rate and steps each run trained with and the chance
/// level beside the metric.
pub fn to_markdown(rows: &[Row]) -> String {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| {
        let higher = |r: &Row| {
            crate::data::Metric::from_name(&r.metric_name).is_some_and(|m| m.higher_is_better())
        };
        if higher(a) && higher(b) {
            b.metric.total_cmp(&a.metric)
        } else {
            a.final_eval_loss.total_cmp(&b.final_eval_loss)
        }
    });
    let mut s = String::from(
        "| run | lr | steps | trainable | % of model | adapter on disk | peak memory | tokens/s | time | eval loss | metric | chance |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for r in &sorted {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} % | {:.1} MB | {:.0} MB | {:.0} | {:.0} s | {:.3} → {:.3} | {} {:.3} | {} |\n",
            r.run,
            crate::config::rate_text(r.learning_rate),
            r.steps,
            r.trainable_params,
            r.trainable_percent,
            r.adapter_bytes as f64 / 1e6,
            r.peak_rss_bytes as f64 / 1e6,
            r.tokens_per_second,
            r.wall_seconds,
            r.initial_eval_loss,
            r.final_eval_loss,
            r.metric_name,
            r.metric,
            r.chance.map_or("-".to_string(), |c| format!("{c:.3}")),
        ));
    }
    s
}

/// Runs every method of `cfg` with `exe train` into `out/<kind>/`, then writes the tables.
/// A method that fails is reported and the others still run.
pub fn compare(cfg: &CompareConfig, exe: &Path, out: &Path) -> Result<Vec<Row>> {
    // A finished comparison is never written over: its runs would be refused one by one
    // (each `train --out` refuses a folder holding a run), leaving a table of failures.
    if out.join("comparison.md").exists() {
        bail!(
            "{} already holds a comparison (comparison.md); choose another --out",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    // Its runs form one experiment, named as its folder (unless the file names one).
    let experiment = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| out.display().to_string());
    for mut run in cfg.runs()? {
        run.experiment.get_or_insert_with(|| experiment.clone());
        let kind = run.method.kind();
        let preset: PathBuf = out.join(format!("{kind}.toml"));
        write_atomic(&preset, run.to_toml().as_bytes())?;
        let dir = out.join(kind);
        eprintln!(
            "comparing: {} (lr {})",
            run.method.short_label(),
            run.optimizer.lr
        );
        let status = std::process::Command::new(exe)
            .arg("train")
            .arg(&preset)
            .arg("--out")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let summary = std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Summary>(&t).ok());
        match (status.success(), summary) {
            (true, Some(s)) => rows.push(row(&run.method.short_label(), &run, &s, Some(&dir))),
            _ => failed.push(kind.to_string()),
        }
    }
    write_atomic(&out.join("comparison.csv"), to_csv(&rows)?.as_bytes())?;
    let mut md = to_markdown(&rows);
    if !failed.is_empty() {
        md.push_str(&format!("\nFailed: {}\n", failed.join(", ")));
    }
    write_atomic(&out.join("comparison.md"), md.as_bytes())?;
    if rows.is_empty() {
        bail!("every method failed: {}", failed.join(", "));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    const FILE: &str = "methods = [\"lora\", \"ia3\"]\n[learning_rates]\nlora = 5e-3\n[run]\nsteps = 30\n[run.method]\nkind = \"lora\"\n";

    #[test]
    fn rates_and_overrides_reach_every_run() {
        let f = write(FILE);
        let c = CompareConfig::load(f.path(), &[]).unwrap();
        let runs = c.runs().unwrap();
        assert_eq!(runs[0].optimizer.lr, 5e-3, "the file's rate for LoRA");
        assert_eq!(
            runs[1].optimizer.lr,
            MethodConfig::Ia3(Default::default()).conventional_lr(),
            "IA3 keeps its conventional rate"
        );
        let c = CompareConfig::load(
            f.path(),
            &["steps=7".into(), "eval_dataset=other.jsonl".into()],
        )
        .unwrap();
        for r in c.runs().unwrap() {
            assert_eq!(r.steps, 7);
            assert_eq!(r.eval_dataset.as_deref(), Some("other.jsonl"));
        }
    }

    #[test]
    fn bad_overrides_and_rates_are_named() {
        let f = write(FILE);
        let e = CompareConfig::load(f.path(), &["nope=1".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("nope"), "{e:#}");
        let f = write(&FILE.replace("lora = 5e-3", "lorra = 5e-3"));
        let e = CompareConfig::load(f.path(), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("lorra"), "{e:#}");
    }

    #[test]
    fn the_shipped_comparison_loads_and_gives_its_rates_only_on_its_task() {
        let shipped = shipped();
        assert_eq!(shipped.runs().unwrap().len(), 12);
        let lora = MethodConfig::all_defaults()
            .into_iter()
            .find(|m| m.kind() == "lora")
            .unwrap();
        let mut run = shipped.run.clone();
        let expected = shipped
            .learning_rates
            .get("lora")
            .copied()
            .unwrap_or(lora.conventional_lr());
        assert_eq!(learning_rate_for(&lora, &run), expected);
        run.dataset = "builtin:arithmetic".into();
        assert_eq!(learning_rate_for(&lora, &run), lora.conventional_lr());
    }
}
