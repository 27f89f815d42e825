//! `peft-workbench import-run`: a transformers Trainer folder and a LLaMA-Factory folder
//! become runs of ours (curves, summary with unknowns left unknown, the adapter usable);
//! a malformed log names its file and line and leaves nothing behind.

use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::import_run::import;
use peft_workbench::train::{self, Summary};

/// A finished LoRA run of ours of `steps` steps (evaluated at its end on 8 examples), and
/// its configuration.
fn short_lora_run(steps: usize) -> (RunConfig, tempfile::TempDir) {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml");
    let cfg = RunConfig::load(
        &preset,
        &[
            format!("steps={steps}"),
            format!("eval_every={steps}"),
            "eval_examples=8".into(),
        ],
    )
    .unwrap();
    let run = tempfile::tempdir().unwrap();
    train::run(&cfg, 1, Some(run.path()), None, &mut |_| {}, &mut || false).unwrap();
    (cfg, run)
}

/// A LoRA adapter in PEFT's format, from a short run of ours, copied into `dir`.
fn lora_adapter_into(dir: &Path) {
    let (_, run) = short_lora_run(2);
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
    let i = import(&outside, &out, Some(&|| false)).unwrap();
    assert_eq!((i.steps, i.evals), (4, 1));
    // Asked to measure, but a Trainer's log does not say what it evaluated on.
    assert!(i.measured.is_none());
    assert!(
        i.not_measured
            .as_deref()
            .unwrap()
            .contains("evaluation examples"),
        "{:?}",
        i.not_measured
    );
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
    let e = import(&outside, &out, None).unwrap_err();
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
    let i = import(&outside, &out, None).unwrap();
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
    let e = format!("{:#}", import(&outside, &bad, None).unwrap_err());
    assert!(e.contains("trainer_log.jsonl line 2"), "{e}");
    assert!(!bad.exists(), "nothing half-imported stays");
}

/// A recipe's output keeps its run's configuration, so on import its adapter is evaluated
/// as our runs are at their end and its task metric joins the table and the trade-off view:
/// the same adapter scores what our run reported. Without measuring it stays blank.
#[test]
fn a_recipe_output_has_its_metric_measured_on_import() {
    let (cfg, run) = short_lora_run(4);
    let ours: Summary = serde_json::from_str(&read(run.path(), "summary.json")).unwrap();
    // The folder train.py leaves: recipe.json beside output/ (trainer_state.json, adapter/).
    let d = tempfile::tempdir().unwrap();
    let output = d.path().join("recipe/output");
    std::fs::create_dir_all(output.join("adapter")).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(
            run.path().join("adapter").join(f),
            output.join("adapter").join(f),
        )
        .unwrap();
    }
    let history: Vec<serde_json::Value> = (1..=4)
        .map(|s| serde_json::json!({"step": s, "loss": 9.0 - s as f64}))
        .collect();
    std::fs::write(
        output.join("trainer_state.json"),
        serde_json::json!({"log_history": history}).to_string(),
    )
    .unwrap();
    // The run named its model relative to where it trained (here: nowhere); the recipe names
    // the model folder by its absolute path, as `recipe` does for a folder.
    let base = d.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let builtin = peft_workbench::models::builtin_model_dir();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(builtin.join(f), base.join(f)).unwrap();
    }
    let mut trained = cfg.clone();
    trained.model = "trained-elsewhere/base".into();
    std::fs::write(
        d.path().join("recipe/recipe.json"),
        serde_json::json!({"config": trained, "base_model": base}).to_string(),
    )
    .unwrap();

    let out = d.path().join("measured");
    let i = import(&output, &out, Some(&|| false)).unwrap();
    assert_eq!(i.not_measured, None);
    let m = i.measured.unwrap();
    assert_eq!(m.metric_name, ours.metric_name);
    assert!(
        (m.loss - ours.final_eval_loss).abs() <= 1e-4 * ours.final_eval_loss,
        "our run ended at eval loss {}, its adapter measured on import {}",
        ours.final_eval_loss,
        m.loss
    );
    assert!((m.metric - ours.metric_value).abs() < 1e-9);
    let s: Summary = serde_json::from_str(&read(&out, "summary.json")).unwrap();
    assert_eq!(s.metric_name, ours.metric_name);
    assert_eq!(s.metric_value, m.metric);
    assert_eq!(s.final_eval_loss, m.loss, "its log has no evaluation");
    assert_eq!(s.chance, ours.chance);
    let last: serde_json::Value =
        serde_json::from_str(read(&out, "metrics.jsonl").lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["type"].as_str(), last["step"].as_u64()),
        (Some("eval"), Some(4))
    );
    assert_eq!(last["metric"].as_f64(), Some(m.metric));

    let blank = d.path().join("blank");
    let i = import(&output, &blank, None).unwrap();
    assert!(i.measured.is_none() && i.not_measured.is_none());
    let s: Summary = serde_json::from_str(&read(&blank, "summary.json")).unwrap();
    assert!(s.metric_value.is_nan() && s.final_eval_loss.is_nan());
}
