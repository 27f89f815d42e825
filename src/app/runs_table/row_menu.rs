//! A run's own actions: Stop, Resume and the menu of export, merge, notes, archive and delete.

use eframe::egui;

use super::super::Action;
use super::super::i18n::{tr, trf};
use super::super::path_dialog::{PathPurpose, default_target};
use super::super::runs::{RunRecord, RunStatus};
use crate::recipe::Target;

/// Stop for a run this window trains; who writes it for one another process trains; Resume
/// and the folder's menu for one on disk.
pub(super) fn run_actions(r: &RunRecord, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    if r.status.is_live_here() {
        if ui.small_button(tr(ui, "Stop")).clicked() {
            actions.push(Action::Stop(r.id));
        }
    } else if let RunStatus::Elsewhere(holder) = &r.status {
        // Only its owner can stop, resume or delete it.
        ui.small(holder.as_str()).on_hover_text(tr(
            ui,
            "Another window or a CLI run is training it; stop it there",
        ));
    } else if let Some(dir) = &r.out_dir {
        ui.horizontal(|ui| run_folder_buttons(r, dir, ui, actions));
    } else {
        ui.label("");
    }
}

/// Export, merge and delete for a run that has a folder.
fn run_folder_buttons(r: &RunRecord, dir: &str, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let has_adapter = std::path::Path::new(dir).join("adapter").is_dir();
    if r.resumable
        && ui
            .small_button(tr(ui, "Resume"))
            .on_hover_text(tr(
                ui,
                "Continue training from the run's last checkpoint to its last step",
            ))
            .clicked()
    {
        actions.push(Action::Resume(r.id));
    }
    // The rarer actions sit in one menu, so the row stays narrow and the table's result
    // columns stay in view (at 1280×800 three buttons pushed Metric out of the window).
    ui.menu_button("…", |ui| {
        run_folder_menu(r, dir, has_adapter, ui, actions)
    })
    .response
    .on_hover_text(tr(ui, "Export, merge or delete this run"));
}

fn run_folder_menu(
    r: &RunRecord,
    dir: &str,
    has_adapter: bool,
    ui: &mut egui::Ui,
    actions: &mut Vec<Action>,
) {
    // With early stopping the best evaluation comes first (what the run was stopped for);
    // the last step's adapter stays one click away.
    let best = r
        .best_eval()
        .filter(|_| std::path::Path::new(dir).join("best").is_dir());
    if let Some(b) = best
        && ui
            .button(trf(ui, "Export best (step {})…", &[&b.step]))
            .on_hover_text(format!(
                "Copy the best evaluation's adapter ({dir}/best) to a folder you choose"
            ))
            .clicked()
    {
        actions.push(Action::AskPath(
            PathPurpose::ExportBest(r.id),
            default_target(&format!("{}-best-adapter", folder_name(dir))),
        ));
        ui.close();
    }
    let export = if best.is_some() {
        "Export last…"
    } else {
        "Export…"
    };
    if ui
        .add_enabled(has_adapter, egui::Button::new(tr(ui, export)))
        .on_hover_text(format!(
            "Copy the trained adapter ({dir}/adapter) to a folder you choose"
        ))
        .clicked()
    {
        actions.push(Action::AskPath(
            PathPurpose::Export(r.id),
            default_target(&format!("{}-adapter", folder_name(dir))),
        ));
        ui.close();
    }
    let mergeable = r.config.method.mergeable();
    if mergeable
        && ui
            .add_enabled(has_adapter, egui::Button::new(tr(ui, "Merge…")))
            .on_hover_text(tr(
                ui,
                "Fold the adapter into the base weights and save a Hugging Face model folder",
            ))
            .clicked()
    {
        actions.push(Action::AskPath(
            PathPurpose::Merge(r.id),
            default_target(&format!("{}-merged", folder_name(dir))),
        ));
        ui.close();
    }
    // The same run in PyTorch + PEFT or LLaMA-Factory, for a larger model or several GPUs;
    // a method the engine cannot express says why instead.
    for (target, label, hover, suffix) in [
        (
            Target::Transformers,
            "Export as PyTorch recipe…",
            "A folder that trains this run with transformers + PEFT (train.py; launch.sh for one GPU, several, or torchrun on CPUs), from its step-0 tensors and its batches in order",
            "recipe",
        ),
        (
            Target::LlamaFactory,
            "Export as LLaMA-Factory recipe…",
            "A LLaMA-Factory train.yaml with this run's method, rate, schedule, batch and steps, and its data in Alpaca form",
            "llamafactory",
        ),
    ] {
        let refusal = target.refusal(&r.config.method, r.model_is_classifier());
        let button = ui.add_enabled(refusal.is_none(), egui::Button::new(tr(ui, label)));
        let button = match &refusal {
            Some(why) => {
                let name = why.name.as_deref().map(|n| tr(ui, n)).unwrap_or_default();
                button.on_disabled_hover_text(trf(ui, why.template, &[&name]))
            }
            None => button.on_hover_text(tr(ui, hover)),
        };
        if button.clicked() {
            actions.push(Action::AskPath(
                PathPurpose::Recipe(r.id, target),
                default_target(&format!("{}-{suffix}", folder_name(dir))),
            ));
            ui.close();
        }
    }
    if ui.button(tr(ui, "Tags and note…")).clicked() {
        actions.push(Action::EditNotes(r.id));
        ui.close();
    }
    let archive = if r.notes.archived {
        "Unarchive"
    } else {
        "Archive"
    };
    if ui
        .button(tr(ui, archive))
        .on_hover_text(tr(
            ui,
            "Archived runs leave the lists and the plots; their folders stay",
        ))
        .clicked()
    {
        actions.push(Action::Archive(vec![r.id], !r.notes.archived));
        ui.close();
    }
    if ui
        .button(tr(ui, "Delete"))
        .on_hover_text(format!("Delete the run folder {dir}"))
        .clicked()
    {
        actions.push(Action::AskDelete(vec![r.id]));
        ui.close();
    }
}

/// The last part of a run folder's path (`1764751234-003-lora`).
fn folder_name(dir: &str) -> String {
    std::path::Path::new(dir)
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
}
