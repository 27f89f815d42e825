//! The run store built from events and read back from folders.

use super::*;
use crate::train::{EvalPoint, StepPoint};

#[test]
fn events_build_a_run() {
    let mut store = RunStore::default();
    let id = store.add(RunConfig::default());
    store.apply(Event::Loading {
        run: id,
        model: "builtin".into(),
    });
    assert!(store.runs[0].loading_since.is_some(), "loading is shown");
    assert_eq!(store.active().map(|r| r.id), None);
    store.apply(Event::Started {
        run: id,
        trainable_params: 10,
        total_params: 1000,
        steps: 300,
        metric_name: "exact_match".into(),
        chance: None,
        out_dir: None,
        resumed_from: None,
    });
    assert_eq!(store.active().map(|r| r.id), Some(id));
    assert!(store.runs[0].loading_since.is_none(), "loaded once started");
    store.apply(Event::Step(StepPoint {
        run: id,
        step: 3,
        loss: 2.0,
        lr: 0.1,
        tokens_per_second: 100.0,
        tokens_seen: 30,
        elapsed_s: 1.0,
    }));
    store.apply(Event::Eval(EvalPoint {
        run: id,
        step: 3,
        loss: 1.5,
        metric: 0.25,
        elapsed_s: 1.0,
    }));
    let r = store.get(id).unwrap();
    assert_eq!(r.steps_done(), 3);
    assert!((r.trainable_percent() - 1.0).abs() < 1e-12);
    assert_eq!(r.eta_s(), Some(99.0));
    assert_eq!(r.eval_metric, vec![[3.0, 0.25]]);
    store.apply(Event::Failed {
        run: id,
        error: "boom".into(),
    });
    assert_eq!(
        store.get(id).unwrap().status,
        RunStatus::Failed("boom".into())
    );
    assert!(!store.has_unfinished());
}

#[test]
fn an_interrupted_run_is_read_back_with_its_curve() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("1-001-lora");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("config.toml"), RunConfig::default().to_toml()).unwrap();
    // Two whole lines and a half-written third, as a killed run leaves them.
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"type\":\"eval\",\"step\":0,\"loss\":3.0,\"metric\":0.1}\n{\"type\":\"step\",\"step\":1,\"loss\":2.5,\"tokens_per_second\":9.0,\"elapsed_s\":1.0}\n{\"type\":\"st",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("not-a-run")).unwrap();
    let mut store = RunStore::default();
    assert_eq!(store.load_past(dir.path()), (1, Vec::new()));
    let r = &store.runs[0];
    assert_eq!(r.train_loss, vec![[1.0, 2.5]]);
    assert_eq!(r.eval_loss, vec![[0.0, 3.0]]);
    assert_eq!(r.status, RunStatus::Interrupted);
    assert!(r.notices[0].contains("did not finish"));
    // No checkpoint was written: nothing to resume from.
    assert!(!r.resumable);
    // New runs get ids after the past ones.
    let last = r.id;
    assert_eq!(store.add(RunConfig::default()), last + 1);
    // Resumed from a checkpoint at step 0: the later points go, and so does the note.
    store.apply(Event::Started {
        run: last,
        trainable_params: 10,
        total_params: 1000,
        steps: 300,
        metric_name: "exact_match".into(),
        chance: None,
        out_dir: None,
        resumed_from: Some(0),
    });
    let r = store.get(last).unwrap();
    assert!(r.train_loss.is_empty());
    assert_eq!(r.eval_loss, vec![[0.0, 3.0]]);
    assert_eq!(r.notices, vec!["resumed from the checkpoint at step 0"]);
}

/// A finished run folder of `steps` steps in experiment `experiment` under `runs`.
fn finished_run(runs: &Path, name: &str, experiment: &str, steps: usize) {
    let run = runs.join(name);
    std::fs::create_dir(&run).unwrap();
    let cfg = RunConfig {
        experiment: Some(experiment.into()),
        ..RunConfig::default()
    };
    std::fs::write(run.join("config.toml"), cfg.to_toml()).unwrap();
    let mut metrics = String::from(
        "{\"type\":\"eval\",\"step\":0,\"loss\":3.0,\"metric\":0.5,\"elapsed_s\":0.5}\n",
    );
    for step in 1..=steps {
        metrics.push_str(&format!(
            "{{\"type\":\"step\",\"step\":{step},\"loss\":2.0,\"tokens_seen\":{},\"elapsed_s\":{step}.0,\"tokens_per_second\":10.0}}\n",
            step * 10
        ));
    }
    metrics.push_str(&format!(
        "{{\"type\":\"eval\",\"step\":{steps},\"loss\":1.0,\"metric\":0.75,\"elapsed_s\":9.0}}\n"
    ));
    std::fs::write(run.join("metrics.jsonl"), metrics).unwrap();
    let summary = Summary {
        method: "lora".into(),
        trainable_params: 10,
        total_params: 100,
        steps,
        stopped_early: false,
        initial_eval_loss: 3.0,
        final_train_loss: 2.0,
        final_eval_loss: 1.0,
        metric_name: "accuracy".into(),
        initial_metric_value: 0.5,
        metric_value: 0.75,
        chance: None,
        tokens_per_second: 10.0,
        peak_rss_bytes: 1 << 20,
        wall_seconds: 9.0,
        best: None,
        ended_early: None,
    };
    std::fs::write(
        run.join("summary.json"),
        serde_json::to_string(&summary).unwrap(),
    )
    .unwrap();
}

