//! The central panel: progress of the running run, live loss and metric curves of every
//! run, and the list of runs with their results.

use eframe::egui;

use super::i18n::{tr, trf};
use egui_plot::{Legend, Line, Plot};

use super::path_dialog::{PathPurpose, default_target};
use super::runs::{Curve, RunRecord, XAxis, downsample_min_max, ema};
use super::{Action, WorkbenchApp};

// Where the runs table's column and order lived before it had a file of its own.
pub use super::runs_table::{Column, sorted_runs};

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
    let long_job = app.long_job();
    if let Some(s) = status {
        ui.horizontal(|ui| {
            if let Some((since, kind)) = long_job {
                ui.spinner();
                ui.label(format!("{s} {:.0} s", since.elapsed().as_secs_f64()));
                let what = match kind {
                    super::background::LongJob::Merge => "Stop the merge; nothing is written",
                    super::background::LongJob::Import => "Stop the import; nothing is imported",
                };
                if ui
                    .small_button(tr(ui, "Stop"))
                    .on_hover_text(tr(ui, what))
                    .clicked()
                {
                    app.stop_long_job();
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
    super::runs_table::run_list(app, ui, actions);
    // Below the table, where runs are ticked and picked out: at 1024×700 with the
    // playground open, the table's header must stay reachable above them.
    ui.separator();
    egui::CollapsingHeader::new(tr(ui, "How the plotted runs differ"))
        .id_salt("run_diff")
        .show(ui, |ui| super::run_diff::ui(app, ui));
    ui.separator();
    egui::CollapsingHeader::new(tr(ui, "Where the update went"))
        .id_salt("update_map")
        .show(ui, |ui| super::update_map::ui(app, ui));
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
    // Each legend sits in the corner its curves do not end in: losses fall to the lower right,
    // accuracy and exact match rise to the upper right, where a legend there hid the results
    // the plot is for (seen at 1280×800). Perplexity falls like a loss.
    let with_legend = |plot: Plot<'static>, corner: egui_plot::Corner| {
        if legend {
            plot.legend(Legend::default().position(corner))
        } else {
            plot
        }
    };
    let metric_corner = if shown.iter().all(|r| r.metric_name == "perplexity") {
        egui_plot::Corner::RightTop
    } else {
        egui_plot::Corner::RightBottom
    };
    let response = ui.columns(2, |cols| {
        let text = tr(
            &cols[0],
            "Training loss (solid) and evaluation loss (dashed)",
        );
        cols[0].label(text);
        let mut loss_plot = with_legend(Plot::new("loss_plot"), egui_plot::Corner::RightTop)
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
                let eval = y_of(r.curve(Curve::EvalLoss, axis));
                if let [only] = eval[..] {
                    plot.points(lone_point(&r.label, only, c));
                }
                if !eval.is_empty() {
                    // Same name as the training curve: one legend entry per run toggles both.
                    plot.line(
                        Line::new(r.label.clone(), eval)
                            .color(c)
                            .width(width)
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                }
                if let Some(best) = r.best_point(Curve::EvalLoss, axis) {
                    plot.points(best_marker(&r.label, y_of(vec![best]), c));
                }
            }
        });
        let text = tr(&cols[1], "Evaluation metric");
        cols[1].label(text);
        let chance_lines = chance_lines(&shown, &cols[1]);
        let chance_color = cols[1].visuals().weak_text_color();
        let right = with_legend(Plot::new("metric_plot"), metric_corner)
            .height(height)
            .x_axis_label(tr(&cols[1], axis.name()))
            .show(&mut cols[1], |plot| {
                for r in &shown {
                    let points = r.curve(Curve::EvalMetric, axis);
                    if let [only] = points[..] {
                        plot.points(lone_point(&r.label, only, curve_color(app, r.id, dark)));
                    }
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
                    if let Some(best) = r.best_point(Curve::EvalMetric, axis) {
                        plot.points(best_marker(
                            &r.label,
                            vec![best],
                            curve_color(app, r.id, dark),
                        ));
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

/// A curve of one evaluation (an imported run's metric, measured at its end) as a dot: a line
/// through one point draws nothing.
fn lone_point(label: &str, at: [f64; 2], color: egui::Color32) -> egui_plot::Points<'static> {
    egui_plot::Points::new(label.to_string(), vec![at])
        .filled(true)
        .radius(3.5)
        .color(color)
}

/// Early stopping's best evaluation: a filled diamond on the run's evaluation curve, under the run's
/// name (one legend entry per run), the step on hover.
fn best_marker(label: &str, at: Vec<[f64; 2]>, color: egui::Color32) -> egui_plot::Points<'static> {
    egui_plot::Points::new(label.to_string(), at)
        .shape(egui_plot::MarkerShape::Diamond)
        .filled(true)
        .radius(5.5)
        .color(color)
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

/// 4 600 000 → "4.60 M".
pub fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

pub(super) fn duration(s: f64) -> String {
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
