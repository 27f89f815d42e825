//! The window driven as a person would: pick a method, press Start on a tiny run, watch the
//! loss points arrive. Pixel snapshots are saved for looking, not compared: they differ
//! across renderers and fonts, and the curves differ run to run.

use egui_kittest::{
    Harness,
    kittest::{NodeT, Queryable},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod sshd;

use peft_workbench::app::WorkbenchApp;
use peft_workbench::app::runs::RunStatus;

fn harness(app: WorkbenchApp) -> Harness<'static, WorkbenchApp> {
    harness_sized(app, 800.0)
}

/// AdaLoRA's parameters make the side panel taller than 800 points; a person would scroll,
/// the test uses a taller window so Start stays on screen.
fn harness_sized(app: WorkbenchApp, height: f32) -> Harness<'static, WorkbenchApp> {
    Harness::builder()
        .with_size([1280.0, height])
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

/// The app with short runs, so tests that train finish quickly.
fn app_with_short_runs(steps: usize, eval_every: usize, eval_examples: usize) -> WorkbenchApp {
    app_with_short_runs_in(None, steps, eval_every, eval_examples)
}

/// The same, saving its runs under `runs_dir`.
fn app_with_short_runs_in(
    runs_dir: Option<&std::path::Path>,
    steps: usize,
    eval_every: usize,
    eval_examples: usize,
) -> WorkbenchApp {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), runs_dir.map(|d| d.to_path_buf()));
    app.form.steps = steps;
    app.form.eval_every = eval_every;
    app.form.eval_examples = eval_examples;
    app
}

/// A finished run of `presets/{preset}.toml` with `overrides`, saved as run `id` in `runs`
/// (as an earlier session of the workbench would have left it); returns its folder.
fn past_run(
    runs: &std::path::Path,
    preset: &str,
    id: u64,
    overrides: &[&str],
) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(format!("{preset}.toml"));
    let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
    let cfg = peft_workbench::config::RunConfig::load(&path, &overrides).unwrap();
    let folder = runs.join(format!("1000-{id:03}-{preset}"));
    peft_workbench::train::run(&cfg, id, Some(&folder), None, &mut |_| {}, &mut || false).unwrap();
    folder
}

/// A runs folder holding one two-step run of `preset`.
fn one_tiny_past_run(preset: &str) -> tempfile::TempDir {
    let runs = tempfile::tempdir().unwrap();
    past_run(
        runs.path(),
        preset,
        1,
        &["steps=2", "eval_every=2", "eval_examples=4"],
    );
    runs
}

/// Renders the window and saves it under `target/screenshots/` for a person to look at.
fn save_snapshot(h: &mut Harness<'static, WorkbenchApp>, name: &str) {
    h.render()
        .expect("render")
        .save(snapshot_path(name))
        .unwrap();
}

fn snapshot_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

#[test]
fn start_a_run_and_watch_its_loss() {
    let app = app_with_short_runs(12, 4, 16);
    let mut h = harness(app);
    h.run();
    h.get_by_label("Freeze").click();
    h.run();
    assert_eq!(h.state().form.method.kind(), "freeze");
    // The rate follows the method while the user has not set one.
    let form = &h.state().form;
    assert_eq!(
        form.optimizer.lr,
        peft_workbench::compare::learning_rate_for(&form.method, form)
    );
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
    // The default task has labels: the run knows its chance level, the metric plot draws
    // it (a legend entry of its own) and the run's label says its learning rate.
    let chance = r.chance.expect("a label metric has a chance level");
    assert_eq!(chance.examples, 16);
    h.get_by_label_contains("chance (majority label)");
    let rate = peft_workbench::compare::learning_rate_for(&r.config.method, &r.config);
    assert!(
        r.label.contains(&format!("lr {rate:.0e}")),
        "{} at {rate}",
        r.label
    );
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

/// A form that names a device this machine lacks (saved by a CUDA build): the side panel
/// says so and offers the CPU, Start refuses with the same words, and one click fixes it.
#[test]
fn a_missing_cuda_device_is_named_and_the_cpu_offered() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.device = "cuda:7".into();
    app.form.precision = peft_workbench::config::Precision::Bf16;
    let mut h = harness_sized(app, 1100.0);
    h.run();
    h.get_by_label("cuda:7 is not available here.");
    h.get_by_label("Start").click();
    h.run();
    assert!(h.state().store.runs.is_empty());
    let refused = h.state().form_error.clone().unwrap_or_default();
    assert!(refused.contains("cuda:7"), "{refused}");
    let image = h.render().expect("render");
    image.save(snapshot_path("missing_device")).unwrap();
    h.get_by_label("Use the CPU").click();
    h.run();
    assert_eq!(h.state().form.device, "cpu");
    assert_eq!(
        h.state().form.precision,
        peft_workbench::config::Precision::F32
    );
    assert!(h.query_by_label("cuda:7 is not available here.").is_none());
    // With the CPU the only device, the panel says training is f32 and why.
    h.get_by_label_contains("in f32");
}

#[test]
fn every_method_shows_its_own_parameters_and_adalora_its_ranks() {
    let app = app_with_short_runs(12, 6, 16);
    let mut h = harness_sized(app, 1100.0);
    h.run();
    // (button, kind, a parameter only that method shows)
    let methods = [
        ("DoRA", "dora", "Rank r"),
        ("IA3", "ia3", "Feed-forward (input rescaled)"),
        ("BitFit", "bitfit", "Train norm gains"),
        ("Adapter", "adapter", "Bottleneck m"),
        ("Prompt Tuning", "prompt-tuning", "Initialise from"),
        ("P-Tuning", "p-tuning", "LSTM layers"),
        (
            "Prefix Tuning",
            "prefix-tuning",
            "Reparameterise with an MLP",
        ),
        ("P-Tuning v2", "p-tuning-v2", "Init text (optional)"),
        ("AdaLoRA", "adalora", "Target rank"),
    ];
    for (button, kind, param) in methods {
        h.get_by_label(button).click();
        h.run();
        assert_eq!(h.state().form.method.kind(), kind);
        assert!(
            h.get_all_by_label(param).next().is_some(),
            "{kind} shows {param}"
        );
        // The count is the method's formula on the built-in model, shown before training.
        h.get_by_label_contains("Trains ");
    }
    h.get_by_label("BitFit").click();
    h.run();
    h.get_by_label_contains("no bias terms");
    h.get_by_label("AdaLoRA").click();
    h.run();
    h.get_by_label("Start").click();
    h.step();
    assert_eq!(h.state().store.runs.len(), 1, "the AdaLoRA run is queued");
    wait_for(&mut h, "a rank allocation", |a| {
        a.store.runs.first().is_some_and(|r| {
            r.ranks
                .as_ref()
                .is_some_and(|(_, a)| a.budget < a.init_r * a.ranks.len())
        })
    });
    h.run();
    h.get_by_label_contains("AdaLoRA rank per matrix");
    wait_for(&mut h, "the run to finish", |a| {
        a.store.runs[0].status == RunStatus::Finished
    });
    h.run();
    let image = h.render().expect("render");
    image.save(snapshot_path("adalora_ranks")).unwrap();
}

#[test]
fn past_runs_are_listed_and_deleted_after_confirmation() {
    let runs = tempfile::tempdir().unwrap();
    let folder = past_run(
        runs.path(),
        "ia3",
        1,
        &["steps=4", "eval_every=2", "eval_examples=8"],
    );
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    assert_eq!(app.store.runs.len(), 1, "the saved run is listed at start");
    let mut h = harness(app);
    h.run();
    assert_eq!(
        h.state().store.runs[0].train_loss.len(),
        4,
        "its curve, read as it is shown"
    );
    h.get_by_label("finished");
    h.get_by_label_contains("1 past runs read");
    // Delete sits in the row's menu with Export and Merge.
    h.get_by_label("…").click();
    h.run();
    h.get_by_label("Delete").click();
    h.run();
    // Nothing is deleted until the user confirms.
    assert!(folder.is_dir());
    h.get_by_label("Cancel").click();
    h.run();
    assert_eq!(h.state().store.runs.len(), 1);
    h.get_by_label("…").click();
    h.run();
    h.get_by_label("Delete").click();
    h.run();
    h.get_by_label("Delete run").click();
    h.run();
    assert!(h.state().store.runs.is_empty());
    assert!(!folder.exists());
    h.get_by_label_contains("1 runs moved to the trash");
    // It waits in the trash until the trash is emptied, after a second question.
    let trashed = runs.path().join(".trash").join(folder.file_name().unwrap());
    assert!(trashed.join("summary.json").is_file());
    h.get_by_label("Trash (1)").click();
    h.run();
    h.get_by_label("Empty trash (1)…").click();
    h.run();
    assert!(trashed.exists(), "asked first");
    h.get_by_label("Empty trash").click();
    h.run();
    assert!(!trashed.exists());
    h.get_by_label_contains("1 run folders removed from disk");
}

