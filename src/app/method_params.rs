//! The parameters of the chosen method, and only those, each with a one-line tooltip.

use eframe::egui;

use super::i18n::tr;

use crate::peft::MethodConfig;
use crate::peft::adapter::{Activation, AdapterVariant};
use crate::peft::p_tuning::EncoderType;
use crate::peft::prompt_tuning::PromptInit;

const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A label and the widget it names (so screen readers, and tests, find the widget by it),
/// both explained by `tip`.
pub fn row(ui: &mut egui::Ui, text: &str, tip: &str, widget: impl egui::Widget) {
    let (text, tip) = (tr(ui, text), tr(ui, tip));
    let label = ui.label(text).on_hover_text(tip);
    ui.add(widget).labelled_by(label.id).on_hover_text(tip);
    ui.end_row();
}

/// An AdaLoRA phase: a share of the run's steps (the default, so a shortened run keeps the
/// schedule's shape), or a fixed step count where a file set one, with a way back.
fn adalora_phase(
    ui: &mut egui::Ui,
    text: &str,
    tip: &str,
    steps: &mut Option<usize>,
    fraction: &mut f64,
) {
    let (label_text, tip) = (tr(ui, text), tr(ui, tip));
    let label = ui.label(label_text).on_hover_text(tip);
    ui.horizontal(|ui| match steps {
        Some(n) => {
            ui.add(
                egui::DragValue::new(n)
                    .range(0..=100_000)
                    .suffix(tr(ui, " steps")),
            )
            .labelled_by(label.id)
            .on_hover_text(tip);
            if ui
                .small_button(tr(ui, "Follow run length"))
                .on_hover_text(tr(
                    ui,
                    "Use a share of the run's steps instead of a fixed count",
                ))
                .clicked()
            {
                *steps = None;
            }
        }
        None => {
            ui.add(
                egui::Slider::new(fraction, 0.0..=0.5)
                    .custom_formatter(|v, _| format!("{:.0} %", v * 100.0))
                    .custom_parser(|s| {
                        s.trim_end_matches([' ', '%'])
                            .parse::<f64>()
                            .ok()
                            .map(|v| v / 100.0)
                    }),
            )
            .labelled_by(label.id)
            .on_hover_text(tip);
        }
    });
    ui.end_row();
}

fn toggle(list: &mut Vec<String>, item: &str, on: bool) {
    list.retain(|m| m != item);
    if on {
        list.push(item.to_string());
    }
}

fn targets(ui: &mut egui::Ui, list: &mut Vec<String>, tip: &str) {
    ui.label(tr(ui, "Target modules")).on_hover_text(tip);
    ui.horizontal_wrapped(|ui| {
        for p in PROJECTIONS {
            let mut on = list.iter().any(|m| m == p);
            if ui.checkbox(&mut on, p).on_hover_text(tip).changed() {
                toggle(list, p, on);
            }
        }
    });
}

fn tokens(ui: &mut egui::Ui, n: &mut usize, what: &str) {
    row(
        ui,
        "Virtual tokens n",
        what,
        egui::DragValue::new(n).range(1..=512),
    );
}

