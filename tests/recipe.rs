//! `peft-workbench recipe`: what the folder holds for each method, how it starts, and what
//! is refused with its reason. (The recipe's PyTorch run against ours, step for step, is
//! `scripts/verify-recipe.sh`, which needs the Python venv.)

use candle_core::Device;
use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::peft::{MethodConfig, RecipeStart};
use peft_workbench::{recipe, train};

fn config(preset: &str, overrides: &[&str]) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(preset);
    let mut o: Vec<String> = vec![
        "steps=6".into(),
        "eval_every=6".into(),
        "eval_examples=4".into(),
    ];
    o.extend(overrides.iter().map(|s| s.to_string()));
    RunConfig::load(&path, &o).unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every method either gets a folder with what train.py reads, started as its fact says,
/// or is refused with a reason and leaves nothing behind.
#[test]
fn every_method_gets_a_recipe_or_a_reason() {
    for method in MethodConfig::all_defaults() {
        let preset = format!("{}.toml", method.kind());
        let cfg = config(&preset, &[]);
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("recipe");
        let written = recipe::write(&cfg, &out, None);
        match cfg.method.recipe_start() {
            RecipeStart::Refused(why) => {
                let e = format!("{:#}", written.unwrap_err());
                assert!(e.contains(why), "{e}");
                assert!(!out.exists(), "a refused recipe leaves no folder");
                continue;
            }
            start => {
                let w = written.unwrap_or_else(|e| panic!("{}: {e:#}", method.kind()));
                assert_eq!(w.start, start);
            }
        }
        for f in [
            "recipe.json",
            "train.py",
            "launch.sh",
            "requirements.txt",
            "README.md",
            "train.jsonl",
            "eval.jsonl",
            "order.json",
            "base_model/model.safetensors",
            "accelerate/ddp.yaml",
            "accelerate/fsdp.yaml",
            "accelerate/zero2.yaml",
            "accelerate/zero3.yaml",
        ] {
            assert!(out.join(f).is_file(), "{}: no {f}", method.kind());
        }
        let r = json(&out.join("recipe.json"));
        assert_eq!(r["method"], method.kind());
        assert_eq!(r["steps"], cfg.steps);
        assert_eq!(r["batch_size"], cfg.batch_size);
        assert_eq!(r["seed"], cfg.seed);
        assert_eq!(r["optimizer"]["lr"], cfg.optimizer.lr);
        assert_eq!(r["optimizer"]["max_grad_norm"], cfg.optimizer.max_grad_norm);
        assert_eq!(
            r["trainable_params"],
            cfg.method.trainable_params(
                &peft_workbench::models::ModelFiles::open("builtin")
                    .unwrap()
                    .config,
            )
        );
        let expected_start = match cfg.method.recipe_start() {
            RecipeStart::OurTensors => "our_tensors",
            RecipeStart::PeftInit(_) => "peft_init",
            RecipeStart::BaseTensors => "base_tensors",
            RecipeStart::AdapterHub => "adapterhub",
            RecipeStart::Refused(_) => unreachable!(),
        };
        assert_eq!(r["start"], expected_start);
        // PEFT's format, or ours for the bottleneck adapters AdapterHub trains.
        let init_file = match expected_start {
            "adapterhub" => "init_adapter/method.json",
            _ => "init_adapter/adapter_config.json",
        };
        assert_eq!(
            out.join(init_file).is_file(),
            expected_start != "base_tensors",
            "{}",
            method.kind()
        );
        let requirements = std::fs::read_to_string(out.join("requirements.txt")).unwrap();
        assert_eq!(
            requirements.contains("adapters=="),
            expected_start == "adapterhub",
            "{requirements}"
        );
        // One batch of example indices per step, each the run's batch size.
        let order = json(&out.join("order.json"));
        let order = order.as_array().unwrap();
        assert_eq!(order.len(), cfg.steps);
        let examples = std::fs::read_to_string(out.join("train.jsonl"))
            .unwrap()
            .lines()
            .count();
        for b in order {
            let b = b.as_array().unwrap();
            assert_eq!(b.len(), cfg.batch_size);
            assert!(b.iter().all(|i| (i.as_u64().unwrap() as usize) < examples));
        }
    }
}

/// The recipe's initial adapter is the run's step 0: the same tensors as the adapter of the
/// same run stopped before its first step.
#[test]
fn the_initial_adapter_is_the_runs_step_0() {
    let cfg = config("lora.toml", &[]);
    let d = tempfile::tempdir().unwrap();
    recipe::write(&cfg, &d.path().join("recipe"), None).unwrap();
    train::run(
        &cfg,
        1,
        Some(&d.path().join("run")),
        None,
        &mut |_| {},
        &mut || true,
    )
    .unwrap();
    let load = |p: &Path| candle_core::safetensors::load(p, &Device::Cpu).unwrap();
    let init = load(
        &d.path()
            .join("recipe/init_adapter/adapter_model.safetensors"),
    );
    let run = load(&d.path().join("run/adapter/adapter_model.safetensors"));
    assert_eq!(init.len(), run.len());
    for (name, t) in &init {
        let diff = (t - &run[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
}

/// A recipe never writes over a folder that holds something, and BitFit without added biases
/// (what transformers' model has) is written.
#[test]
fn refusals_name_their_reason() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("keep.txt"), "mine").unwrap();
    let e = recipe::write(&config("lora.toml", &[]), d.path(), None).unwrap_err();
    assert!(format!("{e:#}").contains("already holds files"), "{e:#}");
    assert_eq!(
        std::fs::read_to_string(d.path().join("keep.txt")).unwrap(),
        "mine"
    );
    let bitfit = config("bitfit.toml", &["method.add_missing_biases=false"]);
    let out = d.path().join("bitfit");
    let w = recipe::write(&bitfit, &out, None).unwrap();
    assert_eq!(w.start, RecipeStart::BaseTensors);
    let r = json(&out.join("recipe.json"));
    let names = r["trainable_base"].as_array().unwrap();
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n.as_str().unwrap().contains("norm")));
}

