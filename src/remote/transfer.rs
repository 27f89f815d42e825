//! Runs coming home from a remote machine. There, `peft-workbench pack` writes a run
//! folder as one stream: a JSON line listing each file (its path in the run, size and
//! SHA-256), then the files' bytes in that order. Here, [`receive`] checks every path stays
//! inside the run (no `..`, nothing absolute), every size and every checksum, writes into a
//! temporary folder and renames it into place: a half-copied run never appears.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the run folder, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

/// What of a run folder travels: everything but its checkpoint (the run has ended; the
/// checkpoint is the largest part) and its lock.
fn travels(rel: &Path) -> bool {
    let first = rel.components().next();
    !matches!(first, Some(Component::Normal(n)) if n == "checkpoint" || n == crate::train::run_dir::LOCK_FILE)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A run's name as a plain folder name inside the runs folder (no separator, no `..`).
pub fn check_run_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.');
    if !plain {
        bail!("`{name}` is not the name of a run folder");
    }
    Ok(())
}

/// Writes the run folder `dir` to `out` as a manifest line and the files' bytes.
pub fn pack(dir: &Path, out: &mut impl Write) -> Result<()> {
    if !dir.join("config.toml").is_file() {
        bail!("{} is not a run folder", dir.display());
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let p = entry?.path();
            let rel = p.strip_prefix(dir).expect("under the run").to_path_buf();
            if !travels(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                files.push(rel);
            }
        }
    }
    files.sort();
    let mut manifest = Manifest { files: Vec::new() };
    for rel in &files {
        let bytes = std::fs::read(dir.join(rel))?;
        manifest.files.push(FileEntry {
            path: rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/"),
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        });
    }
    writeln!(out, "{}", serde_json::to_string(&manifest)?)?;
    for rel in &files {
        let mut f = std::fs::File::open(dir.join(rel))?;
        std::io::copy(&mut f, out)?;
    }
    out.flush()?;
    Ok(())
}

/// A manifest path as a relative path inside the run, or an error naming it.
fn confined(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let inside = !path.is_empty()
        && !path.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        bail!("the remote sent a file named `{path}`, outside the run folder: refused");
    }
    Ok(p.to_path_buf())
}

/// Reads a packed run from `input` into the new folder `dest` (refused if it holds a run),
/// checking names, sizes and checksums, then lets `finish` complete the folder; `dest`
/// appears whole or not at all. Returns how many files came.
pub fn receive(
    input: &mut impl BufRead,
    dest: &Path,
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<usize> {
    crate::train::run_dir::ensure_no_run(dest)?;
    let mut line = String::new();
    input.read_line(&mut line)?;
    let manifest: Manifest = serde_json::from_str(line.trim())
        .with_context(|| format!("the remote sent no file list but `{}`", line.trim()))?;
    let paths: Vec<PathBuf> = manifest
        .files
        .iter()
        .map(|f| confined(&f.path))
        .collect::<Result<_>>()?;
    if !paths.iter().any(|p| p == Path::new("config.toml")) {
        bail!("the remote sent no config.toml: not a run");
    }
    let name = dest
        .file_name()
        .context("a run folder has a name")?
        .to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let result = (|| -> Result<()> {
        for (f, rel) in manifest.files.iter().zip(&paths) {
            let to = tmp.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&to)?;
            let mut hasher = Sha256::new();
            let mut left = f.bytes;
            let mut buf = vec![0u8; 1 << 16];
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = input.read(&mut buf[..want])?;
                if n == 0 {
                    bail!(
                        "the connection ended inside {} ({left} bytes missing)",
                        f.path
                    );
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])?;
                left -= n as u64;
            }
            if hex(&hasher.finalize()) != f.sha256 {
                bail!("{} arrived damaged (its SHA-256 differs)", f.path);
            }
        }
        finish(&tmp)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move the run into {}", dest.display()))?;
    Ok(manifest.files.len())
}

/// A run on a remote machine, as `pack --list` tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteRun {
    pub name: String,
    pub method: String,
    /// It has a summary and no process writes it.
    pub finished: bool,
}

