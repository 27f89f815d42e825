//! P-Tuning (Liu et al., 2021), as Hugging Face PEFT's prompt encoder: n virtual-token
//! embeddings pass through an encoder whose output is the prompt placed before the input.
//! `lstm`: a bidirectional LSTM (candle-nn's cell, one per direction and layer) then
//! `Linear(2h, 2h) → ReLU → Linear(2h, hidden)`; `mlp`: `Linear(hidden, h) → ReLU →
//! Linear(h, h) → ReLU → Linear(h, hidden)`. Only the encoder's output is needed at
//! inference, and that is what the export holds.

use anyhow::Result;
use candle_core::{D, Device, Tensor, Var};
use candle_nn::rnn::{LSTM, LSTMConfig, RNN};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::init::{self, TrainLinear};
use super::prompt_tuning::{
    default_tokens, prompt_learning_config, save_prompt_adapter, validate_tokens,
};
use super::{ExportContext, Method};
use crate::models::{Hooks, Injector, ModelConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderType {
    #[default]
    Lstm,
    Mlp,
}

impl EncoderType {
    pub const ALL: [EncoderType; 2] = [EncoderType::Lstm, EncoderType::Mlp];

    pub fn name(self) -> &'static str {
        match self {
            EncoderType::Lstm => "lstm",
            EncoderType::Mlp => "mlp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PTuningConfig {
    #[serde(default = "default_tokens")]
    pub num_virtual_tokens: usize,
    #[serde(default)]
    pub encoder_type: EncoderType,
    /// Width h of the encoder.
    #[serde(default = "default_encoder_hidden")]
    pub encoder_hidden_size: usize,
    /// LSTM layers (the MLP encoder always has three linear layers).
    #[serde(default = "default_encoder_layers")]
    pub encoder_num_layers: usize,
    /// Dropout between LSTM layers while training.
    #[serde(default)]
    pub encoder_dropout: f32,
}

fn default_encoder_hidden() -> usize {
    128
}
fn default_encoder_layers() -> usize {
    2
}

impl Default for PTuningConfig {
    fn default() -> Self {
        Self {
            num_virtual_tokens: default_tokens(),
            encoder_type: EncoderType::default(),
            encoder_hidden_size: default_encoder_hidden(),
            encoder_num_layers: default_encoder_layers(),
            encoder_dropout: 0.0,
        }
    }
}

impl PTuningConfig {
    pub fn validate(&self) -> std::result::Result<(), (String, String)> {
        validate_tokens(self.num_virtual_tokens)?;
        if self.encoder_hidden_size == 0 {
            return Err(("encoder_hidden_size".into(), "must be at least 1".into()));
        }
        if self.encoder_type == EncoderType::Lstm && self.encoder_num_layers == 0 {
            return Err(("encoder_num_layers".into(), "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.encoder_dropout) {
            return Err(("encoder_dropout".into(), "must be in [0, 1)".into()));
        }
        Ok(())
    }

    /// Embedding n·d plus the encoder: per LSTM layer and direction `4h·(in + h) + 8h`
    /// (PyTorch's two bias vectors), then the two-layer head; or the three-layer MLP.
    pub fn param_count(&self, model: &ModelConfig) -> usize {
        let (d, h) = (model.hidden_size(), self.encoder_hidden_size);
        let lin = TrainLinear::param_count;
        let encoder = match self.encoder_type {
            EncoderType::Lstm => {
                let lstm: usize = (0..self.encoder_num_layers)
                    .map(|l| {
                        let input = if l == 0 { d } else { 2 * h };
                        2 * (4 * h * (input + h) + 8 * h)
                    })
                    .sum();
                lstm + lin(2 * h, 2 * h) + lin(2 * h, d)
            }
            EncoderType::Mlp => lin(d, h) + lin(h, h) + lin(h, d),
        };
        self.num_virtual_tokens * d + encoder
    }
}

/// One direction of one LSTM layer: candle-nn's cell over seeded PyTorch-initialised
/// weights (U(±1/√h) for all four tensors).
struct LstmDirection {
    cell: LSTM,
    vars: Vec<(String, Var)>,
}

impl LstmDirection {
    fn new(
        rng: &mut StdRng,
        layer: usize,
        reverse: bool,
        input: usize,
        h: usize,
        device: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (h as f32).sqrt();
        // PyTorch's names, which are also the ones candle-nn's LSTM asks for.
        let suffix = format!("l{layer}{}", if reverse { "_reverse" } else { "" });
        let vars = vec![
            (
                format!("weight_ih_{suffix}"),
                init::uniform(rng, &[4 * h, input], bound, device)?,
            ),
            (
                format!("weight_hh_{suffix}"),
                init::uniform(rng, &[4 * h, h], bound, device)?,
            ),
            (
                format!("bias_ih_{suffix}"),
                init::uniform(rng, &[4 * h], bound, device)?,
            ),
            (
                format!("bias_hh_{suffix}"),
                init::uniform(rng, &[4 * h], bound, device)?,
            ),
        ];
        // candle-nn's LSTM reads its tensors from a VarBuilder; a VarMap holding our own Vars
        // under those names hands them over without copying.
        let map = candle_nn::VarMap::new();
        map.data()
            .lock()
            .expect("a fresh map is not poisoned")
            .extend(vars.iter().cloned());
        let vb = candle_nn::VarBuilder::from_varmap(&map, candle_core::DType::F32, device);
        let direction = if reverse {
            candle_nn::rnn::Direction::Backward
        } else {
            candle_nn::rnn::Direction::Forward
        };
        let cell = candle_nn::lstm(
            input,
            h,
            LSTMConfig {
                layer_idx: layer,
                direction,
                ..Default::default()
            },
            vb,
        )?;
        Ok(Self { cell, vars })
    }

    /// `x: [1, n, in]` → `[1, n, h]`, read backwards when `reverse`.
    fn forward(&self, x: &Tensor, reverse: bool) -> Result<Tensor> {
        let n = x.dim(1)?;
        let flip: Vec<u32> = (0..n as u32).rev().collect();
        let flip = Tensor::new(flip.as_slice(), x.device())?;
        let input = if reverse {
            x.index_select(&flip, 1)?
        } else {
            x.clone()
        };
        let states = self.cell.seq(&input)?;
        let out = self.cell.states_to_tensor(&states)?;
        Ok(if reverse {
            out.index_select(&flip, 1)?
        } else {
            out
        })
    }
}

enum Encoder {
    Lstm {
        layers: Vec<(LstmDirection, LstmDirection)>,
        dropout: f32,
        head: (TrainLinear, TrainLinear),
    },
    Mlp(TrainLinear, TrainLinear, TrainLinear),
}

pub struct PTuning {
    cfg: PTuningConfig,
    /// `[n, hidden]`, the encoder's input.
    embedding: Var,
    encoder: Encoder,
}

impl PTuning {
    pub fn new(cfg: PTuningConfig, model: &ModelConfig, seed: u64, device: Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5054_756e);
        let (d, h) = (model.hidden_size(), cfg.encoder_hidden_size);
        let embedding = init::normal(&mut rng, &[cfg.num_virtual_tokens, d], 1.0, &device)?;
        let encoder = match cfg.encoder_type {
            EncoderType::Lstm => {
                let mut layers = Vec::new();
                for l in 0..cfg.encoder_num_layers {
                    let input = if l == 0 { d } else { 2 * h };
                    let fwd = LstmDirection::new(&mut rng, l, false, input, h, &device)?;
                    let bwd = LstmDirection::new(&mut rng, l, true, input, h, &device)?;
                    layers.push((fwd, bwd));
                }
                Encoder::Lstm {
                    layers,
                    dropout: cfg.encoder_dropout,
                    head: (
                        TrainLinear::new(&mut rng, 2 * h, 2 * h, &device)?,
                        TrainLinear::new(&mut rng, 2 * h, d, &device)?,
                    ),
                }
            }
            EncoderType::Mlp => Encoder::Mlp(
                TrainLinear::new(&mut rng, d, h, &device)?,
                TrainLinear::new(&mut rng, h, h, &device)?,
                TrainLinear::new(&mut rng, h, d, &device)?,
            ),
        };
        Ok(Self {
            cfg,
            embedding,
            encoder,
        })
    }

    /// The prompt `[n, hidden]`.
    pub fn prompt(&self, train: bool) -> Result<Tensor> {
        let e = self.embedding.as_tensor();
        Ok(match &self.encoder {
            Encoder::Lstm {
                layers,
                dropout,
                head,
            } => {
                let mut x = e.unsqueeze(0)?;
                for (i, (fwd, bwd)) in layers.iter().enumerate() {
                    x = Tensor::cat(
                        &[fwd.forward(&x, false)?, bwd.forward(&x, true)?],
                        D::Minus1,
                    )?;
                    if train && *dropout > 0.0 && i + 1 < layers.len() {
                        x = candle_nn::ops::dropout(&x, *dropout)?;
                    }
                }
                let x = x.squeeze(0)?;
                head.1.forward(&head.0.forward(&x)?.relu()?)?
            }
            Encoder::Mlp(a, b, c) => c.forward(&b.forward(&a.forward(e)?.relu()?)?.relu()?)?,
        })
    }
}

impl Injector for PTuning {}

impl Method for PTuning {
    fn vars(&self) -> Vec<(String, Var)> {
        let mut v = vec![(
            "prompt_encoder.embedding.weight".to_string(),
            self.embedding.clone(),
        )];
        match &self.encoder {
            Encoder::Lstm { layers, head, .. } => {
                for (fwd, bwd) in layers {
                    for (n, var) in fwd.vars.iter().chain(&bwd.vars) {
                        v.push((format!("prompt_encoder.lstm_head.{n}"), var.clone()));
                    }
                }
                v.extend(head.0.named("prompt_encoder.mlp_head.0"));
                v.extend(head.1.named("prompt_encoder.mlp_head.2"));
            }
            Encoder::Mlp(a, b, c) => {
                v.extend(a.named("prompt_encoder.mlp_head.0"));
                v.extend(b.named("prompt_encoder.mlp_head.2"));
                v.extend(c.named("prompt_encoder.mlp_head.4"));
            }
        }
        v
    }

    fn hooks(&self, train: bool) -> Result<Hooks> {
        Ok(Hooks {
            prompt_embeds: Some(self.prompt(train)?),
            kv_prefix: None,
        })
    }

    /// PEFT's P_TUNING folder: the encoder's output as `prompt_embeddings` `[n, hidden]`.
    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        let m = ctx.model;
        let mut c = prompt_learning_config(
            "P_TUNING",
            self.cfg.num_virtual_tokens,
            m.hidden_size(),
            m.num_layers(),
            m.num_heads(),
            ctx.base_model,
        );
        let kind = match self.cfg.encoder_type {
            EncoderType::Lstm => "LSTM",
            EncoderType::Mlp => "MLP",
        };
        c.insert("encoder_reparameterization_type".into(), kind.into());
        c.insert(
            "encoder_hidden_size".into(),
            self.cfg.encoder_hidden_size.into(),
        );
        c.insert(
            "encoder_num_layers".into(),
            self.cfg.encoder_num_layers.into(),
        );
        c.insert(
            "encoder_dropout".into(),
            (self.cfg.encoder_dropout as f64).into(),
        );
        save_prompt_adapter(dir, self.prompt(false)?, c)
    }
}