/// Runs another process adds to the same runs folder appear in an open window: a finished
/// one as it is, one still being written (its lock held) as training elsewhere, which only
/// its writer may stop or delete, read whole once its writer has gone. Deleting the listed
/// runs asks once for all.
#[test]
fn runs_from_elsewhere_appear_and_many_go_to_the_trash_at_once() {
    let runs = tempfile::tempdir().unwrap();
    let tiny = ["steps=2", "eval_every=2", "eval_examples=4"];
    past_run(runs.path(), "lora", 1, &tiny);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1000.0);
    h.run();
    assert_eq!(h.state().store.runs.len(), 1);
    // Another process: one run finished, one still being written (its lock held by a
    // live process that is not this one).
    past_run(runs.path(), "ia3", 2, &tiny);
    let busy = past_run(runs.path(), "bitfit", 3, &tiny);
    let mut writer = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        busy.join(peft_workbench::train::run_dir::LOCK_FILE),
        format!("{} {}\n", writer.id(), host.trim()),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(3100));
    h.run();
    assert_eq!(h.state().store.runs.len(), 3, "both appear");
    h.get_by_label_contains("2 new runs found");
    let elsewhere = &h.state().store.runs[2];
    assert!(
        matches!(&elsewhere.status, RunStatus::Elsewhere(who) if who.contains(&writer.id().to_string())),
        "{:?}",
        elsewhere.status
    );
    // Its writer alone may stop or delete it: no Resume, and not among the deletable.
    h.get_by_label("training elsewhere");
    h.get_by_label("Delete the 2 listed…");
    writer.kill().unwrap();
    writer.wait().unwrap();
    std::thread::sleep(Duration::from_millis(3100));
    h.run();
    assert_eq!(
        h.state().store.runs[2].status,
        RunStatus::Finished,
        "read whole once its writer is gone"
    );
    assert_eq!(h.state().store.runs.len(), 3);

    h.get_by_label("Delete the 3 listed…").click();
    h.run();
    h.get_by_label("Delete these 3 runs?");
    h.get_by_label("Delete run").click();
    h.run();
    assert!(h.state().store.runs.is_empty());
    h.get_by_label_contains("3 runs moved to the trash");
    assert_eq!(
        std::fs::read_dir(runs.path().join(".trash"))
            .unwrap()
            .count(),
        3
    );
}

/// A month of runs is sorted out as a person would: a note and tags on one run, a filter by
/// tag and by status, the rest archived out of sight, one deleted and brought back from the
/// trash. What the user wrote is in the run's folder, and a new window reads it back.
#[test]
fn runs_are_tagged_archived_filtered_and_restored() {
    let runs = tempfile::tempdir().unwrap();
    let tiny = ["steps=2", "eval_every=2", "eval_examples=4"];
    let lora = past_run(runs.path(), "lora", 1, &tiny);
    past_run(runs.path(), "ia3", 2, &tiny);
    past_run(runs.path(), "bitfit", 3, &tiny);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1000.0);
    h.run();

    // Tags and a note on the LoRA run, through its "…" menu.
    let lora_label = h.state().store.runs[0].label.clone();
    h.get_all_by_label("…")
        .last()
        .expect("the LoRA run's menu (the oldest row is the last)")
        .click();
    h.run();
    h.get_by_label("Tags and note…").click();
    h.run();
    h.get_by_label(&format!("Run {lora_label}"));
    h.get_by_label("Tags (separated by commas)").click();
    h.run();
    h.get_by_label("Tags (separated by commas)")
        .type_text("baseline，中文 , baseline");
    h.get_by_label("Note").click();
    h.run();
    h.get_by_label("Note").type_text("rate from the sweep");
    h.run();
    h.get_by_label("Save").click();
    h.run();
    let notes = &h.state().store.runs[0].notes;
    assert_eq!(notes.tags, ["baseline", "中文"]);
    assert_eq!(notes.note, "rate from the sweep");
    assert!(lora.join("notes.json").is_file());
    h.get_by_label_contains("[baseline] [中文] rate from the sweep");

    // The search reads notes; the tag filter lists the tagged run alone.
    h.get_by_label("Search").click();
    h.run();
    h.get_by_label("Search").type_text("sweep");
    h.run();
    h.get_by_label("Delete the 1 listed…");
    for _ in 0.."sweep".len() {
        h.key_press(eframe::egui::Key::Backspace);
        h.run();
    }
    h.get_by_label("Tag").click();
    h.run();
    h.get_by_label("baseline").click();
    h.run();
    h.get_by_label("Delete the 1 listed…");
    assert_eq!(h.state().runs_filter.tag.as_deref(), Some("baseline"));
    h.state_mut().runs_filter.tag = None;
    h.run();

    // The other two archived at once: gone from the list and the plots, folders kept.
    h.state_mut().runs_filter.method = Some("ia3".into());
    h.run();
    h.get_by_label("Archive the 1 listed").click();
    h.run();
    h.state_mut().runs_filter.method = Some("bitfit".into());
    h.run();
    h.get_by_label("Archive the 1 listed").click();
    h.run();
    h.state_mut().runs_filter.method = None;
    h.run();
    h.get_by_label("Delete the 1 listed…");
    assert_eq!(h.state().store.runs.iter().filter(|r| r.shown).count(), 1);
    h.get_by_label("Archived runs too (2)").click();
    h.run();
    h.get_by_label("Delete the 3 listed…");
    h.get_by_label("Unarchive the 2 listed");
    save_snapshot(&mut h, "runs_tagged_and_archived");

    // A new window reads the notes and the archive back, and starts on what is not archived.
    let again = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    assert_eq!(again.store.runs[0].notes.tags, ["baseline", "中文"]);
    assert!(again.store.runs[1].notes.archived && !again.store.runs[1].shown);
    drop(again);

    // Deleted, then brought back from the trash with its notes.
    h.state_mut().runs_filter.archived_too = false;
    h.run();
    h.get_by_label("Delete the 1 listed…").click();
    h.run();
    h.get_by_label("Delete run").click();
    h.run();
    assert!(!lora.exists());
    h.get_by_label("Trash (1)").click();
    h.run();
    h.get_by_label("Restore").click();
    h.run();
    assert!(lora.join("notes.json").is_file(), "back under its own name");
    h.get_by_label_contains("restored to");
    let back = h.state().store.runs.last().unwrap();
    assert_eq!(back.notes.note, "rate from the sweep");
    assert_eq!(h.state().trash_count(), 0);
}

#[test]
fn the_playground_streams_the_base_models_answer() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.playground.prompt = "And God said,".into();
    app.playground.sampling.max_tokens = 8;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Playground").click();
    h.run();
    h.get_by_label("Generate").click();
    h.step();
    wait_for(&mut h, "the answer", |a| {
        !a.playground.answers.is_empty() && !a.playground.busy()
    });
    h.run();
    let a = &h.state().playground.answers[0];
    assert_eq!(a.label, "base model");
    let text = a.text.clone();
    assert!(
        !text.trim().is_empty() && !text.contains("[error"),
        "{text:?}"
    );
    h.get_by_label_contains(text.trim());
    let image = h.render().expect("render");
    image.save(snapshot_path("playground")).unwrap();
}

/// Four past runs: the three best answer by default, and the user ticks the fourth.
#[test]
fn the_playground_answers_with_the_runs_the_user_picks() {
    let runs = tempfile::tempdir().unwrap();
    for (id, steps) in [(1, 6), (2, 1), (3, 1), (4, 1)] {
        past_run(
            runs.path(),
            "ia3",
            id,
            &[
                &format!("steps={steps}"),
                "eval_every=10",
                "eval_examples=8",
                "dataset=builtin:reviews-zh",
            ],
        );
    }
    let mut app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    app.playground.sampling.max_tokens = 2;
    let mut h = harness_sized(app, 1100.0);
    h.run();
    h.get_by_label("Playground").click();
    h.run();
    h.get_by_label("Runs that answer (3 of 4, best metric first)")
        .click();
    h.run();
    use eframe::egui::accesskit::{Role, Toggled};
    let unticked: Vec<String> = h
        .get_all_by_role(Role::CheckBox)
        .filter(|n| n.accesskit_node().toggled() == Some(Toggled::False))
        .filter_map(|n| n.accesskit_node().label())
        .filter(|l| l.starts_with('#'))
        .collect();
    assert_eq!(unticked.len(), 1, "{unticked:?}");
    h.get_by_role_and_label(Role::CheckBox, &unticked[0])
        .click();
    h.run();
    h.get_by_label("Generate").click();
    h.step();
    wait_for(&mut h, "the answers", |a| {
        a.playground.answers.len() == 5 && !a.playground.busy()
    });
    h.run();
    let labels: Vec<String> = h
        .state()
        .playground
        .answers
        .iter()
        .map(|a| a.label.clone())
        .collect();
    assert!(
        labels.iter().any(|l| unticked[0].starts_with(l.as_str())),
        "{labels:?} lacks {}",
        unticked[0]
    );
    save_snapshot(&mut h, "playground_runs");
}

