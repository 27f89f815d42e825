//! Loading exported adapters to attach them to a model — for evaluation, the `logits`
//! command and merging. Reads Hugging Face PEFT's folders (`LORA`, with or without DoRA,
//! `ADALORA`, `IA3`, `PROMPT_TUNING`, `P_TUNING`, `PREFIX_TUNING`) whoever wrote them, and
//! the project's own formats (`method.json`: trained base tensors, or Houlsby adapters).
//! Every tensor is checked against the model it is attached to, and one the model has no
//! place for is an error, never silently dropped.

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::adapter::{Activation, Bottleneck};
use super::bitfit::AddedBias;
use super::export::save_safetensors;
use super::init::TrainLinear;
use crate::files::write_dir_atomic;
use crate::models::{
    Hooks, Injector, LinearAdapter, LoadedModel, ModelConfig, ModelFiles, NoMethod, Projection,
    Site, SublayerAdapter,
};

/// The model's input token embedding table among its tensors.
pub fn token_embeddings(base: &HashMap<String, Tensor>) -> Result<&Tensor> {
    base.iter()
        .find(|(n, _)| {
            [
                "embed_tokens.weight",
                "wte.weight",
                "word_embeddings.weight",
            ]
            .iter()
            .any(|end| n.ends_with(end))
        })
        .map(|(_, t)| t)
        .context("the model has no token embedding table to compare the virtual tokens with")
}

/// An adapter read from disk, ready to attach while a model is built.
pub struct ImportedAdapter {
    /// What was read, for messages (e.g. "PEFT LORA, 12 projections").
    pub description: String,
    /// `base_model_name_or_path` as recorded.
    pub base_model: Option<String>,
    pub(super) linear: BTreeMap<String, Box<dyn LinearAdapter>>,
    sublayer: HashMap<(usize, Site), Box<dyn SublayerAdapter>>,
    replace: HashMap<String, Tensor>,
    pub(super) hooks: Hooks,
}

impl std::fmt::Debug for ImportedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedAdapter")
            .field("description", &self.description)
            .finish()
    }
}

fn load_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

pub(super) fn var(t: &Tensor) -> Result<Var> {
    Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
}

