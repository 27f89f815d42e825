//! The side panel: model, dataset, method with only its own parameters, optimizer, Start/Stop.

use eframe::egui;

use super::i18n::{fill, lang, tr, trf};

use super::central::human;
use super::method_params::{self, row};
use super::path_dialog::{PathPrompt, PathPurpose};
use super::{Action, WorkbenchApp};
use crate::config::{Precision, Schedule};
use crate::data::BUILTIN_TASKS;
use crate::models::ModelConfig;
use crate::peft::MethodConfig;
use crate::train::memory;
use std::path::PathBuf;

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    ui.heading(tr(ui, "Run"));
    model_and_data(app, ui);
    ui.separator();
    method(app, ui);
    ui.separator();
    training(app, ui);
}

/// Start, Compare all, Stop, and why the last Start was refused.
pub fn actions(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.add_space(4.0);
    let running = app.store.active().map(|r| r.id);
    ui.horizontal_wrapped(|ui| {
        if ui
            .button(tr(ui, "Start"))
            .on_hover_text(tr(ui, "Queue this run; it starts when the runs before it end"))
            .clicked()
        {
            actions.push(Action::Start);
        }
        if ui
            .button(tr(ui, "Compare all methods"))
            .on_hover_text(tr(ui, "Queue one run per method on this model, data and steps, each with its best rate from the sweep on the built-in reviews task (its usual rate elsewhere); the run labels show the rate"))
            .clicked()
        {
            actions.push(Action::CompareAll);
        }
        if ui
            .add_enabled(running.is_some(), egui::Button::new(tr(ui, "Stop")))
            .on_hover_text(tr(ui, "Stop the running run after its current step; it is saved"))
            .clicked()
            && let Some(id) = running
        {
            actions.push(Action::Stop(id));
        }
        // Only a run with early stopping keeps a best to end on.
        let keeps_best = app
            .store
            .active()
            .filter(|r| r.config.early_stopping.is_some())
            .map(|r| (r.id, r.best_step));
        if let Some((id, best)) = keeps_best
            && ui
                .button(tr(ui, "Stop and keep best"))
                .on_hover_text(match best {
                    Some(step) => super::i18n::fill(
                        app.lang,
                        "End the run now as finished; its best evaluation (step {}) stays in best/",
                        &[&step],
                    ),
                    None => tr(ui, "End the run now as finished; its best evaluation stays in best/")
                        .to_string(),
                })
                .clicked()
        {
            actions.push(Action::StopKeepBest(id));
        }
    });
    if let Some(e) = &app.form_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
}

fn model_and_data(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let mut ask = None;
    let form = &mut app.form;
    ui.label(tr(ui, "Model"));
    ui.horizontal_wrapped(|ui| {
        let builtin = form.model == "builtin";
        if ui
            .selectable_label(builtin, tr(ui, "Built-in (LLaMA 7.8 M)"))
            .clicked()
        {
            form.model = "builtin".into();
        }
        if ui
            .button(tr(ui, "Open model folder…"))
            .on_hover_text(tr(
                ui,
                "A Hugging Face folder: config.json, *.safetensors, tokenizer.json",
            ))
            .clicked()
        {
            ask = Some(PathPurpose::ModelFolder);
        }
        if ui
            .button(tr(ui, "Open GGUF…"))
            .on_hover_text(tr(
                ui,
                "A LLaMA-family .gguf file; its weights are dequantised to f32 for training",
            ))
            .clicked()
        {
            ask = Some(PathPurpose::GgufFile);
        }
    });
    if form.model != "builtin" {
        ui.small(&form.model);
    }
    model_card(app, ui);
    let form = &mut app.form;
    ui.label(tr(ui, "Dataset"));
    ui.horizontal_wrapped(|ui| {
        for task in BUILTIN_TASKS {
            let name = format!("builtin:{task}");
            if ui.selectable_label(form.dataset == name, task).clicked() {
                form.dataset = name;
                form.eval_dataset = None;
            }
        }
        if ui.button(tr(ui, "Open file…")).clicked() {
            ask = Some(PathPurpose::DatasetFile);
        }
        if ui
            .selectable_label(app.data_view.open, tr(ui, "Preview data…"))
            .on_hover_text(tr(
                ui,
                "The examples as the model will see them: format, counts, token lengths against max_seq_len, the chat template, which tokens are learned",
            ))
            .clicked()
        {
            app.data_view.open = !app.data_view.open;
        }
    });
    if !form.dataset.starts_with("builtin:") {
        ui.small(&form.dataset);
    }
    if let Some(purpose) = ask {
        // The prompt starts at the file or folder in use, else where the workbench started.
        let current = match purpose {
            PathPurpose::DatasetFile if !form.dataset.starts_with("builtin:") => {
                PathBuf::from(&form.dataset)
            }
            PathPurpose::ModelFolder | PathPurpose::GgufFile if form.model != "builtin" => {
                PathBuf::from(&form.model)
            }
            _ => std::env::current_dir().unwrap_or_default(),
        };
        app.path_prompt = Some(PathPrompt::new(purpose, &current));
    }
}

