//! The runs browser's filters and what can be done to the listed runs at once.

use eframe::egui;

use super::super::i18n::{tr, trf};
use super::super::run_filter::Since;
use super::super::trash;
use super::super::{Action, WorkbenchApp};

/// The runs browser's filters: a search over every run's names, tags and note, and choices
/// of experiment, method, status, age and tag; archived runs only when asked for.
pub(super) fn run_filters(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let all = tr(ui, "all").to_string();
    let with_all = |names: Vec<String>| -> Vec<(Option<String>, String)> {
        std::iter::once((None, all.clone()))
            .chain(names.into_iter().map(|n| (Some(n.clone()), n)))
            .collect()
    };
    let distinct = |mut v: Vec<String>| {
        v.sort_unstable();
        v.dedup();
        v
    };
    let runs = &app.store.runs;
    let unnamed = tr(ui, "(runs before experiments)");
    let experiments: Vec<(Option<String>, String)> =
        std::iter::once((None, tr(ui, "all experiments").to_string()))
            .chain(app.store.experiments().into_iter().map(|(e, n)| {
                let name = if e.is_empty() { unnamed } else { e.as_str() };
                let text = format!("{name} ({n})");
                (Some(e), text)
            }))
            .collect();
    let methods = with_all(distinct(
        runs.iter()
            .map(|r| r.config.method.kind().to_string())
            .collect(),
    ));
    let mut names: Vec<&'static str> = runs.iter().map(|r| r.status.name()).collect();
    names.sort_unstable();
    names.dedup();
    let statuses: Vec<(Option<&'static str>, String)> = std::iter::once((None, all.clone()))
        .chain(names.into_iter().map(|s| (Some(s), tr(ui, s).to_string())))
        .collect();
    let since: Vec<(Since, String)> = Since::ALL
        .into_iter()
        .map(|s| (s, tr(ui, s.name()).to_string()))
        .collect();
    let tags = with_all(distinct(
        runs.iter()
            .flat_map(|r| r.notes.tags.iter().cloned())
            .collect(),
    ));
    let archived = runs.iter().filter(|r| r.notes.archived).count();
    let filter = &mut app.runs_filter;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(tr(ui, "Search"));
        ui.add(
            egui::TextEdit::singleline(&mut filter.search)
                .desired_width(160.0)
                .hint_text(tr(ui, "method, model, data, tag, note…")),
        )
        .labelled_by(label.id);
        let label = tr(ui, "In experiment");
        choice(
            ui,
            label,
            "runs_experiment",
            &mut filter.experiment,
            &experiments,
        );
        choice(
            ui,
            tr(ui, "Method"),
            "runs_method",
            &mut filter.method,
            &methods,
        );
        choice(
            ui,
            tr(ui, "Status"),
            "runs_status",
            &mut filter.status,
            &statuses,
        );
        choice(
            ui,
            tr(ui, "Started"),
            "runs_since",
            &mut filter.since,
            &since,
        );
        if tags.len() > 1 || filter.tag.is_some() {
            choice(ui, tr(ui, "Tag"), "runs_tag", &mut filter.tag, &tags);
        }
        if archived > 0 {
            ui.checkbox(
                &mut filter.archived_too,
                trf(ui, "Archived runs too ({})", &[&archived]),
            );
        }
    });
}

/// A labelled drop-down that wraps as one piece: a new row begins before the label when
/// the pair would not fit (a nested horizontal group does not wrap; it runs off the edge).
fn choice<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    id: &str,
    value: &mut T,
    options: &[(T, String)],
) {
    let text_width = egui::WidgetText::from(label)
        .into_galley(
            ui,
            Some(egui::TextWrapMode::Extend),
            f32::INFINITY,
            egui::TextStyle::Body,
        )
        .size()
        .x;
    let needed = text_width + ui.spacing().combo_width + 3.0 * ui.spacing().item_spacing.x;
    if ui.available_size_before_wrap().x < needed {
        ui.end_row();
    }
    let label = ui.label(label);
    let current = options
        .iter()
        .find(|(v, _)| v == value)
        .map_or_else(String::new, |(_, text)| text.clone());
    egui::ComboBox::from_id_salt(id)
        .selected_text(current)
        .show_ui(ui, |ui| {
            for (v, text) in options {
                ui.selectable_value(value, v.clone(), text);
            }
        })
        .response
        .labelled_by(label.id);
}

