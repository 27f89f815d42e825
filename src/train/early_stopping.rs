//! Early stopping: the best evaluation so far and how many evaluations have passed without
//! beating it. The trainer keeps the best evaluation's trained tensors in `best/` and stops
//! once `patience` evaluations in a row have not improved by more than `min_delta`; the
//! state rides in the checkpoint, so a resumed run counts on from where it stopped.

use serde::{Deserialize, Serialize};

use crate::config::{EarlyStopping, Monitor};

/// An evaluation: its step, loss and metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEval {
    pub step: usize,
    pub loss: f64,
    pub metric: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingState {
    pub best: Option<BestEval>,
    /// Evaluations since the best one.
    pub evals_since_best: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new best: keep these tensors.
    Improved,
    /// Not better; patience left.
    Waiting,
    /// `patience` evaluations in a row without improvement: stop.
    Stop,
}

impl EarlyStoppingState {
    /// Takes an evaluation in. `higher_is_better` is the metric's direction (the loss is
    /// always lower-is-better).
    pub fn observe(
        &mut self,
        cfg: &EarlyStopping,
        higher_is_better: bool,
        eval: BestEval,
    ) -> Verdict {
        let (value, up) = match cfg.monitor {
            Monitor::EvalLoss => (eval.loss, false),
            Monitor::Metric => (eval.metric, higher_is_better),
        };
        let improved = match &self.best {
            None => value.is_finite(),
            Some(best) => {
                let best = match cfg.monitor {
                    Monitor::EvalLoss => best.loss,
                    Monitor::Metric => best.metric,
                };
                if up {
                    value > best + cfg.min_delta
                } else {
                    value < best - cfg.min_delta
                }
            }
        };
        if improved {
            self.best = Some(eval);
            self.evals_since_best = 0;
            Verdict::Improved
        } else {
            self.evals_since_best += 1;
            if self.evals_since_best >= cfg.patience {
                Verdict::Stop
            } else {
                Verdict::Waiting
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdicts on `values` up to and including the first Stop.
    fn feed(
        cfg: &EarlyStopping,
        higher: bool,
        values: &[f64],
    ) -> (Vec<Verdict>, EarlyStoppingState) {
        let mut s = EarlyStoppingState::default();
        let mut verdicts = Vec::new();
        for (i, &v) in values.iter().enumerate() {
            let eval = BestEval {
                step: i * 10,
                loss: v,
                metric: v,
            };
            verdicts.push(s.observe(cfg, higher, eval));
            if verdicts.last() == Some(&Verdict::Stop) {
                break;
            }
        }
        (verdicts, s)
    }

    #[test]
    fn stops_after_patience_evaluations_without_a_big_enough_improvement() {
        use Verdict::*;
        let cfg = EarlyStopping {
            patience: 2,
            min_delta: 0.05,
            monitor: Monitor::EvalLoss,
        };
        // 2.0 best, 1.5 best, 1.48 not by more than 0.05, 1.2 best, 1.3, 1.25: stop.
        let (v, s) = feed(&cfg, false, &[2.0, 1.5, 1.48, 1.2, 1.3, 1.25, 0.1]);
        assert_eq!(v, [Improved, Improved, Waiting, Improved, Waiting, Stop]);
        assert_eq!(s.best.unwrap().step, 30);
        assert_eq!(s.evals_since_best, 2);
        // A metric where higher is better (accuracy) counts the other way.
        let cfg = EarlyStopping {
            patience: 1,
            min_delta: 0.0,
            monitor: Monitor::Metric,
        };
        let (v, s) = feed(&cfg, true, &[0.5, 0.6, 0.6]);
        assert_eq!(v, [Improved, Improved, Stop]);
        assert_eq!(s.best.unwrap().metric, 0.6);
        // A NaN first evaluation is no best.
        let (v, _) = feed(&cfg, true, &[f64::NAN, 0.5]);
        assert_eq!(v, [Stop]);
    }
}
