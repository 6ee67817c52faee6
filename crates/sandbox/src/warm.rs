//! Stages spawned ahead of their launch (issue 17's warm path): the re-exec of our own
//! binary as the stage ([`launch::Stage`]) is the largest single phase of a launch
//! and depends on nothing of the run, so it can happen off the launch path.
//!
//! - [`WarmStages::keep_one`]: a long-lived supervisor (`serve`) keeps one stage ready
//!   at all times; each launch takes it and the pool spawns the next.
//! - [`WarmStages::one`]: a one-run supervisor (`exec`, `run`) spawns its stage on
//!   another thread as soon as the policy is known, while it still prepares the launch.
//!
//! Nothing is shared between runs: each stage is a fresh process that has received
//! nothing yet (no plan, no namespace, nothing read from stdin; its cgroup, if made
//! ahead, is its run's alone), is used for one launch, and is killed and reaped if
//! never used. DESIGN.md §9.4: the
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

use crate::cgroup::{create_for_run, CgroupLimits, SandboxCgroup};
use crate::launch::Stage;

/// How long [`WarmStages::take`] waits for a stage being spawned before the launch
/// spawns its own. A spawn takes about a millisecond.
const TAKE_WAIT: Duration = Duration::from_millis(100);
/// After a failed spawn (no memory, no pids left), the pool tries again this much later.
const RETRY: Duration = Duration::from_secs(1);

/// A stage spawned ahead, and the cgroup it was placed in right away ([`Ahead`]).
/// Moving a process that has been asleep into a cgroup costs several times more than
/// one just started (~0.2 ms against ~0.04 ms per cgroup-v1 hierarchy, measured here),
/// and creating the cgroup is another ~0.5 ms: both leave the launch path. Dropped,
/// the stage is killed and reaped first, then the cgroup removed.
pub struct WarmStage {
    pub stage: Stage,
    pub cgroup: Option<StageCgroup>,
}

/// The cgroup a warm stage waits in, made for the run that will take it.
pub struct StageCgroup {
    /// The run's id, made ahead with it: the cgroup is named after it
    /// ([`create_for_run`]) as any run's is.
    pub run_id: String,
    /// Made with [`Ahead::limits`]; the run writes its own over them.
    pub cgroup: SandboxCgroup,
}

/// What a pool makes ahead beside each stage: a cgroup with the limits most runs will
/// ask for, named after a run id from `new_run_id`.
#[derive(Clone, Copy)]
pub struct Ahead {
    pub limits: CgroupLimits,
    pub new_run_id: fn() -> String,
}

/// Stages spawned ahead of time by a thread of their own.
pub struct WarmStages {
    ready: Mutex<Option<Receiver<WarmStage>>>,
    /// Dropped to let a [`WarmStages::one`] thread end.
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WarmStages {
    /// Keep one stage of `exe` ready at all times (long-lived supervisors), each in a
    /// cgroup made ahead if `ahead` says how.
    pub fn keep_one(exe: PathBuf, ahead: Option<Ahead>) -> std::io::Result<Self> {
        Self::start(exe, ahead, true)
    }

    /// Spawn a single stage of `exe` now, for the one launch that follows, in a cgroup
    /// made ahead if `ahead` says how.
    pub fn one(exe: PathBuf, ahead: Option<Ahead>) -> std::io::Result<Self> {
        Self::start(exe, ahead, false)
    }

    fn start(exe: PathBuf, ahead: Option<Ahead>, refill: bool) -> std::io::Result<Self> {
        // Rendezvous: the thread holds at most one spawned stage, handed over when taken.
        let (tx, rx) = mpsc::sync_channel::<WarmStage>(0);
        let (stop_tx, stop_rx) = mpsc::sync_channel::<()>(0);
        let thread = std::thread::Builder::new()
            .name("skillsandbox-warm".into())
            .spawn(move || {
                loop {
                    // A cgroup that cannot be made: the run makes its own, and reports why.
                    let cgroup = ahead.and_then(new_cgroup);
                    match Stage::spawn(&exe) {
                        // Err: the pool was dropped; the stage (in the error) is killed.
                        Ok(stage) => {
                            let stage = place(stage, cgroup);
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
    pub fn take(&self) -> Option<WarmStage> {
        let guard = self.ready.lock().ok()?;
        let mut warm = match guard.as_ref()?.recv_timeout(TAKE_WAIT) {
            Ok(warm) => warm,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        };
        // Killed or stopped while waiting (by hand, or the OOM killer): never hand on
        // one that cannot serve; the launch spawns its own.
        warm.stage.is_waiting().then_some(warm)
    }
}

/// A cgroup with `ahead`'s limits, named after a fresh run id, or `None`.
fn new_cgroup(ahead: Ahead) -> Option<StageCgroup> {
    let run_id = (ahead.new_run_id)();
    let cgroup = create_for_run(&run_id, &ahead.limits).ok()?;
    Some(StageCgroup { run_id, cgroup })
}

/// Moves the just-spawned stage into its cgroup; without one (or if the move fails)
/// the run places it in its own.
fn place(stage: Stage, cgroup: Option<StageCgroup>) -> WarmStage {
    let cgroup = cgroup.filter(|c| {
        stage
            .pid()
            .and_then(|p| i32::try_from(p).ok())
            .is_some_and(|pid| c.cgroup.add_pid(pid).is_ok())
    });
    WarmStage { stage, cgroup }
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
