//! Our forward pass of the built-in model against Hugging Face transformers' (the fixture
//! is written by tests/reference/builtin_logits.py): identical token ids, logits within 1e-3.

use peft_workbench::models::last_logits;

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
        let (ids, logits) = last_logits("builtin", text).unwrap();
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
