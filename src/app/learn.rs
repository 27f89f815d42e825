//! The Learn view: one page per method — how it works, a diagram of a transformer block
//! with the method's parameters highlighted, its trainable-parameter formula evaluated for
//! the loaded model, pros and cons, when to choose it, its preset and the runs measured here.

use eframe::egui::{self, Color32, Pos2, Rect, Stroke, Vec2, pos2, vec2};

use super::i18n::{Lang, lang, tr};
use super::{Action, WorkbenchApp};
use crate::peft::MethodConfig;

/// A text in both languages of the UI.
pub struct Text {
    pub en: &'static str,
    pub zh: &'static str,
}

impl Text {
    pub fn get(&self, l: Lang) -> &'static str {
        match l {
            Lang::En => self.en,
            Lang::Zh => self.zh,
        }
    }
}

/// Where a method's trained parameters sit in the block diagram.
#[derive(Default, Clone, Copy)]
struct Trained {
    embedding: bool,
    /// Virtual tokens before the input (Prompt Tuning, P-Tuning), and the encoder that
    /// makes them, if any.
    prompt: Option<&'static str>,
    /// Key/value prefixes in every layer, and the reparameterisation that makes them.
    kv_prefix: Option<&'static str>,
    /// The projections' own weights (full fine-tuning, Freeze's last blocks).
    weights: bool,
    /// A low-rank side branch on q and v, with its label.
    low_rank: Option<&'static str>,
    /// IA3's rescaling vectors on k, v and the feed-forward input.
    rescale: bool,
    /// Bias terms and norm gains.
    biases: bool,
    norms: bool,
    /// Bottleneck adapters after attention and after the MLP.
    adapters: bool,
    head: bool,
}

pub struct Page {
    pub kind: &'static str,
    pub mechanism: Text,
    /// The count of trained parameters, in symbols (L layers, d hidden, r rank…).
    pub formula: &'static str,
    pub pros: Text,
    pub cons: Text,
    pub choose: Text,
    trained: Trained,
}

