//! The runs the UI knows about, built from trainer events. Plain data, no egui: the plots
//! and tables read it, and it is unit-tested on its own.

use std::path::Path;

use super::run_notes::RunNotes;
use crate::config::RunConfig;
use crate::train::{Event, RankAllocation, RunId, Summary};

#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Queued,
    Running,
    Finished,
    Stopped,
    /// The app or the process ended while it trained (no summary was written).
    Interrupted,
    Failed(String),
    /// Another process (another window, a CLI run) is writing it: this window shows its
    /// curves as they grow but cannot stop, resume or delete it. Holds who it is.
    Elsewhere(String),
}

impl RunStatus {
    /// Training or waiting to, in this window (it can be stopped here).
    pub fn is_live_here(&self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// Its name in the runs table (and the search and the status filter).
    pub fn name(&self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed(_) => "failed",
            RunStatus::Elsewhere(_) => "training elsewhere",
        }
    }

    /// Being written by some process, this window's or another's.
    pub fn is_live(&self) -> bool {
        self.is_live_here() || matches!(self, RunStatus::Elsewhere(_))
    }
}

#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: RunId,
    pub label: String,
    pub config: RunConfig,
    pub status: RunStatus,
    pub trainable_params: usize,
    pub total_params: usize,
    pub metric_name: String,
    /// The metric's chance level on the run's evaluation examples, where it has one.
    pub chance: Option<crate::train::Chance>,
    pub out_dir: Option<String>,
    /// (step, loss)
    pub train_loss: Vec<[f64; 2]>,
    /// (step, loss)
    pub eval_loss: Vec<[f64; 2]>,
    /// (step, metric)
    pub eval_metric: Vec<[f64; 2]>,
    /// (tokens seen, seconds since start) of each `train_loss` point.
    pub step_clock: Vec<[f64; 2]>,
    /// Seconds since start of each evaluation.
    pub eval_elapsed: Vec<f64>,
    /// The comparison-table row of a finished run (adapter size read from its folder).
    pub row: Option<crate::compare::Row>,
    pub tokens_per_second: f64,
    pub elapsed_s: f64,
    pub notices: Vec<String>,
    pub summary: Option<Summary>,
    /// AdaLoRA's latest rank allocation and the step it was made at.
    pub ranks: Option<(usize, RankAllocation)>,
    /// Its folder holds a checkpoint it can continue from.
    pub resumable: bool,
    /// When it began reading its model and data, until its first step can start.
    pub loading_since: Option<std::time::Instant>,
    /// Its curves are drawn on the plots (the user chooses; by default the current
    /// experiment's runs).
    pub shown: bool,
    /// Its curves are in memory. A finished past run is read from its small files alone
    /// (config, summary); `metrics.jsonl` is read when the run is first shown, so hundreds of
    /// past runs do not hold hundreds of curves.
    pub curves_loaded: bool,
    /// What the user wrote about it (tags, a note, archived), from its `notes.json`.
    pub notes: RunNotes,
    /// When it began, in seconds since the Unix epoch (its config file's time for a past run).
    pub started_unix: Option<u64>,
}

impl RunRecord {
    pub fn new(id: RunId, config: RunConfig) -> Self {
        // Where and in what precision, when not the default: runs compared side by side may
        // differ in nothing else.
        // The rate is part of what a run was: a comparison trains each method at its own,
        // and two runs of one method at two rates must not read the same.
        let mut label = format!(
            "#{id} {} lr {:.0e}",
            config.method.short_label(),
            config.optimizer.lr
        );
        if config.device != "cpu" {
            label.push_str(&format!(" @{}", config.device));
        }
        if config.precision != crate::config::Precision::F32 {
            label.push_str(&format!(" {}", config.precision.name()));
        }
        Self {
            id,
            label,
            config,
            status: RunStatus::Queued,
            trainable_params: 0,
            total_params: 0,
            chance: None,
            metric_name: String::new(),
            out_dir: None,
            train_loss: Vec::new(),
            eval_loss: Vec::new(),
            eval_metric: Vec::new(),
            step_clock: Vec::new(),
            eval_elapsed: Vec::new(),
            row: None,
            tokens_per_second: 0.0,
            elapsed_s: 0.0,
            notices: Vec::new(),
            summary: None,
            ranks: None,
            resumable: false,
            loading_since: None,
            shown: true,
            curves_loaded: true,
            notes: RunNotes::default(),
            started_unix: Some(now_unix()),
        }
    }

