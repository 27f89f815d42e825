//! Writing exports so that a crash or a full disk never leaves a half-written file: each
//! file goes to a temporary name first and is renamed into place.

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

use crate::files::{save_json, write_atomic, write_dir_atomic};

/// Saves tensors as safetensors with PyTorch's `{"format": "pt"}` metadata, as PEFT does.
/// Floating-point tensors are written as f32 whatever the run computed in (a bf16 run's
/// trained matrices too), so the files do not depend on the precision or the device.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    use candle_core::DType;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let data: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            let t = match t.dtype() {
                DType::BF16 | DType::F16 => t.to_dtype(DType::F32)?,
                _ => t.clone(),
            };
            Ok((
                n.as_str(),
                t.to_device(&candle_core::Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(data, Some(meta))?;
    write_atomic(path, &bytes)
}

/// Saves trainable tensors under their names.
pub fn save_vars(path: &Path, vars: &[(String, candle_core::Var)]) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    save_safetensors(path, &tensors)
}

/// The project's own format for methods PEFT does not load as adapters: the trained base
/// tensors (and any `added` ones) under their checkpoint names, and `method.json`
/// describing the method.
pub fn export_trained_base(
    dir: &Path,
    method: &crate::peft::MethodConfig,
    ctx: &crate::peft::ExportContext,
    added: &[(String, Tensor)],
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = ctx
        .trained_base
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    tensors.extend(added.iter().cloned());
    save_safetensors(&dir.join("model.safetensors"), &tensors)?;
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    save_json(
        &dir.join("method.json"),
        &serde_json::json!({
            "format": "peft-workbench/trained-base-v1",
            "base_model_name_or_path": ctx.base_model,
            "method": method,
            "tensors": names,
        }),
    )
}

/// Copies `run_dir/adapter` (the last step's tensors) or, with `best`, `run_dir/best` (early
/// stopping's best evaluation) to `out` through a temporary folder; returns the files
/// copied.
pub fn export_run(run_dir: &Path, out: &Path, best: bool) -> Result<usize> {
    let src = run_dir.join(if best { "best" } else { "adapter" });
    if best && !src.is_dir() {
        bail!(
            "{} has no best/ folder: only a run with [early_stopping] keeps its best evaluation",
            run_dir.display()
        );
    }
    if !src.is_dir() {
        bail!(
            "{} has no adapter/ folder: not a finished run folder",
            run_dir.display()
        );
    }
    let mut n = 0;
    write_dir_atomic(out, |d| {
        for entry in std::fs::read_dir(&src)? {
            let p = entry?.path();
            if p.is_file() {
                std::fs::copy(&p, d.join(p.file_name().expect("a file has a name")))
                    .with_context(|| format!("cannot copy {}", p.display()))?;
                n += 1;
            }
        }
        Ok(())
    })?;
    Ok(n)
}

/// Finishes an export in `dir` for its model's family. GPT-2: `fan_in_fan_out = true` in a
/// PEFT config (its projections are Conv1D). A classifier's head: in a
/// PEFT folder the head's tensors go into `adapter_model.safetensors` under their module
/// path and `adapter_config.json` says `task_type = "SEQ_CLS"`, `modules_to_save =
/// ["classifier"]`, as PEFT saves a sequence-classification adapter; the project's own
/// format already holds them among the trained tensors. `labels.json` names the classes.
pub fn finish_for_model(
    dir: &Path,
    model: &crate::models::ModelConfig,
    trained: &[(String, candle_core::Var)],
) -> Result<()> {
    let config_file = dir.join("adapter_config.json");
    // GPT-2's projections are Conv1D: PEFT needs to know to transpose when merging.
    if matches!(model, crate::models::ModelConfig::Gpt2(_)) && config_file.is_file() {
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
        if cfg.get("fan_in_fan_out").is_some() {
            cfg["fan_in_fan_out"] = true.into();
            save_json(&config_file, &cfg)?;
        }
    }
    let crate::models::ModelConfig::Bert(bert) = model else {
        return Ok(());
    };
    let adapter_file = dir.join("adapter_model.safetensors");
    if adapter_file.is_file() && config_file.is_file() {
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_file)?)?;
        // Prompt-learning methods wrap the model itself (`base_model.classifier`); the
        // others wrap it in a tuner (`base_model.model.classifier`).
        let prompt_learning = matches!(
            cfg["peft_type"].as_str(),
            Some("PROMPT_TUNING" | "P_TUNING" | "PREFIX_TUNING")
        );
        let prefix = if prompt_learning {
            "base_model."
        } else {
            "base_model.model."
        };
        let head = trained
            .iter()
            .filter(|(n, _)| n.starts_with("classifier."))
            .map(|(n, v)| (format!("{prefix}{n}"), v.as_tensor().clone()));
        let mut tensors: Vec<(String, Tensor)> =
            candle_core::safetensors::load(&adapter_file, &candle_core::Device::Cpu)?
                .into_iter()
                .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors.extend(head);
        save_safetensors(&adapter_file, &tensors)?;
        cfg["task_type"] = "SEQ_CLS".into();
        cfg["modules_to_save"] = serde_json::json!(["classifier"]);
        save_json(&config_file, &cfg)?;
    }
    let id2label: serde_json::Map<String, serde_json::Value> = bert
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.clone().into()))
        .collect();
    save_json(
        &dir.join("labels.json"),
        &serde_json::json!({ "id2label": id2label }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk fills while a file is replaced: the kernel's own "no space" (a write to
    /// /dev/full through the temporary name) comes back as an error naming the file, and
    /// the previous file is untouched.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_leaves_the_previous_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("adapter_config.json");
        std::fs::write(&path, "old").unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("adapter_config.json.tmp"))
            .unwrap();
        let e = write_atomic(&path, b"new").unwrap_err();
        let msg = crate::describe(&e);
        assert!(
            msg.contains("adapter_config.json.tmp") && msg.contains("No space left"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    }

    /// An export that fails half-way (here: the disk fills on its second file) leaves the
    /// previous export folder as it was and no partial folder behind.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_failed_export_keeps_the_previous_one() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("adapter");
        write_dir_atomic(&out, |d| {
            save_json(&d.join("a.json"), &serde_json::json!(1))
        })
        .unwrap();
        let e = write_dir_atomic(&out, |d| {
            save_json(&d.join("a.json"), &serde_json::json!(2))?;
            std::os::unix::fs::symlink("/dev/full", d.join("b.json.tmp"))?;
            save_json(&d.join("b.json"), &serde_json::json!(3))
        })
        .unwrap_err();
        assert!(crate::describe(&e).contains("No space left"));
        assert_eq!(std::fs::read_to_string(out.join("a.json")).unwrap(), "1\n");
        assert!(!out.join("b.json").exists());
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["adapter"]);
    }
}