/// What can be done to the listed runs at once: plot only them, archive or delete them.
pub(super) fn listed_actions(
    app: &mut WorkbenchApp,
    listed: &[usize],
    ui: &mut egui::Ui,
    actions: &mut Vec<Action>,
) {
    ui.horizontal_wrapped(|ui| {
        if ui
            .button(tr(ui, "Plot only these"))
            .on_hover_text(tr(ui, "Draw the listed runs' curves and no others"))
            .clicked()
        {
            let mut plot = vec![false; app.store.runs.len()];
            for &i in listed {
                plot[i] = true;
            }
            for (r, p) in app.store.runs.iter_mut().zip(plot) {
                r.shown = p;
            }
        }
        let n = app.store.runs.iter().filter(|r| r.shown).count();
        ui.label(trf(ui, "{} runs on the plots", &[&n]));
        // Many runs at once: the listed ones that no process is writing.
        let on_disk = |archived: bool| -> Vec<u64> {
            listed
                .iter()
                .map(|&i| &app.store.runs[i])
                .filter(|r| !r.status.is_live() && r.notes.archived == archived)
                .map(|r| r.id)
                .collect()
        };
        let (active, archived) = (on_disk(false), on_disk(true));
        if !active.is_empty()
            && ui
                .button(trf(ui, "Archive the {} listed", &[&active.len()]))
                .on_hover_text(tr(
                    ui,
                    "Take the listed runs out of the lists and the plots; their folders stay \
                     (tick \"Archived runs too\" to see them again)",
                ))
                .clicked()
        {
            actions.push(Action::Archive(active.clone(), true));
        }
        if !archived.is_empty()
            && ui
                .button(trf(ui, "Unarchive the {} listed", &[&archived.len()]))
                .clicked()
        {
            actions.push(Action::Archive(archived.clone(), false));
        }
        let deletable: Vec<u64> = active.into_iter().chain(archived).collect();
        if ui
            .add_enabled(
                !deletable.is_empty(),
                egui::Button::new(trf(ui, "Delete the {} listed…", &[&deletable.len()])),
            )
            .on_hover_text(tr(
                ui,
                "Move the listed runs' folders to the trash (asks first)",
            ))
            .clicked()
        {
            actions.push(Action::AskDelete(deletable));
        }
        if app.trash_count > 0 {
            ui.menu_button(trf(ui, "Trash ({})", &[&app.trash_count]), |ui| {
                trash_menu(app, ui, actions)
            });
        }
    });
}

/// The trash's folders, each with Restore, and the button that empties it.
fn trash_menu(app: &WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let Some(runs) = &app.runs_dir else {
        return;
    };
    let names = trash::list(runs);
    egui::ScrollArea::vertical()
        .max_height(300.0)
        .show(ui, |ui| {
            for name in &names {
                ui.horizontal(|ui| {
                    ui.label(name.as_str());
                    if ui
                        .small_button(tr(ui, "Restore"))
                        .on_hover_text(tr(ui, "Move the run back into the runs folder"))
                        .clicked()
                    {
                        actions.push(Action::Restore(name.clone()));
                        ui.close();
                    }
                });
            }
        });
    ui.separator();
    if ui
        .button(trf(ui, "Empty trash ({})…", &[&names.len()]))
        .clicked()
    {
        actions.push(Action::AskEmptyTrash);
        ui.close();
    }
}
