//! The real models from scripts/fetch-models.sh: SmolLM2-135M-Instruct read from its Q4_1
//! GGUF file gives transformers' logits (tests/reference/smollm2_logits.py), and LoRA on it
//! lowers the evaluation loss of a built-in task; the BERT encoder all-MiniLM-L6-v2 gives
//! transformers' hidden states (tests/reference/minilm_hidden.py) and learns to classify.

mod common;

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
        let (ids, logits) =
            last_logits(model.to_str().unwrap(), None, text, &common::test_device()).unwrap();
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

/// SmolLM2's own template (from the GGUF metadata) and a Llama-2 style fixture template,
/// rendered and tokenised as transformers' `apply_chat_template` does
/// (tests/reference/chat_templates.py wrote the ids): the same token ids, and the learned
/// tokens are exactly each assistant turn's.
#[test]
fn chat_templates_give_transformers_token_ids() {
    use peft_workbench::data::chat::{Role, Turn};
    use peft_workbench::data::template::ChatTemplate;
    let files = peft_workbench::models::ModelFiles::open(smollm2().to_str().unwrap()).unwrap();
    let tok = files.tokenizer().unwrap();
    let own = files
        .chat_template()
        .unwrap()
        .expect("SmolLM2 has a chat template");
    assert_eq!(
        (own.bos_token.as_str(), own.eos_token.as_str()),
        ("<|im_start|>", "<|im_end|>")
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut llama2 = own.clone();
    llama2.source = std::fs::read_to_string(root.join("chat_templates/llama2.jinja")).unwrap();
    let templates = [
        ("smollm2", ChatTemplate::new(own).unwrap()),
        ("llama2", ChatTemplate::new(llama2).unwrap()),
    ];
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("chat_templates.json")).unwrap())
            .unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let (_, template) = templates
            .iter()
            .find(|(name, _)| case["template"] == *name)
            .unwrap();
        let turns: Vec<Turn> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Turn {
                role: Role::parse(m["role"].as_str().unwrap()).unwrap(),
                content: m["content"].as_str().unwrap().to_string(),
            })
            .collect();
        let generation = case["add_generation_prompt"].as_bool().unwrap();
        let text = template.render(&turns, generation).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap(), "{}", case["template"]);
        let ids: Vec<u32> = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(ids, want, "{} {text:?}", case["template"]);
        if generation {
            continue;
        }
        // The learned tokens, decoded, are the assistant turns as the template writes them.
        let (enc_ids, mask) = template.encode(&tok, &turns, false).unwrap();
        assert_eq!(enc_ids, want);
        let learned: Vec<u32> = enc_ids
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(id, _)| *id)
            .collect();
        let decoded = tok.decode(&learned, false).unwrap();
        let answers: Vec<String> = turns
            .iter()
            .filter(|t| t.role == Role::Assistant)
            .map(|t| t.content.trim().to_string())
            .collect();
        let mut rest = decoded.as_str();
        for a in &answers {
            let at = rest
                .find(a.as_str())
                .unwrap_or_else(|| panic!("{a:?} not learned in {decoded:?}"));
            rest = &rest[at + a.len()..];
        }
        assert!(
            !decoded.contains("[INST]") && !decoded.contains("user"),
            "{decoded:?}"
        );
        assert!(
            decoded.contains("<|im_end|>"),
            "the end of turn is learned: {decoded:?}"
        );
    }
}

/// A small Chinese Alpaca-style file: LoRA on SmolLM2 through its own chat template lowers
/// the evaluation loss, and the playground's prompt for an example is the template's.
#[test]
fn lora_on_smollm2_learns_a_chinese_alpaca_file_through_its_template() {
    let dir = tempfile::tempdir().unwrap();
    let colours = [
        ("苹果", "红色"),
        ("香蕉", "黄色"),
        ("草莓", "红色"),
        ("柠檬", "黄色"),
        ("葡萄", "紫色"),
        ("橙子", "橙色"),
        ("西瓜", "绿色"),
        ("蓝莓", "蓝色"),
        ("茄子", "紫色"),
        ("黄瓜", "绿色"),
    ];
    let rows: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            let (thing, colour) = colours[i % colours.len()];
            serde_json::json!({
                "instruction": "用一个词回答这个东西通常是什么颜色。",
                "input": thing,
                "output": format!("{thing}通常是{colour}。"),
            })
        })
        .collect();
    let data = dir.path().join("colours.json");
    std::fs::write(&data, serde_json::to_string(&rows).unwrap()).unwrap();
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/smollm2-lora.toml");
    let cfg = RunConfig::load(
        &preset,
        &[
            format!("model={}", smollm2().display()),
            format!("dataset={}", data.display()),
            "steps=12".into(),
            "eval_every=12".into(),
            "eval_examples=6".into(),
            "batch_size=4".into(),
        ],
    )
    .unwrap();
    let s = peft_workbench::train::run(
        &cfg,
        1,
        Some(&dir.path().join("run")),
        None,
        &mut |_| {},
        &mut || false,
    )
    .unwrap();
    assert!(
        s.final_eval_loss < 0.7 * s.initial_eval_loss,
        "eval loss {} -> {}",
        s.initial_eval_loss,
        s.final_eval_loss
    );
    let files = peft_workbench::models::ModelFiles::open(&cfg.model).unwrap();
    let chat = peft_workbench::data::template::ChatRendering::for_model(&files, false).unwrap();
    let d = peft_workbench::data::load(&cfg.dataset, None, 0).unwrap();
    let peft_workbench::data::Example::Chat { turns } = &d.eval[0] else {
        panic!("{:?}", d.eval[0])
    };
    let prompt = chat.prompt(turns).unwrap();
    assert!(
        prompt.ends_with("<|im_end|>\n<|im_start|>assistant\n")
            && prompt.contains("用一个词回答这个东西通常是什么颜色。\n"),
        "{prompt:?}"
    );
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
        // The model's own template, read from the GGUF metadata.
        &peft_workbench::generate::chat_prompt(
            model.to_str().unwrap(),
            "What is the capital of France?",
        )
        .unwrap(),
        &s,
        &common::test_device(),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(answer.trim(), "The capital of France is Paris.");
}

