//! `recipe --to llamafactory`: a LLaMA-Factory training YAML, its dataset in Alpaca form and
//! the `dataset_info.json` that names it, for the methods LLaMA-Factory has — LoRA (with
//! DoRA and rsLoRA), Freeze and full fine-tuning. Others are refused with the reason.
//!
//! LLaMA-Factory draws its own batches, warms up from a rate of 0 and tokenises with its own
//! template (`empty`: the prompt and completion as written, plus an end-of-sequence token it
//! scores), so its run follows ours in kind, not step for step; `--to transformers` is the
//! exact one. `scripts/verify-llamafactory.sh` runs these files in LLaMA-Factory 0.9.5: for
//! LoRA, DoRA, Freeze and full fine-tuning it trains exactly as many values as our run
//! (43008, 45312, 1573888, 7793920 on the built-in model), and its output comes back with
//! `import-run`.

use anyhow::{Context, Result, bail};
use std::path::Path;

use super::Refusal;
use crate::config::{RunConfig, Schedule};
use crate::data::Example;
use crate::files::{ensure_new_folder, save_json, write_dir_atomic};
use crate::peft::MethodConfig;

/// The method's lines of the YAML, or why LLaMA-Factory cannot train it.
fn method_lines(method: &MethodConfig) -> Result<Vec<String>> {
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serialises");
    Ok(match method {
        MethodConfig::Lora(l) | MethodConfig::Dora(l) => vec![
            "finetuning_type: lora".into(),
            format!("lora_rank: {}", l.rank),
            format!("lora_alpha: {}", l.alpha),
            format!("lora_dropout: {}", l.dropout),
            format!("lora_target: {}", quoted(&l.target_modules.join(","))),
            format!("use_dora: {}", matches!(method, MethodConfig::Dora(_))),
            format!("use_rslora: {}", l.use_rslora),
        ],
        MethodConfig::Freeze(f) => {
            let modules = if f.trainable_modules.is_empty() {
                "all".to_string()
            } else {
                f.trainable_modules.join(",")
            };
            let mut lines = vec![
                "finetuning_type: freeze".into(),
                format!("freeze_trainable_layers: {}", f.trainable_layers),
                format!("freeze_trainable_modules: {}", quoted(&modules)),
            ];
            if !f.extra_modules.is_empty() {
                lines.push(format!(
                    "freeze_extra_modules: {}",
                    quoted(&f.extra_modules.join(","))
                ));
            }
            lines
        }
        MethodConfig::Full(_) => vec!["finetuning_type: full".into()],
        other => bail!("{}", Refusal::naming(NO_SUCH_TYPE, other.display_name())),
    })
}

const NO_SUCH_TYPE: &str = "LLaMA-Factory has no {} (its fine-tuning types are lora — with use_dora and use_rslora — freeze and full); use the PyTorch recipe (--to transformers)";

const ENCODER_CLASSIFIER: &str = "LLaMA-Factory fine-tunes decoder language models, and this model is an encoder classifier; use the PyTorch recipe (--to transformers)";

/// Why LLaMA-Factory cannot train `method` on a model that is (`classifier`) or is not an
/// encoder classifier, or `None` when it can.
pub fn refusal(method: &MethodConfig, classifier: bool) -> Option<Refusal> {
    if classifier {
        Some(Refusal::new(ENCODER_CLASSIFIER))
    } else if method_lines(method).is_err() {
        Some(Refusal::naming(NO_SUCH_TYPE, method.display_name()))
    } else {
        None
    }
}

/// Alpaca rows (`instruction`, `input`, `output`) of `examples`, as a decoder is taught them.
fn alpaca(examples: &[Example], what: &str) -> Result<Vec<serde_json::Value>> {
    examples
        .iter()
        .map(|e| match e.for_decoder().as_ref() {
            Example::Completion { prompt, completion } => Ok(serde_json::json!({
                "instruction": prompt, "input": "", "output": completion,
            })),
            Example::Text { .. } => bail!(
                "the {what} data is plain text, which LLaMA-Factory trains in its pretraining stage, not as a fine-tuning dataset"
            ),
            _ => bail!(
                "the {what} data holds conversations; write them for LLaMA-Factory in ShareGPT form yourself (not written yet)"
            ),
        })
        .collect()
}

