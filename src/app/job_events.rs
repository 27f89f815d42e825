//! What the window does with its jobs' news: a short job's result (answers, checks,
//! merges, exports, runs coming home), and a remote machine's lost connection tried again.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{WorkbenchApp, i18n, jobs, runs};
use crate::jobs::{Command, JobResult, JobUpdate};
use crate::train::RunId;

impl WorkbenchApp {
    /// Moves the worker's events into the run store, within a small time budget so a burst
    /// of events never stalls a frame.
    pub fn drain_events(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(4);
        loop {
            match self.background.try_recv() {
                Ok(Some(jobs::Event::Run(e))) => {
                    let run_id = e.run();
                    let ended_before = self.store.get(run_id).map(|r| r.status.clone());
                    self.store.apply(e);
                    // Finished just now (a daemon's replay of an old Finished changes nothing).
                    let finished = self
                        .store
                        .get(run_id)
                        .filter(|r| {
                            r.status == runs::RunStatus::Finished
                                && ended_before.as_ref() != Some(&runs::RunStatus::Finished)
                        })
                        .map(|r| r.id);
                    if !self.reconnects.is_empty()
                        && let Some(m) = self
                            .store
                            .get(run_id)
                            .and_then(|r| r.config.machine.clone())
                    {
                        // It answers again.
                        self.reconnects.retain(|(x, _, _)| *x != m);
                    }
                    if let Some(run) = finished {
                        self.bring_home(run);
                    }
                }
                Ok(Some(jobs::Event::Job { job, update })) => self.job_update(job, update),
                Ok(None) => break,
                Err(jobs::Gone {
                    machine: Some(m),
                    why,
                }) if self.reconnect_later(&m, &why) => break,
                Err(jobs::Gone { machine, why }) => {
                    // Runs it held cannot end any more: they end here, with the reason.
                    for r in &mut self.store.runs {
                        if r.status.is_live_here() && r.config.machine == machine {
                            r.status = runs::RunStatus::Failed(why.clone());
                        }
                    }
                    if machine.is_none() {
                        self.playground.backend_gone(&why);
                    }
                    let why = i18n::fill(self.lang, &why, &[]);
                    self.say(why);
                    break;
                }
            }
            if Instant::now() > deadline {
                break;
            }
        }
        self.background.take_outcomes();
        self.report_compare_batch();
    }

    /// After a remote machine's connection was lost while runs trained there: the daemon
    /// there goes on, so the window tries again, waiting 2, 4, 8 … 60 s between tries, and
    /// gives up (the runs fail with the reason) after ten.
    pub(super) fn reconnect_later(&mut self, machine: &str, why: &str) -> bool {
        let training = self
            .store
            .runs
            .iter()
            .any(|r| r.status.is_live_here() && r.config.machine.as_deref() == Some(machine));
        let tries = self
            .reconnects
            .iter()
            .find(|(m, _, _)| m == machine)
            .map_or(0, |(_, _, n)| *n);
        if !training || tries >= 10 {
            self.reconnects.retain(|(m, _, _)| m != machine);
            return false;
        }
        let wait = Duration::from_secs((2u64 << tries.min(5)).min(60));
        self.reconnects.retain(|(m, _, _)| m != machine);
        self.reconnects
            .push((machine.to_string(), Instant::now() + wait, tries + 1));
        self.say_t(
            "the connection to {} was lost ({}); its runs go on there; trying again in {} s",
            &[&machine, &why, &wait.as_secs()],
        );
        true
    }

