//! The backend in this process: the trainer thread for runs (the long lane) and a thread
//! per short job (the short lane), each with its stop flag.

use crossbeam_channel::{Receiver, Sender, TryRecvError, unbounded};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Backend, Command, Event, JobId, JobResult, JobUpdate};
use crate::train::worker::{self, Notify, WorkerHandle};

/// How many examples the Data view shows as tokenised: enough to see the template and the
/// loss mask repeat, few enough to read without scrolling far.
const DATA_EXAMPLES_SHOWN: usize = 3;

/// What a command to a trainer that has ended gets.
const TRAINER_GONE: &str =
    "the trainer has stopped, so nothing more can train; restart the workbench";

pub struct LocalBackend {
    trainer: WorkerHandle,
    /// Short jobs' events (the trainer has its own channel).
    job_events: (Sender<Event>, Receiver<Event>),
    /// The stop flag of each short job still running (its thread holds the other clone).
    stops: HashMap<JobId, Arc<AtomicBool>>,
    notify: Notify,
    /// `shutdown` ended the trainer: its channel closing is expected, not a death.
    shut_down: bool,
}

impl LocalBackend {
    /// Starts the trainer thread; runs write their folders under `runs_dir` (None: nothing
    /// is written). `notify` is called after each event (the window asks for a repaint).
    pub fn spawn(runs_dir: Option<std::path::PathBuf>, notify: Notify) -> Self {
        Self {
            trainer: worker::spawn(runs_dir, notify.clone()),
            job_events: unbounded(),
            stops: HashMap::new(),
            notify,
            shut_down: false,
        }
    }

    /// Runs `work` on a thread of its own as job `job`: its updates and its end become
    /// events; a panic ends the job as failed, not the workbench.
    fn start_job<F>(&mut self, job: JobId, work: F)
    where
        F: FnOnce(&dyn Fn(JobUpdate), &(dyn Fn() -> bool + Sync)) -> anyhow::Result<JobResult>
            + Send
            + 'static,
    {
        // Ended jobs' flags go (only the map holds them then).
        self.stops.retain(|_, flag| Arc::strong_count(flag) > 1);
        let stop = Arc::new(AtomicBool::new(false));
        self.stops.insert(job, stop.clone());
        let (events, notify) = (self.job_events.0.clone(), self.notify.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("job {job}"))
            .spawn(move || {
                let send = |update: JobUpdate| {
                    // The window may be gone when the app closes: only the message is lost.
                    let _ = events.send(Event::Job { job, update });
                    notify();
                };
                let stopped = || stop.load(Ordering::Acquire);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    work(&send, &stopped)
                }));
                send(match result {
                    _ if stopped() => JobUpdate::Stopped,
                    Ok(Ok(done)) => JobUpdate::Done(done),
                    Ok(Err(e)) if e.is::<crate::Stopped>() => JobUpdate::Stopped,
                    Ok(Err(e)) => JobUpdate::Failed(crate::describe(&e)),
                    Err(_) => JobUpdate::Failed(
                        "internal error; the job stopped, the workbench goes on".into(),
                    ),
                });
            });
        if let Err(e) = spawned {
            let _ = self.job_events.0.send(Event::Job {
                job,
                update: JobUpdate::Failed(format!("cannot start a thread: {e}")),
            });
        }
    }

    fn to_trainer(&self, cmd: crate::train::Command) -> Result<(), String> {
        self.trainer
            .commands
            .send(cmd)
            .map_err(|_| TRAINER_GONE.to_string())
    }
}

