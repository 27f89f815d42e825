//! What the user asked for in a frame (`Action`s, collected while drawing) and how the app
//! carries each out once drawing is done.

use std::path::{Path, PathBuf};

use super::i18n;
use super::{
    Remembered, View, WorkbenchApp, central, learn, notes_editor, path_dialog, run_notes, runs,
    trash,
};
use crate::config::RunConfig;
use crate::jobs::Command;
use crate::peft::MethodConfig;
use crate::train::RunId;

/// UI actions collected during a frame and applied once, after drawing.
#[must_use]
pub enum Action {
    Start,
    /// Queue one run per method on the form's model, data and steps, each with its swept
    /// learning rate where the shipped comparison has one for this task, else its
    /// conventional one.
    CompareAll,
    Stop(RunId),
    /// End a run with early stopping now, as finished, keeping its best evaluation.
    StopKeepBest(RunId),
    /// Draw a run's curves on the plots, or stop drawing them.
    ShowRun(RunId, bool),
    /// Continue a stopped or interrupted run from its checkpoint.
    Resume(RunId),
    /// Copy a run's adapter folder to the path.
    Export(RunId, PathBuf),
    /// Copy a run's best evaluation (`best/`, early stopping) to the path.
    ExportBest(RunId, PathBuf),
    /// Write the run as a PyTorch recipe there.
    WriteRecipe(RunId, PathBuf, crate::recipe::Target),
    /// Import the outside run in this folder into the runs folder.
    ImportRun(PathBuf),
    /// Fold a run's adapter into its base model and write the model folder to the path.
    Merge(RunId, PathBuf),
    /// Ask before moving these runs' folders to the trash.
    AskDelete(Vec<RunId>),
    Delete(Vec<RunId>),
    CancelDelete,
    /// Ask before removing the trash's folders from disk, then remove them.
    AskEmptyTrash,
    EmptyTrash,
    /// Load a method's preset into the form and go to the Train view.
    UsePreset(MethodConfig),
    /// Write the finished runs' table rows, in the table's order, as CSV.
    ExportTable(PathBuf),
    /// Save the plots as a PNG image.
    SavePlots(PathBuf),
    /// Ask in the window for a path (the system's dialog one click away), starting at the path.
    AskPath(path_dialog::PathPurpose, PathBuf),
    /// Train on this model folder or GGUF file.
    SetModel(PathBuf),
    /// Train on this dataset file.
    SetDataset(PathBuf),
    /// Add an adapter folder to the playground.
    LoadAdapter(PathBuf),
    /// Something the Machines panel asked for.
    Machine(super::machines::MachineAction),
    /// Pick out one run's curves (None: all alike).
    SelectRun(Option<RunId>),
    /// Archive (true) or bring back (false) these runs.
    Archive(Vec<RunId>, bool),
    /// Move a folder of the trash back into the runs folder.
    Restore(String),
    /// Open the editor of a run's tags and note.
    EditNotes(RunId),
    SaveNotes(RunId, run_notes::RunNotes),
    CancelNotes,
}

impl WorkbenchApp {
    /// Sends the export of run `id`'s adapter (`best/` with `best`, else `adapter/`) to `to`.
    fn export(&mut self, id: RunId, to: PathBuf, best: bool) {
        let Some(dir) = self.store.get(id).and_then(|r| r.out_dir.clone()) else {
            return;
        };
        let job = self.background.next_job_id();
        if self.send(Command::Export {
            job,
            run_dir: PathBuf::from(dir),
            out: to,
            best,
        }) {
            self.background.start_export(job);
        }
    }

