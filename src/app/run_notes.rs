//! What the user writes about a run — tags, a note, whether it is archived — kept in
//! `notes.json` beside the trainer's files, which stay exactly as the run wrote them (so a
//! note can be added to a run another process is still writing, and an export never
//! carries it).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in a run folder that holds its notes.
pub const NOTES_FILE: &str = "notes.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunNotes {
    /// Short words to find and group runs by ("baseline", "lr-sweep"), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free text: what the run was for, what was learned from it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Kept on disk but out of the lists and the plots unless the user asks for archived runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
}

impl RunNotes {
    /// The notes of the run in `dir`; none when the file is missing. A file that cannot be
    /// read as notes is an error (it is the user's writing: never silently dropped).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(NOTES_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not a run's notes", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the notes whole into `dir` (or removes the file when there is nothing to keep).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(NOTES_FILE);
        if *self == Self::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("cannot remove {}", path.display()))
                }
                _ => Ok(()),
            };
        }
        crate::files::save_json(&path, &serde_json::to_value(self)?)
    }

    /// Tags as typed ("baseline, lr sweep; 中文"): split at commas, semicolons (ASCII or
    /// full-width) and line breaks, trimmed, empty and repeated ones dropped.
    pub fn parse_tags(text: &str) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for t in text.split([',', ';', '，', '；', '、', '\n']) {
            let t = t.trim();
            if !t.is_empty() && !tags.iter().any(|x| x == t) {
                tags.push(t.to_string());
            }
        }
        tags
    }

    /// The tags as the editor shows them.
    pub fn tags_text(&self) -> String {
        self.tags.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_empty_notes_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunNotes::read(dir.path()).unwrap(), RunNotes::default());
        let notes = RunNotes {
            tags: RunNotes::parse_tags(" baseline, lr sweep；中文,baseline ,, "),
            note: "rate too high?\nsecond line".into(),
            archived: true,
        };
        assert_eq!(notes.tags, ["baseline", "lr sweep", "中文"]);
        notes.save(dir.path()).unwrap();
        assert_eq!(RunNotes::read(dir.path()).unwrap(), notes);
        assert_eq!(notes.tags_text(), "baseline, lr sweep, 中文");
        RunNotes::default().save(dir.path()).unwrap();
        assert!(!dir.path().join(NOTES_FILE).exists());
        // Saving nothing where there was nothing is fine too.
        RunNotes::default().save(dir.path()).unwrap();
    }

    #[test]
    fn unreadable_notes_are_an_error_not_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NOTES_FILE), "{ not json").unwrap();
        let e = RunNotes::read(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("not a run's notes"), "{e:#}");
    }
}
