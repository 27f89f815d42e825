//! How the plotted runs differ: when two to eight runs are on the plots (their curves alone
//! there), their configurations side by side — only the keys that differ, unless the user
//! asks for all, the differing values in the warning colour — and their results with each
//! one's difference from the first run's.

use eframe::egui;

use super::WorkbenchApp;
use super::central::run_color;
use super::i18n::{tr, trf};
use super::runs::RunRecord;

/// More runs than this make a table too wide to read; the section says so.
const MAX_RUNS: usize = 8;

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let shown: Vec<&RunRecord> = app.store.runs.iter().filter(|r| r.shown).collect();
    if shown.len() < 2 || shown.len() > MAX_RUNS {
        ui.label(trf(
            ui,
            "Tick two to {} runs in the table's Plot column: their curves alone on the plots, and here how they differ.",
            &[&MAX_RUNS],
        ));
        return;
    }
    ui.checkbox(
        &mut app.diff_all_keys,
        tr(ui, "all keys, not only those that differ"),
    );
    let shown: Vec<&RunRecord> = app.store.runs.iter().filter(|r| r.shown).collect();
    let configs: Vec<&crate::config::RunConfig> = shown.iter().map(|r| &r.config).collect();
    let rows = crate::config::side_by_side(&configs);
    let dark = ui.visuals().dark_mode;
    let warn = ui.visuals().warn_fg_color;
    let weak = ui.visuals().weak_text_color();
    egui::ScrollArea::horizontal()
        .id_salt("run_diff_scroll")
        .show(ui, |ui| {
            egui::Grid::new("run_diff").striped(true).show(ui, |ui| {
                ui.strong(tr(ui, "setting"));
                for r in &shown {
                    ui.label(
                        egui::RichText::new(&r.label)
                            .strong()
                            .color(run_color(r.id, dark)),
                    );
                }
                ui.end_row();
                let differing = rows.iter().filter(|r| r.2).count();
                for (key, values, differs) in &rows {
                    if !differs && !app.diff_all_keys {
                        continue;
                    }
                    ui.monospace(key);
                    for v in values {
                        let text = v.clone().unwrap_or_else(|| "—".into());
                        let color = if *differs { warn } else { weak };
                        ui.label(egui::RichText::new(text).monospace().color(color));
                    }
                    ui.end_row();
                }
                if differing == 0 {
                    ui.label(tr(ui, "the configurations are the same"));
                    ui.end_row();
                }
                ui.separator();
                ui.end_row();
                results(&shown, ui);
            });
        });
}

/// Results, each with its difference from the first run's (blank where a run has none).
fn results(runs: &[&RunRecord], ui: &mut egui::Ui) {
    type Measure = fn(&RunRecord) -> Option<f64>;
    let measures: [(&str, Measure, usize); 6] = [
        ("metric (last)", |r| r.final_metric(), 3),
        (
            "eval loss (last)",
            |r| r.eval_loss_span().map(|(_, l)| l),
            4,
        ),
        ("best metric", |r| r.best_eval().map(|b| b.metric), 3),
        (
            "trainable parameters",
            |r| (r.total_params > 0).then_some(r.trainable_params as f64),
            0,
        ),
        (
            "time (s)",
            |r| r.summary.as_ref().map(|s| s.wall_seconds),
            1,
        ),
        (
            "tokens/s",
            |r| (r.tokens_per_second > 0.0).then_some(r.tokens_per_second),
            0,
        ),
    ];
    for (name, measure, digits) in measures {
        ui.strong(tr(ui, name));
        let first = measure(runs[0]);
        for (i, r) in runs.iter().enumerate() {
            let text = match (measure(r), first) {
                (Some(v), Some(f)) if i > 0 => format!("{v:.digits$} ({:+.digits$})", v - f),
                (Some(v), _) => format!("{v:.digits$}"),
                (None, _) => String::new(),
            };
            ui.monospace(text);
        }
        ui.end_row();
    }
}
