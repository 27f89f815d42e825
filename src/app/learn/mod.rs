//! The Learn view: one page per method — how it works, a diagram of a transformer block
//! with the method's parameters highlighted, its trainable-parameter formula evaluated for
//! the loaded model, pros and cons, when to choose it, its preset and the runs measured here.

use eframe::egui;

use super::i18n::{lang, tr, trf};
use super::{Action, WorkbenchApp};
use crate::peft::MethodConfig;

mod diagram;
mod guide;
mod pages;

use diagram::{Measured, diagram};

/// Which run colours the diagram: the newest of the page's method with a measured update
/// map (the default: a student who has just trained sees it), one the student picked, or
/// none (the parts the method trains).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiagramRun {
    #[default]
    Newest,
    Run(crate::train::RunId),
    Off,
}
pub use pages::{Page, Text, page, pages, preset_text};

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let l = lang(ui.ctx());

    egui::Panel::left("learn_methods")
        .resizable(false)
        .default_size(170.0)
        .show(ui, |ui| {
            ui.heading(tr(ui, "Methods"));
            for m in MethodConfig::all_defaults() {
                let selected = app.learn_page == m.kind();
                if ui
                    .selectable_label(selected, tr(ui, m.display_name()))
                    .clicked()
                {
                    app.learn_page = m.kind().to_string();
                }
            }
            ui.separator();
            ui.heading(tr(ui, "Guides"));
            if ui
                .selectable_label(
                    app.learn_page == guide::RENTED_GPU,
                    tr(ui, "Training on a rented GPU"),
                )
                .clicked()
            {
                app.learn_page = guide::RENTED_GPU.to_string();
            }
        });
    if app.learn_page == guide::RENTED_GPU {
        guide::ui(ui);
        return;
    }
    let Some(method) = MethodConfig::all_defaults()
        .into_iter()
        .find(|m| m.kind() == app.learn_page)
    else {
        return;
    };
    let page = page(&method);
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(tr(ui, method.display_name()));
        ui.label(page.mechanism.get(l));
        ui.add_space(6.0);
        let measured = diagram_run_choice(app, ui, method.kind());
        ui.horizontal_top(|ui| {
            diagram(ui, &page.trained, measured.as_ref());
            ui.vertical(|ui| {
                ui.set_max_width(420.0);
                ui.strong(tr(ui, "Forward pass"));
                ui.label(egui::RichText::new(page.forward.get(l)).monospace());
                ui.add_space(4.0);
                ui.strong(tr(ui, "Trainable parameters"));
                ui.monospace(tr(ui, page.formula));
                match app.model_shape() {
                    Ok(shape) => {
                        let shape = shape.clone();
                        let n = method.trainable_params(&shape);
                        let total = shape.param_count();
                        ui.label(format!(
                            "{}: {} ({:.3} %)",
                            tr(ui, "On the loaded model, default settings"),
                            super::central::human(n),
                            100.0 * n as f64 / total.max(1) as f64
                        ));
                        // The diagram draws a LLaMA block; say where its parts are elsewhere.
                        if let Some(note) = match shape {
                            crate::models::ModelConfig::Llama(_) => None,
                            crate::models::ModelConfig::Bert(_) => Some(
                                "The diagram draws a LLaMA block. In this BERT encoder q/k/v are query/key/value, o is attention.output.dense, up/down are intermediate.dense/output.dense (no gate), norms are LayerNorms after each residual add, and a pooler and classifier replace the LM head.",
                            ),
                            crate::models::ModelConfig::Gpt2(_) => Some(
                                "The diagram draws a LLaMA block. In this GPT-2 q/k/v are one fused c_attn projection, o is attn.c_proj, up/down are mlp.c_fc/mlp.c_proj (no gate), norms are LayerNorms, and positions are learned embeddings instead of rotations.",
                            ),
                        } {
                            ui.small(tr(ui, note));
                        }
                    }
                    Err(e) => {
                        ui.colored_label(ui.visuals().error_fg_color, e.clone());
                    }
                }
                ui.add_space(6.0);
                ui.strong(tr(ui, "Pros"));
                ui.label(page.pros.get(l));
                ui.strong(tr(ui, "Cons"));
                ui.label(page.cons.get(l));
                ui.strong(tr(ui, "When to choose it"));
                ui.label(page.choose.get(l));
                ui.strong(tr(ui, "Typical hyperparameters"));
                ui.label(page.hyperparameters.get(l));
                ui.strong(tr(ui, "Related methods"));
                ui.label(page.relations.get(l));
                ui.strong(tr(ui, "Original paper"));
                ui.label(page.paper);
                ui.add_space(6.0);
                if ui
                    .button(tr(ui, "Use its preset"))
                    .on_hover_text(format!("presets/{}.toml", method.kind()))
                    .clicked()
                {
                    actions.push(Action::UsePreset(method.clone()));
                }
            });
        });
        published_results(ui, &method);
        measured_runs(app, ui, method.kind());
    });
}

