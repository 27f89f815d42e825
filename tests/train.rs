//! End to end on the built-in model: each method lowers the evaluation loss of a built-in
//! task by a clear margin, trains only what it should, and never touches the base weights.

mod common;
use common::max_abs_diff;

use candle_core::{Device, Tensor};
use std::collections::HashMap;

use peft_workbench::config::RunConfig;
use peft_workbench::models::builtin_model_dir;
use peft_workbench::train::{self, Event};

fn base_weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(builtin_model_dir().join("model.safetensors"), &Device::Cpu)
        .unwrap()
}

fn run(preset: &str, overrides: &[&str]) -> (train::Summary, tempfile::TempDir, Vec<Event>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(preset);
    let mut o: Vec<String> = vec![
        "steps=60".into(),
        "eval_every=30".into(),
        "eval_examples=64".into(),
    ];
    o.extend(overrides.iter().map(|s| s.to_string()));
    let cfg = RunConfig::load(&path, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let summary = train::run(
        &cfg,
        1,
        Some(dir.path()),
        None,
        &mut |e| events.push(e),
        &mut || false,
    )
    .unwrap();
    (summary, dir, events)
}

fn assert_learned(s: &train::Summary) {
    assert!(
        s.final_eval_loss < 0.6 * s.initial_eval_loss,
        "eval loss {} → {} is not a clear drop",
        s.initial_eval_loss,
        s.final_eval_loss
    );
    assert!(s.final_train_loss.is_finite());
    assert_eq!(s.steps, 60);
}

#[test]
fn lora_learns_and_leaves_the_base_untouched() {
    let before = base_weights();
    let (s, dir, events) = run("lora.toml", &[]);
    assert_learned(&s);
    // r·(in+out) per adapted projection, q and v in each of the 6 blocks.
    let expected = 6 * 8 * ((256 + 256) + (256 + 128));
    assert_eq!(s.trainable_params, expected);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Step(p) if p.step == 60))
    );
    let adapter = candle_core::safetensors::load(
        dir.path().join("adapter/adapter_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(adapter.len(), 2 * 2 * 6);
    assert!(adapter.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    let b = &adapter["base_model.model.model.layers.5.self_attn.v_proj.lora_B.weight"];
    assert!(
        b.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0,
        "B trained"
    );
    let after = base_weights();
    for (name, t) in &before {
        assert_eq!(max_abs_diff(t, &after[name]), 0.0, "{name} changed");
    }
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 8);
    for f in ["config.toml", "metrics.jsonl", "summary.json"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
}

#[test]
fn freeze_trains_only_the_last_blocks() {
    let before = base_weights();
    let (s, dir, _) = run("freeze.toml", &[]);
    assert_learned(&s);
    let trained =
        candle_core::safetensors::load(dir.path().join("adapter/model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(!trained.is_empty());
    for (name, t) in &trained {
        assert!(
            name.starts_with("model.layers.4.") || name.starts_with("model.layers.5."),
            "{name} trained"
        );
        if name.ends_with("proj.weight") {
            assert!(
                max_abs_diff(t, &before[name]) > 0.0,
                "{name} did not change"
            );
        }
    }
    let per_block = 2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 512 + 2 * 256;
    assert_eq!(s.trainable_params, 2 * per_block);
}

#[test]
fn full_fine_tuning_trains_everything() {
    let (s, dir, _) = run("full.toml", &[]);
    assert_learned(&s);
    assert_eq!(s.trainable_params, s.total_params);
    let trained =
        candle_core::safetensors::load(dir.path().join("adapter/model.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(trained.len(), base_weights().len());
}

#[test]
fn stop_ends_a_run_early_and_still_saves_it() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml");
    let cfg = RunConfig::load(&path, &["steps=50".into(), "eval_examples=16".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    let s = train::run(&cfg, 1, Some(dir.path()), None, &mut |_| {}, &mut || {
        calls += 1;
        calls > 3
    })
    .unwrap();
    assert!(s.stopped_early);
    assert_eq!(s.steps, 3);
    assert!(
        dir.path()
            .join("adapter/adapter_model.safetensors")
            .is_file()
    );
}