    /// Carries out what the user asked for (the panels collect actions while drawing).
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::SavePlots(to) => {
                let ctx = self.ctx.clone();
                if let Some(ctx) = ctx {
                    self.save_plots(&ctx, to);
                }
            }
            Action::ExportTable(to) => {
                let rows: Vec<_> = central::sorted_runs(self)
                    .into_iter()
                    .filter_map(|r| r.row.clone())
                    .collect();
                let written = crate::compare::to_csv(&rows)
                    .and_then(|csv| crate::files::write_atomic(&to, csv.as_bytes()));
                match written {
                    Ok(()) => self.say_t("{} rows written to {}", &[&rows.len(), &to.display()]),
                    Err(e) => self.say_t("cannot write the table: {}", &[&crate::describe(&e)]),
                }
            }
            Action::UsePreset(method) => {
                let text = learn::preset_text(&method);
                let kind = method.kind();
                match RunConfig::from_toml_with(text, &[]) {
                    Ok(mut cfg) => {
                        // The preset's method and training settings on the user's model and data.
                        cfg.model = self.form.model.clone();
                        cfg.dataset = self.form.dataset.clone();
                        cfg.eval_dataset = self.form.eval_dataset.clone();
                        self.restore(Remembered {
                            form: cfg,
                            ..self.remembered()
                        });
                        self.view = View::Train;
                        self.say_t("presets/{}.toml loaded into the form", &[&kind]);
                    }
                    Err(e) => self.say(format!("presets/{kind}.toml: {e}")),
                }
            }
            Action::Start => match self.form.validate() {
                Ok(()) if !self.device_available() => {
                    self.form_error = Some(i18n::fill(
                        self.lang,
                        "{} is not available here: choose the CPU or another device.",
                        &[&self.form.device],
                    ));
                }
                Ok(()) => {
                    self.form_error = None;
                    // A run from the form joins the form's experiment (the day's runs until
                    // the user names one or compares).
                    self.form
                        .experiment
                        .get_or_insert_with(|| format!("runs {}", &runs::now_utc_minute()[..10]));
                    let id = self.store.add(self.form.clone());
                    self.send(Command::Train {
                        id,
                        config: Box::new(self.form.clone()),
                    });
                }
                Err(e) => self.form_error = Some(e.to_string()),
            },
            Action::CompareAll => {
                let mut queued = 0;
                // A comparison is an experiment of its own; later runs from the form join it,
                // and the plots turn to it.
                let experiment = format!("comparison {}", runs::now_utc_minute());
                self.form.experiment = Some(experiment.clone());
                self.store.show_experiment(&experiment);
                for m in MethodConfig::all_defaults() {
                    let mut cfg = self.form.clone();
                    cfg.optimizer.lr = crate::compare::learning_rate_for(&m, &self.form);
                    cfg.method = m;
                    if let Err(e) = cfg.validate() {
                        self.say_t("{} not queued: {}", &[&cfg.method.display_name(), &e]);
                        continue;
                    }
                    let id = self.store.add(cfg.clone());
                    if !self.send(Command::Train {
                        id,
                        config: Box::new(cfg),
                    }) {
                        break;
                    }
                    self.compare_batch.push(id);
                    queued += 1;
                }
                let steps = self.form.steps;
                self.say_t(
                    "{} runs queued, one per method, {} steps each",
                    &[&queued, &steps],
                );
            }
            Action::ShowRun(id, shown) => {
                if let Some(r) = self.store.runs.iter_mut().find(|r| r.id == id) {
                    r.shown = shown;
                }
            }
            Action::Stop(id) => {
                self.send(Command::StopRun { id });
            }
            Action::StopKeepBest(id) => {
                self.send(Command::FinishRun { id });
            }
            Action::Resume(id) => {
                let Some(r) = self.store.runs.iter_mut().find(|r| r.id == id) else {
                    return;
                };
                let Some(dir) = r.out_dir.clone() else {
                    return;
                };
                r.queue_resume();
                self.send(Command::Resume {
                    id,
                    dir: PathBuf::from(dir),
                });
            }
            Action::Export(id, to) => self.export(id, to, false),
            Action::ExportBest(id, to) => self.export(id, to, true),
            Action::ImportRun(dir) => {
                let Some(runs) = self.runs_dir.clone() else {
                    self.say_t("no runs folder to import into", &[]);
                    return;
                };
                let job = self.background.next_job_id();
                let out = crate::import_run::default_folder(&runs, &dir);
                let shown = dir.display().to_string();
                if self.send(Command::ImportRun { job, dir, out }) {
                    self.say_t("importing {}…", &[&shown]);
                    self.background
                        .start_long_job(job, super::background::LongJob::Import);
                }
            }
            Action::WriteRecipe(id, to, target) => {
                let Some(config) = self.store.get(id).map(|r| Box::new(r.config.clone())) else {
                    return;
                };
                let job = self.background.next_job_id();
                if self.send(Command::WriteRecipe {
                    job,
                    config,
                    out: to,
                    target,
                }) {
                    self.background.start_export(job);
                }
            }
            Action::Merge(id, to) => {
                let Some(r) = self.store.get(id) else {
                    return;
                };
                let (Some(dir), model) = (r.out_dir.clone(), r.config.model.clone()) else {
                    return;
                };
                let job = self.background.next_job_id();
                if self.send(Command::Merge {
                    job,
                    model,
                    run_dir: PathBuf::from(dir),
                    out: to.clone(),
                }) {
                    self.say_t("merging into {}…", &[&to.display()]);
                    self.background
                        .start_long_job(job, super::background::LongJob::Merge);
                }
            }
            Action::AskPath(purpose, start) => {
                self.path_prompt = Some(path_dialog::PathPrompt::new(purpose, &start));
            }
            Action::SetModel(path) => {
                self.form.model = path.display().to_string();
                self.say_t("model: {}", &[&path.display()]);
            }
            Action::SetDataset(path) => {
                self.form.dataset = path.display().to_string();
                self.form.eval_dataset = None;
                self.say_t("dataset: {}", &[&path.display()]);
            }
            Action::LoadAdapter(dir) => {
                self.say_t("adapter {} loaded into the playground", &[&dir.display()]);
                self.playground.loaded_adapters.push(dir);
            }
            Action::SelectRun(id) => self.selected_run = id,
            Action::Machine(a) => self.machine_action(a),
            Action::AskDelete(ids) => self.confirm_delete = Some(ids),
            Action::CancelDelete => {
                self.confirm_delete = None;
                self.confirm_empty_trash = false;
            }
            Action::Delete(ids) => {
                self.confirm_delete = None;
                let (mut deleted, mut kept) = (0, Vec::new());
                for id in ids {
                    match self.delete_run(id) {
                        Ok(()) => deleted += 1,
                        Err(e) => kept.push(e),
                    }
                }
                if kept.is_empty() {
                    self.say_t("{} runs moved to the trash", &[&deleted]);
                } else {
                    self.say_t(
                        "{} runs moved to the trash; kept: {}",
                        &[&deleted, &kept.join("; ")],
                    );
                }
            }
            Action::Archive(ids, archived) => {
                let mut done = 0;
                for id in &ids {
                    let Some(r) = self.store.get(*id) else {
                        continue;
                    };
                    let notes = run_notes::RunNotes {
                        archived,
                        ..r.notes.clone()
                    };
                    match self.store.set_notes(*id, notes) {
                        Ok(()) => done += 1,
                        Err(e) => self.say(crate::describe(&e)),
                    }
                }
                let template = if archived {
                    "{} runs archived"
                } else {
                    "{} runs brought back from the archive"
                };
                self.say_t(template, &[&done]);
            }
            Action::Restore(name) => {
                let Some(runs) = self.runs_dir.clone() else {
                    return;
                };
                match trash::restore(&runs, &name) {
                    Ok(to) => {
                        let (read, _) = self.store.load_new(&runs);
                        self.say_t(
                            "{} restored to {} ({} runs read)",
                            &[&name, &to.display(), &read],
                        );
                    }
                    Err(e) => self.say_t("cannot restore {}: {}", &[&name, &crate::describe(&e)]),
                }
                self.trash_count = trash::count(&runs);
            }
            Action::EditNotes(id) => {
                if let Some(r) = self.store.get(id) {
                    self.notes_editor =
                        Some(notes_editor::NotesEditor::new(id, &r.label, &r.notes));
                }
            }
            Action::SaveNotes(id, notes) => match self.store.set_notes(id, notes) {
                Ok(()) => self.notes_editor = None,
                // The editor stays open with the text, so nothing typed is lost.
                Err(e) => self.say_t("cannot save the notes: {}", &[&crate::describe(&e)]),
            },
            Action::CancelNotes => self.notes_editor = None,
            Action::AskEmptyTrash => self.confirm_empty_trash = true,
            Action::EmptyTrash => {
                self.confirm_empty_trash = false;
                if let Some(dir) = self.runs_dir.clone() {
                    let dir = &dir;
                    match trash::empty(dir) {
                        Ok(n) => self.say_t("{} run folders removed from disk", &[&n]),
                        Err(e) => self.say_t("cannot empty the trash: {}", &[&e]),
                    }
                    self.trash_count = trash::count(dir);
                }
            }
        }
    }

    /// Moves a run's folder to the trash (or, without a runs folder, removes it) and forgets
    /// the run; a run that trains, here or in another process, is kept with the reason.
    fn delete_run(&mut self, id: RunId) -> Result<(), String> {
        let r = self
            .store
            .get(id)
            .ok_or_else(|| format!("run {id} is gone"))?;
        if r.status.is_live() {
            return Err(i18n::fill(
                self.lang,
                "{}: stop the run before deleting it",
                &[&r.label],
            ));
        }
        if let Some(dir) = &r.out_dir {
            let dir = Path::new(dir);
            if let Some(holder) = crate::train::run_dir::holder(dir) {
                return Err(i18n::fill(
                    self.lang,
                    "{}: {} is writing it",
                    &[&r.label, &holder],
                ));
            }
            let moved = match &self.runs_dir {
                Some(runs) => trash::put(runs, dir).map(|_| ()),
                None => std::fs::remove_dir_all(dir).map_err(anyhow::Error::from),
            };
            if let Err(e) = moved {
                return Err(format!("{}: {}", r.label, crate::describe(&e)));
            }
        }
        self.store.remove(id);
        if let Some(runs) = &self.runs_dir {
            self.trash_count = trash::count(runs);
        }
        Ok(())
    }
}
