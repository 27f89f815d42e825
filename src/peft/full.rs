//! Full fine-tuning: every base weight trains. The baseline the PEFT methods are measured
//! against.

use anyhow::Result;
use candle_core::Var;
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::{ExportContext, Method, MethodConfig, export::export_trained_base};
use crate::models::Injector;

/// Full fine-tuning has no parameters of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullConfig {}

pub struct Full {
    cfg: FullConfig,
}

impl Full {
    pub fn new(cfg: FullConfig) -> Self {
        Self { cfg }
    }
}

impl Injector for Full {
    fn trains_base(&self, _name: &str) -> bool {
        true
    }
}

impl Method for Full {
    fn vars(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    fn export(&self, dir: &Path, ctx: &ExportContext) -> Result<()> {
        export_trained_base(dir, &MethodConfig::Full(self.cfg.clone()), ctx, &[])
    }
}