/// `--to llamafactory`: LoRA's YAML carries the run's method and training values, its data
/// the run's examples in Alpaca form; a method LLaMA-Factory lacks is refused by name.
#[test]
fn a_llama_factory_recipe_for_lora_and_a_refusal_for_ia3() {
    use peft_workbench::recipe::llamafactory;
    let d = tempfile::tempdir().unwrap();
    let cfg = config("dora.toml", &["method.rank=4", "optimizer.lr=2e-5"]);
    let out = d.path().join("lf");
    let n = llamafactory::write(&cfg, &out, "/models/base").unwrap();
    let yaml = std::fs::read_to_string(out.join("train.yaml")).unwrap();
    for line in [
        "model_name_or_path: \"/models/base\"",
        "finetuning_type: lora",
        "lora_rank: 4",
        "use_dora: true",
        "lora_target: \"q_proj,v_proj\"",
        "learning_rate: 0.00002",
        "max_steps: 6",
        "per_device_train_batch_size: 8",
        "template: empty",
    ] {
        assert!(yaml.lines().any(|l| l == line), "no `{line}` in\n{yaml}");
    }
    let train = json(&out.join("data/train.json"));
    assert_eq!(train.as_array().unwrap().len(), n);
    assert!(train[0]["instruction"].is_string() && train[0]["output"].is_string());
    let info = json(&out.join("data/dataset_info.json"));
    assert_eq!(info["workbench_train"]["file_name"], "train.json");
    let e = llamafactory::write(&config("ia3.toml", &[]), &d.path().join("ia3"), "x").unwrap_err();
    assert!(
        format!("{e:#}").contains("LLaMA-Factory has no IA3"),
        "{e:#}"
    );
    assert!(!d.path().join("ia3").exists());
}

/// An encoder classifier's recipe: its examples carry their class, recipe.json names the
/// classes, the count includes the head (PEFT's modules_to_save), and full fine-tuning's
/// head travels as init_head.safetensors; bottleneck adapters on BERT are refused.
#[test]
fn a_bert_classifier_gets_a_classification_recipe() {
    let minilm = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-minilm-l6-v2");
    assert!(
        minilm.join("model.safetensors").is_file(),
        "{} is missing: run `bash scripts/fetch-models.sh` first",
        minilm.display()
    );
    let model = format!("model={}", minilm.display());
    let on_bert = [
        model.as_str(),
        "dataset=builtin:sentiment-labels",
        "max_seq_len=64",
    ];
    let d = tempfile::tempdir().unwrap();
    let lora = config("minilm-lora-sentiment.toml", &on_bert);
    let w = recipe::write(&lora, &d.path().join("lora"), None).unwrap();
    assert_eq!(w.start, RecipeStart::OurTensors);
    let r = json(&d.path().join("lora/recipe.json"));
    assert_eq!(r["task"], "classification");
    assert_eq!(r["labels"].as_array().unwrap().len(), 2);
    // LoRA on query and value of 6 layers (r = 8, h = 384), and the head 384 × 2 + 2.
    assert_eq!(r["trainable_params"], 6 * 2 * 8 * (384 + 384) + 384 * 2 + 2);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(d.path().join("lora/train.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(first["label"].as_u64().unwrap() < 2 && first.get("loss_mask").is_none());

    let full = config("full.toml", &on_bert);
    recipe::write(&full, &d.path().join("full"), None).unwrap();
    let head =
        candle_core::safetensors::load(d.path().join("full/init_head.safetensors"), &Device::Cpu)
            .unwrap();
    let mut names: Vec<_> = head.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["classifier.bias", "classifier.weight"]);

    let e = recipe::llamafactory::write(&lora, &d.path().join("factory"), "minilm").unwrap_err();
    assert!(format!("{e:#}").contains("encoder classifier"), "{e:#}");

    let adapter = config("adapter.toml", &on_bert);
    let e = recipe::write(&adapter, &d.path().join("adapter"), None).unwrap_err();
    assert!(format!("{e:#}").contains("AdapterHub's BERT"), "{e:#}");
    assert!(!d.path().join("adapter").exists());

    // The window asks the same question before it offers an export.
    use peft_workbench::recipe::Target;
    let why = |t: Target, cfg: &peft_workbench::config::RunConfig, classifier| {
        t.refusal(&cfg.method, classifier)
            .map(|r| r.to_string())
            .unwrap_or_default()
    };
    assert!(why(Target::Transformers, &adapter, true).contains("AdapterHub's BERT"));
    assert!(why(Target::LlamaFactory, &lora, true).contains("encoder classifier"));
    assert_eq!(Target::Transformers.refusal(&adapter.method, false), None);
    assert_eq!(Target::LlamaFactory.refusal(&lora.method, false), None);
}
