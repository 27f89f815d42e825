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
    /// With early stopping: the step of the best evaluation so far (its tensors in `best/`).
    pub best_step: Option<usize>,
    /// The update map measured at the latest evaluation of a run trained in this window.
    pub live_map: Option<(usize, Box<crate::peft::update_map::UpdateMap>)>,
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
    /// Whether its model is an encoder classifier: read from the model's files the first time
    /// it is asked (its menu's recipe exports), not for each of hundreds of past runs.
    model_is_classifier: std::cell::OnceCell<bool>,
}

impl RunRecord {
    pub fn new(id: RunId, config: RunConfig) -> Self {
        // Where and in what precision, when not the default: runs compared side by side may
        // differ in nothing else.
        // The rate is part of what a run was: a comparison trains each method at its own,
        // and two runs of one method at two rates must not read the same.
        let mut label = format!(
            "#{id} {} lr {}",
            config.method.short_label(),
            crate::config::rate_text(config.optimizer.lr)
        );
        if config.device != "cpu" {
            label.push_str(&format!(" @{}", config.device));
        }
        if let Some(m) = &config.machine {
            label.push_str(&format!(" on {m}"));
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
            best_step: None,
            live_map: None,
            resumable: false,
            loading_since: None,
            shown: true,
            curves_loaded: true,
            notes: RunNotes::default(),
            started_unix: Some(now_unix()),
            model_is_classifier: std::cell::OnceCell::new(),
        }
    }

    /// Whether its model is an encoder classifier (false when the model cannot be read: then
    /// whatever needs the model says why itself).
    pub fn model_is_classifier(&self) -> bool {
        *self.model_is_classifier.get_or_init(|| {
            crate::models::ModelFiles::open(&self.config.model)
                .is_ok_and(|f| f.config.is_classifier())
        })
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

    /// Whether it has an update map: measured live while it trains here, or written in its
    /// folder when it ended.
    pub fn has_update_map(&self) -> bool {
        self.live_map.is_some()
            || self
                .out_dir
                .as_ref()
                .is_some_and(|d| Path::new(d).join(crate::train::UPDATE_MAP_FILE).is_file())
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
                "best" if step.is_finite() => self.best_step = Some(step as usize),
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
        if self.best_step.is_some_and(|b| b as f64 > step) {
            self.best_step = None;
        }
    }

    pub(super) fn table_row(&self, summary: &Summary) -> crate::compare::Row {
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

    /// Early stopping's best evaluation (step, loss, metric): the finished run's summary
    /// says it, a running one's curves hold it.
    pub fn best_eval(&self) -> Option<crate::train::BestEval> {
        if let Some(b) = self.summary.as_ref().and_then(|s| s.best) {
            return Some(b);
        }
        let step = self.best_step?;
        let i = self.eval_loss.iter().position(|p| p[0] == step as f64)?;
        Some(crate::train::BestEval {
            step,
            loss: self.eval_loss[i][1],
            metric: self.eval_metric.get(i)?[1],
        })
    }

    /// The best evaluation's point on an evaluation curve (early stopping's best), where
    /// the run has one.
    pub fn best_point(&self, which: Curve, axis: XAxis) -> Option<[f64; 2]> {
        let best = self.best_step? as f64;
        let i = self.eval_loss.iter().position(|p| p[0] == best)?;
        self.curve(which, axis).get(i).copied()
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

mod dates_and_curves;
mod store;
#[cfg(test)]
mod tests;

pub use dates_and_curves::{downsample_min_max, ema, now_unix, now_utc_minute, utc_minute};
pub use store::RunStore;
