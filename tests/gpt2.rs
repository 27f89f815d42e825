//! GPT-2 (tests/fixtures/tiny-gpt2: a small random GPT-2 saved by transformers, Conv1D weights
//! and bare names as the released checkpoints have them): our forward pass gives
//! transformers' logits, gradients match finite differences, and LoRA on its fused `c_attn`
//! trains, exports as PEFT writes it for Conv1D, and merges back into a GPT-2 checkpoint.

mod common;
use common::assert_matches_finite_differences;

use candle_core::{Device, Tensor, Var};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use peft_workbench::config::RunConfig;
use peft_workbench::models::{Decoder, Hooks, LoadedModel, Model, ModelFiles};
use peft_workbench::peft::full::{Full, FullConfig};
use peft_workbench::peft::import::last_logits;

fn tiny_gpt2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2")
}

#[test]
fn logits_match_transformers() {
    let dir = tiny_gpt2();
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let (ids, logits) =
            last_logits(dir.to_str().unwrap(), None, text, &common::test_device()).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(case["token_ids"].clone()).unwrap();
        assert_eq!(ids, want_ids);
        let want: Vec<f32> = serde_json::from_value(case["logits"].clone()).unwrap();
        let worst = logits
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "{text:?}: logits differ by {worst}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    let files = ModelFiles::open(tiny_gpt2().to_str().unwrap()).unwrap();
    let mut full = Full::new(FullConfig {});
    let loaded = LoadedModel::load(&files, &mut full, &Device::Cpu).unwrap();
    let Model::Gpt2(model) = &loaded.model else {
        panic!("loads as GPT-2")
    };
    let ids = Tensor::new(&[[5u32, 9, 3, 7, 2, 30]], &Device::Cpu).unwrap();
    let targets = Tensor::new(&[9u32, 3, 7, 2, 30, 11], &Device::Cpu).unwrap();
    let loss = || {
        let logits = model.forward(&ids, &Hooks::default(), true).unwrap();
        candle_nn::loss::cross_entropy(&logits.squeeze(0).unwrap(), &targets).unwrap()
    };
    let grads = loss().backward().unwrap();
    let vars: HashMap<String, Var> = loaded.weights.trained().iter().cloned().collect();
    for name in [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.1.ln_2.bias",
        "transformer.h.1.mlp.c_fc.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
    ] {
        let var = &vars[name];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient reached {name}"));
        assert_matches_finite_differences(name, var, g, 3, || loss().to_scalar::<f32>().unwrap());
    }
}

#[test]
fn lora_on_c_attn_trains_exports_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_gpt2().display().to_string();
    let cfg = RunConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml"),
        &[
            format!("model={model}"),
            "steps=30".into(),
            "eval_every=30".into(),
            "eval_examples=16".into(),
            "max_seq_len=32".into(),
        ],
    )
    .unwrap();
    let run = dir.path().join("run");
    let s =
        peft_workbench::train::run(&cfg, 1, Some(&run), None, &mut |_| {}, &mut || false).unwrap();
    assert!(
        s.final_eval_loss < s.initial_eval_loss,
        "{} -> {}",
        s.initial_eval_loss,
        s.final_eval_loss
    );
    // q_proj and v_proj are both c_attn here: 2 layers × r(32 + 96).
    assert_eq!(s.trainable_params, 2 * 8 * (32 + 96));
    let adapter = run.join("adapter");
    let c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(c["fan_in_fan_out"], true);
    assert_eq!(c["target_modules"], serde_json::json!(["c_attn"]));
    let text = "Review: the food was good.\nLabel:";
    let (_, adapted) = last_logits(&model, Some(&adapter), text, &common::test_device()).unwrap();
    let merged = dir.path().join("merged");
    let files = ModelFiles::open(&model).unwrap();
    peft_workbench::peft::import::ImportedAdapter::load(&adapter, &files.config, &Device::Cpu)
        .unwrap()
        .merge_into(&files, &merged)
        .unwrap();
    // The merged checkpoint keeps GPT-2's Conv1D layout and gives the adapted logits.
    let shapes =
        candle_core::safetensors::load(merged.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(
        shapes["transformer.h.0.attn.c_attn.weight"].dims(),
        [32, 96]
    );
    let (_, from_merged) =
        last_logits(merged.to_str().unwrap(), None, text, &common::test_device()).unwrap();
    let worst = adapted
        .iter()
        .zip(&from_merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "merged logits differ by {worst}");
}

