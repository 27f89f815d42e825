//! The runs table: one row per listed run (its results first, then its costs), sortable
//! by any column, columns the user may hide, and the filters and actions above it.

use eframe::egui;

use super::central::{duration, human, run_color};
use super::i18n::{tr, trf};
use super::path_dialog::{PathPurpose, default_target};
use super::runs::{self, RunRecord, RunStatus};
use super::{Action, WorkbenchApp};
use crate::train::memory;

mod filters;
mod row_menu;

use filters::{listed_actions, run_filters};
use row_menu::run_actions;

/// The runs table's columns, each sortable by clicking its header.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Column {
    Run,
    Status,
    LearningRate,
    Steps,
    Trainable,
    Adapter,
    PeakMemory,
    TokensPerSecond,
    Time,
    EvalLoss,
    Metric,
    /// Early stopping's best evaluation: its metric, loss and step.
    Best,
    /// The user's tags and note.
    Notes,
}

impl Column {
    /// Results first: at 1280×800 the table is as wide as the central panel, and what a
    /// comparison is read for (which run, its metric and loss) stays in view; the costs
    /// follow and the table scrolls sideways to them.
    const ALL: [Column; 13] = [
        Column::Run,
        Column::Metric,
        Column::EvalLoss,
        Column::Best,
        Column::Status,
        Column::LearningRate,
        Column::Steps,
        Column::Trainable,
        Column::Time,
        Column::TokensPerSecond,
        Column::PeakMemory,
        Column::Adapter,
        Column::Notes,
    ];

    /// Which run and its result always show; the user may hide the rest.
    pub fn hideable(self) -> bool {
        !matches!(self, Column::Run | Column::Metric)
    }

    fn title(self) -> &'static str {
        match self {
            Column::Run => "Run",
            Column::Status => "Status",
            Column::LearningRate => "Learning rate",
            Column::Steps => "Steps",
            Column::Trainable => "Trainable",
            Column::Adapter => "Adapter size",
            Column::PeakMemory => "Peak memory",
            Column::TokensPerSecond => "Tokens/s",
            Column::Time => "Time",
            Column::EvalLoss => "Eval loss",
            Column::Metric => "Metric",
            Column::Best => "Best",
            Column::Notes => "Tags and note",
        }
    }
}

/// The value a column sorts by; runs without one sort last.
fn sort_key(r: &RunRecord, c: Column) -> Option<f64> {
    let row = r.row.as_ref();
    match c {
        Column::Run => Some(r.id as f64),
        Column::Status => None,
        Column::LearningRate => Some(r.config.optimizer.lr),
        Column::Steps => Some(r.config.steps as f64),
        Column::Trainable => (r.total_params > 0).then_some(r.trainable_params as f64),
        Column::Adapter => row.map(|x| x.adapter_bytes as f64),
        Column::PeakMemory => row.map(|x| x.peak_rss_bytes as f64),
        Column::TokensPerSecond => (r.tokens_per_second > 0.0).then_some(r.tokens_per_second),
        Column::Time => Some(r.summary.as_ref().map_or(r.elapsed_s, |s| s.wall_seconds)),
        Column::EvalLoss => r.eval_loss_span().map(|(_, last)| last),
        Column::Metric => r.final_metric(),
        Column::Best => r.best_eval().map(|b| b.metric),
        Column::Notes => None,
    }
}

