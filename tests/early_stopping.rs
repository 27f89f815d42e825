//! Early stopping on real runs of the built-in model: the run stops at the evaluation the
//! rule says (replayed here from its own `metrics.jsonl`), `best/` scores the best
//! evaluation's loss when evaluated from its files alone, exports default to it, and a run
//! stopped and resumed mid-way keeps the early-stopping state its checkpoint carried.

use std::path::Path;

use peft_workbench::config::RunConfig;
use peft_workbench::train::{self, EndedEarly, Event, Halt};

/// LoRA at a rate high enough that the evaluation loss turns back up within 80 steps.
fn config(overrides: &[&str]) -> RunConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets/lora.toml");
    let mut o: Vec<String> = [
        "steps=80",
        "eval_every=5",
        "eval_examples=32",
        "checkpoint_every=5",
        "optimizer.lr=3e-2",
        "early_stopping.patience=2",
        "early_stopping.min_delta=0.002",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    o.extend(overrides.iter().map(|s| s.to_string()));
    RunConfig::load(&path, &o).unwrap()
}

/// (step, loss) of each evaluation and the steps of each "best" line.
fn evals_and_bests(dir: &Path) -> (Vec<(usize, f64)>, Vec<usize>) {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let step = |v: &serde_json::Value| v["step"].as_u64().unwrap() as usize;
    (
        lines
            .iter()
            .filter(|v| v["type"] == "eval")
            .map(|v| (step(v), v["loss"].as_f64().unwrap()))
            .collect(),
        lines
            .iter()
            .filter(|v| v["type"] == "best")
            .map(step)
            .collect(),
    )
}

#[test]
fn a_run_stops_where_the_rule_says_and_best_reproduces_its_evaluation() {
    let cfg = config(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let s = train::run(
        &cfg,
        1,
        Some(dir.path()),
        None,
        &mut |e| events.push(e),
        &mut || false,
    )
    .unwrap();
    assert_eq!(s.ended_early, Some(EndedEarly::Patience), "{s:?}");
    assert!(
        !s.stopped_early,
        "ended by its patience, the run is finished"
    );
    assert!(!train::resumable(dir.path()));
    assert!(s.steps < cfg.steps);

    // The rule, replayed on the run's own evaluations: best so far by more than min_delta,
    // stop after two evaluations without one.
    let (evals, bests) = evals_and_bests(dir.path());
    let (mut best, mut since, mut expected_bests, mut stop_at) = (f64::INFINITY, 0, vec![], None);
    for &(step, loss) in &evals {
        if loss < best - 0.002 {
            best = loss;
            since = 0;
            expected_bests.push(step);
        } else {
            since += 1;
            if since == 2 {
                stop_at = Some(step);
                break;
            }
        }
    }
    assert_eq!(bests, expected_bests);
    assert_eq!(Some(s.steps), stop_at, "{evals:?}");
    assert_eq!(
        evals.last().unwrap().0,
        s.steps,
        "no evaluation after the stop"
    );
    let b = s.best.expect("a best evaluation");
    assert_eq!(b.step, *expected_bests.last().unwrap());
    assert!(b.step < s.steps && b.loss < s.final_eval_loss);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Best { step, .. } if *step == b.step))
    );

    // best/ alone gives the best evaluation's loss; adapter/ the last one's.
    let (loss, _) = train::evaluate_adapter(&cfg, &dir.path().join("best")).unwrap();
    assert!(
        (loss - b.loss).abs() <= 1e-5 * b.loss,
        "best/ scores {loss}, the run said {}",
        b.loss
    );
    let (last, _) = train::evaluate_adapter(&cfg, &dir.path().join("adapter")).unwrap();
    assert!((last - s.final_eval_loss).abs() <= 1e-5 * last);

    // The CLI's export takes best/ unless told --last.
    let out = dir.path().join("exported");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_peft-workbench"))
        .args(["export"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("the best evaluation (best/, step"), "{said}");
    assert_eq!(
        std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(dir.path().join("best/adapter_model.safetensors")).unwrap()
    );
}

/// Stopped between two evaluations and resumed, the run keeps its best and its count of
/// evaluations since, and ends exactly where the uninterrupted run ends.
#[test]
fn resuming_keeps_the_early_stopping_state() {
    let cfg = config(&[]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = train::run(&cfg, 1, Some(a.path()), None, &mut |_| {}, &mut || false).unwrap();
    // Stop after step 22: past the best's first waiting evaluations of a run that ends ~30.
    let mut calls = 0;
    let stopped = train::run(&cfg, 2, Some(b.path()), None, &mut |_| {}, &mut || {
        calls += 1;
        calls > whole.steps - 3
    })
    .unwrap();
    assert!(stopped.stopped_early && train::resumable(b.path()));
    let resumed = train::resume(b.path(), 3, &mut |_| {}, &mut || false).unwrap();
    assert_eq!(resumed.steps, whole.steps);
    assert_eq!(resumed.ended_early, Some(EndedEarly::Patience));
    let (wb, rb) = (whole.best.unwrap(), resumed.best.unwrap());
    assert_eq!(wb.step, rb.step);
    assert!((wb.loss - rb.loss).abs() <= 1e-4 * wb.loss);
    assert_eq!(evals_and_bests(a.path()).1, evals_and_bests(b.path()).1);
}

/// "Stop and keep best": the run ends at once as finished, no checkpoint, best/ present.
#[test]
fn stop_and_keep_best_ends_the_run_with_its_best() {
    let cfg = config(&["early_stopping.patience=100"]);
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    let s = train::run_until(&cfg, 1, Some(dir.path()), &mut |_| {}, &mut || {
        calls += 1;
        if calls > 12 { Halt::Finish } else { Halt::No }
    })
    .unwrap();
    assert_eq!(s.steps, 12);
    assert_eq!(s.ended_early, Some(EndedEarly::User));
    assert!(!s.stopped_early && !train::resumable(dir.path()));
    assert!(dir.path().join("best/adapter_model.safetensors").is_file());
    assert!(
        dir.path()
            .join("adapter/adapter_model.safetensors")
            .is_file()
    );
    assert!(s.best.unwrap().step <= 12);
}