impl Backend for LocalBackend {
    fn send(&mut self, cmd: Command) -> Result<(), String> {
        use crate::train::Command as Trainer;
        match cmd {
            Command::Train { id, config } => self.to_trainer(Trainer::Start { id, config }),
            Command::Resume { id, dir } => self.to_trainer(Trainer::Resume { id, dir }),
            Command::StopRun { id } => self.to_trainer(Trainer::Stop { id }),
            Command::FinishRun { id } => self.to_trainer(Trainer::Finish { id }),
            Command::StopJob { job } => {
                if let Some(flag) = self.stops.get(&job) {
                    flag.store(true, Ordering::Release);
                }
                Ok(())
            }
            Command::Generate {
                job,
                model,
                adapter,
                prompt,
                chat,
                sampling,
                device,
            } => {
                self.start_job(job, move |send, stopped| {
                    let device = crate::train::device_for(&device)?;
                    let prompt = if chat {
                        crate::generate::chat_prompt(&model, &prompt)?
                    } else {
                        prompt
                    };
                    crate::generate::generate_text(
                        &model,
                        adapter.as_deref(),
                        &prompt,
                        &sampling,
                        &device,
                        &mut |piece| {
                            send(JobUpdate::Text(piece.to_string()));
                            !stopped()
                        },
                    )?;
                    Ok(JobResult::Generated)
                });
                Ok(())
            }
            Command::Classify {
                job,
                model,
                adapter,
                text,
                device,
            } => {
                self.start_job(job, move |_, _| {
                    let device = crate::train::device_for(&device)?;
                    let classes =
                        crate::generate::classify_text(&model, adapter.as_deref(), &text, &device)?;
                    Ok(JobResult::Classes(
                        classes.into_iter().map(|(l, p)| (l, p as f64)).collect(),
                    ))
                });
                Ok(())
            }
            Command::Evaluate {
                job,
                config,
                adapter,
            } => {
                self.start_job(job, move |_, stopped| {
                    let (loss, metric) =
                        crate::train::evaluate_adapter_until(&config, &adapter, stopped)?;
                    Ok(JobResult::Evaluated { loss, metric })
                });
                Ok(())
            }
            Command::SummarizeData { job, config } => {
                self.start_job(job, move |_, _| {
                    let summary =
                        crate::train::data_summary::summarize(&config, DATA_EXAMPLES_SHOWN)?;
                    Ok(JobResult::DataSummary(Box::new(summary)))
                });
                Ok(())
            }
            Command::Merge {
                job,
                model,
                run_dir,
                out,
            } => {
                self.start_job(job, move |_, stopped| {
                    let projections = merge_run(&model, &run_dir, &out, stopped)?;
                    Ok(JobResult::Merged { projections, out })
                });
                Ok(())
            }
            Command::ProbeMachine { job, machine } => {
                self.start_job(job, move |_, _| {
                    let probe = crate::remote::probe::Probe::run(&machine)?;
                    let devices = probe
                        .hello
                        .as_ref()
                        .map(|h| h.devices.clone())
                        .unwrap_or_default();
                    Ok(JobResult::Probed {
                        text: probe.describe(&machine),
                        devices: if probe.compatible() {
                            devices
                        } else {
                            Vec::new()
                        },
                    })
                });
                Ok(())
            }
            Command::HostKeys { job, machine } => {
                self.start_job(job, move |_, _| {
                    let (keys, fingerprints) = crate::remote::ssh::offered_keys(&machine)?;
                    Ok(JobResult::HostKeys { keys, fingerprints })
                });
                Ok(())
            }
            Command::Trust { job, machine, keys } => {
                self.start_job(job, move |_, _| {
                    let file = crate::remote::ssh::trust(&machine, &keys)?;
                    Ok(JobResult::Trusted { file })
                });
                Ok(())
            }
            Command::Pull {
                job,
                machine,
                run,
                dest,
                started_from,
            } => {
                self.start_job(job, move |_, _| {
                    let files = crate::remote::transfer::pull(
                        &machine,
                        &run,
                        &dest,
                        started_from.as_deref(),
                    )?;
                    Ok(JobResult::Pulled { files, dest })
                });
                Ok(())
            }
            Command::Upload {
                job,
                machine,
                config,
            } => {
                self.start_job(job, move |send, stopped| {
                    let config = crate::remote::upload::prepare(
                        &machine,
                        &config,
                        &mut progress_updates(send),
                    )?;
                    if stopped() {
                        return Err(crate::Stopped.into());
                    }
                    Ok(JobResult::Uploaded {
                        config: Box::new(config),
                    })
                });
                Ok(())
            }
            Command::Install {
                job,
                machine,
                binary,
            } => {
                self.start_job(job, move |send, _| {
                    let (path, probe) = crate::remote::install::install_and_check(
                        &machine,
                        &binary,
                        machine.install_dir(),
                        &mut progress_updates(send),
                    )?;
                    let there = crate::remote::Machine {
                        binary: Some(path.clone()),
                        ..machine
                    };
                    Ok(JobResult::Installed {
                        text: probe.describe(&there),
                        devices: probe.hello.map(|h| h.devices).unwrap_or_default(),
                        binary: path,
                    })
                });
                Ok(())
            }
            Command::Export {
                job,
                run_dir,
                out,
                best,
            } => {
                self.start_job(job, move |_, _| {
                    let files = crate::peft::export::export_run(&run_dir, &out, best)?;
                    Ok(JobResult::Exported { files, out })
                });
                Ok(())
            }
            Command::ImportRun { job, dir, out } => {
                self.start_job(job, move |_, stopped| {
                    let imported = crate::import_run::import(&dir, &out, Some(stopped))?;
                    Ok(JobResult::RunImported {
                        steps: imported.steps,
                        out,
                        metric: match (imported.measured, imported.not_measured) {
                            (Some(m), _) => Ok((m.metric_name.to_string(), m.metric)),
                            (None, why) => Err(why.unwrap_or_default()),
                        },
                    })
                });
                Ok(())
            }
            Command::WriteRecipe {
                job,
                config,
                out,
                target,
            } => {
                self.start_job(job, move |_, _| {
                    if target == crate::recipe::Target::LlamaFactory {
                        let base = crate::recipe::base_model_name(&config, None)?;
                        crate::recipe::llamafactory::write(&config, &out, &base)?;
                    } else {
                        crate::recipe::write(&config, &out, None)?;
                    }
                    Ok(JobResult::RecipeWritten {
                        steps: config.steps,
                        out,
                        target,
                    })
                });
                Ok(())
            }
        }
    }

