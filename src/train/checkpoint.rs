//! A run's checkpoint: everything needed to continue it as if it had never stopped — the
//! trained tensors, AdamW's moments, the method's own training state (AdaLoRA's importance
//! averages and rank masks) and where the run was (step, data drawn, clocks, last losses).
//!
//! Layout, inside the run folder:
//! `checkpoint/progress.json` and `checkpoint/state.safetensors` (tensor names prefixed
//! `param/`, `adam_m/`, `adam_v/`, `method/`). The folder is written beside and swapped in
//! (see `write_dir_atomic`), so a crash or a full disk leaves the previous checkpoint whole.

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::files::{save_json, write_atomic, write_dir_atomic};
use crate::peft::export::save_safetensors;

pub const FORMAT: &str = "peft-workbench/checkpoint-v1";

/// Where a run stands after a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps taken.
    pub step: usize,
    /// Training examples drawn so far (the data order is replayed up to here on resume).
    pub examples_drawn: usize,
    pub tokens_seen: usize,
    /// Seconds spent in training steps (tokens/s is measured over these).
    pub train_seconds: f64,
    /// Seconds since the run first started, evaluations included, over all its sessions.
    pub elapsed_seconds: f64,
    pub last_loss: f64,
    /// (loss, metric) of the latest evaluation, and its step.
    pub last_eval: (f64, f64),
    pub last_eval_step: usize,
    /// (loss, metric) before training.
    pub initial_eval: (f64, f64),
    pub peak_rss_bytes: u64,
    /// Early stopping's best evaluation so far and its count since (absent in checkpoints
    /// from before early stopping).
    #[serde(default)]
    pub early: super::EarlyStoppingState,
}

pub struct Checkpoint {
    pub progress: Progress,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// The tensors saved under `prefix/`, with the prefix taken off.
    pub fn section(&self, prefix: &str) -> HashMap<String, Tensor> {
        let p = format!("{prefix}/");
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&p).map(|n| (n.to_string(), t.clone())))
            .collect()
    }
}

pub fn dir_of(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

/// Writes the checkpoint of `run_dir`, replacing the previous one only once the new one is
/// complete.
pub fn save(run_dir: &Path, progress: &Progress, tensors: &[(String, Tensor)]) -> Result<()> {
    write_dir_atomic(&dir_of(run_dir), |d| {
        save_safetensors(&d.join("state.safetensors"), tensors)?;
        let mut v = serde_json::to_value(progress)?;
        v["format"] = FORMAT.into();
        save_json(&d.join("progress.json"), &v)
    })
    .context("cannot write the checkpoint")
}

/// Whether `run_dir` holds a checkpoint to resume from.
pub fn exists(run_dir: &Path) -> bool {
    candidates(run_dir)
        .iter()
        .any(|d| d.join("progress.json").is_file())
}

/// The folder written last and, should a crash have hit between the two renames of the
/// swap, the previous one.
fn candidates(run_dir: &Path) -> [PathBuf; 2] {
    [dir_of(run_dir), run_dir.join(".checkpoint.old")]
}

/// Reads the checkpoint of `run_dir` onto `device`.
pub fn load(run_dir: &Path, device: &Device) -> Result<Checkpoint> {
    let Some(dir) = candidates(run_dir)
        .into_iter()
        .find(|d| d.join("progress.json").is_file())
    else {
        bail!(
            "{} has no checkpoint: the run stopped before its first one was written (every `checkpoint_every` steps); start it again",
            run_dir.display()
        );
    };
    let text = std::fs::read_to_string(dir.join("progress.json"))
        .with_context(|| format!("cannot read {}", dir.join("progress.json").display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", dir.join("progress.json").display()))?;
    if value["format"] != FORMAT {
        bail!(
            "{} is not a checkpoint of this app (format {})",
            dir.display(),
            value["format"]
        );
    }
    let progress: Progress = serde_json::from_value(value)
        .with_context(|| format!("{} is incomplete", dir.join("progress.json").display()))?;
    let tensors = candle_core::safetensors::load(dir.join("state.safetensors"), device)
        .with_context(|| format!("cannot read {}", dir.join("state.safetensors").display()))?;
    Ok(Checkpoint { progress, tensors })
}

/// Removes the checkpoint of a run that finished (its adapter is the result; a
/// full-fine-tuning checkpoint is three times the model).
pub fn remove(run_dir: &Path) -> Result<()> {
    for d in candidates(run_dir) {
        if d.exists() {
            std::fs::remove_dir_all(&d)
                .with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    Ok(())
}

/// Cuts `metrics.jsonl` back to the lines at or before `step` (what the checkpoint knows),
/// dropping a half-written last line, so a resumed run's curve continues without a fork.
pub fn truncate_metrics(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["step"].as_u64().is_some_and(|s| s as usize <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    write_atomic(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_fallback_to_the_previous_folder() -> Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(!exists(dir.path()));
        assert!(load(dir.path(), &Device::Cpu).is_err());
        let progress = Progress {
            step: 7,
            examples_drawn: 56,
            last_loss: 1.5,
            ..Progress::default()
        };
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu)?;
        save(dir.path(), &progress, &[("param/x".into(), t.clone())])?;
        let c = load(dir.path(), &Device::Cpu)?;
        assert_eq!(c.progress, progress);
        assert_eq!(c.section("param")["x"].to_vec1::<f32>()?, vec![1.0, 2.0]);
        // A crash between the swap's two renames leaves only `.checkpoint.old`.
        std::fs::rename(dir_of(dir.path()), dir.path().join(".checkpoint.old"))?;
        assert!(exists(dir.path()));
        assert_eq!(load(dir.path(), &Device::Cpu)?.progress.step, 7);
        remove(dir.path())?;
        assert!(!exists(dir.path()));
        Ok(())
    }

    #[test]
    fn metrics_are_cut_back_to_the_checkpoint_step() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"type\":\"eval\",\"step\":0}\n{\"type\":\"step\",\"step\":1}\n{\"type\":\"step\",\"step\":2}\n{\"type\":\"eval\",\"step\":2}\n{\"type\":\"step\",\"step\":3}\n{\"type\":\"st",
        )?;
        truncate_metrics(&path, 2)?;
        let text = std::fs::read_to_string(&path)?;
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.ends_with("{\"type\":\"eval\",\"step\":2}\n"));
        Ok(())
    }
}
