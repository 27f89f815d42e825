//! The playground: one prompt answered side by side by the base model and the adapted
//! models of finished runs, each answer streaming in as it is generated. Every answer and
//! evaluation is a short job sent through the window's `Jobs`; its updates fill the
//! answers here, and the user can stop them.

use eframe::egui;

use super::i18n::tr;
use std::path::PathBuf;

use super::WorkbenchApp;
use super::path_dialog::{PathPrompt, PathPurpose};
use super::runs::RunStatus;
use crate::generate::Sampling;
use crate::jobs::{Command, JobId, JobResult, JobUpdate, Jobs};

/// One model's answer (or an adapter's evaluation), filled in by its job's updates.
pub struct Answer {
    pub label: String,
    pub text: String,
    pub done: bool,
    pub job: JobId,
}

impl Answer {
    /// Sends `cmd` as job `job`; a backend that takes no more work leaves the reason as the
    /// answer.
    fn sent(label: String, job: JobId, cmd: Command, jobs: &mut Jobs) -> Self {
        let (text, done) = match jobs.send(cmd) {
            Ok(()) => (String::new(), false),
            Err(why) => (format!("[error: {why}]"), true),
        };
        Self {
            label,
            text,
            done,
            job,
        }
    }

    /// Takes an update of its job in.
    fn apply(&mut self, update: &JobUpdate) {
        match update {
            JobUpdate::Text(piece) => self.text.push_str(piece),
            JobUpdate::Progress { .. } => return,
            JobUpdate::Done(JobResult::Classes(classes)) => {
                self.text = classes
                    .iter()
                    .map(|(label, p)| format!("{label}  {:.1} %", 100.0 * p))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            JobUpdate::Done(JobResult::Evaluated { loss, metric }) => {
                self.text = format!("eval loss {loss:.4}, metric {metric:.3}");
            }
            JobUpdate::Done(_) => {}
            JobUpdate::Failed(e) => self.text.push_str(&format!("\n[error: {e}]")),
            JobUpdate::Stopped => self.text.push_str(" [stopped]"),
        }
        if !matches!(update, JobUpdate::Text(_)) {
            self.done = true;
        }
    }
}

pub struct Playground {
    pub prompt: String,
    pub chat: bool,
    pub sampling: Sampling,
    pub answers: Vec<Answer>,
    /// How many finished runs answer besides the base model when the user has not chosen
    /// (the best by their metric).
    pub runs_shown: usize,
    /// The runs the user ticked to answer; None: the best `runs_shown`.
    pub chosen_runs: Option<std::collections::BTreeSet<u64>>,
    /// Adapter folders loaded by the user (ours or PEFT's) that answer too.
    pub loaded_adapters: Vec<PathBuf>,
    /// Evaluation of each loaded adapter on the form's dataset, filled in by its thread.
    pub evaluations: Vec<Answer>,
    /// The dataset the prompt was taken from, and the prompt as taken: a prompt the user
    /// has not edited follows the form's dataset.
    pub prompt_from: Option<(String, String)>,
}

impl Default for Playground {
    fn default() -> Self {
        Self {
            prompt: "Review: a warm, funny and clever film.\nLabel:".into(),
            chat: false,
            sampling: Sampling {
                max_tokens: 24,
                ..Default::default()
            },
            answers: Vec::new(),
            runs_shown: 3,
            chosen_runs: None,
            loaded_adapters: Vec::new(),
            evaluations: Vec::new(),
            prompt_from: None,
        }
    }
}

/// The first evaluation example of `dataset` as the model is asked it (a labelled review
/// ends in `Label:`, the task's own question; a conversation's last question, sent in the
/// model's chat template, as training renders it), and whether it is a conversation; None
/// if the dataset cannot be read.
pub fn task_prompt(dataset: &str, eval_dataset: Option<&str>) -> Option<(String, bool)> {
    let d = crate::data::load(dataset, eval_dataset, 0).ok()?;
    let first = d.eval.first().or(d.train.first())?;
    Some(match &*first.for_decoder() {
        crate::data::Example::Completion { prompt, .. } => (prompt.clone(), false),
        crate::data::Example::Text { text } => (text.chars().take(60).collect(), false),
        crate::data::Example::Labeled { text, .. } => (text.clone(), false),
        crate::data::Example::Chat { turns } => {
            let last = turns
                .iter()
                .rposition(|t| t.role == crate::data::chat::Role::Assistant)
                .unwrap_or(turns.len());
            let question = turns[..last]
                .iter()
                .rfind(|t| t.role == crate::data::chat::Role::User)?;
            (question.content.clone(), true)
        }
    })
}

impl Playground {
    /// Whether an answer is still coming.
    pub fn busy(&self) -> bool {
        self.answers.iter().any(|a| !a.done)
    }