pub fn pages() -> Vec<Page> {
    vec![
        Page {
            kind: "full",
            mechanism: Text {
                en: "Every weight of the model is trained: embeddings, attention, MLP, norms and the output head. It is the baseline every PEFT method is compared with.",
                zh: "训练模型的全部权重：词嵌入、注意力、MLP、归一化层和输出头。它是所有 PEFT 方法比较的基线。",
            },
            formula: "all parameters",
            pros: Text {
                en: "Highest capacity; no extra inference cost; nothing to attach.",
                zh: "容量最大；推理无额外开销；无需挂载任何模块。",
            },
            cons: Text {
                en: "Needs gradients and two AdamW moments for every weight (about 4× the model in memory); one full copy of the model per task; can forget what the model knew.",
                zh: "每个权重都需要梯度和 AdamW 的两个动量（显存约为模型的 4 倍）；每个任务保存一整份模型；可能遗忘原有知识。",
            },
            choose: Text {
                en: "Small models, plenty of memory, and a task far from what the model was trained on.",
                zh: "模型较小、内存充足，且任务与预训练差异很大时。",
            },
            trained: Trained {
                embedding: true,
                weights: true,
                biases: true,
                norms: true,
                head: true,
                ..Trained::default()
            },
        },
        Page {
            kind: "freeze",
            mechanism: Text {
                en: "The first blocks stay frozen and only the last N transformer blocks are trained. The early layers hold general features; the last ones adapt to the task.",
                zh: "冻结前面的层，只训练最后 N 个 Transformer 块。浅层保留通用特征，深层适应任务。",
            },
            formula: "N × (params of one block)",
            pros: Text {
                en: "Simple; no new modules; backward stops at the first trained block, so it is cheap.",
                zh: "简单；不引入新模块；反向传播只到第一个可训练块，计算量小。",
            },
            cons: Text {
                en: "Still many parameters per block; a full copy of the trained blocks per task; the early layers cannot change.",
                zh: "每个块参数仍较多；每个任务要保存被训练的块；浅层无法改变。",
            },
            choose: Text {
                en: "A quick, strong baseline when the task needs only the top of the network to change.",
                zh: "任务只需改变网络顶层时，一个快速而有力的基线。",
            },
            trained: Trained {
                weights: true,
                norms: true,
                ..Trained::default()
            },
        },
        Page {
            kind: "lora",
            mechanism: Text {
                en: "Each adapted projection W gets a low-rank update: y = W x + (α/r) · B A x, with A (r × in) random and B (out × r) zero, so training starts from the unchanged model. Only A and B train; after training B A can be merged into W.",
                zh: "给被适配的投影 W 加一个低秩更新：y = W x + (α/r) · B A x，A（r × in）随机初始化，B（out × r）为零，所以训练从原模型出发。只训练 A 和 B；训练后可把 B A 合并进 W。",
            },
            formula: "Σ over adapted projections r × (in + out)",
            pros: Text {
                en: "Few parameters; no inference cost once merged; adapters are small files; the default choice of the field.",
                zh: "参数少；合并后推理无额外开销；适配器文件小；业界默认选择。",
            },
            cons: Text {
                en: "The same rank everywhere; rank and α need tuning; the update is limited to rank r.",
                zh: "所有矩阵使用相同的秩；需要调节秩和 α；更新受限于秩 r。",
            },
            choose: Text {
                en: "Almost always a good first try.",
                zh: "几乎总是值得首先尝试的方法。",
            },
            trained: Trained {
                low_rank: Some("B·A"),
                ..Trained::default()
            },
        },
        Page {
            kind: "dora",
            mechanism: Text {
                en: "DoRA splits each weight into a magnitude m (one number per output row) and a direction: y = m · (W + s·B A) x / norm(W + s·B A). LoRA updates the direction; the magnitude trains separately.",
                zh: "DoRA 把权重分解为幅度 m（每个输出行一个数）和方向：y = m · (W + s·B A) x / norm(W + s·B A)。LoRA 更新方向，幅度单独训练。",
            },
            formula: "Σ over adapted projections r × (in + out) + out",
            pros: Text {
                en: "Often closer to full fine-tuning than LoRA at the same rank; mergeable.",
                zh: "同等秩下通常比 LoRA 更接近全参数微调；可合并。",
            },
            cons: Text {
                en: "The weight norm per step costs time and memory.",
                zh: "每步计算权重范数，耗费时间和内存。",
            },
            choose: Text {
                en: "When LoRA at a small rank falls short of full fine-tuning.",
                zh: "当小秩 LoRA 达不到全参数微调的效果时。",
            },
            trained: Trained {
                low_rank: Some("m, B·A"),
                ..Trained::default()
            },
        },
        Page {
            kind: "adalora",
            mechanism: Text {
                en: "AdaLoRA writes each update in SVD form P Λ Q and scores every singular triplet by the sensitivity of the loss to it. A schedule lowers the total rank budget; the least important triplets are masked, so rank moves to the matrices that matter (watch the heat map).",
                zh: "AdaLoRA 把更新写成 SVD 形式 P Λ Q，并按损失对每个奇异三元组的敏感度打分。预算按计划逐步减少，最不重要的三元组被屏蔽，秩流向更重要的矩阵（见热力图）。",
            },
            formula: "Σ over adapted projections r₀ × (in + out + 1)",
            pros: Text {
                en: "Spends a fixed rank budget where it helps most; shows which layers matter.",
                zh: "把固定的秩预算用在最需要的地方；显示哪些层重要。",
            },
            cons: Text {
                en: "More hyper-parameters (initial and target rank, schedule); importance bookkeeping each step.",
                zh: "超参数更多（初始秩、目标秩、调度）；每步都要更新重要性。",
            },
            choose: Text {
                en: "A tight parameter budget, or to learn where adaptation is needed.",
                zh: "参数预算紧张，或想了解哪些位置需要适配时。",
            },
            trained: Trained {
                low_rank: Some("P·Λ·Q"),
                ..Trained::default()
            },
        },
        Page {
            kind: "ia3",
            mechanism: Text {
                en: "IA3 learns one scaling vector per adapted module: it multiplies the keys, the values and the input of the feed-forward down projection element-wise. The vectors start at 1, so training starts from the model itself.",
                zh: "IA3 为每个被适配模块学习一个缩放向量：逐元素缩放键、值和前馈下投影的输入。向量初始为 1，因此从原模型开始训练。",
            },
            formula: "L × (d_k + d_v + d_ff)",
            pros: Text {
                en: "The fewest parameters of all; mergeable; tiny files.",
                zh: "参数最少；可合并；文件极小。",
            },
            cons: Text {
                en: "Low capacity: it can only rescale, never add new directions.",
                zh: "容量低：只能缩放，不能引入新的方向。",
            },
            choose: Text {
                en: "Many tasks on one model, few examples, or the smallest adapters.",
                zh: "一个模型服务多个任务、样本很少，或需要最小的适配器时。",
            },
            trained: Trained {
                rescale: true,
                ..Trained::default()
            },
        },
        Page {
            kind: "bitfit",
            mechanism: Text {
                en: "BitFit trains only the bias terms (and here, optionally, the norm gains); every weight matrix stays frozen. On models without biases (LLaMA) zero biases are added first.",
                zh: "BitFit 只训练偏置项（此处还可选训练归一化增益），所有权重矩阵保持冻结。对没有偏置的模型（LLaMA），先添加初值为零的偏置。",
            },
            formula: "Σ biases (+ norm gains)",
            pros: Text {
                en: "Very few parameters; no new structure.",
                zh: "参数很少；不改变结构。",
            },
            cons: Text {
                en: "Shifts activations only; weaker than LoRA on harder tasks.",
                zh: "只能平移激活；在较难任务上弱于 LoRA。",
            },
            choose: Text {
                en: "A minimal baseline, or classification on encoder models.",
                zh: "作为最小基线，或编码器模型上的分类任务。",
            },
            trained: Trained {
                biases: true,
                norms: true,
                ..Trained::default()
            },
        },
        Page {
            kind: "adapter",
            mechanism: Text {
                en: "A small bottleneck network (down to m, nonlinearity, up) is inserted after the attention and after the MLP of every block, with a skip connection: h + up(f(down(h))). Up starts at zero, so the model starts unchanged (Houlsby; Pfeiffer puts one after the MLP only).",
                zh: "在每个块的注意力和 MLP 之后插入一个小的瓶颈网络（降到 m 维、非线性、再升维），带残差连接：h + up(f(down(h)))。升维矩阵初始为零，模型从原样开始（Houlsby；Pfeiffer 只在 MLP 后插入）。",
            },
            formula: "L × k × (2 d m + m + d), k = 2 (Houlsby) or 1",
            pros: Text {
                en: "Sizeable capacity at few parameters; one adapter per task.",
                zh: "以较少参数获得可观容量；每个任务一个适配器。",
            },
            cons: Text {
                en: "Extra layers at inference (cannot be merged); adds latency.",
                zh: "推理时多出网络层（不能合并），增加延迟。",
            },
            choose: Text {
                en: "Multi-task setups where adapters are swapped, and latency is not critical.",
                zh: "需要切换适配器的多任务场景，且对延迟要求不高时。",
            },
            trained: Trained {
                adapters: true,
                ..Trained::default()
            },
        },
        Page {
            kind: "prompt-tuning",
            mechanism: Text {
                en: "n trainable vectors (a soft prompt) are put before the input embeddings; the whole model is frozen. They can start from the embeddings of a text such as the task's instruction.",
                zh: "在输入嵌入前放置 n 个可训练向量（软提示），整个模型冻结。可以用一段文本（如任务说明）的嵌入来初始化。",
            },
            formula: "n × d",
            pros: Text {
                en: "Tiny; one frozen model serves every task; nothing in the model changes.",
                zh: "极小；一个冻结模型服务所有任务；模型本身不变。",
            },
            cons: Text {
                en: "Weak on small models; slow to converge; uses context positions.",
                zh: "在小模型上效果弱；收敛慢；占用上下文位置。",
            },
            choose: Text {
                en: "Large models and many tasks; text initialisation helps a lot.",
                zh: "大模型、多任务；用文本初始化帮助很大。",
            },
            trained: Trained {
                prompt: Some(""),
                ..Trained::default()
            },
        },
        Page {
            kind: "p-tuning",
            mechanism: Text {
                en: "Like prompt tuning, but the virtual tokens come out of a prompt encoder (a bidirectional LSTM and an MLP, or an MLP only) that runs over trainable embeddings; the encoder couples the tokens, which makes optimisation steadier. Only the encoder's output is kept for inference.",
                zh: "与提示微调相似，但虚拟 token 由提示编码器（双向 LSTM 加 MLP，或仅 MLP）从可训练嵌入生成；编码器让各 token 相互关联，优化更稳定。推理时只保留编码器的输出。",
            },
            formula: "n × d + encoder (LSTM/MLP)",
            pros: Text {
                en: "Steadier than plain prompt tuning; still a frozen model.",
                zh: "比普通提示微调更稳定；模型仍冻结。",
            },
            cons: Text {
                en: "The encoder adds parameters during training; prompts only at the input.",
                zh: "训练时编码器带来额外参数；提示只在输入层。",
            },
            choose: Text {
                en: "Prompt-based adaptation where plain prompt tuning is unstable.",
                zh: "普通提示微调不稳定时的基于提示的适配。",
            },
            trained: Trained {
                prompt: Some("LSTM + MLP"),
                ..Trained::default()
            },
        },
        Page {
            kind: "prefix-tuning",
            mechanism: Text {
                en: "Every layer's attention gets n extra key/value pairs (a prefix) that every token attends to. During training they are produced by an MLP from a small embedding (reparameterisation), which keeps optimisation stable; the MLP's output is what is saved.",
                zh: "每一层注意力都多出 n 对键/值（前缀），所有 token 都会关注它们。训练时由一个 MLP 从小嵌入生成（重参数化），使优化稳定；保存的是 MLP 的输出。",
            },
            formula: "n × d + MLP(d → h → 2 L d_kv)",
            pros: Text {
                en: "Steers every layer, not only the input; frozen model.",
                zh: "影响每一层，而不仅是输入；模型冻结。",
            },
            cons: Text {
                en: "Attention over extra positions costs time; the MLP is large during training.",
                zh: "额外位置的注意力耗时；训练时 MLP 较大。",
            },
            choose: Text {
                en: "Generation tasks on a shared frozen model.",
                zh: "在共享冻结模型上的生成任务。",
            },
            trained: Trained {
                kv_prefix: Some("MLP"),
                ..Trained::default()
            },
        },
        Page {
            kind: "p-tuning-v2",
            mechanism: Text {
                en: "Deep prompts: trainable key/value prefixes in every layer, trained directly without a reparameterisation MLP. Here they can start from the model's own keys and values of a text.",
                zh: "深度提示：每一层都有可训练的键/值前缀，直接训练，不用重参数化 MLP。此处可以用模型对一段文本计算出的键和值来初始化。",
            },
            formula: "n × 2 L d_kv",
            pros: Text {
                en: "Matches fine-tuning on many tasks with 0.1–3 % of the parameters; simple.",
                zh: "在许多任务上以 0.1–3% 的参数达到微调水平；简单。",
            },
            cons: Text {
                en: "Sensitive to learning rate and initialisation; extra attention positions.",
                zh: "对学习率和初始化敏感；额外的注意力位置。",
            },
            choose: Text {
                en: "Understanding tasks and small models where input-only prompts are too weak.",
                zh: "理解类任务，以及只在输入加提示太弱的小模型。",
            },
            trained: Trained {
                kv_prefix: Some(""),
                ..Trained::default()
            },
        },
    ]
}