pub fn ui(method: &mut MethodConfig, ui: &mut egui::Ui) {
    match method {
        MethodConfig::Full(_) => {
            ui.small(tr(
                ui,
                "Every weight of the model trains. The baseline to beat.",
            ));
        }
        MethodConfig::Freeze(c) => {
            egui::Grid::new("freeze_params")
                .num_columns(2)
                .show(ui, |ui| {
                    row(
                        ui,
                        "Trainable last blocks",
                        "How many of the last transformer blocks train; the rest stay frozen",
                        egui::DragValue::new(&mut c.trainable_layers).range(0..=128),
                    );
                });
            let mut all = c.trainable_modules.iter().any(|m| m == "all");
            if ui
                .checkbox(&mut all, tr(ui, "Whole blocks"))
                .on_hover_text(tr(
                    ui,
                    "Train every part of those blocks, or only the parts chosen below",
                ))
                .changed()
            {
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
                ui.label(tr(ui, "Also train"))
                    .on_hover_text(tr(ui, "Modules outside the blocks that train too"));
                for part in ["norm", "embed_tokens"] {
                    let mut on = c.extra_modules.iter().any(|m| m == part);
                    if ui.checkbox(&mut on, part).changed() {
                        toggle(&mut c.extra_modules, part, on);
                    }
                }
            });
        }
        MethodConfig::Lora(c) | MethodConfig::Dora(c) => {
            egui::Grid::new("lora_params")
                .num_columns(2)
                .show(ui, |ui| {
                    row(
                        ui,
                        "Rank r",
                        "Inner size of the update B·A: more rank, more capacity and parameters",
                        egui::DragValue::new(&mut c.rank).range(1..=256),
                    );
                    row(
                        ui,
                        "Alpha",
                        "The update is scaled by alpha / r, so alpha sets its strength",
                        egui::DragValue::new(&mut c.alpha)
                            .range(0.1..=1024.0)
                            .speed(0.5),
                    );
                    row(
                        ui,
                        "Dropout",
                        "Dropout on the input of the low-rank branch while training",
                        egui::Slider::new(&mut c.dropout, 0.0..=0.5),
                    );
                });
            ui.checkbox(&mut c.use_rslora, tr(ui, "rsLoRA scaling (α/√r)"))
                .on_hover_text(tr(ui, "Scale by alpha/√r, which keeps large ranks stable"));
            targets(
                ui,
                &mut c.target_modules,
                "Projections that get a low-rank update",
            );
            ui.small(super::i18n::trf(
                ui,
                "Update scaled by {}",
                &[&format!("{:.3}", c.scaling())],
            ));
        }
        MethodConfig::Adalora(c) => {
            egui::Grid::new("adalora_params")
                .num_columns(2)
                .show(ui, |ui| {
                    row(
                        ui,
                        "Initial rank",
                        "Rank every matrix starts with (init_r)",
                        egui::DragValue::new(&mut c.init_r).range(1..=256),
                    );
                    row(
                        ui,
                        "Target rank",
                        "Average rank per matrix once the budget has shrunk (target_r)",
                        egui::DragValue::new(&mut c.target_r).range(1..=256),
                    );
                    row(
                        ui,
                        "Alpha",
                        "The update is scaled by alpha / init_r",
                        egui::DragValue::new(&mut c.alpha)
                            .range(0.1..=1024.0)
                            .speed(0.5),
                    );
                    adalora_phase(
                        ui,
                        "Warm-up",
                        "Share of the run at the full budget before ranks are pruned (tinit)",
                        &mut c.tinit,
                        &mut c.tinit_fraction,
                    );
                    adalora_phase(
                        ui,
                        "Final phase",
                        "Share of the run at the end trained with the allocation fixed (tfinal)",
                        &mut c.tfinal,
                        &mut c.tfinal_fraction,
                    );
                    row(
                        ui,
                        "Reallocate every",
                        "Steps between budget reallocations (deltaT)",
                        egui::DragValue::new(&mut c.delta_t).range(1..=10_000),
                    );
                    row(
                        ui,
                        "β1 importance",
                        "Smoothing of each weight's importance |w·∇w|",
                        egui::Slider::new(&mut c.beta1, 0.0..=0.99),
                    );
                    row(
                        ui,
                        "β2 uncertainty",
                        "Smoothing of the importance's uncertainty",
                        egui::Slider::new(&mut c.beta2, 0.0..=0.99),
                    );
                    row(
                        ui,
                        "Orthogonality weight",
                        "Weight of the regulariser keeping P and Q orthogonal",
                        egui::DragValue::new(&mut c.orth_reg_weight)
                            .range(0.0..=10.0)
                            .speed(0.01),
                    );
                });
            targets(
                ui,
                &mut c.target_modules,
                "Projections that get an SVD-form update",
            );
        }
        MethodConfig::Ia3(c) => {
            targets(
                ui,
                &mut c.target_modules,
                "Projections whose output (or input, for feed-forward ones) is rescaled",
            );
            ui.label(tr(ui, "Feed-forward (input rescaled)"))
                .on_hover_text(tr(
                    ui,
                    "Of the targets, those whose input is rescaled: the MLP's inner activations",
                ));
            ui.horizontal_wrapped(|ui| {
                for p in PROJECTIONS {
                    if !c.target_modules.iter().any(|t| t == p) {
                        continue;
                    }
                    let mut on = c.feedforward_modules.iter().any(|m| m == p);
                    if ui.checkbox(&mut on, p).changed() {
                        toggle(&mut c.feedforward_modules, p, on);
                    }
                }
            });
            c.feedforward_modules
                .retain(|f| c.target_modules.contains(f));
        }
        MethodConfig::Bitfit(c) => {
            ui.checkbox(
                &mut c.add_missing_biases,
                tr(ui, "Add biases where missing"),
            )
            .on_hover_text(tr(
                ui,
                "Give projections without a bias a zero-initialised trainable one",
            ));
            ui.checkbox(&mut c.train_norms, tr(ui, "Train norm gains"))
                .on_hover_text(tr(ui, "Train the normalisation layers' scale vectors too"));
        }
        MethodConfig::Adapter(c) => {
            egui::Grid::new("adapter_params")
                .num_columns(2)
                .show(ui, |ui| {
                    row(
                        ui,
                        "Bottleneck m",
                        "Width of the adapter's inner layer",
                        egui::DragValue::new(&mut c.bottleneck).range(1..=4096),
                    );
                    ui.label(tr(ui, "Placement")).on_hover_text(tr(
                        ui,
                        "Houlsby: after attention and after the MLP; Pfeiffer: after the MLP only",
                    ));
                    ui.horizontal(|ui| {
                        for v in AdapterVariant::ALL {
                            ui.selectable_value(&mut c.variant, v, v.name());
                        }
                    });
                    ui.end_row();
                    ui.label(tr(ui, "Nonlinearity"))
                        .on_hover_text(tr(ui, "Activation between the down and up projections"));
                    ui.horizontal(|ui| {
                        for a in Activation::ALL {
                            ui.selectable_value(&mut c.activation, a, a.name());
                        }
                    });
                    ui.end_row();
                });
        }
        MethodConfig::PromptTuning(c) => {
            egui::Grid::new("prompt_params").num_columns(2).show(ui, |ui| {
                tokens(
                    ui,
                    &mut c.num_virtual_tokens,
                    "Trainable embeddings placed before the input",
                );
                ui.label(tr(ui, "Initialise from")).on_hover_text(tr(ui, "random: N(0, 1); text: embeddings of a text; sample_vocab: embeddings of random tokens"));
                ui.horizontal(|ui| {
                    for i in PromptInit::ALL {
                        ui.selectable_value(&mut c.init, i, i.name());
                    }
                });
                ui.end_row();
            });
            if c.init == PromptInit::Text {
                let label = ui.label(tr(ui, "Init text"));
                ui.text_edit_singleline(&mut c.init_text)
                    .labelled_by(label.id)
                    .on_hover_text(tr(
                        ui,
                        "Its token embeddings, repeated or cut to n, start the prompt",
                    ));
            }
        }
        MethodConfig::PTuning(c) => {
            egui::Grid::new("ptuning_params")
                .num_columns(2)
                .show(ui, |ui| {
                    tokens(
                        ui,
                        &mut c.num_virtual_tokens,
                        "Virtual tokens the prompt encoder produces",
                    );
                    ui.label(tr(ui, "Encoder")).on_hover_text(tr(
                        ui,
                        "lstm: bidirectional LSTM then MLP; mlp: a three-layer MLP",
                    ));
                    ui.horizontal(|ui| {
                        for e in EncoderType::ALL {
                            ui.selectable_value(&mut c.encoder_type, e, e.name());
                        }
                    });
                    ui.end_row();
                    row(
                        ui,
                        "Encoder hidden size",
                        "Width of the prompt encoder",
                        egui::DragValue::new(&mut c.encoder_hidden_size).range(1..=4096),
                    );
                    if c.encoder_type == EncoderType::Lstm {
                        row(
                            ui,
                            "LSTM layers",
                            "Stacked bidirectional LSTM layers",
                            egui::DragValue::new(&mut c.encoder_num_layers).range(1..=8),
                        );
                        row(
                            ui,
                            "LSTM dropout",
                            "Dropout between LSTM layers while training",
                            egui::Slider::new(&mut c.encoder_dropout, 0.0..=0.5),
                        );
                    }
                });
        }
        MethodConfig::PrefixTuning(c) => {
            egui::Grid::new("prefix_params")
                .num_columns(2)
                .show(ui, |ui| {
                    tokens(
                        ui,
                        &mut c.num_virtual_tokens,
                        "Prefix length: key/value positions added to every layer",
                    );
                    row(
                        ui,
                        "Encoder hidden size",
                        "Width of the MLP that produces the prefixes while training",
                        egui::DragValue::new(&mut c.encoder_hidden_size).range(1..=4096),
                    );
                });
            ui.checkbox(
                &mut c.prefix_projection,
                tr(ui, "Reparameterise with an MLP"),
            )
            .on_hover_text(tr(
                ui,
                "Off trains the prefixes directly (that is P-Tuning v2)",
            ));
        }
        MethodConfig::PTuningV2(c) => {
            egui::Grid::new("ptv2_params")
                .num_columns(2)
                .show(ui, |ui| {
                    tokens(
                        ui,
                        &mut c.num_virtual_tokens,
                        "Prompt length in every layer (trained directly)",
                    );
                });
            let label = ui.label(tr(ui, "Init text (optional)"));
            ui.text_edit_singleline(&mut c.init_text)
                .labelled_by(label.id)
                .on_hover_text(tr(ui, "Start the prompts as the keys and values the model computes for this text; empty starts from N(0, 1)"));
        }
    }
}
