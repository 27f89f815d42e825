//! What the UI (or the CLI, or a test) sends the trainer, and what the trainer reports.
//! Plain data: no tensor and no egui type crosses this boundary.

use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
pub use crate::peft::RankAllocation;

pub type RunId = u64;

/// UI → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Queue a run; it starts when the runs before it have finished.
    Start { id: RunId, config: Box<RunConfig> },
    /// Queue the continuation of the run saved in `dir` from its last checkpoint, as run `id`.
    Resume { id: RunId, dir: std::path::PathBuf },
    /// Stop the run `id` at the end of its current step (or drop it from the queue).
    Stop { id: RunId },
    /// End the run `id` at the end of its current step as finished (no checkpoint kept,
    /// not resumable): "Stop and keep best", its best evaluation's tensors in `best/`.
    Finish { id: RunId },
    /// Stop everything and end the worker thread.
    Shutdown,
}

/// Worker → UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Started {
        run: RunId,
        trainable_params: usize,
        total_params: usize,
        steps: usize,
        metric_name: String,
        /// The metric's chance level on the run's evaluation examples (the majority
        /// label's share); `None` where guessing scores nothing (free-text answers) or the
        /// metric is a perplexity.
        chance: Option<Chance>,
        out_dir: Option<String>,
        /// The checkpoint step a resumed run continues from; its curves up to there are
        /// already on disk (and in the UI).
        resumed_from: Option<usize>,
    },
    /// The run began reading its model and data (the longest wait before its first step).
    Loading {
        run: RunId,
        model: String,
    },
    /// Something the user should know that does not stop the run (e.g. truncated examples).
    Notice {
        run: RunId,
        text: String,
    },
    Step(StepPoint),
    Eval(EvalPoint),
    /// Early stopping kept a new best evaluation (its tensors are in `best/`).
    Best {
        run: RunId,
        step: usize,
    },
    /// Where the update went, measured at an evaluation.
    UpdateMap {
        run: RunId,
        step: usize,
        map: Box<crate::peft::update_map::UpdateMap>,
    },
    /// AdaLoRA moved its rank budget.
    Ranks {
        run: RunId,
        step: usize,
        allocation: RankAllocation,
    },
    Finished {
        run: RunId,
        summary: Box<Summary>,
    },
    Failed {
        run: RunId,
        error: String,
    },
}

impl Event {
    /// Gives the event to run `id` (what a step or evaluation point read back from another
    /// process lacks).
    pub fn set_run(&mut self, id: RunId) {
        match self {
            Event::Started { run, .. }
            | Event::Loading { run, .. }
            | Event::Notice { run, .. }
            | Event::Best { run, .. }
            | Event::UpdateMap { run, .. }
            | Event::Ranks { run, .. }
            | Event::Finished { run, .. }
            | Event::Failed { run, .. } => *run = id,
            Event::Step(p) => p.run = id,
            Event::Eval(p) => p.run = id,
        }
    }

    pub fn run(&self) -> RunId {
        match self {
            Event::Started { run, .. }
            | Event::Loading { run, .. }
            | Event::Notice { run, .. }
            | Event::Best { run, .. }
            | Event::UpdateMap { run, .. }
            | Event::Ranks { run, .. }
            | Event::Finished { run, .. }
            | Event::Failed { run, .. } => *run,
            Event::Step(p) => p.run,
            Event::Eval(p) => p.run,
        }
    }
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    #[serde(skip)]
    pub run: RunId,
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    /// Real (unpadded) training tokens per second of training time, averaged so far.
    pub tokens_per_second: f64,
    pub tokens_seen: usize,
    /// Seconds since the run started, evaluations included.
    pub elapsed_s: f64,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    #[serde(skip)]
    pub run: RunId,
    pub step: usize,
    pub loss: f64,
    pub metric: f64,
    pub elapsed_s: f64,
}

/// A number that may be `null`: what serde_json writes for NaN, which stands for "not
/// known" (a run imported from another trainer's log).
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What a finished run reports, written as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub method: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub steps: usize,
    /// True when the run was stopped before its last step.
    pub stopped_early: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub initial_eval_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_eval_loss: f64,
    pub metric_name: String,
    #[serde(deserialize_with = "nan_if_null")]
    pub initial_metric_value: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub metric_value: f64,
    /// The metric's chance level (see `Event::Started`); absent in runs from before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chance: Option<Chance>,
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_second: f64,
    pub peak_rss_bytes: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub wall_seconds: f64,
    /// With `[early_stopping]`: the best evaluation, whose trained tensors are in `best/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<super::BestEval>,
    /// Why a run ended before `steps` as finished (not resumable): its patience ran out, or
    /// the user chose "Stop and keep best".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_early: Option<EndedEarly>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedEarly {
    /// `patience` evaluations without improvement.
    Patience,
    /// "Stop and keep best".
    User,
}