fn minilm() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-minilm-l6-v2");
    assert!(
        p.join("model.safetensors").is_file(),
        "{} is missing: run `bash scripts/fetch-models.sh` first",
        p.display()
    );
    p
}

/// Our BERT encoder gives transformers' hidden states and pooled output
/// (tests/reference/minilm_hidden.py), with the texts run as one right-padded batch.
#[test]
fn minilm_matches_transformers() {
    use peft_workbench::models::{Hooks, LoadedModel, Model, ModelFiles, NoMethod};
    let files = ModelFiles::open(minilm().to_str().unwrap()).unwrap();
    assert!(files.config.is_classifier());
    let loaded = LoadedModel::load(&files, &mut NoMethod, &common::test_device()).unwrap();
    let Model::Bert(bert) = &loaded.model else {
        panic!("MiniLM loads as a BERT encoder")
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_hidden.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    let mut rows = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids = loaded
            .tokenizer
            .encode(text, true)
            .unwrap()
            .get_ids()
            .to_vec();
        let want: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
        assert_eq!(ids, want, "token ids of {text:?}");
        rows.push(ids);
    }
    let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
    let l = *lengths.iter().max().unwrap();
    let flat: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, l - r.len())))
        .collect();
    let ids = candle_core::Tensor::from_vec(flat, (rows.len(), l), &common::test_device()).unwrap();
    let (hidden, _) = bert
        .forward_cached(&ids, &lengths, &Hooks::default(), false)
        .unwrap();
    let pooled = bert.pooled(&hidden).unwrap();
    let close = |got: Vec<f32>, want: &serde_json::Value, what: &str| {
        let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{what}: differs by {worst}");
    };
    for (b, case) in cases.iter().enumerate() {
        let h = hidden.get(b).unwrap();
        close(
            h.get(0).unwrap().to_vec1().unwrap(),
            &case["hidden_first"],
            "[CLS] state",
        );
        close(
            h.get(lengths[b] - 1).unwrap().to_vec1().unwrap(),
            &case["hidden_last"],
            "last real state",
        );
        close(
            pooled.get(b).unwrap().to_vec1().unwrap(),
            &case["pooled"],
            "pooled",
        );
    }
}

/// LoRA on MiniLM with a trained head raises the accuracy of the built-in sentiment
/// classification well above chance, and the export is a PEFT SEQ_CLS folder that scores
/// the same from the files alone.
#[test]
fn lora_on_minilm_learns_to_classify() {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/minilm-lora-sentiment.toml");
    let model = minilm().display().to_string();
    let cfg = RunConfig::load(
        &preset,
        &[
            format!("model={model}"),
            "steps=40".into(),
            "eval_every=40".into(),
            "eval_examples=64".into(),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = peft_workbench::train::run(&cfg, 1, Some(dir.path()), None, &mut |_| {}, &mut || false)
        .unwrap();
    assert_eq!(s.metric_name, "accuracy");
    assert!(
        s.metric_value >= 0.85 && s.final_eval_loss < s.initial_eval_loss,
        "accuracy {} -> {}, loss {} -> {}",
        s.initial_metric_value,
        s.metric_value,
        s.initial_eval_loss,
        s.final_eval_loss
    );
    // r·(in + out) for query and value in 6 layers, and the 384 → 2 head.
    assert_eq!(s.trainable_params, 6 * 2 * 8 * (384 + 384) + 2 * 384 + 2);
    let adapter = dir.path().join("adapter");
    let cfg_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg_json["task_type"], "SEQ_CLS");
    assert_eq!(
        cfg_json["modules_to_save"],
        serde_json::json!(["classifier"])
    );
    let tensors = candle_core::safetensors::load(
        adapter.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(tensors.contains_key("base_model.model.classifier.weight"));
    assert!(
        tensors.contains_key(
            "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"
        )
    );
    let (loss, acc) = peft_workbench::train::evaluate_adapter(&cfg, &adapter).unwrap();
    assert!(
        (loss - s.final_eval_loss).abs() < 1e-4,
        "{loss} vs {}",
        s.final_eval_loss
    );
    assert!((acc - s.metric_value).abs() < 1e-9);
}
