//! The headless CLI as scripts use it.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_peft-workbench"))
}

fn preset(name: &str) -> String {
    format!("{}/presets/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn train_writes_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = bin()
        .args([
            "train",
            &preset("lora.toml"),
            "--steps",
            "4",
            "--set",
            "eval_examples=8",
            "--set",
            "method.rank=4",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A person reads a few lines: what trained, loss and metric, cost, where the adapter is.
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.starts_with("lora: ")
            && said.contains("parameters trained")
            && said.contains("eval loss "),
        "{said}"
    );
    assert!(
        said.contains(&format!("adapter: {}", out.join("adapter").display())),
        "{said}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "method",
        "trainable_params",
        "total_params",
        "steps",
        "initial_eval_loss",
        "final_train_loss",
        "final_eval_loss",
        "metric_name",
        "metric_value",
        "tokens_per_second",
        "peak_rss_bytes",
        "wall_seconds",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(summary["steps"], 4);
    assert_eq!(summary["method"], "lora");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("rank = 4"), "{config}");
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps = lines
        .lines()
        .filter(|l| l.contains("\"type\":\"step\""))
        .count();
    assert_eq!(steps, 4);
    // The saved config reproduces the run's description.
    let again = peft_workbench::config::RunConfig::load(&out.join("config.toml"), &[]).unwrap();
    assert_eq!(again.steps, 4);
}

#[test]
fn bad_input_fails_with_one_line_naming_it() {
    let cases: [(&[&str], &str); 4] = [
        (&["--set", "method.rnak=4"], "rnak"),
        (&["--set", "optimizer.lr=-1"], "optimizer.lr"),
        (&["--set", "model=/nonexistent/model"], "/nonexistent/model"),
        (
            &["--set", "dataset=/nonexistent.jsonl"],
            "/nonexistent.jsonl",
        ),
    ];
    for (args, needle) in cases {
        let o = bin()
            .arg("train")
            .arg(preset("lora.toml"))
            .args(args)
            .arg("--steps")
            .arg("1")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        let last = err.lines().last().unwrap_or("");
        assert!(
            last.starts_with("error:") && last.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn unknown_target_modules_are_listed_against_the_real_names() {
    let o = bin()
        .args([
            "train",
            &preset("lora.toml"),
            "--steps",
            "1",
            "--set",
            "method.target_modules=[\"query\"]",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("query") && err.contains("q_proj"), "{err}");
}

#[test]
fn a_run_too_large_for_the_memory_is_refused_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    // A million examples a step: the activations alone are terabytes on any model.
    let o = bin()
        .args([
            "train",
            &preset("full.toml"),
            "--set",
            "batch_size=1000000",
            "--set",
            "max_seq_len=4096",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("GB of memory") && err.contains("available"),
        "{err}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "nothing is written for a refused run"
    );
}

#[test]
fn bench_prints_one_json_object() {
    let o = bin()
        .args([
            "bench",
            "--method",
            "prefix-tuning",
            "--batch",
            "2",
            "--seq",
            "8",
            "--steps",
            "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in [
        "tokens_per_second",
        "ms_per_step",
        "peak_rss_bytes",
        "trainable_params",
        "useful_flops_per_token",
        "useful_gflops",
        "matmul_gflops",
        "useful_fraction",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {v}");
    }
    assert_eq!(v["trainable_params"], 215_936);
    let o = bin().args(["bench", "--method", "nope"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown method `nope`"));
}

#[test]
fn compare_runs_each_method_and_writes_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cmp.toml");
    std::fs::write(
        &file,
        "methods = [\"lora\", \"prompt-tuning\", \"nope-not-run\"]\n[run]\nsteps = 3\neval_every = 3\neval_examples = 8\n[run.method]\nkind = \"full\"\n",
    )
    .unwrap();
    let o = bin()
        .args(["compare"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "an unknown method is refused before anything runs"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope-not-run"));
    std::fs::write(
        &file,
        "methods = [\"lora\", \"prompt-tuning\"]\n[run]\nsteps = 3\neval_every = 3\neval_examples = 8\n[run.method]\nkind = \"full\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .args(["compare"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("comparison.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("run,method,learning_rate,steps,trainable_params"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",prompt-tuning,0.03,3,2560,")),
        "{csv}"
    );
    let md = std::fs::read_to_string(out.join("comparison.md")).unwrap();
    assert!(md.contains("| lora r") && md.contains("| prompt n"), "{md}");
    // Each run kept its own folder and its conventional learning rate.
    let lora = peft_workbench::config::RunConfig::load(&out.join("lora/config.toml"), &[]).unwrap();
    assert_eq!(lora.optimizer.lr, 3e-3);
    // The comparison's runs are one experiment, named as its folder.
    assert_eq!(lora.experiment.as_deref(), Some("out"));
}

/// `bench --generate` decodes with the cache and reports the figures the comparison script
/// reads; nonsense is refused with one line.
#[test]
fn bench_generate_reports_decode_speed() {
    let o = bin()
        .args([
            "bench",
            "--preset",
            &preset("lora.toml"),
            "--generate",
            "6",
            "--prompt",
            "5",
            "--steps",
            "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["new_tokens"], 6);
    assert_eq!(r["prompt_tokens"], 5);
    assert_eq!(r["method"], "lora");
    assert!(r["decode_tokens_per_second"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["prefill_ms"].as_f64().unwrap() > 0.0, "{r}");
    let o = bin().args(["bench", "--generate", "1"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 2 new tokens"));
}

/// The window's launch options are checked before a window opens.
#[test]
fn gui_options_are_checked_before_the_window_opens() {
    let o = bin()
        .args(["gui", "--start", "/nonexistent/preset.toml"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error:") && err.contains("preset.toml"),
        "{err}"
    );
    let o = bin().args(["gui", "--exit-after=-3"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--exit-after -3"));
}

/// A finished run is never written over: a second `train --out` on its folder is refused
/// and changes nothing; `--overwrite` replaces it whole, leaving nothing aside.
#[test]
fn a_second_run_into_a_run_folder_is_refused_unless_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let train = |preset_name: &str, extra: &[&str]| {
        bin()
            .args(["train", &preset(preset_name), "--steps", "3"])
            .args(["--set", "eval_examples=8", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let summary = || std::fs::read_to_string(out.join("summary.json")).unwrap();
    let o = train("lora.toml", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = summary();
    let o = train("ia3.toml", &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already holds a run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(summary(), first, "the refused run changed nothing");
    let o = train("ia3.toml", &["--overwrite", "--json", "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(summary().contains("\"ia3\""), "{}", summary());
    // --json prints summary.json itself; --quiet leaves stderr empty.
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&summary()).unwrap();
    assert_eq!(printed, saved);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "the old run is gone once the new one is whole"
    );

    // An export or a merged model never lands on a folder that holds something, unless
    // asked: the run folder itself is refused, naming what is in it.
    for (cmd, args) in [
        ("export", vec![out.to_str().unwrap()]),
        (
            "merge",
            vec!["--adapter", out.join("adapter").to_str().unwrap()],
        ),
    ] {
        let o = bin()
            .arg(cmd)
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("already holds files (adapter,") && err.contains("--overwrite"),
            "{cmd}: {err}"
        );
        assert!(summary().contains("\"ia3\""), "{cmd} changed nothing");
    }
    let exported = dir.path().join("exported");
    for extra in [&[][..], &["--overwrite"][..]] {
        let o = bin()
            .arg("export")
            .arg(&out)
            .arg("--out")
            .arg(&exported)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(exported.join("adapter_config.json").is_file());
}

/// Two processes started together on one run folder: one trains, the other is refused,
/// and the folder holds one run's files only.
#[test]
fn two_runs_into_one_folder_at_once_leave_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let spawn = |preset_name: &str| {
        bin()
            .args(["train", &preset(preset_name), "--steps", "6"])
            .args(["--set", "eval_examples=8", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("lora.toml"), spawn("ia3.toml"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() != b.status.success(),
        "exactly one trains: {} / {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let (won, lost) = if a.status.success() {
        ("lora", &b)
    } else {
        ("ia3", &a)
    };
    let err = String::from_utf8_lossy(&lost.stderr);
    assert!(
        err.contains("is being written by process") || err.contains("already holds a run"),
        "{err}"
    );
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(config.contains(&format!("kind = \"{won}\"")), "{config}");
    assert!(
        summary.contains(&format!("\"method\": \"{won}\"")),
        "{summary}"
    );
    assert!(!out.join(".lock").exists(), "the lock goes with its run");
}

#[test]
fn pretraining_continues_from_a_model_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    // A small bilingual corpus: 400 lines of a few sentences, English and Chinese.
    let corpus = dir.path().join("corpus.txt");
    let lines: Vec<String> = (0..400)
        .map(|i| match i % 3 {
            0 => format!(
                "and the {} went unto the city number {}",
                ["king", "man", "people"][(i / 3) % 3],
                i % 17
            ),
            1 => format!("这本书很好看，第{}章写得不错", i % 23),
            _ => format!("质量太差了，用了{}天就坏了", i % 19),
        })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let pretrain = |out: &std::path::Path, extra: &[&str]| {
        bin()
            .args(["pretrain", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(out)
            .args([
                "--vocab",
                "300",
                "--hidden",
                "16",
                "--layers",
                "1",
                "--heads",
                "2",
                "--kv-heads",
                "1",
                "--intermediate",
                "32",
                "--steps",
                "6",
                "--batch",
                "4",
                "--chunk-chars",
                "120",
                "--warmup",
                "2",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let first = dir.path().join("first");
    let o = pretrain(&first, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = dir.path().join("second");
    let o = pretrain(&second, &["--from", first.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let summary = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let a = summary(first.join("pretrain_summary.json"));
    let b = summary(second.join("pretrain_summary.json"));
    // The second stage starts from the first one's weights on the same held-out chunks.
    let (end, start) = (
        a["final_eval_loss"].as_f64().unwrap(),
        b["initial_eval_loss"].as_f64().unwrap(),
    );
    assert!(
        (end - start).abs() < 1e-4,
        "first ended at {end}, second began at {start}"
    );
    assert_eq!(
        std::fs::read(first.join("tokenizer.json")).unwrap(),
        std::fs::read(second.join("tokenizer.json")).unwrap()
    );
    assert_eq!(summary(second.join("earlier/pretrain_summary.json")), a);

    let o = pretrain(&first, &["--from", first.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("same folder"), "{err}");
}

/// The data people bring: an Alpaca JSON array (with `system` and `history`), ShareGPT
/// conversations and chat `messages` as JSONL each train a LoRA run; the metric is the
/// perplexity of the assistant's words, and a row with an unknown role is refused by row
/// and turn.
#[test]
fn alpaca_sharegpt_and_messages_files_train() {
    let dir = tempfile::tempdir().unwrap();
    let alpaca: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            serde_json::json!({
                "instruction": format!("把 {i} 加一"),
                "input": "",
                "output": format!("{}", i + 1),
                "system": "你是计算器",
                "history": [["1+1", "2"]],
            })
        })
        .collect();
    let sharegpt: String = (0..12)
        .map(|i| {
            serde_json::json!({"conversations": [
                {"from": "human", "value": format!("echo {i}")},
                {"from": "gpt", "value": format!("{i}")},
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let messages: String = (0..12)
        .map(|i| {
            serde_json::json!({"messages": [
                {"role": "system", "content": "short answers"},
                {"role": "user", "content": format!("double {i}")},
                {"role": "assistant", "content": format!("{}", 2 * i)},
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    let files = [
        (
            "alpaca.json",
            serde_json::to_string_pretty(&alpaca).unwrap(),
        ),
        ("sharegpt.jsonl", sharegpt),
        ("messages.jsonl", messages),
    ];
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = dir.path().join(format!("run-{name}"));
        let o = bin()
            .args([
                "train",
                &preset("lora.toml"),
                "--steps",
                "3",
                "--json",
                "--quiet",
                "--set",
            ])
            .arg(format!("dataset={}", path.display()))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(summary["metric_name"], "perplexity", "{name}");
        assert!(summary["final_eval_loss"].as_f64().unwrap().is_finite());
    }
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n\
         {\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"robot\",\"content\":\"b\"}]}\n",
    )
    .unwrap();
    let o = bin()
        .arg("train")
        .arg(preset("lora.toml"))
        .args(["--quiet", "--steps=1", "--set"])
        .arg(format!("dataset={}", bad.display()))
        .arg("--out")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        said.contains("bad.jsonl")
            && said.contains("line 2")
            && said.contains("turn 2")
            && said.contains("unknown role `robot`"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
}

/// `data` shows what a run will see: the kinds and counts, the length histogram with the
/// cut marked, and the first example with its learned tokens between ⟦ and ⟧.
#[test]
fn data_shows_the_examples_as_the_model_sees_them() {
    let o = bin()
        .args(["data", "builtin:reviews-zh", "--show", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("13204 train, 1000 eval; metric: accuracy"),
        "{said}"
    );
    assert!(said.contains("cut to max_seq_len 128"), "{said}");
    assert!(said.contains("← max_seq_len"), "{said}");
    assert!(
        said.contains("Label:⟦ 差评") || said.contains("Label:⟦ 好评"),
        "{said}"
    );
    let o = bin().args(["data", "no-such-file.jsonl"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file.jsonl"));
}

/// A Chinese Alpaca file through SmolLM2's own chat template: the tokens are ChatML as the
/// model was tuned on, only the answers (and their end-of-turn) learned; with
/// `--last-turn-only` the earlier answer is context; a named format a row does not have is
/// one `error:` line naming the row and the fields it has.
#[test]
fn data_renders_conversations_in_the_models_chat_template() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alpaca_zh.json");
    std::fs::write(
        &file,
        r#"[{"instruction":"1+1等于几？","output":"2","system":"你是数学老师","history":[["你好","你好！"]]},
            {"instruction":"把这句话翻译成英文","input":"你好","output":"Hello"},
            {"instruction":"讲个笑话","output":"好的。"}]"#,
    )
    .unwrap();
    let smol = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct-q4_1.gguf");
    let data = |extra: &[&str]| {
        let o = bin()
            .args([
                "data",
                file.to_str().unwrap(),
                "--model",
                smol.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, said, err) = data(&["--show", "3"]);
    assert!(ok, "{err}");
    assert!(
        said.contains("conversations rendered with the model's chat template"),
        "{said}"
    );
    assert!(
        said.contains(
            "<|im_start|>user\n1+1等于几？<|im_end|>\n<|im_start|>assistant\n⟦2<|im_end|>\n⟧"
        ),
        "{said}"
    );
    assert!(
        said.contains("<|im_start|>assistant\n⟦你好！<|im_end|>\n⟧"),
        "{said}"
    );
    let (ok, said, err) = data(&["--show", "3", "--last-turn-only"]);
    assert!(ok, "{err}");
    assert!(
        said.contains("<|im_start|>assistant\n你好！<|im_end|>"),
        "{said}"
    );
    assert!(said.contains("⟦2<|im_end|>\n⟧"), "{said}");
    let (ok, _, err) = data(&["--format", "sharegpt"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("row 1: dataset_format = \"sharegpt\" needs `conversations`, and this row has `instruction`, `output`, `system`, `history`"),
        "{err}"
    );
}

/// Parquet files through `data`: one read whole (its two row groups), and each broken one
/// refused with a single `error:` line naming the file and the place.
#[test]
fn data_reads_parquet_and_names_its_errors_in_one_line() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parquet");
    let data = |file: &str, extra: &[&str]| {
        let o = bin()
            .arg("data")
            .arg(fixtures.join(file))
            .args(extra)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, said, err) = data("alpaca.parquet", &[]);
    assert!(ok, "{err}");
    assert!(
        said.contains("3 × conversation (Alpaca, ShareGPT or messages)"),
        "{said}"
    );
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "no_known_columns.parquet",
            &[],
            &[
                "no_known_columns.parquet",
                "this file has `question`, `answer`",
            ],
        ),
        (
            "bad_role.parquet",
            &[],
            &["bad_role.parquet", "row group 2, row 1", "robot"],
        ),
        (
            "messages.parquet",
            &["--format", "alpaca"],
            &["row group 1, row 1", "needs `instruction`"],
        ),
    ];
    for (file, extra, needles) in cases {
        let (ok, _, err) = data(file, extra);
        assert!(!ok, "{file} was read");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        for n in needles {
            assert!(err.contains(n), "{file}: `{n}` not in {err}");
        }
    }
}
