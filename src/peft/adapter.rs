//! Adapter tuning (Houlsby et al., 2019): a bottleneck `up(act(down(h)))` with a skip
//! connection, `h + up(act(down(h)))`, on a sub-layer's output before it joins the residual
//! stream — after attention and after the MLP (Houlsby), or after the MLP only (Pfeiffer
//! et al., 2020). `up` starts at zero, so training starts from the base model; `down` has
//! PyTorch's default initialisation so gradients reach it as soon as `up` moves.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::export::save_vars;
use super::init::TrainLinear;
use super::update_map::{UpdateCell, layer_and_module};
use super::{ExportContext, Method, MethodConfig};
use crate::files::save_json;
use crate::models::{Injector, ModelConfig, Site, SublayerAdapter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AdapterVariant {
    /// After attention and after the MLP of every block.
    #[default]
    Houlsby,
    /// After the MLP only.
    Pfeiffer,
}

impl AdapterVariant {
    pub const ALL: [AdapterVariant; 2] = [AdapterVariant::Houlsby, AdapterVariant::Pfeiffer];

    pub fn name(self) -> &'static str {
        match self {
            AdapterVariant::Houlsby => "houlsby",
            AdapterVariant::Pfeiffer => "pfeiffer",
        }
    }

    fn sites(self) -> &'static [Site] {
        match self {
            AdapterVariant::Houlsby => &[Site::AfterAttention, Site::AfterMlp],
            AdapterVariant::Pfeiffer => &[Site::AfterMlp],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    #[default]
    Gelu,
    Silu,
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Relu, Activation::Gelu, Activation::Silu];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu_erf(),
            Activation::Silu => x.silu(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// Width m of the bottleneck.
    #[serde(default = "default_bottleneck")]
    pub bottleneck: usize,
    #[serde(default)]
    pub variant: AdapterVariant,
    /// Nonlinearity between `down` and `up`.
    #[serde(default)]
    pub activation: Activation,
}

fn default_bottleneck() -> usize {
    32
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            bottleneck: default_bottleneck(),
            variant: AdapterVariant::default(),
            activation: Activation::default(),
        }
    }
}

impl AdapterConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        if self.bottleneck == 0 {
            return Err(("bottleneck".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// Per adapter `2·h·m + m + h` (both matrices and biases), one or two per block.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        let (h, m) = (model.hidden_size(), self.bottleneck);
        model.num_layers() * self.variant.sites().len() * (2 * h * m + m + h)
    }
}

#[derive(Debug)]
pub(crate) struct Bottleneck {
    pub(crate) down: TrainLinear,
    pub(crate) up: TrainLinear,
    pub(crate) activation: Activation,
    /// Where evaluation passes record the size of what the bottleneck adds (a run in
    /// training has one; an imported adapter, which only runs, has none).
    pub(crate) probe: Option<Arc<ActivationProbe>>,
}

impl SublayerAdapter for Bottleneck {
    fn forward(&self, h: &Tensor, residual: &Tensor, train: bool) -> Result<Tensor> {
        let dims = h.dims().to_vec();
        let hidden = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = h.reshape((rows, hidden))?;
        let inner = self.activation.apply(&self.down.forward(&flat)?)?;
        let out = self.up.forward(&inner)?.reshape(dims)?;
        if !train && let Some(probe) = &self.probe {
            probe.record(&out, residual)?;
        }
        Ok((h + out)?)
    }
}

/// The summed squares of a bottleneck's output and of the residual stream it joins, over
/// the evaluation passes since it was last read: a bottleneck changes activations, not
/// weights, so its share of the residual stream is what the update map shows for it.
/// Every position of the evaluation batches counts, padding included (the adapter does not
/// see the mask; padding is a few per cent of the built-in eval batches' positions).
#[derive(Debug, Default)]
pub struct ActivationProbe {
    sums: Mutex<(f64, f64)>,
}

impl ActivationProbe {
    fn record(&self, added: &Tensor, residual: &Tensor) -> Result<()> {
        let sum_sq = |t: &Tensor| -> Result<f64> {
            Ok(t.to_dtype(DType::F32)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()? as f64)
        };
        let (a, r) = (sum_sq(added)?, sum_sq(residual)?);
        let mut sums = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        sums.0 += a;
        sums.1 += r;
        Ok(())
    }

    /// √(Σ‖added‖² / Σ‖residual‖²) since the last reading (None: nothing was recorded),
    /// starting the sums again.
    pub fn take(&self) -> Option<f64> {
        let mut sums = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        let (added, residual) = std::mem::take(&mut *sums);
        (residual > 0.0).then(|| (added / residual).sqrt())
    }
}

pub struct Adapter {
    cfg: AdapterConfig,
    rng: StdRng,
    device: Device,
    /// (module path, down, up, its probe) in model order.
    modules: Vec<(String, TrainLinear, TrainLinear, Arc<ActivationProbe>)>,
}

impl Adapter {
    pub fn new(cfg: AdapterConfig, seed: u64, device: Device) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed ^ 0x4164_6170),
            device,
            modules: Vec::new(),
        }
    }
}

