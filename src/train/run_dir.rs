//! Run folders are never overwritten by accident nor written by two processes at once: a new
//! run refuses a folder that already holds one, and a run being written holds a lock file
//! naming its process.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file inside a run folder while a process writes it.
pub const LOCK_FILE: &str = ".lock";

/// The files that make a folder a run (or an export of one).
const RUN_FILES: [&str; 5] = [
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    "adapter",
    "checkpoint",
];

/// What of a run `dir` already holds (e.g. "config.toml, summary.json, adapter/"), or `None`
/// for a missing or run-free folder.
pub fn existing_run(dir: &Path) -> Option<String> {
    let found: Vec<String> = RUN_FILES
        .iter()
        .filter_map(|f| {
            let p = dir.join(f);
            if p.is_dir() {
                Some(format!("{f}/"))
            } else if p.exists() {
                Some(f.to_string())
            } else {
                None
            }
        })
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Refuses a folder that holds a run, naming what is there and the ways on.
pub fn ensure_no_run(dir: &Path) -> Result<()> {
    if let Some(found) = existing_run(dir) {
        bail!(
            "{} already holds a run ({found}); choose another --out, continue it with --resume, or replace it with --overwrite",
            dir.display()
        );
    }
    Ok(())
}

/// The process and host that hold a lock, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} on {}", self.pid, self.host)
    }
}

impl Holder {
    /// Whether the lock is this process's own.
    pub fn is_this_process(&self) -> bool {
        self.pid == std::process::id() && self.host == this_host()
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let host = words.next().unwrap_or("").to_string();
    Some(Holder { pid, host })
}

/// Whether the holder is a live process: on this host, a process with its id exists. A lock
/// from another host is taken as live (its process cannot be checked from here).
fn alive(h: &Holder) -> bool {
    if h.host != this_host() {
        return true;
    }
    Path::new(&format!("/proc/{}", h.pid)).exists()
}

/// The live holder of `dir`'s lock, if any.
pub fn holder(dir: &Path) -> Option<Holder> {
    read_holder(&dir.join(LOCK_FILE)).filter(alive)
}

/// A run folder's lock; the file goes when this is dropped, and so does the folder if the
/// lock created it and nothing else was written (a run refused before its first file leaves
/// no trace).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    created: Option<PathBuf>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.created {
            // Fails, as it should, when the folder is not empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Takes `dir`'s lock (creating the folder): the lock file is created only if absent, so of
/// two processes exactly one gets it. A lock whose process has died is taken over.
pub fn lock(dir: &Path) -> Result<RunLock> {
    let created = (!dir.exists()).then(|| dir.to_path_buf());
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run folder {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                writeln!(f, "{} {}", std::process::id(), this_host())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(RunLock { path, created });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match read_holder(&path) {
                    Some(h) if alive(&h) => bail!(
                        "{} is being written by {h}; wait for it to finish or stop it first",
                        dir.display()
                    ),
                    // Dead (or an unreadable, half-written file): the stale lock goes and
                    // the next try takes it, unless another process takes it first.
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", path.display()));
            }
        }
    }
    bail!(
        "{} is being locked by another process at this moment; try again",
        dir.display()
    )
}

/// Trains into `dir` in place of the run it holds: the old run is moved aside (to a sibling
/// named `<dir>.replaced-<pid>`) while `train` runs, deleted once the new run is whole, and
/// put back if the new one fails.
pub fn replace<T>(dir: &Path, train: impl FnOnce() -> Result<T>) -> Result<T> {
    if existing_run(dir).is_none() {
        return train();
    }
    if let Some(h) = holder(dir) {
        bail!(
            "{} is being written by {h}; it cannot be replaced now",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .context("--overwrite needs a folder name")?
        .to_string_lossy();
    let aside = dir.with_file_name(format!("{name}.replaced-{}", std::process::id()));
    std::fs::rename(dir, &aside)
        .with_context(|| format!("cannot move {} aside to {}", dir.display(), aside.display()))?;
    match train() {
        Ok(v) => {
            std::fs::remove_dir_all(&aside).with_context(|| {
                format!("the new run is whole; cannot delete {}", aside.display())
            })?;
            Ok(v)
        }
        Err(e) => {
            let back = std::fs::remove_dir_all(dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .and_then(|_| std::fs::rename(&aside, dir));
            match back {
                Ok(()) => Err(e.context(format!("the old run is back in {}", dir.display()))),
                Err(b) => Err(e.context(format!(
                    "the old run stays in {} (cannot put it back: {b})",
                    aside.display()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_a_run_is_named_and_refused() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(existing_run(d.path()), None);
        ensure_no_run(d.path()).unwrap();
        std::fs::write(d.path().join("config.toml"), "").unwrap();
        std::fs::create_dir(d.path().join("adapter")).unwrap();
        assert_eq!(
            existing_run(d.path()).as_deref(),
            Some("config.toml, adapter/")
        );
        let e = ensure_no_run(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("already holds a run (config.toml, adapter/)"),
            "{e}"
        );
        assert!(e.contains("--overwrite"), "{e}");
    }

    #[test]
    fn a_live_lock_refuses_and_a_dead_one_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let first = lock(d.path()).unwrap();
        let e = lock(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(first);
        assert!(!d.path().join(LOCK_FILE).exists(), "dropped locks go");
        // A process id that cannot exist (above the kernel's pid_max of 2^22).
        std::fs::write(
            d.path().join(LOCK_FILE),
            format!("4194305 {}\n", this_host()),
        )
        .unwrap();
        assert_eq!(holder(d.path()), None);
        let taken = lock(d.path()).unwrap();
        assert_eq!(holder(d.path()).map(|h| h.pid), Some(std::process::id()));
        drop(taken);
        // A lock that made its folder takes it away again when nothing was written.
        let fresh = d.path().join("fresh");
        drop(lock(&fresh).unwrap());
        assert!(!fresh.exists());
    }

    #[test]
    fn replacing_keeps_the_old_run_until_the_new_one_is_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("summary.json"), "old").unwrap();
        // A failed replacement puts the old run back.
        let e = replace(&dir, || -> Result<()> {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("summary.json"), "half")?;
            bail!("diverged")
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("the old run is back"), "{e:#}");
        assert_eq!(
            std::fs::read_to_string(dir.join("summary.json")).unwrap(),
            "old"
        );
        // A whole one replaces it, and nothing is left aside.
        replace(&dir, || {
            // While training, the old run is aside, intact.
            let aside: Vec<_> = std::fs::read_dir(root.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
                .collect();
            assert_eq!(aside.len(), 1);
            assert_eq!(
                std::fs::read_to_string(aside[0].path().join("summary.json")).unwrap(),
                "old"
            );
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("summary.json"), "new").map_err(anyhow::Error::from)
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("summary.json")).unwrap(),
            "new"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
