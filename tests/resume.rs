//! Checkpoints and resuming: a run stopped (or killed) part-way and resumed ends where an
//! uninterrupted run with the same seed ends — same loss curve, same trained tensors.

mod common;
use common::max_abs_diff;

use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use peft_workbench::config::RunConfig;
use peft_workbench::train::{self, Event, checkpoint};

fn config(preset: &str, overrides: &[&str]) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(preset);
    let mut o: Vec<String> = vec![
        "steps=24".into(),
        "eval_every=8".into(),
        "eval_examples=16".into(),
        "checkpoint_every=5".into(),
    ];
    o.extend(overrides.iter().map(|s| s.to_string()));
    RunConfig::load(&path, &o).unwrap()
}

/// The training loss of each step, from a run folder's `metrics.jsonl`.
fn step_losses(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn adapter_tensors(dir: &Path) -> HashMap<String, Tensor> {
    let adapter = dir.join("adapter");
    let file = ["adapter_model.safetensors", "model.safetensors"]
        .iter()
        .map(|f| adapter.join(f))
        .find(|p| p.is_file())
        .expect("an adapter file");
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

/// Same steps, losses within float tolerance, and the same trained tensors.
fn assert_same_run(a: &Path, b: &Path) {
    let (la, lb) = (step_losses(a), step_losses(b));
    assert_eq!(
        la.iter().map(|p| p.0).collect::<Vec<_>>(),
        lb.iter().map(|p| p.0).collect::<Vec<_>>(),
        "the resumed run's curve has gaps or repeats"
    );
    for ((s, x), (_, y)) in la.iter().zip(&lb) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "step {s}: loss {x} uninterrupted, {y} resumed"
        );
    }
    let (ta, tb) = (adapter_tensors(a), adapter_tensors(b));
    assert_eq!(ta.len(), tb.len());
    for (name, t) in &ta {
        assert_eq!(t.dims(), tb[name].dims(), "{name}");
        if t.elem_count() == 0 {
            continue; // AdaLoRA may prune a matrix to rank 0
        }
        let d = max_abs_diff(t, &tb[name]);
        assert!(d < 1e-4, "{name} differs by {d}");
    }
}

fn uninterrupted(cfg: &RunConfig, dir: &Path) -> train::Summary {
    train::run(cfg, 1, Some(dir), None, &mut |_| {}, &mut || false).unwrap()
}

/// Stops after `at` steps (as the Stop button does), checks a checkpoint is kept, resumes.
fn stop_and_resume(cfg: &RunConfig, dir: &Path, at: usize) -> train::Summary {
    let mut calls = 0;
    let stopped = train::run(cfg, 2, Some(dir), None, &mut |_| {}, &mut || {
        calls += 1;
        calls > at
    })
    .unwrap();
    assert!(stopped.stopped_early);
    assert_eq!(stopped.steps, at);
    assert!(train::resumable(dir), "a stopped run keeps a checkpoint");
    let mut events = Vec::new();
    let resumed = train::resume(dir, 3, &mut |e| events.push(e), &mut || false).unwrap();
    assert!(matches!(events.first(), Some(Event::Loading { .. })));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Started { resumed_from: Some(s), .. } if *s == at))
    );
    assert!(!resumed.stopped_early);
    assert_eq!(resumed.steps, cfg.steps);
    // A finished run needs no checkpoint, and it cannot be resumed again.
    assert!(!checkpoint::exists(dir));
    assert!(!train::resumable(dir));
    resumed
}

#[test]
fn lora_stopped_and_resumed_matches_an_uninterrupted_run() {
    let cfg = config("lora.toml", &[]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = uninterrupted(&cfg, a.path());
    let resumed = stop_and_resume(&cfg, b.path(), 7);
    assert_same_run(a.path(), b.path());
    assert!((whole.final_eval_loss - resumed.final_eval_loss).abs() < 1e-4);
    assert_eq!(whole.initial_eval_loss, resumed.initial_eval_loss);
}

/// AdaLoRA's importance averages and rank masks travel in the checkpoint: the stop falls
/// between budget steps, so a resume that lost them would prune other ranks.
#[test]
fn adalora_resumes_with_its_importance_state() {
    let cfg = config(
        "adalora.toml",
        &["method.tinit=4", "method.tfinal=6", "method.delta_t=3"],
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    uninterrupted(&cfg, a.path());
    stop_and_resume(&cfg, b.path(), 9);
    assert_same_run(a.path(), b.path());
    let pattern = |d: &Path| {
        let c: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join("adapter/adapter_config.json")).unwrap(),
        )
        .unwrap();
        c["rank_pattern"].clone()
    };
    assert_eq!(pattern(a.path()), pattern(b.path()));
}

/// Full fine-tuning trains base tensors, P-Tuning an LSTM: both come back from the checkpoint.
#[test]
fn full_and_p_tuning_resume_exactly() {
    for preset in ["full.toml", "p-tuning.toml"] {
        let cfg = config(preset, &["steps=12", "checkpoint_every=4"]);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        uninterrupted(&cfg, a.path());
        stop_and_resume(&cfg, b.path(), 6);
        assert_same_run(a.path(), b.path());
    }
}

#[test]
fn a_checkpoint_of_another_configuration_is_refused() {
    let cfg = config("lora.toml", &["steps=6"]);
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    train::run(&cfg, 1, Some(dir.path()), None, &mut |_| {}, &mut || {
        calls += 1;
        calls > 3
    })
    .unwrap();
    // Someone edits the saved config to another rank: the checkpoint no longer fits.
    let edited = std::fs::read_to_string(dir.path().join("config.toml"))
        .unwrap()
        .replace("rank = 8", "rank = 4");
    std::fs::write(dir.path().join("config.toml"), edited).unwrap();
    let e = train::resume(dir.path(), 1, &mut |_| {}, &mut || false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape"), "{e}");
    // A run that never saved one says so.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("config.toml"), cfg.to_toml()).unwrap();
    let e = train::resume(empty.path(), 1, &mut |_| {}, &mut || false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}

/// The CLI killed with SIGKILL mid-run resumes from its last checkpoint with
/// `train --resume` and ends as an uninterrupted run does.
#[test]
fn killed_training_process_resumes_to_the_same_result() {
    let preset = format!("{}/presets/lora.toml", env!("CARGO_MANIFEST_DIR"));
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = vec!["train".into(), preset.clone()];
        for s in [
            "steps=24",
            "eval_every=8",
            "eval_examples=16",
            "checkpoint_every=4",
        ] {
            a.push("--set".into());
            a.push(s.into());
        }
        a.push("--out".into());
        a.push(out.display().to_string());
        a
    };
    let bin = env!("CARGO_BIN_EXE_peft-workbench");
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let mut child = Command::new(bin)
        .args(args(&b))
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !checkpoint::exists(&b) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!b.join("summary.json").exists(), "killed before the end");
    assert!(train::resumable(&b));

    let o = Command::new(bin)
        .args(["train", "--resume"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("continuing from the checkpoint"));
    let o = Command::new(bin).args(args(&a)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_run(&a, &b);
}
