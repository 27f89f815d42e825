//! The remote side of a connection: `peft-workbench attach` on the remote machine, reached
//! through `ssh HOST peft-workbench attach`. It says hello, then takes `jobs::Command`s on
//! stdin and writes `jobs::Event`s on stdout, one JSON object per line, running them on a
//! `LocalBackend` whose runs are written under its runs folder there.

use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Hello;
use crate::jobs::{Backend, Command, LocalBackend};

/// Serves one connection until its input ends; then every run stops at its next step (each
/// saves a checkpoint, so it can be resumed).
pub fn serve_stdio(runs_dir: PathBuf) -> Result<()> {
    std::fs::create_dir_all(&runs_dir)
        .with_context(|| format!("cannot create the runs folder {}", runs_dir.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&Hello::here())?)?;
    out.flush()?;

    let (wake_tx, wake) = crossbeam_channel::bounded::<()>(1);
    let notify = Arc::new(move || {
        let _ = wake_tx.try_send(());
    });
    let mut backend = LocalBackend::spawn(Some(runs_dir), notify);
    let (cmd_tx, commands) = crossbeam_channel::unbounded::<Command>();
    std::thread::Builder::new()
        .name("attach input".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Command>(&line) {
                    Ok(cmd) => {
                        if cmd_tx.send(cmd).is_err() {
                            break;
                        }
                    }
                    // A line this version cannot read: said on stderr, which ssh shows.
                    Err(e) => eprintln!("attach: not a command ({e}): {line}"),
                }
            }
        })
        .context("cannot start the input thread")?;

    let mut input_open = true;
    loop {
        while let Some(event) = backend.try_recv().map_err(anyhow::Error::msg)? {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        }
        out.flush()?;
        if !input_open {
            return Ok(());
        }
        crossbeam_channel::select! {
            recv(commands) -> cmd => match cmd {
                Ok(cmd) => {
                    if let Err(why) = backend.send(cmd) {
                        eprintln!("attach: {why}");
                    }
                }
                // The connection ended: stop, then write what the stop produced.
                Err(_) => {
                    backend.shutdown();
                    input_open = false;
                }
            },
            recv(wake) -> _ => {}
            default(Duration::from_millis(200)) => {}
        }
    }
}
