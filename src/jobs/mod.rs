//! Every background task of the workbench — training a run, resuming one, a playground
//! answer, a classification, an adapter's evaluation, a merge, an export — is a [`Command`] answered by
//! [`Event`]s through one seam, a [`Backend`]. The window holds a [`Jobs`] handle and no
//! threads or locks of its own for work; the types are plain serde data, so a backend on
//! another machine can take the same commands.
//!
//! Two lanes keep the window lively: runs queue one after another on the trainer (the long
//! lane, at lowered priority), while short interactive jobs each start at once on a thread
//! of their own (the short lane), so an answer never waits behind a 20-minute run. Every
//! run and every job can be stopped.

mod local;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::config::RunConfig;
use crate::generate::Sampling;
use crate::train::RunId;

pub use local::LocalBackend;

/// A short job's id (runs have their own, [`RunId`]).
pub type JobId = u64;

/// Window (or CLI) → backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Queue a run on the long lane; it starts when the runs before it have ended.
    Train { id: RunId, config: Box<RunConfig> },
    /// Queue the continuation of the run saved in `dir` from its last checkpoint, as run `id`.
    Resume { id: RunId, dir: PathBuf },
    /// Stop run `id` at the end of its current step (or drop it from the queue).
    StopRun { id: RunId },
    /// Generate an answer to `prompt`, streamed piece by piece.
    Generate {
        job: JobId,
        model: String,
        adapter: Option<PathBuf>,
        prompt: String,
        sampling: Sampling,
        device: String,
    },
    /// A classifier's class probabilities for `text`.
    Classify {
        job: JobId,
        model: String,
        adapter: Option<PathBuf>,
        text: String,
        device: String,
    },
    /// An exported adapter's evaluation loss and metric on the examples a run of `config`
    /// evaluates on.
    Evaluate {
        job: JobId,
        config: Box<RunConfig>,
        adapter: PathBuf,
    },
    /// Fold the adapter of the run in `run_dir` into `model` and write the model to `out`.
    Merge {
        job: JobId,
        model: String,
        run_dir: PathBuf,
        out: PathBuf,
    },
    /// Copy the adapter of the run in `run_dir` to `out` (written whole or not at all).
    Export {
        job: JobId,
        run_dir: PathBuf,
        out: PathBuf,
    },
    /// Stop a short job (its result is dropped; a merge writes nothing).
    StopJob { job: JobId },
}

/// Backend → window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// What a run reports.
    Run(crate::train::Event),
    /// What a short job reports.
    Job { job: JobId, update: JobUpdate },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobUpdate {
    /// More of a generated answer.
    Text(String),
    /// The job ended with its result.
    Done(JobResult),
    Failed(String),
    /// It was stopped before it ended.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobResult {
    /// The answer is the `Text` pieces sent before.
    Generated,
    /// Class labels with their probabilities.
    Classes(Vec<(String, f64)>),
    Evaluated {
        loss: f64,
        metric: f64,
    },
    Merged {
        projections: usize,
        out: PathBuf,
    },
    Exported {
        files: usize,
        out: PathBuf,
    },
}

/// Where the work is done: this process (the [`LocalBackend`]) or, later, a machine behind
/// another transport.
pub trait Backend: Send {
    /// Hands a command over; an error says why this backend takes no more work.
    fn send(&mut self, cmd: Command) -> Result<(), String>;
    /// The next event if one is waiting; an error once the backend has died, with why.
    fn try_recv(&mut self) -> Result<Option<Event>, String>;
    /// Stops every run and job (runs save a checkpoint at their next step) and waits for
    /// the trainer to end.
    fn shutdown(&mut self);
}

/// The window's handle on its backend: commands out, events in, ids for short jobs, and
/// the reason once the backend has died (said once, then every later command is refused
/// with it).
pub struct Jobs {
    backend: Box<dyn Backend>,
    next_job: JobId,
    dead: Option<String>,
}

impl Jobs {
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Self {
            backend,
            next_job: 0,
            dead: None,
        }
    }

    /// A fresh id for a short job.
    pub fn next_job_id(&mut self) -> JobId {
        self.next_job += 1;
        self.next_job
    }

    /// Sends a command; an error (the backend is gone) is for the window to show.
    pub fn send(&mut self, cmd: Command) -> Result<(), String> {
        if let Some(why) = &self.dead {
            return Err(why.clone());
        }
        self.backend.send(cmd).inspect_err(|why| {
            self.dead = Some(why.clone());
        })
    }

    /// The next waiting event; `Err` once, when the backend is found dead.
    pub fn try_recv(&mut self) -> Result<Option<Event>, String> {
        if self.dead.is_some() {
            return Ok(None);
        }
        self.backend.try_recv().inspect_err(|why| {
            self.dead = Some(why.clone());
        })
    }

    /// Why the backend takes no more work, once it has died.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    pub fn shutdown(&mut self) {
        self.backend.shutdown();
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}
