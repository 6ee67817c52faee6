//! Stages spawned ahead of their launch (issue 17's warm path): the re-exec of our own
//! binary as the stage ([`launch::Stage`]) is the largest single phase of a launch
//! and depends on nothing of the run, so it can happen off the launch path.
//!
//! - [`WarmStages::keep_one`]: a long-lived supervisor (`serve`) keeps one stage ready
//!   at all times; each launch takes it and the pool spawns the next.
//! - [`WarmStages::one`]: a one-run supervisor (`exec`, `run`) spawns its stage first
//!   thing, on another thread, while it still reads the manifest and prepares.
//!
//! Nothing is shared between runs: each stage is a fresh process that has received
//! nothing yet (no plan, no cgroup, no namespace, nothing read from stdin), is
//! used for one launch, and is killed and reaped if never used. DESIGN.md §9.4: the
//! pool belongs to the supervisor, never to a run.
//!
//! The stages are spawned by the pool's own thread and die with it (their parent-death
//! signal), so that thread lives as long as the pool, and the pool must outlive every
//! launch that took a stage from it (the runtime's `RunRequest::stages` holds it).

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::launch::Stage;

/// How long [`WarmStages::take`] waits for a stage being spawned before the launch
/// spawns its own. A spawn takes about a millisecond.
const TAKE_WAIT: Duration = Duration::from_millis(100);
/// After a failed spawn (no memory, no pids left), the pool tries again this much later.
const RETRY: Duration = Duration::from_secs(1);

/// Stages spawned ahead of time by a thread of their own.
pub struct WarmStages {
    ready: Mutex<Option<Receiver<Stage>>>,
    /// Dropped to let a [`WarmStages::one`] thread end.
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WarmStages {
    /// Keep one stage of `exe` ready at all times (long-lived supervisors).
    pub fn keep_one(exe: PathBuf) -> std::io::Result<Self> {
        Self::start(exe, true)
    }

    /// Spawn a single stage of `exe` now, for the one launch that follows.
    pub fn one(exe: PathBuf) -> std::io::Result<Self> {
        Self::start(exe, false)
    }

    fn start(exe: PathBuf, refill: bool) -> std::io::Result<Self> {
        // Rendezvous: the thread holds at most one spawned stage, handed over when taken.
        let (tx, rx) = mpsc::sync_channel::<Stage>(0);
        let (stop_tx, stop_rx) = mpsc::sync_channel::<()>(0);
        let thread = std::thread::Builder::new()
            .name("skillsandbox-warm".into())
            .spawn(move || {
                loop {
                    match Stage::spawn(&exe) {
                        // Err: the pool was dropped; the stage (in the error) is killed.
                        Ok(stage) => {
                            if tx.send(stage).is_err() {
                                return;
                            }
                        }
                        // Try again later; meanwhile launches spawn their own stage and
                        // report the failure where it happens.
                        Err(_) if refill => std::thread::sleep(RETRY),
                        Err(_) => break,
                    }
                    if !refill {
                        break;
                    }
                }
                // Spent. Takers stop waiting; the stage handed over dies with this
                // thread, so it lives on until the pool is dropped.
                drop(tx);
                let _ = stop_rx.recv();
            })?;
        Ok(WarmStages {
            ready: Mutex::new(Some(rx)),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A stage ready for a launch, or `None` (the pool's spawns failed, or it is spent):
    /// the launch then spawns its own. Waits for one being spawned.
    pub fn take(&self) -> Option<Stage> {
        let guard = self.ready.lock().ok()?;
        let mut stage = match guard.as_ref()?.recv_timeout(TAKE_WAIT) {
            Ok(stage) => stage,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        };
        // Killed while waiting (by hand, or the OOM killer): never hand on a dead one.
        stage.is_alive().then_some(stage)
    }
}

impl Drop for WarmStages {
    fn drop(&mut self) {
        // Disconnect both channels, so the thread kills any stage it still holds and
        // ends; join it, so that stage is reaped before the pool is gone.
        if let Ok(mut g) = self.ready.lock() {
            g.take();
        }
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