/// The listed runs in table order, as indices into the store: newest first, or by the
/// chosen column.
fn listed_indices(app: &WorkbenchApp) -> Vec<usize> {
    let now = runs::now_unix();
    let all = &app.store.runs;
    let mut listed: Vec<usize> = (0..all.len())
        .rev()
        .filter(|&i| app.runs_filter.lists(&all[i], now))
        .collect();
    if let Some((col, ascending)) = app.sort {
        listed.sort_by(|&i, &j| {
            let (a, b) = (&all[i], &all[j]);
            match (sort_key(a, col), sort_key(b, col)) {
                (Some(x), Some(y)) if ascending => x.total_cmp(&y),
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) if col == Column::Notes => a.notes.tags.cmp(&b.notes.tags),
                (None, None) if col == Column::Status => a.status.name().cmp(b.status.name()),
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    listed
}

/// The listed runs in table order.
pub fn sorted_runs(app: &WorkbenchApp) -> Vec<&RunRecord> {
    listed_indices(app)
        .into_iter()
        .map(|i| &app.store.runs[i])
        .collect()
}

pub fn run_list(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading(tr(ui, "Runs"));
        let finished = app.store.runs.iter().filter(|r| r.row.is_some()).count();
        if ui
            .add_enabled(
                finished > 0,
                egui::Button::new(tr(ui, "Export table (CSV)…")),
            )
            .on_hover_text(tr(
                ui,
                "The finished runs' numbers as a CSV file, in the table's order",
            ))
            .clicked()
        {
            actions.push(Action::AskPath(
                PathPurpose::ExportTable,
                default_target("comparison.csv"),
            ));
        }
        if ui
            .button(tr(ui, "Import run…"))
            .on_hover_text(tr(
                ui,
                "A run trained elsewhere: a transformers Trainer output folder (trainer_state.json and the PEFT adapter), LLaMA-Factory's (trainer_log.jsonl), or a recipe's output/",
            ))
            .clicked()
        {
            actions.push(Action::AskPath(
                PathPurpose::ImportRun,
                std::env::current_dir().unwrap_or_default(),
            ));
        }
        ui.menu_button(tr(ui, "Columns"), |ui| column_choice(app, ui))
            .response
            .on_hover_text(tr(ui, "Show or hide the table's columns"));
    });
    run_filters(app, ui);
    // Filtered and sorted once a frame, for the buttons and the rows alike.
    let listed = listed_indices(app);
    listed_actions(app, &listed, ui, actions);
    let shown: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| !app.hidden_columns.contains(c))
        .collect();
    let mut clicked = None;
    egui::ScrollArea::horizontal().show(ui, |ui| {
        egui::Grid::new("runs_table")
            .striped(true)
            .num_columns(shown.len() + 2)
            .show(ui, |ui| {
                ui.label(tr(ui, "Plot"))
                    .on_hover_text(tr(ui, "Draw this run's curves on the plots"));
                for &c in &shown {
                    let arrow = match app.sort {
                        Some((s, true)) if s == c => " ^",
                        Some((s, false)) if s == c => " v",
                        _ => "",
                    };
                    let title = format!("{}{arrow}", tr(ui, c.title()));
                    let hover = match c {
                        Column::PeakMemory => tr(
                            ui,
                            "The workbench's highest resident memory while this run trained \
                             (the window included; counted afresh for each run). Sort by this \
                             column (again: reverse)",
                        ),
                        _ => tr(ui, "Sort by this column (again: reverse)"),
                    };
                    let header = ui
                        .add(egui::Button::new(egui::RichText::new(title).strong()).frame(false))
                        .on_hover_text(hover);
                    if header.clicked() {
                        clicked = Some(c);
                    }
                    header.context_menu(|ui| column_choice(app, ui));
                    if c == Column::Status {
                        ui.label(""); // the row's actions
                    }
                }
                ui.end_row();
                let more = listed.len().saturating_sub(MAX_ROWS);
                for r in listed.iter().take(MAX_ROWS).map(|&i| &app.store.runs[i]) {
                    let selected = app.selected_run == Some(r.id);
                    let mut plotted = r.shown;
                    let tick = ui.add(egui::Checkbox::without_text(&mut plotted));
                    // Named for screen readers (and tests) by its run.
                    let name = format!("{} {}", tr(ui, "Plot"), r.label);
                    tick.widget_info(|| {
                        egui::WidgetInfo::selected(
                            egui::accesskit::Role::CheckBox,
                            true,
                            plotted,
                            &name,
                        )
                    });
                    if tick.changed() {
                        actions.push(Action::ShowRun(r.id, plotted));
                    }
                    for &c in &shown {
                        run_cell(r, c, selected, ui, actions);
                        if c == Column::Status {
                            run_actions(r, ui, actions);
                        }
                    }
                    ui.end_row();
                }
                if more > 0 {
                    ui.label("");
                    ui.label(trf(
                        ui,
                        "… and {} more: narrow the list with the search or an experiment",
                        &[&more],
                    ));
                    ui.end_row();
                }
            });
        // A notice several runs share (a comparison's runs read the same data) is said once,
        // with the runs it concerns: twelve identical lines buried the failures.
        let mut notices: Vec<(&str, Vec<String>)> = Vec::new();
        for r in app.store.runs.iter().rev() {
            if let RunStatus::Failed(e) = &r.status {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("{} failed: {e}", r.label),
                );
            }
            for n in &r.notices {
                match notices.iter_mut().find(|(text, _)| *text == n.as_str()) {
                    Some((_, runs)) => runs.push(format!("#{}", r.id)),
                    None => notices.push((n, vec![format!("#{}", r.id)])),
                }
            }
        }
        for (text, runs) in notices {
            ui.small(format!("{}: {text}", runs.join(", ")));
        }
    });
    if let Some(c) = clicked {
        app.sort = match app.sort {
            Some((s, asc)) if s == c => Some((c, !asc)),
            // Losses, time and memory read best ascending; the rest descending.
            _ => Some((
                c,
                matches!(
                    c,
                    Column::Run
                        | Column::Status
                        | Column::Adapter
                        | Column::PeakMemory
                        | Column::Time
                        | Column::EvalLoss
                ),
            )),
        };
    }
}