#[test]
fn compare_all_methods_queues_one_run_per_method() {
    let app = app_with_short_runs(1, 1, 4);
    // Tall enough for the twelve rows of the table under the plots.
    let mut h = harness_sized(app, 1200.0);
    h.run();
    h.get_by_label("Compare all methods").click();
    h.step();
    assert_eq!(h.state().store.runs.len(), 12);
    wait_for(&mut h, "every run to finish", |a| !a.store.has_unfinished());
    h.run();
    let runs = &h.state().store.runs;
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Finished),
        "{:?}",
        runs.iter()
            .map(|r| (&r.label, &r.status))
            .collect::<Vec<_>>()
    );
    let kinds: std::collections::HashSet<&str> =
        runs.iter().map(|r| r.config.method.kind()).collect();
    assert_eq!(kinds.len(), 12);
    // On the shipped comparison's task each method trains at its swept rate, and its
    // label says which.
    let swept = &peft_workbench::compare::shipped().learning_rates;
    let lora = runs
        .iter()
        .find(|r| r.config.method.kind() == "lora")
        .unwrap();
    assert_eq!(lora.config.optimizer.lr, swept["lora"]);
    assert!(lora.label.ends_with(&format!("lr {:.0e}", swept["lora"])));
    // The status line announced the queue, and once it has run says how it ended.
    h.get_by_label_contains("comparison done: 12 of 12 runs finished; best #");
    // Twelve runs: the table is the legend, and a name picks out its run's curves.
    h.get_by_label_contains("the table below is the legend");
    let label = lora.label.clone();
    let id = lora.id;
    h.get_by_label(&label).click();
    h.run();
    assert_eq!(h.state().selected_run, Some(id));
    let image = h.render().expect("render");
    image.save(snapshot_path("compare_all")).unwrap();
}

#[test]
fn a_loaded_peft_adapter_answers_in_the_playground() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.playground.prompt = "And God said,".into();
    app.playground.sampling.max_tokens = 6;
    // What "Load adapter…" adds: here an adapter Hugging Face PEFT made for the built-in model.
    app.playground.loaded_adapters.push(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_made/lora"),
    );
    let mut h = harness(app);
    h.run();
    h.get_by_label("Playground").click();
    h.run();
    h.get_by_label("Generate").click();
    h.step();
    wait_for(&mut h, "the answers", |a| {
        a.playground.answers.len() == 2 && !a.playground.busy()
    });
    h.run();
    let answers = &h.state().playground.answers;
    assert_eq!(answers[1].label, "adapter lora");
    for a in answers {
        let text = a.text.clone();
        assert!(
            !text.trim().is_empty() && !text.contains("[error"),
            "{}: {text:?}",
            a.label
        );
    }
    h.get_all_by_label("adapter lora").next().unwrap();
    // The same adapter scored on the form's dataset, as a run scores itself at its end.
    h.state_mut().form.eval_examples = 8;
    h.get_by_label("Evaluate adapters").click();
    h.step();
    wait_for(&mut h, "the evaluation", |a| {
        a.playground.evaluations.len() == 1 && a.playground.evaluations[0].done
    });
    h.run();
    let text = h.state().playground.evaluations[0].text.clone();
    assert!(text.starts_with("eval loss "), "{text}");
    h.get_by_label_contains("eval loss ");
}

/// Short jobs do not queue behind training: a playground answer arrives while a run is
/// still training, and Stop there stops the run, not the answers.
#[test]
fn a_playground_answer_arrives_while_a_run_trains() {
    let mut app = app_with_short_runs(400, 400, 8);
    app.playground_open = true;
    app.playground.sampling.max_tokens = 4;
    let mut h = harness_sized(app, 1000.0);
    h.run();
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the run's first step", |a| {
        a.store
            .runs
            .first()
            .is_some_and(|r| !r.train_loss.is_empty())
    });
    h.get_by_label("Generate").click();
    h.step();
    wait_for(&mut h, "the base model's answer", |a| {
        !a.playground.answers.is_empty() && !a.playground.busy()
    });
    let r = &h.state().store.runs[0];
    assert_eq!(r.status, RunStatus::Running, "the run still trains");
    assert!(r.steps_done() < 400);
    let answer = &h.state().playground.answers[0];
    assert!(!answer.text.contains("[error"), "{}", answer.text);
    assert!(!answer.text.contains("[stopped]"), "{}", answer.text);
    // The side panel's Stop (the run's row has one too).
    h.get_all_by_label("Stop").next().unwrap().click();
    h.step();
    wait_for(&mut h, "the run to stop", |a| {
        a.store.runs[0].status == RunStatus::Stopped
    });
}

/// A worker that has ended answers a Start with an error in the window and a failed run,
/// not silence.
#[test]
fn a_start_sent_to_a_dead_worker_shows_an_error() {
    let mut app = app_with_short_runs(4, 2, 4);
    app.stop_background_work();
    let mut h = harness(app);
    h.run();
    h.get_by_label("Start").click();
    h.run();
    h.get_by_label_contains("cannot start: the trainer has stopped");
    let r = &h.state().store.runs[0];
    assert!(
        matches!(&r.status, RunStatus::Failed(why) if why.contains("trainer has stopped")),
        "{:?}",
        r.status
    );
    h.get_by_label("failed");
    // The window goes on: the same answer again, nothing stuck.
    h.get_by_label("Start").click();
    h.run();
    assert_eq!(h.state().store.runs.len(), 2);
}

/// A remote machine added from its SSH line as a provider shows it, its host key checked and
/// trusted, its connection tested; its CPU then in the Device picker, a run started on it
/// trains there (through a real sshd on 127.0.0.1) and comes home into the runs folder.
#[test]
fn a_run_on_a_remote_machine_trains_there_and_comes_home() {
    let sshd = sshd::Sshd::start();
    let runs = tempfile::tempdir().unwrap();
    let mut app = app_with_short_runs_in(Some(runs.path()), 6, 3, 8);
    app.machines = peft_workbench::app::machines::MachinesPanel::load(Some(sshd.path("config")));
    let mut h = harness_sized(app, 1600.0);
    h.run();
    h.get_by_label("Remote machines (SSH)").click();
    h.run();
    h.get_by_label("Name").click();
    h.run();
    h.get_by_label("Name").type_text("loop");
    h.run();
    let line = sshd.ssh_line("client_key").join(" ");
    h.get_by_label("SSH command, as the provider shows it")
        .click();
    h.run();
    h.get_by_label("SSH command, as the provider shows it")
        .type_text(&line);
    h.run();
    h.get_by_label("Add machine").click();
    h.run();
    assert_eq!(h.state().machines.machines.len(), 1);
    // Where the program goes and its runs are there (the defaults are folders in the remote
    // home, here the tester's own).
    {
        let m = &mut h.state_mut().machines.machines[0].machine;
        m.install_dir = Some(sshd.path("remote bin").display().to_string());
        m.runs_dir = Some(sshd.path("remote runs").display().to_string());
    }
    h.state_mut().machines.install_binary = sshd::bin().to_string();
    h.get_by_label("Host key…").click();
    h.step();
    wait_for(&mut h, "the host keys", |a| {
        a.machines.machines[0].keys.is_some()
    });
    h.run();
    h.get_by_label_contains("(ED25519)");
    h.get_by_label("Trust these keys").click();
    h.step();
    wait_for(&mut h, "the trust", |a| {
        a.machines.machines[0].busy.is_none()
    });
    // No program there yet: Install sends this one, with the built-in assets.
    h.get_by_label("Test connection").click();
    h.step();
    wait_for(&mut h, "the test", |a| {
        a.machines.machines[0].busy.is_none()
    });
    h.run();
    assert!(h.state().machines.machines[0].devices.is_empty());
    h.get_by_label("Install").click();
    h.step();
    wait_for(&mut h, "the install", |a| {
        !a.machines.machines[0].devices.is_empty()
    });
    h.run();
    h.get_by_label_contains("installed as");
    let installed = sshd.path("remote bin").join(env!("CARGO_PKG_VERSION"));
    assert!(
        installed
            .join("assets/models/builtin/config.json")
            .is_file()
    );
    assert_eq!(
        h.state().machines.machines[0].machine.binary.as_deref(),
        Some(&*installed.join("peft-workbench").display().to_string())
    );
    // The user's own dataset file, on this computer only: it is sent there first.
    let data = sshd.local_dataset("my reviews 'q' $(x).jsonl");
    h.state_mut().form.dataset = data.display().to_string();
    h.run();
    h.get_by_label("Device").click();
    h.run();
    h.get_by_label("cpu @ loop").click();
    h.run();
    assert_eq!(h.state().form.machine.as_deref(), Some("loop"));
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the run to come home", |a| {
        a.store.runs.first().is_some_and(|r| {
            r.out_dir
                .as_deref()
                .is_some_and(|d| d.starts_with(&runs.path().display().to_string()))
        })
    });
    h.run();
    let r = &h.state().store.runs[0];
    assert_eq!(r.status, RunStatus::Finished);
    assert!(r.label.ends_with("on loop"), "{}", r.label);
    assert_eq!(r.train_loss.len(), 6, "every step streamed once");
    let home = std::path::Path::new(r.out_dir.as_ref().unwrap());
    assert!(home.join("adapter/adapter_model.safetensors").is_file());
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("my reviews"), "named as here: {config}");
    assert_eq!(
        std::fs::read_dir(sshd.path("remote runs/.uploads"))
            .unwrap()
            .count(),
        1
    );
    h.get_by_label_contains("came home");
    save_snapshot(&mut h, "remote_run_home");
}

