//! The windows that ask before something is removed for good.

use eframe::egui;

use super::i18n::{self, tr};
use super::runs;
use super::{Action, WorkbenchApp};
use crate::train::RunId;

/// Asks before runs' folders go to the trash.
pub(super) fn confirm_delete_window(
    app: &WorkbenchApp,
    ids: &[RunId],
    ctx: &egui::Context,
    actions: &mut Vec<Action>,
) {
    let runs: Vec<&runs::RunRecord> = ids.iter().filter_map(|id| app.store.get(*id)).collect();
    if runs.is_empty() {
        actions.push(Action::CancelDelete);
        return;
    }
    egui::Window::new(i18n::tr_ctx(ctx, "Delete run?"))
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            match runs.as_slice() {
                [r] => {
                    ui.label(i18n::trf(ui, "Delete {} and its folder?", &[&r.label]));
                    if let Some(dir) = &r.out_dir {
                        ui.small(dir.as_str());
                    }
                }
                many => {
                    ui.label(i18n::trf(ui, "Delete these {} runs?", &[&many.len()]));
                    let names: Vec<&str> = many.iter().take(8).map(|r| r.label.as_str()).collect();
                    let more = many.len().saturating_sub(names.len());
                    let mut text = names.join(", ");
                    if more > 0 {
                        text.push_str(&format!(" … (+{more})"));
                    }
                    ui.small(text);
                }
            }
            ui.label(tr(
                ui,
                "Their folders go to the trash in the runs folder until it is emptied.",
            ));
            ui.horizontal(|ui| {
                if ui.button(tr(ui, "Delete run")).clicked() {
                    actions.push(Action::Delete(ids.to_vec()));
                }
                if ui.button(tr(ui, "Cancel")).clicked() {
                    actions.push(Action::CancelDelete);
                }
            });
        });
}

/// Asks before the trash's folders are removed from disk.
pub(super) fn confirm_empty_trash_window(
    app: &WorkbenchApp,
    ctx: &egui::Context,
    actions: &mut Vec<Action>,
) {
    egui::Window::new(i18n::tr_ctx(ctx, "Empty the trash?"))
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.label(i18n::trf(
                ui,
                "{} run folders are removed from disk for good.",
                &[&app.trash_count],
            ));
            ui.horizontal(|ui| {
                if ui.button(tr(ui, "Empty trash")).clicked() {
                    actions.push(Action::EmptyTrash);
                }
                if ui.button(tr(ui, "Cancel")).clicked() {
                    actions.push(Action::CancelDelete);
                }
            });
        });
}
