//! Which runs the runs browser lists: a search over what a run is and what the user wrote
//! about it, and choices of experiment, method, status, age and tag. Plain data, no egui.

use super::runs::RunRecord;

/// How recent a listed run must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Since {
    #[default]
    Any,
    Day,
    Week,
    Month,
}

impl Since {
    pub const ALL: [Since; 4] = [Since::Any, Since::Day, Since::Week, Since::Month];

    pub fn name(self) -> &'static str {
        match self {
            Since::Any => "any time",
            Since::Day => "last 24 hours",
            Since::Week => "last 7 days",
            Since::Month => "last 30 days",
        }
    }

    fn seconds(self) -> Option<u64> {
        match self {
            Since::Any => None,
            Since::Day => Some(86_400),
            Since::Week => Some(7 * 86_400),
            Since::Month => Some(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Every word must be in the run's label, method, model, dataset, experiment, status,
    /// tags or note.
    pub search: String,
    /// None: all experiments.
    pub experiment: Option<String>,
    /// A method's kind (`lora`); None: all.
    pub method: Option<String>,
    /// A status's name (`finished`); None: all.
    pub status: Option<&'static str>,
    pub since: Since,
    pub tag: Option<String>,
    /// Archived runs are listed too.
    pub archived_too: bool,
}

impl RunFilter {
    /// Whether `r` is listed, `now_unix` being the present time in seconds.
    pub fn lists(&self, r: &RunRecord, now_unix: u64) -> bool {
        if r.notes.archived && !self.archived_too {
            return false;
        }
        if self
            .experiment
            .as_deref()
            .is_some_and(|e| e != r.experiment())
        {
            return false;
        }
        if self
            .method
            .as_deref()
            .is_some_and(|m| m != r.config.method.kind())
        {
            return false;
        }
        if self.status.is_some_and(|s| s != r.status.name()) {
            return false;
        }
        if let Some(span) = self.since.seconds() {
            // A run of unknown age is not known to be recent.
            if r.started_unix.is_none_or(|t| t + span < now_unix) {
                return false;
            }
        }
        if let Some(tag) = &self.tag
            && !r.notes.tags.contains(tag)
        {
            return false;
        }
        if self.search.trim().is_empty() {
            return true;
        }
        let haystack = format!(
            "{} {} {} {} {} {} {} {} {}",
            r.label,
            r.config.method.kind(),
            r.config.method.display_name(),
            r.config.model,
            r.config.dataset,
            r.experiment(),
            r.status.name(),
            r.notes.tags.join(" "),
            r.notes.note,
        )
        .to_lowercase();
        self.search
            .to_lowercase()
            .split_whitespace()
            .all(|w| haystack.contains(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::run_notes::RunNotes;
    use crate::app::runs::RunStatus;
    use crate::config::RunConfig;
    use crate::peft::MethodConfig;

    fn run(kind: &str, experiment: &str, started: u64) -> RunRecord {
        let cfg = RunConfig {
            method: MethodConfig::all_defaults()
                .into_iter()
                .find(|m| m.kind() == kind)
                .unwrap(),
            experiment: Some(experiment.into()),
            ..RunConfig::default()
        };
        let mut r = RunRecord::new(1, cfg);
        r.status = RunStatus::Finished;
        r.started_unix = Some(started);
        r
    }

    #[test]
    fn each_choice_narrows_the_list() {
        let now = 100 * 86_400;
        let mut lora = run("lora", "comparison A", now - 3_600);
        lora.notes = RunNotes {
            tags: vec!["baseline".into()],
            note: "Rate too high, try 3e-3".into(),
            archived: false,
        };
        let mut ia3 = run("ia3", "comparison B", now - 10 * 86_400);
        ia3.status = RunStatus::Stopped;
        let mut old = run("lora", "comparison A", now - 40 * 86_400);
        old.notes.archived = true;
        let runs = [&lora, &ia3, &old];
        let listed = |f: &RunFilter| -> Vec<usize> {
            (0..runs.len()).filter(|&i| f.lists(runs[i], now)).collect()
        };
        let all = RunFilter::default();
        assert_eq!(listed(&all), [0, 1], "archived runs wait to be asked for");
        let archived = RunFilter {
            archived_too: true,
            ..all.clone()
        };
        assert_eq!(listed(&archived), [0, 1, 2]);
        let f = |g: &dyn Fn(&mut RunFilter)| {
            let mut f = archived.clone();
            g(&mut f);
            listed(&f)
        };
        assert_eq!(f(&|f| f.method = Some("lora".into())), [0, 2]);
        assert_eq!(f(&|f| f.experiment = Some("comparison B".into())), [1]);
        assert_eq!(f(&|f| f.status = Some("stopped")), [1]);
        assert_eq!(f(&|f| f.since = Since::Day), [0]);
        assert_eq!(f(&|f| f.since = Since::Month), [0, 1]);
        assert_eq!(f(&|f| f.tag = Some("baseline".into())), [0]);
        // The search reads the note and the tags, case aside.
        assert_eq!(f(&|f| f.search = "RATE 3e-3".into()), [0]);
        assert_eq!(f(&|f| f.search = "baseline lora".into()), [0]);
        assert_eq!(f(&|f| f.search = "ia3 stopped".into()), [1]);
        assert_eq!(
            f(&|f| f.search = "nothing-like-it".into()),
            Vec::<usize>::new()
        );
    }
}