/// Rows the table draws at most: a month of comparisons is hundreds of runs, and every row
/// drawn costs each frame; the search finds the rest.
const MAX_ROWS: usize = 50;

/// Ticks for the columns a user may hide (right-click a header, or the Columns menu).
fn column_choice(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    for c in Column::ALL.into_iter().filter(|c| c.hideable()) {
        let mut shown = !app.hidden_columns.contains(&c);
        if ui.checkbox(&mut shown, tr(ui, c.title())).changed() {
            if shown {
                app.hidden_columns.remove(&c);
            } else {
                app.hidden_columns.insert(c);
            }
        }
    }
}

/// One cell of a run's row.
fn run_cell(
    r: &RunRecord,
    c: Column,
    selected: bool,
    ui: &mut egui::Ui,
    actions: &mut Vec<Action>,
) {
    match c {
        Column::Run => {
            let name = egui::RichText::new(&r.label).color(run_color(r.id, ui.visuals().dark_mode));
            if ui
                .selectable_label(selected, name)
                .on_hover_text(tr(ui, "Pick out this run's curves (again: show all alike)"))
                .clicked()
            {
                actions.push(Action::SelectRun((!selected).then_some(r.id)));
            }
        }
        Column::Metric => metric_cell(r, ui),
        Column::EvalLoss => {
            // A run imported from another trainer's log seldom evaluated at step 0: then
            // its last evaluation alone, not a span that starts later than the others'.
            let from_start = r.eval_loss.first().is_none_or(|p| p[0] == 0.0);
            match r.eval_loss_span() {
                Some((first, last)) if from_start && first.is_finite() => {
                    ui.label(format!("{first:.3} -> {last:.3}"))
                }
                Some((_, last)) if last.is_finite() => ui.label(format!("{last:.3}")),
                _ => ui.label("-"),
            };
        }
        Column::Best => {
            match r.best_eval() {
                Some(b) => ui
                    .label(format!("{:.3} @ {}", b.metric, b.step))
                    .on_hover_text(trf(
                        ui,
                        "best evaluation (kept in best/): step {}, eval loss {}, metric {}; the Metric and Eval loss columns are the last",
                        &[&b.step, &format!("{:.4}", b.loss), &format!("{:.4}", b.metric)],
                    )),
                // Blank, not a dash: a run without early stopping keeps no best.
                None => ui.label(""),
            };
        }
        Column::Status => {
            if r.notes.archived {
                let text = format!("{} · {}", tr(ui, r.status.name()), tr(ui, "archived"));
                ui.label(egui::RichText::new(text).weak());
            } else {
                ui.label(tr(ui, r.status.name()));
            }
        }
        Column::LearningRate => {
            ui.label(crate::config::rate_text(r.config.optimizer.lr));
        }
        Column::Steps => {
            ui.label(r.config.steps.to_string());
        }
        Column::Trainable => {
            if r.total_params > 0 {
                ui.label(format!(
                    "{} ({:.2} %)",
                    human(r.trainable_params),
                    r.trainable_percent()
                ));
            } else {
                ui.label("-");
            }
        }
        // Blank where a run imported from another trainer's log does not say.
        Column::Time => {
            let seconds = r
                .summary
                .as_ref()
                .map(|s| s.wall_seconds)
                .unwrap_or(r.elapsed_s);
            ui.label(if seconds.is_finite() {
                duration(seconds)
            } else {
                String::new()
            });
        }
        Column::TokensPerSecond => {
            ui.label(if r.tokens_per_second.is_finite() {
                format!("{:.0}", r.tokens_per_second)
            } else {
                String::new()
            });
        }
        Column::PeakMemory => {
            ui.label(r.row.as_ref().map_or("-".into(), |row| {
                if row.peak_rss_bytes > 0 {
                    memory::human_bytes(row.peak_rss_bytes)
                } else {
                    String::new()
                }
            }));
        }
        Column::Adapter => {
            ui.label(
                r.row
                    .as_ref()
                    .map_or("-".into(), |row| memory::human_bytes(row.adapter_bytes)),
            );
        }
        Column::Notes => notes_cell(r, ui, actions),
    }
}