fn method(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    ui.label(tr(ui, "Method"));
    let current = app.form.method.kind();
    let mut chosen = None;
    ui.horizontal_wrapped(|ui| {
        for m in MethodConfig::all_defaults() {
            if ui
                .selectable_label(m.kind() == current, tr(ui, m.display_name()))
                .clicked()
            {
                chosen = Some(m.kind());
            }
        }
    });
    if let Some(kind) = chosen {
        app.select_method(kind);
    }
    method_params::ui(&mut app.form.method, ui);
    trainable_count(app, ui);
}

/// What the chosen model is, read from its configuration.
fn model_card(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let shape = app.model_shape().cloned();
    match shape {
        Ok(c) => {
            let family = match &c {
                ModelConfig::Llama(_) => tr(ui, "LLaMA-family decoder").to_string(),
                ModelConfig::Gpt2(_) => tr(ui, "GPT-2 decoder").to_string(),
                ModelConfig::Bert(_) => {
                    tr(ui, "BERT encoder with a classification head").to_string()
                }
            };
            let heads = if c.kv_heads() == c.num_heads() {
                format!("{} {}", c.num_heads(), tr(ui, "heads"))
            } else {
                format!(
                    "{} {} ({} {})",
                    c.num_heads(),
                    tr(ui, "heads"),
                    c.kv_heads(),
                    tr(ui, "key/value")
                )
            };
            ui.small(format!(
                "{family} · {} {} · {} {} · {} {} · {heads} · {} {} · {} {}",
                human(c.param_count()),
                tr(ui, "parameters"),
                c.num_layers(),
                tr(ui, "layers"),
                tr(ui, "hidden"),
                c.hidden_size(),
                tr(ui, "vocabulary"),
                c.vocab_size(),
                tr(ui, "context"),
                c.max_positions()
            ));
            if c.is_classifier() {
                ui.small(tr(
                    ui,
                    "Classifies {\"text\", \"label\"} data (e.g. builtin:sentiment-labels); its head trains under every method; metric: accuracy",
                ));
            }
        }
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }
}

/// The method's trainable parameters on the chosen model, from its formula, before any
/// run starts.
fn trainable_count(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let method = app.form.method.clone();
    let (batch, seq) = (app.form.batch_size, app.form.max_seq_len);
    // When the model cannot be read, the model card above says why.
    if let Ok(shape) = app.model_shape().cloned() {
        let shape = &shape;
        let n = method.trainable_params(shape);
        let total = shape.param_count();
        ui.label(format!(
            "{} {} ({:.3} % {} {})",
            tr(ui, "Trains"),
            human(n),
            100.0 * n as f64 / total.max(1) as f64,
            tr(ui, "of the model's"),
            human(total)
        ));
        let need = memory::training_bytes(shape, n, batch, seq);
        let avail = memory::available_bytes()
            .map(|a| format!(" / {} {}", memory::human_bytes(a), tr(ui, "available")))
            .unwrap_or_default();
        ui.small(format!(
            "{} {batch} × {seq}: {}{avail}",
            tr(ui, "Estimated training memory at batch"),
            memory::human_bytes(need)
        ));
        if let crate::peft::MethodConfig::Bitfit(c) = &method
            && let Some((template, n)) = c.note_template(shape)
        {
            ui.small(super::i18n::trf(ui, template, &[&n]));
        } else if let Some(note) = method.note_for(shape) {
            ui.small(note);
        }
    }
}

