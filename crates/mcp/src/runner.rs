//! One confined run inside the server's session, on a blocking thread, in the order
//! DESIGN.md §2 gives: admission by the session policy (may refuse), the run with a
//! stop check that combines the caller's (request cancelled, server shutting down)
//! with the session's kill switch (a kill from any process), then accounting.
//!
//! Everything happens on the run's own thread, so a run is accounted even when the
//! tool call that started it is gone.

use std::sync::{Arc, OnceLock};

use skillsandbox_runtime::session::Refusal;
use skillsandbox_runtime::{RunOutcome, RunRequest};

use crate::log;
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

/// Admit, run `req` with `stop` and the session's kill watch, account. Blocking.
pub(crate) fn run_in_session(
    session: &ServerSession,
    mut req: RunRequest,
    mut stop: impl FnMut() -> Option<String> + Send + 'static,
    cancelled: impl Fn() -> bool,
) -> Ran {
    let admission = match session.admit() {
        Ok(a) => a,
        Err(r) => return Ran::Refused(r),
    };
    let _running = session.start_run();
    let mut killed = session.stop_check();
    let stopped_by_session: Arc<OnceLock<String>> = Arc::default();
    let noted = Arc::clone(&stopped_by_session);
    req.session_id = Some(session.id().to_string());
    req.should_stop = Box::new(move || {
        if let Some(why) = stop() {
            return Some(why);
        }
        let why = killed()?;
        // Only the first reason matters; a second set() is a no-op.
        let _ = noted.set(why.clone());
        Some(why)
    });
    let outcome = skillsandbox_runtime::run(req);
    let cancelled = cancelled();
    let mut accounted = session.finish_run(&admission, &outcome, cancelled);
    if let Some(why) = stopped_by_session.get() {
        let line = format!("stopped by the session kill switch: {why}");
        log(&line);
        accounted.session.insert(0, line);
    }
    Ran::Finished(Box::new(Finished {
        outcome,
        accounted,
        cancelled,
    }))
}
