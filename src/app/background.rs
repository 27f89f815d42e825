//! The window's handle on its background work: the jobs backend, the status line's last
//! message, and the merge or export it is waiting for. Private fields, a small API: the
//! rest of the window sends commands and reads what came back through it.

use std::time::Instant;

use super::Said;
use crate::jobs::{self, Command, JobId, Jobs};

pub struct Background {
    jobs: Jobs,
    /// The outcome of the last action, for the status line.
    status: Option<Said>,
    /// Outcomes that arrive from outside a frame (the window's screenshot callback).
    outcomes: (
        crossbeam_channel::Sender<Said>,
        crossbeam_channel::Receiver<Said>,
    ),
    /// The merge or import in progress, when it began and which it is.
    long_job: Option<(JobId, Instant, LongJob)>,
    /// The export in progress.
    exporting: Option<JobId>,
    /// Asks the window for a frame (given to remote connections).
    notify: crate::train::worker::Notify,
}

/// The jobs that may take minutes, so the status line offers to stop them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongJob {
    /// Folding an adapter into its base model.
    Merge,
    /// Importing an outside run, whose adapter is evaluated here (a large model's takes long).
    Import,
}

impl Background {
    pub fn new(jobs: Jobs, status: Option<Said>, notify: crate::train::worker::Notify) -> Self {
        Self {
            notify,
            jobs,
            status,
            outcomes: crossbeam_channel::unbounded(),
            long_job: None,
            exporting: None,
        }
    }

    pub fn send(&mut self, cmd: Command) -> Result<(), String> {
        self.jobs.send(cmd)
    }

    /// Sends a command to a remote machine (connecting to it first if need be).
    pub fn send_on(
        &mut self,
        machine: &crate::remote::Machine,
        cmd: Command,
    ) -> Result<(), String> {
        self.jobs.send_on(machine, cmd, self.notify.clone())
    }

    /// Connects to a remote machine again after its connection was lost.
    pub fn reconnect(&mut self, machine: &crate::remote::Machine) {
        self.jobs.reconnect(machine, self.notify.clone());
    }

    pub fn next_job_id(&mut self) -> JobId {
        self.jobs.next_job_id()
    }

    /// The next event; an error once for each backend found dead (when it is this
    /// machine's, the merge and export waited for end with it).
    pub fn try_recv(&mut self) -> Result<Option<jobs::Event>, jobs::Gone> {
        self.jobs.try_recv().inspect_err(|gone| {
            if gone.machine.is_none() {
                self.long_job = None;
                self.exporting = None;
            }
        })
    }

    /// The jobs handle itself, for the playground's answers.
    pub fn jobs(&mut self) -> &mut Jobs {
        &mut self.jobs
    }

    pub fn shutdown(&mut self) {
        self.jobs.shutdown();
    }

    pub fn say(&mut self, said: Said) {
        self.status = Some(said);
    }

    pub fn status(&self) -> Option<&Said> {
        // Outcomes sent from outside a frame are taken in by `take_outcomes`.
        self.status.as_ref()
    }

    /// Where an outcome from outside a frame is sent.
    pub fn outcome_sender(&self) -> crossbeam_channel::Sender<Said> {
        self.outcomes.0.clone()
    }

    /// Puts the outcomes that arrived since the last frame on the status line.
    pub fn take_outcomes(&mut self) {
        while let Ok(said) = self.outcomes.1.try_recv() {
            self.status = Some(said);
        }
    }

    /// A job the status line shows with a spinner, its seconds and Stop, until it ends.
    pub fn start_long_job(&mut self, job: JobId, kind: LongJob) {
        self.long_job = Some((job, Instant::now(), kind));
    }

    /// The merge or import in progress, when it began and which it is.
    pub fn long_job(&self) -> Option<(JobId, Instant, LongJob)> {
        self.long_job
    }

    pub fn end_long_job(&mut self) {
        self.long_job = None;
    }

    pub fn start_export(&mut self, job: JobId) {
        self.exporting = Some(job);
    }

    pub fn export_job(&self) -> Option<JobId> {
        self.exporting
    }

    pub fn end_export(&mut self) {
        self.exporting = None;
    }
}
