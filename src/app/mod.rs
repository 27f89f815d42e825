//! The window: a side panel that edits a `RunConfig`, a central panel with live curves and
//! the list of runs. It never trains: every background task is a `jobs::Command` sent
//! through its `Jobs` handle, and the `jobs::Event`s are drained each frame.

mod actions;
mod background;
pub use background::LongJob;
pub mod central;
pub mod data_view;
mod dialogs;
pub mod frame_log;
pub mod i18n;
mod job_events;
pub mod learn;
pub mod machines;
mod method_params;
mod notes_editor;
pub mod pareto;
pub mod path_dialog;
pub mod playground;
mod run_diff;
pub mod run_filter;
pub mod run_notes;
pub mod runs;
pub mod runs_table;
mod side_panel;
pub mod trash;
mod update_map;

use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RunConfig;
use crate::jobs::{self, Command, Jobs};
use crate::models::{ModelConfig, ModelFiles};
use crate::peft::MethodConfig;
use crate::train::RunId;
use crate::train::worker::Notify;
pub use actions::Action;
use dialogs::{confirm_delete_window, confirm_empty_trash_window};
use i18n::{Lang, tr};
use runs::RunStore;

/// What the central area shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum View {
    Train,
    Learn,
}

/// What the window remembers between launches (eframe persistence), besides its layout.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    pub form: RunConfig,
    pub lang: Lang,
    pub dark: bool,
    #[serde(default)]
    pub hidden_columns: std::collections::BTreeSet<central::Column>,
    #[serde(default)]
    pub playground_open: bool,
}

/// A status-line message: a template of the translation table and its arguments, so it
/// shows in the window's language whenever it is drawn (the past-runs line was made
/// before the language was known, and stayed English in the 简体中文 window).
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    template: &'static str,
    args: Vec<String>,
}

