//! The side panel: model, dataset, method with only its own parameters, optimizer, Start/Stop.

use eframe::egui;

use super::{Action, WorkbenchApp};
use crate::config::Schedule;
use crate::data::BUILTIN_TASKS;
use crate::peft::MethodConfig;

const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.heading("Run");
    model_and_data(app, ui);
    ui.separator();
    method(app, ui);
    ui.separator();
    training(app, ui);
    ui.separator();
    let running = app.store.active().map(|r| r.id);
    ui.horizontal(|ui| {
        if ui
            .button("Start")
            .on_hover_text("Queue this run; it starts when the runs before it end")
            .clicked()
        {
            actions.push(Action::Start);
        }
        if ui
            .add_enabled(running.is_some(), egui::Button::new("Stop"))
            .on_hover_text("Stop the running run after its current step; it is saved")
            .clicked()
            && let Some(id) = running
        {
            actions.push(Action::Stop(id));
        }
    });
    if let Some(e) = &app.form_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
}

fn model_and_data(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let form = &mut app.form;
    ui.label("Model");
    ui.horizontal(|ui| {
        let builtin = form.model == "builtin";
        if ui
            .selectable_label(builtin, "Built-in (LLaMA 4.6 M)")
            .clicked()
        {
            form.model = "builtin".into();
        }
        if ui.button("Open model folder…").clicked()
            && let Some(dir) = rfd::FileDialog::new().pick_folder()
        {
            form.model = dir.display().to_string();
        }
    });
    if form.model != "builtin" {
        ui.small(&form.model);
    }
    ui.label("Dataset");
    ui.horizontal_wrapped(|ui| {
        for task in BUILTIN_TASKS {
            let name = format!("builtin:{task}");
            if ui.selectable_label(form.dataset == name, task).clicked() {
                form.dataset = name;
                form.eval_dataset = None;
            }
        }
        if ui.button("Open file…").clicked()
            && let Some(f) = rfd::FileDialog::new()
                .add_filter("Datasets", &["jsonl", "csv"])
                .pick_file()
        {
            form.dataset = f.display().to_string();
            form.eval_dataset = None;
        }
    });
    if !form.dataset.starts_with("builtin:") {
        ui.small(&form.dataset);
    }
}

fn method(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    ui.label("Method");
    let current = app.form.method.kind();
    let mut chosen = None;
    ui.horizontal_wrapped(|ui| {
        for m in MethodConfig::all_defaults() {
            if ui
                .selectable_label(m.kind() == current, m.display_name())
                .clicked()
            {
                chosen = Some(m.kind());
            }
        }
    });
    if let Some(kind) = chosen {
        app.select_method(kind);
    }
    match &mut app.form.method {
        MethodConfig::Full(_) => {
            ui.small("Every weight of the model trains. The baseline to beat.");
        }
        MethodConfig::Freeze(c) => {
            ui.horizontal(|ui| {
                row(
                    ui,
                    "Trainable last blocks",
                    egui::DragValue::new(&mut c.trainable_layers).range(0..=128),
                );
            });
            let mut all = c.trainable_modules.iter().any(|m| m == "all");
            if ui.checkbox(&mut all, "Whole blocks").changed() {
                c.trainable_modules = if all {
                    vec!["all".into()]
                } else {
                    vec!["mlp".into()]
                };
            }
            if !all {
                ui.horizontal(|ui| {
                    for part in ["self_attn", "mlp"] {
                        let mut on = c.trainable_modules.iter().any(|m| m == part);
                        if ui.checkbox(&mut on, part).changed() {
                            toggle(&mut c.trainable_modules, part, on);
                        }
                    }
                });
            }
            ui.horizontal(|ui| {
                ui.label("Also train");
                for part in ["norm", "embed_tokens"] {
                    let mut on = c.extra_modules.iter().any(|m| m == part);
                    if ui.checkbox(&mut on, part).changed() {
                        toggle(&mut c.extra_modules, part, on);
                    }
                }
            });
        }
        MethodConfig::Lora(c) => {
            egui::Grid::new("lora_params")
                .num_columns(2)
                .show(ui, |ui| {
                    row(
                        ui,
                        "Rank r",
                        egui::DragValue::new(&mut c.rank).range(1..=256),
                    );
                    ui.end_row();
                    row(
                        ui,
                        "Alpha",
                        egui::DragValue::new(&mut c.alpha)
                            .range(0.1..=1024.0)
                            .speed(0.5),
                    );
                    ui.end_row();
                    row(ui, "Dropout", egui::Slider::new(&mut c.dropout, 0.0..=0.5));
                    ui.end_row();
                });
            ui.checkbox(&mut c.use_rslora, "rsLoRA scaling (α/√r)");
            ui.label("Target modules");
            ui.horizontal_wrapped(|ui| {
                for p in PROJECTIONS {
                    let mut on = c.target_modules.iter().any(|m| m == p);
                    if ui.checkbox(&mut on, p).changed() {
                        toggle(&mut c.target_modules, p, on);
                    }
                }
            });
            ui.small(format!("Update scaled by {:.3}", c.scaling()));
        }
    }
}

fn toggle(list: &mut Vec<String>, item: &str, on: bool) {
    list.retain(|m| m != item);
    if on {
        list.push(item.to_string());
    }
}

fn training(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let f = &mut app.form;
    egui::Grid::new("training_params")
        .num_columns(2)
        .show(ui, |ui| {
            row(
                ui,
                "Steps",
                egui::DragValue::new(&mut f.steps).range(1..=100_000),
            );
            ui.end_row();
            row(
                ui,
                "Batch size",
                egui::DragValue::new(&mut f.batch_size).range(1..=256),
            );
            ui.end_row();
            row(
                ui,
                "Max sequence length",
                egui::DragValue::new(&mut f.max_seq_len).range(2..=4096),
            );
            ui.end_row();
            row(
                ui,
                "Evaluate every",
                egui::DragValue::new(&mut f.eval_every).range(1..=10_000),
            );
            ui.end_row();
            row(
                ui,
                "Learning rate",
                egui::DragValue::new(&mut f.optimizer.lr)
                    .range(1e-6..=1.0)
                    .speed(1e-5)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            );
            ui.end_row();
            row(
                ui,
                "Weight decay",
                egui::DragValue::new(&mut f.optimizer.weight_decay)
                    .range(0.0..=1.0)
                    .speed(0.001),
            );
            ui.end_row();
            row(
                ui,
                "Warm-up steps",
                egui::DragValue::new(&mut f.optimizer.warmup_steps).range(0..=10_000),
            );
            ui.end_row();
            ui.label("Schedule");
            ui.horizontal(|ui| {
                for s in Schedule::ALL {
                    ui.selectable_value(&mut f.optimizer.schedule, s, s.name());
                }
            });
            ui.end_row();
            row(ui, "Seed", egui::DragValue::new(&mut f.seed));
            ui.end_row();
        });
    ui.small("Device: CPU (f32)");
}

/// A label and the widget it names (so screen readers, and tests, find the widget by it).
fn row(ui: &mut egui::Ui, text: &str, widget: impl egui::Widget) {
    let label = ui.label(text);
    ui.add(widget).labelled_by(label.id);
}