/// Every method that attaches to GPT-2, frozen base or not, gets the same loss and
/// gradients on the CPU's fused path (which frees activations no backward pass reads) as
/// on the composed path a GPU runs (which frees nothing).
#[test]
fn every_method_gets_the_composed_gradients() {
    use peft_workbench::kernels::fused::without_fused_kernels;
    use peft_workbench::peft::{BuildContext, MethodConfig};
    let files = ModelFiles::open(tiny_gpt2().to_str().unwrap()).unwrap();
    let ids = Tensor::new(&[[5u32, 9, 3, 7, 2, 30], [4, 8, 1, 6, 12, 2]], &Device::Cpu).unwrap();
    let targets = Tensor::new(&[9u32, 3, 7, 2, 30, 11, 8, 1, 6, 12, 2, 5], &Device::Cpu).unwrap();
    let run = |m: &MethodConfig| -> Option<(f32, Vec<(String, Tensor)>)> {
        let ctx = BuildContext {
            model: &files.config,
            seed: 5,
            device: &Device::Cpu,
            total_steps: 10,
        };
        let mut method = m.build(&ctx).ok()?;
        let loaded = LoadedModel::load(&files, method.as_mut(), &Device::Cpu).ok()?;
        let mut vars = loaded.weights.trained().to_vec();
        vars.extend(method.vars());
        // Away from the initialisation (LoRA's B is zero there, which hides A's gradient).
        for (i, (_, v)) in vars.iter().enumerate() {
            let t = v.as_tensor();
            let wave = Tensor::arange(0f32, t.elem_count() as f32, &Device::Cpu).unwrap();
            let wave = ((wave * (0.7 + i as f64 * 0.13)).unwrap().sin().unwrap() * 0.2).unwrap();
            v.set(&(t + wave.reshape(t.shape()).unwrap()).unwrap())
                .unwrap();
        }
        let Model::Gpt2(model) = &loaded.model else {
            panic!("loads as GPT-2")
        };
        let logits = model
            .forward(&ids, &method.hooks(false).unwrap(), true)
            .unwrap();
        let t = logits.dim(1).unwrap();
        let logits = logits
            .narrow(1, t - 6, 6)
            .unwrap()
            .reshape((12, ()))
            .unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &targets).unwrap();
        let grads = loss.backward().unwrap();
        let grads = vars
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), grads.get(v.as_tensor())?.clone())))
            .collect();
        Some((loss.to_scalar::<f32>().unwrap(), grads))
    };
    let mut checked = Vec::new();
    for m in MethodConfig::all_defaults() {
        let Some((loss_f, grads_f)) = run(&m) else {
            continue;
        };
        let (loss_c, grads_c) = without_fused_kernels(|| run(&m)).unwrap();
        let what = m.kind();
        assert!(
            (loss_f - loss_c).abs() <= 1e-5 * loss_f.abs(),
            "{what}: loss {loss_f} vs {loss_c}"
        );
        assert_eq!(grads_f.len(), grads_c.len(), "{what}");
        assert!(!grads_f.is_empty(), "{what}: no gradient");
        for ((name, gf), (_, gc)) in grads_f.iter().zip(&grads_c) {
            let err = common::max_abs_diff(gf, gc);
            let scale = gc
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                err <= 1e-4 * scale + 1e-6,
                "{what}: {name}: off by {err} (largest {scale})"
            );
        }
        checked.push(what);
    }
    for must in ["lora", "ia3", "prefix-tuning", "prompt-tuning", "full"] {
        assert!(
            checked.contains(&must),
            "{must} was not checked on GPT-2: {checked:?}"
        );
    }
}
