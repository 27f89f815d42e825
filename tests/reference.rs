//! Our forward pass of the built-in model against Hugging Face transformers' (the fixture
//! is written by tests/reference/builtin_logits.py): identical token ids, logits within 1e-3.

use peft_workbench::peft::import::last_logits;

#[test]
fn builtin_model_matches_transformers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/builtin_logits.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (ids, logits) = last_logits("builtin", None, text).unwrap();
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
