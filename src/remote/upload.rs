//! Files on this machine that a remote run needs — the user's dataset, a model folder or a
//! GGUF file, the built-in model and datasets beside an installed binary — sent over SSH.
//!
//! Each file is sent resumably: it grows as `NAME.partial` there, and a second attempt
//! after a dropped connection asks how many bytes arrived and sends only the rest. Once
//! whole it is checked by SHA-256 there and renamed into place, so a half-sent file is
//! never used. A run's files are kept under `<runs>/.uploads/<sha256>/` on the machine,
//! named by their content: the same dataset is sent once however many runs use it.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{Machine, ssh};
use crate::config::RunConfig;

/// One local file and where it goes on the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub local: PathBuf,
    /// The path there (absolute, or relative to the remote home).
    pub remote: String,
    pub sha256: String,
    pub size: u64,
    /// Whether a file already at `remote` is taken as it is (its path names its content)
    /// or checked against `sha256` first (an installed binary: a rebuild replaces it).
    pub named_by_content: bool,
}

/// The SHA-256 of a file, in hex, read in pieces (a model file may not fit in memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Upload {
    pub fn new(local: &Path, remote: String) -> Result<Self> {
        let size = std::fs::metadata(local)
            .with_context(|| format!("cannot read {}", local.display()))?
            .len();
        Ok(Self {
            local: local.to_path_buf(),
            remote,
            sha256: sha256_file(local)?,
            size,
            named_by_content: true,
        })
    }
}

/// The regular files directly inside `dir` (a model folder's files; its subfolders are not
/// part of the model), sorted by name.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A file's name as it may appear on the remote: plain, no path, nothing a shell or a
/// listing could misread.
fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    if name.starts_with('.') || name.contains(['/', '\\', '\n']) {
        bail!("{} has a file name that cannot be sent", path.display());
    }
    Ok(name.to_string())
}

