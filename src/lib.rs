//! peft-workbench: fine-tune language models with parameter-efficient methods and see how
//! the methods differ. The library holds everything but the window; `app` (feature `gui`)
//! draws it.

pub mod compare;
pub mod config;
pub mod data;
pub mod files;
pub mod generate;
pub mod import_run;
pub mod jobs;
pub mod kernels;
pub mod models;
pub mod peft;
pub mod pretrain;
pub mod recipe;
pub mod remote;
pub mod train;

#[cfg(feature = "gui")]
pub mod app;

use std::path::PathBuf;

/// The folder of shipped assets (built-in model and datasets): `$PEFT_WORKBENCH_ASSETS`,
/// else `assets/` beside the executable, else the source tree's `assets/`.
pub fn assets_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PEFT_WORKBENCH_ASSETS") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.join("assets")))
        && dir.join("models").is_dir()
    {
        return dir;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The error of work stopped at the user's request (an evaluation, a merge): not a failure,
/// told apart with `error.is::<Stopped>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Stopped {}

/// An error as one line for the status line, a failed run or the CLI: the whole cause chain
/// (`{:#}`), without the backtrace candle appends to its errors when `RUST_BACKTRACE` is set.
pub fn describe(e: &dyn std::fmt::Display) -> String {
    let text = format!("{e:#}");
    let is_frame = |l: &str| {
        let t = l.trim_start();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && t[digits..].starts_with(": ")) || t.starts_with("at ")
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !is_frame(l))
        .collect::<Vec<_>>()
        .join(" ")
}