    /// Tries the lost connections whose wait is over.
    pub(super) fn reconnect_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .reconnects
            .iter()
            .filter(|(_, at, _)| *at <= now)
            .map(|(m, _, _)| m.clone())
            .collect();
        for name in due {
            // The try counts until the machine answers (its events arrive) or fails again.
            if let Some((_, at, _)) = self.reconnects.iter_mut().find(|(m, _, _)| *m == name) {
                *at = now + Duration::from_secs(3600);
            }
            if let Some(m) = self.machines.get(&name).cloned() {
                self.background.reconnect(&m);
            }
        }
        if !self.reconnects.is_empty()
            && let Some(ctx) = &self.ctx
        {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    /// A finished run of a remote machine comes home into the runs folder, as a job.
    pub(super) fn bring_home(&mut self, id: RunId) {
        let Some(r) = self.store.get(id) else {
            return;
        };
        let (Some(name), Some(remote_dir)) = (r.config.machine.clone(), r.out_dir.clone()) else {
            return;
        };
        let (Some(machine), Some(runs)) =
            (self.machines.get(&name).cloned(), self.runs_dir.clone())
        else {
            return;
        };
        let Some(run) = Path::new(&remote_dir).file_name() else {
            return;
        };
        let run = run.to_string_lossy().into_owned();
        let started_from = Some(Box::new(r.config.clone()));
        let job = self.background.next_job_id();
        let dest = runs.join(&run);
        match self.background.send(Command::Pull {
            job,
            machine,
            run,
            dest,
            started_from,
        }) {
            Ok(()) => self.pulls.push((job, id)),
            Err(why) => self.say_t("cannot bring the run home: {}", &[&why]),
        }
    }

    /// A short job's update: the playground's answers and evaluations, the machines'
    /// checks, the Data view's summary, a run coming home, or the merge.
    pub(super) fn job_update(&mut self, job: jobs::JobId, update: JobUpdate) {
        if self.playground.apply(job, &update)
            || self.machines.apply(job, &update, self.lang)
            || self.data_view.apply(job, &update)
        {
            return;
        }
        if let Some(i) = self.uploads.iter().position(|(j, _)| *j == job) {
            let id = self.uploads[i].1;
            if !matches!(update, JobUpdate::Progress { .. } | JobUpdate::Text(_)) {
                self.uploads.remove(i);
            }
            self.upload_update(id, update);
            return;
        }
        if let Some(i) = self.pulls.iter().position(|(j, _)| *j == job) {
            let id = self.pulls[i].1;
            let label = self
                .store
                .get(id)
                .map(|r| r.label.clone())
                .unwrap_or_default();
            match update {
                JobUpdate::Text(_) | JobUpdate::Progress { .. } => return,
                JobUpdate::Done(JobResult::Pulled { files, dest }) => {
                    self.store.came_home(id, &dest);
                    self.say_t(
                        "{} came home ({} files) into {}",
                        &[&label, &files, &dest.display()],
                    );
                }
                JobUpdate::Done(_) | JobUpdate::Stopped => {}
                JobUpdate::Failed(e) => self.say_t("{} did not come home: {}", &[&label, &e]),
            }
            self.pulls.remove(i);
            return;
        }
        if self.background.export_job() == Some(job) {
            match update {
                JobUpdate::Done(JobResult::Exported { files, out }) => {
                    self.say_t("exported {} files to {}", &[&files, &out.display()])
                }
                JobUpdate::Done(JobResult::RecipeWritten { steps, out, target }) => match target {
                    crate::recipe::Target::Transformers => self.say_t(
                        "a {}-step PyTorch recipe written to {}: run it with bash launch.sh there",
                        &[&steps, &out.display()],
                    ),
                    crate::recipe::Target::LlamaFactory => self.say_t(
                        "a {}-step LLaMA-Factory recipe written to {}: run llamafactory-cli train train.yaml there",
                        &[&steps, &out.display()],
                    ),
                },
                JobUpdate::Failed(e) => self.say_t("export failed: {}", &[&e]),
                _ => return,
            }
            self.background.end_export();
            return;
        }
        if let Some((long, _, kind)) = self.background.long_job()
            && long == job
        {
            use super::background::LongJob;
            match (kind, update) {
                (_, JobUpdate::Text(_) | JobUpdate::Progress { .. }) => return,
                (_, JobUpdate::Done(JobResult::Merged { projections, out })) => self.say_t(
                    "merged {} projections; model written to {}",
                    &[&projections, &out.display()],
                ),
                (_, JobUpdate::Done(JobResult::RunImported { steps, out, metric })) => {
                    if let Some(dir) = self.runs_dir.clone() {
                        self.store.load_new(&dir);
                    }
                    match metric {
                        Ok((name, value)) => self.say_t(
                            "imported a run of {} logged steps into {}; its adapter's {}, measured here on the run's evaluation examples: {}",
                            &[&steps, &out.display(), &name, &format!("{value:.3}")],
                        ),
                        Err(why) => self.say_t(
                            "imported a run of {} logged steps into {}; its metric is left blank: {}",
                            &[&steps, &out.display(), &why],
                        ),
                    }
                }
                (_, JobUpdate::Done(_)) => {}
                (LongJob::Merge, JobUpdate::Failed(e)) => self.say_t("merge failed: {}", &[&e]),
                (LongJob::Import, JobUpdate::Failed(e)) => self.say_t("import failed: {}", &[&e]),
                (LongJob::Merge, JobUpdate::Stopped) => {
                    self.say_t("merge stopped; nothing was written", &[])
                }
                (LongJob::Import, JobUpdate::Stopped) => {
                    self.say_t("import stopped; nothing was imported", &[])
                }
            }
            self.background.end_long_job();
        }
    }

    /// News of a remote run's files on their way there: progress on the status line; once
    /// they are there the run goes to the machine, naming its copies.
    fn upload_update(&mut self, id: RunId, update: JobUpdate) {
        let Some(r) = self.store.get(id) else {
            return;
        };
        let (label, machine) = (r.label.clone(), r.config.machine.clone());
        match update {
            JobUpdate::Progress { done, total } => {
                let mb = |b: u64| format!("{:.1}", b as f64 / 1e6);
                self.say_t(
                    "{}: sending its files to {} ({} of {} MB)",
                    &[&label, &machine.unwrap_or_default(), &mb(done), &mb(total)],
                );
            }
            JobUpdate::Done(JobResult::Uploaded { config }) => {
                let sent = match machine.and_then(|m| self.machines.get(&m).cloned()) {
                    Some(m) => self.background.send_on(&m, Command::Train { id, config }),
                    None => Err("its machine was removed".to_string()),
                };
                if let Err(why) = sent {
                    self.fail_run(id, why);
                }
            }
            JobUpdate::Failed(why) => self.fail_run(id, why),
            JobUpdate::Stopped => self.fail_run(id, "stopped before it started".into()),
            JobUpdate::Text(_) | JobUpdate::Done(_) => {}
        }
    }

    /// A run that cannot start ends failed, with the reason on the status line too.
    fn fail_run(&mut self, id: RunId, why: String) {
        if let Some(r) = self.store.runs.iter_mut().find(|r| r.id == id) {
            r.status = runs::RunStatus::Failed(why.clone());
        }
        let why = i18n::fill(self.lang, &why, &[]);
        self.say_t("cannot start: {}", &[&why]);
    }
}