/// The runs under `runs` (the remote side of `remote runs`).
pub fn list(runs: &Path) -> Result<Vec<RemoteRun>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(cfg) = crate::config::RunConfig::load(&dir.join("config.toml"), &[]) else {
            continue;
        };
        out.push(RemoteRun {
            name: e.file_name().to_string_lossy().into_owned(),
            method: cfg.method.kind().to_string(),
            finished: dir.join("summary.json").is_file()
                && crate::train::run_dir::holder(&dir).is_none(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Brings the run `run` of `machine` home into `dest` (which must hold no run), its
/// `config.toml` marked with the machine it trained on. Given the config the run was started
/// from here, the files that were sent for it are named by their paths here again (not by
/// their copies' there), so the run reads as started here.
pub fn pull(
    machine: &super::Machine,
    run: &str,
    dest: &Path,
    started_from: Option<&crate::config::RunConfig>,
) -> Result<usize> {
    check_run_name(run)?;
    let mut child = super::ssh::command(
        machine,
        &[
            machine.binary(),
            "pack",
            "--runs-dir",
            machine.runs_dir(),
            run,
        ],
    )
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .context("cannot run ssh: is OpenSSH's client installed?")?;
    let stdout = child.stdout.take().context("ssh's output")?;
    let received = receive(&mut std::io::BufReader::new(stdout), dest, |tmp| {
        let path = tmp.join("config.toml");
        let mut cfg = crate::config::RunConfig::load(&path, &[])?;
        cfg.machine = Some(machine.name.clone());
        if let Some(here) = started_from {
            let sent = |v: &str| v.contains("/.uploads/");
            if sent(&cfg.model) {
                cfg.model = here.model.clone();
            }
            if sent(&cfg.dataset) {
                cfg.dataset = here.dataset.clone();
            }
            if cfg.eval_dataset.as_deref().is_some_and(sent) {
                cfg.eval_dataset = here.eval_dataset.clone();
            }
        }
        crate::files::write_atomic(&path, cfg.to_toml().as_bytes())
    });
    let done = child.wait_with_output()?;
    match received {
        Ok(n) => Ok(n),
        Err(_) if done.status.code() == Some(255) => {
            bail!(
                "{}",
                super::ssh::explain(machine, &String::from_utf8_lossy(&done.stderr))
            )
        }
        Err(e) if !done.status.success() => {
            let said = String::from_utf8_lossy(&done.stderr);
            let last = said
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "{run} did not come from {}: {} ({e})",
                machine.name,
                last.trim()
            )
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_run(dir: &Path) {
        std::fs::create_dir_all(dir.join("adapter")).unwrap();
        std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("config.toml"), "steps = 3\n").unwrap();
        std::fs::write(dir.join("adapter/w.bin"), vec![7u8; 200_000]).unwrap();
        std::fs::write(dir.join("checkpoint/big.bin"), vec![1u8; 1000]).unwrap();
    }

    #[test]
    fn a_packed_run_arrives_whole_without_its_checkpoint() {
        let t = tempfile::tempdir().unwrap();
        a_run(&t.path().join("run"));
        let mut stream = Vec::new();
        pack(&t.path().join("run"), &mut stream).unwrap();
        let dest = t.path().join("home/run");
        let n = receive(&mut std::io::Cursor::new(&stream), &dest, |_| Ok(())).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            std::fs::read(dest.join("adapter/w.bin")).unwrap(),
            vec![7u8; 200_000]
        );
        assert!(!dest.join("checkpoint").exists());
        // Not over a run that is there.
        assert!(receive(&mut std::io::Cursor::new(&stream), &dest, |_| Ok(())).is_err());
    }

    #[test]
    fn names_outside_the_run_and_damaged_files_are_refused_and_leave_nothing() {
        let t = tempfile::tempdir().unwrap();
        for evil in ["../evil", "/etc/passwd", "a/../../b", "", "a\\b"] {
            let manifest = Manifest {
                files: vec![FileEntry {
                    path: evil.into(),
                    bytes: 1,
                    sha256: String::new(),
                }],
            };
            let stream = format!("{}\nx", serde_json::to_string(&manifest).unwrap());
            let dest = t.path().join("home/r");
            let e = receive(&mut std::io::Cursor::new(stream.as_bytes()), &dest, |_| {
                Ok(())
            })
            .unwrap_err();
            assert!(e.to_string().contains("refused"), "{evil}: {e}");
            assert!(!dest.exists() && !t.path().join("evil").exists());
        }
        a_run(&t.path().join("run"));
        let mut stream = Vec::new();
        pack(&t.path().join("run"), &mut stream).unwrap();
        let last = stream.len() - 1;
        stream[last] ^= 1;
        let dest = t.path().join("home/damaged");
        let e = receive(&mut std::io::Cursor::new(&stream), &dest, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(!dest.exists() && !t.path().join("home/.damaged.partial").exists());
        stream.truncate(last - 10);
        let e = receive(&mut std::io::Cursor::new(&stream), &dest, |_| Ok(())).unwrap_err();
        assert!(e.to_string().contains("connection ended"), "{e}");
    }
}
