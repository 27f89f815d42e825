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
    /// End run `id` at the end of its current step as finished, its best evaluation's
    /// tensors in `best/` ("Stop and keep best"; not resumable, no checkpoint kept).
    FinishRun { id: RunId },
    /// Generate an answer to `prompt`, streamed piece by piece.
    Generate {
        job: JobId,
        model: String,
        adapter: Option<PathBuf>,
        prompt: String,
        /// Send `prompt` as a user message in the model's chat template.
        #[serde(default)]
        chat: bool,
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
    /// What a run of `config` would train on: the examples' kinds and counts, their token
    /// lengths against `max_seq_len`, the first examples as tokenised (the window's Data
    /// view; `peft-workbench data` prints the same).
    SummarizeData { job: JobId, config: Box<RunConfig> },
    /// Fold the adapter of the run in `run_dir` into `model` and write the model to `out`.
    Merge {
        job: JobId,
        model: String,
        run_dir: PathBuf,
        out: PathBuf,
    },
    /// Copy the adapter of the run in `run_dir` to `out` (written whole or not at all): the
    /// last step's (`adapter/`), or with `best` early stopping's best (`best/`).
    Export {
        job: JobId,
        run_dir: PathBuf,
        out: PathBuf,
        #[serde(default)]
        best: bool,
    },
    /// Write the run `config` describes as a PyTorch recipe (`crate::recipe`) into `out`.
    WriteRecipe {
        job: JobId,
        config: Box<RunConfig>,
        out: PathBuf,
        #[serde(default)]
        target: crate::recipe::Target,
    },
    /// Turn the outside run in `dir` (a Trainer or LLaMA-Factory output folder) into the
    /// run folder `out` (`crate::import_run`).
    ImportRun {
        job: JobId,
        dir: PathBuf,
        out: PathBuf,
    },
    /// Ask a remote machine what it is ("Test connection").
    ProbeMachine {
        job: JobId,
        machine: crate::remote::Machine,
    },
    /// The host keys a remote machine offers, for the user to compare with the provider's.
    HostKeys {
        job: JobId,
        machine: crate::remote::Machine,
    },
    /// Add host keys the user checked to the known_hosts file ssh uses for the machine.
    Trust {
        job: JobId,
        machine: crate::remote::Machine,
        keys: Vec<String>,
    },
    /// Bring the finished run `run` of a remote machine home into `dest`; `started_from`,
    /// the config it was started from here, names the files sent for it by their paths here.
    Pull {
        job: JobId,
        machine: crate::remote::Machine,
        run: String,
        dest: PathBuf,
        started_from: Option<Box<RunConfig>>,
    },
    /// Send what a run of `config` on `machine` needs from this machine (its dataset, a
    /// model folder) there; the result is the config as it reads there.
    Upload {
        job: JobId,
        machine: crate::remote::Machine,
        config: Box<RunConfig>,
    },
    /// Install `binary` (with the built-in assets) on `machine` and ask it what it is.
    Install {
        job: JobId,
        machine: crate::remote::Machine,
        binary: PathBuf,
    },
    /// Stop a short job (its result is dropped; a merge writes nothing).
    StopJob { job: JobId },
}

/// Backend → window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireEvent", from = "WireEvent")]
pub enum Event {
    /// What a run reports.
    Run(crate::train::Event),
    /// What a short job reports.
    Job { job: JobId, update: JobUpdate },
}

/// An `Event` as it crosses to another process. A run's step and evaluation points leave
/// out their run's id when serialised (they are `metrics.jsonl`'s lines, where it means
/// nothing), so the id travels beside the event.
#[derive(Serialize, Deserialize)]
enum WireEvent {
    Run {
        run: RunId,
        event: crate::train::Event,
    },
    Job {
        job: JobId,
        update: JobUpdate,
    },
}

impl From<Event> for WireEvent {
    fn from(e: Event) -> Self {
        match e {
            Event::Run(event) => WireEvent::Run {
                run: event.run(),
                event,
            },
            Event::Job { job, update } => WireEvent::Job { job, update },
        }
    }
}

