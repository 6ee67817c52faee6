//! The agent-shell hook (DESIGN.md §9.1): a coding agent's PreToolUse event in, a
//! decision out. The shell tool's command is rewritten to run inside
//! `skillsandbox exec --profile P --session S`; file tools on paths the profile
//! hides are denied; anything the hook does not understand is denied with a
//! how-to-fix message, never answered with an empty reply.
//!
//! Pure: [`decide`] is a function of (event, profile, session view). Reading stdin,
//! finding the profile and asking the session store is the CLI's thin shell
//! (`skillsandbox hook`); writing agent settings is [`install`].

mod decide;
mod event;
mod explain;
pub mod install;
pub mod pin;
pub mod profile;
mod quote;

pub use decide::{decide, skill_of, Decision, HookProfile, SessionView};
pub use event::{parse_event, Agent, Event, EventError};
pub use explain::explain;
pub use quote::sh_single_quote;
