//! All the runs a window knows: its own, read from the runs folder, and those another
//! process adds; which are shown; what the trainer's events change.

use std::path::Path;

use super::*;

#[derive(Debug, Default)]
pub struct RunStore {
    pub runs: Vec<RunRecord>,
    next_id: RunId,
}

impl RunStore {
    /// Registers a run about to be queued and returns its id.
    pub fn add(&mut self, config: RunConfig) -> RunId {
        self.next_id += 1;
        let id = self.next_id;
        self.runs.push(RunRecord::new(id, config));
        id
    }

    /// Adds the runs saved under `dir` (one folder each, as the trainer writes them), oldest
    /// first; folders that are not runs are skipped. Returns how many were read and the
    /// folders that could not be.
    pub fn load_past(&mut self, dir: &Path) -> (usize, Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, Vec::new());
        };
        let mut folders: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file())
            .collect();
        folders.sort();
        self.read_folders(folders)
    }

    /// Reads run folders, oldest first, as past runs with the next ids.
    fn read_folders(&mut self, folders: Vec<std::path::PathBuf>) -> (usize, Vec<String>) {
        let (mut read, mut bad) = (0, Vec::new());
        for folder in folders {
            match self.next_id.checked_add(1).map(|id| past_run(id, &folder)) {
                Some(Ok(r)) => {
                    self.next_id = r.id;
                    self.runs.push(r);
                    read += 1;
                }
                Some(Err(e)) => bad.push(format!("{}: {}", folder.display(), crate::describe(&e))),
                None => break,
            }
        }
        (read, bad)
    }

    /// Adds the runs under `dir` this store does not know yet (another window's or a CLI
    /// run's), not shown on the plots; a folder whose lock a live process holds is listed as
    /// training elsewhere. Runs known as training elsewhere are read again: whole once their
    /// writer has let go, their curves only (if shown) while it still writes. Returns how
    /// many were added and the folders that could not be read.
    pub fn load_new(&mut self, dir: &Path) -> (usize, Vec<String>) {
        self.refresh_elsewhere();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (0, Vec::new());
        };
        let known: std::collections::HashSet<&str> = self
            .runs
            .iter()
            .filter_map(|r| r.out_dir.as_deref())
            .collect();
        // Known folders first: with 10 000 runs, a stat of every folder's config.toml every
        // 3 s put the window's 99th-percentile CPU time per frame at 41 ms (13 ms without).
        let mut folders: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !known.contains(p.display().to_string().as_str()))
            .filter(|p| p.join("config.toml").is_file())
            // This window's own runs become known through its worker's events.
            .filter(|p| !crate::train::run_dir::holder(p).is_some_and(|h| h.is_this_process()))
            .collect();
        folders.sort();
        let before = self.runs.len();
        let (read, bad) = self.read_folders(folders);
        for r in &mut self.runs[before..] {
            r.shown = false;
            let holder = r
                .out_dir
                .as_deref()
                .and_then(|d| crate::train::run_dir::holder(Path::new(d)));
            if let Some(h) = holder {
                r.status = RunStatus::Elsewhere(h.to_string());
                r.notices.retain(|n| n != UNFINISHED);
                r.resumable = false;
            }
        }
        (read, bad)
    }

    /// Reads again the runs another process was writing at the last look.
    fn refresh_elsewhere(&mut self) {
        for r in &mut self.runs {
            if !matches!(r.status, RunStatus::Elsewhere(_)) {
                continue;
            }
            let Some(dir) = r.out_dir.clone() else {
                continue;
            };
            let dir = Path::new(&dir);
            if crate::train::run_dir::holder(dir).is_some() {
                if r.shown {
                    r.reload_curves();
                }
                continue;
            }
            // Its writer has let go: read it as any past run, under the same id.
            if let Ok(mut done) = past_run(r.id, dir) {
                done.shown = r.shown;
                if done.shown {
                    done.load_curves();
                }
                *r = done;
            }
        }
    }

    /// Shows the runs of the newest run's experiment (at most `MAX_SHOWN_BY_DEFAULT`, the
    /// newest) and hides the rest: what the plots start with.
    pub fn show_latest_experiment(&mut self) {
        let Some(latest) = self
            .runs
            .iter()
            .rev()
            .find(|r| !r.notes.archived)
            .map(|r| r.experiment().to_string())
        else {
            return;
        };
        self.show_experiment(&latest);
    }

    /// Shows the runs of `experiment` (at most `MAX_SHOWN_BY_DEFAULT`, the newest) and
    /// hides every other one that is not training or queued.
    pub fn show_experiment(&mut self, experiment: &str) {
        let mut left = MAX_SHOWN_BY_DEFAULT;
        for r in self.runs.iter_mut().rev() {
            let chosen = r.experiment() == experiment && !r.notes.archived && left > 0;
            r.shown = r.status.is_live_here() || chosen;
            if chosen {
                left -= 1;
            }
        }
    }

    /// Reads the curves of the shown runs that are not in memory yet.
    pub fn load_shown_curves(&mut self) {
        for r in self.runs.iter_mut().filter(|r| r.shown) {
            r.load_curves();
        }
    }

    /// The experiments, newest first, with their run counts.
    pub fn experiments(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for r in self.runs.iter().rev() {
            match out.iter_mut().find(|(e, _)| e == r.experiment()) {
                Some((_, n)) => *n += 1,
                None => out.push((r.experiment().to_string(), 1)),
            }
        }
        out
    }

    /// Writes a run's notes into its folder and keeps them; an archived run leaves the plots.
    pub fn set_notes(&mut self, id: RunId, notes: RunNotes) -> anyhow::Result<()> {
        let r = self
            .runs
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| anyhow::anyhow!("run {id} is gone"))?;
        let dir = r
            .out_dir
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("{} has no folder to keep notes in", r.label))?;
        notes.save(Path::new(dir))?;
        if notes.archived {
            r.shown = false;
        }
        r.notes = notes;
        Ok(())
    }

    /// A remote run has come home into `dir`: its folder and table row are the local ones.
    pub fn came_home(&mut self, id: RunId, dir: &Path) {
        if let Some(r) = self.runs.iter_mut().find(|r| r.id == id) {
            r.out_dir = Some(dir.display().to_string());
            if let Some(s) = r.summary.clone() {
                r.row = Some(r.table_row(&s));
            }
            r.resumable = false;
        }
    }

    /// Forgets a run (its folder is the caller's to delete).
    pub fn remove(&mut self, id: RunId) -> Option<RunRecord> {
        let i = self.runs.iter().position(|r| r.id == id)?;
        Some(self.runs.remove(i))
    }

    pub fn get(&self, id: RunId) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.id == id)
    }

    /// The run training now, if any.
    pub fn active(&self) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.status == RunStatus::Running)
    }

    pub fn has_unfinished(&self) -> bool {
        self.runs.iter().any(|r| r.status.is_live_here())
    }

    pub fn apply(&mut self, event: Event) {
        let Some(r) = self.runs.iter_mut().find(|r| r.id == event.run()) else {
            return;
        };
        // A remote machine's daemon sends a reconnected window everything again: what the
        // run has already is skipped, and an ended run takes no more until it is resumed.
        let ended = matches!(
            r.status,
            RunStatus::Finished
                | RunStatus::Stopped
                | RunStatus::Failed(_)
                | RunStatus::Interrupted
        );
        let seen = match &event {
            Event::Started {
                resumed_from: Some(_),
                ..
            } => false,
            _ if ended => true,
            Event::Step(p) => r.train_loss.last().is_some_and(|l| l[0] >= p.step as f64),
            Event::Eval(p) => r.eval_loss.last().is_some_and(|l| l[0] >= p.step as f64),
            Event::Notice { text, .. } => r.notices.contains(text),
            Event::Started {
                resumed_from: None, ..
            } => r.status == RunStatus::Running,
            _ => false,
        };
        if seen {
            return;
        }
        match event {
            Event::Started {
                trainable_params,
                total_params,
                metric_name,
                chance,
                out_dir,
                resumed_from,
                ..
            } => {
                if let Some(step) = resumed_from {
                    r.truncate_after(step);
                    r.summary = None;
                    r.row = None;
                    // It is no longer an unfinished run: the note saying so goes.
                    r.notices.retain(|n| n != UNFINISHED);
                    r.notices
                        .push(format!("resumed from the checkpoint at step {step}"));
                }
                r.resumable = false;
                r.loading_since = None;
                r.status = RunStatus::Running;
                r.trainable_params = trainable_params;
                r.total_params = total_params;
                r.metric_name = metric_name;
                r.chance = chance;
                r.out_dir = out_dir;
            }
            Event::Loading { .. } => r.loading_since = Some(std::time::Instant::now()),
            Event::Notice { text, .. } => r.notices.push(text),
            Event::Step(p) => {
                r.train_loss.push([p.step as f64, p.loss]);
                r.step_clock.push([p.tokens_seen as f64, p.elapsed_s]);
                r.tokens_per_second = p.tokens_per_second;
                r.elapsed_s = p.elapsed_s;
            }
            Event::Eval(p) => {
                r.eval_loss.push([p.step as f64, p.loss]);
                r.eval_metric.push([p.step as f64, p.metric]);
                r.eval_elapsed.push(p.elapsed_s);
            }
            Event::Ranks {
                step, allocation, ..
            } => r.ranks = Some((step, allocation)),
            Event::Best { step, .. } => r.best_step = Some(step),
            Event::UpdateMap { step, map, .. } => r.live_map = Some((step, map)),
            Event::Finished { summary, .. } => {
                r.status = if summary.stopped_early {
                    RunStatus::Stopped
                } else {
                    RunStatus::Finished
                };
                r.resumable = summary.stopped_early && r.has_checkpoint();
                r.row = Some(r.table_row(&summary));
                r.summary = Some(*summary);
            }
            Event::Failed { error, .. } => {
                r.loading_since = None;
                r.status = RunStatus::Failed(error);
                r.resumable = r.has_checkpoint();
            }
        }
    }
}

