//! Frame times of the real window while a run trains (`gui --frame-log FILE`), for the
//! benchmark in `scripts/bench-gui-frames.sh`: the window repaints continuously, and each
//! frame drawn while a run is training counts. At exit a JSON summary is written.

use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug)]
pub struct FrameLog {
    path: PathBuf,
    /// egui's own figure: CPU seconds of the previous frame's update and paint, without
    /// waiting for the display.
    cpu: Vec<f64>,
    /// Wall time from one frame's start to the next's: what the user sees as smoothness.
    interval: Vec<f64>,
    last: Option<Instant>,
    /// When the process began opening the window (before past runs were read).
    launched: Instant,
    /// Seconds from then until the first frame had been drawn (the second one starts).
    first_frame_s: Option<f64>,
    frames: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FrameSummary {
    /// Seconds from launch until the first frame was on screen: past runs read and drawn.
    pub first_frame_s: Option<f64>,
    pub frames_while_training: usize,
    pub cpu_ms_median: f64,
    pub cpu_ms_p99: f64,
    pub interval_ms_median: f64,
    pub interval_ms_p99: f64,
    pub interval_ms_max: f64,
}

/// The value below which `q` of the sorted samples lie (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl FrameLog {
    pub fn new(path: PathBuf, launched: Instant) -> Self {
        Self {
            path,
            cpu: Vec::new(),
            interval: Vec::new(),
            last: None,
            launched,
            first_frame_s: None,
            frames: 0,
        }
    }

    /// Called at the start of every frame; `cpu` is egui's figure for the previous one.
    pub fn frame(&mut self, training: bool, cpu: Option<f32>) {
        let now = Instant::now();
        self.frames += 1;
        if self.frames == 2 {
            self.first_frame_s = Some((now - self.launched).as_secs_f64());
        }
        if training {
            if let Some(last) = self.last {
                self.interval.push((now - last).as_secs_f64());
            }
            if let Some(c) = cpu {
                self.cpu.push(c as f64);
            }
            self.last = Some(now);
        } else {
            self.last = None;
        }
    }

    pub fn summary(&self) -> FrameSummary {
        let ms = |v: &[f64]| {
            let mut v: Vec<f64> = v.iter().map(|s| s * 1e3).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let (cpu, interval) = (ms(&self.cpu), ms(&self.interval));
        FrameSummary {
            first_frame_s: self.first_frame_s,
            frames_while_training: self.interval.len(),
            cpu_ms_median: quantile(&cpu, 0.5),
            cpu_ms_p99: quantile(&cpu, 0.99),
            interval_ms_median: quantile(&interval, 0.5),
            interval_ms_p99: quantile(&interval, 0.99),
            interval_ms_max: interval.last().copied().unwrap_or(f64::NAN),
        }
    }

    pub fn write(&self) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&self.summary())?;
        crate::files::write_atomic(&self.path, json.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 100.0);
        assert_eq!(quantile(&v, 0.99), 198.0);
        assert_eq!(quantile(&v[..1], 0.99), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn only_frames_while_training_count() {
        let mut log = FrameLog::new(PathBuf::from("unused"), Instant::now());
        log.frame(false, Some(0.5));
        log.frame(true, Some(0.002));
        log.frame(true, Some(0.004));
        log.frame(false, Some(0.5));
        log.frame(true, Some(0.006));
        let s = log.summary();
        // Three training frames; intervals only between consecutive training frames.
        assert_eq!(s.frames_while_training, 1);
        assert!((s.cpu_ms_median - 4.0).abs() < 1e-4, "{s:?}");
        assert!((s.cpu_ms_p99 - 6.0).abs() < 1e-4, "{s:?}");
        assert!(s.first_frame_s.is_some_and(|t| t >= 0.0), "{s:?}");
    }
}