/// A list-or-string config value (PEFT writes `target_modules` either way).
pub(super) fn names(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Tensors of an adapter file, each taken once; what is left at the end was not understood.
pub(super) struct TensorBag(HashMap<String, Tensor>);

impl TensorBag {
    pub(super) fn take(&mut self, name: &str) -> Result<Tensor> {
        self.0
            .remove(name)
            .with_context(|| format!("the adapter has no tensor `{name}`"))
    }

    /// The module paths `p` of every `base_model.model.{p}{suffix}` tensor.
    pub(super) fn paths_with(&self, suffix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| {
                k.strip_prefix("base_model.model.")
                    .and_then(|k| k.strip_suffix(suffix))
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    }

    fn finish(self, what: &str) -> Result<()> {
        if let Some(name) = self.0.keys().min() {
            bail!("{what}: tensor `{name}` has no place in this model");
        }
        Ok(())
    }
}

/// The `prompt_embeddings` tensor PEFT's prompt-learning methods save, `[n, width]` (n the
/// config's `num_virtual_tokens`), checked and in f32.
pub(super) fn prompt_embeddings(cfg: &Value, bag: &mut TensorBag, width: usize) -> Result<Tensor> {
    let p = bag.take("prompt_embeddings")?;
    let n = cfg["num_virtual_tokens"]
        .as_u64()
        .unwrap_or(p.dim(0)? as u64) as usize;
    expect_shape("prompt_embeddings", &p, &[n, width])?;
    Ok(p.to_dtype(DType::F32)?)
}

/// Checks `t` has `shape`, naming the tensor and what it was made for.
pub(super) fn expect_shape(name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.dims() != shape {
        bail!(
            "the adapter's `{name}` has shape {:?} where this model needs {:?}: it was made for another model",
            t.dims(),
            shape
        );
    }
    Ok(())
}

impl ImportedAdapter {
    /// Reads the adapter folder `dir` for a model of shape `model`.
    pub fn load(dir: &Path, model: &ModelConfig, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("adapter folder {} does not exist", dir.display());
        }
        let peft_cfg = dir.join("adapter_config.json");
        let ours = dir.join("method.json");
        if peft_cfg.is_file() {
            let cfg = load_json(&peft_cfg)?;
            let file = dir.join("adapter_model.safetensors");
            if !file.is_file() {
                bail!(
                    "{} has adapter_config.json but no adapter_model.safetensors (PyTorch .bin adapters are not read)",
                    dir.display()
                );
            }
            let bag = TensorBag(
                candle_core::safetensors::load(&file, device)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            );
            Self::from_peft(&cfg, bag, model)
                .with_context(|| format!("cannot use the PEFT adapter in {}", dir.display()))
        } else if ours.is_file() {
            let cfg = load_json(&ours)?;
            let file = dir.join("model.safetensors");
            let bag = TensorBag(
                candle_core::safetensors::load(&file, device)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            );
            Self::from_ours(&cfg, bag, model)
                .with_context(|| format!("cannot use the export in {}", dir.display()))
        } else {
            bail!(
                "{} holds neither adapter_config.json (a PEFT adapter) nor method.json (this app's export)",
                dir.display()
            )
        }
    }

    fn empty(description: String, base_model: Option<String>) -> Self {
        Self {
            description,
            base_model,
            linear: BTreeMap::new(),
            sublayer: HashMap::new(),
            replace: HashMap::new(),
            hooks: Hooks::default(),
        }
    }

    fn from_peft(cfg: &Value, mut bag: TensorBag, model: &ModelConfig) -> Result<Self> {
        let peft_type = cfg["peft_type"].as_str().unwrap_or("");
        let base = cfg["base_model_name_or_path"].as_str().map(str::to_string);
        if cfg["fan_in_fan_out"].as_bool() == Some(true)
            && !matches!(model, crate::models::ModelConfig::Gpt2(_))
        {
            bail!(
                "fan_in_fan_out adapters (GPT-2's Conv1D layout) are not supported for this model"
            );
        }
        let mut out = Self::empty(format!("PEFT {peft_type}"), base);
        // Each method reads its own tensors, beside its export.
        match peft_type {
            "LORA" => super::lora::import_peft(cfg, &mut bag, model, &mut out)?,
            "ADALORA" => super::adalora::import_peft(cfg, &mut bag, model, &mut out)?,
            "IA3" => super::ia3::import_peft(cfg, &mut bag, model, &mut out)?,
            "PROMPT_TUNING" | "P_TUNING" => {
                super::prompt_tuning::import_peft(cfg, &mut bag, model, &mut out)?
            }
            "PREFIX_TUNING" => super::prefix_tuning::import_peft(cfg, &mut bag, model, &mut out)?,
            "" => bail!("adapter_config.json names no peft_type"),
            other => bail!(
                "peft_type {other} is not supported (LORA, ADALORA, IA3, PROMPT_TUNING, P_TUNING, PREFIX_TUNING are)"
            ),
        }
        // Whole modules PEFT saved beside the adapter (`modules_to_save`) replace the base's.
        let rest: Vec<String> = bag.0.keys().cloned().collect();
        let shapes: HashMap<String, Vec<usize>> = model.tensor_shapes().into_iter().collect();
        for key in rest {
            // Under a tuner (LoRA, IA3, …) or, for prompt learning, the model itself.
            let name = key
                .strip_prefix("base_model.model.")
                .or_else(|| key.strip_prefix("base_model."));
            if let Some(name) = name
                && shapes.contains_key(name)
            {
                let t = bag.take(&key)?;
                out.replace.insert(name.to_string(), t);
            }
        }
        bag.finish(&out.description)?;
        if out.linear.is_empty()
            && out.hooks.prompt_embeds.is_none()
            && out.hooks.kv_prefix.is_none()
        {
            bail!("{} holds no adapter tensor", out.description);
        }
        out.description = format!("{}, {} projections", out.description, out.linear.len());
        Ok(out)
    }

    fn from_ours(cfg: &Value, mut bag: TensorBag, model: &ModelConfig) -> Result<Self> {
        let format = cfg["format"].as_str().unwrap_or("");
        let base = cfg["base_model_name_or_path"].as_str().map(str::to_string);
        let mut out = Self::empty(format!("peft-workbench {format}"), base);
        match format {
            "peft-workbench/trained-base-v1" => {
                let shapes: HashMap<String, Vec<usize>> =
                    model.tensor_shapes().into_iter().collect();
                let projections: HashMap<String, (usize, bool)> = model
                    .projections()
                    .into_iter()
                    .map(|(p, _, o, bias)| (p, (o, bias)))
                    .collect();
                let mut keys: Vec<String> = bag.0.keys().cloned().collect();
                keys.sort();
                for name in keys {
                    let t = bag.take(&name)?;
                    if let Some(shape) = shapes.get(&name) {
                        expect_shape(&name, &t, shape)?;
                        out.replace.insert(name, t);
                    } else if let Some((path, (o, false))) = name
                        .strip_suffix(".bias")
                        .and_then(|p| projections.get(p).map(|x| (p, *x)))
                    {
                        // A bias BitFit added to a projection that had none.
                        expect_shape(&name, &t, &[o])?;
                        out.linear
                            .insert(path.to_string(), Box::new(AddedBias(var(&t)?)));
                    } else {
                        bail!("tensor `{name}` has no place in this model");
                    }
                }
            }
            "peft-workbench/adapter-v1" => {
                let activation: Activation =
                    serde_json::from_value(cfg["method"]["activation"].clone())
                        .context("method.json names no adapter activation")?;
                let h = model.hidden_size();
                for layer in 0..model.num_layers() {
                    for (site, name) in [
                        (Site::AfterAttention, "attention_adapter"),
                        (Site::AfterMlp, "output_adapter"),
                    ] {
                        let p = format!("model.layers.{layer}.{name}");
                        let Ok(down_w) = bag.take(&format!("{p}.down.weight")) else {
                            continue;
                        };
                        let m = down_w.dim(0)?;
                        expect_shape(&format!("{p}.down.weight"), &down_w, &[m, h])?;
                        let up_w = bag.take(&format!("{p}.up.weight"))?;
                        expect_shape(&format!("{p}.up.weight"), &up_w, &[h, m])?;
                        let down_b = bag.take(&format!("{p}.down.bias"))?;
                        let up_b = bag.take(&format!("{p}.up.bias"))?;
                        let down = TrainLinear {
                            weight: var(&down_w)?,
                            bias: var(&down_b)?,
                        };
                        let up = TrainLinear {
                            weight: var(&up_w)?,
                            bias: var(&up_b)?,
                        };
                        out.sublayer.insert(
                            (layer, site),
                            Box::new(Bottleneck {
                                down,
                                up,
                                activation,
                                probe: None,
                            }),
                        );
                    }
                }
            }
            other => bail!("method.json has an unknown format `{other}`"),
        }
        bag.finish(&out.description)?;
        Ok(out)
    }

    /// Prompt embeddings or key/value prefixes to pass with every forward pass.
    /// The base tensors `update_map` reads: the adapted projections' weights and biases, the
    /// replaced tensors, and the token embedding table when there are virtual tokens.
    pub fn base_tensors_read(&self, base: &HashMap<String, Tensor>) -> Vec<String> {
        let mut names: Vec<String> = self
            .linear
            .keys()
            .flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")])
            .chain(self.replace.keys().cloned())
            .collect();
        if self.hooks.prompt_embeds.is_some() {
            names.extend(
                base.keys()
                    .filter(|n| {
                        [
                            "embed_tokens.weight",
                            "wte.weight",
                            "word_embeddings.weight",
                        ]
                        .iter()
                        .any(|end| n.ends_with(end))
                    })
                    .cloned(),
            );
        }
        names
    }

    /// Where this adapter's update went, against the base model's `base` tensors (see
    /// [`super::update_map`]).
    pub fn update_map(
        &self,
        base: &HashMap<String, Tensor>,
    ) -> Result<super::update_map::UpdateMap> {
        use super::update_map::{UpdateCell, UpdateMap, layer_and_module, relative_change};
        let mut cells = Vec::new();
        let mut measure = None;
        for (path, adapter) in &self.linear {
            let wname = format!("{path}.weight");
            let weight = base
                .get(&wname)
                .with_context(|| format!("the model has no `{wname}`"))?
                .clone();
            let projection = Projection {
                weight: weight.clone(),
                bias: base.get(&format!("{path}.bias")).cloned(),
            };
            let Some(merged) = adapter.merged(&projection)? else {
                continue;
            };
            let (layer, module) = layer_and_module(path);
            let singular_values = match adapter.low_rank_factors()? {
                Some((b, a)) => super::update_map::low_rank_singular_values(&b, &a)?,
                None => Vec::new(),
            };
            cells.push(UpdateCell {
                layer,
                module,
                value: relative_change(&merged.weight, &weight)?,
                singular_values,
            });
            measure.get_or_insert("weight change |W' - W| / |W|");
        }
        let mut replaced: Vec<(&String, &Tensor)> = self.replace.iter().collect();
        replaced.sort_by(|a, b| a.0.cmp(b.0));
        for (name, new) in replaced {
            // A classifier's new head has no base tensor to compare with.
            let Some(old) = base.get(name) else { continue };
            let (layer, module) = layer_and_module(name);
            cells.push(UpdateCell {
                layer,
                module,
                value: relative_change(new, old)?,
                singular_values: Vec::new(),
            });
            measure.get_or_insert("weight change |W' - W| / |W|");
        }
        if let Some(prompt) = &self.hooks.prompt_embeds {
            let embeddings = token_embeddings(base)?;
            let row_norms = |t: &Tensor| -> Result<Vec<f32>> {
                Ok(t.to_dtype(DType::F32)?
                    .sqr()?
                    .sum(1)?
                    .sqrt()?
                    .to_vec1::<f32>()?)
            };
            let real = row_norms(embeddings)?;
            let mean = real.iter().map(|&x| x as f64).sum::<f64>() / real.len().max(1) as f64;
            for (i, n) in row_norms(prompt)?.into_iter().enumerate() {
                cells.push(UpdateCell {
                    layer: None,
                    module: format!("virtual token {i}"),
                    value: n as f64 / mean.max(1e-30),
                    singular_values: Vec::new(),
                });
            }
            measure.get_or_insert("virtual token norm / mean token embedding norm");
        }
        if let Some(prefix) = &self.hooks.kv_prefix {
            let rms = |t: &Tensor| -> Result<f64> {
                Ok((t
                    .to_dtype(DType::F32)?
                    .sqr()?
                    .mean_all()?
                    .to_scalar::<f32>()? as f64)
                    .sqrt())
            };
            for (layer, (k, v)) in prefix.iter().enumerate() {
                for (module, t) in [("prefix key", k), ("prefix value", v)] {
                    cells.push(UpdateCell {
                        layer: Some(layer),
                        module: module.into(),
                        value: rms(t)?,
                        singular_values: Vec::new(),
                    });
                }
            }
            measure.get_or_insert("RMS of the prefix entries");
        }
        Ok(UpdateMap {
            measure: measure.unwrap_or("nothing measured").to_string(),
            cells,
            nearest: Vec::new(),
            unmeasured: (!self.sublayer.is_empty()).then(|| {
                format!(
                    "{} bottleneck adapters change activations, not weights: they are measured while a run evaluates, not from its files",
                    self.sublayer.len()
                )
            }),
        })
    }

    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// Fails if a projection or sub-layer the adapter names was not found while the model
    /// was built.
    pub fn check_attached(&self) -> Result<()> {
        if let Some(path) = self.linear.keys().next() {
            bail!("the adapter adapts `{path}`, which this model does not have");
        }
        if let Some((layer, _)) = self.sublayer.keys().next() {
            bail!("the adapter has a module for layer {layer}, which this model does not have");
        }
        Ok(())
    }

    /// Folds the adapter into the base weights of the model folder `model_dir` and writes a
    /// Hugging Face model folder to `out` (the other files of the model folder copied).
    pub fn merge_into(self, model: &ModelFiles, out: &Path) -> Result<usize> {
        self.merge_into_until(model, out, &|| false)
    }

    /// The same, ending with [`crate::Stopped`] (and `out` untouched) once `stop` says so,
    /// checked between projections and before anything is written.
    pub fn merge_into_until(
        mut self,
        model: &ModelFiles,
        out: &Path,
        stop: &dyn Fn() -> bool,
    ) -> Result<usize> {
        if self.hooks.prompt_embeds.is_some() || self.hooks.kv_prefix.is_some() {
            bail!(
                "{} adds virtual tokens or key/value prefixes; there is no weight to merge it into",
                self.description
            );
        }
        if !self.sublayer.is_empty() {
            bail!(
                "adapter modules add layers to the model; they cannot be merged into its weights"
            );
        }
        let weights = model.weights(&Device::Cpu)?;
        let mut tensors = weights.tensors().clone();
        for (name, t) in std::mem::take(&mut self.replace) {
            tensors.insert(name, t);
        }
        let mut merged = 0;
        for (path, adapter) in std::mem::take(&mut self.linear) {
            if stop() {
                return Err(crate::Stopped.into());
            }
            let wname = format!("{path}.weight");
            let bname = format!("{path}.bias");
            let weight = tensors
                .get(&wname)
                .with_context(|| format!("the model has no `{wname}` to merge into"))?
                .clone();
            let base = Projection {
                weight,
                bias: tensors.get(&bname).cloned(),
            };
            let had_bias = base.bias.is_some();
            let m = adapter
                .merged(&base)?
                .with_context(|| format!("the adapter on {path} cannot be merged"))?;
            if m.bias.is_some() && !had_bias {
                bail!("merging would give {path} a bias the model's config does not declare");
            }
            tensors.insert(wname, m.weight);
            if let Some(b) = m.bias {
                tensors.insert(bname, b);
            }
            merged += 1;
        }
        let mut sorted: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| {
                // Back to the checkpoint's own layout (GPT-2's Conv1D weights are [in, out]).
                let t = match &model.config {
                    crate::models::ModelConfig::Gpt2(_) => {
                        crate::models::Gpt2Config::file_layout(&n, &t)?
                    }
                    _ => t,
                };
                Ok((n, t))
            })
            .collect::<Result<_>>()?;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        if stop() {
            return Err(crate::Stopped.into());
        }
        write_dir_atomic(out, |d| {
            save_safetensors(&d.join("model.safetensors"), &sorted)?;
            model.write_companions(d)
        })?;
        Ok(merged)
    }
}