/// Writes the LLaMA-Factory recipe of `cfg` into `out` (new, written whole or not at all);
/// returns the training examples written.
pub fn write(cfg: &RunConfig, out: &Path, base_model: &str) -> Result<usize> {
    ensure_new_folder(out, "")?;
    let classifier = crate::models::ModelFiles::open(&cfg.model)?
        .config
        .is_classifier();
    if let Some(why) = refusal(&cfg.method, classifier) {
        bail!("{why}");
    }
    let method = method_lines(&cfg.method)?;
    let data = crate::data::load_as(
        &cfg.dataset,
        cfg.eval_dataset.as_deref(),
        cfg.seed,
        cfg.dataset_format,
    )
    .with_context(|| format!("cannot read the dataset {}", cfg.dataset))?;
    let train = alpaca(&data.train, "training")?;
    let eval_rows: Vec<Example> = data.eval.iter().take(cfg.eval_examples).cloned().collect();
    let eval = alpaca(&eval_rows, "evaluation")?;
    let o = &cfg.optimizer;
    let schedule = match o.schedule {
        Schedule::Cosine => "cosine",
        Schedule::Linear => "linear",
        Schedule::Constant => "constant_with_warmup",
    };
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serialises");
    // Numbers in plain decimal: PyYAML reads `3e-3` (no dot) as a string.
    let yaml = format!(
        "# peft-workbench run as a LLaMA-Factory recipe: llamafactory-cli train train.yaml
# (several GPUs: FORCE_TORCHRUN=1 llamafactory-cli train train.yaml)

### model
model_name_or_path: {model}

### method
stage: sft
do_train: true
{method}

### dataset
dataset_dir: data
dataset: workbench_train
eval_dataset: workbench_eval
template: empty
cutoff_len: {cutoff}

### output
output_dir: output
logging_steps: 1
include_num_input_tokens_seen: non_padding
save_steps: {steps}
plot_loss: true

### train
per_device_train_batch_size: {batch}
gradient_accumulation_steps: 1
learning_rate: {lr}
max_steps: {steps}
lr_scheduler_type: {schedule}
warmup_steps: {warmup}
weight_decay: {wd}
max_grad_norm: {clip}
adam_beta1: {b1}
adam_beta2: {b2}
adam_epsilon: {eps}
seed: {seed}

### eval
per_device_eval_batch_size: {batch}
eval_strategy: steps
eval_steps: {eval_every}
",
        model = quoted(base_model),
        method = method.join("\n"),
        cutoff = cfg.max_seq_len,
        steps = cfg.steps,
        batch = cfg.batch_size,
        lr = o.lr,
        warmup = o.warmup_steps,
        wd = o.weight_decay,
        clip = o.max_grad_norm,
        b1 = o.beta1,
        b2 = o.beta2,
        eps = o.eps,
        seed = cfg.seed,
        eval_every = cfg.eval_every,
    );
    let examples = train.len();
    write_dir_atomic(out, |d| {
        std::fs::write(d.join("train.yaml"), &yaml)?;
        std::fs::create_dir(d.join("data"))?;
        save_json(&d.join("data/train.json"), &serde_json::Value::Array(train))?;
        save_json(&d.join("data/eval.json"), &serde_json::Value::Array(eval))?;
        save_json(
            &d.join("data/dataset_info.json"),
            &serde_json::json!({
                "workbench_train": { "file_name": "train.json" },
                "workbench_eval": { "file_name": "eval.json" },
            }),
        )?;
        std::fs::write(
            d.join("README.md"),
            format!(
                "# {} as a LLaMA-Factory recipe\n\n`llamafactory-cli train train.yaml` trains the run's method on its data \
                 (`data/`, Alpaca form, named in `data/dataset_info.json`) with its rate, schedule, batch, steps and seed. \
                 LLaMA-Factory draws its own batches and uses its `empty` template, so its curve follows the run's in kind, \
                 not step for step (`peft-workbench recipe --to transformers` is the exact one). Its output folder comes \
                 back with `peft-workbench import-run output`.\n\n\
                 `llamafactory-cli train train.yaml` 用该运行的方法、数据、学习率、批大小、步数和随机种子训练；结果文件夹可用 \
                 `peft-workbench import-run output` 导回对比。\n",
                cfg.method.display_name()
            ),
        )?;
        Ok(())
    })?;
    Ok(examples)
}
