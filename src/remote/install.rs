//! Installing this program on a remote machine: the binary goes through SSH's standard
//! input into a versioned folder (by default `.peft-workbench/bin/VERSION/` in the remote home),
//! written under a temporary name, checked by SHA-256 there, then renamed into place.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;

use super::{Machine, ssh};

/// The folder versions are installed in by default, relative to the remote home.
pub const DEFAULT_FOLDER: &str = ".peft-workbench/bin";

/// Where a version is installed under `folder`.
pub fn remote_path(folder: &str, version: &str) -> String {
    format!("{}/{version}/peft-workbench", folder.trim_end_matches('/'))
}

/// Fixed shell text: `$1` the target path, `$2` the expected SHA-256. Reads the binary from
/// standard input into `$1.partial`, checks it, makes it executable and renames it.
const SCRIPT: &str = r#"set -e
umask 077
mkdir -p "$(dirname "$1")"
cat > "$1.partial"
got=$(sha256sum "$1.partial" | cut -d' ' -f1)
if [ "$got" != "$2" ]; then rm -f "$1.partial"; echo "checksum mismatch: got $got" >&2; exit 3; fi
chmod 700 "$1.partial"
mv -f "$1.partial" "$1"
"#;

/// Uploads `binary` to `machine` as version `version`, calling `progress(sent, total)` as the
/// bytes go; returns the remote path (relative to its home). The caller records it as the
/// machine's binary.
pub fn install(
    machine: &Machine,
    binary: &Path,
    folder: &str,
    version: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String> {
    let bytes =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let target = remote_path(folder, version);
    let mut child = ssh::command(machine, &["sh", "-c", SCRIPT, "install", &target, &sha])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh: is OpenSSH's client installed?")?;
    let mut stdin = child.stdin.take().context("ssh's input")?;
    let total = bytes.len() as u64;
    let mut sent = 0u64;
    let mut write_failed = false;
    for chunk in bytes.chunks(1 << 20) {
        if stdin.write_all(chunk).is_err() {
            write_failed = true;
            break;
        }
        sent += chunk.len() as u64;
        progress(sent, total);
    }
    drop(stdin);
    let mut said = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut said);
    }
    let status = child.wait()?;
    match status.code() {
        Some(0) if !write_failed => Ok(target),
        Some(255) => bail!("{}", ssh::explain(machine, &said)),
        _ => bail!(
            "installing on {} failed: {}",
            machine.name,
            said.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the connection ended")
                .trim()
        ),
    }
}
