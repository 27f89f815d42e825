//! The update map of real runs on the built-in model, each value checked against a direct
//! computation from the files the run saved: LoRA's ‖s·BA‖/‖W‖ (zero at step 0, non-zero
//! after training, only on the projections LoRA is attached to), IA3's ‖W·l − W‖/‖W‖,
//! Prompt Tuning's virtual-token norms, prefix RMS per layer, and bottleneck adapters' share
//! of the residual stream.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::models::ModelFiles;
use peft_workbench::peft::update_map::{ACTIVATION_MEASURE, UpdateMap, relative_change};
use peft_workbench::train;

fn config(preset: &str, overrides: &[&str]) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(preset);
    let mut o: Vec<String> = vec!["eval_every=1000".into(), "eval_examples=8".into()];
    o.extend(overrides.iter().map(|s| s.to_string()));
    RunConfig::load(&path, &o).unwrap()
}

/// Runs `steps` steps (0: stopped before the first) and returns the run's saved map and
/// adapter tensors.
fn trained(cfg: &RunConfig, steps: usize, dir: &Path) -> (UpdateMap, HashMap<String, Tensor>) {
    let mut calls = 0;
    train::run(cfg, 1, Some(dir), None, &mut |_| {}, &mut || {
        calls += 1;
        calls > steps
    })
    .unwrap();
    let map: UpdateMap =
        serde_json::from_str(&std::fs::read_to_string(dir.join(train::UPDATE_MAP_FILE)).unwrap())
            .unwrap();
    let adapter = dir.join("adapter");
    let file = ["adapter_model.safetensors", "model.safetensors"]
        .iter()
        .map(|f| adapter.join(f))
        .find(|p| p.is_file())
        .unwrap();
    (
        map,
        candle_core::safetensors::load(file, &Device::Cpu).unwrap(),
    )
}

fn base() -> HashMap<String, Tensor> {
    ModelFiles::open("builtin")
        .unwrap()
        .weights(&Device::Cpu)
        .unwrap()
        .tensors()
        .clone()
}

fn value(map: &UpdateMap, layer: Option<usize>, module: &str) -> f64 {
    map.cells
        .iter()
        .find(|c| c.layer == layer && c.module == module)
        .unwrap_or_else(|| panic!("no cell {layer:?} {module} in {map:?}"))
        .value
}

#[test]
fn lora_is_zero_at_step_0_then_measured_where_it_is_attached() {
    let cfg = config("lora.toml", &["steps=20"]);
    let d0 = tempfile::tempdir().unwrap();
    let (map0, _) = trained(&cfg, 0, d0.path());
    let layers = 6;
    assert_eq!(
        map0.cells.len(),
        layers * 2,
        "q_proj and v_proj of each layer"
    );
    assert!(
        map0.cells.iter().all(|c| c.value == 0.0),
        "B = 0 at the start: {map0:?}"
    );
    assert!(map0.cells.iter().all(|c| c.effective_rank() == Some(0.0)));

    let d = tempfile::tempdir().unwrap();
    let (map, tensors) = trained(&cfg, 20, d.path());
    let mut modules: Vec<&str> = map.cells.iter().map(|c| c.module.as_str()).collect();
    modules.sort();
    modules.dedup();
    assert_eq!(modules, ["self_attn.q_proj", "self_attn.v_proj"]);
    assert!(map.cells.iter().all(|c| c.value > 0.0));
    // s·BA against W, from the saved tensors alone.
    let base = base();
    let scale = 16.0 / 8.0;
    for layer in [0, 5] {
        for m in ["q_proj", "v_proj"] {
            let key = |ab: &str| {
                format!("base_model.model.model.layers.{layer}.self_attn.{m}.lora_{ab}.weight")
            };
            let delta = (tensors[&key("B")].matmul(&tensors[&key("A")]).unwrap() * scale).unwrap();
            let w = &base[&format!("model.layers.{layer}.self_attn.{m}.weight")];
            let direct = relative_change(&(w + &delta).unwrap(), w).unwrap();
            let mapped = value(&map, Some(layer), &format!("self_attn.{m}"));
            assert!(
                (direct - mapped).abs() <= 1e-4 * direct,
                "layer {layer} {m}: map {mapped}, direct {direct}"
            );
            // Its singular values: r of them, their squares summing to ‖s·BA‖²_F.
            let cell = map
                .cells
                .iter()
                .find(|c| c.layer == Some(layer) && c.module == format!("self_attn.{m}"))
                .unwrap();
            assert_eq!(cell.singular_values.len(), 8);
            let frob2 = delta
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64;
            let sum2: f64 = cell.singular_values.iter().map(|s| s * s).sum();
            assert!((sum2 - frob2).abs() <= 1e-4 * frob2, "{sum2} vs {frob2}");
            let er = cell.effective_rank().unwrap();
            assert!(er > 0.0 && er <= 8.0, "{er}");
        }
    }
}

