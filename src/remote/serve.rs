//! The daemon on a remote machine: `peft-workbench serve` owns the queue and the runs folder
//! there, so closing the laptop (or a dropped connection) does not stop training. It listens
//! on a Unix socket (mode 0600, in a 0700 folder inside the runs folder); `attach` relays a
//! connection's stdin/stdout to it. Every event since it started is kept, and a new
//! connection is sent them all after the hello: a client that was away sees what it missed
//! (it skips what it already has), so a curve has no gap.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Hello;
use crate::jobs::{Backend, Command, Event, LocalBackend};

/// The daemon's socket for a runs folder.
pub fn socket_path(runs_dir: &Path) -> PathBuf {
    runs_dir.join(".serve").join("socket")
}

/// With no connection and nothing training for this long, the daemon ends.
const IDLE_EXIT: Duration = Duration::from_secs(600);

enum Input {
    /// A new connection (its writing half).
    Connected(UnixStream),
    Command(Command),
    /// The connection with this serial number ended.
    Closed(u64),
}

/// Serves `runs_dir` until idle. Refuses to start beside a daemon that answers already.
pub fn serve(runs_dir: &Path) -> Result<()> {
    let folder = runs_dir.join(".serve");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))?;
    let socket = socket_path(runs_dir);
    if UnixStream::connect(&socket).is_ok() {
        anyhow::bail!("a daemon serves {} already", runs_dir.display());
    }
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;

    let (tx, inputs) = crossbeam_channel::unbounded::<Input>();
    let (wake_tx, wake) = crossbeam_channel::bounded::<()>(1);
    let notify = Arc::new(move || {
        let _ = wake_tx.try_send(());
    });
    let mut backend = LocalBackend::spawn(Some(runs_dir.to_path_buf()), notify);
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for (stream, serial) in listener.incoming().flatten().zip(1u64..) {
                let Ok(writer) = stream.try_clone() else {
                    continue;
                };
                if tx.send(Input::Connected(writer)).is_err() {
                    break;
                }
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<Command>(&line) {
                            Ok(cmd) => {
                                if tx.send(Input::Command(cmd)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => eprintln!("serve: not a command ({e}): {line}"),
                        }
                    }
                    let _ = tx.send(Input::Closed(serial));
                });
            }
        });
    }

    let hello = serde_json::to_string(&Hello::here())?;
    let mut log: Vec<String> = Vec::new();
    let mut client: Option<(u64, UnixStream)> = None;
    let mut connections = 0u64;
    let mut live: std::collections::HashSet<u64> = Default::default();
    let mut idle_since = Instant::now();
    loop {
        while let Some(event) = backend.try_recv().map_err(anyhow::Error::msg)? {
            if let Event::Run(
                crate::train::Event::Finished { run, .. } | crate::train::Event::Failed { run, .. },
            ) = &event
            {
                live.remove(run);
            }
            let line = serde_json::to_string(&event)?;
            if let Some((_, stream)) = &mut client
                && writeln!(stream, "{line}").is_err()
            {
                client = None;
            }
            // Short jobs' updates matter to the connection that asked only.
            if matches!(event, Event::Run(_)) {
                log.push(line);
            }
        }
        if client.is_none() && live.is_empty() {
            if idle_since.elapsed() > IDLE_EXIT {
                let _ = std::fs::remove_file(&socket);
                backend.shutdown();
                return Ok(());
            }
        } else {
            idle_since = Instant::now();
        }
        crossbeam_channel::select! {
            recv(inputs) -> input => match input {
                Ok(Input::Connected(mut stream)) => {
                    connections += 1;
                    // The hello, then everything that happened, then what happens.
                    let mut sent = writeln!(stream, "{hello}");
                    for line in &log {
                        if sent.is_err() {
                            break;
                        }
                        sent = writeln!(stream, "{line}");
                    }
                    if sent.is_ok() {
                        client = Some((connections, stream));
                    }
                }
                Ok(Input::Command(cmd)) => {
                    if let Command::Train { id, .. } | Command::Resume { id, .. } = &cmd {
                        live.insert(*id);
                    }
                    if let Err(why) = backend.send(cmd) {
                        eprintln!("serve: {why}");
                    }
                }
                Ok(Input::Closed(serial)) => {
                    if client.as_ref().is_some_and(|(s, _)| *s == serial) {
                        client = None;
                    }
                }
                Err(_) => return Ok(()),
            },
            recv(wake) -> _ => {}
            default(Duration::from_millis(500)) => {}
        }
    }
}

/// `attach`: connects this process's stdin/stdout to the daemon serving `runs_dir`, starting
/// one (detached from this session) if none answers. Returns when the input ends; the daemon
/// and its runs go on.
pub fn attach(runs_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(runs_dir)
        .with_context(|| format!("cannot create the runs folder {}", runs_dir.display()))?;
    let socket = socket_path(runs_dir);
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(_) => {
            let exe = std::env::current_exe().context("cannot find this program")?;
            use std::os::unix::process::CommandExt;
            std::process::Command::new(exe)
                .arg("serve")
                .arg("--runs-dir")
                .arg(runs_dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                // Its own process group: what ends this session's processes leaves it be.
                .process_group(0)
                .spawn()
                .context("cannot start the daemon")?;
            let start = Instant::now();
            loop {
                match UnixStream::connect(&socket) {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < Duration::from_secs(20) => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("the daemon did not start listening on {}", socket.display())
                        });
                    }
                }
            }
        }
    };
    let mut to_daemon = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let _ = std::io::copy(&mut stdin, &mut to_daemon);
        // The connection ended: the daemon hears so, and goes on with its runs.
        let _ = to_daemon.shutdown(std::net::Shutdown::Both);
    });
    let mut from_daemon = stream;
    let mut stdout = std::io::stdout().lock();
    // Line by line, flushed, so events arrive as they happen.
    let mut reader = BufReader::new(&mut from_daemon);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(_) => {
                if stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}