    fn evaluating(&self) -> bool {
        self.evaluations.iter().any(|e| !e.done)
    }

    /// Takes in an update of one of its jobs; false if the job is not the playground's.
    pub fn apply(&mut self, job: JobId, update: &JobUpdate) -> bool {
        match self
            .answers
            .iter_mut()
            .chain(&mut self.evaluations)
            .find(|a| a.job == job)
        {
            Some(a) => {
                a.apply(update);
                true
            }
            None => false,
        }
    }

    /// The backend died: what was still coming will not.
    pub fn backend_gone(&mut self, why: &str) {
        for a in self.answers.iter_mut().chain(&mut self.evaluations) {
            if !a.done {
                a.apply(&JobUpdate::Failed(why.to_string()));
            }
        }
    }

    /// Stops every answer and evaluation still coming.
    fn stop_all(&self, jobs: &mut Jobs) {
        for a in self.answers.iter().chain(&self.evaluations) {
            if !a.done {
                let _ = jobs.send(Command::StopJob { job: a.job });
            }
        }
    }
}

fn adapter_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Scores each loaded adapter on the evaluation examples a run of `cfg` would use, one job
/// each, the same measurement a run makes at its end.
fn evaluate(pg: &mut Playground, cfg: &crate::config::RunConfig, jobs: &mut Jobs) {
    pg.evaluations.clear();
    for dir in pg.loaded_adapters.clone() {
        let job = jobs.next_job_id();
        let cmd = Command::Evaluate {
            job,
            config: Box::new(cfg.clone()),
            adapter: dir.clone(),
        };
        let label = format!("adapter {} on {}", adapter_name(&dir), cfg.dataset);
        pg.evaluations.push(Answer::sent(label, job, cmd, jobs));
    }
}

/// Starts one job per model: `(label, model, adapter folder)`, each generating an answer
/// or, for a classifier, giving its class probabilities.
fn start(
    pg: &mut Playground,
    models: Vec<(String, String, Option<PathBuf>)>,
    classifier: bool,
    device: &str,
    jobs: &mut Jobs,
) {
    pg.answers.clear();
    let text = pg.prompt.clone();
    for (label, model, adapter) in models {
        let job = jobs.next_job_id();
        let device = device.to_string();
        let cmd = if classifier {
            Command::Classify {
                job,
                model,
                adapter,
                text: text.clone(),
                device,
            }
        } else {
            Command::Generate {
                job,
                model,
                adapter,
                prompt: text.clone(),
                chat: pg.chat,
                sampling: pg.sampling.clone(),
                device,
            }
        };
        pg.answers.push(Answer::sent(label, job, cmd, jobs));
    }
}

pub fn ui(app: &mut WorkbenchApp, ui: &mut egui::Ui) {
    let model = app.form.model.clone();
    // Finished runs on the form's model that saved an adapter, best metric first (a
    // comparison's best run was out of reach when only the latest three answered).
    let mut candidates: Vec<(u64, String, f64, PathBuf)> = app
        .store
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Finished && r.config.model == model)
        .filter_map(|r| {
            let dir = PathBuf::from(r.out_dir.as_ref()?).join("adapter");
            let metric = r.final_metric().unwrap_or(f64::NEG_INFINITY);
            dir.is_dir().then(|| (r.id, r.label.clone(), metric, dir))
        })
        .collect();
    candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.0.cmp(&a.0)));
    let chosen: Vec<u64> = match &app.playground.chosen_runs {
        Some(set) => candidates
            .iter()
            .filter(|c| set.contains(&c.0))
            .map(|c| c.0)
            .collect(),
        None => candidates
            .iter()
            .take(app.playground.runs_shown)
            .map(|c| c.0)
            .collect(),
    };
    let runs: Vec<(String, String, Option<PathBuf>)> = candidates
        .iter()
        .filter(|c| chosen.contains(&c.0))
        .map(|c| (c.1.clone(), model.clone(), Some(c.3.clone())))
        .collect();
    let form = app.form.clone();
    let classifier = app.model_shape().is_ok_and(|c| c.is_classifier());
    let (pg, jobs) = (&mut app.playground, app.background.jobs());
    let untouched = match &pg.prompt_from {
        None => pg.prompt == Playground::default().prompt,
        Some((_, taken)) => pg.prompt == *taken,
    };
    let stale = pg.prompt_from.as_ref().map(|(d, _)| d) != Some(&form.dataset);
    if untouched && stale {
        // Read once per dataset the form shows; a prompt the user typed is kept.
        if let Some((p, conversation)) = task_prompt(&form.dataset, form.eval_dataset.as_deref()) {
            pg.prompt = p.clone();
            pg.chat = conversation;
            pg.prompt_from = Some((form.dataset.clone(), p));
        } else {
            pg.prompt_from = Some((form.dataset.clone(), pg.prompt.clone()));
        }
    }
    let mut load_asked = false;
    let label = ui.label(tr(ui, "Prompt"));
    ui.add(egui::TextEdit::multiline(&mut pg.prompt).desired_rows(2))
        .labelled_by(label.id);
    ui.horizontal_wrapped(|ui| {
        if !classifier {
            sampling_controls(pg, ui);
        }
        let busy = pg.busy();
        let (action, hint) = if classifier {
            (
                "Classify",
                "Class probabilities from the base model (its head untrained), the chosen runs' adapters and any loaded adapter",
            )
        } else {
            (
                "Generate",
                "Answer with the base model, the chosen runs' adapters and any loaded adapter",
            )
        };
        if ui
            .add_enabled(!busy, egui::Button::new(tr(ui, action)))
            .on_hover_text(tr(ui, hint))
            .clicked()
        {
            let mut models = vec![(tr(ui, "base model").to_string(), model.clone(), None)];
            models.extend(runs.iter().cloned());
            for dir in &pg.loaded_adapters {
                let name = adapter_name(dir);
                models.push((format!("adapter {name}"), model.clone(), Some(dir.clone())));
            }
            start(pg, models, classifier, &form.device, jobs);
        }
        if (busy || pg.evaluating())
            && ui
                .button(tr(ui, "Stop"))
                .on_hover_text(tr(ui, "Stop the answers and evaluations still coming"))
                .clicked()
        {
            pg.stop_all(jobs);
        }
        load_asked = adapter_controls(pg, &form, jobs, ui);
    });
    run_choice(pg, &candidates, &chosen, ui);
    answers(pg, ui);
    if load_asked {
        let start = std::env::current_dir().unwrap_or_default();
        app.path_prompt = Some(PathPrompt::new(PathPurpose::LoadAdapter, &start));
    }
}

