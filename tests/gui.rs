//! The window driven as a person would: pick a method, press Start on a tiny run, watch the
//! loss points arrive. Pixel snapshots are saved for looking, not compared: they differ
//! across renderers and fonts, and the curves differ run to run.

use egui_kittest::{Harness, kittest::Queryable};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peft_workbench::app::WorkbenchApp;
use peft_workbench::app::runs::RunStatus;

fn harness(app: WorkbenchApp) -> Harness<'static, WorkbenchApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

/// Steps the UI until `done` holds, as frames would while the worker trains.
fn wait_for(
    h: &mut Harness<'static, WorkbenchApp>,
    what: &str,
    done: impl Fn(&WorkbenchApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
        h.step();
    }
}

fn snapshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

#[test]
fn start_a_run_and_watch_its_loss() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.steps = 12;
    app.form.eval_every = 4;
    app.form.eval_examples = 16;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Freeze").click();
    h.run();
    assert_eq!(h.state().form.method.kind(), "freeze");
    assert!(h.get_all_by_label("Trainable last blocks").next().is_some());
    h.get_by_label("LoRA").click();
    h.run();
    assert_eq!(h.state().form.method.kind(), "lora");
    assert!(h.get_all_by_label("Rank r").next().is_some());
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "loss points", |a| {
        a.store
            .runs
            .first()
            .is_some_and(|r| r.train_loss.len() >= 2)
    });
    h.get_by_label_contains("tokens/s");
    wait_for(&mut h, "the run to finish", |a| {
        a.store.runs[0].status == RunStatus::Finished
    });
    h.run();
    let r = &h.state().store.runs[0];
    assert_eq!(r.train_loss.len(), 12);
    assert!(r.eval_loss.len() >= 3);
    h.get_by_label("finished");
    let image = h.render().expect("render");
    image.save(snapshot_path("workbench_after_run")).unwrap();
}

#[test]
fn a_failed_run_shows_its_error_and_the_app_keeps_going() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.dataset = "/nonexistent/data.jsonl".into();
    app.form.steps = 2;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the failure", |a| {
        matches!(
            a.store.runs.first().map(|r| &r.status),
            Some(RunStatus::Failed(_))
        )
    });
    h.run();
    let error = h.get_by_label_contains("failed: ");
    assert!(format!("{error:?}").contains("/nonexistent/data.jsonl"));
    // An invalid form is refused with the key named, and nothing is queued.
    // (No target module ticked: nothing for LoRA to adapt.)
    h.get_by_label("q_proj").click();
    h.get_by_label("v_proj").click();
    h.run();
    h.get_by_label("Start").click();
    h.run();
    assert_eq!(h.state().store.runs.len(), 1);
    h.get_by_label_contains("method.target_modules");
}