    /// The experiment the run belongs to ("" for runs made before experiments existed).
    pub fn experiment(&self) -> &str {
        self.config.experiment.as_deref().unwrap_or("")
    }

    /// The last evaluation's metric, from the curves or, before they are read, the summary.
    pub fn final_metric(&self) -> Option<f64> {
        match self.eval_metric.last() {
            Some(m) => Some(m[1]),
            None => self.summary.as_ref().map(|s| s.metric_value),
        }
    }

    /// The first and the last evaluation loss, likewise.
    pub fn eval_loss_span(&self) -> Option<(f64, f64)> {
        match (self.eval_loss.first(), self.eval_loss.last()) {
            (Some(f), Some(l)) => Some((f[1], l[1])),
            _ => self
                .summary
                .as_ref()
                .map(|s| (s.initial_eval_loss, s.final_eval_loss)),
        }
    }

    /// Reads the run's curves from its folder if they are not in memory yet.
    pub fn load_curves(&mut self) {
        if self.curves_loaded {
            return;
        }
        self.curves_loaded = true;
        let Some(dir) = self.out_dir.clone() else {
            return;
        };
        if let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("metrics.jsonl")) {
            self.read_metrics(&text);
        }
    }

    /// Reads the curves again from the folder (a run another process is writing grows).
    pub fn reload_curves(&mut self) {
        self.train_loss.clear();
        self.step_clock.clear();
        self.eval_loss.clear();
        self.eval_metric.clear();
        self.eval_elapsed.clear();
        self.curves_loaded = false;
        self.load_curves();
    }

    /// The curves, AdaLoRA's allocation and the pace from a `metrics.jsonl` text.
    fn read_metrics(&mut self, text: &str) {
        /// One line of the file; fields a line's type lacks stay absent.
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(rename = "type")]
            kind: String,
            step: Option<f64>,
            loss: Option<f64>,
            metric: Option<f64>,
            tokens_seen: Option<f64>,
            elapsed_s: Option<f64>,
            tokens_per_second: Option<f64>,
            allocation: Option<RankAllocation>,
        }
        let nan = f64::NAN;
        for line in text.lines() {
            // A run killed mid-write may leave a partial last line; it is skipped.
            let Ok(l) = serde_json::from_str::<Line>(line) else {
                continue;
            };
            let step = l.step.unwrap_or(nan);
            match l.kind.as_str() {
                "step" => {
                    self.train_loss.push([step, l.loss.unwrap_or(nan)]);
                    self.step_clock
                        .push([l.tokens_seen.unwrap_or(nan), l.elapsed_s.unwrap_or(nan)]);
                    if self.summary.is_none() {
                        self.tokens_per_second = l.tokens_per_second.unwrap_or(nan);
                        self.elapsed_s = l.elapsed_s.unwrap_or(nan);
                    }
                }
                "eval" => {
                    self.eval_loss.push([step, l.loss.unwrap_or(nan)]);
                    self.eval_metric.push([step, l.metric.unwrap_or(nan)]);
                    self.eval_elapsed.push(l.elapsed_s.unwrap_or(nan));
                }
                "ranks" => {
                    if let Some(a) = l.allocation {
                        self.ranks = Some((step as usize, a));
                    }
                }
                _ => {}
            }
        }
    }

    pub fn steps_done(&self) -> usize {
        self.train_loss.last().map(|p| p[0] as usize).unwrap_or(0)
    }

    /// Share of the run done, 0..=1.
    pub fn progress(&self) -> f32 {
        (self.steps_done() as f32 / self.config.steps.max(1) as f32).min(1.0)
    }

    /// Seconds left at the pace so far.
    pub fn eta_s(&self) -> Option<f64> {
        let done = self.steps_done();
        (done > 0 && self.status == RunStatus::Running)
            .then(|| self.elapsed_s / done as f64 * (self.config.steps - done) as f64)
    }

    /// Drops the points after `step` (a resumed run trains them again).
    fn truncate_after(&mut self, step: usize) {
        let step = step as f64;
        let n = self.train_loss.partition_point(|p| p[0] <= step);
        self.train_loss.truncate(n);
        self.step_clock.truncate(n);
        let n = self.eval_loss.partition_point(|p| p[0] <= step);
        self.eval_loss.truncate(n);
        self.eval_metric.truncate(n);
        self.eval_elapsed.truncate(n);
    }

    fn table_row(&self, summary: &Summary) -> crate::compare::Row {
        let dir = self.out_dir.as_deref().map(Path::new);
        crate::compare::row(&self.label, &self.config, summary, dir)
    }

    /// A curve with x in the chosen unit. Evaluations take the tokens seen at their step.
    pub fn curve(&self, which: Curve, axis: XAxis) -> Vec<[f64; 2]> {
        let tokens_at = |step: f64| -> f64 {
            let i = self.train_loss.partition_point(|p| p[0] < step);
            match self.train_loss.get(i) {
                Some(p) if p[0] == step => self.step_clock[i][0],
                _ => 0.0,
            }
        };
        match which {
            Curve::TrainLoss => self
                .train_loss
                .iter()
                .zip(&self.step_clock)
                .map(|(p, c)| match axis {
                    XAxis::Step => *p,
                    XAxis::Tokens => [c[0], p[1]],
                    XAxis::WallTime => [c[1], p[1]],
                })
                .collect(),
            Curve::EvalLoss | Curve::EvalMetric => {
                let points = if which == Curve::EvalLoss {
                    &self.eval_loss
                } else {
                    &self.eval_metric
                };
                points
                    .iter()
                    .zip(&self.eval_elapsed)
                    .map(|(p, t)| match axis {
                        XAxis::Step => *p,
                        XAxis::Tokens => [tokens_at(p[0]), p[1]],
                        XAxis::WallTime => [*t, p[1]],
                    })
                    .collect()
            }
        }
    }

    fn has_checkpoint(&self) -> bool {
        self.out_dir
            .as_ref()
            .is_some_and(|d| crate::train::checkpoint::exists(Path::new(d)))
    }

    /// Marks the run as waiting to continue from its checkpoint.
    pub fn queue_resume(&mut self) {
        self.status = RunStatus::Queued;
        self.resumable = false;
    }

    pub fn trainable_percent(&self) -> f64 {
        100.0 * self.trainable_params as f64 / self.total_params.max(1) as f64
    }
}

