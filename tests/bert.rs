//! The BERT encoder on a tiny random configuration: gradients against finite differences in
//! every kind of layer (LayerNorm, softmax, GELU, pooler, head), padding that changes
//! nothing, and the prompt and key/value-prefix hooks PEFT methods use.

mod common;
use common::assert_matches_finite_differences;

use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

use peft_workbench::models::{Bert, BertConfig, Hooks, Injector, NoMethod, Weights};
use peft_workbench::peft::full::{Full, FullConfig};

fn tiny() -> BertConfig {
    let mut cfg: BertConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 4,
        "num_hidden_layers": 2, "vocab_size": 40, "max_position_embeddings": 32,
    }))
    .unwrap();
    cfg.labels = vec!["a".into(), "b".into(), "c".into()];
    cfg
}

/// Random weights for every tensor the config names (LayerNorm gains near 1).
fn weights(cfg: &BertConfig) -> HashMap<String, Tensor> {
    let mut rng = StdRng::seed_from_u64(3);
    let normal = Normal::new(0.0f32, 0.3).unwrap();
    cfg.tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let mut v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
            if name.ends_with("LayerNorm.weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
        })
        .collect()
}

fn build(cfg: &BertConfig, inj: &mut dyn Injector) -> (Bert, Weights) {
    let mut w = Weights::from_tensors(weights(cfg));
    cfg.prepare_weights(&mut w).unwrap();
    let m = Bert::load(cfg, &mut w, inj).unwrap();
    (m, w)
}

fn batch(rows: &[&[u32]]) -> (Tensor, Vec<usize>) {
    let l = rows.iter().map(|r| r.len()).max().unwrap();
    let flat: Vec<u32> = rows
        .iter()
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, l - r.len())))
        .collect();
    (
        Tensor::from_vec(flat, (rows.len(), l), &Device::Cpu).unwrap(),
        rows.iter().map(|r| r.len()).collect(),
    )
}

fn loss(model: &Bert, hooks: &Hooks) -> Tensor {
    let (ids, lengths) = batch(&[&[1, 5, 9, 3, 7, 2], &[4, 8, 11]]);
    let logits = model.classify(&ids, &lengths, hooks, true).unwrap();
    let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits, &labels).unwrap()
}

#[test]
fn gradients_match_finite_differences_in_every_kind_of_layer() {
    let cfg = tiny();
    let mut full = Full::new(FullConfig {});
    let (model, w) = build(&cfg, &mut full);
    let l = loss(&model, &Hooks::default());
    let grads = l.backward().unwrap();
    let vars: HashMap<String, Var> = w.trained().iter().cloned().collect();
    let checked = [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.attention.self.key.weight",
        "bert.encoder.layer.0.attention.self.value.bias",
        "bert.encoder.layer.0.attention.output.LayerNorm.bias",
        "bert.encoder.layer.1.intermediate.dense.weight",
        "bert.encoder.layer.1.output.dense.weight",
        "bert.encoder.layer.1.output.LayerNorm.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    ];
    for name in checked {
        let var = &vars[name];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient reached {name}"));
        assert_matches_finite_differences(name, var, g, 3, || {
            loss(&model, &Hooks::default()).to_scalar::<f32>().unwrap()
        });
    }
}

/// Padding is hidden from attention: a row's output is the same alone or padded in a batch.
#[test]
fn padding_changes_nothing() {
    let cfg = tiny();
    let (model, _) = build(&cfg, &mut NoMethod);
    let (alone, l1) = batch(&[&[4, 8, 11]]);
    let (padded, l2) = batch(&[&[1, 5, 9, 3, 7, 2], &[4, 8, 11]]);
    let a = model
        .classify(&alone, &l1, &Hooks::default(), false)
        .unwrap();
    let b = model
        .classify(&padded, &l2, &Hooks::default(), false)
        .unwrap();
    let diff =
        peft_workbench::models::max_abs_diff(&a.get(0).unwrap(), &b.get(1).unwrap()).unwrap();
    assert!(diff < 1e-5, "{diff}");
}

/// The head trains under every method: with nothing else attached, it is the only `Var`,
/// a newly made one of one row per label.
#[test]
fn the_head_is_made_for_the_labels_and_always_trains() {
    let cfg = tiny();
    let (_, w) = build(&cfg, &mut NoMethod);
    let trained: Vec<(&str, Vec<usize>)> = w
        .trained()
        .iter()
        .map(|(n, v)| (n.as_str(), v.dims().to_vec()))
        .collect();
    assert_eq!(
        trained,
        [
            ("classifier.weight", vec![3, 16]),
            ("classifier.bias", vec![3])
        ]
    );
    assert_eq!(
        cfg.param_count(),
        w.tensors().values().map(|t| t.elem_count()).sum::<usize>()
    );
}

/// A prompt of virtual tokens and key/value prefixes both reach the output and carry
/// gradients (prompt tuning and prefix tuning on an encoder).
#[test]
fn prompt_and_prefix_hooks_carry_gradients() {
    let cfg = tiny();
    let (model, _) = build(&cfg, &mut NoMethod);
    let prompt =
        Var::from_tensor(&(Tensor::randn(0f32, 1.0, (3, 16), &Device::Cpu).unwrap())).unwrap();
    let kv: Vec<(Var, Var)> = (0..2)
        .map(|_| {
            let t = || {
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 4, 2, 4), &Device::Cpu).unwrap())
                    .unwrap()
            };
            (t(), t())
        })
        .collect();
    let hooks = Hooks {
        prompt_embeds: Some(prompt.as_tensor().clone()),
        kv_prefix: Some(
            kv.iter()
                .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
                .collect(),
        ),
    };
    let plain = loss(&model, &Hooks::default()).to_scalar::<f32>().unwrap();
    let l = loss(&model, &hooks);
    assert!((l.to_scalar::<f32>().unwrap() - plain).abs() > 1e-4);
    let grads = l.backward().unwrap();
    assert_matches_finite_differences(
        "prompt",
        &prompt,
        grads.get(prompt.as_tensor()).unwrap(),
        3,
        || loss(&model, &hooks).to_scalar::<f32>().unwrap(),
    );
    let (k1, _) = &kv[1];
    assert_matches_finite_differences(
        "layer 1 key prefix",
        k1,
        grads.get(k1.as_tensor()).unwrap(),
        3,
        || loss(&model, &hooks).to_scalar::<f32>().unwrap(),
    );
}
