//! Fine-tuning methods. Each lives in its own module (config, layers, how it attaches,
//! export); `MethodConfig` is both the registry and the preset format.

pub mod adalora;
pub mod adapter;
pub mod bitfit;
pub mod dora;
pub mod export;
pub mod freeze;
pub mod full;
pub mod ia3;
pub mod import;
pub mod init;
pub mod lora;
pub mod p_tuning;
pub mod p_tuning_v2;
pub mod prefix_tuning;
pub mod prompt_tuning;
pub mod published;
pub mod update_map;

use anyhow::Result;
use candle_core::{Device, Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::models::{Hooks, Injector, Model, ModelConfig};

/// A method and its parameters, tagged by `kind` in TOML (`[method] kind = "lora"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// Every weight trains: the baseline the PEFT methods are measured against.
    Full(full::FullConfig),
    /// Only the last blocks (and optionally named modules) train.
    Freeze(freeze::FreezeConfig),
    /// Low-rank updates `B·A` beside frozen projections.
    Lora(lora::LoraConfig),
    /// LoRA with a learned magnitude per output and a normalised direction.
    Dora(lora::LoraConfig),
    /// LoRA in SVD form whose rank budget moves to the matrices that matter.
    Adalora(adalora::AdaloraConfig),
    /// Learned vectors rescaling keys, values and the MLP's inner activations.
    Ia3(ia3::Ia3Config),
    /// Bias terms (and norm gains) only.
    Bitfit(bitfit::BitfitConfig),
    /// Bottleneck modules with a skip connection inside every block.
    Adapter(adapter::AdapterConfig),
    /// Trainable virtual-token embeddings before the input.
    PromptTuning(prompt_tuning::PromptTuningConfig),
    /// Virtual tokens produced by a trained prompt encoder (LSTM or MLP).
    PTuning(p_tuning::PTuningConfig),
    /// Key/value prefixes in every layer, reparameterised by an MLP while training.
    PrefixTuning(prefix_tuning::PrefixTuningConfig),
    /// Key/value prefixes in every layer, trained directly (deep prompt tuning).
    PTuningV2(p_tuning_v2::PTuningV2Config),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Lora(lora::LoraConfig::default())
    }
}

/// What building a method needs to know about the run.
pub struct BuildContext<'a> {
    pub model: &'a ModelConfig,
    pub seed: u64,
    pub device: &'a Device,
    /// The run's optimizer steps (AdaLoRA's budget schedule spans them).
    pub total_steps: usize,
}

/// What other code asks about a method (see [`MethodConfig::facts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodFacts {
    /// Where its virtual tokens go, if it has any.
    pub virtual_tokens: VirtualTokens,
    /// Its trained adapter folds into the base weights (`merge`): a linear term or a scale
    /// on a projection's weight; the others add positions or nonlinear modules, or are
    /// already the weights.
    pub mergeable: bool,
}

/// Where a method's virtual tokens go: before the input (prompt embeddings, which every
/// block then processes as it does tokens), into every layer's keys and values (prefixes),
/// or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtualTokens {
    None,
    /// n prompt embeddings before the input.
    Input(usize),
    /// n key/value pairs in every layer's attention.
    KeyValue(usize),
}

impl MethodConfig {
    /// One default configuration per method, in the order the UI lists them.
    pub fn all_defaults() -> Vec<MethodConfig> {
        vec![
            MethodConfig::Full(Default::default()),
            MethodConfig::Freeze(Default::default()),
            MethodConfig::Lora(Default::default()),
            MethodConfig::Dora(Default::default()),
            MethodConfig::Adalora(Default::default()),
            MethodConfig::Ia3(Default::default()),
            MethodConfig::Bitfit(Default::default()),
            MethodConfig::Adapter(Default::default()),
            MethodConfig::PromptTuning(Default::default()),
            MethodConfig::PTuning(Default::default()),
            MethodConfig::PrefixTuning(Default::default()),
            MethodConfig::PTuningV2(Default::default()),
        ]
    }

