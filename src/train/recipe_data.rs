//! What a recipe for another trainer needs of a run to repeat it exactly: the trained
//! tensors at step 0 (`init_adapter/`, in PEFT's format), the examples as our trainer
//! encodes them (token ids and the loss mask), and the examples each step draws, in order.

use anyhow::{Result, bail};
use std::io::Write;
use std::path::Path;

use super::data_order::DataOrder;
use super::{ExportContext, RunConfig, prepare};
use crate::data::batch::Encoded;
use crate::files::write_dir_atomic;
use crate::models::Model;
use crate::peft::RecipeStart;

/// What `write` wrote, for the recipe's description of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipeData {
    /// The token that pads a batch after each example.
    pub pad: u32,
    /// Trained base tensors, by checkpoint name (full fine-tuning, Freeze, BitFit).
    pub trainable_base: Vec<String>,
    /// Values the run trains (ours; the recipe checks PyTorch's count against it).
    pub trainable_params: usize,
    pub train_examples: usize,
    pub eval_examples: usize,
    /// An encoder classifier's class names (its examples carry a `label`); empty for a
    /// decoder, whose examples carry a loss mask.
    pub labels: Vec<String>,
}

/// File names inside a recipe folder.
pub const TRAIN_FILE: &str = "train.jsonl";
pub const EVAL_FILE: &str = "eval.jsonl";
pub const ORDER_FILE: &str = "order.json";
pub const INIT_ADAPTER: &str = "init_adapter";
/// A classifier's head at step 0, for recipes that train base tensors: the base model's
/// folder has no head (transformers would draw its own).
pub const INIT_HEAD: &str = "init_head.safetensors";

fn write_examples(path: &Path, examples: &[Encoded]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in examples {
        serde_json::to_writer(
            &mut out,
            &match e.label {
                Some(label) => serde_json::json!({ "input_ids": e.ids, "label": label }),
                None => serde_json::json!({ "input_ids": e.ids, "loss_mask": e.loss_mask }),
            },
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Why bottleneck adapters on an encoder classifier get no recipe.
pub const ADAPTERHUB_ON_ENCODER: &str = "no recipe for bottleneck adapters on an encoder classifier: AdapterHub's BERT places its adapters around the block's layer norms, which has not been checked against ours";

/// Writes the run's data, its batch order for every step and (for a method PEFT can start
/// from our tensors) its step-0 adapter into `dir`, which exists.
pub fn write(cfg: &RunConfig, dir: &Path) -> Result<RecipeData> {
    let start = cfg.method.recipe_start();
    if let RecipeStart::Refused(why) = start {
        bail!("no recipe for {}: {why}", cfg.method.display_name());
    }
    let p = prepare(cfg, None, &mut |_| {}, 0)?;
    let labels = match &p.model_cfg {
        crate::models::ModelConfig::Bert(b) => b.labels.clone(),
        _ => Vec::new(),
    };
    if let Model::Bert(_) = p.model
        && start == RecipeStart::AdapterHub
    {
        bail!("{ADAPTERHUB_ON_ENCODER}");
    }
    write_examples(&dir.join(TRAIN_FILE), &p.train)?;
    write_examples(&dir.join(EVAL_FILE), p.eval.sequences())?;
    // The same draw as the trainer's: one batch of indices into train.jsonl per step.
    let lengths = cfg
        .group_by_length
        .then(|| p.train.iter().map(|e| e.ids.len()).collect());
    let mut order = DataOrder::new(cfg.seed, p.train.len(), lengths);
    let batches: Vec<Vec<usize>> = (0..cfg.steps)
        .map(|_| order.next_batch(cfg.batch_size))
        .collect();
    crate::files::save_json(&dir.join(ORDER_FILE), &serde_json::to_value(&batches)?)?;
    let base_model = super::exported_base_name(&cfg.model);
    let mut trainable_base = Vec::new();
    let mut trainable_params = 0;
    match start {
        RecipeStart::OurTensors | RecipeStart::PeftInit(_) | RecipeStart::AdapterHub => {
            // PeftInit still writes it: PEFT reads the method's configuration from it.
            let ctx = ExportContext {
                base_model: &base_model,
                trained_base: &p.loaded_trained,
                model: &p.model_cfg,
            };
            write_dir_atomic(&dir.join(INIT_ADAPTER), |d| {
                p.method.export(d, &ctx)?;
                crate::peft::export::finish_for_model(d, &p.model_cfg, &p.loaded_trained)
            })?;
            // A classifier's head trains beside the method (PEFT's modules_to_save).
            trainable_params = p
                .method
                .vars()
                .iter()
                .chain(p.loaded_trained.iter())
                .map(|(_, v)| v.elem_count())
                .sum();
        }
        RecipeStart::BaseTensors => {
            let mut head = Vec::new();
            for (name, var) in p.loaded_trained.iter().chain(p.method.vars().iter()) {
                trainable_base.push(name.clone());
                trainable_params += var.elem_count();
                if name.starts_with("classifier.") {
                    head.push((name.clone(), var.as_tensor().clone()));
                }
            }
            if !head.is_empty() {
                crate::peft::export::save_safetensors(&dir.join(INIT_HEAD), &head)?;
            }
        }
        RecipeStart::Refused(_) => unreachable!("refused above"),
    }
    Ok(RecipeData {
        pad: p.pad,
        trainable_base,
        trainable_params,
        train_examples: p.train.len(),
        eval_examples: p.eval.sequences().len(),
        labels,
    })
}