/// Closing the window mid-run saves a checkpoint; at the next launch the run is listed as
/// stopped with a Resume button, which continues it to its last step.
#[test]
fn a_run_stopped_by_closing_the_app_resumes_at_the_next_launch() {
    let runs = tempfile::tempdir().unwrap();
    let mut app = app_with_short_runs_in(Some(runs.path()), 30, 10, 8);
    app.form.checkpoint_every = 0;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "a few steps", |a| {
        a.store
            .runs
            .first()
            .is_some_and(|r| r.train_loss.len() >= 3)
    });
    // What closing the window does: the worker stops at the next step and saves.
    drop(h);

    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    assert_eq!(app.store.runs.len(), 1);
    let r = &app.store.runs[0];
    assert_eq!(r.status, RunStatus::Stopped);
    assert!(r.resumable, "a checkpoint was saved when the app closed");
    let stopped_at = r.steps_done();
    assert!((3..30).contains(&stopped_at), "{stopped_at}");
    let mut h = harness(app);
    h.run();
    h.get_by_label("stopped");
    h.get_by_label("Resume").click();
    h.step();
    wait_for(&mut h, "the resumed run to finish", |a| {
        match &a.store.runs[0].status {
            RunStatus::Failed(e) => panic!("the resumed run failed: {e}"),
            s => *s == RunStatus::Finished,
        }
    });
    h.run();
    let r = &h.state().store.runs[0];
    let steps: Vec<usize> = r.train_loss.iter().map(|p| p[0] as usize).collect();
    assert_eq!(
        steps,
        (1..=30).collect::<Vec<_>>(),
        "one curve, no gap, no repeat"
    );
    assert!(!r.resumable);
    h.get_by_label("finished");
}

/// The Learn view: a page per method with its diagram and formula, and its preset one click
/// away; then the whole window in 简体中文, with the Chinese text actually drawn.
#[test]
fn learn_pages_and_the_chinese_ui() {
    use peft_workbench::app::View;
    let app = WorkbenchApp::new(Arc::new(|| {}), None);
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("Learn").click();
    h.run();
    assert_eq!(h.state().view, View::Learn);
    for m in peft_workbench::peft::MethodConfig::all_defaults() {
        h.get_by_label(m.display_name()).click();
        h.run();
    }
    // Beside the runs measured here, PEFT's published numbers with their source.
    h.get_by_label("LoRA").click();
    h.run();
    h.get_by_label("Published results");
    h.get_by_label("0.895");
    h.get_by_label("LoRA r64, rsLoRA");
    h.get_by_label_contains("roberta-large on MRPC");
    // The page a student of the survey reads: the forward pass, the paper, its neighbours
    // and what its settings do.
    h.get_by_label("Forward pass");
    h.get_by_label_contains("(α/r)·B_q A_q x");
    h.get_by_label("Original paper");
    h.get_by_label_contains("ICLR 2022, arXiv:2106.09685");
    h.get_by_label("Related methods");
    h.get_by_label_contains("merges into W and bottleneck adapters do not");
    h.get_by_label("Typical hyperparameters");
    h.get_by_label_contains("Rank r (4–64");
    h.get_by_label("Training on a rented GPU").click();
    h.run();
    h.get_by_label("7. The finished run comes home");
    h.get_by_label_contains("ssh -p 23456 root@region-9.example.com");
    h.get_by_label("Prefix Tuning").click();
    h.run();
    h.get_by_label_contains("never the queries");
    save_snapshot(&mut h, "learn_prefix");
    h.get_by_label("Freeze").click();
    h.run();
    h.get_by_label_contains("publishes no numbers for this method");
    h.get_by_label("AdaLoRA").click();
    h.run();
    h.get_by_label("Pros");
    h.get_by_label_contains("On the loaded model, default settings");
    h.get_by_label_contains("singular triplet");
    save_snapshot(&mut h, "learn_adalora");
    h.get_by_label("Use its preset").click();
    h.run();
    assert_eq!(h.state().view, View::Train);
    assert_eq!(h.state().form.method.kind(), "adalora");
    assert_eq!(
        h.state().form.optimizer.lr,
        1e-2,
        "the preset's learning rate"
    );

    h.get_by_label("简体中文").click();
    h.run();
    h.run();
    h.get_by_label("开始");
    h.get_by_label("比较所有方法");
    h.get_by_label("学习").click();
    h.run();
    h.get_by_label("优点");
    // Every page lays out in Chinese (egui panics on a glyph no font has).
    for m in peft_workbench::peft::MethodConfig::all_defaults() {
        let name = peft_workbench::app::i18n::zh(m.display_name()).unwrap_or(m.display_name());
        h.get_by_label(name).click();
        h.run();
    }
    h.get_by_label("AdaLoRA").click();
    h.run();
    let image = h.render().expect("render");
    image.save(snapshot_path("learn_adalora_zh")).unwrap();
    // The survey's last question, answered in the window: the rented-GPU guide.
    h.get_by_label("用租的显卡训练").click();
    h.run();
    h.get_by_label("2. 用服务商给的 SSH 命令添加机器");
    h.get_by_label_contains("守护进程");
    save_snapshot(&mut h, "learn_rented_gpu_zh");
    // The language is part of what the window remembers.
    assert_eq!(
        h.state().remembered().lang,
        peft_workbench::app::i18n::Lang::Zh
    );
}

/// What the window remembers (form, language, theme) comes back on the next launch.
#[test]
fn the_form_and_language_are_remembered() {
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.steps = 77;
    app.form.method = peft_workbench::peft::MethodConfig::Ia3(Default::default());
    app.lang = peft_workbench::app::i18n::Lang::Zh;
    app.dark = false;
    let saved = serde_json::to_string(&app.remembered()).unwrap();
    let mut next = WorkbenchApp::new(Arc::new(|| {}), None);
    next.restore(serde_json::from_str(&saved).unwrap());
    assert_eq!(next.form.steps, 77);
    assert_eq!(next.form.method.kind(), "ia3");
    assert_eq!(next.lang, peft_workbench::app::i18n::Lang::Zh);
    assert!(!next.dark);
}

/// The playground's open state and the runs-table columns the user hid are kept across a
/// restart, as a person leaves them by clicking.
#[test]
fn the_playground_and_the_hidden_columns_are_remembered() {
    let runs = one_tiny_past_run("lora");
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1200.0);
    h.run();
    assert!(h.query_by_label("Generate").is_none(), "closed at first");
    h.get_by_label("Playground").click();
    h.run();
    h.get_by_label("Generate");
    h.get_by_label("Tokens/s");
    h.get_by_label("Columns").click();
    h.run();
    h.get_by_role_and_label(eframe::egui::accesskit::Role::CheckBox, "Tokens/s")
        .click();
    h.run();
    h.key_press(eframe::egui::Key::Escape);
    h.run();
    assert!(
        h.query_by_label("Tokens/s").is_none(),
        "the column is hidden"
    );
    h.get_by_label("Peak memory");
    let saved = serde_json::to_string(&h.state().remembered()).unwrap();

    let mut next = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    next.restore(serde_json::from_str(&saved).unwrap());
    let mut h = harness_sized(next, 1200.0);
    h.run();
    h.get_by_label("Generate");
    assert!(h.query_by_label("Tokens/s").is_none(), "still hidden");
    h.get_by_label("Metric");
    // Closing it is remembered too.
    h.get_by_label("Playground").click();
    h.run();
    assert!(h.query_by_label("Generate").is_none());
    assert!(!h.state().remembered().playground_open);
}

/// Two queued runs finish one after the other; the table shows their numbers, sorts by a
/// column, and exports in its order as CSV; the x axis switches to tokens seen.
#[test]
fn two_queued_runs_fill_a_sortable_table_that_exports_as_csv() {
    let runs = tempfile::tempdir().unwrap();
    let app = app_with_short_runs_in(Some(runs.path()), 6, 3, 8);
    let mut h = harness(app);
    h.run();
    h.get_by_label("IA3").click();
    h.run();
    h.get_by_label("Start").click();
    // The first run is loading (a spinner repaints): step instead of waiting to settle.
    h.run_steps(4);
    h.get_by_label("LoRA").click();
    h.run_steps(4);
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "both runs to finish", |a| {
        a.store.runs.len() == 2 && a.store.runs.iter().all(|r| r.status == RunStatus::Finished)
    });
    h.run();
    for r in &h.state().store.runs {
        let row = r.row.as_ref().expect("a finished run has its table row");
        assert!(row.adapter_bytes > 0 && row.peak_rss_bytes > 0 && row.tokens_per_second > 0.0);
        // Evaluation points sit at the tokens seen by their step on that axis.
        let eval = r.curve(
            peft_workbench::app::runs::Curve::EvalLoss,
            peft_workbench::app::runs::XAxis::Tokens,
        );
        assert_eq!(eval[0][0], 0.0);
        assert!(eval.last().unwrap()[0] > 0.0);
    }
    // Sort by trainable parameters, largest first: LoRA above IA3.
    h.get_by_label("Trainable").click();
    h.run();
    let order: Vec<String> = peft_workbench::app::central::sorted_runs(h.state())
        .iter()
        .map(|r| r.config.method.kind().to_string())
        .collect();
    assert_eq!(order, ["lora", "ia3"]);
    h.get_by_label("tokens seen").click();
    h.run();
    assert_eq!(h.state().x_axis, peft_workbench::app::runs::XAxis::Tokens);
    h.get_by_label("log-scale loss").click();
    h.run();
    // The trade-off view places each finished run once, on each of its three cost axes.
    // (Opened by default only once two runs have finished when it is first drawn.)
    h.get_by_label("Trade-offs: metric against cost").click();
    h.run();
    let placed = peft_workbench::app::pareto::placed(&h.state().store.runs);
    assert_eq!(placed.len(), 2);
    for cost in peft_workbench::app::pareto::Cost::ALL {
        assert!(
            placed.iter().all(|(_, row)| cost.x(row).is_some()),
            "{cost:?}"
        );
        h.get_by_label(cost.title());
    }
    let csv = runs.path().join("table.csv");
    h.get_by_label("Export table (CSV)…").click();
    h.run();
    // A folder is not a file to write the table to: the prompt says so and stays open.
    h.state_mut().path_prompt.as_mut().unwrap().path = runs.path().display().to_string();
    h.get_by_label("Save").click();
    h.run();
    h.get_by_label_contains("is a folder; name a file in it");
    h.state_mut().path_prompt.as_mut().unwrap().path = csv.display().to_string();
    h.get_by_label("Save").click();
    h.run();
    assert!(h.state().path_prompt.is_none());
    h.get_by_label_contains("2 rows written to");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains(",lora,") && lines[2].contains(",ia3,"),
        "{text}"
    );
    save_snapshot(&mut h, "two_runs_table");
}

