//! Writing exports so that a crash or a full disk never leaves a half-written file: each
//! file goes to a temporary name first and is renamed into place.

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// Writes `bytes` to `path` through `path.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

/// Saves tensors as safetensors with PyTorch's `{"format": "pt"}` metadata, as PEFT does.
pub fn save_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let data: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.contiguous()?)))
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

/// Saves a JSON value with sorted keys and two-space indentation.
pub fn save_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Fills `dir` through `fill` in a sibling temporary folder, then swaps it into place, so
/// a failed export leaves the previous one whole.
pub fn write_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("export");
    let tmp = dir.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = dir.with_file_name(format!(".{name}.old"));
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move export into {}", dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
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

/// Copies `run_dir/adapter` to `out` through a temporary folder; returns the files copied.
pub fn export_run(run_dir: &Path, out: &Path) -> Result<usize> {
    let src = run_dir.join("adapter");
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
