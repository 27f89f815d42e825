//! The central panel: progress of the running run, live loss and metric curves of every
//! run, and the list of runs with their results.

use eframe::egui;

use super::i18n::{tr, trf};
use egui_plot::{Legend, Line, Plot};

use super::path_dialog::{PathPurpose, default_target};
use super::runs::{Curve, RunRecord, RunStatus, XAxis, downsample_min_max, ema};
use super::{Action, WorkbenchApp};
use crate::train::memory;

/// Sixteen colours, the first eight Okabe and Ito's colour-blind-safe set (its black made
/// grey, to show on the dark theme), the rest picked from Paul Tol's schemes to be as far
/// as possible from those already chosen: no two closer than ΔE 25 (CIELAB). The twelve
/// of before repeated from the 13th run (#1/#13 both blue) and had two greys.
const PALETTE: [(u8, u8, u8); 16] = [
    (0x00, 0x72, 0xB2),
    (0xE6, 0x9F, 0x00),
    (0x00, 0x9E, 0x73),
    (0xD5, 0x5E, 0x00),
    (0xCC, 0x79, 0xA7),
    (0x56, 0xB4, 0xE9),
    (0xF0, 0xE4, 0x42),
    (0x99, 0x99, 0x99),
    (0x33, 0x22, 0x88),
    (0xEE, 0x33, 0x77),
    (0x99, 0x99, 0x33),
    (0xEE, 0x88, 0x66),
    (0x88, 0x22, 0x55),
    (0xEE, 0xDD, 0x88),
    (0xAA, 0x44, 0x99),
    (0x22, 0x88, 0x33),
];

/// A stable colour per run id, sixteen distinct ones in a row, with enough contrast on
/// the theme: the darkest colours lightened on the dark background, the palest (yellow,
/// sand) darkened on the light one, where they had vanished.
pub fn run_color(id: u64, dark: bool) -> egui::Color32 {
    let (r, g, b) = PALETTE[(id as usize).wrapping_sub(1) % PALETTE.len()];
    let luma = 0.2126 * r as f32 + 0.7152 * g as f32 + 0.0722 * b as f32;
    let towards = |c: u8, target: f32, t: f32| (c as f32 + (target - c as f32) * t).round() as u8;
    let (r, g, b) = if dark && luma < 55.0 {
        (
            towards(r, 255.0, 0.35),
            towards(g, 255.0, 0.35),
            towards(b, 255.0, 0.35),
        )
    } else if !dark && luma > 190.0 {
        (
            towards(r, 0.0, 0.2),
            towards(g, 0.0, 0.2),
            towards(b, 0.0, 0.2),
        )
    } else {
        (r, g, b)
    };
    egui::Color32::from_rgb(r, g, b)
}

/// The colour of a run's curves: faded when another run is picked out.
fn curve_color(app: &WorkbenchApp, id: u64, dark: bool) -> egui::Color32 {
    let c = run_color(id, dark);
    match app.selected_run {
        Some(s) if s != id => c.gamma_multiply(0.3),
        _ => c,
    }
}

/// Above this many runs the plots' legends would cover a third of each plot: the runs
/// table (names in their curves' colours, click to pick one out) is the legend then.
const LEGEND_RUNS: usize = 6;

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    // The whole area scrolls: at 1024×700 with the playground open, the runs table and the
    // plots' toolbar were cut off below the window with no way to reach them.
    egui::ScrollArea::vertical()
        .id_salt("central")
        .auto_shrink([false, false])
        .show(ui, |ui| content(app, ui, actions));
}

fn content(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let status = app.status_text();
    let busy = *app.busy_since.lock().expect("busy lock");
    if let Some(s) = status {
        ui.horizontal(|ui| {
            if let Some(since) = busy {
                ui.spinner();
                ui.label(format!("{s} {:.0} s", since.elapsed().as_secs_f64()));
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(250));
            } else {
                ui.label(s);
            }
        });
    }
    progress(app, ui);
    ui.separator();
    curves(app, ui, actions);
    ui.separator();
    if let Some(r) = rank_run(app) {
        rank_heat_map(r, ui);
        ui.separator();
    }
    egui::CollapsingHeader::new(tr(ui, "Trade-offs: metric against cost"))
        .id_salt("pareto")
        .default_open(
            app.store
                .runs
                .iter()
                .filter(|r| r.shown && r.row.is_some())
                .count()
                >= 2,
        )
        .show(ui, |ui| {
            let dark = ui.visuals().dark_mode;
            super::pareto::ui(&app.store.runs, |id| run_color(id, dark), ui)
        });
    ui.separator();
    // Its own id (not the title's, which changes with the language) and its state kept
    // by the app, so it opens as it was left, also after a restart.
    let playground = egui::CollapsingHeader::new(tr(ui, "Playground"))
        .id_salt("playground")
        .open(Some(app.playground_open))
        .show(ui, |ui| super::playground::ui(app, ui));
    if playground.header_response.clicked() {
        app.playground_open = !app.playground_open;
    }
    ui.separator();
    run_list(app, ui, actions);
}

