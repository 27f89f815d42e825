//! `peft-workbench remote ...` and `train --on MACHINE`: remote machines over SSH from the
//! command line (the library's `remote` module does the work).

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

use crate::{Progress, runs_dir};
use peft_workbench::config::RunConfig;
use peft_workbench::train::{self, Event};

#[derive(Subcommand)]
pub enum RemoteCmd {
    /// Store a machine: `remote add NAME -- ssh -p 23456 root@host`, the SSH line as the
    /// provider shows it (or a ~/.ssh/config host name). No password is kept: use a key.
    Add {
        name: String,
        /// The peft-workbench to run there (default: the one on its PATH).
        #[arg(long)]
        binary: Option<String>,
        /// Where runs are written there (default: peft-workbench/runs in its home).
        #[arg(long)]
        runs_dir: Option<String>,
        /// The SSH line: options, then [user@]host.
        #[arg(last = true, required = true)]
        ssh: Vec<String>,
    },
    /// The machines added so far.
    List,
    /// Install this program there (checked by SHA-256, in .peft-workbench/bin/VERSION/ in
    /// the remote home) and use it for the machine's runs. A GPU machine takes the CUDA build
    /// (--binary target/cuda/release/peft-workbench); the default is the running one.
    Install {
        name: String,
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The folder there that holds the installed versions (default: the machine's
        /// `install_dir`, else .peft-workbench/bin in the remote home); remembered.
        #[arg(long)]
        into: Option<String>,
    },
    /// Forget a machine (nothing on it is touched).
    Remove { name: String },
    /// Connect and show the machine's system, GPUs, free disk and memory, and whether a
    /// compatible peft-workbench answers there.
    Test { name: String },
    /// The runs on the machine, finished or not.
    Runs { name: String },
    /// Bring finished runs home into the local runs folder (all those not here yet, or RUN),
    /// marked with the machine they trained on.
    Pull {
        name: String,
        run: Option<String>,
        /// The local runs folder (default: $PEFT_WORKBENCH_RUNS, else ./runs).
        #[arg(long)]
        runs_dir: Option<PathBuf>,
    },
    /// Stop a run training there at its next step (it saves a checkpoint first).
    Stop { name: String, run: String },
    /// Show the host key fingerprints the machine offers and, once you confirm they are the
    /// provider's, add them to your known_hosts.
    Trust {
        name: String,
        /// Trust without asking (for scripts that checked the fingerprint otherwise).
        #[arg(long)]
        yes: bool,
    },
}

/// `remote ...`: the machines store and the checks that need no running job.
pub fn remote(cmd: RemoteCmd) -> Result<()> {
    use peft_workbench::remote::{Machine, Machines, probe::Probe, ssh};
    let mut machines = Machines::load()?;
    match cmd {
        RemoteCmd::Add {
            name,
            binary,
            runs_dir,
            ssh,
        } => {
            let mut m = Machine::new(&name, &ssh)?;
            m.binary = binary;
            m.runs_dir = runs_dir;
            machines.add(m)?;
            machines.save()?;
            eprintln!("added {name}; check it with `peft-workbench remote test {name}`");
        }
        RemoteCmd::List => {
            for m in &machines.machines {
                println!("{}\tssh {}", m.name, m.ssh.join(" "));
            }
        }
        RemoteCmd::Remove { name } => {
            machines.remove(&name)?;
            machines.save()?;
            eprintln!("removed {name}");
        }
        RemoteCmd::Test { name } => {
            let m = machines.get(&name)?;
            println!("{}", Probe::run(m)?.describe(m));
        }
        RemoteCmd::Install { name, binary, into } => {
            let m = machines.get(&name)?.clone();
            let binary = match binary {
                Some(b) => b,
                None => std::env::current_exe().context("cannot find the running program")?,
            };
            let bar = bytes_bar();
            let into = into.unwrap_or_else(|| m.install_dir().to_string());
            let (path, _) = peft_workbench::remote::install::install_and_check(
                &m,
                &binary,
                &into,
                &mut |sent, total| {
                    bar.set_length(total);
                    bar.set_position(sent);
                },
            )?;
            bar.finish_and_clear();
            for mm in &mut machines.machines {
                if mm.name == name {
                    mm.binary = Some(path.clone());
                    if into != peft_workbench::remote::install::DEFAULT_FOLDER {
                        mm.install_dir = Some(into.clone());
                    }
                }
            }
            machines.save()?;
            eprintln!(
                "installed {} as {path} on {name}, checked; it runs there",
                binary.display()
            );
        }
        RemoteCmd::Runs { name } => {
            let m = machines.get(&name)?;
            for r in remote_runs(m)? {
                let state = if r.finished {
                    "finished"
                } else {
                    "not finished"
                };
                println!("{}\t{}\t{state}", r.name, r.method);
            }
        }
        RemoteCmd::Pull {
            name,
            run,
            runs_dir: local,
        } => {
            let m = machines.get(&name)?;
            let local = runs_dir(local);
            let wanted: Vec<String> = match run {
                Some(r) => vec![r],
                None => remote_runs(m)?
                    .into_iter()
                    .filter(|r| r.finished && !local.join(&r.name).exists())
                    .map(|r| r.name)
                    .collect(),
            };
            for r in &wanted {
                let n = peft_workbench::remote::transfer::pull(m, r, &local.join(r), None)?;
                eprintln!("{r}: {n} files home in {}", local.join(r).display());
            }
            if wanted.is_empty() {
                eprintln!("no finished run on {name} that is not here already");
            }
        }
        RemoteCmd::Stop { name, run } => stop_remote(machines.get(&name)?, &run)?,
        RemoteCmd::Trust { name, yes } => {
            let m = machines.get(&name)?;
            let (keys, fingerprints) = ssh::offered_keys(m)?;
            println!("{} offers these host keys:", m.destination());
            for f in &fingerprints {
                println!("  {f}");
            }
            if !yes {
                eprint!("Are these the keys your provider shows? Trust them [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("not trusted; nothing was changed");
                }
            }
            let file = ssh::trust(m, &keys)?;
            eprintln!("trusted; the keys are in {}", file.display());
        }
    }
    Ok(())
}

/// `remote stop MACHINE RUN`: the daemon there sends every event since it started to a new
/// connection, so the run's id is in its `Started`; a stop for that id is sent, and the
/// run's end awaited.
fn stop_remote(m: &peft_workbench::remote::Machine, run: &str) -> Result<()> {
    use peft_workbench::jobs::{Backend, Command, Event as JobEvent};
    use std::time::{Duration, Instant};
    peft_workbench::remote::transfer::check_run_name(run)?;
    let mut backend =
        peft_workbench::remote::RemoteBackend::connect(m, std::sync::Arc::new(|| {}))?;
    let in_folder = |d: &str| {
        std::path::Path::new(d)
            .file_name()
            .is_some_and(|n| n == run)
    };
    // The replay is written before anything new, the moment the connection opens: two
    // seconds of events hold it whole (live steps keep coming after it, so waiting for a
    // quiet moment would wait for the run to end).
    let (mut id, listening) = (None, Instant::now());
    while listening.elapsed() < Duration::from_secs(2) {
        match backend.try_recv().map_err(anyhow::Error::msg)? {
            Some(JobEvent::Run(e)) => match e {
                Event::Started {
                    run: r,
                    out_dir: Some(d),
                    ..
                } if in_folder(&d) => id = Some(r),
                Event::Finished { run: r, .. } | Event::Failed { run: r, .. } if id == Some(r) => {
                    id = None
                }
                _ => {}
            },
            Some(JobEvent::Job { .. }) => {}
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let Some(id) = id else {
        backend.shutdown();
        anyhow::bail!(
            "{run} is not training on {} (see `peft-workbench remote runs {}`)",
            m.name,
            m.name
        );
    };
    backend
        .send(Command::StopRun { id })
        .map_err(anyhow::Error::msg)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        match backend.try_recv().map_err(anyhow::Error::msg)? {
            Some(JobEvent::Run(Event::Finished { run: r, summary })) if r == id => {
                backend.shutdown();
                eprintln!(
                    "{run} stopped on {} after {} steps; its checkpoint is there",
                    m.name, summary.steps
                );
                return Ok(());
            }
            Some(JobEvent::Run(Event::Failed { run: r, error })) if r == id => {
                backend.shutdown();
                anyhow::bail!("{run} ended on {}: {error}", m.name);
            }
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    backend.shutdown();
    anyhow::bail!("{run} did not stop on {} within 5 minutes", m.name)
}

/// A progress bar of bytes sent (an install, a run's files).
fn bytes_bar() -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template"),
    )
}

/// The runs on `m`, from its `pack --list`.
fn remote_runs(
    m: &peft_workbench::remote::Machine,
) -> Result<Vec<peft_workbench::remote::transfer::RemoteRun>> {
    let runs = m.runs_dir();
    let out =
        peft_workbench::remote::ssh::run(m, &[m.binary(), "pack", "--list", "--runs-dir", runs])?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// `train --on MACHINE`: the run trains there, its events shown here as a local run's; its
/// summary and its folder there. Detached, it returns once the run has started there,
/// without a summary.
pub fn train_remote(
    machine: &str,
    cfg: RunConfig,
    progress: &mut Progress,
    detach: bool,
) -> Result<(Option<train::Summary>, String)> {
    use peft_workbench::jobs::{Backend, Command, Event as JobEvent};
    use peft_workbench::remote::{Machines, RemoteBackend};
    let machines = Machines::load()?;
    let m = machines.get(machine)?;
    // The dataset (and a model folder) on this machine go there first, once each.
    let cfg = if peft_workbench::remote::upload::needs_upload(&cfg) {
        progress.say(&format!("sending the run's files to {}", m.name));
        let bar = bytes_bar();
        let there = peft_workbench::remote::upload::prepare(m, &cfg, &mut |sent, total| {
            bar.set_length(total);
            bar.set_position(sent);
        })?;
        bar.finish_and_clear();
        there
    } else {
        cfg
    };
    let mut backend = RemoteBackend::connect(m, std::sync::Arc::new(|| {}))?;
    progress.say(&format!(
        "connected to {} (peft-workbench {}, devices {})",
        m.name,
        backend.hello.version,
        backend.hello.devices.join(", ")
    ));
    backend
        .send(Command::Train {
            id: 1,
            config: Box::new(cfg),
        })
        .map_err(anyhow::Error::msg)?;
    let mut out_dir = String::new();
    // After a reconnection the daemon sends everything again: what was shown is skipped.
    let (mut last_step, mut last_eval) = (0usize, None::<usize>);
    let (mut tries, mut reconnected) = (0u32, false);
    loop {
        let next = match backend.try_recv() {
            Ok(next) => next,
            Err(why) if tries < 10 => {
                // The daemon there goes on with the run: connect again, with growing waits.
                let wait = (2u64 << tries.min(5)).min(60);
                tries += 1;
                progress.say(&format!(
                    "{why}; the run goes on there; connecting again in {wait} s"
                ));
                std::thread::sleep(std::time::Duration::from_secs(wait));
                if let Ok(b) = RemoteBackend::connect(m, std::sync::Arc::new(|| {})) {
                    backend = b;
                    reconnected = true;
                }
                continue;
            }
            Err(why) => anyhow::bail!(
                "{why}; gave up after {tries} tries (the run may still be training there: `peft-workbench remote runs {}`)",
                m.name
            ),
        };
        match next {
            Some(JobEvent::Run(e)) => match e {
                Event::Finished { summary, .. } => {
                    backend.shutdown();
                    return Ok((Some(*summary), out_dir));
                }
                Event::Started {
                    out_dir: Some(d), ..
                } if detach => {
                    // Closing the connection leaves the run to the daemon there.
                    backend.shutdown();
                    return Ok((None, d));
                }
                Event::Failed { error, .. } => {
                    backend.shutdown();
                    anyhow::bail!("the run failed on {}: {error}", m.name);
                }
                // Said once already, before the connection was lost.
                Event::Started { .. } | Event::Loading { .. } | Event::Notice { .. }
                    if reconnected => {}
                Event::Step(p) if p.step <= last_step => {}
                Event::Eval(p) if last_eval.is_some_and(|l| p.step <= l) => {}
                e => {
                    match &e {
                        Event::Started {
                            out_dir: Some(d), ..
                        } => out_dir = d.clone(),
                        Event::Step(p) => last_step = p.step,
                        Event::Eval(p) => last_eval = Some(p.step),
                        _ => {}
                    }
                    tries = 0;
                    progress.event(e);
                }
            },
            Some(JobEvent::Job { .. }) => {}
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}
