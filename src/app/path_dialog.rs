//! Choosing where to write or what to open. The path is always confirmed in the window,
//! with the system's file dialog one "Browse…" away: under Xvfb, over `ssh -X` or on a
//! desktop without an XDG portal or zenity, `rfd` opens nothing and returns what a cancel
//! returns, and Export…, Merge…, Load adapter… and Save plots… used to do nothing at all.

use eframe::egui;
use std::path::{Path, PathBuf};

use super::Action;
use super::i18n::{self, tr};
use crate::train::RunId;

/// What the chosen path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPurpose {
    /// Copy a run's adapter folder there.
    Export(RunId),
    /// Early stopping's best evaluation (`best/`) of a run.
    ExportBest(RunId),
    /// Write a run as a PyTorch recipe folder.
    Recipe(RunId, crate::recipe::Target),
    /// A Trainer or LLaMA-Factory output folder to import as a run.
    ImportRun,
    /// Write the run's merged model folder there.
    Merge(RunId),
    /// Write the runs table as CSV.
    ExportTable,
    /// Save the plots as PNG.
    SavePlots,
    /// Train on the Hugging Face model folder.
    ModelFolder,
    /// Train on a `.gguf` file.
    GgufFile,
    /// Train on a `.jsonl`/`.csv` file.
    DatasetFile,
    /// Add an adapter folder to the playground.
    LoadAdapter,
}

/// What the path must be before it is accepted.
enum Need {
    /// Anything not yet there (a folder is created).
    NewPath,
    ExistingFile(&'static str, &'static [&'static str]),
    ExistingFolder,
}

impl PathPurpose {
    fn title(self) -> &'static str {
        match self {
            PathPurpose::Export(_) => "Export the adapter to",
            PathPurpose::ExportBest(_) => "Export the best evaluation's adapter (best/) to",
            PathPurpose::Recipe(_, crate::recipe::Target::Transformers) => {
                "Write the PyTorch recipe (a new folder) to"
            }
            PathPurpose::Recipe(_, crate::recipe::Target::LlamaFactory) => {
                "Write the LLaMA-Factory recipe (a new folder) to"
            }
            PathPurpose::ImportRun => "Output folder of the run to import",
            PathPurpose::Merge(_) => "Write the merged model to",
            PathPurpose::ExportTable => "Write the table (CSV) to",
            PathPurpose::SavePlots => "Save the plots (PNG) to",
            PathPurpose::ModelFolder => "Model folder",
            PathPurpose::GgufFile => "GGUF file",
            PathPurpose::DatasetFile => "Dataset file",
            PathPurpose::LoadAdapter => "Adapter folder",
        }
    }

    fn confirm(self) -> &'static str {
        match self {
            PathPurpose::Export(_) | PathPurpose::ExportBest(_) => "Export",
            PathPurpose::Recipe(..) => "Write",
            PathPurpose::Merge(_) => "Merge",
            PathPurpose::ExportTable | PathPurpose::SavePlots => "Save",
            PathPurpose::ModelFolder
            | PathPurpose::GgufFile
            | PathPurpose::DatasetFile
            | PathPurpose::LoadAdapter => "Open",
            PathPurpose::ImportRun => "Import",
        }
    }

    fn need(self) -> Need {
        match self {
            PathPurpose::Export(_)
            | PathPurpose::ExportBest(_)
            | PathPurpose::Recipe(..)
            | PathPurpose::Merge(_) => Need::NewPath,
            // A table or image is written through a temporary file and replaces the old one.
            PathPurpose::ExportTable | PathPurpose::SavePlots => Need::NewPath,
            PathPurpose::ModelFolder | PathPurpose::LoadAdapter | PathPurpose::ImportRun => {
                Need::ExistingFolder
            }
            PathPurpose::GgufFile => Need::ExistingFile("GGUF models", &["gguf"]),
            PathPurpose::DatasetFile => {
                Need::ExistingFile("Datasets", &["jsonl", "json", "csv", "parquet"])
            }
        }
    }

    /// The action the confirmed path becomes.
    fn action(self, path: PathBuf) -> Action {
        match self {
            PathPurpose::Export(id) => Action::Export(id, path),
            PathPurpose::ExportBest(id) => Action::ExportBest(id, path),
            PathPurpose::Recipe(id, target) => Action::WriteRecipe(id, path, target),
            PathPurpose::ImportRun => Action::ImportRun(path),
            PathPurpose::Merge(id) => Action::Merge(id, path),
            PathPurpose::ExportTable => Action::ExportTable(path),
            PathPurpose::SavePlots => Action::SavePlots(path),
            PathPurpose::ModelFolder | PathPurpose::GgufFile => Action::SetModel(path),
            PathPurpose::DatasetFile => Action::SetDataset(path),
            PathPurpose::LoadAdapter => Action::LoadAdapter(path),
        }
    }
}

/// An open path prompt.
#[derive(Debug, Clone)]
pub struct PathPrompt {
    pub purpose: PathPurpose,
    pub path: String,
    /// Why the last confirm or browse did not give a path.
    pub note: Option<String>,
}

impl PathPrompt {
    pub fn new(purpose: PathPurpose, default: &Path) -> Self {
        Self {
            purpose,
            path: default.display().to_string(),
            note: None,
        }
    }

