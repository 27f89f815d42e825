//! The job system on the real trainer and models: short jobs stop when asked (an evaluation
//! between batches, a merge before anything is written), and what crosses the seam is plain
//! serde data.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peft_workbench::config::RunConfig;
use peft_workbench::jobs::{Backend, Command, Event, JobResult, JobUpdate, LocalBackend};

/// A finished two-step LoRA run of the built-in model in `runs`.
fn tiny_lora_run(runs: &Path) -> std::path::PathBuf {
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml");
    let overrides = ["steps=2", "eval_every=2", "eval_examples=4"].map(String::from);
    let cfg = RunConfig::load(&preset, &overrides).unwrap();
    let dir = runs.join("lora");
    peft_workbench::train::run(&cfg, 1, Some(&dir), None, &mut |_| {}, &mut || false).unwrap();
    dir
}

/// The end of job `job`: its last update.
fn end_of(backend: &mut LocalBackend, job: u64) -> JobUpdate {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "job {job} never ended"
        );
        match backend.try_recv().unwrap() {
            Some(Event::Job { job: j, update }) if j == job => {
                if !matches!(update, JobUpdate::Text(_)) {
                    return update;
                }
            }
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn an_evaluation_and_a_merge_stop_when_asked_and_run_to_the_end_otherwise() {
    let runs = tempfile::tempdir().unwrap();
    let run = tiny_lora_run(runs.path());
    let mut backend = LocalBackend::spawn(None, Arc::new(|| {}));
    let cfg = RunConfig::load(&run.join("config.toml"), &["eval_examples=64".into()]).unwrap();
    let evaluate = |job| Command::Evaluate {
        job,
        config: Box::new(cfg.clone()),
        adapter: run.join("adapter"),
    };

    // Stopped at once: the flag is up before the first batch.
    backend.send(evaluate(1)).unwrap();
    backend.send(Command::StopJob { job: 1 }).unwrap();
    assert_eq!(end_of(&mut backend, 1), JobUpdate::Stopped);
    backend.send(evaluate(2)).unwrap();
    match end_of(&mut backend, 2) {
        JobUpdate::Done(JobResult::Evaluated { loss, metric }) => {
            assert!(
                loss.is_finite() && (0.0..=1.0).contains(&metric),
                "{loss} {metric}"
            );
        }
        other => panic!("{other:?}"),
    }

    let merged = runs.path().join("merged");
    let merge = |job| Command::Merge {
        job,
        model: "builtin".into(),
        run_dir: run.clone(),
        out: merged.clone(),
    };
    backend.send(merge(3)).unwrap();
    backend.send(Command::StopJob { job: 3 }).unwrap();
    assert_eq!(end_of(&mut backend, 3), JobUpdate::Stopped);
    assert!(!merged.exists(), "a stopped merge writes nothing");
    backend.send(merge(4)).unwrap();
    match end_of(&mut backend, 4) {
        JobUpdate::Done(JobResult::Merged { projections, out }) => {
            assert!(projections > 0);
            assert!(out.join("model.safetensors").is_file());
        }
        other => panic!("{other:?}"),
    }
    let exported = runs.path().join("exported");
    backend
        .send(Command::Export {
            job: 6,
            run_dir: run.clone(),
            out: exported.clone(),
            best: false,
        })
        .unwrap();
    assert!(matches!(
        end_of(&mut backend, 6),
        JobUpdate::Done(JobResult::Exported { files, .. }) if files >= 2
    ));
    assert!(exported.join("adapter_config.json").is_file());
    // A job that fails says why, and the backend goes on.
    backend
        .send(Command::Merge {
            job: 5,
            model: "builtin".into(),
            run_dir: runs.path().join("no-such-run"),
            out: runs.path().join("merged-2"),
        })
        .unwrap();
    assert!(matches!(end_of(&mut backend, 5), JobUpdate::Failed(e) if e.contains("no-such-run")));
    backend.shutdown();
    // After shutdown, a run is refused with the reason rather than dropped.
    let refused = backend.send(Command::Train {
        id: 9,
        config: Box::new(cfg.clone()),
    });
    assert!(refused.unwrap_err().contains("trainer has stopped"));
}

#[test]
fn commands_and_events_cross_as_serde_data() {
    let cfg = RunConfig::default();
    let commands = [
        Command::Train {
            id: 3,
            config: Box::new(cfg.clone()),
        },
        Command::Generate {
            job: 4,
            model: "builtin".into(),
            adapter: Some("runs/x/adapter".into()),
            prompt: "这本书".into(),
            chat: true,
            sampling: Default::default(),
            device: "cpu".into(),
        },
        Command::StopJob { job: 4 },
    ];
    for c in commands {
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c, "{text}");
    }
    let events = [
        Event::Job {
            job: 4,
            update: JobUpdate::Done(JobResult::Classes(vec![("正面".into(), 0.75)])),
        },
        Event::Run(peft_workbench::train::Event::Failed {
            run: 3,
            error: "out of memory".into(),
        }),
        // A step point's run id is not in its own serialisation (metrics.jsonl's lines).
        Event::Run(peft_workbench::train::Event::Step(
            peft_workbench::train::StepPoint {
                run: 7,
                step: 2,
                loss: 1.5,
                lr: 1e-3,
                tokens_per_second: 100.0,
                tokens_seen: 64,
                elapsed_s: 0.5,
            },
        )),
    ];
    for e in events {
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e, "{text}");
    }
}