impl Said {
    pub fn new(template: &'static str, args: &[&dyn std::fmt::Display]) -> Self {
        Self {
            template,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn text(&self, lang: Lang) -> String {
        let args: Vec<&dyn std::fmt::Display> = self
            .args
            .iter()
            .map(|a| a as &dyn std::fmt::Display)
            .collect();
        i18n::fill(lang, self.template, &args)
    }
}

pub struct WorkbenchApp {
    /// The run being configured in the side panel.
    pub form: RunConfig,
    /// Last parameters used for each method, so switching back keeps them.
    method_memory: Vec<MethodConfig>,
    pub store: RunStore,
    /// Every background task goes through it (the trainer, answers, evaluations, merges),
    /// and the status line's message comes back through it.
    background: background::Background,
    /// Remote machines reached over SSH, and the panel that adds and checks them.
    pub machines: machines::MachinesPanel,
    /// Finished remote runs coming home: the job bringing each, and the run.
    pulls: Vec<(jobs::JobId, RunId)>,
    /// Remote runs whose files (dataset, model folder) are on their way there first.
    uploads: Vec<(jobs::JobId, RunId)>,
    /// Remote machines whose connection was lost while runs trained there: when to try
    /// again, and how many tries so far.
    reconnects: Vec<(String, Instant, u32)>,
    /// A message about the last action (e.g. an invalid configuration).
    pub form_error: Option<String>,
    /// EMA weight of the past for the training-loss curves (0 = raw).
    pub smoothing: f64,
    /// The shape of the form's model, read once per model (for parameter counts).
    model_shape: Option<(String, Result<ModelConfig, String>)>,
    /// A run waiting for the user to confirm its deletion.
    pub confirm_delete: Option<Vec<RunId>>,
    /// The trash's folders are about to be removed: asked first.
    pub confirm_empty_trash: bool,
    /// Where runs are written and read back (None: nothing is written).
    runs_dir: Option<PathBuf>,
    /// Run folders in the runs folder's trash.
    trash_count: usize,
    /// When the runs folder was last looked at for runs another window or process added.
    last_scan: Instant,
    /// The path the window is asking for, if any.
    pub path_prompt: Option<path_dialog::PathPrompt>,
    /// The run whose curves are drawn bold, the others faded.
    pub selected_run: Option<RunId>,
    /// The runs "Compare all methods" queued, until they have all ended: the status line
    /// then says how they ended instead of still announcing the queue.
    compare_batch: Vec<RunId>,
    pub playground: playground::Playground,
    /// What the form's dataset looks like to the model (the Data view).
    pub data_view: data_view::DataView,
    /// The update map shown ("Where the update went"), read once per chosen run.
    update_map_cache: Option<(RunId, Option<crate::peft::update_map::UpdateMap>)>,
    /// The run comparison lists every configuration key, not only those that differ.
    pub diff_all_keys: bool,
    /// The devices a run can choose, asked of the driver once at start.
    pub devices: Vec<crate::train::DeviceInfo>,
    pub view: View,
    /// The method the Learn view shows.
    pub learn_page: String,
    /// Which run's measured change colours the Learn view's diagram.
    pub learn_diagram_run: learn::DiagramRun,
    pub lang: Lang,
    pub dark: bool,
    fonts_installed: bool,
    /// What the curves' x axis counts, and whether the loss axis is logarithmic.
    pub x_axis: runs::XAxis,
    pub log_y: bool,
    /// The runs table's sort column and direction (ascending = true); None: newest first.
    pub sort: Option<(central::Column, bool)>,
    /// Runs-table columns the user hid (remembered between launches).
    pub hidden_columns: std::collections::BTreeSet<central::Column>,
    /// Whether the playground is open (remembered between launches).
    pub playground_open: bool,
    /// Which runs the runs table lists.
    pub runs_filter: run_filter::RunFilter,
    /// A run's tags and note being edited.
    notes_editor: Option<notes_editor::NotesEditor>,
    /// Screen area of the two plots in the last frame (points).
    pub plots_rect: Option<egui::Rect>,
    /// The window's context, for requests made while applying actions.
    ctx: Option<egui::Context>,
    /// Frame times recorded for `gui --frame-log`.
    frame_log: Option<frame_log::FrameLog>,
    /// When the window closes by itself (`gui --exit-after`).
    close_at: Option<Instant>,
}

pub use crate::config::WindowOptions;

impl WorkbenchApp {
    /// `notify` is called by the worker after each event (the window passes a repaint
    /// request); `runs_dir` is where runs write their folders.
    pub fn new(notify: Notify, runs_dir: Option<PathBuf>) -> Self {
        let trash_count = runs_dir.as_deref().map_or(0, trash::count);
        let mut store = RunStore::default();
        let mut status = None;
        if let Some(dir) = &runs_dir {
            let (read, bad) = store.load_past(dir);
            store.show_latest_experiment();
            if read > 0 || !bad.is_empty() {
                status = Some(if bad.is_empty() {
                    Said::new("{} past runs read from {}", &[&read, &dir.display()])
                } else {
                    Said::new(
                        "{} past runs read from {}; unreadable: {}",
                        &[&read, &dir.display(), &bad.join("; ")],
                    )
                });
            }
        }
        // The first form is the shipped comparison's run (the built-in model on the Chinese
        // reviews, the steps and batch measured to fit 15 minutes for all twelve methods),
        // so Compare all methods at first launch is that comparison; its method trains at
        // the rate the form would suggest for it.
        let mut form = crate::compare::shipped().run.clone();
        form.optimizer.lr = crate::compare::learning_rate_for(&form.method, &form);
        Self {
            form,
            method_memory: MethodConfig::all_defaults(),
            store,
            background: background::Background::new(
                Jobs::new(Box::new(jobs::LocalBackend::spawn(
                    runs_dir.clone(),
                    notify.clone(),
                ))),
                status,
                notify,
            ),
            machines: machines::MachinesPanel::load(None),
            pulls: Vec::new(),
            uploads: Vec::new(),
            reconnects: Vec::new(),
            runs_dir,
            form_error: None,
            smoothing: 0.6,
            model_shape: None,
            confirm_delete: None,
            confirm_empty_trash: false,
            trash_count,
            last_scan: Instant::now(),
            path_prompt: None,
            selected_run: None,
            compare_batch: Vec::new(),
            playground: playground::Playground::default(),
            data_view: data_view::DataView::default(),
            update_map_cache: None,
            diff_all_keys: false,
            devices: crate::train::available_devices(),
            view: View::Train,
            learn_page: "lora".into(),
            learn_diagram_run: learn::DiagramRun::default(),
            lang: Lang::En,
            dark: true,
            fonts_installed: false,
            x_axis: runs::XAxis::Step,
            log_y: false,
            sort: None,
            hidden_columns: Default::default(),
            playground_open: false,
            runs_filter: Default::default(),
            notes_editor: None,
            plots_rect: None,
            ctx: None,
            frame_log: None,
            close_at: None,
        }
    }

    /// Takes back what the last session remembered.
    pub fn restore(&mut self, r: Remembered) {
        self.form = r.form;
        if let Some(slot) = self
            .method_memory
            .iter_mut()
            .find(|m| m.kind() == self.form.method.kind())
        {
            *slot = self.form.method.clone();
        }
        self.lang = r.lang;
        self.dark = r.dark;
        // Run and Metric stay whatever an older save says.
        self.hidden_columns = r
            .hidden_columns
            .into_iter()
            .filter(|c| c.hideable())
            .collect();
        self.playground_open = r.playground_open;
    }

    pub fn remembered(&self) -> Remembered {
        Remembered {
            form: self.form.clone(),
            lang: self.lang,
            dark: self.dark,
            hidden_columns: self.hidden_columns.clone(),
            playground_open: self.playground_open,
        }
    }

    /// Sets the status line from a template of the translation table (shown in the
    /// window's language, also after it changes).
    fn say_t(&mut self, template: &'static str, args: &[&dyn std::fmt::Display]) {
        self.background.say(Said::new(template, args));
    }

    /// Sets the status line to a text that is already in the window's language.
    fn say(&mut self, text: String) {
        self.background.say(Said::new("{}", &[&text]));
    }

    /// The status line's text in the window's language.
    pub fn status_text(&self) -> Option<String> {
        self.background.status().map(|s| s.text(self.lang))
    }

    /// Sends a command to the backend; if it is gone, says so (and a run it would have
    /// trained is marked failed with the reason), so nothing is dropped silently.
    fn send(&mut self, cmd: Command) -> bool {
        let run = match &cmd {
            Command::Train { id, .. } | Command::Resume { id, .. } => Some(*id),
            _ => None,
        };
        // A run on a remote machine goes to that machine's backend.
        let target = match &cmd {
            Command::Train { id, .. }
            | Command::Resume { id, .. }
            | Command::StopRun { id }
            | Command::FinishRun { id } => {
                self.store.get(*id).and_then(|r| r.config.machine.clone())
            }
            _ => None,
        };
        let sent = match (target, cmd) {
            (None, cmd) => self.background.send(cmd),
            (Some(name), cmd) => match self.machines.get(&name).cloned() {
                // Files on this machine go there first (a job here); the run is sent once
                // they have arrived (`job_events`).
                Some(m) => match cmd {
                    Command::Train { id, config }
                        if crate::remote::upload::needs_upload(&config) =>
                    {
                        let job = self.background.next_job_id();
                        self.uploads.push((job, id));
                        self.background.send(Command::Upload {
                            job,
                            machine: m,
                            config,
                        })
                    }
                    cmd => self.background.send_on(&m, cmd),
                },
                None => Err(format!("no machine `{name}`: add it under Remote machines")),
            },
        };
        match sent {
            Ok(()) => true,
            Err(why) => {
                if let Some(r) = run.and_then(|id| self.store.runs.iter_mut().find(|r| r.id == id))
                {
                    r.status = runs::RunStatus::Failed(why.clone());
                }
                let why = i18n::fill(self.lang, &why, &[]);
                self.say_t("cannot start: {}", &[&why]);
                false
            }
        }
    }

    /// The configuration of the form's model, or why it cannot be read.
    pub fn model_shape(&mut self) -> Result<&ModelConfig, &String> {
        let stale = self
            .model_shape
            .as_ref()
            .is_none_or(|(m, _)| *m != self.form.model);
        if stale {
            let shape = ModelFiles::open(&self.form.model)
                .map(|f| f.config)
                .map_err(|e| crate::describe(&e));
            self.model_shape = Some((self.form.model.clone(), shape));
        }
        self.model_shape.as_ref().expect("filled above").1.as_ref()
    }

    /// Stops every run (each saves a checkpoint at its next step) and job and ends the
    /// trainer: what closing the window does. Later commands are refused, with the reason.
    pub fn stop_background_work(&mut self) {
        self.background.shutdown();
    }

    /// Whether the form's device is one a run can use: here, or on its remote machine as
    /// that machine's last test found.
    pub fn device_available(&self) -> bool {
        match &self.form.machine {
            None => self.devices.iter().any(|d| d.name == self.form.device),
            Some(m) => self
                .machines
                .remote_devices()
                .iter()
                .any(|(name, d)| name == m && *d == self.form.device),
        }
    }

    /// How many run folders wait in the runs folder's trash.
    pub fn trash_count(&self) -> usize {
        self.trash_count
    }

    /// The merge or import in progress: when it began and which (the status line shows a
    /// spinner, the seconds and Stop while it runs).
    pub fn long_job(&self) -> Option<(Instant, LongJob)> {
        self.background
            .long_job()
            .map(|(_, since, kind)| (since, kind))
    }

    /// When the merge in progress began.
    pub fn merging_since(&self) -> Option<Instant> {
        self.long_job()
            .filter(|(_, kind)| *kind == LongJob::Merge)
            .map(|(since, _)| since)
    }

    /// Stops the merge or import in progress (nothing is written).
    pub fn stop_long_job(&mut self) {
        if let Some((job, _, _)) = self.background.long_job() {
            self.send(Command::StopJob { job });
        }
    }

    /// Once every run of the last "Compare all methods" has ended: how many finished, and
    /// the best of them by its metric.
    fn report_compare_batch(&mut self) {
        if self.compare_batch.is_empty() {
            return;
        }
        let batch: Vec<&runs::RunRecord> = self
            .compare_batch
            .iter()
            .filter_map(|id| self.store.get(*id))
            .collect();
        if batch
            .iter()
            .any(|r| matches!(r.status, runs::RunStatus::Queued | runs::RunStatus::Running))
        {
            return;
        }
        let finished = batch
            .iter()
            .filter(|r| r.status == runs::RunStatus::Finished)
            .count();
        let best = batch
            .iter()
            .filter(|r| r.status == runs::RunStatus::Finished)
            .filter_map(|r| r.final_metric().map(|m| (r, m)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let text = match best {
            Some((r, m)) => i18n::fill(
                self.lang,
                "comparison done: {} of {} runs finished; best {} ({} {})",
                &[
                    &finished,
                    &batch.len(),
                    &r.label,
                    &r.metric_name,
                    &format!("{m:.3}"),
                ],
            ),
            None => i18n::fill(
                self.lang,
                "comparison done: {} of {} runs finished",
                &[&finished, &batch.len()],
            ),
        };
        self.compare_batch.clear();
        self.say(text);
    }

    /// Draws the whole window into `ui`.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.drain_events();
        let ctx = ui.ctx().clone();
        self.ctx = Some(ctx.clone());
        if !self.fonts_installed {
            i18n::install_fonts(&ctx);
            self.fonts_installed = true;
        }
        i18n::set_lang(&ctx, self.lang);
        ctx.set_theme(if self.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        self.scan_for_new_runs();
        self.reconnect_due();
        let mut actions = Vec::new();
        self.shortcuts(&ctx, &mut actions);
        egui::Panel::top("top_bar").show(ui, |ui| self.top_bar(ui));
        if self.view == View::Learn {
            egui::CentralPanel::default().show(ui, |ui| {
                learn::ui(self, ui, &mut actions);
            });
            for a in actions {
                self.apply(a);
            }
            return;
        }
        egui::Panel::left("run_settings")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                // Start and Stop stay in view however long the method's settings are.
                egui::Panel::bottom("run_actions").show(ui, |ui| {
                    side_panel::actions(self, ui, &mut actions);
                });
                egui::ScrollArea::vertical().show(ui, |ui| {
                    side_panel::ui(self, ui);
                    machines::ui(self, ui, &mut actions);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            central::ui(self, ui, &mut actions);
        });
        if let Some(ids) = &self.confirm_delete {
            confirm_delete_window(self, ids, ui.ctx(), &mut actions);
        }
        if self.confirm_empty_trash {
            confirm_empty_trash_window(self, ui.ctx(), &mut actions);
        }
        if let Some(editor) = &mut self.notes_editor {
            editor.ui(ui.ctx(), &mut actions);
        }
        data_view::window(self, ui.ctx());
        if let Some(prompt) = &mut self.path_prompt
            && let Some(outcome) = path_dialog::ui(prompt, ui.ctx())
        {
            self.path_prompt = None;
            actions.extend(outcome);
        }
        for a in actions {
            self.apply(a);
        }
        if self.store.has_unfinished() {
            // Keep the ETA and elapsed time moving between events.
            ui.ctx().request_repaint_after(Duration::from_millis(500));
        }
    }

    /// The view switch, the language and the theme.
    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for (v, name) in [(View::Train, "Train"), (View::Learn, "Learn")] {
                if ui.selectable_label(self.view == v, tr(ui, name)).clicked() {
                    self.view = v;
                }
            }
            ui.separator();
            ui.label(tr(ui, "Language"));
            for l in Lang::ALL {
                if ui.selectable_label(self.lang == l, l.name()).clicked() {
                    self.lang = l;
                    i18n::set_lang(ui.ctx(), l);
                }
            }
            ui.separator();
            ui.label(tr(ui, "Theme"));
            for (dark, name) in [(true, "Dark"), (false, "Light")] {
                if ui
                    .selectable_label(self.dark == dark, tr(ui, name))
                    .clicked()
                {
                    self.dark = dark;
                }
            }
            ui.separator();
            ui.weak(tr(ui, "Ctrl+Enter: Start · Esc: Stop"));
        });
    }

    /// Asks the window for a screenshot and saves the plots' area of it as PNG when it
    /// arrives (on the UI thread's next paint; the status line tells the outcome).
    fn save_plots(&self, ctx: &egui::Context, to: PathBuf) {
        let area = self.plots_rect.unwrap_or(egui::Rect::EVERYTHING);
        let ppp = ctx.pixels_per_point();
        let status = self.background.outcome_sender();
        let repaint = ctx.clone();
        ctx.request_screenshot(move |image| {
            let cropped = image.region(&area, Some(ppp));
            let said = match save_png(&cropped, &to) {
                Ok(()) => Said::new("plots saved to {}", &[&to.display()]),
                Err(e) => Said::new("cannot save the plots: {}", &[&crate::describe(&e)]),
            };
            // The window may have closed meanwhile: only the message is lost.
            let _ = status.send(said);
            repaint.request_repaint();
        });
    }

    /// Ctrl+Enter queues the form's run; Escape stops the running one.
    fn shortcuts(&self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        let start = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Enter);
        let stop = egui::KeyboardShortcut::new(egui::Modifiers::NONE, egui::Key::Escape);
        if ctx.input_mut(|i| i.consume_shortcut(&start)) {
            actions.push(Action::Start);
        }
        if ctx.input_mut(|i| i.consume_shortcut(&stop))
            && let Some(r) = self.store.active()
        {
            actions.push(Action::Stop(r.id));
        }
    }