fn training(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let f = &mut app.form;
    egui::Grid::new("training_params")
        .num_columns(2)
        .show(ui, |ui| {
            // Empty: the day's runs ("runs 2026-12-03") when Start is pressed.
            let mut experiment = f.experiment.clone().unwrap_or_default();
            let edit = egui::TextEdit::singleline(&mut experiment)
                .desired_width(150.0)
                .hint_text(tr(ui, "today's runs"));
            row(
                ui,
                "Experiment",
                "The runs table and the plots group runs by experiment; Compare all methods starts a new one",
                edit,
            );
            if f.experiment.as_deref().unwrap_or_default() != experiment {
                f.experiment = (!experiment.is_empty()).then_some(experiment);
            }
            row(
                ui,
                "Steps",
                "Optimizer steps the run takes",
                egui::DragValue::new(&mut f.steps).range(1..=100_000),
            );
            row(
                ui,
                "Batch size",
                "Examples per optimizer step",
                egui::DragValue::new(&mut f.batch_size).range(1..=256),
            );
            row(
                ui,
                "Max sequence length",
                "Longer examples are cut to this many tokens",
                egui::DragValue::new(&mut f.max_seq_len).range(2..=4096),
            );
            row(
                ui,
                "Evaluate every",
                "Steps between evaluations on held-out examples",
                egui::DragValue::new(&mut f.eval_every).range(1..=10_000),
            );
            row(
                ui,
                "Checkpoint every",
                "Steps between checkpoints a stopped or crashed run resumes from (0: only when stopped)",
                egui::DragValue::new(&mut f.checkpoint_every).range(0..=100_000),
            );
            row(
                ui,
                "Learning rate",
                "Peak learning rate of AdamW",
                egui::DragValue::new(&mut f.optimizer.lr)
                    .range(1e-6..=1.0)
                    .speed(1e-5)
                    .custom_formatter(|v, _| format!("{v:.1e}"))
                    .custom_parser(|s| s.trim().parse().ok()),
            );
            row(
                ui,
                "Weight decay",
                "AdamW's decoupled weight decay",
                egui::DragValue::new(&mut f.optimizer.weight_decay)
                    .range(0.0..=1.0)
                    .speed(0.001),
            );
            row(
                ui,
                "Warm-up steps",
                "Steps over which the learning rate rises from 0",
                egui::DragValue::new(&mut f.optimizer.warmup_steps).range(0..=10_000),
            );
            // A drop-down, not a wrapping row of buttons: a Grid sizes its row from the
            // row's first line, and the wrapped third button was drawn over the next row.
            let label = ui.label(tr(ui, "Schedule"));
            egui::ComboBox::from_id_salt("schedule")
                .selected_text(tr(ui, f.optimizer.schedule.name()))
                .show_ui(ui, |ui| {
                    for s in Schedule::ALL {
                        ui.selectable_value(&mut f.optimizer.schedule, s, tr(ui, s.name()));
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            row(
                ui,
                "Seed",
                "Seeds data order and the method's initialisation",
                egui::DragValue::new(&mut f.seed),
            );
            row(
                ui,
                "Group by length",
                "Batch examples of similar length together: less padding, so faster steps",
                egui::Checkbox::without_text(&mut f.group_by_length),
            );
            early_stopping(f, ui);
        });
    let suggested = crate::compare::learning_rate_for(&f.method, f);
    if f.optimizer.lr != suggested
        && ui
            .small_button(trf(
                ui,
                "Use learning rate {} (this method's rate for this task)",
                &[&format!("{suggested:.1e}")],
            ))
            .on_hover_text(tr(
                ui,
                "The rate the learning-rate sweep chose for this method on the built-in reviews task, or its usual rate elsewhere",
            ))
            .clicked()
    {
        f.optimizer.lr = suggested;
    }
    ui.separator();
    device_and_precision(app, ui);
}

/// `[early_stopping]`: off, or the patience, the smallest improvement that counts and what
/// is watched.
fn early_stopping(f: &mut crate::config::RunConfig, ui: &mut egui::Ui) {
    use crate::config::{EarlyStopping, Monitor};
    let mut on = f.early_stopping.is_some();
    row(
        ui,
        "Early stopping",
        "Stop when the evaluations stop improving; the best evaluation's adapter is kept in best/",
        egui::Checkbox::without_text(&mut on),
    );
    match (on, &mut f.early_stopping) {
        (false, es) => *es = None,
        (true, None) => {
            f.early_stopping = Some(EarlyStopping {
                patience: 3,
                min_delta: 0.0,
                monitor: Monitor::EvalLoss,
            })
        }
        (true, Some(es)) => {
            row(
                ui,
                "Patience",
                "Evaluations in a row without improvement before the run stops",
                egui::DragValue::new(&mut es.patience).range(1..=1000),
            );
            row(
                ui,
                "Min. improvement",
                "An evaluation counts as better only by more than this",
                egui::DragValue::new(&mut es.min_delta)
                    .range(0.0..=10.0)
                    .speed(0.001),
            );
            let label = ui.label(tr(ui, "Watch"));
            egui::ComboBox::from_id_salt("early_stopping_monitor")
                .selected_text(tr(ui, monitor_name(es.monitor)))
                .show_ui(ui, |ui| {
                    for m in [Monitor::EvalLoss, Monitor::Metric] {
                        ui.selectable_value(&mut es.monitor, m, tr(ui, monitor_name(m)));
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
        }
    }
}

fn monitor_name(m: crate::config::Monitor) -> &'static str {
    match m {
        crate::config::Monitor::EvalLoss => "evaluation loss",
        crate::config::Monitor::Metric => "metric",
    }
}

/// Where the run trains and in what number format. The list is what the driver reported
/// at start; a CPU-only build says how to get CUDA. bf16/f16 are offered on a CUDA device
/// only (candle's CPU products in them are slower than f32, not faster).
fn device_and_precision(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let available = app.device_available();
    let remote = app.machines.remote_devices();
    let f = &mut app.form;
    egui::Grid::new("device_params")
        .num_columns(2)
        .show(ui, |ui| {
            let label = ui
                .label(tr(ui, "Device"))
                .on_hover_text(tr(ui, "Where the run trains: here, or on a remote machine"));
            let current = match &f.machine {
                Some(m) => format!("{} @ {m}", f.device),
                None => app
                    .devices
                    .iter()
                    .find(|d| d.name == f.device)
                    .map_or_else(|| f.device.clone(), |d| d.description.clone()),
            };
            egui::ComboBox::from_id_salt("device")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for d in &app.devices {
                        let on = f.machine.is_none() && f.device == d.name;
                        if ui.selectable_label(on, &d.description).clicked() {
                            f.device = d.name.clone();
                            f.machine = None;
                        }
                    }
                    // The devices a test found on each remote machine.
                    for (m, d) in &remote {
                        let on = f.machine.as_ref() == Some(m) && f.device == *d;
                        if ui.selectable_label(on, format!("{d} @ {m}")).clicked() {
                            f.device = d.clone();
                            f.machine = Some(m.clone());
                        }
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            ui.label(tr(ui, "Precision"))
                .on_hover_text(tr(ui, "bf16/f16: frozen weights stored and multiplied in half precision, trained tensors kept in f32"));
            if !f.precision.runs_on(&f.device) {
                f.precision = Precision::F32;
            }
            ui.horizontal_wrapped(|ui| {
                for p in Precision::ALL {
                    ui.add_enabled_ui(p.runs_on(&f.device), |ui| {
                        ui.selectable_value(&mut f.precision, p, p.name());
                    });
                }
            });
            ui.end_row();
        });
    if f.machine.is_some() {
        if !available {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                tr(
                    ui,
                    "Test the machine's connection first (Remote machines, below).",
                ),
            );
        }
    } else if !available {
        // A form saved by a CUDA build, opened where that device is not.
        ui.colored_label(
            ui.visuals().warn_fg_color,
            fill(lang(ui.ctx()), "{} is not available here.", &[&f.device]),
        );
        if ui.button(tr(ui, "Use the CPU")).clicked() {
            f.device = "cpu".into();
            f.machine = None;
            f.precision = Precision::F32;
        }
    } else if app.devices.len() == 1 {
        ui.small(tr(
            ui,
            if cfg!(feature = "cuda") {
                "No CUDA device found: training runs on the CPU in f32."
            } else {
                "CPU only, in f32: this build has no CUDA (scripts/build-cuda.sh builds one)."
            },
        ));
    } else if !f.device.starts_with("cuda") {
        ui.small(tr(ui, "On the CPU training is f32."));
    }
}