    /// The `kind` name used in TOML, on the command line and for preset files.
    pub fn kind(&self) -> &'static str {
        match self {
            MethodConfig::Full(_) => "full",
            MethodConfig::Freeze(_) => "freeze",
            MethodConfig::Lora(_) => "lora",
            MethodConfig::Dora(_) => "dora",
            MethodConfig::Adalora(_) => "adalora",
            MethodConfig::Ia3(_) => "ia3",
            MethodConfig::Bitfit(_) => "bitfit",
            MethodConfig::Adapter(_) => "adapter",
            MethodConfig::PromptTuning(_) => "prompt-tuning",
            MethodConfig::PTuning(_) => "p-tuning",
            MethodConfig::PrefixTuning(_) => "prefix-tuning",
            MethodConfig::PTuningV2(_) => "p-tuning-v2",
        }
    }

    /// The name people know the method by.
    pub fn display_name(&self) -> &'static str {
        match self {
            MethodConfig::Full(_) => "Full fine-tuning",
            MethodConfig::Freeze(_) => "Freeze",
            MethodConfig::Lora(_) => "LoRA",
            MethodConfig::Dora(_) => "DoRA",
            MethodConfig::Adalora(_) => "AdaLoRA",
            MethodConfig::Ia3(_) => "IA3",
            MethodConfig::Bitfit(_) => "BitFit",
            MethodConfig::Adapter(_) => "Adapter",
            MethodConfig::PromptTuning(_) => "Prompt Tuning",
            MethodConfig::PTuning(_) => "P-Tuning",
            MethodConfig::PrefixTuning(_) => "Prefix Tuning",
            MethodConfig::PTuningV2(_) => "P-Tuning v2",
        }
    }

    /// A one-line summary of the parameters that matter, for run lists and legends.
    pub fn short_label(&self) -> String {
        match self {
            MethodConfig::Full(_) => "full".into(),
            MethodConfig::Freeze(c) => format!("freeze last {}", c.trainable_layers),
            MethodConfig::Lora(c) => format!("lora r{} α{}", c.rank, c.alpha),
            MethodConfig::Dora(c) => format!("dora r{} α{}", c.rank, c.alpha),
            MethodConfig::Adalora(c) => format!("adalora r{}->{}", c.init_r, c.target_r),
            MethodConfig::Ia3(_) => "ia3".into(),
            MethodConfig::Bitfit(_) => "bitfit".into(),
            MethodConfig::Adapter(c) => format!("adapter {} m{}", c.variant.name(), c.bottleneck),
            MethodConfig::PromptTuning(c) => format!("prompt n{}", c.num_virtual_tokens),
            MethodConfig::PTuning(c) => {
                format!(
                    "p-tuning {} n{}",
                    c.encoder_type.name(),
                    c.num_virtual_tokens
                )
            }
            MethodConfig::PrefixTuning(c) => format!("prefix n{}", c.num_virtual_tokens),
            MethodConfig::PTuningV2(c) => format!("p-tuning-v2 n{}", c.num_virtual_tokens),
        }
    }

    /// The facts other code asks about a method, one arm per method: a new method is a
    /// compiler error here until its facts are given.
    pub fn facts(&self) -> MethodFacts {
        use VirtualTokens::{Input, KeyValue, None};
        let (virtual_tokens, mergeable) = match self {
            MethodConfig::Full(_) => (None, false),
            MethodConfig::Freeze(_) => (None, false),
            MethodConfig::Lora(_) => (None, true),
            MethodConfig::Dora(_) => (None, true),
            MethodConfig::Adalora(_) => (None, true),
            MethodConfig::Ia3(_) => (None, true),
            MethodConfig::Bitfit(_) => (None, false),
            MethodConfig::Adapter(_) => (None, false),
            MethodConfig::PromptTuning(c) => (Input(c.num_virtual_tokens), false),
            MethodConfig::PTuning(c) => (Input(c.num_virtual_tokens), false),
            MethodConfig::PrefixTuning(c) => (KeyValue(c.num_virtual_tokens), false),
            MethodConfig::PTuningV2(c) => (KeyValue(c.num_virtual_tokens), false),
        };
        MethodFacts {
            virtual_tokens,
            mergeable,
        }
    }

    /// Positions the method adds before each sequence (prompt tokens or key/value prefixes).
    pub fn virtual_tokens(&self) -> usize {
        match self.facts().virtual_tokens {
            VirtualTokens::Input(n) | VirtualTokens::KeyValue(n) => n,
            VirtualTokens::None => 0,
        }
    }

    /// Positions the method puts before the input itself (prompt embeddings); prefix
    /// methods add keys and values only.
    pub fn prepended_positions(&self) -> usize {
        match self.facts().virtual_tokens {
            VirtualTokens::Input(n) => n,
            VirtualTokens::KeyValue(_) | VirtualTokens::None => 0,
        }
    }

    /// Whether the trained adapter folds into the base weights (`merge`).
    pub fn mergeable(&self) -> bool {
        self.facts().mergeable
    }

    /// The learning rate this method usually wants with AdamW on the models here (the
    /// presets use the same): methods that train few values or train them far from the
    /// output want larger steps.
    pub fn conventional_lr(&self) -> f64 {
        match self {
            MethodConfig::Full(_) => 3e-4,
            MethodConfig::Freeze(_) | MethodConfig::Adapter(_) => 1e-3,
            MethodConfig::Lora(_) | MethodConfig::Dora(_) => 3e-3,
            MethodConfig::Adalora(_)
            | MethodConfig::Bitfit(_)
            | MethodConfig::PTuning(_)
            | MethodConfig::PrefixTuning(_) => 1e-2,
            MethodConfig::Ia3(_) | MethodConfig::PromptTuning(_) => 3e-2,
            MethodConfig::PTuningV2(_) => 1e-1,
        }
    }

    /// `Err((key, why))` for a value no run can use.
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        match self {
            MethodConfig::Full(_) => Ok(()),
            MethodConfig::Freeze(c) => c.validate(),
            MethodConfig::Lora(c) | MethodConfig::Dora(c) => c.validate(),
            MethodConfig::Adalora(c) => c.validate(),
            MethodConfig::Ia3(c) => c.validate(),
            MethodConfig::Bitfit(c) => c.validate(),
            MethodConfig::Adapter(c) => c.validate(),
            MethodConfig::PromptTuning(c) => c.validate(),
            MethodConfig::PTuning(c) => c.validate(),
            MethodConfig::PrefixTuning(c) => c.validate(),
            MethodConfig::PTuningV2(c) => c.validate(),
        }
    }

    /// The configuration in `model`'s module names: the LLaMA projection names (the
    /// defaults) become the modules that do the same job on a BERT or GPT-2 model (`q_proj`
    /// → `query` or `c_attn`, `down_proj` → `output.dense` or `mlp.c_proj`, …; one with no
    /// counterpart, such as `gate_proj`, is dropped), as PEFT picks target modules per
    /// architecture. Also says what changed.
    pub fn for_model(&self, model: &ModelConfig) -> (MethodConfig, Option<String>) {
        const BERT: [(&str, Option<&str>); 7] = [
            ("q_proj", Some("query")),
            ("k_proj", Some("key")),
            ("v_proj", Some("value")),
            ("o_proj", Some("attention.output.dense")),
            ("gate_proj", None),
            ("up_proj", Some("intermediate.dense")),
            ("down_proj", Some("output.dense")),
        ];
        // GPT-2 computes queries, keys and values in one projection.
        const GPT2: [(&str, Option<&str>); 7] = [
            ("q_proj", Some("c_attn")),
            ("k_proj", Some("c_attn")),
            ("v_proj", Some("c_attn")),
            ("o_proj", Some("attn.c_proj")),
            ("gate_proj", None),
            ("up_proj", Some("c_fc")),
            ("down_proj", Some("mlp.c_proj")),
        ];
        let equivalents: &[(&str, Option<&str>)] = match model {
            ModelConfig::Bert(_) => &BERT,
            ModelConfig::Gpt2(_) => &GPT2,
            ModelConfig::Llama(_) => return (self.clone(), None),
        };
        let mut changed = Vec::new();
        let mut map = |names: &mut Vec<String>| {
            let mut out: Vec<String> = Vec::new();
            for n in names.iter() {
                match equivalents.iter().find(|(l, _)| l == n) {
                    Some((_, Some(b))) => {
                        changed.push(format!("{n} -> {b}"));
                        if !out.iter().any(|o| o == b) {
                            out.push(b.to_string());
                        }
                    }
                    Some((_, None)) => changed.push(format!("{n} dropped")),
                    None => out.push(n.clone()),
                }
            }
            *names = out;
        };
        let mut c = self.clone();
        match &mut c {
            MethodConfig::Lora(l) | MethodConfig::Dora(l) => map(&mut l.target_modules),
            MethodConfig::Adalora(a) => map(&mut a.target_modules),
            MethodConfig::Ia3(i) => {
                map(&mut i.target_modules);
                map(&mut i.feedforward_modules);
            }
            // Methods that name no projections of their own.
            MethodConfig::Full(_)
            | MethodConfig::Freeze(_)
            | MethodConfig::Bitfit(_)
            | MethodConfig::Adapter(_)
            | MethodConfig::PromptTuning(_)
            | MethodConfig::PTuning(_)
            | MethodConfig::PrefixTuning(_)
            | MethodConfig::PTuningV2(_) => {}
        }
        changed.dedup();
        let note = (!changed.is_empty()).then(|| {
            format!(
                "{}'s target modules are LLaMA names; on this {} model: {}",
                self.display_name(),
                model.family().to_uppercase(),
                changed.join(", ")
            )
        });
        (c, note)
    }

    /// How many parameters the method trains on a model of shape `model`, from the
    /// method's formula (shown before a run starts; the tests check it against the count
    /// of the built method), a classifier's head included.
    pub fn trainable_params(&self, model: &ModelConfig) -> usize {
        let head: usize = model
            .tensor_shapes()
            .iter()
            .filter(|(n, _)| n.starts_with("classifier."))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        match self {
            MethodConfig::Full(_) => model.param_count(),
            _ => head + self.for_model(model).0.method_params(model),
        }
    }

    /// What the method itself trains (a classifier's head aside).
    fn method_params(&self, model: &ModelConfig) -> usize {
        match self {
            MethodConfig::Full(_) => model.param_count(),
            MethodConfig::Freeze(c) => c.param_count(model),
            MethodConfig::Lora(c) => c.param_count(model),
            MethodConfig::Dora(c) => dora::param_count(c, model),
            MethodConfig::Adalora(c) => c.param_count(model),
            MethodConfig::Ia3(c) => c.param_count(model),
            MethodConfig::Bitfit(c) => c.param_count(model),
            MethodConfig::Adapter(c) => c.param_count(model),
            MethodConfig::PromptTuning(c) => c.param_count(model),
            MethodConfig::PTuning(c) => c.param_count(model),
            MethodConfig::PrefixTuning(c) => c.param_count(model),
            MethodConfig::PTuningV2(c) => c.param_count(model),
        }
    }

    /// Something the user should know about this method on this model before training
    /// (e.g. BitFit on a model without bias terms).
    pub fn note_for(&self, model: &ModelConfig) -> Option<String> {
        match self {
            MethodConfig::Bitfit(c) => c.note_for(model),
            MethodConfig::Full(_)
            | MethodConfig::Freeze(_)
            | MethodConfig::Lora(_)
            | MethodConfig::Dora(_)
            | MethodConfig::Adalora(_)
            | MethodConfig::Ia3(_)
            | MethodConfig::Adapter(_)
            | MethodConfig::PromptTuning(_)
            | MethodConfig::PTuning(_)
            | MethodConfig::PrefixTuning(_)
            | MethodConfig::PTuningV2(_) => self.for_model(model).1,
        }
    }

    /// The method, ready to attach to a model.
    pub fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Method>> {
        let (seed, device) = (ctx.seed, ctx.device.clone());
        Ok(match &self.for_model(ctx.model).0 {
            MethodConfig::Full(c) => Box::new(full::Full::new(c.clone())),
            MethodConfig::Freeze(c) => {
                Box::new(freeze::Freeze::new(c.clone(), ctx.model.num_layers()))
            }
            MethodConfig::Lora(c) => Box::new(lora::Lora::new(c.clone(), seed, device)),
            MethodConfig::Dora(c) => Box::new(dora::Dora::new(c.clone(), seed, device)),
            MethodConfig::Adalora(c) => Box::new(adalora::Adalora::new(
                c.clone(),
                ctx.total_steps,
                seed,
                device,
            )),
            MethodConfig::Ia3(c) => Box::new(ia3::Ia3::new(c.clone(), device)),
            MethodConfig::Bitfit(c) => Box::new(bitfit::Bitfit::new(c.clone(), ctx.model, device)?),
            MethodConfig::Adapter(c) => Box::new(adapter::Adapter::new(c.clone(), seed, device)),
            MethodConfig::PromptTuning(c) => Box::new(prompt_tuning::PromptTuning::new(
                c.clone(),
                ctx.model,
                seed,
                device,
            )?),
            MethodConfig::PTuning(c) => {
                Box::new(p_tuning::PTuning::new(c.clone(), ctx.model, seed, device)?)
            }
            MethodConfig::PrefixTuning(c) => Box::new(prefix_tuning::PrefixTuning::new(
                c.clone(),
                ctx.model,
                seed,
                device,
            )?),
            MethodConfig::PTuningV2(c) => Box::new(c.build(ctx.model, seed, device)?),
        })
    }
}

