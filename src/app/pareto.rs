//! The trade-off (Pareto) view: each finished run as one point, its final metric against
//! what it cost: trainable parameters (log scale), peak memory and wall time. A method
//! that is both better and cheaper than another sits above and left of it.

use eframe::egui;
use egui_plot::{HoverPosition, Plot, Points};

use super::i18n::tr;
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
    ui.label(format!("{} {metric}", tr(ui, "y: final")));
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
