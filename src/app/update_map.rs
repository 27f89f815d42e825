//! "Where the update went": a run's update map — measured at each evaluation of a run
//! training in this window (small enough runs), or read from `update_map.json`, written when
//! a run ends — as a heat map of layers × modules, each cell's colour its share of the
//! largest value and its number written in it; virtual tokens sit on an "input" row.

use eframe::egui;

use super::WorkbenchApp;
use super::central::run_color;
use super::i18n::{tr, trf};
use crate::peft::update_map::UpdateMap;
use crate::train::RunId;

/// The run whose map is shown: the picked-out run, else the newest shown run with a map.
fn chosen(app: &WorkbenchApp) -> Option<(RunId, String)> {
    let r = match app.selected_run {
        Some(id) => app.store.runs.iter().find(|r| r.id == id),
        None => app
            .store
            .runs
            .iter()
            .rev()
            .filter(|r| r.shown)
            .find(|r| r.has_update_map()),
    }?;
    r.out_dir.as_ref()?;
    Some((r.id, r.label.clone()))
}

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let Some((id, label)) = chosen(app) else {
        ui.label(tr(
            ui,
            "A finished run's map appears here (click a run's name in the table to choose it).",
        ));
        return;
    };
    let Some((live_step, map)) = map_of(app, id) else {
        ui.label(trf(
            ui,
            "{} has no update map yet (it is measured when a run ends).",
            &[&label],
        ));
        return;
    };
    let title = match live_step {
        Some(step) => trf(
            ui,
            "{} at step {}: {}",
            &[&label, &step, &tr(ui, &map.measure)],
        ),
        None => trf(ui, "{}: {}", &[&label, &tr(ui, &map.measure)]),
    };
    show(id, title, &map, ui);
}

/// Run `id`'s map: its latest evaluation's (with that step) while it trains in this
/// window, else the one its folder holds — read once and kept until another run's is asked
/// for or the chosen run writes its own.
pub(super) fn map_of(app: &mut WorkbenchApp, id: RunId) -> Option<(Option<usize>, UpdateMap)> {
    let r = app.store.get(id)?;
    if r.summary.is_none()
        && let Some((step, map)) = &r.live_map
    {
        return Some((Some(*step), (**map).clone()));
    }
    let file = std::path::Path::new(r.out_dir.as_ref()?).join(crate::train::UPDATE_MAP_FILE);
    let stale = match &app.update_map_cache {
        Some((cached, map)) => *cached != id || (map.is_none() && file.is_file()),
        None => true,
    };
    if stale {
        let map = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<UpdateMap>(&t).ok());
        app.update_map_cache = Some((id, map));
    }
    match &app.update_map_cache {
        Some((_, Some(map))) => Some((None, map.clone())),
        _ => None,
    }
}

/// A map under its title: what it leaves unmeasured, the heat map in run `id`'s colour, and
/// a soft prompt's nearest tokens.
fn show(id: RunId, title: String, map: &UpdateMap, ui: &mut egui::Ui) {
    ui.label(title);
    if let Some(note) = &map.unmeasured {
        ui.small(note);
    }
    let base = run_color(id, ui.visuals().dark_mode);
    egui::ScrollArea::horizontal()
        .id_salt("update_map_scroll")
        .show(ui, |ui| heat_map(map, base, ui));
    if !map.nearest.is_empty() {
        nearest_table(map, ui);
    }
}

/// What the soft prompt says: each virtual token's nearest vocabulary tokens, with their
/// cosine similarity.
fn nearest_table(map: &UpdateMap, ui: &mut egui::Ui) {
    ui.add_space(6.0);
    ui.label(tr(
        ui,
        "What the soft prompt says: each virtual token's nearest vocabulary tokens (cosine similarity of input embeddings)",
    ));
    egui::ScrollArea::both()
        .id_salt("nearest_tokens_scroll")
        .max_height(220.0)
        .show(ui, |ui| {
            egui::Grid::new("nearest_tokens")
                .striped(true)
                .show(ui, |ui| {
                    for n in &map.nearest {
                        ui.label(trf(ui, "virtual token {}", &[&n.virtual_token]));
                        for (token, sim) in &n.nearest {
                            // Quoted and escaped: a token may be a space or a line break.
                            ui.monospace(format!("{token:?} {sim:.2}"));
                        }
                        ui.end_row();
                    }
                });
        });
}