impl Injector for Adapter {
    fn sublayer_adapter(
        &mut self,
        layer: usize,
        site: Site,
        hidden: usize,
    ) -> Result<Option<Box<dyn SublayerAdapter>>> {
        if !self.cfg.variant.sites().contains(&site) {
            return Ok(None);
        }
        let m = self.cfg.bottleneck;
        let down = TrainLinear::new(&mut self.rng, hidden, m, &self.device)?;
        let up = TrainLinear {
            weight: Var::zeros((hidden, m), candle_core::DType::F32, &self.device)?,
            bias: Var::zeros(hidden, candle_core::DType::F32, &self.device)?,
        };
        let name = match site {
            Site::AfterAttention => "attention_adapter",
            Site::AfterMlp => "output_adapter",
        };
        let probe = Arc::new(ActivationProbe::default());
        self.modules.push((
            format!("model.layers.{layer}.{name}"),
            down.clone(),
            up.clone(),
            probe.clone(),
        ));
        Ok(Some(Box::new(Bottleneck {
            down,
            up,
            activation: self.cfg.activation,
            probe: Some(probe),
        })))
    }
}

impl Method for Adapter {
    fn vars(&self) -> Vec<(String, Var)> {
        self.modules
            .iter()
            .flat_map(|(p, down, up, _)| {
                let mut v = down.named(&format!("{p}.down")).to_vec();
                v.extend(up.named(&format!("{p}.up")));
                v
            })
            .collect()
    }

    /// Each bottleneck's output over the residual stream it joins (RMS ratio).
    fn take_activation_cells(&self) -> Vec<UpdateCell> {
        self.modules
            .iter()
            .filter_map(|(path, _, _, probe)| {
                let value = probe.take()?;
                let (layer, module) = layer_and_module(path);
                Some(UpdateCell {
                    layer,
                    module,
                    value,
                    singular_values: Vec::new(),
                })
            })
            .collect()
    }

    /// PEFT has no Houlsby adapters, so this is the project's format: the adapter tensors
    /// under `model.layers.N.{attention,output}_adapter.{down,up}.{weight,bias}` and
    /// `method.json`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let vars = self.vars();
        save_vars(&dir.join("model.safetensors"), &vars)?;
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        save_json(
            &dir.join("method.json"),
            &serde_json::json!({
                "format": "peft-workbench/adapter-v1",
                "base_model_name_or_path": ctx.base_model,
                "method": MethodConfig::Adapter(self.cfg.clone()),
                "tensors": names,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's reading is √(Σ‖up(f(down h))‖² / Σ‖residual‖²) over the evaluation
    /// passes since the last reading; training passes are not counted.
    #[test]
    fn the_probe_reads_the_added_part_against_the_residual_stream() {
        let dev = Device::Cpu;
        let var = |data: &[f32], shape: &[usize]| {
            Var::from_tensor(&Tensor::from_slice(data, shape, &dev).unwrap()).unwrap()
        };
        // h = 2 → m = 1 → h = 2, ReLU.
        let probe = Arc::new(ActivationProbe::default());
        let b = Bottleneck {
            down: TrainLinear {
                weight: var(&[1.0, 1.0], &[1, 2]),
                bias: var(&[0.0], &[1]),
            },
            up: TrainLinear {
                weight: var(&[2.0, -1.0], &[2, 1]),
                bias: var(&[0.0, 0.5], &[2]),
            },
            activation: Activation::Relu,
            probe: Some(probe.clone()),
        };
        let h = Tensor::from_slice(&[1.0f32, 2.0, -3.0, 1.0], (1, 2, 2), &dev).unwrap();
        let residual = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 5.0], (1, 2, 2), &dev).unwrap();
        assert_eq!(probe.take(), None, "nothing recorded yet");
        b.forward(&h, &residual, true).unwrap();
        assert_eq!(probe.take(), None, "training passes are not recorded");
        let out = b.forward(&h, &residual, false).unwrap();
        b.forward(&h, &residual, false).unwrap();
        // Position 1: relu(1 + 2) = 3 → (6, -3 + 0.5); position 2: relu(-2) = 0 → (0, 0.5).
        let added = [6.0f64, -2.5, 0.0, 0.5];
        let expected =
            (2.0 * added.iter().map(|a| a * a).sum::<f64>() / (2.0 * (9.0 + 16.0 + 25.0))).sqrt();
        let got = probe.take().unwrap();
        assert!(
            (got - expected).abs() < 1e-6 * expected,
            "{got} vs {expected}"
        );
        assert_eq!(probe.take(), None, "a reading starts the sums again");
        let out = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(out, [7.0, -0.5, -3.0, 1.5]);
    }
}
