//! Remote machines through a real OpenSSH server: each test starts its own `sshd` on
//! 127.0.0.1 with a temporary host key and an authorised test key, the "remote" being this
//! machine under temporary folders. (`.ci/run` installs Debian's openssh-server.)

mod sshd;

use sshd::Sshd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An unknown host is not connected to but asked about (its fingerprint shown); once
/// trusted, Test connection tells the system and the workbench there. A changed host key is
/// refused, saying so; a key the server does not accept is an authentication error.
#[test]
fn host_keys_are_checked_and_failures_explained() {
    let sshd = Sshd::start();
    let runs = sshd.path("remote runs");
    sshd.add("loop", "client_key", &runs);
    let o = sshd.cli(&["remote", "list"]);
    assert!(text(&o).starts_with("loop\tssh -p"), "{}", text(&o));

    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a known host yet") && text(&o).contains("remote trust loop"),
        "{}",
        text(&o)
    );
    let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.path("host_key.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
    let sha = fingerprint.split_whitespace().nth(1).unwrap();
    assert!(
        text(&o).contains(sha),
        "the host key's fingerprint is shown: {}",
        text(&o)
    );

    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("loop: Linux"), "{said}");
    assert!(said.contains("free disk (home): "), "{said}");
    assert!(
        said.contains("(protocol 1)") && said.contains("devices: cpu"),
        "{said}"
    );

    // Trusting again over a known key is refused.
    let o = sshd.cli(&["remote", "trust", "loop", "--yes"]);
    assert!(
        !o.status.success() && text(&o).contains("already in"),
        "{}",
        text(&o)
    );

    // A key the server does not accept.
    sshd.add("stranger", "stranger_key", &runs);
    let o = sshd.cli(&["remote", "test", "stranger"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("authentication failed"), "{}", text(&o));

    // The server's key replaced: what known_hosts holds no longer matches.
    let other = sshd.path("other_host_key");
    sshd::keygen(&other);
    let known = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let old_key = std::fs::read_to_string(sshd.path("host_key.pub")).unwrap();
    let new_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let old = old_key.split_whitespace().nth(1).unwrap();
    let new = new_key.split_whitespace().nth(1).unwrap();
    std::fs::write(sshd.path("known_hosts"), known.replace(old, new)).unwrap();
    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("has changed"), "{}", text(&o));
}

/// A LoRA run trained through SSH streams its progress, ends, and comes home: the run's
/// folder there — in a runs folder named with spaces, quotes and `$(...)` — arrives here
/// checked, marked with its machine, its adapter bit for bit that of the same run trained
/// here. `remote runs` lists it; `remote pull` brings finished runs not here yet.
#[test]
fn a_run_trains_on_the_remote_and_comes_home_equal_to_the_local_one() {
    let (sshd, runs) = Sshd::with_loop_machine("remote runs 'q' $(touch pwned)");
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/lora.toml");
    // The user's own dataset, on this machine only, under a name a shell would misread.
    let data = sshd.local_dataset("my data 'x' $(touch pwned).jsonl");
    let dataset = format!("dataset={}", data.display());
    let settings = [
        "--steps",
        "6",
        "--set",
        "eval_every=3",
        "--set",
        "eval_examples=8",
        "--set",
        &dataset,
    ];
    let home = sshd.path("home/first run");
    let home_arg = home.display().to_string();
    let mut args = vec!["train", preset];
    args.extend(settings);
    args.extend(["--on", "loop", "--out", &home_arg]);
    let o = sshd.cli(&args);
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("connected to loop"), "{said}");
    assert!(said.contains("eval      6"), "live evaluations: {said}");
    assert!(said.contains("files came home into"), "{said}");
    assert!(!sshd.path("pwned").exists() && !Path::new("pwned").exists());
    let remote_runs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(remote_runs.len(), 1, "{remote_runs:?}");
    let config = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(config.contains("machine = \"loop\""), "{config}");
    // The dataset went there once, under its checksum, and the run read that copy.
    let uploads: Vec<PathBuf> = std::fs::read_dir(runs.join(".uploads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let copy = uploads[0].join(data.file_name().unwrap());
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&data).unwrap());
    // At home the run names the file here, as if it had started here.
    assert!(config.contains("my data"), "{config}");
    assert!(!config.contains(".uploads/"), "{config}");
    assert!(
        !home.join("checkpoint").exists(),
        "the checkpoint stays there"
    );

    let local = sshd.path("local");
    let mut args = vec!["train", preset];
    args.extend(settings);
    let local_out = local.display().to_string();
    args.extend(["--out", &local_out, "--quiet"]);
    let o = sshd.cli(&args);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        let a = std::fs::read(home.join("adapter").join(f)).unwrap();
        let b = std::fs::read(local.join("adapter").join(f)).unwrap();
        assert!(a == b, "{f} differs");
    }

    let o = sshd.cli(&["remote", "runs", "loop"]);
    let name = remote_runs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(text(&o).trim(), format!("{name}\tlora\tfinished"));
    let pulled = sshd.path("pulled");
    let pulled_arg = pulled.display().to_string();
    let o = sshd.cli(&["remote", "pull", "loop", "--runs-dir", &pulled_arg]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        pulled
            .join(&name)
            .join("adapter/adapter_model.safetensors")
            .is_file()
    );
    let o = sshd.cli(&["remote", "pull", "loop", "--runs-dir", &pulled_arg]);
    assert!(text(&o).contains("not here already"), "{}", text(&o));
    // A name that would leave the runs folder there is refused before anything runs.
    let o = sshd.cli(&["remote", "pull", "loop", "../x", "--runs-dir", &pulled_arg]);
    assert!(!o.status.success() && text(&o).contains("not the name of a run folder"));
}

