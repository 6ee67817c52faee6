//! One confined run inside the server's session, on a blocking thread. The run entry
//! (`skillsandbox_runtime::run`) admits it into the session (may refuse), stops it on
//! the caller's signal (request cancelled, server shutting down) or the session's
//! kill switch (a kill from any process), and accounts it; this module keeps the
//! server's own counts and shapes what the agent is told.
//!
//! Everything happens on the run's own thread, so a run is accounted even when the
//! tool call that started it is gone.

use skillsandbox_runtime::session::Refusal;
use skillsandbox_runtime::{RunOutcome, RunRequest};

use crate::session::{RunAccounted, ServerSession};

/// How a run request ended.
pub(crate) enum Ran {
    /// The session policy refused the run; nothing started.
    Refused(Refusal),
    /// The run happened (whatever its exit) and was accounted.
    Finished(Box<Finished>),
}

pub(crate) struct Finished {
    pub outcome: RunOutcome,
    /// What accounting triggered (for the tool result's `session` field), with
    /// the kill-switch stop first when that is what ended the run.
    pub accounted: RunAccounted,
    /// The request was cancelled (its result is never sent).
    pub cancelled: bool,
}

/// Run `req` in the server's session, stopped by `stop` too. Blocking.
pub(crate) fn run_in_session(
    session: &ServerSession,
    mut req: RunRequest,
    stop: impl FnMut() -> Option<String> + Send + 'static,
    cancelled: impl Fn() -> bool,
) -> Ran {
    req.session = Some(session.run_session());
    req.should_stop = Box::new(stop);
    let running = session.start_run();
    let outcome = match skillsandbox_runtime::run(req) {
        Ok(o) => o,
        Err(refusal) => {
            drop(running);
            session.note_refused(&refusal);
            return Ran::Refused(refusal);
        }
    };
    drop(running);
    let cancelled = cancelled();
    let accounted = session.finish_run(&outcome, cancelled);
    Ran::Finished(Box::new(Finished {
        outcome,
        accounted,
        cancelled,
    }))
}
