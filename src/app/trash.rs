//! The runs folder's trash: deleted runs' folders wait in `<runs>/.trash/` until the user
//! empties it, so a wrong click in a list of hundreds is undone by moving a folder back.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The trash folder of a runs folder (never read as a run: it holds no `config.toml`).
pub fn dir(runs: &Path) -> PathBuf {
    runs.join(".trash")
}

/// How many folders the trash holds.
pub fn count(runs: &Path) -> usize {
    std::fs::read_dir(dir(runs)).map_or(0, |entries| entries.flatten().count())
}

/// Moves `folder` into the trash under its own name (a number added when the trash holds
/// one of that name already) and returns where it went.
pub fn put(runs: &Path, folder: &Path) -> Result<PathBuf> {
    let trash = dir(runs);
    std::fs::create_dir_all(&trash)
        .with_context(|| format!("cannot create {}", trash.display()))?;
    let name = folder
        .file_name()
        .with_context(|| format!("{} has no folder name", folder.display()))?
        .to_string_lossy()
        .into_owned();
    let mut to = trash.join(&name);
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = trash.join(format!("{name}.{n}"));
    }
    // A rename: the folder is whole in one place or the other, never half copied.
    std::fs::rename(folder, &to)
        .with_context(|| format!("cannot move {} to {}", folder.display(), to.display()))?;
    Ok(to)
}

/// The names of the trash's folders, sorted.
pub fn list(runs: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir(runs))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Moves the trash's folder `name` back into the runs folder (under a free name: its own,
/// or with a number added if a run of that name has appeared since) and returns where.
pub fn restore(runs: &Path, name: &str) -> Result<PathBuf> {
    // Only a plain name inside the trash: nothing typed or read can reach elsewhere.
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        anyhow::bail!("{name:?} is not a folder in the trash");
    }
    let from = dir(runs).join(name);
    if !from.is_dir() {
        anyhow::bail!("{} is not in the trash", from.display());
    }
    // A name the trash numbered on the way in ("run.2") goes back as itself if free.
    let mut to = runs.join(name);
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = runs.join(format!("{name}.{n}"));
    }
    std::fs::rename(&from, &to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    Ok(to)
}

/// Removes the trash's folders from disk; returns how many.
pub fn empty(runs: &Path) -> Result<usize> {
    let trash = dir(runs);
    let Ok(entries) = std::fs::read_dir(&trash) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_wait_in_the_trash_until_it_is_emptied() {
        let runs = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            let f = runs.path().join(name);
            std::fs::create_dir(&f).unwrap();
            std::fs::write(f.join("config.toml"), name).unwrap();
        }
        assert_eq!(count(runs.path()), 0);
        let to = put(runs.path(), &runs.path().join("a")).unwrap();
        assert!(!runs.path().join("a").exists());
        assert_eq!(
            std::fs::read_to_string(to.join("config.toml")).unwrap(),
            "a"
        );
        // A second folder of the same name keeps the first.
        std::fs::create_dir(runs.path().join("a")).unwrap();
        let again = put(runs.path(), &runs.path().join("a")).unwrap();
        assert_ne!(again, to);
        assert!(to.join("config.toml").is_file());
        assert_eq!(count(runs.path()), 2);
        assert_eq!(empty(runs.path()).unwrap(), 2);
        assert_eq!(count(runs.path()), 0);
        assert!(
            runs.path().join("b/config.toml").is_file(),
            "others untouched"
        );
    }

    #[test]
    fn a_folder_comes_back_from_the_trash_under_a_free_name() {
        let runs = tempfile::tempdir().unwrap();
        let run = runs.path().join("r");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("config.toml"), "first").unwrap();
        put(runs.path(), &run).unwrap();
        assert_eq!(list(runs.path()), ["r"]);
        // A new run took the name meanwhile: the old one comes back beside it.
        std::fs::create_dir(&run).unwrap();
        let back = restore(runs.path(), "r").unwrap();
        assert_eq!(back, runs.path().join("r.2"));
        assert_eq!(
            std::fs::read_to_string(back.join("config.toml")).unwrap(),
            "first"
        );
        assert!(list(runs.path()).is_empty());
        for bad in ["", "..", "../r", "missing"] {
            assert!(restore(runs.path(), bad).is_err(), "{bad:?}");
        }
    }
}
