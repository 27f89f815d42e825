//! The central panel: progress of the running run, live loss and metric curves of every
//! run, and the list of runs with their results.

use eframe::egui;

use super::i18n::{tr, trf};
use egui_plot::{Legend, Line, Plot};

use super::path_dialog::{PathPurpose, default_target};
use super::run_filter::Since;
use super::runs::{self, Curve, RunRecord, RunStatus, XAxis, downsample_min_max, ema};
use super::trash;
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
    let merging = app.merging;
    if let Some(s) = status {
        ui.horizontal(|ui| {
            if let Some((_, since)) = merging {
                ui.spinner();
                ui.label(format!("{s} {:.0} s", since.elapsed().as_secs_f64()));
                if ui
                    .small_button(tr(ui, "Stop"))
                    .on_hover_text(tr(ui, "Stop the merge; nothing is written"))
                    .clicked()
                {
                    app.stop_merge();
                }
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
    /// The user's tags and note.
    Notes,
}

impl Column {
    /// Results first: at 1280×800 the table is as wide as the central panel, and what a
    /// comparison is read for (which run, its metric and loss) stays in view; the costs
    /// follow and the table scrolls sideways to them.
    const ALL: [Column; 12] = [
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

/// The runs browser's filters: a search over every run's names, tags and note, and choices
/// of experiment, method, status, age and tag; archived runs only when asked for.
fn run_filters(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
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
fn listed_actions(
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
            if r.notes.archived {
                let text = format!("{} · {}", tr(ui, r.status.name()), tr(ui, "archived"));
                ui.label(egui::RichText::new(text).weak());
            } else {
                ui.label(tr(ui, r.status.name()));
            }
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

/// Stop for a run this window trains; who writes it for one another process trains; Resume
/// and the folder's menu for one on disk.
fn run_actions(r: &RunRecord, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
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
