//! The Data view: what a run of the form would train on, before it starts — the examples'
//! kinds and counts, how conversations are rendered (the model's chat template, or the
//! plain one when the model has none), a histogram of token lengths with the `max_seq_len`
//! cut marked, and the first examples exactly as tokenised, special tokens visible and the
//! tokens that carry no loss greyed. The summary is a short job (`Command::SummarizeData`),
//! asked again whenever the model, dataset or sequence limit in the form changes.

use eframe::egui;
use egui_plot::{Bar, BarChart, Plot, VLine};

use super::WorkbenchApp;
use super::i18n::{fill, tr};
use crate::config::RunConfig;
use crate::jobs::{Command, JobId, JobResult, JobUpdate};
use crate::train::data_summary::DataSummary;

#[derive(Default)]
pub struct DataView {
    pub open: bool,
    /// The form's fields the summary shown (or asked for) describes.
    asked_for: Option<String>,
    job: Option<JobId>,
    pub state: DataState,
}

#[derive(Default, Debug)]
pub enum DataState {
    #[default]
    Empty,
    Loading,
    Ready(Box<DataSummary>),
    Failed(String),
}

/// What the summary depends on in a run's configuration.
fn key(cfg: &RunConfig) -> String {
    format!(
        "{}|{}|{:?}|{}|{:?}|{}|{}",
        cfg.model,
        cfg.dataset,
        cfg.eval_dataset,
        cfg.max_seq_len,
        cfg.dataset_format,
        cfg.last_turn_only,
        cfg.seed
    )
}

impl DataView {
    /// Takes its job's result in; false if `job` is not its job.
    pub fn apply(&mut self, job: JobId, update: &JobUpdate) -> bool {
        if self.job != Some(job) {
            return false;
        }
        match update {
            JobUpdate::Done(JobResult::DataSummary(s)) => self.state = DataState::Ready(s.clone()),
            JobUpdate::Failed(e) => self.state = DataState::Failed(e.clone()),
            JobUpdate::Stopped => self.state = DataState::Empty,
            JobUpdate::Done(_) | JobUpdate::Text(_) | JobUpdate::Progress { .. } => return true,
        }
        self.job = None;
        true
    }
}

/// Asks for the summary of the form's data when the view is open and the form changed.
fn refresh(app: &mut WorkbenchApp) {
    let wanted = key(&app.form);
    if app.data_view.asked_for.as_deref() == Some(wanted.as_str()) {
        return;
    }
    if let Some(old) = app.data_view.job.take() {
        let _ = app.background.send(Command::StopJob { job: old });
    }
    let job = app.background.next_job_id();
    let cmd = Command::SummarizeData {
        job,
        config: Box::new(app.form.clone()),
    };
    app.data_view.asked_for = Some(wanted);
    app.data_view.state = match app.background.send(cmd) {
        Ok(()) => {
            app.data_view.job = Some(job);
            DataState::Loading
        }
        Err(why) => DataState::Failed(why),
    };
}

pub fn window(app: &mut WorkbenchApp, ctx: &egui::Context) {
    if !app.data_view.open {
        return;
    }
    refresh(app);
    let mut open = true;
    egui::Window::new(super::i18n::tr_ctx(ctx, "Data"))
        .open(&mut open)
        .default_size([620.0, 560.0])
        .resizable(true)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| body(app, ui));
        });
    if !open {
        app.data_view.open = false;
    }
}

fn body(app: &WorkbenchApp, ui: &mut egui::Ui) {
    let s = match &app.data_view.state {
        DataState::Empty | DataState::Loading => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(tr(ui, "reading and tokenising the dataset…"));
            });
            return;
        }
        DataState::Failed(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
        DataState::Ready(s) => s,
    };
    let lang = app.lang;
    ui.label(egui::RichText::new(&s.dataset).monospace());
    for (kind, n) in &s.kinds {
        ui.label(format!("{n} × {}", tr(ui, kind)));
    }
    ui.label(fill(
        lang,
        "{} train, {} eval; metric: {}",
        &[&s.train, &s.eval, &s.metric.name()],
    ));
    if let Some(t) = &s.template {
        let text = fill(lang, "conversations rendered with {}", &[&tr(ui, t)]);
        if s.plain_template {
            ui.colored_label(ui.visuals().warn_fg_color, text);
        } else {
            ui.label(text);
        }
    }
    let [median, p90, longest] = s.length_quantiles();
    ui.label(fill(
        lang,
        "tokens per example: median {}, 90 % ≤ {}, longest {}",
        &[&median, &p90, &longest],
    ));
    let cut_text = fill(
        lang,
        "{} cut to max_seq_len {}; {} dropped (nothing left to learn once cut)",
        &[&s.cut, &s.max_seq_len, &s.dropped],
    );
    if s.cut > 0 || s.dropped > 0 {
        ui.colored_label(ui.visuals().warn_fg_color, cut_text);
    } else {
        ui.label(cut_text);
    }
    histogram(s, lang, ui);
    ui.separator();
    ui.label(tr(
        ui,
        "The first examples as the model sees them: special tokens shown, the tokens that carry no loss greyed.",
    ));
    let weak = ui.visuals().weak_text_color().gamma_multiply(0.8);
    let strong = ui.visuals().strong_text_color();
    for (i, pieces) in s.first.iter().enumerate() {
        ui.add_space(4.0);
        ui.strong(fill(lang, "example {}", &[&(i + 1)]));
        let mut job = egui::text::LayoutJob::default();
        let font = egui::FontId::monospace(12.5);
        for (text, learned) in pieces {
            let mut format =
                egui::TextFormat::simple(font.clone(), if *learned { strong } else { weak });
            if *learned {
                format.background = ui.visuals().selection.bg_fill.gamma_multiply(0.35);
            }
            job.append(text, 0.0, format);
        }
        job.wrap.max_width = ui.available_width();
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.label(job);
        });
    }
}

/// Token lengths in 24 bins, the bins past the `max_seq_len` cut in the warning colour and
/// the cut itself a vertical line.
fn histogram(s: &DataSummary, lang: super::i18n::Lang, ui: &mut egui::Ui) {
    let (width, bins) = s.length_bins(24);
    let kept = super::central::run_color(1, ui.visuals().dark_mode);
    let bars: Vec<Bar> = bins
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let centre = (i as f64 + 0.5) * width as f64;
            let color = if i * width + 1 > s.max_seq_len {
                ui.visuals().warn_fg_color
            } else {
                kept
            };
            Bar::new(centre, count as f64)
                .width(width as f64 * 0.9)
                .fill(color)
                .stroke(egui::Stroke::new(1.0, color))
        })
        .collect();
    let cut_label = fill(lang, "max_seq_len {}", &[&s.max_seq_len]);
    let examples = tr(ui, "examples").to_string();
    let cut_color = ui.visuals().error_fg_color;
    Plot::new("data_lengths")
        .height(140.0)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .x_axis_label(tr(ui, "tokens per example"))
        .y_axis_label(examples.clone())
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new(examples, bars));
            plot.vline(
                VLine::new(cut_label, s.max_seq_len as f64)
                    .color(cut_color)
                    .width(1.5),
            );
        });
}