/// What an export needs to know besides the method's own tensors.
pub struct ExportContext<'a> {
    /// Recorded as `base_model_name_or_path`.
    pub base_model: &'a str,
    /// Base tensors the run trained (full fine-tuning, Freeze, BitFit), by checkpoint name.
    pub trained_base: &'a [(String, Var)],
    /// The model's shape (prompt methods record layers, heads and widths).
    pub model: &'a ModelConfig,
}

/// Rank each adapted matrix keeps after an AdaLoRA budget step, for the live heat map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankAllocation {
    /// Total rank the schedule allows at this step.
    pub budget: usize,
    /// The rank every matrix started with.
    pub init_r: usize,
    /// (module path, kept rank), in model order.
    pub ranks: Vec<(String, usize)>,
}

/// How a recipe for Hugging Face PEFT in PyTorch (`peft-workbench recipe`) starts a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeStart {
    /// PEFT loads this method's step-0 export and trains it: the same initial tensors as
    /// ours, so the two trainers can be compared step for step.
    OurTensors,
    /// PEFT builds the method from the exported configuration with its own random
    /// initialisation (the reason: why our initial tensors cannot be handed over).
    PeftInit(&'static str),
    /// No PEFT: the named base tensors train (full fine-tuning, Freeze, BitFit).
    BaseTensors,
    /// Not PEFT, which has no bottleneck adapters, but AdapterHub's `adapters` library, with
    /// a configuration that computes ours (`res + h + up(act(down(h)))` on a sub-layer's
    /// output `h`), loaded with our step-0 tensors.
    AdapterHub,
    /// Not written (the reason).
    Refused(&'static str),
}

impl MethodConfig {
    /// How a recipe starts this method: an exhaustive match, so a new method says how it
    /// leaves for PyTorch.
    pub fn recipe_start(&self) -> RecipeStart {
        match self {
            MethodConfig::Full(_) | MethodConfig::Freeze(_) => RecipeStart::BaseTensors,
            MethodConfig::Bitfit(b) if b.add_missing_biases => RecipeStart::Refused(
                "BitFit with add_missing_biases adds bias tensors that transformers' model classes have no place for; set method.add_missing_biases = false to train only the biases and norms the model has",
            ),
            MethodConfig::Bitfit(_) => RecipeStart::BaseTensors,
            MethodConfig::Lora(_)
            | MethodConfig::Dora(_)
            | MethodConfig::Adalora(_)
            | MethodConfig::Ia3(_)
            | MethodConfig::PromptTuning(_)
            | MethodConfig::PTuningV2(_) => RecipeStart::OurTensors,
            MethodConfig::PrefixTuning(p) if p.prefix_projection => RecipeStart::PeftInit(
                "PEFT saves a projected prefix as the MLP's output only, so the MLP the run trains cannot be handed over",
            ),
            MethodConfig::PrefixTuning(_) => RecipeStart::OurTensors,
            MethodConfig::PTuning(_) => RecipeStart::PeftInit(
                "PEFT saves P-Tuning's virtual tokens as the prompt encoder's output only, so the encoder the run trains cannot be handed over",
            ),
            MethodConfig::Adapter(_) => RecipeStart::AdapterHub,
        }
    }
}

/// A method attached to a model.
pub trait Method: Injector + Send + Sync {
    /// The method's own trainable tensors, named as they are exported.
    fn vars(&self) -> Vec<(String, Var)>;
    /// Fails if the method found nothing to attach to (e.g. target modules the model lacks).
    fn check_attached(&self, _module_names: &[String]) -> Result<()> {
        Ok(())
    }
    /// Called once the model is built (prompt tuning initialises from token embeddings).
    fn on_loaded(&mut self, _model: &Model, _tokenizer: &tokenizers::Tokenizer) -> Result<()> {
        Ok(())
    }
    /// Prompt embeddings and key/value prefixes for a forward pass.
    fn hooks(&self, _train: bool) -> Result<Hooks> {
        Ok(Hooks::default())
    }
    /// A term added to the training loss (AdaLoRA's orthogonality regulariser).
    fn extra_loss(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Called after each optimizer step with that step's gradients (1-based `step`);
    /// AdaLoRA reallocates its rank budget here.
    fn after_step(&mut self, _step: usize, _grads: &GradStore) -> Result<Option<RankAllocation>> {
        Ok(None)
    }
    /// Training state besides the trainable tensors that a resumed run needs to continue
    /// exactly (AdaLoRA's importance averages and rank masks), by name.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Takes back what `state` saved.
    fn load_state(&mut self, _saved: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
    /// Writes the trained weights into `dir` (which exists and is empty).
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()>;
    /// Parts whose effect is an activation rather than a weight (bottleneck adapters),
    /// measured over the evaluation passes since the last call: one update-map cell each,
    /// empty when nothing was recorded.
    fn take_activation_cells(&self) -> Vec<update_map::UpdateCell> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bert() -> ModelConfig {
        ModelConfig::Bert(
            serde_json::from_value(serde_json::json!({
                "hidden_size": 16, "intermediate_size": 24, "num_attention_heads": 4,
                "num_hidden_layers": 2, "vocab_size": 40
            }))
            .unwrap(),
        )
    }

    /// LLaMA module names become BERT's on a BERT model, with a note; names that are
    /// already BERT's stay, and a LLaMA model is left alone.
    #[test]
    fn target_modules_follow_the_model() {
        let (c, note) = MethodConfig::Ia3(Default::default()).for_model(&bert());
        let MethodConfig::Ia3(c) = c else { panic!() };
        assert_eq!(c.target_modules, ["key", "value", "output.dense"]);
        assert_eq!(c.feedforward_modules, ["output.dense"]);
        assert!(note.unwrap().contains("k_proj -> key"));
        let lora = lora::LoraConfig {
            target_modules: vec!["query".into(), "gate_proj".into()],
            ..Default::default()
        };
        let (c, note) = MethodConfig::Lora(lora.clone()).for_model(&bert());
        let MethodConfig::Lora(c) = c else { panic!() };
        assert_eq!(c.target_modules, ["query"]);
        assert!(note.unwrap().contains("gate_proj dropped"));
        let builtin = crate::models::ModelConfig::from_file(
            &crate::models::builtin_model_dir().join("config.json"),
        )
        .unwrap();
        assert_eq!(
            MethodConfig::Lora(lora.clone()).for_model(&builtin),
            (MethodConfig::Lora(lora), None)
        );
    }

    /// On a classifier every method's count includes the head it trains.
    #[test]
    fn counts_include_a_classifiers_head() {
        let m = bert();
        let head = 2 * 16 + 2;
        let lora = MethodConfig::Lora(Default::default());
        // q_proj, v_proj -> query, value: 2 layers × 2 × r(16 + 16).
        assert_eq!(lora.trainable_params(&m), 2 * 2 * 8 * 32 + head);
        assert_eq!(
            MethodConfig::Full(Default::default()).trainable_params(&m),
            m.param_count()
        );
    }
}