impl From<WireEvent> for Event {
    fn from(w: WireEvent) -> Self {
        match w {
            WireEvent::Run { run, mut event } => {
                event.set_run(run);
                Event::Run(event)
            }
            WireEvent::Job { job, update } => Event::Job { job, update },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobUpdate {
    /// More of a generated answer.
    Text(String),
    /// How far a transfer has come, in bytes.
    Progress {
        done: u64,
        total: u64,
    },
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
    DataSummary(Box<crate::train::data_summary::DataSummary>),
    Merged {
        projections: usize,
        out: PathBuf,
    },
    Exported {
        files: usize,
        out: PathBuf,
    },
    RecipeWritten {
        steps: usize,
        out: PathBuf,
        #[serde(default)]
        target: crate::recipe::Target,
    },
    RunImported {
        steps: usize,
        out: PathBuf,
        /// Its adapter's task metric (name, value), measured on import, or why not.
        metric: Result<(String, f64), String>,
    },
    /// What "Test connection" shows, and the devices a run can use there.
    Probed {
        text: String,
        devices: Vec<String>,
    },
    /// `known_hosts` lines and their fingerprints.
    HostKeys {
        keys: Vec<String>,
        fingerprints: Vec<String>,
    },
    Trusted {
        file: PathBuf,
    },
    Pulled {
        files: usize,
        dest: PathBuf,
    },
    /// Installed at `binary` there; what the installed program answers.
    Installed {
        binary: String,
        text: String,
        devices: Vec<String>,
    },
    /// A run's files are on the machine; `config` names them there.
    Uploaded {
        config: Box<RunConfig>,
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
    /// The remote machines connected so far, by name.
    remotes: Vec<(String, Box<dyn Backend>)>,
}

/// A backend that has died: which (None: this machine's) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Gone {
    pub machine: Option<String>,
    pub why: String,
}

impl Jobs {
    pub fn new(backend: Box<dyn Backend>) -> Self {
        Self {
            backend,
            next_job: 0,
            dead: None,
            remotes: Vec::new(),
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

    /// Connects to a remote machine again (in the background) after its connection was lost:
    /// its daemon sends what happened meanwhile.
    pub fn reconnect(
        &mut self,
        machine: &crate::remote::Machine,
        notify: crate::train::worker::Notify,
    ) {
        if self.remotes.iter().all(|(n, _)| *n != machine.name) {
            let backend = crate::remote::backend::Connecting::start(machine.clone(), notify);
            self.remotes.push((machine.name.clone(), Box::new(backend)));
        }
    }

    /// Sends a command to a remote machine's backend, connecting first (in the background:
    /// commands wait until the machine has said hello) if it is not connected.
    pub fn send_on(
        &mut self,
        machine: &crate::remote::Machine,
        cmd: Command,
        notify: crate::train::worker::Notify,
    ) -> Result<(), String> {
        let i = match self.remotes.iter().position(|(n, _)| *n == machine.name) {
            Some(i) => i,
            None => {
                let backend = crate::remote::backend::Connecting::start(machine.clone(), notify);
                self.remotes.push((machine.name.clone(), Box::new(backend)));
                self.remotes.len() - 1
            }
        };
        self.remotes[i].1.send(cmd).inspect_err(|_| {
            let (_, mut gone) = self.remotes.remove(i);
            gone.shutdown();
        })
    }

    /// The next waiting event, from this machine or a remote one; `Err` once for each
    /// backend found dead (a remote one is dropped, and connected again when next used).
    pub fn try_recv(&mut self) -> Result<Option<Event>, Gone> {
        if self.dead.is_none() {
            match self.backend.try_recv() {
                Ok(Some(e)) => return Ok(Some(e)),
                Ok(None) => {}
                Err(why) => {
                    self.dead = Some(why.clone());
                    return Err(Gone { machine: None, why });
                }
            }
        }
        for i in 0..self.remotes.len() {
            match self.remotes[i].1.try_recv() {
                Ok(Some(e)) => return Ok(Some(e)),
                Ok(None) => {}
                Err(why) => {
                    let (name, mut gone) = self.remotes.remove(i);
                    gone.shutdown();
                    return Err(Gone {
                        machine: Some(name),
                        why,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Why the backend takes no more work, once it has died.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    pub fn shutdown(&mut self) {
        for (_, r) in &mut self.remotes {
            r.shutdown();
        }
        self.backend.shutdown();
    }
}

impl Drop for Jobs {
    fn drop(&mut self) {
        self.backend.shutdown();
    }
}