/// The BERT classifier all-MiniLM-L6-v2, which scripts/fetch-models.sh fetches.
fn minilm_dir() -> std::path::PathBuf {
    let minilm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-minilm-l6-v2");
    assert!(
        minilm.join("model.safetensors").is_file(),
        "run `bash scripts/fetch-models.sh` first"
    );
    minilm
}

/// A BERT classifier (MiniLM, from scripts/fetch-models.sh) as a person would use it: the
/// model card says what it is, a LoRA run on the labelled reviews reports accuracy, and
/// the playground answers with class probabilities, the trained run's beside the base
/// model's untrained head.
#[test]
fn a_classifier_trains_and_answers_with_class_probabilities() {
    let minilm = minilm_dir();
    // Saved runs, so the finished run's adapter can answer in the playground.
    let runs = tempfile::tempdir().unwrap();
    let mut app = app_with_short_runs_in(Some(runs.path()), 40, 20, 64);
    app.form.model = minilm.display().to_string();
    app.form.dataset = "builtin:sentiment-labels".into();
    app.form.batch_size = 16;
    app.form.max_seq_len = 64;
    app.form.optimizer.lr = 2e-3;
    app.playground.prompt = "i thought the film was wonderful.".into();
    // The classifier's model card and the target-module note make the side panel taller.
    let mut h = harness_sized(app, 1100.0);
    h.run();
    h.get_by_label_contains("BERT encoder with a classification head");
    h.get_by_label("LoRA").click();
    h.run();
    // The LLaMA names the form ticks by default are mapped, and the run says so.
    h.get_by_label_contains("q_proj -> query");
    h.get_by_label("Start").click();
    h.run_steps(4);
    assert_eq!(h.state().store.runs.len(), 1, "{:?}", h.state().form_error);
    wait_for(&mut h, "the run to end", |a| {
        a.store
            .runs
            .first()
            .is_some_and(|r| r.status != RunStatus::Running && r.status != RunStatus::Queued)
    });
    h.run();
    let r = &h.state().store.runs[0];
    assert_eq!(r.status, RunStatus::Finished);
    assert_eq!(r.metric_name, "accuracy");
    let accuracy = r.eval_metric.last().map(|p| p[1]).unwrap();
    assert!(accuracy >= 0.8, "accuracy {accuracy}");
    h.get_by_label("Playground").click();
    h.run();
    h.get_by_label("Classify").click();
    h.step();
    wait_for(&mut h, "the class probabilities", |a| {
        !a.playground.answers.is_empty() && !a.playground.busy()
    });
    h.run();
    let answers = &h.state().playground.answers;
    assert_eq!(answers.len(), 2, "the base model and the run answer");
    assert_eq!(answers[0].label, "base model");
    let trained = answers[1].text.clone();
    assert!(trained.starts_with("positive "), "{trained:?}");
    assert!(
        trained.contains('%') && trained.contains("negative"),
        "{trained:?}"
    );
    let image = h.render().expect("render");
    image.save(snapshot_path("classifier_playground")).unwrap();
}

/// Merging a run's LoRA into the base model runs off the UI thread with a spinner and the
/// seconds on the status line, then says where the model went; the folder is a model.
#[test]
fn a_merge_shows_its_progress_then_where_the_model_went() {
    let runs = tempfile::tempdir().unwrap();
    let app = app_with_short_runs_in(Some(runs.path()), 4, 4, 4);
    let mut h = harness(app);
    h.run();
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the run to finish", |a| {
        a.store
            .runs
            .first()
            .is_some_and(|r| r.status == RunStatus::Finished)
    });
    // As a person does it where no system file dialog can open (this test has none): the
    // row's menu, Merge…, the path typed in the window's own prompt, Merge.
    h.run();
    h.get_by_label("…").click();
    h.run();
    h.get_by_label("Merge…").click();
    h.run();
    h.get_by_label("Write the merged model to");
    let proposed = h.state().path_prompt.as_ref().unwrap().path.clone();
    assert!(proposed.ends_with("-merged"), "{proposed}");
    // The system's dialog gives nothing here, and the prompt says so instead of vanishing.
    h.get_by_label("Browse…").click();
    h.run();
    h.get_by_label_contains("Type the path above");
    let to = runs.path().join("merged");
    h.state_mut().path_prompt.as_mut().unwrap().path = to.display().to_string();
    h.get_by_label("Merge").click();
    h.step();
    wait_for(&mut h, "the merge", |a| a.merging_since().is_none());
    h.run();
    h.get_by_label_contains("merged 12 projections; model written to");
    assert!(to.join("model.safetensors").is_file());
    assert!(to.join("config.json").is_file());
}

