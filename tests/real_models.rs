//! The real models from scripts/fetch-models.sh: SmolLM2-135M-Instruct read from its Q4_1
//! GGUF file gives transformers' logits (tests/reference/smollm2_logits.py), and LoRA on it
//! lowers the evaluation loss of a built-in task.

use std::path::{Path, PathBuf};

use peft_workbench::config::RunConfig;
use peft_workbench::peft::import::last_logits;

fn smollm2() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run `bash scripts/fetch-models.sh` first",
        p.display()
    );
    p
}

#[test]
fn smollm2_matches_transformers() {
    let model = smollm2();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_logits.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (ids, logits) = last_logits(model.to_str().unwrap(), None, text).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
        assert_eq!(ids, want_ids, "token ids of {text:?}");
        assert_eq!(logits.len(), 49_152);
        let mut worst = 0.0f32;
        for (i, want) in case["logits"].as_object().unwrap() {
            let i: usize = i.parse().unwrap();
            worst = worst.max((logits[i] - want.as_f64().unwrap() as f32).abs());
        }
        assert!(worst <= 1e-3, "{text:?}: logits differ by {worst}");
    }
}

#[test]
fn lora_on_smollm2_lowers_the_eval_loss() {
    smollm2();
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smollm2-lora.toml");
    let model = smollm2().display().to_string();
    let cfg = RunConfig::load(
        &preset,
        &[
            format!("model={model}"),
            "steps=12".into(),
            "eval_every=12".into(),
            "eval_examples=16".into(),
            "batch_size=4".into(),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = peft_workbench::train::run(&cfg, 1, Some(dir.path()), None, &mut |_| {}, &mut || false)
        .unwrap();
    assert!(
        s.final_eval_loss < 0.8 * s.initial_eval_loss,
        "eval loss {} -> {}",
        s.initial_eval_loss,
        s.final_eval_loss
    );
    assert_eq!(s.trainable_params, 30 * 8 * ((576 + 576) + (576 + 192)));
}

/// The answer transformers gives greedily (ASSETS.md), through the key/value cache.
#[test]
fn smollm2_answers_with_the_cache_as_transformers_does() {
    let model = smollm2();
    let s = peft_workbench::generate::Sampling {
        max_tokens: 20,
        ..Default::default()
    };
    let answer = peft_workbench::generate::generate_text(
        model.to_str().unwrap(),
        None,
        &peft_workbench::generate::chatml("What is the capital of France?"),
        &s,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(answer.trim(), "The capital of France is Paris.");
}