/// Which finished runs answer: ticked by the user, else the best few by their metric.
fn run_choice(
    pg: &mut Playground,
    candidates: &[(u64, String, f64, PathBuf)],
    chosen: &[u64],
    ui: &mut egui::Ui,
) {
    if candidates.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(super::i18n::trf(
        ui,
        "Runs that answer ({} of {}, best metric first)",
        &[&chosen.len(), &candidates.len()],
    ))
    .id_salt("playground_runs")
    .show(ui, |ui| {
        egui::ScrollArea::vertical()
            .max_height(160.0)
            .show(ui, |ui| {
                for (id, label, metric, _) in candidates {
                    let mut on = chosen.contains(id);
                    let text = if metric.is_finite() {
                        format!("{label}  ({metric:.3})")
                    } else {
                        label.clone()
                    };
                    if ui.checkbox(&mut on, text).changed() {
                        let set = pg
                            .chosen_runs
                            .get_or_insert_with(|| chosen.iter().copied().collect());
                        if on {
                            set.insert(*id);
                        } else {
                            set.remove(id);
                        }
                    }
                }
            });
    });
}

/// Chat template, max tokens, temperature and top-p: how a decoder answers.
fn sampling_controls(pg: &mut Playground, ui: &mut egui::Ui) {
    ui.checkbox(&mut pg.chat, tr(ui, "Chat template"))
        .on_hover_text(tr(
            ui,
            "Send the prompt as a user message in the model's own chat template, as training renders conversations (a model without one gets the plain User:/Assistant: template)",
        ));
    let l = ui.label(tr(ui, "Max tokens"));
    ui.add(egui::DragValue::new(&mut pg.sampling.max_tokens).range(1..=512))
        .labelled_by(l.id);
    let l = ui.label(tr(ui, "Temperature"));
    ui.add(egui::Slider::new(&mut pg.sampling.temperature, 0.0..=2.0))
        .labelled_by(l.id)
        .on_hover_text(tr(ui, "0 = greedy: always the most likely token"));
    if pg.sampling.temperature > 0.0 {
        let l = ui.label(tr(ui, "Top-p"));
        ui.add(egui::Slider::new(&mut pg.sampling.top_p, 0.05..=1.0))
            .labelled_by(l.id);
    }
}

