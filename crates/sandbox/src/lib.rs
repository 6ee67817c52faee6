//! Linux confinement: `plan` lowers a [`Policy`](skillsandbox_manifest::Policy) into a
//! pure-data launch plan; `launch` runs the staged setup (DESIGN.md §3); `sys` holds
//! the raw syscalls.
//!
//! No tokio in the child path: everything here that runs after the fork is plain
//! blocking code.

pub mod net;

pub mod cgroup;