#[test]
fn ia3_is_the_relative_change_its_vectors_make() {
    let cfg = config("ia3.toml", &["steps=10"]);
    let d = tempfile::tempdir().unwrap();
    let (map, tensors) = trained(&cfg, 10, d.path());
    let base = base();
    assert_eq!(map.cells.len(), 6 * 3);
    for (module, path) in [
        ("self_attn.k_proj", "self_attn.k_proj"),
        ("mlp.down_proj", "mlp.down_proj"),
    ] {
        let l = &tensors[&format!("base_model.model.model.layers.2.{path}.ia3_l")];
        let w = &base[&format!("model.layers.2.{path}.weight")];
        // [out, 1] scales rows (keys, values); [1, in] columns (the feed-forward input).
        let scaled = w.broadcast_mul(&l.to_dtype(DType::F32).unwrap()).unwrap();
        let direct = relative_change(&scaled, w).unwrap();
        let mapped = value(&map, Some(2), module);
        assert!(
            direct > 0.0 && (direct - mapped).abs() <= 1e-4 * direct,
            "{module}: {mapped} vs {direct}"
        );
    }
}

#[test]
fn soft_prompts_and_prefixes_are_measured_per_token_and_per_layer() {
    let cfg = config("prompt-tuning.toml", &["steps=5"]);
    let d = tempfile::tempdir().unwrap();
    let (map, tensors) = trained(&cfg, 5, d.path());
    let prompt = &tensors["prompt_embeddings"];
    let n = prompt.dims()[0];
    assert_eq!(map.cells.len(), n);
    let embed = &base()["model.embed_tokens.weight"];
    let mean = embed
        .sqr()
        .unwrap()
        .sum(1)
        .unwrap()
        .sqrt()
        .unwrap()
        .mean_all()
        .unwrap();
    let first = prompt
        .get(0)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .sqrt()
        .unwrap();
    let direct = (first.to_scalar::<f32>().unwrap() / mean.to_scalar::<f32>().unwrap()) as f64;
    let mapped = value(&map, None, "virtual token 0");
    assert!(
        (direct - mapped).abs() <= 1e-4 * direct,
        "{mapped} vs {direct}"
    );

    let cfg = config("prefix-tuning.toml", &["steps=5"]);
    let d = tempfile::tempdir().unwrap();
    let (map, _) = trained(&cfg, 5, d.path());
    assert_eq!(map.cells.len(), 6 * 2, "a key and a value prefix per layer");
    assert!(map.cells.iter().all(|c| c.value > 0.0 && c.layer.is_some()));
}