#[test]
fn finished_past_runs_read_their_curves_only_when_shown() {
    let dir = tempfile::tempdir().unwrap();
    for (i, experiment) in ["old", "old", "new", "new", "new"].iter().enumerate() {
        finished_run(dir.path(), &format!("{i}-run"), experiment, 30);
    }
    let mut store = RunStore::default();
    assert_eq!(store.load_past(dir.path()), (5, Vec::new()));
    // The table's numbers come from the summaries; no curve is in memory.
    for r in &store.runs {
        assert!(!r.curves_loaded && r.train_loss.is_empty());
        assert_eq!(r.final_metric(), Some(0.75));
        assert_eq!(r.eval_loss_span(), Some((3.0, 1.0)));
        assert_eq!(r.status, RunStatus::Finished);
    }
    assert_eq!(
        store.experiments(),
        vec![("new".to_string(), 3), ("old".to_string(), 2)]
    );
    store.show_latest_experiment();
    let shown: Vec<&str> = store
        .runs
        .iter()
        .filter(|r| r.shown)
        .map(|r| r.experiment())
        .collect();
    assert_eq!(shown, ["new", "new", "new"]);
    store.load_shown_curves();
    for r in &store.runs {
        assert_eq!(r.curves_loaded, r.shown);
        assert_eq!(r.train_loss.len(), if r.shown { 30 } else { 0 });
    }
    let r = store.runs.iter().find(|r| r.shown).unwrap();
    assert_eq!(r.eval_metric, vec![[0.0, 0.5], [30.0, 0.75]]);
    assert_eq!(r.curve(Curve::TrainLoss, XAxis::Tokens)[2], [30.0, 2.0]);
    // The other experiment, asked for, replaces it on the plots.
    store.show_experiment("old");
    assert_eq!(store.runs.iter().filter(|r| r.shown).count(), 2);
    assert!(store.runs[..2].iter().all(|r| r.shown));
}

/// A remote daemon sends a window that connected again every event since it started: what
/// the run has is skipped, and an ended run takes no more.
#[test]
fn events_sent_again_after_a_reconnection_are_taken_once() {
    let mut store = RunStore::default();
    let id = store.add(RunConfig::default());
    let step = |s: usize| {
        Event::Step(StepPoint {
            run: id,
            step: s,
            loss: 1.0,
            lr: 1e-3,
            tokens_per_second: 1.0,
            tokens_seen: s,
            elapsed_s: s as f64,
        })
    };
    let eval = |s: usize| {
        Event::Eval(EvalPoint {
            run: id,
            step: s,
            loss: 1.0,
            metric: 0.5,
            elapsed_s: s as f64,
        })
    };
    let started = Event::Started {
        run: id,
        trainable_params: 1,
        total_params: 2,
        steps: 3,
        metric_name: "accuracy".into(),
        chance: None,
        out_dir: None,
        resumed_from: None,
    };
    let notice = Event::Notice {
        run: id,
        text: "cut".into(),
    };
    let first = [started.clone(), notice.clone(), eval(0), step(1), step(2)];
    for e in first.iter().cloned().chain(first.iter().cloned()) {
        store.apply(e);
    }
    store.apply(step(3));
    store.apply(eval(3));
    let r = store.get(id).unwrap();
    assert_eq!(r.train_loss.len(), 3);
    assert_eq!(r.eval_loss.len(), 2);
    assert_eq!(r.notices.len(), 1);
    assert_eq!(r.status, RunStatus::Running);
    store.apply(Event::Failed {
        run: id,
        error: "boom".into(),
    });
    store.apply(started);
    store.apply(step(4));
    let r = store.get(id).unwrap();
    assert!(
        matches!(r.status, RunStatus::Failed(_)),
        "ended stays ended"
    );
    assert_eq!(r.train_loss.len(), 3);
}