fn progress(app: &WorkbenchApp, ui: &mut egui::Ui) {
    // Reading a real model takes seconds before the first step: say so, with the time.
    if let Some((r, since)) = app
        .store
        .runs
        .iter()
        .find_map(|r| Some((r, r.loading_since?)))
    {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.strong(&r.label);
            ui.label(format!(
                "{} {} · {:.0} s",
                tr(ui, "loading the model and data:"),
                r.config.model,
                since.elapsed().as_secs_f64()
            ));
        });
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(250));
        return;
    }
    let Some(r) = app.store.active() else {
        ui.label(tr(
            ui,
            if app.store.runs.is_empty() {
                "Pick a method and press Start. Curves appear here as the run trains."
            } else {
                "No run is training."
            },
        ));
        return;
    };
    ui.horizontal(|ui| {
        ui.strong(&r.label);
        ui.label(trf(
            ui,
            "trainable {} of {} ({} %)",
            &[
                &human(r.trainable_params),
                &human(r.total_params),
                &format!("{:.3}", r.trainable_percent()),
            ],
        ));
    });
    let eta = r
        .eta_s()
        .map(|s| format!(" · ETA {}", duration(s)))
        .unwrap_or_default();
    ui.add(
        egui::ProgressBar::new(r.progress())
            .show_percentage()
            .text(trf(
                ui,
                "step {} / {} · {} tokens/s{}",
                &[
                    &r.steps_done(),
                    &r.config.steps,
                    &format!("{:.0}", r.tokens_per_second),
                    &eta,
                ],
            )),
    );
}

fn curves(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(tr(ui, "Smoothing"));
        ui.add(egui::Slider::new(&mut app.smoothing, 0.0..=0.99))
            .labelled_by(label.id);
        ui.separator();
        ui.label(tr(ui, "x axis"));
        for axis in XAxis::ALL {
            ui.selectable_value(&mut app.x_axis, axis, tr(ui, axis.name()));
        }
        ui.separator();
        ui.checkbox(&mut app.log_y, tr(ui, "log-scale loss"));
        ui.separator();
        if ui
            .button(tr(ui, "Save plots (PNG)…"))
            .on_hover_text(tr(ui, "Save the two plots as one PNG image"))
            .clicked()
        {
            actions.push(Action::AskPath(
                PathPurpose::SavePlots,
                default_target("curves.png"),
            ));
        }
    });
    let height = (ui.available_height() * 0.33).max(140.0);
    let (smoothing, axis, log_y) = (app.smoothing, app.x_axis, app.log_y);
    // Log scale plots log10 of the loss and labels the axis with the loss itself.
    let y_of = move |points: Vec<[f64; 2]>| -> Vec<[f64; 2]> {
        if log_y {
            points
                .into_iter()
                .filter(|p| p[1] > 0.0)
                .map(|p| [p[0], p[1].log10()])
                .collect()
        } else {
            points
        }
    };
    let dark = ui.visuals().dark_mode;
    // Only the runs the user chose are drawn, their curves read from disk on first show.
    app.store.load_shown_curves();
    let shown: Vec<&RunRecord> = app.store.runs.iter().filter(|r| r.shown).collect();
    // Two points per pixel column of a plot (half the area's width) are all a line shows.
    let columns = (ui.available_width() / 2.0).max(100.0) as usize;
    let legend = shown.len() <= LEGEND_RUNS;
    if !legend {
        ui.small(tr(
            ui,
            "Many runs: the table below is the legend (names in their curves' colours); click a name to pick its curves out.",
        ));
    }
    let with_legend = |plot: Plot<'static>| {
        if legend {
            plot.legend(Legend::default())
        } else {
            plot
        }
    };
    let response = ui.columns(2, |cols| {
        let text = tr(
            &cols[0],
            "Training loss (solid) and evaluation loss (dashed)",
        );
        cols[0].label(text);
        let mut loss_plot = with_legend(Plot::new("loss_plot"))
            .height(height)
            .x_axis_label(tr(&cols[0], axis.name()));
        if log_y {
            loss_plot =
                loss_plot.y_axis_formatter(|mark, _| format!("{:.3}", 10f64.powf(mark.value)));
        }
        let left = loss_plot.show(&mut cols[0], |plot| {
            for r in &shown {
                let c = curve_color(app, r.id, dark);
                let width = if app.selected_run == Some(r.id) {
                    3.0
                } else {
                    1.5
                };
                let train = r.curve(Curve::TrainLoss, axis);
                if !train.is_empty() {
                    let train = downsample_min_max(&y_of(ema(&train, smoothing)), columns);
                    plot.line(Line::new(r.label.clone(), train).color(c).width(width));
                }
                let eval = r.curve(Curve::EvalLoss, axis);
                if !eval.is_empty() {
                    // Same name as the training curve: one legend entry per run toggles both.
                    plot.line(
                        Line::new(r.label.clone(), y_of(eval))
                            .color(c)
                            .width(width)
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                }
            }
        });
        let text = tr(&cols[1], "Evaluation metric");
        cols[1].label(text);
        let chance_lines = chance_lines(&shown, &cols[1]);
        let chance_color = cols[1].visuals().weak_text_color();
        let right = with_legend(Plot::new("metric_plot"))
            .height(height)
            .x_axis_label(tr(&cols[1], axis.name()))
            .show(&mut cols[1], |plot| {
                for r in &shown {
                    let points = r.curve(Curve::EvalMetric, axis);
                    if !points.is_empty() {
                        let width = if app.selected_run == Some(r.id) {
                            3.0
                        } else {
                            1.5
                        };
                        plot.line(
                            Line::new(r.label.clone(), points)
                                .color(curve_color(app, r.id, dark))
                                .width(width),
                        );
                    }
                }
                // Each chance level the shown runs have (runs on one task share it), so a
                // curve at chance does not read as a result.
                for (level, name) in &chance_lines {
                    plot.hline(
                        egui_plot::HLine::new(name.clone(), *level)
                            .color(chance_color)
                            .style(egui_plot::LineStyle::dashed_dense()),
                    );
                }
            });
        left.response.rect.union(right.response.rect)
    });
    app.plots_rect = Some(response);
}