impl Summary {
    /// A few lines for a person at a terminal: what trained, how the loss and metric moved
    /// (against chance where there is one), what it cost and where the adapter went.
    pub fn describe(&self, adapter: Option<&std::path::Path>) -> String {
        let percent = 100.0 * self.trainable_params as f64 / self.total_params.max(1) as f64;
        let mut lines = vec![format!(
            "{}: {} of {} parameters trained ({percent:.3} %), {} steps{}",
            self.method,
            self.trainable_params,
            self.total_params,
            self.steps,
            match (self.stopped_early, self.ended_early) {
                (true, _) => " (stopped early)",
                (false, Some(EndedEarly::Patience)) => {
                    " (early stopping: no improvement within its patience)"
                }
                (false, Some(EndedEarly::User)) => " (stopped, keeping the best)",
                (false, None) => "",
            }
        )];
        let verdict = match self.chance {
            Some(c) if c.explains(self.metric_value) => format!(
                " (chance {:.3} ± {:.3} on {} examples: not above chance)",
                c.level,
                c.noise(),
                c.examples
            ),
            Some(c) => format!(
                " (chance {:.3} ± {:.3} on {} examples)",
                c.level,
                c.noise(),
                c.examples
            ),
            None => String::new(),
        };
        lines.push(format!(
            "eval loss {:.4} -> {:.4}, {} {:.4} -> {:.4}{verdict}",
            self.initial_eval_loss,
            self.final_eval_loss,
            self.metric_name,
            self.initial_metric_value,
            self.metric_value
        ));
        lines.push(format!(
            "{:.1} s, {:.0} tokens/s, peak memory {}",
            self.wall_seconds,
            self.tokens_per_second,
            super::memory::human_bytes(self.peak_rss_bytes)
        ));
        if let Some(b) = &self.best {
            lines.push(format!(
                "best evaluation at step {}: eval loss {:.4}, {} {:.4}{}",
                b.step,
                b.loss,
                self.metric_name,
                b.metric,
                adapter
                    .and_then(|d| d.parent())
                    .map(|run| format!(" (its tensors: {})", run.join("best").display()))
                    .unwrap_or_default()
            ));
        }
        if let Some(dir) = adapter {
            lines.push(format!("adapter: {}", dir.display()));
        }
        lines.join("\n")
    }
}

/// What a metric scores by guessing: the share of the most frequent label among the
/// evaluation examples, and how many examples were scored (which sets how far from it a
/// result must be to mean anything).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chance {
    pub level: f64,
    pub examples: usize,
}

impl Chance {
    /// Half-width of the range around the chance level that a guesser lands in 95 % of the
    /// time (normal approximation to the binomial: 1.96 · √(p(1 − p)/n)).
    pub fn noise(&self) -> f64 {
        1.96 * (self.level * (1.0 - self.level) / self.examples.max(1) as f64).sqrt()
    }

    /// Whether a metric value is no better than guessing: within that range of the chance
    /// level, or below it (always answering the minority label scores 1 − level on two
    /// labels: no more a result than always answering the majority one).
    pub fn explains(&self, metric: f64) -> bool {
        metric <= self.level + self.noise()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_against_chance() {
        let mut s = Summary {
            method: "lora".into(),
            trainable_params: 43_008,
            total_params: 7_793_920,
            steps: 300,
            stopped_early: false,
            initial_eval_loss: 6.871,
            final_eval_loss: 0.392,
            final_train_loss: 0.4,
            metric_name: "accuracy".into(),
            initial_metric_value: 0.477,
            metric_value: 0.559,
            chance: Some(Chance {
                level: 0.523,
                examples: 256,
            }),
            tokens_per_second: 4411.0,
            peak_rss_bytes: 249_000_000,
            wall_seconds: 60.2,
            best: None,
            ended_early: None,
        };
        let text = s.describe(Some(std::path::Path::new("runs/x/adapter")));
        assert!(text.contains("(0.552 %)"), "{text}");
        assert!(text.contains("accuracy 0.4770 -> 0.5590"), "{text}");
        assert!(text.contains("not above chance"), "{text}");
        assert!(text.ends_with("adapter: runs/x/adapter"), "{text}");
        s.metric_value = 0.75;
        assert!(!s.describe(None).contains("not above"));
    }

    #[test]
    fn chance_noise_is_the_binomial_interval() {
        let c = Chance {
            level: 0.5,
            examples: 128,
        };
        // 1.96 · √(0.25 / 128) = 0.0866
        assert!((c.noise() - 0.0866).abs() < 1e-4);
        assert!(c.explains(0.5));
        assert!(c.explains(0.58));
        assert!(!c.explains(0.6));
        assert!(c.explains(0.4), "below chance is no result either");
    }
}
