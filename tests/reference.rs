//! Our forward pass of the built-in model against Hugging Face transformers' (the fixture
//! is written by tests/reference/builtin_logits.py): identical token ids, logits within 1e-3.

mod common;

use peft_workbench::peft::import::last_logits;

/// tests/fixtures/builtin_logits.json: texts, their token ids and transformers' last logits.
fn builtin_logits_fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/builtin_logits.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn builtin_model_matches_transformers() {
    let fixture = builtin_logits_fixture();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (ids, logits) = last_logits("builtin", None, text, &common::test_device()).unwrap();
        let want_ids: Vec<u32> = case["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, want_ids, "token ids of {text:?}");
        let want: Vec<f32> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(logits.len(), want.len());
        let max = logits
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max <= 1e-3, "{text:?}: max abs logit difference {max}");
    }
}

/// Our parameter formula for each method equals what Hugging Face PEFT counts for the same
/// configuration on the built-in model (tests/reference/peft_param_counts.py).
#[test]
fn trainable_counts_equal_peft_on_the_builtin_model() {
    use peft_workbench::models::{ModelConfig, builtin_model_dir};
    use peft_workbench::peft::MethodConfig;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/peft_param_counts.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = ModelConfig::from_file(&builtin_model_dir().join("config.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let method: MethodConfig = serde_json::from_value(case["method"].clone()).unwrap();
        let peft = case["peft_trainable"].as_u64().unwrap() as usize;
        assert_eq!(
            method.trainable_params(&model),
            peft,
            "{}: ours {} vs PEFT {peft}",
            method.short_label(),
            method.trainable_params(&model)
        );
    }
}

/// The built-in model with its matrices in bf16 and in f16 (a mixed-precision run's forward
/// pass) against transformers' f32 logits: near them, within what the narrower products
/// cost, and not as near as f32 gets (the products really ran narrow).
#[test]
fn builtin_model_in_bf16_and_f16_stays_near_transformers() {
    use candle_core::{DType, Tensor};
    use peft_workbench::models::{Hooks, LoadedModel, ModelFiles, NoMethod};
    let fixture = builtin_logits_fixture();
    let device = common::test_device();
    let files = ModelFiles::open("builtin").unwrap();
    // Largest logit difference allowed: bf16 keeps 8 significant bits, f16 11; measured
    // worst on the CPU 0.024 and 0.0036.
    for (dtype, tolerance) in [(DType::BF16, 0.1f32), (DType::F16, 0.015)] {
        let loaded = LoadedModel::load_in(&files, &mut NoMethod, &device, dtype).unwrap();
        let decoder = loaded.model.decoder().unwrap();
        let mut worst = 0.0f32;
        for case in fixture["cases"].as_array().unwrap() {
            let ids: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
            let want: Vec<f32> = serde_json::from_value(case["logits"].clone()).unwrap();
            let input = Tensor::new(ids.as_slice(), &device)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = decoder.forward(&input, &Hooks::default(), false).unwrap();
            assert_eq!(logits.dtype(), DType::F32);
            let last = logits.squeeze(0).unwrap().get(ids.len() - 1).unwrap();
            let got = last.to_vec1::<f32>().unwrap();
            let diff = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            worst = worst.max(diff);
        }
        assert!(
            worst <= tolerance,
            "{dtype:?}: worst logit difference {worst}"
        );
        assert!(
            worst > 1e-3,
            "{dtype:?}: as exact as f32 ({worst}): not computed narrow"
        );
    }
}
