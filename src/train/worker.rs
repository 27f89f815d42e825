//! The background trainer thread. It takes `Command`s, runs queued runs one after another,
//! and sends `Event`s; after each event it calls `notify` (the GUI passes a repaint request).

use crossbeam_channel::{Receiver, Sender, unbounded};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::Halt;
use super::events::{Command, Event, RunId};
use crate::config::RunConfig;

pub type Notify = Arc<dyn Fn() + Send + Sync>;

pub struct WorkerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops any run at its next step boundary and waits for the thread to end.
    pub fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Folder name of a run: sortable by time, readable by method.
pub fn run_folder_name(id: RunId, cfg: &RunConfig) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}-{id:03}-{}", cfg.method.kind())
}

/// Training yields the CPU to the window: without this the window, which draws on the CPU
/// too where there is no GPU driver, waited behind training threads that use every core
/// (139 ms median between frames on 2 cores while LoRA trained). Linux gives each thread
/// its own nice value, and threads inherit it from the thread that starts them, so the
/// trainer thread lowers its own and candle's worker threads (started by the trainer) follow;
/// rayon's global pool lowers each of its threads as it starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn yield_to_the_window() {
    // SAFETY: setpriority takes integers only; with who = 0 it changes the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn yield_to_the_window() {}

/// Starts the worker. Runs write their files under `runs_dir` (None: nothing is written).
pub fn spawn(runs_dir: Option<PathBuf>, notify: Notify) -> WorkerHandle {
    let (cmd_tx, cmd_rx) = unbounded::<Command>();
    let (ev_tx, ev_rx) = unbounded::<Event>();
    // Fails only when the pool already exists (a second worker in the same process).
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| yield_to_the_window())
        .build_global();
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            yield_to_the_window();
            // Steps run on candle's CPU pool (`Device::with_context`), whose threads take
            // their priority from the thread that first uses it: start it here, before a
            // playground thread at the window's priority can.
            candle_core::Device::Cpu.with_context(|| ());
            worker_loop(cmd_rx, ev_tx, runs_dir, notify)
        })
        .expect("cannot start the trainer thread");
    WorkerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
    }
}

/// A queued run: a new one, or the continuation of a saved one.
enum Job {
    Fresh(Box<RunConfig>),
    Resume(PathBuf),
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<(RunId, Job)>,
    shutdown: bool,
}

impl Queue {
    /// Applies a command that arrives while `current` runs; what `current` must do.
    fn apply(&mut self, cmd: Command, current: Option<RunId>) -> Halt {
        match cmd {
            Command::Start { id, config } => {
                self.pending.push_back((id, Job::Fresh(config)));
                Halt::No
            }
            Command::Resume { id, dir } => {
                self.pending.push_back((id, Job::Resume(dir)));
                Halt::No
            }
            Command::Stop { id } | Command::Finish { id } if current != Some(id) => {
                self.pending.retain(|(p, _)| *p != id);
                Halt::No
            }
            Command::Stop { .. } => Halt::Pause,
            Command::Finish { .. } => Halt::Finish,
            Command::Shutdown => {
                self.shutdown = true;
                self.pending.clear();
                Halt::Pause
            }
        }
    }
}

fn worker_loop(
    cmds: Receiver<Command>,
    events: Sender<Event>,
    runs_dir: Option<PathBuf>,
    notify: Notify,
) {
    let mut queue = Queue::default();
    let send = |e: Event| {
        // The UI may be gone already when the app closes; nothing is lost but the message.
        let _ = events.send(e);
        notify();
    };
    loop {
        if queue.shutdown {
            return;
        }
        let Some((id, job)) = queue.pending.pop_front() else {
            match cmds.recv() {
                Ok(cmd) => {
                    queue.apply(cmd, None);
                    continue;
                }
                Err(_) => return,
            }
        };
        let mut requested = Halt::No;
        let mut halt = || {
            while let Ok(cmd) = cmds.try_recv() {
                // Closing the window (Shutdown, a pause) outranks an earlier "keep best".
                match queue.apply(cmd, Some(id)) {
                    Halt::No => {}
                    h => requested = h,
                }
            }
            requested
        };
        let mut emit = |e: Event| send(e);
        // Each run's peak memory is its own: the last run's memory went back to the system
        // when it ended (`return_free_memory`), and the high-water mark starts here.
        super::reset_peak_rss();
        // A bug that panics ends this run as failed, not the worker: the queue goes on.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &job {
            Job::Fresh(cfg) => {
                let out_dir = runs_dir.as_ref().map(|d| d.join(run_folder_name(id, cfg)));
                super::run_until(cfg, id, out_dir.as_deref(), &mut emit, &mut halt)
            }
            Job::Resume(dir) => super::resume_until(dir, id, &mut emit, &mut halt),
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Err(anyhow::anyhow!(
                "internal error ({what}); the run stopped, the workbench goes on"
            ))
        });
        match result {
            Ok(summary) => send(Event::Finished {
                run: id,
                summary: Box::new(summary),
            }),
            Err(e) => send(Event::Failed {
                run: id,
                error: crate::describe(&e),
            }),
        }
        super::allocator::return_free_memory();
    }
}