/// A past run's menu writes it as a PyTorch recipe, in the background while the window
/// goes on.
#[test]
fn a_run_leaves_as_a_pytorch_recipe_from_its_menu() {
    let runs = tempfile::tempdir().unwrap();
    let small = ["steps=4", "eval_every=4", "eval_examples=4"];
    past_run(runs.path(), "lora", 1, &small);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("…").click();
    h.run();
    h.get_by_label("Export as PyTorch recipe…").click();
    h.run();
    h.get_by_label("Write the PyTorch recipe (a new folder) to");
    let proposed = h.state().path_prompt.as_ref().unwrap().path.clone();
    assert!(proposed.ends_with("-recipe"), "{proposed}");
    let to = runs.path().join("recipe");
    h.state_mut().path_prompt.as_mut().unwrap().path = to.display().to_string();
    h.get_by_label("Write").click();
    h.step();
    let written = to.join("recipe.json");
    wait_for(&mut h, "the recipe", move |_| written.is_file());
    for _ in 0..50 {
        h.run();
        if h.query_by_label_contains("PyTorch recipe written to")
            .is_some()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    h.get_by_label_contains("a 4-step PyTorch recipe written to");
    assert!(to.join("init_adapter/adapter_model.safetensors").is_file());
    assert!(to.join("launch.sh").is_file());
    assert!(to.join("accelerate/zero3.yaml").is_file());

    // The same run for LLaMA-Factory, from the same menu.
    h.get_by_label("…").click();
    h.run();
    h.get_by_label("Export as LLaMA-Factory recipe…").click();
    h.run();
    h.get_by_label("Write the LLaMA-Factory recipe (a new folder) to");
    let proposed = h.state().path_prompt.as_ref().unwrap().path.clone();
    assert!(proposed.ends_with("-llamafactory"), "{proposed}");
    let to = runs.path().join("factory");
    h.state_mut().path_prompt.as_mut().unwrap().path = to.display().to_string();
    h.get_by_label("Write").click();
    h.step();
    let written = to.join("data/dataset_info.json");
    wait_for(&mut h, "the LLaMA-Factory recipe", move |_| {
        written.is_file()
    });
    for _ in 0..50 {
        h.run();
        if h.query_by_label_contains("LLaMA-Factory recipe written to")
            .is_some()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    h.get_by_label_contains("a 4-step LLaMA-Factory recipe written to");
    let yaml = std::fs::read_to_string(to.join("train.yaml")).unwrap();
    assert!(
        yaml.contains("finetuning_type: lora") && yaml.contains("max_steps: 4"),
        "{yaml}"
    );
}

/// A method LLaMA-Factory lacks cannot leave for it: the menu item is disabled (its hover
/// says why), while the PyTorch recipe stays open to it.
#[test]
fn a_method_llama_factory_lacks_has_its_export_disabled() {
    let runs = tempfile::tempdir().unwrap();
    past_run(
        runs.path(),
        "ia3",
        1,
        &["steps=2", "eval_every=2", "eval_examples=4"],
    );
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("…").click();
    h.run();
    let disabled = |h: &Harness<'_, WorkbenchApp>, label: &str| {
        h.get_by_label(label).accesskit_node().is_disabled()
    };
    assert!(disabled(&h, "Export as LLaMA-Factory recipe…"));
    assert!(!disabled(&h, "Export as PyTorch recipe…"));
}

/// A bottleneck-adapter run on a BERT classifier can leave for neither engine (LLaMA-Factory
/// trains decoders; AdapterHub's BERT adapters are not ours), and its menu says so before
/// a job would fail.
#[test]
fn a_classifier_run_has_the_exports_it_cannot_take_disabled() {
    let minilm = minilm_dir();
    let runs = tempfile::tempdir().unwrap();
    let model = format!("model={}", minilm.display());
    past_run(
        runs.path(),
        "adapter",
        1,
        &[
            &model,
            "dataset=builtin:sentiment-labels",
            "max_seq_len=32",
            "steps=1",
            "eval_every=1",
            "eval_examples=4",
        ],
    );
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("…").click();
    h.run();
    for label in [
        "Export as LLaMA-Factory recipe…",
        "Export as PyTorch recipe…",
    ] {
        assert!(
            h.get_by_label(label).accesskit_node().is_disabled(),
            "{label} is offered"
        );
    }
    // The reason, on hover, in the window's language.
    h.state_mut().lang = peft_workbench::app::i18n::Lang::Zh;
    h.run();
    h.get_by_label("导出为 LLaMA-Factory 训练配方…").hover();
    h.run();
    h.get_by_label_contains("而此模型是编码器分类模型");
}

/// An import that cannot be done says why as an import (not as an export), and the status
/// line's spinner and Stop go away.
#[test]
fn a_failed_import_says_why() {
    let runs = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("Import run…").click();
    h.run();
    h.state_mut().path_prompt.as_mut().unwrap().path = empty.path().display().to_string();
    h.get_by_label("Import").click();
    h.step();
    wait_for(&mut h, "the import to end", |a| a.long_job().is_none());
    h.run();
    h.get_by_label_contains("import failed: ");
    assert!(h.state().store.runs.is_empty());
    assert_eq!(std::fs::read_dir(runs.path()).unwrap().count(), 0);
}

/// "Import run…" brings a transformers Trainer folder into the table beside a run trained
/// here; its curves overlay, and what its log does not say is blank, never "NaN" or 0.
#[test]
fn an_imported_trainer_run_joins_the_table_and_the_plots() {
    let runs = tempfile::tempdir().unwrap();
    let small = ["steps=4", "eval_every=4", "eval_examples=4"];
    let ours = past_run(runs.path(), "lora", 1, &small);
    let outside = tempfile::tempdir().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(ours.join("adapter").join(f), outside.path().join(f)).unwrap();
    }
    let history: Vec<serde_json::Value> = (1..=4)
        .map(|s| serde_json::json!({"step": s, "loss": 9.0 - s as f64, "learning_rate": 3e-3}))
        .chain([serde_json::json!({"step": 4, "eval_loss": 7.5})])
        .collect();
    std::fs::write(
        outside.path().join("trainer_state.json"),
        serde_json::json!({"log_history": history, "train_batch_size": 8}).to_string(),
    )
    .unwrap();
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label("Import run…").click();
    h.run();
    h.get_by_label("Output folder of the run to import");
    h.state_mut().path_prompt.as_mut().unwrap().path = outside.path().display().to_string();
    h.get_by_label("Import").click();
    h.step();
    wait_for(&mut h, "the imported run", |a| a.store.runs.len() == 2);
    h.run();
    h.get_by_label_contains("imported a run of 4 logged steps into");
    for r in &mut h.state_mut().store.runs {
        r.shown = true;
    }
    h.run();
    let imported = h
        .state()
        .store
        .runs
        .iter()
        .find(|r| {
            r.out_dir
                .as_deref()
                .is_some_and(|d| d.contains("-imported-"))
        })
        .expect("the imported run is listed");
    assert_eq!(imported.train_loss.len(), 4, "its curve is read");
    assert!(h.query_by_label_contains("NaN").is_none());
    save_snapshot(&mut h, "imported_run");

    // A recipe's output (recipe.json beside it names the run's data) comes with its task
    // metric, measured here, and joins the trade-off view beside the run trained here; the
    // Trainer's run, whose metric nobody knows, does not.
    let recipe = tempfile::tempdir().unwrap();
    let output = recipe.path().join("output");
    std::fs::create_dir(&output).unwrap();
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
    ] {
        std::fs::copy(outside.path().join(f), output.join(f)).unwrap();
    }
    let cfg = peft_workbench::config::RunConfig::load(&ours.join("config.toml"), &[]).unwrap();
    std::fs::write(
        recipe.path().join("recipe.json"),
        serde_json::json!({ "config": cfg }).to_string(),
    )
    .unwrap();
    h.get_by_label("Import run…").click();
    h.run();
    h.state_mut().path_prompt.as_mut().unwrap().path = output.display().to_string();
    h.get_by_label("Import").click();
    h.step();
    wait_for(&mut h, "the imported recipe run", |a| {
        a.store.runs.len() == 3
    });
    h.run();
    h.get_by_label_contains("measured here on the run's evaluation examples");
    for r in &mut h.state_mut().store.runs {
        r.shown = true;
    }
    h.run();
    let placed = peft_workbench::app::pareto::placed(&h.state().store.runs);
    let placed: Vec<&str> = placed
        .iter()
        .filter_map(|(r, _)| r.out_dir.as_deref())
        .collect();
    assert_eq!(placed.len(), 2, "{placed:?}");
    assert!(
        placed.iter().any(|d| d.contains("-imported-output")),
        "{placed:?}"
    );
}

/// With a BERT or GPT-2 model chosen, the side panel's model card and each Learn page say
/// what the model is and how the LLaMA diagram maps onto it, in both languages.
#[test]
fn other_families_are_described_in_both_languages() {
    let gpt2 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2");
    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.model = gpt2.display().to_string();
    let mut h = harness_sized(app, 900.0);
    h.run();
    h.get_by_label_contains("GPT-2 decoder");
    h.get_by_label("Learn").click();
    h.run();
    h.get_by_label_contains("fused c_attn projection");
    h.get_by_label("简体中文").click();
    h.run();
    for m in peft_workbench::peft::MethodConfig::all_defaults() {
        let name = peft_workbench::app::i18n::zh(m.display_name()).unwrap_or(m.display_name());
        h.get_by_label(name).click();
        h.run();
    }
    h.get_by_label_contains("融合的 c_attn 投影");
    save_snapshot(&mut h, "learn_gpt2_zh");
}

/// At 1024×700 with the playground open, the runs table is below the window: the central
/// area scrolls to it, and its result columns are in view once there, in both languages.
#[test]
fn the_runs_table_is_reached_in_a_small_window() {
    let runs = one_tiny_past_run("lora");
    for lang in [
        peft_workbench::app::i18n::Lang::En,
        peft_workbench::app::i18n::Lang::Zh,
    ] {
        let mut app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
        app.lang = lang;
        let mut h = Harness::builder()
            .with_size([1024.0, 700.0])
            .wgpu()
            .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app);
        h.run();
        let playground = if lang == peft_workbench::app::i18n::Lang::En {
            "Playground"
        } else {
            "试验场"
        };
        h.get_by_label(playground).click();
        h.run();
        // The playground asks the form's task its own question: an eval review, `Label:`.
        let prompt = h.state().playground.prompt.clone();
        let first_eval = peft_workbench::app::playground::task_prompt("builtin:reviews-zh", None)
            .map(|(p, _)| p);
        assert_eq!(Some(&prompt), first_eval.as_ref());
        assert!(
            prompt.ends_with("\nLabel:") && !prompt.is_ascii(),
            "{prompt}"
        );
        let metric = if lang == peft_workbench::app::i18n::Lang::En {
            "Metric"
        } else {
            "指标"
        };
        let window = eframe::egui::Rect::from_min_size(
            eframe::egui::Pos2::ZERO,
            eframe::egui::vec2(1024.0, 700.0),
        );
        h.get_by_label(metric).scroll_to_me();
        h.run();
        let at = h.get_by_label(metric).rect();
        assert!(window.contains_rect(at), "{lang:?}: Metric at {at:?}");
        // The run's name is in the plots' legend too; its table row sits below the header.
        let row = h
            .get_all_by_label("#1 lora r8 α16 lr 3e-3")
            .map(|n| n.rect())
            .find(|r| r.top() > at.top())
            .expect("the run's row under the table's header");
        assert!(
            window.contains_rect(row),
            "{lang:?}: the run's row at {row:?}"
        );
        h.render()
            .expect("render")
            .save(snapshot_path(&format!("small_window_table_{lang:?}")))
            .unwrap();
    }
}