    fn try_recv(&mut self) -> Result<Option<Event>, String> {
        match self.trainer.events.try_recv() {
            Ok(e) => return Ok(Some(Event::Run(e))),
            Err(TryRecvError::Disconnected) if !self.shut_down => {
                return Err("the trainer stopped unexpectedly; restart the workbench".into());
            }
            Err(_) => {}
        }
        Ok(self.job_events.1.try_recv().ok())
    }

    fn shutdown(&mut self) {
        for flag in self.stops.values() {
            flag.store(true, Ordering::Release);
        }
        self.shut_down = true;
        self.trainer.shutdown();
    }
}

/// Folds the adapter of the run in `run_dir` into its base model `model`, writing `out`
/// (on the CPU: a merge reads and writes whole weight files).
fn merge_run(
    model: &str,
    run_dir: &Path,
    out: &Path,
    stopped: &dyn Fn() -> bool,
) -> anyhow::Result<usize> {
    let files = crate::models::ModelFiles::open(model)?;
    let adapter = crate::peft::import::ImportedAdapter::load(
        &run_dir.join("adapter"),
        &files.config,
        &candle_core::Device::Cpu,
    )?;
    adapter.merge_into_until(&files, out, stopped)
}

/// A transfer's progress as job updates, a few a second (enough for a progress line).
fn progress_updates(send: &dyn Fn(JobUpdate)) -> impl FnMut(u64, u64) + '_ {
    let mut last: Option<std::time::Instant> = None;
    move |done, total| {
        if done == total || last.is_none_or(|t| t.elapsed().as_millis() >= 200) {
            last = Some(std::time::Instant::now());
            send(JobUpdate::Progress { done, total });
        }
    }
}
