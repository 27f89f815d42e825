//! Helpers shared by the integration tests (each test file uses some of them).
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use std::collections::HashMap;

use peft_workbench::models::{Injector, Llama, LlamaConfig, Weights};
use peft_workbench::pretrain::{PretrainArgs, init_weights, model_config};

/// The device the reference tests run on: `PEFT_WORKBENCH_TEST_DEVICE` (`cuda:0` in
/// scripts/gpu-check.sh), the CPU without it.
pub fn test_device() -> Device {
    let name = std::env::var("PEFT_WORKBENCH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    peft_workbench::train::device_for(&name).unwrap()
}

/// Largest absolute elementwise difference of two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    peft_workbench::models::max_abs_diff(a, b).unwrap()
}

/// A tiny random LLaMA: vocabulary 32, hidden 16, 2 layers, 4 heads sharing 2 key/value heads.
pub fn tiny_config() -> LlamaConfig {
    let args = PretrainArgs {
        corpus: "unused".into(),
        out: "unused".into(),
        vocab: 32,
        hidden: 16,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate: 24,
        steps: 0,
        batch: 1,
        chunk_chars: 0,
        lr: 0.0,
        seed: 0,
        from: None,
        warmup: 0,
    };
    let mut cfg = model_config(&args, 32, 0);
    cfg.max_position_embeddings = 64;
    cfg
}

pub fn tiny_weights(cfg: &LlamaConfig, seed: u64) -> HashMap<String, Tensor> {
    // Norm weights away from 1 and larger matrices, so every part of the graph matters.
    init_weights(cfg, seed)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            let t = if n.contains("norm") {
                (t + 0.1).unwrap()
            } else {
                (t * 10.0).unwrap()
            };
            (n, t)
        })
        .collect()
}

pub fn build(
    cfg: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    inj: &mut dyn Injector,
) -> (Llama, Weights) {
    build_in(cfg, tensors, inj, candle_core::DType::F32)
}

/// `build` with the projection and embedding matrices in `dtype` (a mixed-precision run).
pub fn build_in(
    cfg: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    inj: &mut dyn Injector,
    dtype: candle_core::DType,
) -> (Llama, Weights) {
    let mut w = Weights::from_tensors(tensors.clone());
    w.set_matrix_dtype(dtype);
    let m = Llama::load(cfg, &mut w, inj, &Device::Cpu).unwrap();
    (m, w)
}

pub fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// Checks the `k` entries of `var` with the largest analytic gradient `grad` against central
/// finite differences of `objective` (step 1e-2, f32), and that the gradient is not ~0 (a
/// stopped backward pass shows as zeros). Restores `var` afterwards.
pub fn assert_matches_finite_differences(
    what: &str,
    var: &candle_core::Var,
    grad: &Tensor,
    k: usize,
    objective: impl Fn() -> f32,
) {
    let g = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let start = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let shape = var.as_tensor().shape().clone();
    let set = |v: Vec<f32>| {
        var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu).unwrap())
            .unwrap()
    };
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by(|a, b| g[*b].abs().total_cmp(&g[*a].abs()));
    assert!(
        g[order[0]].abs() > 1e-5,
        "{what}: gradient is ~0, backprop stops before it"
    );
    for &i in order.iter().take(k) {
        let probe = |delta: f32| {
            let mut v = start.clone();
            v[i] += delta;
            set(v);
            objective()
        };
        // Two step sizes: a kink (ReLU) or strong curvature within one step spoils a central
        // difference, f32 rounding spoils a too small one; a real gradient bug spoils both.
        let fds: Vec<f32> = [1e-2f32, 3e-3, 1e-3]
            .iter()
            .map(|&eps| (probe(eps) - probe(-eps)) / (2.0 * eps))
            .collect();
        set(start.clone());
        let tol = 2e-3 + 0.05 * g[i].abs();
        assert!(
            fds.iter().any(|fd| (fd - g[i]).abs() <= tol),
            "{what}[{i}]: analytic {} vs numeric {fds:?}",
            g[i]
        );
    }
}