    /// Every few seconds, reads the runs another window or a CLI run finished in the runs
    /// folder since this window opened.
    fn scan_for_new_runs(&mut self) {
        // A run coming home appears in the folder before its job says so: not read as new.
        if self.last_scan.elapsed() < Duration::from_secs(3) || !self.pulls.is_empty() {
            return;
        }
        self.last_scan = Instant::now();
        let Some(dir) = self.runs_dir.clone() else {
            return;
        };
        let (read, _) = self.store.load_new(&dir);
        if read > 0 {
            self.say_t("{} new runs found in {}", &[&read, &dir.display()]);
        }
    }

    /// Switches the form to another method, remembering the current one's parameters.
    fn select_method(&mut self, kind: &str) {
        if self.form.method.kind() == kind {
            return;
        }
        let current = self.form.method.clone();
        if let Some(slot) = self
            .method_memory
            .iter_mut()
            .find(|m| m.kind() == current.kind())
        {
            *slot = current;
        }
        if let Some(m) = self.method_memory.iter().find(|m| m.kind() == kind) {
            // A rate the user left at the old method's suggestion follows the method (1e-3
            // kept for Prompt Tuning, whose usual rate is 3e-2, trained it at a thirtieth);
            // a rate they set stays, and the form offers the suggestion beside it.
            if self.form.optimizer.lr
                == crate::compare::learning_rate_for(&self.form.method, &self.form)
            {
                self.form.optimizer.lr = crate::compare::learning_rate_for(m, &self.form);
            }
            self.form.method = m.clone();
        }
    }
}