fn heat_map(map: &UpdateMap, base: egui::Color32, ui: &mut egui::Ui) {
    let mut columns: Vec<&str> = Vec::new();
    for c in &map.cells {
        if !columns.contains(&c.module.as_str()) {
            columns.push(&c.module);
        }
    }
    // Rows: "input" (cells before the layers) first, then each layer.
    let input_row = map.cells.iter().any(|c| c.layer.is_none());
    let layers = map
        .cells
        .iter()
        .filter_map(|c| c.layer)
        .max()
        .map_or(0, |l| l + 1);
    let rows = layers + input_row as usize;
    let row_of = |layer: Option<usize>| match layer {
        None => 0,
        Some(l) => l + input_row as usize,
    };
    let largest = map.cells.iter().map(|c| c.value).fold(0.0f64, f64::max);
    let (cell_w, cell_h, label_w, head_h) = (92.0, 18.0, 64.0, 18.0);
    let size = egui::vec2(
        label_w + cell_w * columns.len() as f32,
        head_h + cell_h * rows as f32,
    );
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let text = ui.visuals().text_color();
    let font = egui::FontId::proportional(11.5);
    for (j, name) in columns.iter().enumerate() {
        painter.text(
            egui::pos2(
                rect.left() + label_w + cell_w * (j as f32 + 0.5),
                rect.top() + head_h / 2.0,
            ),
            egui::Align2::CENTER_CENTER,
            // The module's last name: `self_attn.q_proj` reads `q_proj`.
            name.rsplit('.')
                .find(|p| *p != "weight" && *p != "bias")
                .unwrap_or(name),
            font.clone(),
            text,
        );
    }
    for row in 0..rows {
        let name = if input_row && row == 0 {
            tr(ui, "input").to_string()
        } else {
            trf(ui, "layer {}", &[&(row - input_row as usize)])
        };
        painter.text(
            egui::pos2(
                rect.left() + 4.0,
                rect.top() + head_h + cell_h * (row as f32 + 0.5),
            ),
            egui::Align2::LEFT_CENTER,
            name,
            font.clone(),
            text,
        );
    }
    let cell_rect = |row: usize, col: usize| {
        egui::Rect::from_min_size(
            egui::pos2(
                rect.left() + label_w + cell_w * col as f32,
                rect.top() + head_h + cell_h * row as f32,
            ),
            egui::vec2(cell_w, cell_h),
        )
        .shrink(1.0)
    };
    let mut hovered = None;
    for c in &map.cells {
        let col = columns.iter().position(|m| *m == c.module).unwrap_or(0);
        let cell = cell_rect(row_of(c.layer), col);
        let share = if largest > 0.0 {
            (c.value / largest) as f32
        } else {
            0.0
        };
        painter.rect_filled(cell, 2.0, base.gamma_multiply(0.08 + 0.92 * share));
        painter.text(
            cell.center(),
            egui::Align2::CENTER_CENTER,
            format!("{:.3}", c.value),
            font.clone(),
            if share > 0.5 {
                egui::Color32::WHITE
            } else {
                text
            },
        );
        if response.hover_pos().is_some_and(|p| cell.contains(p)) {
            hovered = Some(c);
        }
    }
    if let Some(c) = hovered {
        let layer = c.layer.map_or_else(
            || tr(ui, "input").to_string(),
            |l| trf(ui, "layer {}", &[&l]),
        );
        let head = format!(
            "{layer} · {}: {:.5} ({:.0} % of the largest)",
            c.module,
            c.value,
            100.0 * c.value / largest.max(1e-30)
        );
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(head);
            if let Some(er) = c.effective_rank() {
                ui.label(trf(
                    ui,
                    "effective rank {} of {}: its singular values",
                    &[&format!("{er:.2}"), &c.singular_values.len()],
                ));
                singular_value_bars(&c.singular_values, base, ui);
            }
        });
    }
}

/// A small bar chart of singular values, largest first, each bar's height its share of the
/// largest.
fn singular_value_bars(sv: &[f64], color: egui::Color32, ui: &mut egui::Ui) {
    let largest = sv.first().copied().unwrap_or(0.0).max(1e-30);
    let (w, h) = (14.0f32, 48.0f32);
    let (rect, _) =
        ui.allocate_exact_size(egui::vec2(w * sv.len() as f32, h), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    for (i, s) in sv.iter().enumerate() {
        let height = (s / largest) as f32 * h;
        let bar = egui::Rect::from_min_max(
            egui::pos2(rect.left() + w * i as f32 + 1.0, rect.bottom() - height),
            egui::pos2(rect.left() + w * (i as f32 + 1.0) - 1.0, rect.bottom()),
        );
        painter.rect_filled(bar, 1.0, color);
    }
}
