//! Learning rate at each step: linear warm-up, then the configured decay.

use crate::config::{OptimizerConfig, Schedule};

/// The learning rate for optimizer step `step` (1-based) of `total`.
pub fn lr_at(step: usize, total: usize, o: &OptimizerConfig) -> f64 {
    let s = step.saturating_sub(1);
    if s < o.warmup_steps {
        return o.lr * (s + 1) as f64 / o.warmup_steps as f64;
    }
    let decay_steps = total.saturating_sub(o.warmup_steps).max(1);
    let progress = ((s - o.warmup_steps) as f64 / decay_steps as f64).min(1.0);
    match o.schedule {
        Schedule::Cosine => o.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Schedule::Linear => o.lr * (1.0 - progress),
        Schedule::Constant => o.lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let o = OptimizerConfig {
            lr: 1.0,
            warmup_steps: 4,
            ..Default::default()
        };
        assert_eq!(lr_at(1, 104, &o), 0.25);
        assert_eq!(lr_at(4, 104, &o), 1.0);
        assert_eq!(lr_at(5, 104, &o), 1.0);
        assert!((lr_at(55, 104, &o) - 0.5).abs() < 1e-12);
        assert!(lr_at(104, 104, &o) < 0.001 && lr_at(104, 104, &o) > 0.0);
        let lin = OptimizerConfig {
            schedule: Schedule::Linear,
            ..o.clone()
        };
        assert!((lr_at(55, 104, &lin) - 0.5).abs() < 1e-12);
        let c = OptimizerConfig {
            schedule: Schedule::Constant,
            warmup_steps: 0,
            ..o
        };
        assert_eq!(lr_at(1, 10, &c), 1.0);
        assert_eq!(lr_at(10, 10, &c), 1.0);
    }
}