/// The distinct chance levels of `runs` (to three decimals), each with its legend name.
fn chance_lines(runs: &[&RunRecord], ui: &egui::Ui) -> Vec<(f64, String)> {
    let mut levels: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.chance.map(|c| (c.level * 1000.0).round() / 1000.0))
        .collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    levels
        .into_iter()
        .map(|level| {
            (
                level,
                trf(ui, "chance (majority label) {}", &[&format!("{level:.3}")]),
            )
        })
        .collect()
}

fn rank_run(app: &WorkbenchApp) -> Option<&RunRecord> {
    app.store
        .active()
        .filter(|r| r.ranks.is_some())
        .or_else(|| {
            app.store
                .runs
                .iter()
                .rev()
                .find(|r| r.shown && r.ranks.is_some())
        })
}

/// AdaLoRA's rank per adapted matrix: a row per block, a column per projection, each cell
/// shaded by its share of the initial rank and labelled with the rank.
fn rank_heat_map(r: &RunRecord, ui: &mut egui::Ui) {
    let Some((step, alloc)) = &r.ranks else {
        return;
    };
    ui.label(trf(
        ui,
        "{}: AdaLoRA rank per matrix at step {} (budget {} of {})",
        &[
            &r.label,
            step,
            &alloc.budget,
            &(alloc.init_r * alloc.ranks.len()),
        ],
    ));
    // (layer, projection) of each path like `model.layers.3.self_attn.q_proj`.
    let cells: Vec<(usize, &str, usize)> = alloc
        .ranks
        .iter()
        .filter_map(|(path, rank)| {
            let rest = path.strip_prefix("model.layers.")?;
            let (layer, _) = rest.split_once('.')?;
            let leaf = path.rsplit('.').next()?;
            Some((layer.parse().ok()?, leaf, *rank))
        })
        .collect();
    let mut columns: Vec<&str> = Vec::new();
    for (_, leaf, _) in &cells {
        if !columns.contains(leaf) {
            columns.push(leaf);
        }
    }
    let layers = cells.iter().map(|c| c.0 + 1).max().unwrap_or(0);
    let (cell_w, cell_h, label_w, head_h) = (64.0, 18.0, 64.0, 18.0);
    let size = egui::vec2(
        label_w + cell_w * columns.len() as f32,
        head_h + cell_h * layers as f32,
    );
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let font = egui::FontId::proportional(12.0);
    for (j, name) in columns.iter().enumerate() {
        let x = rect.left() + label_w + cell_w * (j as f32 + 0.5);
        painter.text(
            egui::pos2(x, rect.top() + head_h / 2.0),
            egui::Align2::CENTER_CENTER,
            *name,
            font.clone(),
            text,
        );
    }
    for l in 0..layers {
        let y = rect.top() + head_h + cell_h * l as f32;
        painter.text(
            egui::pos2(rect.left() + 4.0, y + cell_h / 2.0),
            egui::Align2::LEFT_CENTER,
            trf(ui, "layer {}", &[&l]),
            font.clone(),
            text,
        );
    }
    let base = run_color(r.id, ui.visuals().dark_mode);
    for (layer, leaf, rank) in &cells {
        let j = columns.iter().position(|c| c == leaf).unwrap_or(0);
        let min = egui::pos2(
            rect.left() + label_w + cell_w * j as f32,
            rect.top() + head_h + cell_h * *layer as f32,
        );
        let cell = egui::Rect::from_min_size(min, egui::vec2(cell_w, cell_h)).shrink(1.0);
        let share = *rank as f32 / alloc.init_r.max(1) as f32;
        painter.rect_filled(cell, 2.0, base.gamma_multiply(0.15 + 0.85 * share));
        painter.text(
            cell.center(),
            egui::Align2::CENTER_CENTER,
            rank.to_string(),
            font.clone(),
            if share > 0.5 {
                egui::Color32::WHITE
            } else {
                text
            },
        );
    }
    response.on_hover_text(tr(ui, "Darker cells kept more of their rank; the budget moves to the matrices whose singular triplets matter most"));
}

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
}