/// The preset file that demonstrates a method, embedded so the page works from anywhere.
pub fn preset_text(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "full" => include_str!("../../presets/full.toml"),
        "freeze" => include_str!("../../presets/freeze.toml"),
        "lora" => include_str!("../../presets/lora.toml"),
        "dora" => include_str!("../../presets/dora.toml"),
        "adalora" => include_str!("../../presets/adalora.toml"),
        "ia3" => include_str!("../../presets/ia3.toml"),
        "bitfit" => include_str!("../../presets/bitfit.toml"),
        "adapter" => include_str!("../../presets/adapter.toml"),
        "prompt-tuning" => include_str!("../../presets/prompt-tuning.toml"),
        "p-tuning" => include_str!("../../presets/p-tuning.toml"),
        "prefix-tuning" => include_str!("../../presets/prefix-tuning.toml"),
        "p-tuning-v2" => include_str!("../../presets/p-tuning-v2.toml"),
        _ => return None,
    })
}

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let l = lang(ui.ctx());
    let pages = pages();
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
        });
    let Some(page) = pages.iter().find(|p| p.kind == app.learn_page) else {
        return;
    };
    let method = MethodConfig::all_defaults()
        .into_iter()
        .find(|m| m.kind() == page.kind)
        .expect("a page per method");
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.heading(tr(ui, method.display_name()));
        ui.label(page.mechanism.get(l));
        ui.add_space(6.0);
        ui.horizontal_top(|ui| {
            diagram(ui, &page.trained);
            ui.vertical(|ui| {
                ui.set_max_width(420.0);
                ui.strong(tr(ui, "Trainable parameters"));
                ui.monospace(page.formula);
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
                ui.add_space(6.0);
                if ui
                    .button(tr(ui, "Use its preset"))
                    .on_hover_text(format!("presets/{}.toml", page.kind))
                    .clicked()
                {
                    actions.push(Action::UsePreset(page.kind.to_string()));
                }
            });
        });
        published_results(ui, &method);
        measured_runs(app, ui, page.kind);
    });
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
                    ui.label(p.variant);
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