/// The run's tags and the first line of its note (all of it on hover); a click edits them.
fn notes_cell(r: &RunRecord, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let first_line = r.notes.note.lines().next().unwrap_or("");
    let mut text: String = r.notes.tags.iter().map(|t| format!("[{t}] ")).collect();
    text.extend(first_line.chars().take(40));
    if first_line.chars().count() > 40 || r.notes.note.lines().count() > 1 {
        text.push('…');
    }
    if r.out_dir.is_none() {
        ui.label(text);
        return;
    }
    let empty = text.is_empty();
    let shown = if empty { "+".to_string() } else { text };
    let hover = if r.notes.note.is_empty() {
        tr(ui, "Add tags and a note to this run").to_string()
    } else {
        r.notes.note.clone()
    };
    let button = egui::Button::new(egui::RichText::new(shown).small()).frame(empty);
    if ui.add(button).on_hover_text(hover).clicked() {
        actions.push(Action::EditNotes(r.id));
    }
}

/// The run's last metric, greyed with the reason when chance explains it.
fn metric_cell(r: &RunRecord, ui: &mut egui::Ui) {
    let Some(m) = r.final_metric() else {
        ui.label("-");
        return;
    };
    if !m.is_finite() {
        // Not measured (a run imported from another trainer's log).
        ui.label("");
        return;
    }
    let text = format!("{m:.3}");
    match r.chance {
        Some(c) => {
            // A result no better than guessing is greyed and says so.
            let guessed = c.explains(m);
            let template = if guessed {
                "{}: not above chance ({} ± {} on {} examples, 95 %): not a result"
            } else {
                "{}: chance is {} ± {} on {} examples (95 %)"
            };
            let hover = trf(
                ui,
                template,
                &[
                    &r.metric_name,
                    &format!("{:.3}", c.level),
                    &format!("{:.3}", c.noise()),
                    &c.examples,
                ],
            );
            let text = egui::RichText::new(text);
            ui.label(if guessed { text.weak() } else { text })
                .on_hover_text(hover)
        }
        None => ui.label(text).on_hover_text(r.metric_name.as_str()),
    };
}
