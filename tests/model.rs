//! The LLaMA model on a tiny random configuration: gradients against finite differences
//! (the class of bug where a fused op silently stops backprop), causality, and the hooks
//! PEFT methods use (prompt embeddings, key/value prefixes, LoRA).

mod common;
use common::{
    assert_matches_finite_differences, build, ids, max_abs_diff, tiny_config, tiny_weights,
};

use candle_core::{D, Device, Tensor, Var};
use std::collections::HashMap;

use peft_workbench::models::{Hooks, Llama, NoMethod, Weights};
use peft_workbench::peft::lora::{Lora, LoraConfig};
use peft_workbench::peft::{
    Method,
    full::{Full, FullConfig},
};

/// Mean next-token cross-entropy of a sequence.
fn loss(model: &Llama, seq: &[u32]) -> Tensor {
    let inp = ids(&seq[..seq.len() - 1]);
    let tgt = Tensor::new(&seq[1..], &Device::Cpu).unwrap();
    let logits = model
        .forward(&inp, &Hooks::default(), false)
        .unwrap()
        .squeeze(0)
        .unwrap();
    candle_nn::loss::cross_entropy(&logits, &tgt).unwrap()
}

#[test]
fn gradients_match_finite_differences_in_every_kind_of_layer() {
    let cfg = tiny_config();
    let tensors = tiny_weights(&cfg, 1);
    let mut full = Full::new(FullConfig {});
    let (model, w) = build(&cfg, &tensors, &mut full);
    let seq = [1u32, 5, 9, 3, 7, 2, 30, 11];
    let l = loss(&model, &seq);
    let grads = l.backward().unwrap();
    let vars: HashMap<String, Var> = w.trained().iter().cloned().collect();
    // One tensor of each kind: embeddings, attention projections (through softmax and rope),
    // norms (through RMSNorm), and the MLP.
    let checked = [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
    ];
    for name in checked {
        let var = &vars[name];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient reached {name}"));
        assert_matches_finite_differences(name, var, g, 3, || {
            loss(&model, &seq).to_scalar::<f32>().unwrap()
        });
    }
}

#[test]
fn attention_is_causal() {
    let cfg = tiny_config();
    let (model, _) = build(&cfg, &tiny_weights(&cfg, 2), &mut NoMethod);
    let a = model
        .forward(&ids(&[1, 2, 3, 4, 5]), &Hooks::default(), false)
        .unwrap();
    let b = model
        .forward(&ids(&[1, 2, 3, 9, 9]), &Hooks::default(), false)
        .unwrap();
    let early = |t: &Tensor| t.narrow(1, 0, 3).unwrap();
    assert_eq!(max_abs_diff(&early(&a), &early(&b)), 0.0);
    assert!(max_abs_diff(&a.narrow(1, 3, 1).unwrap(), &b.narrow(1, 3, 1).unwrap()) > 1e-3);
}

#[test]
fn prompt_embeddings_equal_the_tokens_they_embed() {
    let cfg = tiny_config();
    let (model, _) = build(&cfg, &tiny_weights(&cfg, 3), &mut NoMethod);
    let whole = model
        .forward(&ids(&[4, 8, 15, 16, 23]), &Hooks::default(), false)
        .unwrap();
    let prompt = model.embed(&ids(&[4, 8])).unwrap().squeeze(0).unwrap();
    let hooks = Hooks {
        prompt_embeds: Some(prompt),
        kv_prefix: None,
    };
    let split = model.forward(&ids(&[15, 16, 23]), &hooks, false).unwrap();
    assert_eq!(split.dims(), whole.dims());
    assert!(max_abs_diff(&split, &whole) < 1e-5);
}

#[test]
fn key_value_prefix_equals_the_sequence_it_was_computed_from() {
    let cfg = tiny_config();
    let (model, _) = build(&cfg, &tiny_weights(&cfg, 4), &mut NoMethod);
    let whole = model
        .forward(&ids(&[4, 8, 15, 16, 23]), &Hooks::default(), false)
        .unwrap();
    let hooks = Hooks {
        prompt_embeds: None,
        kv_prefix: Some(model.key_values(&ids(&[4, 8])).unwrap()),
    };
    let rest = model.forward(&ids(&[15, 16, 23]), &hooks, false).unwrap();
    assert!(max_abs_diff(&rest, &whole.narrow(1, 2, 3).unwrap()) < 1e-5);
}

