//! Skills as they ship: agent-skill folders (`SKILL.md` + scripts), with or without a
//! `skillsandbox.yaml`.
//!
//! - [`load`]: the one way a skill is loaded to run, check or approve;
//! - [`skill_md`]: the `SKILL.md` front matter, per the agent-skills format;
//! - [`entry`]: the entrypoint of a skill that has no manifest;
//! - [`tree`]: the canonical content hash of a skill folder;
//! - [`grants`]: a policy as approvable lines, and their diff;
//! - [`lock`]: the approval lockfile and this machine's approval store.
//! - [`danger`]: credential paths and exfiltration-shaped hosts (never granted, flagged).
//! - [`learn`]: a least-privilege manifest from what an observed run did.
//! - [`scan`]: a folder of skills, their states and static red flags.
//!
//! Reads skill folders and the lockfile; writes only the lockfile and the approval
//! store, and only from [`lock::approve`], which no sandboxed process can reach.

pub mod danger;
pub mod entry;
pub mod grants;
pub mod learn;
mod load;
pub mod lock;
pub mod scan;
pub mod skill_md;
pub mod tree;

pub use load::{load, load_for_approval, synthesized_manifest, LoadedSkill};
pub use skill_md::{SkillMd, SKILL_MD};