impl eframe::App for WorkbenchApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if let Some(log) = &mut self.frame_log {
            log.frame(self.store.active().is_some(), frame.info().cpu_usage);
            // Measured at the fastest the window can redraw, not only when an event comes.
            ui.ctx().request_repaint();
        }
        if let Some(at) = self.close_at {
            if Instant::now() >= at {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            } else {
                ui.ctx().request_repaint_after(at - Instant::now());
            }
        }
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.remembered());
    }

    fn on_exit(&mut self) {
        // Stops the run at its next step boundary; it saves a checkpoint there, so it can be
        // resumed at the next launch.
        self.stop_background_work();
        if let Some(log) = &self.frame_log {
            match log.write() {
                Ok(()) => eprintln!("frame times: {:?}", log.summary()),
                Err(e) => eprintln!("cannot write the frame log: {}", crate::describe(&e)),
            }
        }
    }
}

/// Encodes an egui image as PNG and writes it through a temporary file.
pub fn save_png(image: &egui::ColorImage, to: &Path) -> anyhow::Result<()> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        &rgba,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgba8,
    )?;
    crate::files::write_atomic(to, &bytes)
}

/// Opens the workbench window; runs are written under `./runs`.
/// Opens the window; runs are saved under (and past ones read from) `runs_dir`.
pub fn run_native(runs_dir: PathBuf, opts: WindowOptions) -> eframe::Result<()> {
    let launched = Instant::now();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("PEFT Workbench")
            .with_inner_size([1280.0, 800.0]),
        ..Default::default()
    };
    eframe::run_native(
        "peft-workbench",
        options,
        Box::new(|cc| {
            let ctx = cc.egui_ctx.clone();
            // A run sends an event every step (dozens a second on the built-in model); each
            // redraws the window, which without a GPU driver costs tens of milliseconds of
            // CPU taken from training. Ten redraws a second keep the curves live; input
            // (mouse, keys) still redraws at once.
            let notify: Notify =
                Arc::new(move || ctx.request_repaint_after(Duration::from_millis(100)));
            let mut app = WorkbenchApp::new(notify, Some(runs_dir));
            if let Some(r) = cc
                .storage
                .and_then(|s| eframe::get_value::<Remembered>(s, eframe::APP_KEY))
            {
                app.restore(r);
            }
            app.frame_log = opts
                .frame_log
                .map(|path| frame_log::FrameLog::new(path, launched));
            app.close_at = opts.exit_after.map(|d| Instant::now() + d);
            if let Some(cfg) = opts.start {
                app.form = cfg;
                app.apply(Action::Start);
            }
            Ok(Box::new(app))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_saved_as_a_png_of_the_same_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let mut img = egui::ColorImage::filled([3, 2], egui::Color32::from_rgb(10, 20, 30));
        img.pixels[4] = egui::Color32::RED;
        save_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgba8();
        assert_eq!(back.dimensions(), (3, 2));
        assert_eq!(back.get_pixel(1, 1).0, [255, 0, 0, 255]);
        assert_eq!(back.get_pixel(0, 0).0, [10, 20, 30, 255]);
    }
}
