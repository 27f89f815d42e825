//! A run handed to PyTorch: `peft-workbench recipe` writes a folder that trains the same
//! run with Hugging Face transformers + PEFT (`train.py`), on one GPU, several, several
//! nodes or CPU processes (`launch.sh`), from the run's own initial tensors, examples and
//! batch order — so the two trainers can be compared step for step, and a method explored
//! here on a small model can be taken to a large one with the engines that scale.
//!
//! The folder: `recipe.json` (the run's facts), `train.py`, `launch.sh`,
//! `requirements.txt`, `README.md`, `train.jsonl`/`eval.jsonl` (token ids and loss masks),
//! `order.json` (each step's examples), `init_adapter/` (the step-0 PEFT adapter),
//! `accelerate/*.yaml` (DDP, FSDP, DeepSpeed ZeRO-2/3 for `accelerate launch`) and
//! `base_model/` when the run's base is the built-in model.

use anyhow::{Context, Result, bail};
use std::path::Path;

use crate::config::{RunConfig, Schedule};
use crate::files::{ensure_new_folder, save_json, write_dir_atomic};
use crate::models::{ModelFiles, ModelSource};
use crate::peft::RecipeStart;
use crate::train::recipe_data;

pub mod accelerate;
pub mod llamafactory;

/// The engine a recipe is written for.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    /// PyTorch + Hugging Face transformers and PEFT, under torchrun or accelerate for several
    /// processes.
    Transformers,
    /// A LLaMA-Factory training YAML and its dataset (LoRA, DoRA, rsLoRA, Freeze, full).
    #[value(name = "llamafactory")]
    LlamaFactory,
}

impl Target {
    /// Why the method cannot leave for this engine on a model that is (`classifier`) or is
    /// not an encoder classifier, or `None` when it can.
    pub fn refusal(self, method: &crate::peft::MethodConfig, classifier: bool) -> Option<Refusal> {
        match self {
            Target::Transformers => match method.recipe_start() {
                RecipeStart::Refused(why) => Some(Refusal::new(why)),
                RecipeStart::AdapterHub if classifier => {
                    Some(Refusal::new(recipe_data::ADAPTERHUB_ON_ENCODER))
                }
                _ => None,
            },
            Target::LlamaFactory => llamafactory::refusal(method, classifier),
        }
    }
}

/// Why a run cannot leave for an engine: a fixed English sentence, with at most one `{}`
/// hole for a name, so the window can show it in its own language (the sentence is the key
/// of its translation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub template: &'static str,
    pub name: Option<String>,
}

impl Refusal {
    pub fn new(template: &'static str) -> Self {
        Self {
            template,
            name: None,
        }
    }

    pub fn naming(template: &'static str, name: &str) -> Self {
        Self {
            template,
            name: Some(name.to_string()),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => f.write_str(&self.template.replacen("{}", name, 1)),
            None => f.write_str(self.template),
        }
    }
}

const TRAIN_PY: &str = include_str!("train.py");
const LAUNCH_SH: &str = include_str!("launch.sh");

/// The Python stack the recipe was verified with (`scripts/verify-peft.sh`'s venv).
const PEFT_REQUIREMENTS: &str = "\
# The stack peft-workbench verified this recipe with (CPU, f32). On a GPU machine install
# the torch build for its CUDA version (https://pytorch.org/get-started/locally/).
torch==2.15.0
transformers==5.25.0
peft==0.21.2
accelerate==1.16.0
safetensors
# DeepSpeed (launch.sh --engine zero2 / zero3) is not pinned: install the release built for
# the GPU machine's CUDA (pip install deepspeed).
";

/// The bottleneck adapters' stack: AdapterHub's `adapters` pins transformers 4.57, so these
/// recipes were verified in a venv of their own (`scripts/verify-recipe.sh`).
const ADAPTERHUB_REQUIREMENTS: &str = "\
# The stack peft-workbench verified this recipe with (CPU, f32): AdapterHub's adapters
# library pins transformers 4.57. On a GPU machine install the torch build for its CUDA
# version (https://pytorch.org/get-started/locally/).
torch==2.15.0
transformers==4.57.6
adapters==1.3.0
accelerate==1.16.0
safetensors
";