/// A run read back from its folder: config, curves from `metrics.jsonl`, and the summary
/// if it finished (otherwise it is shown as stopped, with a note).
pub(super) fn past_run(id: RunId, folder: &Path) -> anyhow::Result<RunRecord> {
    let cfg = RunConfig::load(&folder.join("config.toml"), &[])?;
    let mut r = RunRecord::new(id, cfg);
    r.out_dir = Some(folder.display().to_string());
    r.started_unix = std::fs::metadata(folder.join("config.toml"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    match RunNotes::read(folder) {
        Ok(notes) => r.notes = notes,
        Err(e) => r.notices.push(crate::describe(&e)),
    }
    match std::fs::read_to_string(folder.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Summary>(&t).ok())
    {
        Some(s) => {
            r.status = if s.stopped_early {
                RunStatus::Stopped
            } else {
                RunStatus::Finished
            };
            r.trainable_params = s.trainable_params;
            r.total_params = s.total_params;
            r.metric_name = s.metric_name.clone();
            r.chance = s.chance;
            r.tokens_per_second = s.tokens_per_second;
            r.elapsed_s = s.wall_seconds;
            r.row = Some(r.table_row(&s));
            r.summary = Some(s);
            // A finished run's numbers are in its summary: its curves wait until it is
            // shown. A stopped one may be resumed, which continues its curves: read now.
            r.curves_loaded = false;
            if r.status == RunStatus::Stopped {
                r.load_curves();
            }
        }
        None => {
            r.status = RunStatus::Interrupted;
            r.notices.push(UNFINISHED.into());
            // Without a summary the curves are all there is to show of it.
            r.curves_loaded = false;
            r.load_curves();
        }
    }
    r.resumable = crate::train::resumable(folder);
    Ok(r)
}