/// The model (`"builtin"`, a folder or a `.gguf` file) on `device` with the adapter folder,
/// if any, attached, and the hooks to pass with each forward pass.
pub fn load_adapted(
    model: &str,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<(LoadedModel, Hooks)> {
    let mut files = ModelFiles::open(model)?;
    if let (crate::models::ModelConfig::Bert(c), Some(dir)) = (&mut files.config, adapter)
        && let Some(labels) = read_labels(dir)?
    {
        c.labels = labels;
    }
    let Some(adapter) = adapter else {
        return Ok((
            LoadedModel::load(&files, &mut NoMethod, device)?,
            Hooks::default(),
        ));
    };
    let mut imported = ImportedAdapter::load(adapter, &files.config, device)?;
    let loaded = LoadedModel::load(&files, &mut imported, device)?;
    imported.check_attached()?;
    Ok((loaded, imported.hooks().clone()))
}

/// The class names a classifier's export records (`labels.json`), if it has them.
pub fn read_labels(adapter: &Path) -> Result<Option<Vec<String>>> {
    let path = adapter.join("labels.json");
    if !path.is_file() {
        return Ok(None);
    }
    let v = load_json(&path)?;
    let map = v["id2label"]
        .as_object()
        .with_context(|| format!("{} has no id2label map", path.display()))?;
    let mut labels: Vec<(usize, String)> = map
        .iter()
        .map(|(k, l)| {
            Ok((
                k.parse()
                    .with_context(|| format!("{}: label id `{k}`", path.display()))?,
                l.as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect::<Result<_>>()?;
    labels.sort();
    if labels.iter().enumerate().any(|(i, (k, _))| i != *k) {
        bail!("{}: label ids must be 0, 1, 2, …", path.display());
    }
    Ok(Some(labels.into_iter().map(|(_, l)| l).collect()))
}

/// Token ids of `text` (with the tokenizer's special tokens) and, from the model with the
/// adapter folder attached, the logits at its last position (a decoder's next token) or
/// its class logits (a classifier).
pub fn last_logits(
    model: &str,
    adapter: Option<&Path>,
    text: &str,
    device: &Device,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let (loaded, hooks) = load_adapted(model, adapter, device)?;
    let ids = loaded
        .tokenizer
        .encode(text, true)
        .map_err(|e| anyhow::anyhow!("tokenizer failed: {e}"))?
        .get_ids()
        .to_vec();
    if ids.is_empty() {
        bail!("the text gives no tokens");
    }
    let input = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
    if let crate::models::Model::Bert(bert) = &loaded.model {
        let logits = bert.classify(&input, &[ids.len()], &hooks, false)?;
        return Ok((ids, logits.squeeze(0)?.to_vec1::<f32>()?));
    }
    let logits = loaded.model.decoder()?.forward(&input, &hooks, false)?;
    let last = logits
        .squeeze(0)?
        .get(logits.dim(1)? - 1)?
        .to_vec1::<f32>()?;
    Ok((ids, last))
}

impl Injector for ImportedAdapter {
    fn replace_base(&self, name: &str) -> Option<Tensor> {
        self.replace.get(name).cloned()
    }

    fn linear_adapter(
        &mut self,
        path: &str,
        base: &Projection,
    ) -> Result<Option<Box<dyn LinearAdapter>>> {
        let Some(adapter) = self.linear.remove(path) else {
            return Ok(None);
        };
        // Run it once on a zero input to check its shapes against this projection.
        let probe = Tensor::zeros((1, base.in_dim()), DType::F32, base.weight.device())?;
        let y = adapter
            .forward(&probe, base, false)
            .with_context(|| format!("the adapter on `{path}` does not fit its projection ({} × {}): it was made for another model", base.out_dim(), base.in_dim()))?;
        if y.dims() != [1, base.out_dim()] {
            bail!(
                "the adapter on `{path}` gives {:?} outputs where {} are needed",
                y.dims(),
                base.out_dim()
            );
        }
        Ok(Some(adapter))
    }

    fn sublayer_adapter(
        &mut self,
        layer: usize,
        site: Site,
        _hidden: usize,
    ) -> Result<Option<Box<dyn SublayerAdapter>>> {
        Ok(self.sublayer.remove(&(layer, site)))
    }
}