/// The runs of `kind` with an update map (newest first), a choice among them, and the
/// chosen one's map gathered onto the diagram's parts, said in one line as well.
fn diagram_run_choice(app: &mut WorkbenchApp, ui: &mut egui::Ui, kind: &str) -> Option<Measured> {
    let candidates: Vec<(crate::train::RunId, String)> = app
        .store
        .runs
        .iter()
        .rev()
        .filter(|r| r.config.method.kind() == kind && r.has_update_map())
        .map(|r| (r.id, r.label.clone()))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = match app.learn_diagram_run {
        DiagramRun::Off => None,
        DiagramRun::Run(id) if candidates.iter().any(|(c, _)| *c == id) => Some(id),
        _ => Some(candidates[0].0),
    };
    let name_of = |id| {
        candidates
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, l)| l.clone())
    };
    let off = tr(ui, "what the method trains").to_string();
    ui.horizontal(|ui| {
        let label = ui.label(tr(ui, "Colour the diagram by"));
        let selected = chosen
            .and_then(name_of)
            .map_or(off.clone(), |l| trf(ui, "the change measured in {}", &[&l]));
        egui::ComboBox::from_id_salt("learn_diagram_run")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                let mut choice = app.learn_diagram_run;
                ui.selectable_value(&mut choice, DiagramRun::Off, &off);
                for (id, label) in &candidates {
                    ui.selectable_value(
                        &mut choice,
                        DiagramRun::Run(*id),
                        trf(ui, "the change measured in {}", &[label]),
                    );
                }
                app.learn_diagram_run = choice;
            })
            .response
            .labelled_by(label.id);
    });
    let id = chosen?;
    let (_, map) = super::update_map::map_of(app, id)?;
    let measured = Measured::new(&map);
    let values: Vec<String> = measured
        .parts
        .iter()
        .map(|(p, v, _)| format!("{} {v:.4}", tr(ui, p.name())))
        .collect();
    ui.small(trf(
        ui,
        "{}, mean over layers: {}",
        &[&tr(ui, &measured.measure), &values.join(" · ").as_str()],
    ));
    Some(measured)
}

/// PEFT's published numbers for the method, with their source, so a student can set the
/// runs measured here beside them.
fn published_results(ui: &mut egui::Ui, method: &MethodConfig) {
    use crate::peft::published::Benchmark;
    ui.add_space(8.0);
    ui.strong(tr(ui, "Published results"));
    let rows = method.published();
    if rows.is_empty() {
        ui.label(tr(
            ui,
            "Hugging Face PEFT publishes no numbers for this method (it is not one of PEFT's methods, or PEFT's comparisons leave it out).",
        ));
        return;
    }
    for bench in [Benchmark::MetaMathQa, Benchmark::Mrpc] {
        let of: Vec<_> = rows.iter().filter(|p| p.benchmark == bench).collect();
        if of.is_empty() {
            continue;
        }
        ui.label(egui::RichText::new(tr(ui, bench.source())).small().weak());
        egui::Grid::new(("published", bench as u8))
            .striped(true)
            .show(ui, |ui| {
                for h in [
                    "Variant",
                    "Accuracy",
                    "Trainable",
                    "Peak memory",
                    "Train time",
                ] {
                    ui.strong(tr(ui, h));
                }
                ui.end_row();
                for p in of {
                    ui.label(tr(ui, p.variant));
                    ui.label(format!("{:.3}", p.accuracy));
                    let dash = || "–".to_string();
                    ui.label(
                        p.trainable
                            .map_or_else(dash, |t| super::central::human(t as usize)),
                    );
                    ui.label(p.peak_gib.map_or_else(dash, |g| format!("{g:.1} GiB")));
                    ui.label(p.train_seconds.map_or_else(dash, |t| format!("{t:.0} s")));
                    ui.end_row();
                }
            });
    }
    ui.label(
        egui::RichText::new(tr(
            ui,
            "Other models and tasks than yours: compare the ordering of methods, not the numbers.",
        ))
        .small()
        .italics(),
    );
}

/// The runs of this method measured in this session or read from disk.
fn measured_runs(app: &WorkbenchApp, ui: &mut egui::Ui, kind: &str) {
    ui.add_space(8.0);
    ui.strong(tr(ui, "Measured here"));
    let runs: Vec<_> = app
        .store
        .runs
        .iter()
        .filter(|r| r.config.method.kind() == kind && r.summary.is_some())
        .collect();
    if runs.is_empty() {
        ui.label(tr(
            ui,
            "No finished run of this method yet: use its preset or Compare all methods.",
        ));
        return;
    }
    egui::Grid::new("learn_runs").striped(true).show(ui, |ui| {
        for h in ["Run", "Trainable", "Eval loss", "Metric", "Tokens/s"] {
            ui.strong(tr(ui, h));
        }
        ui.end_row();
        for r in runs {
            let s = r.summary.as_ref().expect("filtered above");
            ui.label(&r.label);
            ui.label(format!(
                "{} ({:.2} %)",
                super::central::human(s.trainable_params),
                100.0 * s.trainable_params as f64 / s.total_params.max(1) as f64
            ));
            ui.label(format!(
                "{:.3} -> {:.3}",
                s.initial_eval_loss, s.final_eval_loss
            ));
            ui.label(format!("{} {:.3}", s.metric_name, s.metric_value));
            ui.label(format!("{:.0}", s.tokens_per_second));
            ui.end_row();
        }
    });
}
