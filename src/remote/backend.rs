//! A `jobs::Backend` on a remote machine: `ssh HOST peft-workbench attach`, commands written
//! to its input and events read from its output, one JSON object per line.

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, TryRecvError};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Hello, Machine, PROTOCOL, ssh};
use crate::jobs::{Backend, Command, Event};

/// How long the remote has to say hello (an SSH handshake and a process start).
const HELLO_WAIT: Duration = Duration::from_secs(60);

pub struct RemoteBackend {
    machine: Machine,
    child: Child,
    input: Option<ChildStdin>,
    events: Receiver<Event>,
    /// What ssh and the remote said on stderr, for the message when the connection ends.
    stderr: Arc<Mutex<String>>,
    pub hello: Hello,
}

impl RemoteBackend {
    /// Connects to `machine` and waits for its hello; a failed connection is explained, a
    /// remote binary of another protocol refused with what to do.
    pub fn connect(machine: &Machine, notify: crate::train::worker::Notify) -> Result<Self> {
        let mut child = ssh::command(
            machine,
            &[machine.binary(), "attach", "--runs-dir", machine.runs_dir()],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ssh: is OpenSSH's client installed?")?;
        let stdout = child.stdout.take().context("ssh's output")?;
        let mut stderr_pipe = child.stderr.take().context("ssh's messages")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    stderr.lock().expect("stderr lock").push_str(&text);
                }
            });
        }
        let (hello_tx, hello_rx) = crossbeam_channel::bounded::<Result<Hello, String>>(1);
        let (ev_tx, events) = crossbeam_channel::unbounded::<Event>();
        std::thread::Builder::new()
            .name(format!("from {}", machine.name))
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let hello = match lines.next() {
                    Some(Ok(line)) => serde_json::from_str::<Hello>(&line)
                        .map_err(|_| format!("answered `{}` instead of a hello", line.trim())),
                    _ => Err(String::new()),
                };
                let ok = hello.is_ok();
                let _ = hello_tx.send(hello);
                if !ok {
                    return;
                }
                for line in lines {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Event>(&line) {
                        Ok(e) => {
                            if ev_tx.send(e).is_err() {
                                break;
                            }
                            notify();
                        }
                        Err(e) => eprintln!("remote: not an event ({e}): {line}"),
                    }
                }
                notify();
            })
            .context("cannot start the reader thread")?;
        let hello = match hello_rx.recv_timeout(HELLO_WAIT) {
            Ok(Ok(h)) => h,
            Ok(Err(why)) => {
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(50));
                let said = stderr.lock().expect("stderr lock").clone();
                if said.is_empty() && why.is_empty() {
                    bail!("{} closed the connection without a word", machine.name);
                }
                if !why.is_empty() {
                    bail!("{}'s peft-workbench {why}", machine.name);
                }
                bail!("{}", explain_end(machine, &said));
            }
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "{} did not answer within {} s",
                    machine.name,
                    HELLO_WAIT.as_secs()
                );
            }
        };
        if hello.protocol != PROTOCOL {
            let _ = child.kill();
            bail!(
                "peft-workbench {} on {} speaks protocol {}, this one {PROTOCOL}: install this version there (`peft-workbench remote install {}`)",
                hello.version,
                machine.name,
                hello.protocol,
                machine.name
            );
        }
        Ok(Self {
            machine: machine.clone(),
            input: child.stdin.take(),
            child,
            events,
            stderr,
            hello,
        })
    }

    fn gone(&mut self) -> String {
        let _ = self.child.try_wait();
        let said = self.stderr.lock().expect("stderr lock").clone();
        format!(
            "the connection to {} ended: {}",
            self.machine.name,
            explain_end(&self.machine, &said)
        )
    }
}

