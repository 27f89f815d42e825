//! English and 简体中文. English strings are the keys; a string without a translation shows
//! in English. The language lives in egui's context (each window, or test harness, has its
//! own) and is saved with the app's other settings.
//!
//! Chinese glyphs come from a subset of Droid Sans Fallback (Apache-2.0) bundled under
//! `assets/fonts/`: every character of this table and of the Learn pages, plus the 3 755
//! most common hanzi (GB 2312 level 1) so Chinese prompts and answers render too.
//! `scripts/subset-cjk-font.sh` rebuilds it.

use eframe::egui;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Zh];

    /// The language's own name, as the switch shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Zh => "简体中文",
        }
    }
}

fn lang_id() -> egui::Id {
    egui::Id::unique("peft-workbench-lang")
}

pub fn lang(ctx: &egui::Context) -> Lang {
    ctx.data(|d| d.get_temp(lang_id())).unwrap_or_default()
}

pub fn set_lang(ctx: &egui::Context, l: Lang) {
    ctx.data_mut(|d| d.insert_temp(lang_id(), l));
}

/// `en` in the window's language.
pub fn tr<'a>(ui: &egui::Ui, en: &'a str) -> &'a str {
    tr_ctx(ui.ctx(), en)
}

pub fn tr_ctx<'a>(ctx: &egui::Context, en: &'a str) -> &'a str {
    match lang(ctx) {
        Lang::En => en,
        Lang::Zh => zh(en).unwrap_or(en),
    }
}

/// `template` (an English key with `{}` holes) in `lang`, the holes filled in order.
pub fn fill(lang: Lang, template: &str, args: &[&dyn std::fmt::Display]) -> String {
    let t = match lang {
        Lang::En => template,
        Lang::Zh => zh(template).unwrap_or(template),
    };
    let mut out = String::with_capacity(t.len() + 16);
    let mut args = args.iter();
    let mut rest = t;
    while let Some(i) = rest.find("{}") {
        out.push_str(&rest[..i]);
        if let Some(a) = args.next() {
            out.push_str(&a.to_string());
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

/// `fill` in the window's language.
pub fn trf(ui: &egui::Ui, template: &str, args: &[&dyn std::fmt::Display]) -> String {
    fill(lang(ui.ctx()), template, args)
}

/// The Chinese of an English UI string, if the table has it.
pub fn zh(en: &str) -> Option<&'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE
        .get_or_init(|| ZH.iter().copied().collect())
        .get(en)
        .copied()
}

/// Adds the bundled CJK font after egui's own, so Latin text keeps its look and Chinese
/// falls back to it.
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert(
        "cjk".into(),
        std::sync::Arc::new(egui::FontData::from_static(include_bytes!(
            "../../assets/fonts/DroidSansFallback-subset.ttf"
        ))),
    );
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        fonts.families.entry(family).or_default().push("cjk".into());
    }
    ctx.set_fonts(fonts);
}

