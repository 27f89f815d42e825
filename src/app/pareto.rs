//! The trade-off (Pareto) view: each finished run as one point, its final metric against
//! what it cost: trainable parameters (log scale), peak memory and wall time. A method
//! that is both better and cheaper than another sits above and left of it.

use eframe::egui;
use egui_plot::{HoverPosition, Plot, Points};

use super::i18n::{tr, trf};
use super::runs::RunRecord;
use crate::compare::Row;

/// One cost axis of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// log10 of the trainable parameters.
    TrainableParams,
    /// Peak resident memory of the run, MB.
    PeakMemory,
    /// Wall time, seconds.
    WallTime,
}

impl Cost {
    pub const ALL: [Cost; 3] = [Cost::TrainableParams, Cost::PeakMemory, Cost::WallTime];

    pub fn title(self) -> &'static str {
        match self {
            Cost::TrainableParams => "Trainable parameters (log scale)",
            Cost::PeakMemory => "Peak memory (MB)",
            Cost::WallTime => "Wall time (s)",
        }
    }

    /// The x value of a run on this axis (`None` where it has no meaning, e.g. log of 0).
    pub fn x(self, row: &Row) -> Option<f64> {
        match self {
            Cost::TrainableParams => {
                (row.trainable_params > 0).then(|| (row.trainable_params as f64).log10())
            }
            Cost::PeakMemory => (row.peak_rss_bytes > 0).then(|| row.peak_rss_bytes as f64 / 1e6),
            // An imported run's log may not say how long it took.
            Cost::WallTime => row.wall_seconds.is_finite().then_some(row.wall_seconds),
        }
    }
}

/// The finished runs that can be placed: those shown on the plots with a table row and a
/// finite metric, and all of one metric (the first one's), so that the y axis means one
/// thing.
pub fn placed(runs: &[RunRecord]) -> Vec<(&RunRecord, &Row)> {
    let rows: Vec<(&RunRecord, &Row)> = runs
        .iter()
        .filter(|r| r.shown)
        .filter_map(|r| Some((r, r.row.as_ref()?)))
        .filter(|(_, row)| row.metric.is_finite())
        .collect();
    let Some(metric) = rows.first().map(|(_, row)| row.metric_name.clone()) else {
        return rows;
    };
    rows.into_iter()
        .filter(|(_, row)| row.metric_name == metric)
        .collect()
}

/// How many runs `placed` leaves out because they are scored by another metric than the
/// placed ones (a classifier's accuracy beside generation's exact match, say): the view says
/// so, instead of their silently missing.
pub fn other_metrics(runs: &[RunRecord]) -> usize {
    let placed = placed(runs);
    let Some(metric) = placed.first().map(|(_, row)| row.metric_name.as_str()) else {
        return 0;
    };
    runs.iter()
        .filter(|r| r.shown)
        .filter_map(|r| r.row.as_ref())
        .filter(|row| row.metric.is_finite() && row.metric_name != metric)
        .count()
}

/// Human-readable parameter counts on the log axis: 10^4 → "10 k".
fn log_count(v: f64) -> String {
    super::central::human(10f64.powf(v).round() as usize)
}

pub fn ui(runs: &[RunRecord], color: impl Fn(u64) -> egui::Color32, ui: &mut egui::Ui) {
    let placed = placed(runs);
    if placed.is_empty() {
        ui.label(tr(
            ui,
            "Each finished run appears here as one point: its metric against what it cost.",
        ));
        return;
    }
    let metric = placed[0].1.metric_name.clone();
    let y = format!("{} {metric}", tr(ui, "y: final"));
    match other_metrics(runs) {
        0 => ui.label(y),
        n => ui.label(format!(
            "{y} · {}",
            trf(
                ui,
                "shown runs scored by another metric, not placed here: {}",
                &[&n]
            )
        )),
    };
    let height = 180.0;
    ui.columns(Cost::ALL.len(), |cols| {
        for (col, cost) in cols.iter_mut().zip(Cost::ALL) {
            col.label(tr(col, cost.title()));
            // No legend: three of them would cover the points; the colours are the
            // curves' above, and hovering a point names its run.
            let mut plot = Plot::new(("pareto", cost as u8))
                .height(height)
                .label_formatter(move |pos| match pos {
                    // Only a run's own point is labelled: its name, cost and metric.
                    HoverPosition::NearDataPoint {
                        plot_name,
                        position: p,
                        ..
                    } => {
                        let x = match cost {
                            Cost::TrainableParams => log_count(p.x),
                            Cost::PeakMemory => format!("{:.0} MB", p.x),
                            Cost::WallTime => format!("{:.0} s", p.x),
                        };
                        Some(format!("{plot_name}\n{x}\n{:.3}", p.y))
                    }
                    HoverPosition::Elsewhere { .. } => None,
                });
            if cost == Cost::TrainableParams {
                plot = plot.x_axis_formatter(|mark, _| log_count(mark.value));
            }
            plot.show(col, |plot| {
                for (r, row) in &placed {
                    if let Some(x) = cost.x(row) {
                        plot.points(
                            Points::new(r.label.clone(), vec![[x, row.metric]])
                                .radius(5.0)
                                .color(color(r.id)),
                        );
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(id: u64, metric_name: &str, metric: f64) -> RunRecord {
        let mut r = RunRecord::new(id, crate::config::RunConfig::default());
        r.row = Some(Row {
            run: format!("#{id}"),
            method: "lora".into(),
            learning_rate: 1e-3,
            steps: 10,
            trainable_params: 1000,
            trainable_percent: 0.1,
            adapter_bytes: 4000,
            peak_rss_bytes: 1 << 20,
            tokens_per_second: 100.0,
            wall_seconds: 5.0,
            initial_eval_loss: 2.0,
            final_eval_loss: 1.0,
            metric_name: metric_name.into(),
            metric,
            chance: None,
        });
        r
    }

    #[test]
    fn runs_of_another_metric_are_counted_not_placed() {
        let mut runs = vec![
            finished(1, "exact_match", 0.5),
            finished(2, "accuracy", 0.8),
            finished(3, "exact_match", 0.25),
            // No metric at all (an imported Trainer run): neither placed nor counted.
            finished(4, "eval_loss", f64::NAN),
        ];
        assert_eq!(placed(&runs).len(), 2);
        assert_eq!(other_metrics(&runs), 1);
        runs[1].shown = false;
        assert_eq!(other_metrics(&runs), 0);
    }
}