/// Runs an experiment shows at first: a comparison's twelve and a few more, not hundreds.
pub const MAX_SHOWN_BY_DEFAULT: usize = 24;

/// The note on a run read back without a summary.
const UNFINISHED: &str = "did not finish (the app or the run was interrupted)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    TrainLoss,
    EvalLoss,
    EvalMetric,
}

/// What the curves' x axis counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum XAxis {
    #[default]
    Step,
    Tokens,
    WallTime,
}

impl XAxis {
    pub const ALL: [XAxis; 3] = [XAxis::Step, XAxis::Tokens, XAxis::WallTime];

    pub fn name(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens seen",
            XAxis::WallTime => "wall time (s)",
        }
    }
}

#[derive(Debug, Default)]
pub struct RunStore {
    pub runs: Vec<RunRecord>,
    next_id: RunId,
}

impl RunStore {
    /// Registers a run about to be queued and returns its id.
    pub fn add(&mut self, config: RunConfig) -> RunId {
        self.next_id += 1;
        let id = self.next_id;
        self.runs.push(RunRecord::new(id, config));
        id
    }

    /// Adds the runs saved under `dir` (one folder each, as the trainer writes them), oldest
    /// first; folders that are not runs are skipped. Returns how many were read and the
    /// folders that could not be.
    pub fn load_past(&mut self, dir: &Path) -> (usize, Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, Vec::new());
        };
        let mut folders: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file())
            .collect();
        folders.sort();
        self.read_folders(folders)
    }

    /// Reads run folders, oldest first, as past runs with the next ids.
    fn read_folders(&mut self, folders: Vec<std::path::PathBuf>) -> (usize, Vec<String>) {
        let (mut read, mut bad) = (0, Vec::new());
        for folder in folders {
            match self.next_id.checked_add(1).map(|id| past_run(id, &folder)) {
                Some(Ok(r)) => {
                    self.next_id = r.id;
                    self.runs.push(r);
                    read += 1;
                }
                Some(Err(e)) => bad.push(format!("{}: {}", folder.display(), crate::describe(&e))),
                None => break,
            }
        }
        (read, bad)
    }

    /// Adds the runs under `dir` this store does not know yet (another window's or a CLI
    /// run's), not shown on the plots; a folder whose lock a live process holds is listed as
    /// training elsewhere. Runs known as training elsewhere are read again: whole once their
    /// writer has let go, their curves only (if shown) while it still writes. Returns how
    /// many were added and the folders that could not be read.
    pub fn load_new(&mut self, dir: &Path) -> (usize, Vec<String>) {
        self.refresh_elsewhere();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, Vec::new());
        };
        let known: std::collections::HashSet<&str> = self
            .runs
            .iter()
            .filter_map(|r| r.out_dir.as_deref())
            .collect();
        // Known folders first: with 10 000 runs, a stat of every folder's config.toml every
        // 3 s put the window's 99th-percentile CPU time per frame at 41 ms (13 ms without).
        let mut folders: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !known.contains(p.display().to_string().as_str()))
            .filter(|p| p.join("config.toml").is_file())
            // This window's own runs become known through its worker's events.
            .filter(|p| !crate::train::run_dir::holder(p).is_some_and(|h| h.is_this_process()))
            .collect();
        folders.sort();
        let before = self.runs.len();
        let (read, bad) = self.read_folders(folders);
        for r in &mut self.runs[before..] {
            r.shown = false;
            let holder = r
                .out_dir
                .as_deref()
                .and_then(|d| crate::train::run_dir::holder(Path::new(d)));
            if let Some(h) = holder {
                r.status = RunStatus::Elsewhere(h.to_string());
                r.notices.retain(|n| n != UNFINISHED);
                r.resumable = false;
            }
        }
        (read, bad)
    }

    /// Reads again the runs another process was writing at the last look.
    fn refresh_elsewhere(&mut self) {
        for r in &mut self.runs {
            if !matches!(r.status, RunStatus::Elsewhere(_)) {
                continue;
            }
            let Some(dir) = r.out_dir.clone() else {
                continue;
            };
            let dir = Path::new(&dir);
            if crate::train::run_dir::holder(dir).is_some() {
                if r.shown {
                    r.reload_curves();
                }
                continue;
            }
            // Its writer has let go: read it as any past run, under the same id.
            if let Ok(mut done) = past_run(r.id, dir) {
                done.shown = r.shown;
                if done.shown {
                    done.load_curves();
                }
                *r = done;
            }
        }
    }

    /// Shows the runs of the newest run's experiment (at most `MAX_SHOWN_BY_DEFAULT`, the
    /// newest) and hides the rest: what the plots start with.
    pub fn show_latest_experiment(&mut self) {
        let Some(latest) = self
            .runs
            .iter()
            .rev()
            .find(|r| !r.notes.archived)
            .map(|r| r.experiment().to_string())
        else {
            return;
        };
        self.show_experiment(&latest);
    }

    /// Shows the runs of `experiment` (at most `MAX_SHOWN_BY_DEFAULT`, the newest) and
    /// hides every other one that is not training or queued.
    pub fn show_experiment(&mut self, experiment: &str) {
        let mut left = MAX_SHOWN_BY_DEFAULT;
        for r in self.runs.iter_mut().rev() {
            let chosen = r.experiment() == experiment && !r.notes.archived && left > 0;
            r.shown = r.status.is_live_here() || chosen;
            if chosen {
                left -= 1;
            }
        }
    }

    /// Reads the curves of the shown runs that are not in memory yet.
    pub fn load_shown_curves(&mut self) {
        for r in self.runs.iter_mut().filter(|r| r.shown) {
            r.load_curves();
        }
    }

    /// The experiments, newest first, with their run counts.
    pub fn experiments(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for r in self.runs.iter().rev() {
            match out.iter_mut().find(|(e, _)| e == r.experiment()) {
                Some((_, n)) => *n += 1,
                None => out.push((r.experiment().to_string(), 1)),
            }
        }
        out
    }

    /// Writes a run's notes into its folder and keeps them; an archived run leaves the plots.
    pub fn set_notes(&mut self, id: RunId, notes: RunNotes) -> anyhow::Result<()> {
        let r = self
            .runs
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| anyhow::anyhow!("run {id} is gone"))?;
        let dir = r
            .out_dir
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("{} has no folder to keep notes in", r.label))?;
        notes.save(Path::new(dir))?;
        if notes.archived {
            r.shown = false;
        }
        r.notes = notes;
        Ok(())
    }

    /// Forgets a run (its folder is the caller's to delete).
    pub fn remove(&mut self, id: RunId) -> Option<RunRecord> {
        let i = self.runs.iter().position(|r| r.id == id)?;
        Some(self.runs.remove(i))
    }

    pub fn get(&self, id: RunId) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The run training now, if any.
    pub fn active(&self) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.status == RunStatus::Running)
    }

    pub fn has_unfinished(&self) -> bool {
        self.runs.iter().any(|r| r.status.is_live_here())
    }

    pub fn apply(&mut self, event: Event) {
        let Some(r) = self.runs.iter_mut().find(|r| r.id == event.run()) else {
            return;
        };
        match event {
            Event::Started {
                trainable_params,
                total_params,
                metric_name,
                chance,
                out_dir,
                resumed_from,
                ..
            } => {
                if let Some(step) = resumed_from {
                    r.truncate_after(step);
                    r.summary = None;
                    r.row = None;
                    // It is no longer an unfinished run: the note saying so goes.
                    r.notices.retain(|n| n != UNFINISHED);
                    r.notices
                        .push(format!("resumed from the checkpoint at step {step}"));
                }
                r.resumable = false;
                r.loading_since = None;
                r.status = RunStatus::Running;
                r.trainable_params = trainable_params;
                r.total_params = total_params;
                r.metric_name = metric_name;
                r.chance = chance;
                r.out_dir = out_dir;
            }
            Event::Loading { .. } => r.loading_since = Some(std::time::Instant::now()),
            Event::Notice { text, .. } => r.notices.push(text),
            Event::Step(p) => {
                r.train_loss.push([p.step as f64, p.loss]);
                r.step_clock.push([p.tokens_seen as f64, p.elapsed_s]);
                r.tokens_per_second = p.tokens_per_second;
                r.elapsed_s = p.elapsed_s;
            }
            Event::Eval(p) => {
                r.eval_loss.push([p.step as f64, p.loss]);
                r.eval_metric.push([p.step as f64, p.metric]);
                r.eval_elapsed.push(p.elapsed_s);
            }
            Event::Ranks {
                step, allocation, ..
            } => r.ranks = Some((step, allocation)),
            Event::Finished { summary, .. } => {
                r.status = if summary.stopped_early {
                    RunStatus::Stopped
                } else {
                    RunStatus::Finished
                };
                r.resumable = summary.stopped_early && r.has_checkpoint();
                r.row = Some(r.table_row(&summary));
                r.summary = Some(*summary);
            }
            Event::Failed { error, .. } => {
                r.loading_since = None;
                r.status = RunStatus::Failed(error);
                r.resumable = r.has_checkpoint();
            }
        }
    }
}

