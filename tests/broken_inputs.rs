//! Bad input, one case at a time, through the CLI as a user meets it: a broken model folder,
//! GGUF file, tokenizer, dataset, adapter or configuration ends the command with a non-zero
//! exit and one `error:` line naming what is wrong, never a panic. The broken files are a
//! committed corpus (tests/fixtures/broken, made by tests/reference/make_broken_corpus.py);
//! the fuzz tests in tests/fuzz_loaders.rs start from its valid files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peft-workbench"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn broken(name: &str) -> PathBuf {
    root().join("tests/fixtures/broken").join(name)
}

/// Runs the command; it must fail with a last stderr line `error: …` holding every needle.
fn fails_naming(args: &[&str], needles: &[&str]) {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("error:"), "{args:?}: {err}");
    for n in needles {
        assert!(last.contains(n), "{args:?}: `{n}` not in {last:?}");
    }
}

/// A model folder: the built-in model's config and tokenizer with `weights` as its
/// safetensors file (and `config` as config.json, when given).
fn model_dir(tmp: &Path, name: &str, weights: Option<&Path>, config: Option<&Path>) -> PathBuf {
    let d = tmp.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let builtin = root().join("assets/models/builtin");
    std::fs::copy(
        config
            .map(Path::to_path_buf)
            .unwrap_or(builtin.join("config.json")),
        d.join("config.json"),
    )
    .unwrap();
    std::fs::copy(builtin.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    if let Some(w) = weights {
        std::fs::copy(w, d.join("model.safetensors")).unwrap();
    }
    d
}

fn logits(model: &Path) -> Vec<String> {
    ["logits", "--model", model.to_str().unwrap(), "--text", "hi"]
        .map(String::from)
        .to_vec()
}

fn run(args: Vec<String>, needles: &[&str]) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_naming(&a, needles);
}

#[test]
fn broken_model_folders_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let no_config = t.join("no-config");
    std::fs::create_dir_all(&no_config).unwrap();
    run(logits(&no_config), &["no config.json"]);
    let d = model_dir(t, "mamba", None, Some(&broken("config-unknown-arch.json")));
    run(logits(&d), &["mamba", "llama", "bert"]);
    let d = model_dir(
        t,
        "zero-heads",
        None,
        Some(&broken("config-zero-heads.json")),
    );
    run(logits(&d), &["zero attention heads"]);
    for (file, needle) in [
        ("truncated.safetensors", "model.safetensors"),
        ("offsets-past-the-end.safetensors", "model.safetensors"),
        ("huge-header-length.safetensors", "model.safetensors"),
        ("header-not-json.safetensors", "model.safetensors"),
        (
            "shape-disagrees-with-bytes.safetensors",
            "model.safetensors",
        ),
        // A readable file that holds other tensors than the config implies.
        ("valid.safetensors", "model.embed_tokens.weight"),
    ] {
        let d = model_dir(t, file, Some(&broken(file)), None);
        run(logits(&d), &[needle]);
    }
    // Tensors of the wrong shape for the config: the GPT-2 fixture told it is twice as wide.
    let d = t.join("gpt2-wide");
    std::fs::create_dir_all(&d).unwrap();
    let src = root().join("tests/fixtures/tiny-gpt2");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), d.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["n_embd"] = 64.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    run(logits(&d), &["shape", "[4096, 32]", "[4096, 64]"]);
    // A tokenizer.json that does not parse.
    let d = model_dir(t, "bad-tokenizer", None, None);
    std::fs::copy(broken("tokenizer-not-json.json"), d.join("tokenizer.json")).unwrap();
    std::fs::copy(
        root().join("assets/models/builtin/model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    run(logits(&d), &["tokenizer"]);
}

#[test]
fn broken_gguf_files_are_named() {
    for file in ["truncated.gguf", "bad-magic.gguf", "huge-tensor-count.gguf"] {
        let p = broken(file);
        run(logits(&p), &[file, "GGUF"]);
    }
}

fn train_on(dataset: &Path) -> Vec<String> {
    [
        "train",
        root().join("presets/lora.toml").to_str().unwrap(),
        "--steps",
        "1",
        "--set",
        &format!("dataset={}", dataset.display()),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn broken_datasets_are_named() {
    for (file, needles) in [
        ("empty.jsonl", &["empty.jsonl", "no examples"][..]),
        ("bad-json-line-3.jsonl", &["line 3"][..]),
        ("missing-fields.jsonl", &["line 1", "completion"][..]),
        ("wrong-types.jsonl", &["line 1"][..]),
        ("not-utf8.jsonl", &["not UTF-8", "offset 13"][..]),
    ] {
        run(train_on(&broken(file)), needles);
    }
    // A 1 GB file is refused by its size before it is read (a sparse file: no disk used).
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.jsonl");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    run(train_on(&big), &["1.1 GB", "256 MB"]);
}

#[test]
fn broken_adapters_are_named() {
    for (dir, needles) in [
        ("unknown-peft-type", &["VERA", "LORA"][..]),
        ("missing-lora-b", &["lora_B"][..]),
        ("wrong-shape", &["q_proj", "another model"][..]),
        ("unknown-module", &["qq_proj"][..]),
    ] {
        let a = broken("adapters").join(dir);
        run(
            ["logits", "--adapter", a.to_str().unwrap(), "--text", "hi"]
                .map(String::from)
                .to_vec(),
            needles,
        );
    }
}

#[test]
fn configuration_out_of_bounds_is_named() {
    let lora = root().join("presets/lora.toml");
    let prefix = root().join("presets/prefix-tuning.toml");
    for (preset, set, needle) in [
        (&lora, "method.rank=0", "method.rank"),
        (&lora, "method.rank=100000", "rank"),
        (&lora, "batch_size=0", "batch_size"),
        (&lora, "optimizer.lr=nan", "optimizer.lr"),
        (&lora, "optimizer.lr=-0.1", "optimizer.lr"),
        (&lora, "steps=0", "steps"),
        (&prefix, "method.num_virtual_tokens=0", "num_virtual_tokens"),
        (&prefix, "method.num_virtual_tokens=5000", "512"),
    ] {
        run(
            [
                "train",
                preset.to_str().unwrap(),
                "--set",
                set,
                "--set",
                "eval_examples=4",
            ]
            .map(String::from)
            .to_vec(),
            &[needle],
        );
    }
}
