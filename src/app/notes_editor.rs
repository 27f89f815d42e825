//! The small window in which a run's tags and note are written.

use eframe::egui;

use super::i18n::{tr, trf};
use super::run_notes::RunNotes;
use super::{Action, RunId};

/// A run's tags and note being edited (saved only on Save).
pub struct NotesEditor {
    pub id: RunId,
    label: String,
    tags: String,
    note: String,
    archived: bool,
}

impl NotesEditor {
    pub fn new(id: RunId, label: &str, notes: &RunNotes) -> Self {
        Self {
            id,
            label: label.to_string(),
            tags: notes.tags_text(),
            note: notes.note.clone(),
            archived: notes.archived,
        }
    }

    /// Draws the window; Save or Cancel become actions.
    pub fn ui(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        egui::Window::new(super::i18n::tr_ctx(ctx, "Tags and note"))
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
            .show(ctx, |ui| {
                ui.label(trf(ui, "Run {}", &[&self.label]));
                let label = ui.label(tr(ui, "Tags (separated by commas)"));
                ui.add(
                    egui::TextEdit::singleline(&mut self.tags)
                        .desired_width(360.0)
                        .hint_text("baseline, lr-sweep"),
                )
                .labelled_by(label.id);
                let label = ui.label(tr(ui, "Note"));
                ui.add(
                    egui::TextEdit::multiline(&mut self.note)
                        .desired_width(360.0)
                        .desired_rows(4),
                )
                .labelled_by(label.id);
                ui.horizontal(|ui| {
                    if ui.button(tr(ui, "Save")).clicked() {
                        let notes = RunNotes {
                            tags: RunNotes::parse_tags(&self.tags),
                            note: self.note.trim_end().to_string(),
                            archived: self.archived,
                        };
                        actions.push(Action::SaveNotes(self.id, notes));
                    }
                    if ui.button(tr(ui, "Cancel")).clicked() {
                        actions.push(Action::CancelNotes);
                    }
                });
            });
    }
}
