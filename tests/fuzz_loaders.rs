//! Fuzz tests, bounded for CI: the readers of files a user can hand the app (safetensors
//! weights, GGUF models, JSONL/CSV datasets, PEFT adapter folders) given randomly damaged
//! copies of valid files from tests/fixtures/broken (bytes overwritten, the file cut
//! short, bytes inserted) must return Ok or an error, never panic or abort on a size read
//! from the file. proptest shrinks any failure to a small damage and prints it.

use candle_core::Device;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

use peft_workbench::models::{ModelConfig, Weights, builtin_model_dir, gguf};
use peft_workbench::peft::import::ImportedAdapter;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/broken")
        .join(name)
}

/// One kind of damage to a file's bytes.
#[derive(Debug, Clone)]
enum Damage {
    /// Overwrite the byte at (position mod length) with a value.
    Set(usize, u8),
    /// Keep only the first (n mod length) bytes.
    Cut(usize),
    /// Insert bytes at (position mod length).
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Damage::Set(p, b)),
        1 => any::<usize>().prop_map(Damage::Cut),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(p, b)| Damage::Insert(p, b)),
    ];
    prop::collection::vec(one, 1..6)
}

/// Header bytes matter most: half the overwrites land in the first 64 bytes.
fn apply(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        let n = bytes.len().max(1);
        match d {
            Damage::Set(p, b) => {
                let at = if p % 2 == 0 { p % n.min(64) } else { p % n };
                if let Some(x) = bytes.get_mut(at) {
                    *x = *b;
                }
            }
            Damage::Cut(k) => bytes.truncate(k % n),
            Damage::Insert(p, b) => {
                let at = p % n;
                bytes.splice(at..at, b.iter().copied());
            }
        }
    }
    bytes
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors_weights(d in damage()) {
        let bytes = apply(std::fs::read(corpus("valid.safetensors")).unwrap(), &d);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
        let _ = Weights::load_dir(dir.path(), &Device::Cpu);
    }

    #[test]
    fn gguf_models(d in damage()) {
        let bytes = apply(std::fs::read(corpus("valid.gguf")).unwrap(), &d);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, bytes).unwrap();
        let _ = gguf::config(&path);
        let _ = gguf::tensors(&path, &Device::Cpu);
    }

    #[test]
    fn datasets(d in damage()) {
        let text = "{\"prompt\":\"2+2=\",\"completion\":\" 4\"}\n{\"text\":\"good\",\"label\":\"pos\"}\n{\"text\":\"plain\"}\n";
        let bytes = apply(text.as_bytes().to_vec(), &d);
        let text = String::from_utf8_lossy(&bytes);
        let _ = peft_workbench::data::parse_jsonl(&text);
        let _ = peft_workbench::data::parse_csv(&text);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let _ = peft_workbench::data::read_file(&path);
    }

    #[test]
    fn adapter_folders(config_damage in damage(), tensor_damage in damage()) {
        // A LoRA adapter PEFT made for the built-in model.
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_made/lora");
        let dir = tempfile::tempdir().unwrap();
        let cfg = std::fs::read(src.join("adapter_config.json")).unwrap();
        std::fs::write(dir.path().join("adapter_config.json"), apply(cfg, &config_damage)).unwrap();
        let tensors = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
        std::fs::write(
            dir.path().join("adapter_model.safetensors"),
            apply(tensors, &tensor_damage),
        )
        .unwrap();
        let model = ModelConfig::from_file(&builtin_model_dir().join("config.json")).unwrap();
        let _ = ImportedAdapter::load(dir.path(), &model, &Device::Cpu);
    }
}

/// The fuzz tests start from files that load: the damage is what they test.
#[test]
fn the_seeds_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        corpus("valid.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let w = Weights::load_dir(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(w.tensors()["a.weight"].dims(), [4, 3]);
    let cfg = gguf::config(&corpus("valid.gguf")).unwrap();
    assert_eq!((cfg.hidden_size, cfg.vocab_size), (8, 12));
    let t = gguf::tensors(&corpus("valid.gguf"), &Device::Cpu).unwrap();
    assert_eq!(t["model.embed_tokens.weight"].dims(), [12, 8]);
    let ex = peft_workbench::data::parse_jsonl(
        "{\"prompt\":\"2+2=\",\"completion\":\" 4\"}\n{\"text\":\"good\",\"label\":\"pos\"}\n",
    )
    .unwrap();
    assert_eq!(ex.len(), 2);
    let model = ModelConfig::from_file(&builtin_model_dir().join("config.json")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_made/lora");
    assert!(ImportedAdapter::load(&src, &model, &Device::Cpu).is_ok());
}