impl Column {
    /// Results first: at 1280×800 the table is as wide as the central panel, and what a
    /// comparison is read for (which run, its metric and loss) stays in view; the costs
    /// follow and the table scrolls sideways to them.
    const ALL: [Column; 11] = [
        Column::Run,
        Column::Metric,
        Column::EvalLoss,
        Column::Status,
        Column::LearningRate,
        Column::Steps,
        Column::Trainable,
        Column::Time,
        Column::TokensPerSecond,
        Column::PeakMemory,
        Column::Adapter,
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
        }
    }
}

fn status_name(s: &RunStatus) -> &'static str {
    match s {
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Stopped => "stopped",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Failed(_) => "failed",
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
    }
}

/// Whether a run is listed under the table's search and experiment filter: every word of
/// the search is in its label, method, model, dataset, experiment or status.
fn listed(app: &WorkbenchApp, r: &RunRecord) -> bool {
    if app
        .runs_experiment
        .as_deref()
        .is_some_and(|e| e != r.experiment())
    {
        return false;
    }
    if app.runs_search.trim().is_empty() {
        return true;
    }
    let haystack = format!(
        "{} {} {} {} {} {} {}",
        r.label,
        r.config.method.kind(),
        r.config.method.display_name(),
        r.config.model,
        r.config.dataset,
        r.experiment(),
        status_name(&r.status),
    )
    .to_lowercase();
    app.runs_search
        .to_lowercase()
        .split_whitespace()
        .all(|w| haystack.contains(w))
}

/// The listed runs in table order: newest first, or by the chosen column.
pub fn sorted_runs(app: &WorkbenchApp) -> Vec<&RunRecord> {
    let mut runs: Vec<&RunRecord> = app
        .store
        .runs
        .iter()
        .rev()
        .filter(|r| listed(app, r))
        .collect();
    if let Some((col, ascending)) = app.sort {
        runs.sort_by(|a, b| {
            let (ka, kb) = (sort_key(a, col), sort_key(b, col));
            match (ka, kb) {
                (Some(x), Some(y)) if ascending => x.total_cmp(&y),
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) if col == Column::Status => {
                    status_name(&a.status).cmp(status_name(&b.status))
                }
                (None, None) => std::cmp::Ordering::Equal,
            }
        });
    }
    runs
}