/// Every panel of the 简体中文 window, walked: no text on screen is an English string the
/// translation table has a Chinese version of (one that was drawn without `tr`).
#[test]
fn the_chinese_window_shows_no_untranslated_string() {
    use peft_workbench::app::View;
    use peft_workbench::app::i18n::{Lang, ZH};
    let runs = one_tiny_past_run("adalora");
    let mut app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    app.lang = Lang::Zh;
    // Its settings rows show only when it is on.
    app.form.early_stopping = Some(peft_workbench::config::EarlyStopping {
        patience: 3,
        min_delta: 0.0,
        monitor: peft_workbench::config::Monitor::EvalLoss,
    });
    let mut h = harness_sized(app, 1600.0);
    h.run();
    let english: std::collections::HashSet<&str> = ZH
        .iter()
        .filter(|(en, zh)| en != zh)
        .map(|(en, _)| *en)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut look = |h: &Harness<'static, WorkbenchApp>, place: &str| {
        for n in h.query_all_by(|_| true) {
            // A plain label keeps its text in AccessKit's value; other widgets in label.
            let node = n.accesskit_node();
            let label = if node.role() == eframe::egui::accesskit::Role::Label {
                node.value()
            } else {
                node.label()
            };
            let Some(label) = label else { continue };
            // A text with Chinese in it was translated (its Latin words are names such as
            // PEFT or scripts/build-cuda.sh); a citation keeps its paper's title.
            if label.chars().any(|c| c >= '\u{2E80}') || label.contains("arXiv:") {
                continue;
            }
            // Method names stay as the survey writes them; egui names its panel's handle.
            let identifier = ["Prompt Tuning", "Prefix Tuning", "Resize panel"]
                .contains(&label.as_str())
                || peft_workbench::data::BUILTIN_TASKS.contains(&label.as_str());
            if english.contains(label.as_str()) || (english_words(&label) && !identifier) {
                seen.insert(format!("{place}: {label}"));
            }
        }
    };
    h.get_by_label("试验场").click();
    h.run();
    h.get_by_label("权衡：指标与代价").click();
    h.run();
    look(&h, "train");
    for m in peft_workbench::peft::MethodConfig::all_defaults() {
        h.state_mut().form.method = m;
        h.run();
        look(&h, "train");
    }
    h.state_mut().view = View::Learn;
    h.run();
    for m in peft_workbench::peft::MethodConfig::all_defaults() {
        h.state_mut().learn_page = m.kind().to_string();
        h.run();
        look(&h, m.kind());
    }
    assert!(seen.is_empty(), "English in the Chinese window:\n{seen:#?}");
}

/// Whether a text has two English words in a row (letters only, three or more each): a
/// phrase, not an identifier like `q_proj`, `LoRA r8` or `lr 1e-2`.
fn english_words(text: &str) -> bool {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || ",.;:()[]·/-".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).any(|w| {
        w.iter()
            .all(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic()))
    })
}

/// A folder and everything in it, copied.
fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_folder(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Months of comparisons: 300 past runs in 25 experiments (copies of two real finished
/// runs). The window opens on the newest experiment's runs, reads no other run's curves,
/// lists fifty rows and says how many more; the search and an experiment narrow the
/// list, and "Plot only these" puts another experiment on the plots.
#[test]
fn hundreds_of_past_runs_open_on_their_latest_experiment() {
    use eframe::egui::accesskit::Role;
    let runs = tempfile::tempdir().unwrap();
    let tiny = ["steps=20", "eval_every=10", "eval_examples=4"];
    let real = [
        past_run(runs.path(), "lora", 1, &tiny),
        past_run(runs.path(), "ia3", 2, &tiny),
    ];
    for e in 0..25 {
        for i in 0..12 {
            let to = runs.path().join(format!("2000-{e:02}-{i:02}"));
            copy_folder(&real[i % 2], &to);
            let mut cfg =
                peft_workbench::config::RunConfig::load(&to.join("config.toml"), &[]).unwrap();
            cfg.experiment = Some(format!("comparison {e:02}"));
            std::fs::write(to.join("config.toml"), cfg.to_toml()).unwrap();
        }
    }
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    assert_eq!(app.store.runs.len(), 302);
    let mut h = harness_sized(app, 1000.0);
    h.run();
    h.get_by_label("12 runs on the plots");
    let shown: Vec<_> = h.state().store.runs.iter().filter(|r| r.shown).collect();
    assert!(shown.iter().all(|r| r.experiment() == "comparison 24"));
    assert!(
        shown.iter().all(|r| !r.train_loss.is_empty()),
        "curves read"
    );
    let in_memory = h
        .state()
        .store
        .runs
        .iter()
        .filter(|r| r.curves_loaded)
        .count();
    assert_eq!(in_memory, 12, "no other run's curves are read");
    h.get_by_label_contains("and 252 more");
    save_snapshot(&mut h, "many_runs");

    // 151 IA3 runs match the search: fifty rows and the rest counted.
    h.get_by_label("Search").click();
    h.run();
    h.get_by_label("Search").type_text("ia3");
    h.run();
    h.get_by_label_contains("and 101 more");
    for _ in 0..3 {
        h.key_press(eframe::egui::Key::Backspace);
        h.run();
    }
    assert!(h.state().runs_filter.search.is_empty());

    h.get_by_label("In experiment").click();
    h.run();
    h.get_by_label("comparison 20 (12)").click();
    h.run();
    assert_eq!(
        h.state().runs_filter.experiment.as_deref(),
        Some("comparison 20")
    );
    h.run();
    assert!(
        h.query_by_label_contains("more: narrow").is_none(),
        "12 rows"
    );
    h.get_by_label("Plot only these").click();
    h.run();
    h.get_by_label("12 runs on the plots");
    let shown: Vec<_> = h.state().store.runs.iter().filter(|r| r.shown).collect();
    assert!(shown.iter().all(|r| r.experiment() == "comparison 20"));
    // One row's tick takes its run off the plots.
    h.get_all_by_role(Role::CheckBox)
        .find(|n| {
            n.accesskit_node()
                .label()
                .is_some_and(|l| l.starts_with("Plot #"))
        })
        .expect("a row's Plot tick")
        .click();
    h.run();
    h.get_by_label("11 runs on the plots");
    save_snapshot(&mut h, "many_runs_experiment");
}

/// The settings panel keeps its width (300 points by default) whatever its rows hold: they
/// wrap, so the panel can be narrowed and never pushes the curves aside.
#[test]
fn the_side_panel_keeps_its_width_and_its_rows_wrap() {
    for lang in [
        peft_workbench::app::i18n::Lang::En,
        peft_workbench::app::i18n::Lang::Zh,
    ] {
        let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
        app.lang = lang;
        let mut h = harness(app);
        h.run();
        h.run();
        let open_gguf = match lang {
            peft_workbench::app::i18n::Lang::En => "Open GGUF…",
            peft_workbench::app::i18n::Lang::Zh => {
                peft_workbench::app::i18n::zh("Open GGUF…").unwrap()
            }
        };
        let right = h.get_by_label(open_gguf).rect().right();
        assert!(right <= 320.0, "{lang:?}: the panel reaches x = {right}");
        save_snapshot(&mut h, &format!("side_panel_{lang:?}"));
    }
}

/// The Data view for an Alpaca file on the built-in model (the plain template, said in the
/// warning colour) and a ShareGPT file on SmolLM2 (its own chat template, `<|im_start|>`
/// visible): counts, lengths against the cut, and the examples as tokenised, in both
/// languages.
#[test]
fn the_data_view_shows_an_alpaca_and_a_sharegpt_file_as_the_model_sees_them() {
    use peft_workbench::app::data_view::DataState;
    use peft_workbench::app::i18n::Lang;
    let dir = tempfile::tempdir().unwrap();
    let alpaca = dir.path().join("alpaca_zh.json");
    let rows: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            serde_json::json!({
                "instruction": format!("第 {i} 家酒店怎么样？"),
                "input": if i % 2 == 0 { "房间干净，服务热情。" } else { "" },
                "output": "好评：值得推荐。".repeat(1 + i % 4),
            })
        })
        .collect();
    std::fs::write(&alpaca, serde_json::to_string(&rows).unwrap()).unwrap();
    let sharegpt = dir.path().join("sharegpt.jsonl");
    let line = |q: &str, a: &str| {
        serde_json::json!({"conversations": [
            {"from": "human", "value": q}, {"from": "gpt", "value": a}
        ]})
        .to_string()
            + "\n"
    };
    std::fs::write(
        &sharegpt,
        (0..10)
            .map(|i| {
                line(
                    &format!("Is film {i} good?"),
                    "Yes, a warm and clever film.",
                )
            })
            .collect::<String>(),
    )
    .unwrap();

    let mut app = WorkbenchApp::new(Arc::new(|| {}), None);
    app.form.dataset = alpaca.display().to_string();
    app.form.max_seq_len = 34;
    let mut h = harness(app);
    h.run();
    h.get_by_label("Preview data…").click();
    h.step();
    wait_for(&mut h, "the Alpaca summary", |a| {
        !matches!(a.data_view.state, DataState::Loading | DataState::Empty)
    });
    h.run();
    let DataState::Ready(s) = &h.state().data_view.state else {
        panic!("{:?}", h.state().data_view.state)
    };
    assert_eq!(s.train + s.eval, 12);
    assert!(s.plain_template);
    assert!(s.cut > 0, "the longest answers pass 34 tokens");
    h.get_by_label_contains("conversations rendered with the plain template");
    h.get_by_label_contains("cut to max_seq_len 34");
    h.get_by_label("example 1");
    assert_eq!(h.query_all_by_label_contains("家酒店怎么样").count(), 3);
    save_snapshot(&mut h, "data_view_alpaca");
    h.state_mut().lang = Lang::Zh;
    h.run();
    h.get_by_label_contains("对话按朴素模板（该模型没有聊天模板）渲染");
    h.get_by_label("样本 1");
    save_snapshot(&mut h, "data_view_alpaca_zh");

    // The form changes: the view asks again, for SmolLM2's template.
    let smol = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        smol.exists(),
        "{} is missing: run `bash scripts/fetch-models.sh` first",
        smol.display()
    );
    h.state_mut().lang = Lang::En;
    h.state_mut().form.model = smol.display().to_string();
    h.state_mut().form.dataset = sharegpt.display().to_string();
    h.state_mut().form.max_seq_len = 256;
    h.step();
    wait_for(
        &mut h,
        "the ShareGPT summary",
        |a| matches!(&a.data_view.state, DataState::Ready(s) if s.dataset.ends_with("sharegpt.jsonl")),
    );
    h.run();
    let DataState::Ready(s) = &h.state().data_view.state else {
        unreachable!()
    };
    assert!(!s.plain_template);
    assert_eq!((s.cut, s.dropped), (0, 0));
    // The question is not learned, the answer and its end-of-turn token are.
    let first = &s.first[0];
    assert!(
        first
            .iter()
            .any(|(t, learned)| !learned && t.contains("<|im_start|>user"))
    );
    assert!(
        first
            .iter()
            .any(|(t, learned)| *learned && t.contains("warm and clever"))
    );
    h.get_by_label_contains("conversations rendered with the model's chat template");
    assert!(
        h.query_all_by_label_contains("<|im_start|>assistant")
            .count()
            >= 1
    );
    save_snapshot(&mut h, "data_view_sharegpt");
}