/// Why an ssh session ended, from what it said: ssh's own failures explained, else the
/// remote's last words.
fn explain_end(machine: &Machine, stderr: &str) -> String {
    let ssh_failed = stderr.contains("Host key")
        || stderr.contains("host key")
        || stderr.contains("HOST IDENTIFICATION")
        || stderr.contains("Permission denied")
        || stderr.contains("Connection")
        || stderr.contains("Could not resolve");
    if ssh_failed {
        return ssh::explain(machine, stderr);
    }
    match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(l) if l.contains("not found") || l.contains("No such file") => format!(
            "{} has no `{}` to run ({}): install it there (`peft-workbench remote install {}`)",
            machine.name,
            machine.binary(),
            l.trim(),
            machine.name
        ),
        Some(l) => l.trim().to_string(),
        None => "no message".into(),
    }
}

impl Backend for RemoteBackend {
    fn send(&mut self, cmd: Command) -> Result<(), String> {
        let line = serde_json::to_string(&cmd).map_err(|e| e.to_string())?;
        let written = match &mut self.input {
            Some(input) => writeln!(input, "{line}").and_then(|()| input.flush()),
            None => Err(std::io::Error::other("closed")),
        };
        written.map_err(|_| self.gone())
    }

    fn try_recv(&mut self) -> Result<Option<Event>, String> {
        match self.events.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) if self.input.is_none() => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.gone()),
        }
    }

    /// Closes the connection's input: `attach` there ends, and the daemon it relayed to goes
    /// on with its runs (closing the window or the laptop does not stop them).
    fn shutdown(&mut self) {
        self.input = None;
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RemoteBackend {
    fn drop(&mut self) {
        if self.input.is_some() {
            self.shutdown();
        }
    }
}

/// A remote backend still connecting: the SSH handshake and the hello happen on a thread
/// of their own (a window never waits for them); commands sent meanwhile wait and go once
/// the machine has said hello.
pub struct Connecting {
    state: State,
    pending: Vec<Command>,
}

enum State {
    Waiting(Receiver<Result<RemoteBackend, String>>),
    Ready(Box<RemoteBackend>),
    /// The connection failed; said once by `try_recv`, then every command is refused.
    Failed(String, bool),
}

impl Connecting {
    pub fn start(machine: Machine, notify: crate::train::worker::Notify) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let result =
                RemoteBackend::connect(&machine, notify.clone()).map_err(|e| crate::describe(&e));
            let _ = tx.send(result);
            notify();
        });
        Self {
            state: State::Waiting(rx),
            pending: Vec::new(),
        }
    }

    /// Takes the connection's outcome in, if it has come, and sends what waited.
    fn settle(&mut self) {
        let State::Waiting(rx) = &self.state else {
            return;
        };
        match rx.try_recv() {
            Ok(Ok(backend)) => {
                let mut backend = Box::new(backend);
                for cmd in self.pending.drain(..) {
                    if let Err(why) = backend.send(cmd) {
                        self.state = State::Failed(why, false);
                        return;
                    }
                }
                self.state = State::Ready(backend);
            }
            Ok(Err(why)) => self.state = State::Failed(why, false),
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => {
                self.state = State::Failed("the connection thread ended".into(), false)
            }
        }
    }
}

impl Backend for Connecting {
    fn send(&mut self, cmd: Command) -> Result<(), String> {
        self.settle();
        match &mut self.state {
            State::Waiting(_) => {
                self.pending.push(cmd);
                Ok(())
            }
            State::Ready(b) => b.send(cmd),
            State::Failed(why, _) => Err(why.clone()),
        }
    }

    fn try_recv(&mut self) -> Result<Option<Event>, String> {
        self.settle();
        match &mut self.state {
            State::Waiting(_) => Ok(None),
            State::Ready(b) => b.try_recv(),
            State::Failed(why, said) => {
                if *said {
                    Ok(None)
                } else {
                    *said = true;
                    Err(why.clone())
                }
            }
        }
    }

    fn shutdown(&mut self) {
        if let State::Ready(b) = &mut self.state {
            b.shutdown();
        }
    }
}