/// A run read back from its folder: config, curves from `metrics.jsonl`, and the summary
/// if it finished (otherwise it is shown as stopped, with a note).
fn past_run(id: RunId, folder: &Path) -> anyhow::Result<RunRecord> {
    let cfg = RunConfig::load(&folder.join("config.toml"), &[])?;
    let mut r = RunRecord::new(id, cfg);
    r.out_dir = Some(folder.display().to_string());
    r.started_unix = std::fs::metadata(folder.join("config.toml"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    match RunNotes::read(folder) {
        Ok(notes) => r.notes = notes,
        Err(e) => r.notices.push(crate::describe(&e)),
    }
    match std::fs::read_to_string(folder.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
    {
        Some(s) => {
            r.status = if s.stopped_early {
                RunStatus::Stopped
            } else {
                RunStatus::Finished
            };
            r.trainable_params = s.trainable_params;
            r.total_params = s.total_params;
            r.metric_name = s.metric_name.clone();
            r.chance = s.chance;
            r.tokens_per_second = s.tokens_per_second;
            r.elapsed_s = s.wall_seconds;
            r.row = Some(r.table_row(&s));
            r.summary = Some(s);
            // A finished run's numbers are in its summary: its curves wait until it is
            // shown. A stopped one may be resumed, which continues its curves: read now.
            r.curves_loaded = false;
            if r.status == RunStatus::Stopped {
                r.load_curves();
            }
        }
        None => {
            r.status = RunStatus::Interrupted;
            r.notices.push(UNFINISHED.into());
            // Without a summary the curves are all there is to show of it.
            r.curves_loaded = false;
            r.load_curves();
        }
    }
    r.resumable = crate::train::resumable(folder);
    Ok(r)
}

/// Minute-precision UTC time of `secs` since the Unix epoch, as `2026-12-03 13:52`: names
/// of experiments, readable and sortable.
pub fn utc_minute(secs: u64) -> String {
    // Days to a civil date (the proleptic Gregorian calendar, eras of 400 years).
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let minute = secs % 86_400 / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minute / 60,
        minute % 60
    )
}

/// Now, in seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, as [`utc_minute`] writes it.
pub fn now_utc_minute() -> String {
    utc_minute(now_unix())
}

/// A curve thinned to at most two points per column of `columns` equal spans of x: the
/// lowest and the highest, in x order, so a spike one step wide stays visible at any zoom
/// and a 3,000-step curve costs a plot a few hundred points.
pub fn downsample_min_max(points: &[[f64; 2]], columns: usize) -> Vec<[f64; 2]> {
    if points.len() <= 2 * columns.max(1) {
        return points.to_vec();
    }
    let (x0, x1) = (points[0][0], points[points.len() - 1][0]);
    let width = (x1 - x0) / columns as f64;
    if width.is_nan() || width <= 0.0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * columns + 2);
    let mut start = 0;
    while start < points.len() {
        // The last point (x = x1) belongs to the last column, not one past it.
        let column_of = |x: f64| ((x - x0) / width).floor().min(columns as f64 - 1.0);
        let column = column_of(points[start][0]);
        let mut end = start + 1;
        while end < points.len() && column_of(points[end][0]) <= column {
            end += 1;
        }
        let span = &points[start..end];
        let lowest = (0..span.len())
            .min_by(|a, b| span[*a][1].total_cmp(&span[*b][1]))
            .expect("a column holds a point");
        let highest = (0..span.len())
            .max_by(|a, b| span[*a][1].total_cmp(&span[*b][1]))
            .expect("a column holds a point");
        let (first, second) = (lowest.min(highest), lowest.max(highest));
        out.push(span[first]);
        if second != first {
            out.push(span[second]);
        }
        start = end;
    }
    out
}

/// Exponential moving average of a curve's y values (`alpha` = weight of the past, 0..1),
/// bias-corrected so the start is not pulled towards zero.
pub fn ema(points: &[[f64; 2]], alpha: f64) -> Vec<[f64; 2]> {
    if alpha <= 0.0 {
        return points.to_vec();
    }
    let mut avg = 0.0;
    let mut weight = 0.0;
    points
        .iter()
        .map(|[x, y]| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            [*x, avg / weight]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::{EvalPoint, StepPoint};

    #[test]
    fn events_build_a_run() {
        let mut store = RunStore::default();
        let id = store.add(RunConfig::default());
        store.apply(Event::Loading {
            run: id,
            model: "builtin".into(),
        });
        assert!(store.runs[0].loading_since.is_some(), "loading is shown");
        assert_eq!(store.active().map(|r| r.id), None);
        store.apply(Event::Started {
            run: id,
            trainable_params: 10,
            total_params: 1000,
            steps: 300,
            metric_name: "exact_match".into(),
            chance: None,
            out_dir: None,
            resumed_from: None,
        });
        assert_eq!(store.active().map(|r| r.id), Some(id));
        assert!(store.runs[0].loading_since.is_none(), "loaded once started");
        store.apply(Event::Step(StepPoint {
            run: id,
            step: 3,
            loss: 2.0,
            lr: 0.1,
            tokens_per_second: 100.0,
            tokens_seen: 30,
            elapsed_s: 1.0,
        }));
        store.apply(Event::Eval(EvalPoint {
            run: id,
            step: 3,
            loss: 1.5,
            metric: 0.25,
            elapsed_s: 1.0,
        }));
        let r = store.get(id).unwrap();
        assert_eq!(r.steps_done(), 3);
        assert!((r.trainable_percent() - 1.0).abs() < 1e-12);
        assert_eq!(r.eta_s(), Some(99.0));
        assert_eq!(r.eval_metric, vec![[3.0, 0.25]]);
        store.apply(Event::Failed {
            run: id,
            error: "boom".into(),
        });
        assert_eq!(
            store.get(id).unwrap().status,
            RunStatus::Failed("boom".into())
        );
        assert!(!store.has_unfinished());
    }

    #[test]
    fn an_interrupted_run_is_read_back_with_its_curve() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("1-001-lora");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("config.toml"), RunConfig::default().to_toml()).unwrap();
        // Two whole lines and a half-written third, as a killed run leaves them.
        std::fs::write(
            run.join("metrics.jsonl"),
            "{\"type\":\"eval\",\"step\":0,\"loss\":3.0,\"metric\":0.1}\n{\"type\":\"step\",\"step\":1,\"loss\":2.5,\"tokens_per_second\":9.0,\"elapsed_s\":1.0}\n{\"type\":\"st",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("not-a-run")).unwrap();
        let mut store = RunStore::default();
        assert_eq!(store.load_past(dir.path()), (1, Vec::new()));
        let r = &store.runs[0];
        assert_eq!(r.train_loss, vec![[1.0, 2.5]]);
        assert_eq!(r.eval_loss, vec![[0.0, 3.0]]);
        assert_eq!(r.status, RunStatus::Interrupted);
        assert!(r.notices[0].contains("did not finish"));
        // No checkpoint was written: nothing to resume from.
        assert!(!r.resumable);
        // New runs get ids after the past ones.
        let last = r.id;
        assert_eq!(store.add(RunConfig::default()), last + 1);
        // Resumed from a checkpoint at step 0: the later points go, and so does the note.
        store.apply(Event::Started {
            run: last,
            trainable_params: 10,
            total_params: 1000,
            steps: 300,
            metric_name: "exact_match".into(),
            chance: None,
            out_dir: None,
            resumed_from: Some(0),
        });
        let r = store.get(last).unwrap();
        assert!(r.train_loss.is_empty());
        assert_eq!(r.eval_loss, vec![[0.0, 3.0]]);
        assert_eq!(r.notices, vec!["resumed from the checkpoint at step 0"]);
    }

    /// A finished run folder of `steps` steps in experiment `experiment` under `runs`.
    fn finished_run(runs: &Path, name: &str, experiment: &str, steps: usize) {
        let run = runs.join(name);
        std::fs::create_dir(&run).unwrap();
        let cfg = RunConfig {
            experiment: Some(experiment.into()),
            ..RunConfig::default()
        };
        std::fs::write(run.join("config.toml"), cfg.to_toml()).unwrap();
        let mut metrics = String::from(
            "{\"type\":\"eval\",\"step\":0,\"loss\":3.0,\"metric\":0.5,\"elapsed_s\":0.5}\n",
        );
        for step in 1..=steps {
            metrics.push_str(&format!(
                "{{\"type\":\"step\",\"step\":{step},\"loss\":2.0,\"tokens_seen\":{},\"elapsed_s\":{step}.0,\"tokens_per_second\":10.0}}\n",
                step * 10
            ));
        }
        metrics.push_str(&format!(
            "{{\"type\":\"eval\",\"step\":{steps},\"loss\":1.0,\"metric\":0.75,\"elapsed_s\":9.0}}\n"
        ));
        std::fs::write(run.join("metrics.jsonl"), metrics).unwrap();
        let summary = Summary {
            method: "lora".into(),
            trainable_params: 10,
            total_params: 100,
            steps,
            stopped_early: false,
            initial_eval_loss: 3.0,
            final_train_loss: 2.0,
            final_eval_loss: 1.0,
            metric_name: "accuracy".into(),
            initial_metric_value: 0.5,
            metric_value: 0.75,
            chance: None,
            tokens_per_second: 10.0,
            peak_rss_bytes: 1 << 20,
            wall_seconds: 9.0,
        };
        std::fs::write(
            run.join("summary.json"),
            serde_json::to_string(&summary).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn finished_past_runs_read_their_curves_only_when_shown() {
        let dir = tempfile::tempdir().unwrap();
        for (i, experiment) in ["old", "old", "new", "new", "new"].iter().enumerate() {
            finished_run(dir.path(), &format!("{i}-run"), experiment, 30);
        }
        let mut store = RunStore::default();
        assert_eq!(store.load_past(dir.path()), (5, Vec::new()));
        // The table's numbers come from the summaries; no curve is in memory.
        for r in &store.runs {
            assert!(!r.curves_loaded && r.train_loss.is_empty());
            assert_eq!(r.final_metric(), Some(0.75));
            assert_eq!(r.eval_loss_span(), Some((3.0, 1.0)));
            assert_eq!(r.status, RunStatus::Finished);
        }
        assert_eq!(
            store.experiments(),
            vec![("new".to_string(), 3), ("old".to_string(), 2)]
        );
        store.show_latest_experiment();
        let shown: Vec<&str> = store
            .runs
            .iter()
            .filter(|r| r.shown)
            .map(|r| r.experiment())
            .collect();
        assert_eq!(shown, ["new", "new", "new"]);
        store.load_shown_curves();
        for r in &store.runs {
            assert_eq!(r.curves_loaded, r.shown);
            assert_eq!(r.train_loss.len(), if r.shown { 30 } else { 0 });
        }
        let r = store.runs.iter().find(|r| r.shown).unwrap();
        assert_eq!(r.eval_metric, vec![[0.0, 0.5], [30.0, 0.75]]);
        assert_eq!(r.curve(Curve::TrainLoss, XAxis::Tokens)[2], [30.0, 2.0]);
        // The other experiment, asked for, replaces it on the plots.
        store.show_experiment("old");
        assert_eq!(store.runs.iter().filter(|r| r.shown).count(), 2);
        assert!(store.runs[..2].iter().all(|r| r.shown));
    }

    #[test]
    fn utc_minutes_are_calendar_dates() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_796_302_020), "2026-12-03 12:47");
    }

    #[test]
    fn downsampling_keeps_a_spike_and_the_ends() {
        let mut points: Vec<[f64; 2]> = (0..3000).map(|i| [i as f64, 1.0]).collect();
        points[1234][1] = 9.0;
        points[2000][1] = -4.0;
        let thin = downsample_min_max(&points, 300);
        assert!(thin.len() <= 600, "{}", thin.len());
        assert!(thin.contains(&[1234.0, 9.0]), "the spike stays");
        assert!(thin.contains(&[2000.0, -4.0]), "the dip stays");
        assert_eq!(thin.first(), Some(&[0.0, 1.0]));
        assert!(thin.windows(2).all(|w| w[0][0] < w[1][0]), "x order kept");
        // Short curves pass through untouched.
        assert_eq!(
            downsample_min_max(&points[..50], 300),
            points[..50].to_vec()
        );
    }

    #[test]
    fn ema_is_bias_corrected_and_smooths() {
        let pts = vec![[0.0, 4.0], [1.0, 4.0], [2.0, 0.0]];
        let s = ema(&pts, 0.5);
        assert_eq!(s[0], [0.0, 4.0]);
        assert_eq!(s[1], [1.0, 4.0]);
        assert!(s[2][1] > 0.0 && s[2][1] < 4.0);
        assert_eq!(ema(&pts, 0.0), pts);
    }
}