/// A machine without the program: Test connection says so, a run is refused with what to
/// do; a binary of another protocol there is refused by name; `remote install` puts this
/// one there (checked by SHA-256), and then it answers and trains.
#[test]
fn a_machine_gets_the_program_installed() {
    let (sshd, _runs) = Sshd::with_loop_machine("runs");
    // Another version there: a program that says hello in protocol 999.
    let other = sshd.path("old-peft-workbench");
    std::fs::write(
        &other,
        "#!/bin/sh\necho '{\"protocol\":999,\"version\":\"9.9.9\",\"devices\":[\"cpu\"]}'\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&other)
        .status()
        .unwrap();
    let config = sshd.path("config/machines.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        toml.replace(sshd::bin(), &other.display().to_string()),
    )
    .unwrap();
    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(text(&o).contains("speaks protocol 999"), "{}", text(&o));
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/lora.toml");
    let o = sshd.cli(&["train", preset, "--steps", "2", "--on", "loop"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("protocol 999") && text(&o).contains("remote install loop"),
        "{}",
        text(&o)
    );
    // None at all.
    std::fs::remove_file(&other).unwrap();
    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(
        text(&o).contains("no peft-workbench answers"),
        "{}",
        text(&o)
    );
    let o = sshd.cli(&["train", preset, "--steps", "2", "--on", "loop"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("install it there"), "{}", text(&o));

    let into = sshd.path("remote bin");
    let into_arg = into.display().to_string();
    let version_dir = into.join(env!("CARGO_PKG_VERSION"));
    // An earlier install cut off after 1 000 bytes of a dataset: the rest is sent, not all
    // of it again (appended whole, the file would fail its checksum there).
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let reviews = assets.join("datasets/reviews-zh.train.jsonl");
    let part = version_dir.join("assets/datasets/reviews-zh.train.jsonl.partial");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, &std::fs::read(&reviews).unwrap()[..1000]).unwrap();
    let install = [
        "remote",
        "install",
        "loop",
        "--binary",
        sshd::bin(),
        "--into",
        &into_arg,
    ];
    let o = sshd.cli(&install);
    assert!(o.status.success(), "{}", text(&o));
    let installed = version_dir.join("peft-workbench");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(sshd::bin()).unwrap()
    );
    // The built-in model and datasets are beside it, where it looks for them first.
    for f in [
        "models/builtin/config.json",
        "models/builtin/model.safetensors",
        "models/builtin/tokenizer.json",
        "datasets/reviews-zh.train.jsonl",
        "datasets/sentiment.eval.jsonl",
    ] {
        assert!(
            std::fs::read(version_dir.join("assets").join(f)).unwrap()
                == std::fs::read(assets.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(!part.exists());
    // Installed again: nothing is sent again (the files keep their times).
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = modified(&installed);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = sshd.cli(&install);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(modified(&installed), before);
    let o = sshd.cli(&["remote", "test", "loop"]);
    assert!(text(&o).contains("(protocol 1)"), "{}", text(&o));
    let o = sshd.cli(&[
        "train",
        preset,
        "--steps",
        "2",
        "--set",
        "eval_examples=4",
        "--on",
        "loop",
        "--out",
        &sshd.path("home").display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// The connection dropped mid-run (the remote end of the session killed): the run goes on
/// there under its daemon; the CLI connects again, shows each step once, and the run comes
/// home whole.
#[test]
fn a_run_survives_a_dropped_connection() {
    let (sshd, runs) = Sshd::with_loop_machine("runs");
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/lora.toml");
    let home = sshd.path("home");
    let child = Command::new(sshd::bin())
        .arg("train")
        .args([
            preset,
            "--steps",
            "60",
            "--set",
            "eval_every=30",
            "--set",
            "eval_examples=8",
        ])
        .args(["--on", "loop", "--out"])
        .arg(&home)
        .env("PEFT_WORKBENCH_CONFIG", sshd.path("config"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once a few steps are written there, the session's remote end goes.
    let start = std::time::Instant::now();
    loop {
        let steps = std::fs::read_dir(&runs)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("metrics.jsonl")).ok())
            .map(|m| m.matches("\"type\":\"step\"").count())
            .max()
            .unwrap_or(0);
        if steps >= 5 {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("pkill")
        .arg("-f")
        .arg(format!("attach --runs-dir {}", runs.display()))
        .status()
        .unwrap();
    assert!(killed.success(), "the session's attach was there to kill");
    let o = child.wait_with_output().unwrap();
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("connecting again"), "{said}");
    assert_eq!(
        said.matches("eval     30").count(),
        1,
        "each evaluation shown once: {said}"
    );
    let metrics = std::fs::read_to_string(home.join("metrics.jsonl")).unwrap();
    for step in 1..=60 {
        assert_eq!(
            metrics
                .matches(&format!("\"step\":{step},\"tokens_per_second\""))
                .count(),
            1,
            "step {step} once in {metrics}"
        );
    }
}

/// `train --on --detach` returns as soon as the run has started there; the run trains on
/// under the daemon, `remote runs` lists it as not finished, `remote stop` ends it at its
/// next step (a checkpoint saved), and `remote pull` brings it home.
#[test]
fn a_detached_run_trains_on_and_is_stopped_by_name() {
    let (sshd, runs) = Sshd::with_loop_machine("runs");
    let preset = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/lora.toml");
    let o = sshd.cli(&[
        "train",
        preset,
        "--steps",
        "5000",
        "--set",
        "eval_examples=4",
        "--on",
        "loop",
        "--detach",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let name = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(text(&o).contains("remote stop loop"), "{}", text(&o));
    assert!(runs.join(&name).join("config.toml").is_file(), "{name}");
    let o = sshd.cli(&["remote", "runs", "loop"]);
    assert_eq!(text(&o).trim(), format!("{name}\tlora\tnot finished"));
    let o = sshd.cli(&["remote", "stop", "loop", "no-such-run"]);
    assert!(!o.status.success() && text(&o).contains("is not training on loop"));
    let o = sshd.cli(&["remote", "stop", "loop", &name]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("stopped on loop"), "{}", text(&o));
    assert!(runs.join(&name).join("checkpoint").is_dir());
    let o = sshd.cli(&["remote", "runs", "loop"]);
    assert_eq!(text(&o).trim(), format!("{name}\tlora\tfinished"));
    let pulled = sshd.path("pulled");
    let o = sshd.cli(&[
        "remote",
        "pull",
        "loop",
        &name,
        "--runs-dir",
        &pulled.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(pulled.join(&name).join("summary.json").is_file());
}