/// Load, evaluate and clear user adapters.
/// Returns whether "Load adapter…" was clicked (the window then asks for the folder).
fn adapter_controls(
    pg: &mut Playground,
    form: &crate::config::RunConfig,
    jobs: &mut Jobs,
    ui: &mut egui::Ui,
) -> bool {
    let load_asked = ui
        .button(tr(ui, "Load adapter…"))
        .on_hover_text(tr(
            ui,
            "An adapter folder exported here or by Hugging Face PEFT, for this model",
        ))
        .clicked();
    if !pg.loaded_adapters.is_empty() {
        let evaluating = pg.evaluating();
        if ui
            .add_enabled(!evaluating, egui::Button::new(tr(ui, "Evaluate adapters")))
            .on_hover_text(tr(
                ui,
                "Eval loss and metric of each loaded adapter on the form's dataset",
            ))
            .clicked()
        {
            evaluate(pg, form, jobs);
        }
        if ui.small_button(tr(ui, "Clear adapters")).clicked() {
            pg.loaded_adapters.clear();
            pg.evaluations.clear();
        }
    }
    load_asked
}

/// The evaluations and the answers, one column per model.
fn answers(pg: &Playground, ui: &mut egui::Ui) {
    for e in &pg.evaluations {
        ui.horizontal(|ui| {
            ui.strong(&e.label);
            ui.label(e.text.as_str());
            if !e.done {
                ui.spinner();
            }
        });
    }
    if pg.answers.is_empty() {
        ui.small(tr(
            ui,
            "Finished runs on this model answer beside the base model.",
        ));
        return;
    }
    ui.columns(pg.answers.len(), |cols| {
        for (col, a) in cols.iter_mut().zip(&pg.answers) {
            // One line per name, so every column's answer starts at the same height.
            col.add(egui::Label::new(egui::RichText::new(&a.label).strong()).truncate());
            let (text, done) = (a.text.clone(), a.done);
            if done && text.is_empty() {
                col.weak(tr(
                    col,
                    "(no text: the first token it chose was the end of the sequence)",
                ));
            } else if done && text.trim().is_empty() {
                col.weak(super::i18n::trf(
                    col,
                    "(only spaces and line breaks: {} characters)",
                    &[&text.chars().count()],
                ));
            } else {
                col.label(egui::RichText::new(text).monospace());
            }
            if !done {
                col.spinner();
            }
        }
    });
}
