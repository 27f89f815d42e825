//! Adapter tuning (Houlsby et al., 2019): a bottleneck `up(act(down(h)))` with a skip
//! connection, `h + up(act(down(h)))`, on a sub-layer's output before it joins the residual
//! stream — after attention and after the MLP (Houlsby), or after the MLP only (Pfeiffer
//! et al., 2020). `up` starts at zero, so training starts from the base model; `down` has
//! PyTorch's default initialisation so gradients reach it as soon as `up` moves.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::export::save_vars;
use super::init::TrainLinear;
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
}

impl SublayerAdapter for Bottleneck {
    fn forward(&self, h: &Tensor, _train: bool) -> Result<Tensor> {
        let dims = h.dims().to_vec();
        let hidden = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = h.reshape((rows, hidden))?;
        let inner = self.activation.apply(&self.down.forward(&flat)?)?;
        let out = self.up.forward(&inner)?.reshape(dims)?;
        Ok((h + out)?)
    }
}

pub struct Adapter {
    cfg: AdapterConfig,
    rng: StdRng,
    device: Device,
    /// (module path, down, up) in model order.
    modules: Vec<(String, TrainLinear, TrainLinear)>,
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
        self.modules.push((
            format!("model.layers.{layer}.{name}"),
            down.clone(),
            up.clone(),
        ));
        Ok(Some(Box::new(Bottleneck {
            down,
            up,
            activation: self.cfg.activation,
        })))
    }
}

impl Method for Adapter {
    fn vars(&self) -> Vec<(String, Var)> {
        self.modules
            .iter()
            .flat_map(|(p, down, up)| {
                let mut v = down.named(&format!("{p}.down")).to_vec();
                v.extend(up.named(&format!("{p}.up")));
                v
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