/// What was written, for the command's report.
#[derive(Debug, Clone)]
pub struct Written {
    pub start: RecipeStart,
    pub trainable_params: usize,
    pub steps: usize,
}

/// The base model as a recipe outside this program names it: `base_model` if given, else the
/// run's model folder by its absolute path (the built-in model's too); a GGUF file needs a
/// name, since transformers does not train from one.
pub fn base_model_name(cfg: &RunConfig, base_model: Option<&str>) -> Result<String> {
    if let Some(name) = base_model {
        return Ok(name.to_string());
    }
    match ModelFiles::open(&cfg.model)?.source {
        ModelSource::Folder(dir) => Ok(std::path::absolute(dir)?.display().to_string()),
        ModelSource::Gguf(path) => bail!(
            "{} is a GGUF file, which transformers does not train from: name the model's Hugging Face folder or hub id with --base-model",
            path.display()
        ),
    }
}

/// Writes the recipe of the run `cfg` describes into `out`, a new folder (written whole or
/// not at all). `base_model` names the base for the recipe (a folder or a hub id); without
/// it a model folder is named by its path and the built-in model is copied in.
pub fn write(cfg: &RunConfig, out: &Path, base_model: Option<&str>) -> Result<Written> {
    ensure_new_folder(out, "")?;
    // The built-in model travels in the folder, so the recipe runs anywhere.
    let base = if cfg.model == "builtin" && base_model.is_none() {
        "base_model".to_string()
    } else {
        base_model_name(cfg, base_model)?
    };
    let start = cfg.method.recipe_start();
    let mut written = None;
    write_dir_atomic(out, |d| {
        let data = recipe_data::write(cfg, d)?;
        if cfg.model == "builtin" && base_model.is_none() {
            let from = crate::models::builtin_model_dir();
            std::fs::create_dir(d.join("base_model"))?;
            for f in [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
            ] {
                std::fs::copy(from.join(f), d.join("base_model").join(f))
                    .with_context(|| format!("cannot copy the built-in model's {f}"))?;
            }
        }
        let o = &cfg.optimizer;
        let (start_name, start_note) = match start {
            RecipeStart::OurTensors => ("our_tensors", None),
            RecipeStart::PeftInit(why) => ("peft_init", Some(why)),
            RecipeStart::BaseTensors => ("base_tensors", None),
            RecipeStart::AdapterHub => ("adapterhub", None),
            RecipeStart::Refused(why) => bail!("no recipe: {why}"),
        };
        save_json(
            &d.join("recipe.json"),
            &serde_json::json!({
                "format": "peft-workbench/recipe-v1",
                "method": cfg.method.kind(),
                "start": start_name,
                "start_note": start_note,
                "base_model": base,
                "steps": cfg.steps,
                "batch_size": cfg.batch_size,
                "eval_every": cfg.eval_every,
                "seed": cfg.seed,
                "pad": data.pad,
                "task": if data.labels.is_empty() { "causal_lm" } else { "classification" },
                "labels": data.labels,
                "trainable_base": data.trainable_base,
                "trainable_params": data.trainable_params,
                "train_examples": data.train_examples,
                "eval_examples": data.eval_examples,
                "optimizer": {
                    "lr": o.lr,
                    "beta1": o.beta1,
                    "beta2": o.beta2,
                    "eps": o.eps,
                    "weight_decay": o.weight_decay,
                    "warmup_steps": o.warmup_steps,
                    "schedule": match o.schedule {
                        Schedule::Cosine => "cosine",
                        Schedule::Linear => "linear",
                        Schedule::Constant => "constant",
                    },
                    "max_grad_norm": o.max_grad_norm,
                },
                "config": cfg,
            }),
        )?;
        std::fs::write(d.join("train.py"), TRAIN_PY)?;
        std::fs::write(d.join("launch.sh"), LAUNCH_SH)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.join("launch.sh"), std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::create_dir(d.join("accelerate"))?;
        for c in accelerate::configs(cfg) {
            std::fs::write(
                d.join("accelerate").join(format!("{}.yaml", c.engine)),
                c.yaml,
            )?;
        }
        let requirements = match start {
            RecipeStart::AdapterHub => ADAPTERHUB_REQUIREMENTS,
            _ => PEFT_REQUIREMENTS,
        };
        std::fs::write(d.join("requirements.txt"), requirements)?;
        std::fs::write(
            d.join("README.md"),
            readme(cfg, start_note, start == RecipeStart::AdapterHub),
        )?;
        written = Some(Written {
            start,
            trainable_params: data.trainable_params,
            steps: cfg.steps,
        });
        Ok(())
    })?;
    written.context("the recipe was not written")
}