/// Lester et al.'s reading of a soft prompt: initialised from a text, each virtual token's
/// nearest vocabulary token at step 0 is the text's own token there (similarity 1).
#[test]
fn a_text_initialised_prompt_reads_as_its_text_at_step_0() {
    let cfg = config("prompt-tuning.toml", &["steps=5"]);
    let peft_workbench::peft::MethodConfig::PromptTuning(pt) = &cfg.method else {
        panic!("{:?}", cfg.method)
    };
    let text = pt.init_text.clone();
    assert!(!text.is_empty(), "the preset starts from a text");
    let d = tempfile::tempdir().unwrap();
    let (map, _) = trained(&cfg, 0, d.path());
    assert_eq!(map.nearest.len(), map.cells.len());
    let tok = ModelFiles::open("builtin").unwrap().tokenizer().unwrap();
    let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
    for n in &map.nearest {
        let (token, sim) = &n.nearest[0];
        let expected = tok
            .decode(&[ids[n.virtual_token % ids.len()]], false)
            .unwrap();
        assert_eq!(token, &expected, "virtual token {}", n.virtual_token);
        assert!(*sim > 0.999, "{sim}");
        assert_eq!(n.nearest.len(), 5);
        assert!(n.nearest.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

/// Trains `cfg` into `dir`, returning the maps it announced, by step.
fn live_maps(cfg: &RunConfig, dir: &Path) -> Vec<(usize, Box<UpdateMap>)> {
    let mut maps = Vec::new();
    train::run(
        cfg,
        1,
        Some(dir),
        None,
        &mut |e| {
            if let train::Event::UpdateMap { step, map, .. } = e {
                maps.push((step, map));
            }
        },
        &mut || false,
    )
    .unwrap();
    maps
}

/// A run measures its map at every evaluation (step 0 included, all zero for LoRA), and
/// the last one is the map it writes when it ends.
#[test]
fn the_map_is_measured_at_each_evaluation() {
    let cfg = config("lora.toml", &["steps=10", "eval_every=5"]);
    let d = tempfile::tempdir().unwrap();
    let maps = live_maps(&cfg, d.path());
    assert_eq!(maps.iter().map(|m| m.0).collect::<Vec<_>>(), [0, 5, 10]);
    assert!(maps[0].1.cells.iter().all(|c| c.value == 0.0));
    assert!(maps[1].1.cells.iter().all(|c| c.value > 0.0));
    let written: UpdateMap = serde_json::from_str(
        &std::fs::read_to_string(d.path().join(train::UPDATE_MAP_FILE)).unwrap(),
    )
    .unwrap();
    // Equal up to the last digit JSON keeps.
    let last = &maps[2].1;
    assert_eq!(last.cells.len(), written.cells.len());
    for (a, b) in last.cells.iter().zip(&written.cells) {
        assert_eq!((a.layer, &a.module), (b.layer, &b.module));
        assert!((a.value - b.value).abs() <= 1e-12 * b.value);
        for (x, y) in a.singular_values.iter().zip(&b.singular_values) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1e-30));
        }
    }
    assert!(
        !d.path().join(".update-map").exists(),
        "the scratch folder is gone"
    );
}

/// Bottleneck adapters are measured on the evaluation passes: one cell per adapter (two per
/// layer for Houlsby), exactly zero at step 0 (`up` starts at zero, so nothing is added),
/// non-zero once trained, and the map written at the end is the last evaluation's.
#[test]
fn adapters_are_measured_against_the_residual_stream_while_the_run_evaluates() {
    let cfg = config("adapter.toml", &["steps=6", "eval_every=3"]);
    let d = tempfile::tempdir().unwrap();
    let maps = live_maps(&cfg, d.path());
    assert_eq!(maps.iter().map(|m| m.0).collect::<Vec<_>>(), [0, 3, 6]);
    let layers = 6;
    for (_, map) in &maps {
        assert_eq!(map.measure, ACTIVATION_MEASURE);
        assert_eq!(map.unmeasured, None);
        assert_eq!(map.cells.len(), 2 * layers, "{map:?}");
        for layer in 0..layers {
            for module in ["attention_adapter", "output_adapter"] {
                value(map, Some(layer), module);
            }
        }
    }
    assert!(maps[0].1.cells.iter().all(|c| c.value == 0.0));
    assert!(maps[2].1.cells.iter().all(|c| c.value > 0.0));
    let written: UpdateMap = serde_json::from_str(
        &std::fs::read_to_string(d.path().join(train::UPDATE_MAP_FILE)).unwrap(),
    )
    .unwrap();
    // Equal up to the last digit JSON keeps.
    assert_eq!(written.cells.len(), maps[2].1.cells.len());
    for (a, b) in maps[2].1.cells.iter().zip(&written.cells) {
        assert_eq!((a.layer, &a.module), (b.layer, &b.module));
        assert!((a.value - b.value).abs() <= 1e-12 * b.value);
    }
    assert_eq!(written.unmeasured, None);
}
