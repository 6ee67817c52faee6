//! Launch phases on one clock: `CLOCK_MONOTONIC`, which the supervisor and the stage
//! processes share (no time namespace is created), so marks taken on both sides of
//! the launch sort into one timeline. Each [`Mark`] ends a phase: its duration is the
//! gap since the mark before it (`skillsandbox exec --timings`, the trace's
//! `timings`).
//!
//! The stage processes collect their marks in a process-wide list ([`stage_mark`]):
//! they are single-threaded and pass the list on through `fork`, and the skill
//! process sends it with `Ready`. The supervisor, which runs many launches at once,
//! keeps its marks per launch ([`Marks`]).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The end of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub phase: String,
    /// `CLOCK_MONOTONIC`, microseconds.
    pub at_us: u64,
}

/// `CLOCK_MONOTONIC` now, in microseconds.
pub fn now_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// One launch's marks, in the order taken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks(pub Vec<Mark>);

impl Marks {
    /// Starts the timeline now (the mark every phase is measured from).
    pub fn start() -> Self {
        let mut m = Self::default();
        m.mark("start");
        m
    }

    pub fn mark(&mut self, phase: &str) {
        self.0.push(Mark {
            phase: phase.to_string(),
            at_us: now_us(),
        });
    }

    /// Adds marks taken elsewhere (the stage's). Marks from before this timeline
    /// started are left out: a stage spawned ahead of its run ([`crate::warm`]) did
    /// that work before the run began, off its path.
    pub fn extend(&mut self, marks: Vec<Mark>) {
        let start = self.0.first().map_or(0, |m| m.at_us);
        self.0
            .extend(marks.into_iter().filter(|m| m.at_us >= start));
    }

    /// Every phase with its duration in microseconds, in time order; the first mark
    /// only starts the clock.
    pub fn phases(&self) -> Vec<(String, u64)> {
        let mut all = self.0.clone();
        all.sort_by_key(|m| m.at_us);
        all.windows(2)
            .map(|w| (w[1].phase.clone(), w[1].at_us.saturating_sub(w[0].at_us)))
            .collect()
    }
}

static STAGE: Mutex<Vec<Mark>> = Mutex::new(Vec::new());

/// Marks the end of a stage-side phase (stage processes only).
pub(crate) fn stage_mark(phase: &str) {
    if let Ok(mut g) = STAGE.lock() {
        g.push(Mark {
            phase: phase.to_string(),
            at_us: now_us(),
        });
    }
}

/// The stage-side marks taken so far in this process and its ancestors.
pub(crate) fn stage_marks() -> Vec<Mark> {
    STAGE.lock().map(|g| g.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_gaps_between_marks_in_time_order() {
        let m = Marks(vec![
            Mark {
                phase: "start".into(),
                at_us: 100,
            },
            Mark {
                phase: "c".into(),
                at_us: 400,
            },
            Mark {
                phase: "b".into(),
                at_us: 250,
            },
        ]);
        assert_eq!(m.phases(), vec![("b".into(), 150), ("c".into(), 150)]);
        assert!(Marks::default().phases().is_empty());
        // A mark from before the timeline started (a stage spawned ahead) is left out.
        let mut m = Marks(vec![Mark {
            phase: "start".into(),
            at_us: 100,
        }]);
        m.extend(vec![
            Mark {
                phase: "early".into(),
                at_us: 50,
            },
            Mark {
                phase: "late".into(),
                at_us: 130,
            },
        ]);
        assert_eq!(m.phases(), vec![("late".into(), 30)]);
        let live = Marks::start();
        assert!(live.0[0].at_us > 0);
    }
}