const TRAINED: Color32 = Color32::from_rgb(230, 126, 34);

/// A decoder block drawn top to bottom, trained parts filled in orange.
fn diagram(ui: &mut egui::Ui, t: &Trained) {
    let (response, painter) = ui.allocate_painter(vec2(360.0, 470.0), egui::Sense::hover());
    let r = response.rect;
    let dark = ui.visuals().dark_mode;
    let frozen_fill = if dark {
        Color32::from_gray(60)
    } else {
        Color32::from_gray(215)
    };
    let text_color = ui.visuals().text_color();
    let font = egui::FontId::proportional(12.0);
    let small = egui::FontId::proportional(10.5);
    let frozen_label = tr(ui, "frozen");
    let trained_label = tr(ui, "trained");
    let boxed = |rect: Rect, label: &str, trained: bool| {
        let fill = if trained { TRAINED } else { frozen_fill };
        painter.rect_filled(rect, 4.0, fill);
        let color = if trained { Color32::BLACK } else { text_color };
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            label,
            font.clone(),
            color,
        );
    };
    let arrow = |from: Pos2, to: Pos2| {
        painter.arrow(from, to - from, Stroke::new(1.2, text_color));
    };
    // A sublayer's outline with its name in the corner.
    let group = |rect: Rect, label: &str| {
        painter.rect_stroke(
            rect,
            4.0,
            Stroke::new(1.0, text_color),
            egui::StrokeKind::Inside,
        );
        painter.text(
            pos2(rect.left() + 4.0, rect.top() + 2.0),
            egui::Align2::LEFT_TOP,
            label,
            small.clone(),
            text_color,
        );
    };
    // IA3's learned vector "l" beside the projection it rescales.
    let scaling_vector = |at: Pos2| {
        let s = Rect::from_min_size(at, vec2(20.0, 12.0));
        painter.rect_filled(s, 2.0, TRAINED);
        painter.text(
            s.center(),
            egui::Align2::CENTER_CENTER,
            "l",
            small.clone(),
            Color32::BLACK,
        );
    };
    let cx = r.left() + 190.0;
    let w = 180.0;
    let row = |y: f32, h: f32| Rect::from_center_size(pos2(cx, r.top() + y), vec2(w, h));

    // Input: tokens, embedding, and the soft prompt beside it.
    let tokens = row(14.0, 20.0);
    painter.text(
        tokens.center(),
        egui::Align2::CENTER_CENTER,
        tr(ui, "input tokens"),
        font.clone(),
        text_color,
    );
    let embed = row(44.0, 24.0);
    boxed(embed, tr(ui, "embedding"), t.embedding);
    if let Some(encoder) = t.prompt {
        let p = Rect::from_min_size(pos2(r.left() + 4.0, embed.top()), vec2(92.0, 24.0));
        boxed(p, tr(ui, "soft prompt"), true);
        if !encoder.is_empty() {
            let e = Rect::from_min_size(pos2(r.left() + 4.0, embed.top() - 30.0), vec2(92.0, 22.0));
            boxed(e, encoder, true);
            arrow(pos2(e.center().x, e.bottom()), pos2(p.center().x, p.top()));
        }
    }
    arrow(pos2(cx, tokens.bottom()), pos2(cx, embed.top()));

    // The block, repeated L times; its frame is drawn once its contents are placed.
    let block_top = r.top() + 72.0;
    arrow(pos2(cx, embed.bottom()), pos2(cx, r.top() + 88.0));
    let norm1 = row(100.0, 20.0);
    boxed(norm1, "RMSNorm", t.norms);
    // Attention: q k v o, each a small box; side branches beside q and v.
    let attn = row(150.0, 64.0);
    group(attn, tr(ui, "attention"));
    let proj_w = 36.0;
    let proj = |i: usize, y: f32| {
        Rect::from_min_size(
            pos2(attn.left() + 8.0 + i as f32 * (proj_w + 6.0), y),
            vec2(proj_w, 20.0),
        )
    };
    for (i, name) in ["q", "k", "v", "o"].iter().enumerate() {
        let b = proj(i, attn.top() + 18.0);
        boxed(b, name, t.weights || (t.biases && i < 3));
        if t.rescale && (*name == "k" || *name == "v") {
            scaling_vector(pos2(b.left() + 8.0, b.bottom() + 2.0));
        }
    }
    if let Some(label) = t.low_rank {
        // Beside the block, one branch each for q (straight in) and v (along a lane under
        // q and k, then up into v).
        let branch = Stroke::new(1.4, TRAINED);
        let q = proj(0, attn.top() + 18.0);
        let bq = Rect::from_min_size(pos2(r.left() + 2.0, q.center().y - 12.0), vec2(54.0, 24.0));
        boxed(bq, label, true);
        painter.line_segment(
            [pos2(bq.right(), q.center().y), pos2(q.left(), q.center().y)],
            branch,
        );
        let v = proj(2, attn.top() + 18.0);
        let bv = Rect::from_min_size(pos2(r.left() + 2.0, v.bottom() + 2.0), vec2(54.0, 24.0));
        boxed(bv, label, true);
        let from = pos2(bv.right(), bv.center().y);
        painter.line_segment([from, pos2(v.center().x, from.y)], branch);
        painter.line_segment(
            [pos2(v.center().x, from.y), pos2(v.center().x, v.bottom())],
            branch,
        );
    }
    if let Some(reparam) = t.kv_prefix {
        let b = Rect::from_min_size(pos2(r.left() + 2.0, attn.top() + 4.0), vec2(54.0, 22.0));
        boxed(b, tr(ui, "K/V prefix"), true);
        painter.line_segment(
            [
                pos2(b.right(), b.center().y),
                pos2(proj(1, 0.0).left(), attn.top() + 28.0),
            ],
            Stroke::new(1.2, TRAINED),
        );
        if !reparam.is_empty() {
            let m = Rect::from_min_size(pos2(r.left() + 2.0, b.top() - 26.0), vec2(54.0, 20.0));
            boxed(m, reparam, true);
            arrow(pos2(m.center().x, m.bottom()), pos2(b.center().x, b.top()));
        }
    }
    arrow(pos2(cx, norm1.bottom()), pos2(cx, attn.top()));
    // After a sublayer: its adapter (if the method has one) and the residual sum.
    let adapter_label = tr(ui, "adapter: down, f, up (+ skip)");
    let adapter_and_add = |below: f32| -> Rect {
        let mut y = below + 8.0;
        if t.adapters {
            let a = Rect::from_min_size(pos2(cx - w / 2.0, y), vec2(w, 20.0));
            boxed(a, adapter_label, true);
            y = a.bottom() + 6.0;
        }
        let add = Rect::from_center_size(pos2(cx, y + 9.0), vec2(18.0, 18.0));
        painter.circle_stroke(add.center(), 9.0, Stroke::new(1.0, text_color));
        painter.text(
            add.center(),
            egui::Align2::CENTER_CENTER,
            "+",
            font.clone(),
            text_color,
        );
        add
    };
    let add1 = adapter_and_add(attn.bottom());
    let norm2 = Rect::from_min_size(pos2(cx - w / 2.0, add1.bottom() + 10.0), vec2(w, 20.0));
    boxed(norm2, "RMSNorm", t.norms);
    arrow(pos2(cx, add1.bottom()), pos2(cx, norm2.top()));
    let mlp = Rect::from_min_size(pos2(cx - w / 2.0, norm2.bottom() + 12.0), vec2(w, 50.0));
    group(mlp, "MLP");
    for (i, name) in ["gate", "up", "down"].iter().enumerate() {
        let b = Rect::from_min_size(
            pos2(mlp.left() + 8.0 + i as f32 * 56.0, mlp.top() + 18.0),
            vec2(50.0, 20.0),
        );
        boxed(b, name, t.weights);
        if t.rescale && *name == "down" {
            scaling_vector(pos2(b.left() - 4.0, b.top() - 14.0));
        }
    }
    arrow(pos2(cx, norm2.bottom()), pos2(cx, mlp.top()));
    let add2 = adapter_and_add(mlp.bottom());
    let block = Rect::from_min_max(
        pos2(r.left() + 60.0, block_top),
        pos2(r.right() - 4.0, add2.bottom() + 10.0),
    );
    painter.rect_stroke(
        block,
        6.0,
        Stroke::new(1.0, text_color),
        egui::StrokeKind::Inside,
    );
    painter.text(
        pos2(block.right() - 6.0, block.top() + 4.0),
        egui::Align2::RIGHT_TOP,
        tr(ui, "× L blocks"),
        small.clone(),
        text_color,
    );

    // Output.
    let final_norm = Rect::from_min_size(pos2(cx - w / 2.0, block.bottom() + 14.0), vec2(w, 20.0));
    boxed(final_norm, "RMSNorm", t.norms);
    arrow(pos2(cx, block.bottom()), pos2(cx, final_norm.top()));
    let head = Rect::from_min_size(
        pos2(cx - w / 2.0, final_norm.bottom() + 12.0),
        vec2(w, 22.0),
    );
    boxed(head, tr(ui, "LM head"), t.head);
    arrow(pos2(cx, final_norm.bottom()), pos2(cx, head.top()));

    // Legend.
    let legend = |i: usize, fill: Color32, label: &str| {
        let b = Rect::from_min_size(
            pos2(r.left() + 4.0, r.bottom() - 44.0 + i as f32 * 18.0),
            Vec2::splat(12.0),
        );
        painter.rect_filled(b, 2.0, fill);
        painter.text(
            pos2(b.right() + 4.0, b.center().y),
            egui::Align2::LEFT_CENTER,
            label,
            small.clone(),
            text_color,
        );
    };
    legend(0, TRAINED, trained_label);
    legend(1, frozen_fill, frozen_label);
}
