//! `peft-workbench import-run`: a transformers Trainer folder and a LLaMA-Factory folder
//! become runs of ours (curves, summary with unknowns left unknown, the adapter usable);
//! a malformed log names its file and line and leaves nothing behind.

use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::import_run::import;
use peft_workbench::train::{self, Summary};

/// A LoRA adapter in PEFT's format, from a short run of ours, copied into `dir`.
fn lora_adapter_into(dir: &Path) {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml");
    let cfg = RunConfig::load(
        &preset,
        &[
            "steps=2".into(),
            "eval_every=2".into(),
            "eval_examples=4".into(),
        ],
    )
    .unwrap();
    let run = tempfile::tempdir().unwrap();
    train::run(&cfg, 1, Some(run.path()), None, &mut |_| {}, &mut || false).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(run.path().join("adapter").join(f), dir.join(f)).unwrap();
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn a_trainer_folder_becomes_a_run() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("trainer-out");
    lora_adapter_into(&outside);
    let history: Vec<serde_json::Value> = (1..=4)
        .map(|s| serde_json::json!({"step": s, "loss": 9.0 - s as f64, "learning_rate": 1e-4 * s as f64, "epoch": 0.1}))
        .chain([
            serde_json::json!({"step": 4, "eval_loss": 4.5, "epoch": 0.4}),
            serde_json::json!({"step": 4, "train_runtime": 12.5, "train_loss": 6.5}),
        ])
        .collect();
    std::fs::write(
        outside.join("trainer_state.json"),
        serde_json::to_string(&serde_json::json!({
            "global_step": 4, "train_batch_size": 8, "log_history": history
        }))
        .unwrap(),
    )
    .unwrap();
    let out = d.path().join("runs/imported");
    let i = import(&outside, &out).unwrap();
    assert_eq!((i.steps, i.evals), (4, 1));
    let cfg = RunConfig::load(&out.join("config.toml"), &[]).unwrap();
    assert_eq!(cfg.method.kind(), "lora");
    assert_eq!(cfg.steps, 4);
    assert_eq!(cfg.batch_size, 8);
    assert!((cfg.optimizer.lr - 4e-4).abs() < 1e-12, "the peak rate");
    let s: Summary = serde_json::from_str(&read(&out, "summary.json")).unwrap();
    assert_eq!(s.final_train_loss, 5.0);
    assert_eq!(s.final_eval_loss, 4.5);
    assert_eq!(s.wall_seconds, 12.5);
    assert_eq!(s.trainable_params, 43008);
    // What the log does not say stays unknown, not zero.
    assert!(s.initial_eval_loss.is_nan() && s.metric_value.is_nan());
    assert!(s.tokens_per_second.is_nan());
    assert_eq!(s.peak_rss_bytes, 0);
    let lines: Vec<serde_json::Value> = read(&out, "metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["type"].as_str().unwrap(), l["step"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("step", 1),
            ("step", 2),
            ("step", 3),
            ("step", 4),
            ("eval", 4)
        ]
    );
    assert!(
        lines.iter().all(|l| l["tokens_seen"].is_null()),
        "no tokens counted, none made up"
    );
    assert!(out.join("adapter/adapter_model.safetensors").is_file());
    assert!(read(&out, "notes.json").contains("imported"));
    // A second import never writes over the first.
    let e = import(&outside, &out).unwrap_err();
    assert!(format!("{e:#}").contains("already holds files"), "{e:#}");
}

#[test]
fn a_llama_factory_folder_becomes_a_run_and_a_bad_line_is_named() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("saves");
    lora_adapter_into(&outside);
    let log = [
        r#"{"current_steps": 5, "total_steps": 10, "loss": 2.5, "lr": 5e-05, "epoch": 0.5, "percentage": 50.0, "elapsed_time": "0:00:30", "remaining_time": "0:00:30", "throughput": 40.0, "total_tokens": 1200}"#,
        r#"{"current_steps": 10, "total_steps": 10, "loss": 2.0, "lr": 0.0, "epoch": 1.0, "percentage": 100.0, "elapsed_time": "0:01:05", "remaining_time": "0:00:00"}"#,
        r#"{"current_steps": 10, "total_steps": 10, "eval_loss": 2.2, "epoch": 1.0, "elapsed_time": "0:01:10"}"#,
    ];
    std::fs::write(outside.join("trainer_log.jsonl"), log.join("\n")).unwrap();
    let out = d.path().join("run");
    let i = import(&outside, &out).unwrap();
    assert_eq!((i.steps, i.evals), (2, 1));
    assert!(i.source.contains("LLaMA-Factory"));
    let s: Summary = serde_json::from_str(&read(&out, "summary.json")).unwrap();
    assert_eq!(s.wall_seconds, 70.0);
    assert_eq!(s.final_eval_loss, 2.2);
    let first: serde_json::Value =
        serde_json::from_str(read(&out, "metrics.jsonl").lines().next().unwrap()).unwrap();
    assert_eq!(first["elapsed_s"], 30.0);
    // The tokens axis, where the log counts tokens (include_num_input_tokens_seen).
    assert_eq!(first["tokens_seen"], 1200.0);

    std::fs::write(
        outside.join("trainer_log.jsonl"),
        format!("{}\n{{\"current_steps\": 6, \"loss\": \"high\"}}\n", log[0]),
    )
    .unwrap();
    let bad = d.path().join("bad");
    let e = format!("{:#}", import(&outside, &bad).unwrap_err());
    assert!(e.contains("trainer_log.jsonl line 2"), "{e}");
    assert!(!bad.exists(), "nothing half-imported stays");
}
