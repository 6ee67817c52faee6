//! Linux confinement: `plan` lowers a [`Policy`](skillsandbox_manifest::Policy) into a
//! pure-data launch plan; `launch` (supervisor) and `stage` (child) run the staged
//! setup of DESIGN.md §3; `sys` holds the raw syscalls.
//!
//! No tokio in the child path: everything here that runs after the fork is plain
//! blocking code.

pub mod cgroup;
mod confine;
pub mod disable;
pub mod host;
pub mod join;
pub mod landlock;
pub mod launch;
mod mounts;
pub mod net;
pub mod plan;
pub mod probe;
pub mod process_tier;
pub mod proto;
pub mod seccomp;
pub mod stage;
pub mod sys;
pub mod timing;
pub mod warm;
