//! The window: a side panel that edits a `RunConfig`, a central panel with live curves and
//! the list of runs. It never trains: it sends `Command`s to the worker thread and drains
//! its `Event`s each frame.

mod central;
mod method_params;
pub mod runs;
mod side_panel;

use eframe::egui;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RunConfig;
use crate::models::{LlamaConfig, resolve_model_dir};
use crate::peft::MethodConfig;
use crate::train::worker::{self, Notify, WorkerHandle};
use crate::train::{Command, RunId};
use runs::RunStore;

/// UI actions collected during a frame and applied once, after drawing.
#[must_use]
pub enum Action {
    Start,
    Stop(RunId),
}

pub struct WorkbenchApp {
    /// The run being configured in the side panel.
    pub form: RunConfig,
    /// Last parameters used for each method, so switching back keeps them.
    method_memory: Vec<MethodConfig>,
    pub store: RunStore,
    worker: WorkerHandle,
    /// A message about the last action (e.g. an invalid configuration).
    pub form_error: Option<String>,
    /// EMA weight of the past for the training-loss curves (0 = raw).
    pub smoothing: f64,
    /// The shape of the form's model, read once per model (for parameter counts).
    model_shape: Option<(String, Result<LlamaConfig, String>)>,
}

impl WorkbenchApp {
    /// `notify` is called by the worker after each event (the window passes a repaint
    /// request); `runs_dir` is where runs write their folders.
    pub fn new(notify: Notify, runs_dir: Option<PathBuf>) -> Self {
        Self {
            form: RunConfig::default(),
            method_memory: MethodConfig::all_defaults(),
            store: RunStore::default(),
            worker: worker::spawn(runs_dir, notify),
            form_error: None,
            smoothing: 0.6,
            model_shape: None,
        }
    }

    /// The configuration of the form's model, or why it cannot be read.
    pub fn model_shape(&mut self) -> Result<&LlamaConfig, &String> {
        let stale = self
            .model_shape
            .as_ref()
            .is_none_or(|(m, _)| *m != self.form.model);
        if stale {
            let shape = resolve_model_dir(&self.form.model)
                .and_then(|d| LlamaConfig::from_file(&d.join("config.json")))
                .map_err(|e| format!("{e:#}"));
            self.model_shape = Some((self.form.model.clone(), shape));
        }
        self.model_shape.as_ref().expect("filled above").1.as_ref()
    }

    /// Moves the worker's events into the run store, within a small time budget so a burst
    /// of events never stalls a frame.
    pub fn drain_events(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(4);
        while let Ok(e) = self.worker.events.try_recv() {
            self.store.apply(e);
            if Instant::now() > deadline {
                break;
            }
        }
    }

    /// Draws the whole window into `ui`.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.drain_events();
        let mut actions = Vec::new();
        egui::Panel::left("run_settings")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    side_panel::ui(self, ui, &mut actions);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            central::ui(self, ui, &mut actions);
        });
        for a in actions {
            self.apply(a);
        }
        if self.store.has_unfinished() {
            // Keep the ETA and elapsed time moving between events.
            ui.ctx().request_repaint_after(Duration::from_millis(500));
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::Start => match self.form.validate() {
                Ok(()) => {
                    self.form_error = None;
                    let id = self.store.add(self.form.clone());
                    let _ = self.worker.commands.send(Command::Start {
                        id,
                        config: Box::new(self.form.clone()),
                    });
                }
                Err(e) => self.form_error = Some(e.to_string()),
            },
            Action::Stop(id) => {
                let _ = self.worker.commands.send(Command::Stop { id });
            }
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
            self.form.method = m.clone();
        }
    }
}

impl eframe::App for WorkbenchApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self) {
        // Stops the run at its next step boundary; its files are already on disk.
        self.worker.shutdown();
    }
}

/// Opens the workbench window; runs are written under `./runs`.
pub fn run_native() -> eframe::Result<()> {
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
            let notify: Notify = Arc::new(move || ctx.request_repaint());
            Ok(Box::new(WorkbenchApp::new(
                notify,
                Some(PathBuf::from("runs")),
            )))
        }),
    )
}
