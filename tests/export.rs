//! Exports read back: every method's export, attached to the built-in model from the files
//! alone, gives the evaluation loss the run measured at its end; LoRA-family and IA3
//! adapters merged into the weights give the adapted model's logits; adapters that do not
//! fit the model are refused with the tensor named.

mod common;

use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::peft::import::last_logits;
use peft_workbench::train;

fn short_run(preset: &str, extra: &[&str]) -> (RunConfig, train::Summary, tempfile::TempDir) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(preset);
    let mut o: Vec<String> = ["steps=8", "eval_every=8", "eval_examples=24"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    o.extend(extra.iter().map(|s| s.to_string()));
    let cfg = RunConfig::load(&path, &o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = train::run(&cfg, 1, Some(dir.path()), None, &mut |_| {}, &mut || false).unwrap();
    (cfg, s, dir)
}

const ADALORA_SHORT: [&str; 3] = ["method.tinit=2", "method.tfinal=3", "method.delta_t=1"];

#[test]
fn every_export_reproduces_its_runs_final_evaluation() {
    for preset in [
        "full.toml",
        "freeze.toml",
        "lora.toml",
        "dora.toml",
        "adalora.toml",
        "ia3.toml",
        "bitfit.toml",
        "adapter.toml",
        "prompt-tuning.toml",
        "p-tuning.toml",
        "prefix-tuning.toml",
        "p-tuning-v2.toml",
    ] {
        let extra: &[&str] = if preset == "adalora.toml" {
            &ADALORA_SHORT
        } else {
            &[]
        };
        let (cfg, s, dir) = short_run(preset, extra);
        let (loss, _) = train::evaluate_adapter(&cfg, &dir.path().join("adapter"))
            .unwrap_or_else(|e| panic!("{preset}: {e:#}"));
        assert!(
            (loss - s.final_eval_loss).abs() <= 1e-4 * s.final_eval_loss.abs().max(1.0),
            "{preset}: run ended at eval loss {}, its export gives {loss}",
            s.final_eval_loss
        );
        assert!(
            (loss - s.initial_eval_loss).abs() > 1e-3,
            "{preset}: the export is the untrained model"
        );
    }
}

#[test]
fn merged_adapters_give_the_adapted_models_logits() {
    let text = "Review: a warm and funny film.\nLabel:";
    for (preset, extra) in [
        ("lora.toml", &[][..]),
        ("dora.toml", &[][..]),
        ("adalora.toml", &ADALORA_SHORT[..]),
        ("ia3.toml", &[][..]),
    ] {
        let (_, _, dir) = short_run(preset, extra);
        let adapter = dir.path().join("adapter");
        let merged = dir.path().join("merged");
        let code = std::process::Command::new(env!("CARGO_BIN_EXE_peft-workbench"))
            .args(["merge", "--model", "builtin", "--adapter"])
            .arg(&adapter)
            .arg("--out")
            .arg(&merged)
            .status()
            .unwrap();
        assert!(code.success(), "{preset}: merge failed");
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            assert!(
                merged.join(f).is_file(),
                "{preset}: merged folder lacks {f}"
            );
        }
        let (ids_a, adapted) =
            last_logits("builtin", Some(&adapter), text, &common::test_device()).unwrap();
        let (ids_m, plain) =
            last_logits(merged.to_str().unwrap(), None, text, &common::test_device()).unwrap();
        let (_, base) = last_logits("builtin", None, text, &common::test_device()).unwrap();
        assert_eq!(ids_a, ids_m);
        let diff = adapted
            .iter()
            .zip(&plain)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-4, "{preset}: merged differs by {diff}");
        let moved = adapted
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "{preset}: the adapter changes nothing");
    }
}

#[test]
fn adapters_for_another_model_are_refused_with_the_tensor_named() {
    let (_, _, dir) = short_run("lora.toml", &[]);
    let adapter = dir.path().join("adapter");
    // The same adapter with one tensor moved to a block the built-in model lacks.
    let mut tensors = candle_core::safetensors::load(
        adapter.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let moved = dir.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::copy(
        adapter.join("adapter_config.json"),
        moved.join("adapter_config.json"),
    )
    .unwrap();
    for part in ["lora_A", "lora_B"] {
        let t = tensors
            .remove(&format!(
                "base_model.model.model.layers.5.self_attn.q_proj.{part}.weight"
            ))
            .unwrap();
        tensors.insert(
            format!("base_model.model.model.layers.9.self_attn.q_proj.{part}.weight"),
            t,
        );
    }
    candle_core::safetensors::save(&tensors, moved.join("adapter_model.safetensors")).unwrap();
    let e = last_logits("builtin", Some(&moved), "hello", &common::test_device()).unwrap_err();
    assert!(
        format!("{e:#}").contains("model.layers.9.self_attn.q_proj"),
        "{e:#}"
    );

    // A prompt of the wrong width.
    let (_, _, pdir) = short_run("prompt-tuning.toml", &["steps=2"]);
    let bad = pdir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(
        pdir.path().join("adapter/adapter_config.json"),
        bad.join("adapter_config.json"),
    )
    .unwrap();
    let prompt =
        candle_core::Tensor::zeros((10, 64), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("prompt_embeddings".to_string(), prompt)]),
        bad.join("adapter_model.safetensors"),
    )
    .unwrap();
    let e = last_logits("builtin", Some(&bad), "hello", &common::test_device()).unwrap_err();
    assert!(format!("{e:#}").contains("prompt_embeddings"), "{e:#}");
    assert!(format!("{e:#}").contains("another model"), "{e:#}");
    let e = last_logits(
        "builtin",
        Some(Path::new("/nonexistent/adapter")),
        "hi",
        &common::test_device(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
}

/// Adapters Hugging Face PEFT made (tests/reference/peft_roundtrip.py make-fixtures, random
/// non-zero weights) import here and give the logits PEFT computed for them.
#[test]
fn peft_made_adapters_give_peft_logits() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_made");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let adapters = expected["adapters"].as_object().unwrap();
    assert!(adapters.len() >= 7);
    for (name, cases) in adapters {
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let (ids, logits) = last_logits(
                "builtin",
                Some(&dir.join(name)),
                text,
                &common::test_device(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let want_ids: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
            assert_eq!(ids, want_ids, "{name}");
            let want: Vec<f32> = serde_json::from_value(case["logits"].clone()).unwrap();
            let diff = logits
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff <= 1e-3,
                "{name}: logits differ from PEFT's by {diff} on {text:?}"
            );
        }
    }
}