fn run_list(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
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
        ui.menu_button(tr(ui, "Columns"), |ui| column_choice(app, ui))
            .response
            .on_hover_text(tr(ui, "Show or hide the table's columns"));
    });
    run_filters(app, ui, actions);
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
                let listed = sorted_runs(app);
                let more = listed.len().saturating_sub(MAX_ROWS);
                for r in listed.into_iter().take(MAX_ROWS) {
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

/// The runs browser's filters: a search over every run's names and an experiment, and the
/// buttons that put the listed runs on the plots or take them off.
fn run_filters(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(tr(ui, "Search"));
        ui.add(
            egui::TextEdit::singleline(&mut app.runs_search)
                .desired_width(160.0)
                .hint_text(tr(ui, "method, model, data, status…")),
        )
        .labelled_by(label.id);
        let all = tr(ui, "all experiments").to_string();
        let unnamed = tr(ui, "(runs before experiments)").to_string();
        let name = |e: &str| {
            if e.is_empty() {
                unnamed.clone()
            } else {
                e.to_string()
            }
        };
        let current = app.runs_experiment.as_deref().map_or(all.clone(), name);
        let label = ui.label(tr(ui, "In experiment"));
        egui::ComboBox::from_id_salt("runs_experiment")
            .selected_text(current)
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut app.runs_experiment, None, &all);
                for (e, n) in app.store.experiments() {
                    let text = format!("{} ({n})", name(&e));
                    ui.selectable_value(&mut app.runs_experiment, Some(e), text);
                }
            })
            .response
            .labelled_by(label.id);
        if ui
            .button(tr(ui, "Plot only these"))
            .on_hover_text(tr(ui, "Draw the listed runs' curves and no others"))
            .clicked()
        {
            let listed: Vec<u64> = sorted_runs(app).iter().map(|r| r.id).collect();
            for r in &mut app.store.runs {
                r.shown = listed.contains(&r.id);
            }
        }
        let n = app.store.runs.iter().filter(|r| r.shown).count();
        ui.label(trf(ui, "{} runs on the plots", &[&n]));
        // Many runs at once: the listed ones that are not training.
        let deletable: Vec<u64> = sorted_runs(app)
            .iter()
            .filter(|r| !matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .map(|r| r.id)
            .collect();
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
        if app.trash_count > 0
            && ui
                .button(trf(ui, "Empty trash ({})…", &[&app.trash_count]))
                .clicked()
        {
            actions.push(Action::AskEmptyTrash);
        }
    });
}

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
            match r.eval_loss_span() {
                Some((first, last)) => ui.label(format!("{first:.3} -> {last:.3}")),
                None => ui.label("-"),
            };
        }
        Column::Status => {
            ui.label(tr(ui, status_name(&r.status)));
        }
        Column::LearningRate => {
            ui.label(format!("{:.0e}", r.config.optimizer.lr));
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
        Column::Time => {
            ui.label(duration(
                r.summary
                    .as_ref()
                    .map(|s| s.wall_seconds)
                    .unwrap_or(r.elapsed_s),
            ));
        }
        Column::TokensPerSecond => {
            ui.label(format!("{:.0}", r.tokens_per_second));
        }
        Column::PeakMemory => {
            ui.label(
                r.row
                    .as_ref()
                    .map_or("-".into(), |row| memory::human_bytes(row.peak_rss_bytes)),
            );
        }
        Column::Adapter => {
            ui.label(
                r.row
                    .as_ref()
                    .map_or("-".into(), |row| memory::human_bytes(row.adapter_bytes)),
            );
        }
    }
}

/// Stop for a live run; Resume and the folder's menu for one on disk.
fn run_actions(r: &RunRecord, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    if matches!(r.status, RunStatus::Queued | RunStatus::Running) {
        if ui.small_button(tr(ui, "Stop")).clicked() {
            actions.push(Action::Stop(r.id));
        }
    } else if let Some(dir) = &r.out_dir {
        ui.horizontal(|ui| run_folder_buttons(r, dir, ui, actions));
    } else {
        ui.label("");
    }
}

/// The run's last metric, greyed with the reason when chance explains it.
fn metric_cell(r: &RunRecord, ui: &mut egui::Ui) {
    let Some(m) = r.final_metric() else {
        ui.label("-");
        return;
    };
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
    if ui
        .add_enabled(has_adapter, egui::Button::new(tr(ui, "Export…")))
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

/// 4 600 000 → "4.60 M".
pub fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod palette_tests {
    use super::*;

    #[test]
    fn fourteen_runs_get_fourteen_colours_that_show_on_either_theme() {
        for dark in [true, false] {
            let colours: Vec<egui::Color32> = (1..=14).map(|id| run_color(id, dark)).collect();
            for (i, a) in colours.iter().enumerate() {
                for b in &colours[i + 1..] {
                    let d: i32 = (0..3).map(|k| (a[k] as i32 - b[k] as i32).abs()).sum();
                    assert!(d > 60, "{a:?} and {b:?} too close (dark {dark})");
                }
                let luma = 0.2126 * a.r() as f32 + 0.7152 * a.g() as f32 + 0.0722 * a.b() as f32;
                assert!(
                    if dark { luma >= 55.0 } else { luma <= 190.0 },
                    "{a:?} hard to see (dark {dark}, luma {luma})"
                );
            }
            assert_eq!(
                run_color(17, dark),
                run_color(1, dark),
                "the palette cycles"
            );
        }
    }
}