fn readme(cfg: &RunConfig, start_note: Option<&str>, adapterhub: bool) -> String {
    let (engine, engine_zh, note, note_zh) = if adapterhub {
        (
            "PyTorch, Hugging Face transformers and AdapterHub's `adapters` library",
            "PyTorch、Hugging Face transformers 和 AdapterHub 的 `adapters` 库",
            "\n\nPEFT has no bottleneck adapters: `train.py` configures AdapterHub's so that they \
             compute this run's, `res + h + up(act(down(h)))` on each sub-layer's output `h`. The \
             trained adapter is written twice: in peft-workbench's format (`output/adapter/`) and \
             in AdapterHub's (`output/adapterhub/`, for `model.load_adapter`).",
            "\n\nPEFT 没有瓶颈适配器：`train.py` 配置 AdapterHub 的适配器，使其计算与本运行相同，即对每个\
             子层输出 `h` 计算 `res + h + up(act(down(h)))`。训练好的适配器写两份：peft-workbench 格式\
             （`output/adapter/`）和 AdapterHub 格式（`output/adapterhub/`，供 `model.load_adapter` 使用）。",
        )
    } else {
        (
            "PyTorch, Hugging Face transformers and PEFT",
            "PyTorch、Hugging Face transformers 和 PEFT",
            "",
            "",
        )
    };
    let start = match start_note {
        None => "It starts from the run's own step-0 tensors, so its loss at every step can be \
                 compared with the run's metrics.jsonl (on the CPU in f32 they agree to about 1e-5)."
            .to_string(),
        Some(why) => format!(
            "It starts from PEFT's own initialisation of the same configuration: {why}. \
             Its losses follow the run's in kind, not step for step."
        ),
    };
    format!(
        "# {method} on {model}: a peft-workbench run as a PyTorch recipe

This folder trains the run with {engine}, as peft-workbench \
trained it: the same examples (`train.jsonl`: token ids and loss mask), the same batches in \
the same order (`order.json`), the same loss, AdamW, schedule and clipping (`recipe.json`). \
{start}{note}

| File | What it is |
|---|---|
| `train.py` | the training loop (one process, or one of several under torchrun or accelerate) |
| `launch.sh` | runs it: `bash launch.sh` (every GPU, or one CPU process), `bash launch.sh --nproc 2`, several nodes with `--nnodes N --node-rank I --master-addr HOST`; `--engine ddp`, `fsdp`, `zero2` or `zero3` runs it under `accelerate launch` |
| `accelerate/*.yaml` | accelerate's configurations: DDP, FSDP 2 (one shard unit per decoder layer), DeepSpeed ZeRO-2 and ZeRO-3 (clipping at the run's norm) |
| `recipe.json` | the run's facts: method, steps, batch, optimizer, schedule, seed |
| `init_adapter/` | the method's PEFT adapter at step 0 (and its `adapter_config.json`) |
| `base_model/` | the built-in model, when the run used it |
| `requirements.txt` | the Python packages, pinned to the versions verified |

Results go to `output/`: `trainer_state.json` (the loss of every step in `log_history`, as \
transformers' Trainer writes it) and the adapter in `output/adapter/` (full fine-tuning, \
Freeze and BitFit: the model in `output/model/`). `peft-workbench logits --adapter \
output/adapter` reads it back.

On a larger model: pass it with `-- --base-model NAME` (the data must then be written again \
with its tokenizer: `peft-workbench recipe` with `--set model=...`); use `-- --bf16` on GPUs; \
with N processes each takes 1/N of every batch, so the steps stay the same — raise \
`batch_size` in the run for more throughput. When a process's share of a batch does not fit \
in its GPU's memory, `-- --accumulate K` runs it in K passes and sums their gradients: the \
same steps, less activation memory (not under DeepSpeed, which accumulates by its own config). When the model no longer fits on one GPU with \
its optimizer state, `--engine zero2` shards optimizer state and gradients, `--engine fsdp` or \
`zero3` the weights as well; under DeepSpeed set `mixed_precision: bf16` in its YAML instead \
of `--bf16`. FSDP and DeepSpeed run only on GPUs (accelerate keeps CPU processes on DDP), and \
AdaLoRA, which reallocates ranks from whole gradients, runs under DDP only.

---

# {method}（{model}）：peft-workbench 运行导出的 PyTorch 训练配方

本文件夹用 {engine_zh} 重现该运行：相同的样本（`train.jsonl`：\
token id 与损失掩码）、相同顺序的相同批次（`order.json`）、相同的损失、AdamW、学习率计划和梯度裁剪\
（`recipe.json`）。{start_zh}{note_zh}

- `train.py`：训练循环（单进程，或 torchrun / accelerate 下的多进程之一）
- `launch.sh`：启动脚本：`bash launch.sh`（使用全部 GPU；无 GPU 时单个 CPU 进程）、`bash launch.sh --nproc 2`、\
多节点用 `--nnodes N --node-rank I --master-addr HOST`；`--engine ddp`、`fsdp`、`zero2` 或 `zero3` 用 `accelerate launch` 运行
- `accelerate/*.yaml`：accelerate 配置：DDP、FSDP 2（每个解码层一个分片单元）、DeepSpeed ZeRO-2 与 ZeRO-3（梯度裁剪取运行的范数）
- `recipe.json`：运行的参数：方法、步数、批大小、优化器、学习率计划、随机种子
- `init_adapter/`：方法在第 0 步的 PEFT 适配器
- `base_model/`：内置模型（若运行使用了它）
- `requirements.txt`：固定版本的 Python 依赖

结果写入 `output/`：`trainer_state.json`（`log_history` 中每一步的损失，与 transformers Trainer 的格式相同）\
和 `output/adapter/` 中的适配器（全参数微调、Freeze、BitFit 为 `output/model/`）。\
换更大的模型：`-- --base-model 名称`（需用其分词器重新生成数据）；GPU 上加 `-- --bf16`；\
N 个进程各取每批的 1/N，步数不变。每个进程的份额放不进显存时，`-- --accumulate K` 分 K 次前向/反向并累加梯度，\
步数不变、激活占用更少（DeepSpeed 下请用其自身配置）。模型连同优化器状态放不进一张 GPU 时：`--engine zero2` 切分优化器状态和梯度，\
`--engine fsdp` 或 `zero3` 连权重一起切分；DeepSpeed 下请在其 YAML 中设 `mixed_precision: bf16`，不要用 `--bf16`。\
FSDP 与 DeepSpeed 只在 GPU 上运行（accelerate 在 CPU 上只用 DDP）；AdaLoRA 需要完整梯度来重新分配秩，只能用 DDP。
",
        method = cfg.method.display_name(),
        model = cfg.model,
        start_zh = match start_note {
            None => "它从该运行第 0 步的张量出发，因此每一步的损失都可与运行的 metrics.jsonl 对比。",
            Some(_) => "它从 PEFT 自己的初始化出发（我们的初始张量无法交给 PEFT），损失只在趋势上可比。",
        },
    )
}