/// Fixed shell text: prints the remote home's absolute path, then for each further pair of
/// arguments (a target path, its SHA-256 or `-`) one line: `present` if the file is there
/// (with that checksum, unless `-`), else the bytes of its `.partial` (0 if none).
const STATUS: &str = r#"cd && pwd
shift
while [ $# -ge 2 ]; do
  f=$1; want=$2; shift 2
  if [ -f "$f" ] && { [ "$want" = - ] || [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$want" ]; }; then echo present
  elif [ -f "$f.partial" ]; then wc -c < "$f.partial" | tr -d ' '
  else echo 0; fi
done
"#;

/// Fixed shell text: `$1` the target, `$2` its SHA-256, `$3` its size, `$4` the bytes
/// already there. Appends standard input to `$1.partial` (after checking it holds `$4`
/// bytes), and once it holds `$3` checks it and renames it into place. A connection that
/// drops leaves the part that arrived for the next attempt.
const APPEND: &str = r#"set -e
umask 077
mkdir -p "$(dirname "$1")"
have=0
if [ -f "$1.partial" ]; then have=$(wc -c < "$1.partial" | tr -d ' '); fi
if [ "$have" != "$4" ]; then echo "expected $4 bytes of $1.partial there, found $have" >&2; exit 4; fi
cat >> "$1.partial"
have=$(wc -c < "$1.partial" | tr -d ' ')
if [ "$have" != "$3" ]; then echo "only $have of $3 bytes arrived" >&2; exit 5; fi
got=$(sha256sum "$1.partial" | cut -d' ' -f1)
if [ "$got" != "$2" ]; then rm -f "$1.partial"; echo "checksum mismatch: got $got" >&2; exit 3; fi
mv -f "$1.partial" "$1"
"#;

/// The remote home's absolute path, and for each upload the bytes already there (`None`:
/// the whole file is there).
fn status(machine: &Machine, uploads: &[Upload]) -> Result<(String, Vec<Option<u64>>)> {
    let mut argv = vec!["sh", "-c", STATUS, "status", "home"];
    for u in uploads {
        argv.push(&u.remote);
        argv.push(if u.named_by_content { "-" } else { &u.sha256 });
    }
    let out = ssh::run(machine, &argv)?;
    let mut lines = out.lines();
    let home = lines
        .next()
        .context("the machine did not say its home")?
        .trim();
    let have = uploads
        .iter()
        .map(|u| match lines.next().map(str::trim) {
            Some("present") => Ok(None),
            Some(n) => n
                .parse::<u64>()
                .map(|n| Some(n.min(u.size)))
                .with_context(|| format!("unexpected answer about {}: {n}", u.remote)),
            None => bail!("no answer about {}", u.remote),
        })
        .collect::<Result<_>>()?;
    Ok((home.to_string(), have))
}

/// Sends `uploads` to `machine`, each from where an earlier attempt stopped; calls
/// `progress(bytes there, bytes in all)` as the bytes go. Files already there whole are
/// not sent again. Returns the remote home's absolute path.
pub fn send(
    machine: &Machine,
    uploads: &[Upload],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String> {
    let (home, have) = status(machine, uploads)?;
    let total: u64 = uploads.iter().map(|u| u.size).sum();
    let mut done: u64 = uploads
        .iter()
        .zip(&have)
        .map(|(u, h)| h.unwrap_or(u.size))
        .sum();
    progress(done, total);
    for (u, have) in uploads.iter().zip(have) {
        let Some(offset) = have else { continue };
        let mut file = std::fs::File::open(&u.local)
            .with_context(|| format!("cannot read {}", u.local.display()))?;
        file.seek(SeekFrom::Start(offset))?;
        let (size, offset_text) = (u.size.to_string(), offset.to_string());
        let mut child = ssh::command(
            machine,
            &[
                "sh",
                "-c",
                APPEND,
                "upload",
                &u.remote,
                &u.sha256,
                &size,
                &offset_text,
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh: is OpenSSH's client installed?")?;
        let mut stdin = child.stdin.take().context("ssh's input")?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = u.size - offset;
        let mut write_failed = false;
        while left > 0 {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", u.local.display()))?;
            if n == 0 {
                bail!("{} became shorter while it was sent", u.local.display());
            }
            let n = n.min(left as usize);
            if stdin.write_all(&buf[..n]).is_err() {
                write_failed = true;
                break;
            }
            left -= n as u64;
            done += n as u64;
            progress(done, total);
        }
        drop(stdin);
        let mut said = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut said);
        }
        let status = child.wait()?;
        let last = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("the connection ended")
            .trim()
            .to_string();
        match status.code() {
            Some(0) if !write_failed => {}
            Some(255) => bail!(
                "sending {} stopped: {} (try again: it continues where it stopped)",
                u.local.display(),
                ssh::explain(machine, &said)
            ),
            _ => bail!(
                "sending {} to {} failed: {last}{}",
                u.local.display(),
                machine.name,
                if write_failed {
                    " (try again: it continues where it stopped)"
                } else {
                    ""
                }
            ),
        }
    }
    Ok(home)
}

/// Where a run's uploaded files live on a machine, relative to its home or absolute.
fn uploads_dir(machine: &Machine) -> String {
    format!("{}/.uploads", machine.runs_dir().trim_end_matches('/'))
}

/// A path that names a file or folder on this machine (not a built-in name, not a path
/// that exists only over there).
fn local_path(value: &str) -> Option<PathBuf> {
    if value == "builtin" || value.starts_with("builtin:") || value.is_empty() {
        return None;
    }
    let path = PathBuf::from(value);
    path.exists().then_some(path)
}

/// What a run of `config` on `machine` needs sent, and the config as it reads there (each
/// local path replaced by its copy's). A path that is not on this machine is left as it is:
/// a path on the machine (a rented machine downloads a model faster than a laptop uploads
/// it). Built-in names go unchanged: the installed binary has its assets beside it.
pub fn plan(machine: &Machine, config: &RunConfig) -> Result<(Vec<Upload>, RunConfig)> {
    let root = uploads_dir(machine);
    let mut uploads = Vec::new();
    let mut out = config.clone();
    let mut place = |value: &str| -> Result<Option<String>> {
        let Some(path) = local_path(value) else {
            return Ok(None);
        };
        if path.is_dir() {
            // A folder is named by the checksums of its files together.
            let files = files_in(&path)?;
            if files.is_empty() {
                bail!("{} holds no files to send", path.display());
            }
            let mut parts = Vec::new();
            let mut digest = Sha256::new();
            for f in &files {
                let name = file_name(f)?;
                let part = Upload::new(f, String::new())?;
                digest.update(name.as_bytes());
                digest.update([0]);
                digest.update(part.sha256.as_bytes());
                parts.push((name, part));
            }
            let key: String = digest
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let folder = format!("{root}/{key}/{}", file_name(&path)?);
            for (name, mut part) in parts {
                part.remote = format!("{folder}/{name}");
                uploads.push(part);
            }
            Ok(Some(folder))
        } else {
            let mut u = Upload::new(&path, String::new())?;
            u.remote = format!("{root}/{}/{}", u.sha256, file_name(&path)?);
            let remote = u.remote.clone();
            uploads.push(u);
            Ok(Some(remote))
        }
    };
    if let Some(r) = place(&config.model)? {
        out.model = r;
    }
    if let Some(r) = place(&config.dataset)? {
        out.dataset = r;
    }
    if let Some(e) = &config.eval_dataset
        && let Some(r) = place(e)?
    {
        out.eval_dataset = Some(r);
    }
    Ok((uploads, out))
}

/// A relative remote path made absolute under `home` (the daemon's working folder need not
/// be the home).
fn absolute(home: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", home.trim_end_matches('/'))
    }
}

/// Sends what a run of `config` on `machine` needs and returns the config to send there.
pub fn prepare(
    machine: &Machine,
    config: &RunConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunConfig> {
    let (uploads, mut there) = plan(machine, config)?;
    if uploads.is_empty() {
        return Ok(there);
    }
    let home = send(machine, &uploads, progress)?;
    for (value, original) in [
        (&mut there.model, &config.model),
        (&mut there.dataset, &config.dataset),
    ] {
        if value != original {
            *value = absolute(&home, value);
        }
    }
    if there.eval_dataset != config.eval_dataset
        && let Some(e) = &mut there.eval_dataset
    {
        *e = absolute(&home, e);
    }
    Ok(there)
}

/// Whether a run of `config` has anything on this machine to send first.
pub fn needs_upload(config: &RunConfig) -> bool {
    [
        Some(&config.model),
        Some(&config.dataset),
        config.eval_dataset.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|v| local_path(v).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_and_remote_only_paths_are_not_sent() {
        let m = Machine::new("gpu", &["root@example.invalid".to_string()]).unwrap();
        let cfg = RunConfig {
            model: "builtin".into(),
            dataset: "builtin:reviews-zh".into(),
            eval_dataset: Some("/nowhere/on/this/machine.jsonl".into()),
            ..RunConfig::default()
        };
        let (uploads, there) = plan(&m, &cfg).unwrap();
        assert!(uploads.is_empty());
        assert_eq!(there, cfg);
        assert!(!needs_upload(&cfg));
    }

    #[test]
    fn a_local_file_goes_under_its_checksum_and_a_folder_under_its_files_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("my data $(x).jsonl");
        std::fs::write(&data, "{\"text\":\"a\"}\n").unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), "{}").unwrap();
        std::fs::write(model.join("b.bin"), "bb").unwrap();
        std::fs::create_dir(model.join("sub")).unwrap();
        let m = Machine::new("gpu", &["root@example.invalid".to_string()]).unwrap();
        let cfg = RunConfig {
            model: model.display().to_string(),
            dataset: data.display().to_string(),
            ..RunConfig::default()
        };
        assert!(needs_upload(&cfg));
        let (uploads, there) = plan(&m, &cfg).unwrap();
        assert_eq!(uploads.len(), 3, "two model files and the dataset");
        let sha = sha256_file(&data).unwrap();
        assert_eq!(
            there.dataset,
            format!("{}/.uploads/{sha}/my data $(x).jsonl", m.runs_dir())
        );
        assert!(there.model.ends_with("/model"));
        assert!(uploads[0].remote.ends_with("/model/b.bin"));
        assert!(uploads[1].remote.ends_with("/model/config.json"));
        // The same folder with one byte changed goes elsewhere.
        std::fs::write(model.join("b.bin"), "bc").unwrap();
        let (_, again) = plan(&m, &cfg).unwrap();
        assert_ne!(again.model, there.model);
    }
}