    /// The path as typed, if it is one the purpose accepts; else why not.
    fn checked(&self) -> Result<PathBuf, (&'static str, String)> {
        let text = self.path.trim();
        if text.is_empty() {
            return Err(("Type a path first.", String::new()));
        }
        let path = PathBuf::from(text);
        match self.purpose.need() {
            Need::NewPath if path.is_dir() && self.purpose.confirm() == "Save" => {
                Err(("{} is a folder; name a file in it.", text.into()))
            }
            // An adapter or a model folder never replaces what a folder holds.
            Need::NewPath
                if matches!(
                    self.purpose,
                    PathPurpose::Export(_)
                        | PathPurpose::ExportBest(_)
                        | PathPurpose::Recipe(..)
                        | PathPurpose::Merge(_)
                ) && crate::files::ensure_new_folder(&path, "").is_err() =>
            {
                Err(("{} already holds files; name a new folder.", text.into()))
            }
            Need::NewPath => Ok(path),
            Need::ExistingFile(..) if path.is_file() => Ok(path),
            Need::ExistingFile(..) => Err(("There is no file {}.", text.into())),
            Need::ExistingFolder if path.is_dir() => Ok(path),
            Need::ExistingFolder => Err(("There is no folder {}.", text.into())),
        }
    }

    /// The system's dialog, started where the typed path points.
    fn browse(&mut self, ui: &egui::Ui) {
        let typed = PathBuf::from(self.path.trim());
        let start = if typed.is_dir() {
            Some(typed.clone())
        } else {
            typed.parent().filter(|p| p.is_dir()).map(Path::to_path_buf)
        };
        let mut dialog = rfd::FileDialog::new();
        if let Some(dir) = start {
            dialog = dialog.set_directory(dir);
        }
        let chosen = match self.purpose.need() {
            Need::NewPath => {
                if let Some(name) = typed.file_name() {
                    dialog = dialog.set_file_name(name.to_string_lossy());
                }
                dialog.save_file()
            }
            Need::ExistingFile(what, extensions) => dialog.add_filter(what, extensions).pick_file(),
            Need::ExistingFolder => dialog.pick_folder(),
        };
        match chosen {
            Some(p) => {
                self.path = p.display().to_string();
                self.note = None;
            }
            None => {
                self.note = Some(
                    tr(
                        ui,
                        "The system's file dialog gave no path (it was cancelled, or none can \
                     open here: no desktop portal or zenity). Type the path above.",
                    )
                    .to_string(),
                );
            }
        }
    }
}

/// Draws the prompt; returns the action of a confirmed path, or `Some(None)` when the
/// prompt is closed without one, `None` while it stays open.
pub fn ui(prompt: &mut PathPrompt, ctx: &egui::Context) -> Option<Option<Action>> {
    let mut outcome = None;
    egui::Window::new(i18n::tr_ctx(ctx, prompt.purpose.title()))
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            let field = ui.add(
                egui::TextEdit::singleline(&mut prompt.path)
                    .desired_width(420.0)
                    .hint_text(tr(ui, "a path on this computer")),
            );
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if let Some(note) = &prompt.note {
                ui.colored_label(ui.visuals().warn_fg_color, note);
            }
            ui.horizontal(|ui| {
                if ui.button(tr(ui, prompt.purpose.confirm())).clicked() || entered {
                    match prompt.checked() {
                        Ok(path) => outcome = Some(Some(prompt.purpose.action(path))),
                        Err((template, arg)) => {
                            prompt.note = Some(i18n::trf(ui, template, &[&arg]));
                        }
                    }
                }
                if ui
                    .button(tr(ui, "Browse…"))
                    .on_hover_text(tr(ui, "Choose with the system's file dialog"))
                    .clicked()
                {
                    prompt.browse(ui);
                }
                if ui.button(tr(ui, "Cancel")).clicked() {
                    outcome = Some(None);
                }
            });
        });
    outcome
}

/// Where a new file or folder named `name` goes by default: the folder the workbench was
/// started in (a student's project folder when launched from a terminal).
pub fn default_target(name: &str) -> PathBuf {
    std::env::current_dir()
        .unwrap_or_else(|_| PathBuf::from("."))
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_path_is_checked_against_what_it_is_for() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.jsonl");
        std::fs::write(&file, "{}\n").unwrap();
        let mut p = PathPrompt::new(PathPurpose::DatasetFile, &file);
        assert_eq!(p.checked().unwrap(), file);
        p.path = dir.path().join("missing.jsonl").display().to_string();
        assert_eq!(p.checked().unwrap_err().0, "There is no file {}.");
        let mut p = PathPrompt::new(PathPurpose::ModelFolder, &file);
        assert_eq!(p.checked().unwrap_err().0, "There is no folder {}.");
        p.path = format!("  {}  ", dir.path().display());
        assert_eq!(p.checked().unwrap(), dir.path());
        let p = PathPrompt::new(PathPurpose::SavePlots, dir.path());
        assert!(p.checked().is_err(), "a folder is no PNG file");
        let p = PathPrompt::new(PathPurpose::Export(3), &dir.path().join("out"));
        assert!(matches!(
            p.purpose.action(p.checked().unwrap()),
            Action::Export(3, _)
        ));
        let p = PathPrompt::new(PathPurpose::ExportTable, Path::new(" "));
        assert!(p.checked().is_err());
        // An export or merge never replaces a folder's contents; an empty folder will do.
        for purpose in [PathPurpose::Export(3), PathPurpose::Merge(3)] {
            let p = PathPrompt::new(purpose, dir.path());
            assert_eq!(
                p.checked().unwrap_err().0,
                "{} already holds files; name a new folder."
            );
            let empty = dir.path().join(format!("empty-{}", purpose.confirm()));
            std::fs::create_dir(&empty).unwrap();
            assert!(PathPrompt::new(purpose, &empty).checked().is_ok());
        }
    }
}