#[test]
fn lora_starts_at_the_base_model_and_merges_exactly() {
    let cfg = tiny_config();
    let tensors = tiny_weights(&cfg, 5);
    let (base, _) = build(&cfg, &tensors, &mut NoMethod);
    let lcfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        ..Default::default()
    };
    let mut lora = Lora::new(lcfg.clone(), 0, Device::Cpu);
    let (adapted, w) = build(&cfg, &tensors, &mut lora);
    assert!(w.trained().is_empty(), "LoRA trains no base tensor");
    let x = ids(&[3, 1, 4, 1, 5, 9, 2, 6]);
    let y0 = base.forward(&x, &Hooks::default(), false).unwrap();
    let y1 = adapted.forward(&x, &Hooks::default(), false).unwrap();
    assert_eq!(
        max_abs_diff(&y0, &y1),
        0.0,
        "B = 0 must give the base model exactly"
    );

    // Give every B a value, then merge W + s·B·A into a plain model: same outputs.
    let vars = lora.vars();
    assert_eq!(vars.len(), 2 * 3 * cfg.num_hidden_layers);
    let mut merged = tensors.clone();
    for pair in vars.chunks(2) {
        let (a_name, a) = &pair[0];
        let (_, b) = &pair[1];
        b.set(&b.as_tensor().randn_like(0.0, 0.5).unwrap()).unwrap();
        let path = a_name
            .strip_prefix("base_model.model.")
            .and_then(|p| p.strip_suffix(".lora_A.weight"))
            .unwrap();
        let key = format!("{path}.weight");
        let delta = (b.as_tensor().matmul(a.as_tensor()).unwrap() * lcfg.scaling()).unwrap();
        merged.insert(key.clone(), (&merged[&key] + delta).unwrap());
    }
    let y2 = adapted.forward(&x, &Hooks::default(), false).unwrap();
    assert!(
        max_abs_diff(&y0, &y2) > 1e-2,
        "a non-zero B changes the output"
    );
    let (merged_model, _) = build(&cfg, &merged, &mut NoMethod);
    let y3 = merged_model.forward(&x, &Hooks::default(), false).unwrap();
    assert!(
        max_abs_diff(&y2, &y3) < 1e-4,
        "merged differs by {}",
        max_abs_diff(&y2, &y3)
    );
}

#[test]
fn wrong_shapes_and_missing_weights_are_named() {
    let cfg = tiny_config();
    let mut tensors = tiny_weights(&cfg, 6);
    tensors.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let mut w = Weights::from_tensors(tensors.clone());
    let e = Llama::load(&cfg, &mut w, &mut NoMethod, &Device::Cpu).unwrap_err();
    assert!(
        e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
    tensors.remove("model.norm.weight");
    tensors.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        tiny_weights(&cfg, 6)["model.layers.1.mlp.up_proj.weight"].clone(),
    );
    let mut w = Weights::from_tensors(tensors);
    let e = Llama::load(&cfg, &mut w, &mut NoMethod, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("model.norm.weight"), "{e}");
}

#[test]
fn logits_softmax_sums_to_one() {
    // Guards the tied output head: logits over the whole vocabulary.
    let cfg = tiny_config();
    let (model, _) = build(&cfg, &tiny_weights(&cfg, 7), &mut NoMethod);
    let l = model
        .forward(&ids(&[1, 2]), &Hooks::default(), false)
        .unwrap();
    assert_eq!(l.dims(), &[1, 2, 32]);
    let p = candle_nn::ops::softmax(&l, D::Minus1)
        .unwrap()
        .sum(D::Minus1)
        .unwrap();
    let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(p.iter().all(|s| (s - 1.0).abs() < 1e-5));
}

/// Greedy generation with the key/value cache picks the same tokens as recomputing the
/// whole sequence each step — plain, with prompt embeddings, and with key/value prefixes.
#[test]
fn cached_generation_equals_recomputing_the_sequence() {
    use peft_workbench::generate::{Sampling, generate};
    let cfg = tiny_config();
    let (model, _) = build(&cfg, &tiny_weights(&cfg, 8), &mut NoMethod);
    let prompt_embeds = model.embed(&ids(&[4, 8, 3])).unwrap().squeeze(0).unwrap();
    let prefix = model.key_values(&ids(&[9, 2])).unwrap();
    let cases = [
        Hooks::default(),
        Hooks {
            prompt_embeds: Some(prompt_embeds),
            kv_prefix: None,
        },
        Hooks {
            prompt_embeds: None,
            kv_prefix: Some(prefix),
        },
    ];
    let s = Sampling {
        max_tokens: 12,
        ..Default::default()
    };
    for hooks in &cases {
        let got = generate(&model, hooks, &[1, 5, 7], &s, &[], &mut |_| true).unwrap();
        let mut seq = vec![1u32, 5, 7];
        let mut want = Vec::new();
        for _ in 0..12 {
            let logits = model.forward(&ids(&seq), hooks, false).unwrap();
            let last = logits
                .get(0)
                .unwrap()
                .get(logits.dim(1).unwrap() - 1)
                .unwrap();
            let next = last.argmax(D::Minus1).unwrap().to_scalar::<u32>().unwrap();
            want.push(next);
            seq.push(next);
        }
        assert_eq!(got, want);
    }
}