pub const ZH: &[(&str, &str)] = &[
    // Top bar and views
    ("Train", "训练"),
    ("Learn", "学习"),
    ("Language", "语言"),
    ("Theme", "主题"),
    ("Dark", "深色"),
    ("Light", "浅色"),
    (
        "Ctrl+Enter: Start · Esc: Stop",
        "Ctrl+Enter：开始 · Esc：停止",
    ),
    // Model card and the method's size
    ("LLaMA-family decoder", "LLaMA 系列解码器"),
    ("GPT-2 decoder", "GPT-2 解码器"),
    (
        "BERT encoder with a classification head",
        "带分类头的 BERT 编码器",
    ),
    ("heads", "个注意力头"),
    ("key/value", "个键/值头"),
    ("parameters", "参数"),
    ("layers", "层"),
    ("hidden", "隐藏维度"),
    ("vocabulary", "词表"),
    ("context", "上下文"),
    (
        "Classifies {\"text\", \"label\"} data (e.g. builtin:sentiment-labels); its head trains under every method; metric: accuracy",
        "对 {\"text\", \"label\"} 数据分类（如 builtin:sentiment-labels）；分类头在任何方法下都参与训练；指标：准确率",
    ),
    ("Trains", "训练"),
    ("of the model's", "占模型总参数"),
    ("available", "可用"),
    (
        "Estimated training memory at batch",
        "预计训练内存，批大小 × 序列长度",
    ),
    ("Classify", "分类"),
    (
        "The diagram draws a LLaMA block. In this BERT encoder q/k/v are query/key/value, o is attention.output.dense, up/down are intermediate.dense/output.dense (no gate), norms are LayerNorms after each residual add, and a pooler and classifier replace the LM head.",
        "图中画的是 LLaMA 块。在这个 BERT 编码器中，q/k/v 对应 query/key/value，o 对应 attention.output.dense，up/down 对应 intermediate.dense/output.dense（没有 gate），归一化是每次残差相加之后的 LayerNorm，并由池化层和分类器代替语言模型头。",
    ),
    (
        "The diagram draws a LLaMA block. In this GPT-2 q/k/v are one fused c_attn projection, o is attn.c_proj, up/down are mlp.c_fc/mlp.c_proj (no gate), norms are LayerNorms, and positions are learned embeddings instead of rotations.",
        "图中画的是 LLaMA 块。在这个 GPT-2 中，q/k/v 是一个融合的 c_attn 投影，o 对应 attn.c_proj，up/down 对应 mlp.c_fc/mlp.c_proj（没有 gate），归一化是 LayerNorm，位置由学习到的嵌入表示而不是旋转。",
    ),
    ("{} rows written to {}", "已将 {} 行写入 {}"),
    ("cannot write the table: {}", "无法写入表格：{}"),
    (
        "presets/{}.toml loaded into the form",
        "已将 presets/{}.toml 载入表单",
    ),
    ("{} not queued: {}", "{} 未加入队列：{}"),
    (
        "{} runs queued, one per method, {} steps each",
        "已排队 {} 个运行，每种方法一个，各 {} 步",
    ),
    ("exported {} files to {}", "已导出 {} 个文件到 {}"),
    ("export failed: {}", "导出失败：{}"),
    ("merging into {}…", "正在合并到 {}…"),
    (
        "{} past runs read from {}",
        "已读入 {} 次过去的运行（来自 {}）",
    ),
    (
        "{} past runs read from {}; unreadable: {}",
        "已读入 {} 次过去的运行（来自 {}）；无法读取：{}",
    ),
    ("plots saved to {}", "曲线图已保存到 {}"),
    ("cannot save the plots: {}", "无法保存曲线图：{}"),
    (
        "merged {} projections; model written to {}",
        "已合并 {} 个投影；模型已写入 {}",
    ),
    ("merge failed: {}", "合并失败：{}"),
    ("{} runs moved to the trash", "{} 个运行已移到回收站"),
    (
        "{} runs moved to the trash; kept: {}",
        "{} 个运行已移到回收站；保留：{}",
    ),
    (
        "{} run folders removed from disk",
        "已从磁盘删除 {} 个运行文件夹",
    ),
    ("cannot empty the trash: {}", "无法清空回收站：{}"),
    (
        "{}: stop the run before deleting it",
        "{}：请先停止运行再删除",
    ),
    ("{}: {} is writing it", "{}：{} 正在写入它"),
    ("{} new runs found in {}", "发现 {} 个新运行（{}）"),
    ("Delete these {} runs?", "删除这 {} 个运行？"),
    (
        "Their folders go to the trash in the runs folder until it is emptied.",
        "它们的文件夹移到运行文件夹中的回收站，直到清空回收站。",
    ),
    ("Empty the trash?", "清空回收站？"),
    (
        "{} run folders are removed from disk for good.",
        "{} 个运行文件夹将从磁盘永久删除。",
    ),
    ("Empty trash", "清空回收站"),
    ("Delete the {} listed…", "删除列出的 {} 个……"),
    (
        "Move the listed runs' folders to the trash (asks first)",
        "把列出的运行文件夹移到回收站（会先询问）",
    ),
    ("Empty trash ({})…", "清空回收站（{}）……"),
    ("Delete {} and its folder?", "删除 {} 及其文件夹？"),
    ("Update scaled by {}", "更新缩放系数 {}"),
    ("trainable {} of {} ({} %)", "可训练 {} / {}（{} %）"),
    (
        "step {} / {} · {} tokens/s{}",
        "第 {} / {} 步 · {} 词元/秒{}",
    ),
    (
        "{}: AdaLoRA rank per matrix at step {} (budget {} of {})",
        "{}：第 {} 步时 AdaLoRA 各矩阵的秩（预算 {} / {}）",
    ),
    ("loading the model and data:", "正在加载模型和数据："),
    (
        "Class probabilities from the base model (its head untrained), the chosen runs' adapters and any loaded adapter",
        "基础模型（分类头未训练）、所选运行的适配器和已加载适配器给出的各类概率",
    ),
    // Side panel
    ("Run", "运行"),
    ("Start", "开始"),
    (
        "Queue this run; it starts when the runs before it end",
        "将此运行加入队列；前面的运行结束后开始",
    ),
    ("Compare all methods", "比较所有方法"),
    (
        "Queue one run per method on this model, data and steps, each with its best rate from the sweep on the built-in reviews task (its usual rate elsewhere); the run labels show the rate",
        "在当前模型、数据和步数上为每种方法排队一次运行：在内置评论任务上各用扫描得到的最佳学习率（其他任务用常用学习率）；运行名称中显示学习率",
    ),
    ("Stop", "停止"),
    (
        "Stop the running run after its current step; it is saved",
        "在当前步结束后停止正在进行的运行；它会被保存",
    ),
    ("Model", "模型"),
    ("Built-in (LLaMA 7.8 M)", "内置（LLaMA 7.8 M）"),
    ("Open model folder…", "打开模型文件夹…"),
    (
        "A Hugging Face folder: config.json, *.safetensors, tokenizer.json",
        "Hugging Face 模型文件夹：config.json、*.safetensors、tokenizer.json",
    ),
    ("Open GGUF…", "打开 GGUF…"),
    (
        "A LLaMA-family .gguf file; its weights are dequantised to f32 for training",
        "LLaMA 系列的 .gguf 文件；训练时权重反量化为 f32",
    ),
    ("Dataset", "数据集"),
    ("Open file…", "打开文件…"),
    ("Method", "方法"),
    ("Steps", "步数"),
    ("Optimizer steps the run takes", "本次运行的优化步数"),
    ("Batch size", "批大小"),
    ("Examples per optimizer step", "每个优化步的样本数"),
    ("Max sequence length", "最大序列长度"),
    (
        "Longer examples are cut to this many tokens",
        "更长的样本会被截断到这么多 token",
    ),
    ("Evaluate every", "评估间隔"),
    (
        "Steps between evaluations on held-out examples",
        "在留出样本上两次评估之间的步数",
    ),
    ("Checkpoint every", "检查点间隔"),
    ("Group by length", "按长度分批"),
    (
        "Batch examples of similar length together: less padding, so faster steps",
        "把长度相近的样本放进同一批：填充更少，每步更快",
    ),
    (
        "Steps between checkpoints a stopped or crashed run resumes from (0: only when stopped)",
        "两次检查点之间的步数，停止或崩溃的运行可从检查点恢复（0：仅在停止时保存）",
    ),
    ("Learning rate", "学习率"),
    ("Peak learning rate of AdamW", "AdamW 的峰值学习率"),
    ("Weight decay", "权重衰减"),
    ("AdamW's decoupled weight decay", "AdamW 的解耦权重衰减"),
    ("Warm-up steps", "预热步数"),
    ("Warm-up", "预热"),
    ("Published results", "已发表的结果"),
    (
        "Hugging Face PEFT publishes no numbers for this method (it is not one of PEFT's methods, or PEFT's comparisons leave it out).",
        "Hugging Face PEFT 没有发表这个方法的数字（它不是 PEFT 的方法，或 PEFT 的比较没有包括它）。",
    ),
    (
        "Hugging Face PEFT, method_comparison/MetaMathQA: Llama-3.2-3B, 5,000 steps, GSM8K test accuracy, one L40S",
        "Hugging Face PEFT，method_comparison/MetaMathQA：Llama-3.2-3B，5000 步，GSM8K 测试准确率，一块 L40S",
    ),
    (
        "Hugging Face PEFT, sequence-classification examples: roberta-large on MRPC, accuracy",
        "Hugging Face PEFT，序列分类示例：roberta-large 在 MRPC 上的准确率",
    ),
    ("Variant", "变体"),
    ("Accuracy", "准确率"),
    ("Train time", "训练时间"),
    (
        "Other models and tasks than yours: compare the ordering of methods, not the numbers.",
        "模型和任务与你的不同：比较方法的排序，而不是数字本身。",
    ),
    ("Trade-offs: metric against cost", "权衡：指标与代价"),
    (
        "Each finished run appears here as one point: its metric against what it cost.",
        "每个完成的运行在这里是一个点：它的指标与它的代价。",
    ),
    ("y: final", "纵轴：最终"),
    ("Trainable parameters (log scale)", "可训练参数（对数刻度）"),
    ("Peak memory (MB)", "峰值内存（MB）"),
    ("Wall time (s)", "用时（秒）"),
    ("Final phase", "最终阶段"),
    (
        "Share of the run at the full budget before ranks are pruned (tinit)",
        "剪枝开始前以全部预算训练的步数占比（tinit）",
    ),
    (
        "Share of the run at the end trained with the allocation fixed (tfinal)",
        "最后以固定分配训练的步数占比（tfinal）",
    ),
    (" steps", " 步"),
    ("Follow run length", "随运行长度"),
    (
        "Use a share of the run's steps instead of a fixed count",
        "按运行步数的比例，而不是固定步数",
    ),
    (
        "Steps over which the learning rate rises from 0",
        "学习率从 0 上升所用的步数",
    ),
    ("Schedule", "调度"),
    ("Seed", "随机种子"),
    (
        "Seeds data order and the method's initialisation",
        "决定数据顺序和方法的初始化",
    ),
    ("Device", "设备"),
    ("Where the run trains", "训练在哪个设备上运行"),
    ("Precision", "精度"),
    (
        "bf16/f16: frozen weights stored and multiplied in half precision, trained tensors kept in f32",
        "bf16/f16：冻结的权重以半精度存储并做矩阵乘法，训练的张量保持 f32",
    ),
    (
        "No CUDA device found: training runs on the CPU in f32.",
        "没有找到 CUDA 设备：训练在 CPU 上以 f32 运行。",
    ),
    (
        "CPU only, in f32: this build has no CUDA (scripts/build-cuda.sh builds one).",
        "仅 CPU，f32：这个版本没有 CUDA（用 scripts/build-cuda.sh 构建）。",
    ),
    ("On the CPU training is f32.", "在 CPU 上训练使用 f32。"),
    ("{} is not available here.", "{} 在这台机器上不可用。"),
    ("Use the CPU", "改用 CPU"),
    (
        "{} is not available here: choose the CPU or another device.",
        "{} 在这台机器上不可用：请选择 CPU 或其他设备。",
    ),
    // Central view
    ("Playground", "试验场"),
    (
        "Pick a method and press Start. Curves appear here as the run trains.",
        "选择一种方法并点击开始。训练时曲线会显示在这里。",
    ),
    ("No run is training.", "没有正在训练的运行。"),
    ("Smoothing", "平滑"),
    (
        "Training loss (solid) and evaluation loss (dashed)",
        "训练损失（实线）和评估损失（虚线）",
    ),
    ("Evaluation metric", "评估指标"),
    (
        "Use learning rate {} (this method's rate for this task)",
        "使用学习率 {}（此方法在该任务上的学习率）",
    ),
    (
        "The rate the learning-rate sweep chose for this method on the built-in reviews task, or its usual rate elsewhere",
        "学习率扫描为此方法在内置评论任务上选出的学习率；其他任务上为其常用学习率",
    ),
    ("chance (majority label) {}", "随机水平（多数标签）{}"),
    (
        "{}: not above chance ({} ± {} on {} examples, 95 %): not a result",
        "{}：未高于随机水平（{} ± {}，{} 个样本，95 %）：不算结果",
    ),
    (
        "{}: chance is {} ± {} on {} examples (95 %)",
        "{}：随机水平为 {} ± {}（{} 个样本，95 %）",
    ),
    ("Runs", "运行记录"),
    ("x axis", "横轴"),
    ("step", "步数"),
    ("tokens seen", "已见 token"),
    ("wall time (s)", "用时（秒）"),
    ("log-scale loss", "对数损失"),
    ("Save plots (PNG)…", "保存曲线图（PNG）…"),
    (
        "Save the two plots as one PNG image",
        "把两个图保存为一张 PNG 图片",
    ),
    ("Export table (CSV)…", "导出表格（CSV）…"),
    (
        "The finished runs' numbers as a CSV file, in the table's order",
        "按表格顺序把已完成运行的数据导出为 CSV 文件",
    ),
    (
        "Sort by this column (again: reverse)",
        "按此列排序（再点一次反向）",
    ),
    ("Adapter size", "适配器大小"),
    ("Peak memory", "峰值内存"),
    ("Status", "状态"),
    ("Trainable", "可训练参数"),
    ("Eval loss", "评估损失"),
    ("Metric", "指标"),
    ("Tokens/s", "Token/秒"),
    ("Time", "用时"),
    ("queued", "排队中"),
    ("running", "训练中"),
    ("finished", "已完成"),
    ("stopped", "已停止"),
    ("interrupted", "已中断"),
    ("failed", "失败"),
    ("Resume", "继续"),
    (
        "Continue training from the run's last checkpoint to its last step",
        "从最近的检查点继续训练到最后一步",
    ),
    ("Export…", "导出…"),
    ("Merge…", "合并…"),
    (
        "Fold the adapter into the base weights and save a Hugging Face model folder",
        "把适配器合并进基础权重，并保存为 Hugging Face 模型文件夹",
    ),
    ("Delete", "删除"),
    ("Delete run?", "删除运行？"),
    ("Delete run", "删除运行"),
    ("Cancel", "取消"),
    ("Export the adapter to", "把适配器导出到"),
    ("Write the merged model to", "把合并后的模型写到"),
    ("Write the table (CSV) to", "把表格（CSV）写到"),
    ("Save the plots (PNG) to", "把曲线图（PNG）保存到"),
    ("Model folder", "模型文件夹"),
    ("GGUF file", "GGUF 文件"),
    ("Dataset file", "数据集文件"),
    ("Adapter folder", "适配器文件夹"),
    ("Export", "导出"),
    ("Merge", "合并"),
    ("Save", "保存"),
    ("Open", "打开"),
    ("Browse…", "选择…"),
    (
        "Choose with the system's file dialog",
        "用系统的文件对话框选择",
    ),
    ("a path on this computer", "本机上的路径"),
    ("Type a path first.", "请先输入路径。"),
    (
        "{} is a folder; name a file in it.",
        "{} 是文件夹；请写出其中的文件名。",
    ),
    ("There is no file {}.", "没有文件 {}。"),
    (
        "{} already holds files; name a new folder.",
        "{} 里已有文件；请写一个新的文件夹。",
    ),
    ("There is no folder {}.", "没有文件夹 {}。"),
    (
        "The system's file dialog gave no path (it was cancelled, or none can open here: no desktop portal or zenity). Type the path above.",
        "系统文件对话框没有给出路径（被取消了，或者这里打不开：没有桌面门户或 zenity）。请在上面输入路径。",
    ),
    (
        "Export, merge or delete this run",
        "导出、合并或删除这次运行",
    ),
    (
        "The workbench's highest resident memory while this run trained (the window included; counted afresh for each run). Sort by this column (again: reverse)",
        "这次运行训练期间工作台的最高常驻内存（含窗口本身；每次运行重新计数）。按此列排序（再点：倒序）",
    ),
    ("model: {}", "模型：{}"),
    ("Full fine-tuning", "全参数微调"),
    ("base model", "基础模型"),
    ("layer {}", "第 {} 层"),
    ("rsLoRA scaling (α/√r)", "rsLoRA 缩放（α/√r）"),
    ("cosine", "余弦 cosine"),
    ("linear", "线性 linear"),
    ("constant", "恒定 constant"),
    (
        "Runs that answer ({} of {}, best metric first)",
        "参与回答的运行（{} / {}，指标最好的在前）",
    ),
    (
        "(only spaces and line breaks: {} characters)",
        "（只有空格和换行：{} 个字符）",
    ),
    (
        "(no text: the first token it chose was the end of the sequence)",
        "（没有文字：它选的第一个 token 就是序列结束符）",
    ),
    (
        "Many runs: the table below is the legend (names in their curves' colours); click a name to pick its curves out.",
        "运行较多：下面的表格就是图例（名字与曲线同色）；点一个名字可突出它的曲线。",
    ),
    (
        "Pick out this run's curves (again: show all alike)",
        "突出这次运行的曲线（再点：全部同样显示）",
    ),
    (
        "comparison done: {} of {} runs finished; best {} ({} {})",
        "比较结束：{} / {} 次运行完成；最好的是 {}（{} {}）",
    ),
    (
        "comparison done: {} of {} runs finished",
        "比较结束：{} / {} 次运行完成",
    ),
    ("dataset: {}", "数据集：{}"),
    (
        "adapter {} loaded into the playground",
        "适配器 {} 已载入试验场",
    ),
    // Playground
    ("Prompt", "提示"),
    ("Chat template", "对话模板"),
    (
        "Wrap the prompt as a ChatML user message (instruct models such as SmolLM2)",
        "把提示包装成 ChatML 用户消息（适用于 SmolLM2 等指令模型）",
    ),
    ("Max tokens", "最大 token 数"),
    ("Temperature", "温度"),
    ("Top-p", "Top-p"),
    ("Generate", "生成"),
    (
        "Answer with the base model, the chosen runs' adapters and any loaded adapter",
        "用基础模型、所选运行的适配器以及已加载的适配器作答",
    ),
    ("Load adapter…", "加载适配器…"),
    (
        "An adapter folder exported here or by Hugging Face PEFT, for this model",
        "本应用或 Hugging Face PEFT 导出的适配器文件夹，须与此模型匹配",
    ),
    ("Clear adapters", "清除适配器"),
    ("Evaluate adapters", "评估适配器"),
    (
        "Eval loss and metric of each loaded adapter on the form's dataset",
        "在表单的数据集上计算每个已加载适配器的评估损失和指标",
    ),
    (
        "0 = greedy: always the most likely token",
        "0 = 贪心：总是选最可能的 token",
    ),
    (
        "Finished runs on this model answer beside the base model.",
        "此模型上已完成的运行会与基础模型并排作答。",
    ),
    // Method parameters
    ("Target modules", "目标模块"),
    ("Virtual tokens n", "虚拟 token 数 n"),
    (
        "Every weight of the model trains. The baseline to beat.",
        "模型的每个权重都参与训练。这是要超越的基线。",
    ),
    ("Trainable last blocks", "可训练的最后几个块"),
    (
        "How many of the last transformer blocks train; the rest stay frozen",
        "训练最后多少个 Transformer 块；其余保持冻结",
    ),
    ("Whole blocks", "整个块"),
    ("Also train", "同时训练"),
    ("Rank r", "秩 r"),
    (
        "Inner size of the update B·A: more rank, more capacity and parameters",
        "更新 B·A 的内部维度：秩越大，容量和参数越多",
    ),
    ("Alpha", "缩放 Alpha"),
    (
        "The update is scaled by alpha / r, so alpha sets its strength",
        "更新按 alpha / r 缩放，因此 alpha 决定其强度",
    ),
    ("Dropout", "丢弃率 Dropout"),
    (
        "Dropout on the input of the low-rank branch while training",
        "训练时低秩分支输入上的 dropout",
    ),
    (
        "Projections that get a low-rank update",
        "获得低秩更新的投影",
    ),
    ("Initial rank", "初始秩"),
    (
        "Rank every matrix starts with (init_r)",
        "每个矩阵的初始秩（init_r）",
    ),
    ("Target rank", "目标秩"),
    (
        "Average rank per matrix once the budget has shrunk (target_r)",
        "预算缩减后每个矩阵的平均秩（target_r）",
    ),
    ("Final steps", "最终步数"),
    ("Reallocate every", "重新分配间隔"),
    ("Orthogonality weight", "正交权重"),
    ("Bottleneck m", "瓶颈维度 m"),
    ("Width of the adapter's inner layer", "适配器内层的宽度"),
    ("Placement", "位置"),
    ("Nonlinearity", "非线性"),
    ("Initialise from", "初始化方式"),
    ("Init text", "初始化文本"),
    ("Encoder", "编码器"),
    ("Encoder hidden size", "编码器隐藏维度"),
    ("LSTM layers", "LSTM 层数"),
    ("LSTM dropout", "LSTM 丢弃率"),
    ("Reparameterise with an MLP", "用 MLP 重参数化"),
    ("Init text (optional)", "初始化文本（可选）"),
    ("Train norm gains", "训练归一化增益"),
    ("Add biases where missing", "为缺少偏置的投影添加偏置"),
    ("Feed-forward (input rescaled)", "前馈层（缩放输入）"),
    // Learn
    ("Methods", "方法"),
    ("Trainable parameters", "可训练参数"),
    (
        "On the loaded model, default settings",
        "在当前模型上（默认设置）",
    ),
    ("Pros", "优点"),
    ("Cons", "缺点"),
    ("When to choose it", "何时选择"),
    ("Forward pass", "前向计算"),
    ("Columns", "列"),
    ("Plot", "绘制"),
    (
        "Draw this run's curves on the plots",
        "在图上绘制这个运行的曲线",
    ),
    (
        "… and {} more: narrow the list with the search or an experiment",
        "……还有 {} 个：用搜索或实验缩小列表",
    ),
    ("Search", "搜索"),
    (
        "method, model, data, tag, note…",
        "方法、模型、数据、标签、备注……",
    ),
    ("all", "全部"),
    ("Started", "开始于"),
    ("any time", "任何时候"),
    ("last 24 hours", "最近 24 小时"),
    ("last 7 days", "最近 7 天"),
    ("last 30 days", "最近 30 天"),
    ("Tag", "标签"),
    ("Archived runs too ({})", "也列出已归档的运行（{}）"),
    ("Archive the {} listed", "归档列出的 {} 个"),
    ("Unarchive the {} listed", "取消归档列出的 {} 个"),
    (
        "Take the listed runs out of the lists and the plots; their folders stay \
         (tick \"Archived runs too\" to see them again)",
        "把列出的运行移出列表和图；它们的文件夹保留（勾选“也列出已归档的运行”可再次看到）",
    ),
    ("Trash ({})", "回收站（{}）"),
    ("Restore", "恢复"),
    (
        "Move the run back into the runs folder",
        "把这个运行移回运行文件夹",
    ),
    ("Tags and note", "标签和备注"),
    ("Tags and note…", "标签和备注……"),
    ("Archive", "归档"),
    ("Unarchive", "取消归档"),
    ("archived", "已归档"),
    (
        "Archived runs leave the lists and the plots; their folders stay",
        "已归档的运行不再出现在列表和图中；它们的文件夹保留",
    ),
    (
        "Add tags and a note to this run",
        "给这个运行加上标签和备注",
    ),
    (
        "Another window or a CLI run is training it; stop it there",
        "另一个窗口或命令行正在训练它；请在那里停止",
    ),
    ("training elsewhere", "在别处训练中"),
    ("Run {}", "运行 {}"),
    ("Tags (separated by commas)", "标签（用逗号分隔）"),
    ("Note", "备注"),
    ("{} runs archived", "已归档 {} 个运行"),
    (
        "{} runs brought back from the archive",
        "已从归档中取回 {} 个运行",
    ),
    (
        "{} restored to {} ({} runs read)",
        "{} 已恢复到 {}（读取了 {} 个运行）",
    ),
    ("cannot restore {}: {}", "无法恢复 {}：{}"),
    ("cannot save the notes: {}", "无法保存备注：{}"),
    ("cannot start: {}", "无法开始：{}"),
    (
        "the trainer has stopped, so nothing more can train; restart the workbench",
        "训练线程已停止，无法再训练；请重新启动工作台",
    ),
    (
        "the trainer stopped unexpectedly; restart the workbench",
        "训练线程意外停止；请重新启动工作台",
    ),
    (
        "merge stopped; nothing was written",
        "合并已停止；没有写入任何内容",
    ),
    (
        "Stop the merge; nothing is written",
        "停止合并；不会写入任何内容",
    ),
    (
        "Stop the answers and evaluations still coming",
        "停止尚未完成的回答和评估",
    ),
    ("all experiments", "全部实验"),
    ("(runs before experiments)", "（实验功能之前的运行）"),
    ("Experiment", "实验"),
    ("In experiment", "所属实验"),
    ("today's runs", "今天的运行"),
    (
        "The runs table and the plots group runs by experiment; Compare all methods starts a new one",
        "运行表和图按实验归组运行；“比较所有方法”会开始一个新实验",
    ),
    ("Plot only these", "只绘制这些"),
    (
        "Draw the listed runs' curves and no others",
        "只绘制列表中运行的曲线",
    ),
    ("{} runs on the plots", "图上有 {} 个运行"),
    // Learn pages: the trainable-parameter formulas' words
    ("all parameters", "全部参数"),
    ("N × (params of one block)", "N × (一个块的参数)"),
    (
        "Σ over adapted projections r × (in + out)",
        "Σ 各被适配投影 r × (in + out)",
    ),
    (
        "Σ over adapted projections r × (in + out) + out",
        "Σ 各被适配投影 r × (in + out) + out",
    ),
    (
        "Σ over adapted projections r₀ × (in + out + 1)",
        "Σ 各被适配投影 r₀ × (in + out + 1)",
    ),
    ("Σ biases (+ norm gains)", "Σ 偏置（+ 归一化增益）"),
    ("n × d + encoder (LSTM/MLP)", "n × d + 编码器 (LSTM/MLP)"),
    // Published variants, as PEFT's tables name them
    ("full fine-tuning", "全参数微调"),
    ("IA3, tuned learning rate", "IA3，调优后的学习率"),
    ("IA3, default", "IA3，默认设置"),
    ("prefix tuning (best)", "Prefix Tuning（最佳）"),
    ("prefix tuning", "Prefix Tuning"),
    ("prompt tuning (best init)", "Prompt Tuning（最佳初始化）"),
    ("prompt tuning", "Prompt Tuning"),
    (
        "This model has no bias terms: BitFit adds zero-initialised biases to its {} projections.",
        "这个模型没有偏置项：BitFit 为它的 {} 个投影添加初值为零的偏置。",
    ),
    (
        "This model has no bias terms: BitFit trains only the normalisation gains.",
        "这个模型没有偏置项：BitFit 只训练归一化增益。",
    ),
    (
        "This model has no bias terms: turn on added biases or norm gains, or BitFit trains nothing.",
        "这个模型没有偏置项：请打开添加偏置或训练归一化增益，否则 BitFit 没有可训练的参数。",
    ),
    ("Show or hide the table's columns", "显示或隐藏表格的列"),
    ("Typical hyperparameters", "常用超参数"),
    ("Related methods", "与其他方法的关系"),
    ("Original paper", "原始论文"),
    ("Use its preset", "使用其预设"),
    ("Measured here", "本机实测"),
    (
        "No finished run of this method yet: use its preset or Compare all methods.",
        "此方法还没有完成的运行：使用其预设或“比较所有方法”。",
    ),
    ("frozen", "冻结"),
    ("trained", "训练"),
    ("input tokens", "输入 token"),
    ("embedding", "词嵌入"),
    ("soft prompt", "软提示"),
    ("× L blocks", "× L 个块"),
    ("attention", "注意力"),
    ("K/V prefix", "K/V 前缀"),
    ("reparam.\nMLP", "重参数化\nMLP"),
    (
        "Λ (top left): singular values masked by the rank budget",
        "Λ（左上）：被秩预算屏蔽的奇异值",
    ),
    (
        "adapter: down, f, up (+ skip)",
        "适配器：降维、f、升维（+ 残差）",
    ),
    ("LM head", "语言模型头"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_their_holes_in_either_language() {
        let en = fill(Lang::En, "exported {} files to {}", &[&3, &"out"]);
        assert_eq!(en, "exported 3 files to out");
        let zh = fill(Lang::Zh, "exported {} files to {}", &[&3, &"out"]);
        assert_eq!(zh, "已导出 3 个文件到 out");
        // A template with no translation stays English; missing arguments leave the hole empty.
        assert_eq!(fill(Lang::Zh, "no such {}", &[]), "no such ");
    }

    #[test]
    fn every_key_is_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for (en, zh) in ZH {
            assert!(seen.insert(*en), "`{en}` is listed twice");
            assert!(!zh.is_empty(), "`{en}` has an empty translation");
        }
        assert_eq!(super::zh("Start"), Some("开始"));
        assert_eq!(super::zh("not a UI string"), None);
    }

    /// Every CJK character the Chinese UI can show is in the bundled font subset (Latin and
    /// math symbols come from egui's own fonts; the GUI test renders every page, and egui
    /// refuses a glyph no font has).
    #[test]
    fn the_bundled_font_covers_every_chinese_string() {
        let font = ab_glyph_free_cmap(include_bytes!(
            "../../assets/fonts/DroidSansFallback-subset.ttf"
        ));
        let mut texts: Vec<&str> = ZH.iter().map(|(_, zh)| *zh).collect();
        for (_, p) in super::super::learn::pages() {
            texts.extend([
                p.mechanism.zh,
                p.pros.zh,
                p.cons.zh,
                p.choose.zh,
                p.forward.zh,
                p.relations.zh,
                p.hyperparameters.zh,
            ]);
        }
        texts.push(Lang::Zh.name());
        let missing: std::collections::BTreeSet<char> = texts
            .iter()
            .flat_map(|t| t.chars())
            .filter(|c| *c >= '\u{2E80}' && !font.contains(c))
            .collect();
        assert!(missing.is_empty(), "not in the font subset: {missing:?}");
    }

    /// The characters a TrueType font maps, read from its `cmap` (formats 4 and 12).
    fn ab_glyph_free_cmap(data: &[u8]) -> std::collections::HashSet<char> {
        let u16_at = |o: usize| u16::from_be_bytes([data[o], data[o + 1]]) as usize;
        let u32_at = |o: usize| {
            u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) as usize
        };
        let tables = u16_at(4);
        let cmap = (0..tables)
            .map(|i| 12 + 16 * i)
            .find(|&r| &data[r..r + 4] == b"cmap")
            .map(|r| u32_at(r + 8))
            .expect("a cmap table");
        let mut chars = std::collections::HashSet::new();
        for i in 0..u16_at(cmap + 2) {
            let sub = cmap + u32_at(cmap + 4 + 8 * i + 4);
            match u16_at(sub) {
                4 => {
                    let segs = u16_at(sub + 6) / 2;
                    let ends = sub + 14;
                    let starts = ends + 2 * segs + 2;
                    for s in 0..segs {
                        let (start, end) = (u16_at(starts + 2 * s), u16_at(ends + 2 * s));
                        for c in start..=end.min(0xFFFE) {
                            chars.extend(char::from_u32(c as u32));
                        }
                    }
                }
                12 => {
                    for g in 0..u32_at(sub + 12) {
                        let o = sub + 16 + 12 * g;
                        for c in u32_at(o)..=u32_at(o + 4) {
                            chars.extend(char::from_u32(c as u32));
                        }
                    }
                }
                _ => {}
            }
        }
        chars
    }
}