/// A run with early stopping: its best evaluation is marked and listed while it trains,
/// "Stop and keep best" ends it as finished with `best/` in its folder, and the table's
/// Best column and the row menu's "Export best" follow.
#[test]
fn stop_and_keep_best_ends_a_run_with_its_best_kept() {
    let runs = tempfile::tempdir().unwrap();
    let mut app = app_with_short_runs_in(Some(runs.path()), 2000, 2, 16);
    app.form.early_stopping = Some(peft_workbench::config::EarlyStopping {
        patience: 1000,
        min_delta: 0.0,
        monitor: peft_workbench::config::Monitor::EvalLoss,
    });
    let mut h = harness(app);
    h.run();
    assert!(
        h.query_by_label("Stop and keep best").is_none(),
        "no run yet"
    );
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "a live update map", |a| {
        a.store.runs.first().is_some_and(|r| r.live_map.is_some())
    });
    wait_for(&mut h, "a best evaluation past step 4", |a| {
        a.store
            .runs
            .first()
            .and_then(|r| r.best_step)
            .is_some_and(|s| s >= 4)
    });
    h.step();
    h.get_by_label("Stop and keep best").click();
    h.step();
    wait_for(&mut h, "the run to end", |a| {
        a.store.runs[0].status == RunStatus::Finished
    });
    h.run();
    let r = &h.state().store.runs[0];
    let s = r.summary.as_ref().unwrap();
    assert_eq!(s.ended_early, Some(peft_workbench::train::EndedEarly::User));
    assert!(s.steps < 2000);
    let best = r.best_eval().expect("a best evaluation");
    let dir = std::path::PathBuf::from(r.out_dir.as_ref().unwrap());
    assert!(dir.join("best/adapter_model.safetensors").is_file());
    assert!(!r.resumable, "kept as finished, not resumable");
    h.get_by_label(&format!("{:.3} @ {}", best.metric, best.step));
    save_snapshot(&mut h, "stop_and_keep_best");
    h.get_by_label("…").click();
    h.run();
    h.get_by_label(&format!("Export best (step {})…", best.step));
    h.get_by_label("Export last…");
}

/// "Where the update went" for past runs: LoRA's map on q_proj/v_proj, IA3's on k_proj,
/// v_proj and down_proj, and a prompt's virtual tokens with their nearest tokens.
#[test]
fn the_update_map_draws_for_a_lora_and_an_ia3_run() {
    let runs = tempfile::tempdir().unwrap();
    let small = ["steps=4", "eval_every=4", "eval_examples=4"];
    past_run(runs.path(), "lora", 1, &small);
    past_run(runs.path(), "ia3", 2, &small);
    past_run(runs.path(), "prompt-tuning", 3, &small);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1100.0);
    h.run();
    h.get_by_label("Where the update went").click();
    h.run();
    let run = |h: &Harness<'static, WorkbenchApp>, kind: &str| {
        let r = h
            .state()
            .store
            .runs
            .iter()
            .find(|r| r.config.method.kind() == kind);
        let r = r.unwrap();
        (r.id, r.label.clone())
    };
    let ((lora_id, lora), (ia3_id, ia3)) = (run(&h, "lora"), run(&h, "ia3"));
    // As clicking the run's name in the table picks it out.
    h.state_mut().selected_run = Some(lora_id);
    h.run();
    h.get_by_label(&format!("{lora}: weight change |W' - W| / |W|"));
    save_snapshot(&mut h, "update_map_lora");
    h.state_mut().selected_run = Some(ia3_id);
    h.run();
    h.get_by_label(&format!("{ia3}: weight change |W' - W| / |W|"));
    save_snapshot(&mut h, "update_map_ia3");
    // A soft prompt: its virtual tokens on the input row, and what each reads as.
    let (pt_id, pt) = run(&h, "prompt-tuning");
    h.state_mut().selected_run = Some(pt_id);
    h.run();
    h.get_by_label_contains(&format!("{pt}: virtual token norm"));
    h.get_by_label("virtual token 0");
    h.get_by_label_contains("What the soft prompt says");
    save_snapshot(&mut h, "update_map_prompt_tuning");
}

/// The Learn page's diagram coloured by a past run's update map: LoRA's change on q and v
/// (and nothing else), an adapter run's on its two bottlenecks; "what the method trains"
/// brings back the plain diagram.
#[test]
fn the_learn_diagram_shows_a_runs_measured_change() {
    let runs = tempfile::tempdir().unwrap();
    let small = ["steps=4", "eval_every=4", "eval_examples=4"];
    past_run(runs.path(), "lora", 1, &small);
    past_run(runs.path(), "adapter", 2, &small);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1100.0);
    h.state_mut().view = peft_workbench::app::View::Learn;
    h.state_mut().learn_page = "lora".into();
    h.run();
    let lora = h
        .state()
        .store
        .runs
        .iter()
        .find(|r| r.config.method.kind() == "lora")
        .unwrap()
        .label
        .clone();
    h.get_by_value(&format!("the change measured in {lora}"));
    let line = h
        .get_by_label_contains("weight change |W' - W| / |W|, mean over layers: ")
        .accesskit_node()
        .value()
        .unwrap_or_default();
    let parts: Vec<&str> = line
        .rsplit(": ")
        .next()
        .unwrap()
        .split(" · ")
        .map(|p| p.split(' ').next().unwrap())
        .collect();
    assert_eq!(parts, ["q", "v"], "{line}");
    save_snapshot(&mut h, "learn_measured_lora");
    h.state_mut().learn_page = "adapter".into();
    h.run();
    h.get_by_label_contains(
        "adapter output RMS / residual stream RMS (eval batch), mean over layers: adapter after attention ",
    );
    h.get_by_label_contains(" · adapter after the MLP ");
    save_snapshot(&mut h, "learn_measured_adapter");
    h.get_by_label("简体中文").click();
    h.run();
    h.get_by_label_contains("适配器输出的均方根");
    save_snapshot(&mut h, "learn_measured_adapter_zh");
    h.get_by_label("English").click();
    h.run();
    h.state_mut().learn_diagram_run = peft_workbench::app::learn::DiagramRun::Off;
    h.run();
    assert!(h.query_by_label_contains("mean over layers").is_none());
    h.get_by_value("what the method trains");
}

/// Two past runs that differ in their rate and seed: with both on the plots, "How the
/// plotted runs differ" lists exactly those keys (and all of them on request), and their
/// results with the second's difference from the first.
#[test]
fn two_plotted_runs_show_how_they_differ() {
    let runs = tempfile::tempdir().unwrap();
    let small = ["steps=4", "eval_every=4", "eval_examples=4"];
    past_run(runs.path(), "lora", 1, &small);
    let mut other = small.to_vec();
    other.extend(["optimizer.lr=1e-2", "seed=5"]);
    past_run(runs.path(), "lora", 2, &other);
    let app = WorkbenchApp::new(Arc::new(|| {}), Some(runs.path().to_path_buf()));
    let mut h = harness_sized(app, 1100.0);
    h.run();
    for r in &mut h.state_mut().store.runs {
        r.shown = true;
    }
    h.get_by_label("How the plotted runs differ").click();
    h.run();
    h.get_by_label("optimizer.lr");
    h.get_by_label("seed");
    assert!(
        h.query_by_label("batch_size").is_none(),
        "equal keys are left out"
    );
    h.get_by_label("metric (last)");
    save_snapshot(&mut h, "run_diff");
    h.get_by_label("all keys, not only those that differ")
        .click();
    h.run();
    h.get_by_label("batch_size");
}
