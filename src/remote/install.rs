//! Installing this program on a remote machine: the binary and the built-in assets go through
//! SSH into a versioned folder (by default `.peft-workbench/bin/VERSION/` in the remote
//! home), each file written under a temporary name, checked by SHA-256 there, then renamed
//! into place (`upload`).

use anyhow::{Context, Result};
use std::path::Path;

use super::upload::{self, Upload};
use super::{Machine, ssh};

/// The folder versions are installed in by default, relative to the remote home.
pub const DEFAULT_FOLDER: &str = ".peft-workbench/bin";

/// Where a version is installed under `folder`.
pub fn remote_path(folder: &str, version: &str) -> String {
    format!("{}/{version}/peft-workbench", folder.trim_end_matches('/'))
}

/// Uploads `binary` to `machine` as version `version`, with the built-in model and datasets
/// in `assets/` beside it (where the binary looks for them first), calling
/// `progress(sent, total)` as the bytes go; returns the remote path (relative to its home).
/// Files already there with the same checksum are not sent again; an upload cut off
/// continues where it stopped. The caller records the path as the machine's binary.
pub fn install(
    machine: &Machine,
    binary: &Path,
    folder: &str,
    version: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String> {
    let target = remote_path(folder, version);
    let base = target
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default();
    let mut uploads = vec![Upload::new(binary, target.clone())?];
    let assets = crate::assets_dir();
    for sub in ["models/builtin", "datasets"] {
        for file in upload::files_in(&assets.join(sub))? {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has no usable name", file.display()))?;
            uploads.push(Upload::new(&file, format!("{base}/assets/{sub}/{name}"))?);
        }
    }
    for u in &mut uploads {
        u.named_by_content = false;
    }
    upload::send(machine, &uploads, progress)
        .with_context(|| format!("installing on {} failed", machine.name))?;
    ssh::run(machine, &["chmod", "700", &target])?;
    Ok(target)
}

/// [`install`], then asks the installed program what it is: the path there and its answer.
/// A program that does not answer as this version (built for another system?) is an error.
pub fn install_and_check(
    machine: &Machine,
    binary: &Path,
    folder: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(String, super::probe::Probe)> {
    let version = env!("CARGO_PKG_VERSION");
    let path = install(machine, binary, folder, version, progress)?;
    let there = Machine {
        binary: Some(path.clone()),
        ..machine.clone()
    };
    let probe = super::probe::Probe::run(&there)?;
    if !probe.compatible() {
        anyhow::bail!(
            "{path} on {} does not answer as peft-workbench {version}: is {} built for {} {}?",
            machine.name,
            binary.display(),
            probe.os,
            probe.arch
        );
    }
    Ok((path, probe))
}
