//! A container's state directory (`<root>/<id>/`) and what the host's `/proc` says
//! about its supervisor.
//!
//! Files: `container.json` (ours, written by the supervisor), `exec.fifo` (present
//! while created: `start` opens it to release the process), `created` (the sandbox
//! is up), `error` (why it did not come up), `stop` (a kill request: the signal), and
//! `trace` (the trace's path, once the run ended).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io, OciError};

pub const DEFAULT_ROOT: &str = "/run/skillsandbox-oci";

/// What we keep per container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    /// The supervisor: the process in `--pid-file`, whose exit status is the
    /// container's. 0 until it is up.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), so a reused pid is not taken for it.
    pub pid_start: u64,
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// Where the policy came from (annotation, manifest path, or deny-all).
    pub policy_source: String,
    pub session: Option<String>,
    /// `skillsandbox` (ours: the manifest's egress, or deny-all) or `engine` (the
    /// engine's network namespace, egress not enforced). Empty in older records: ours.
    #[serde(default)]
    pub network: String,
    /// The container's `process.user` (uid, gid inside); `docker exec` runs as it.
    #[serde(default)]
    pub user: (u32, u32),
    /// `create --console-socket`: where the terminal's master end goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

pub fn valid_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OciError::BadId(id.to_string()))
    }
}

pub struct Dir {
    pub path: PathBuf,
    pub id: String,
}

impl Dir {
    pub fn new(root: &Path, id: &str) -> Result<Self, OciError> {
        valid_id(id)?;
        Ok(Dir {
            path: root.join(id),
            id: id.to_string(),
        })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    pub fn require(&self) -> Result<(), OciError> {
        if self.exists() {
            Ok(())
        } else {
            Err(OciError::NotFound(self.id.clone()))
        }
    }

    pub fn read(&self) -> Result<Record, OciError> {
        self.require()?;
        let p = self.file("container.json");
        let text = std::fs::read_to_string(&p).map_err(io("read", &p))?;
        serde_json::from_str(&text).map_err(|e| OciError::Config {
            path: p,
            detail: e.to_string(),
        })
    }

    /// Atomically (write and rename).
    pub fn write(&self, rec: &Record) -> Result<(), OciError> {
        let p = self.file("container.json");
        let tmp = self.file(".container.json.tmp");
        let text = serde_json::to_string_pretty(rec).map_err(|e| OciError::Config {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(io("rename", &p))
    }

    pub fn status(&self, rec: &Record) -> Status {
        if rec.pid <= 0 {
            return if self.file("error").exists() {
                Status::Stopped
            } else {
                Status::Creating
            };
        }
        if !alive(rec.pid, rec.pid_start) {
            return Status::Stopped;
        }
        if self.file("exec.fifo").exists() {
            if self.file("created").exists() {
                Status::Created
            } else {
                Status::Creating
            }
        } else {
            Status::Running
        }
    }
}

/// `/proc/PID/stat` after the command name: (state, start time).
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line is the 20th after the command name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn start_time(pid: i32) -> u64 {
    stat(pid).map_or(0, |(_, s)| s)
}

/// The process exists, is not a zombie, and is the one we started.
pub fn alive(pid: i32, start: u64) -> bool {
    match stat(pid) {
        Some((state, s)) => state != 'Z' && state != 'X' && (start == 0 || s == start),
        None => false,
    }
}

/// Every descendant of `pid` (threads' children included), breadth first.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                if !out.contains(&c) {
                    out.push(c);
                    queue.push(c);
                }
            }
        }
    }
    out
}

/// The pid of `pid` in its innermost PID namespace and how deep that is
/// (`NSpid:` of `/proc/PID/status`; depth 1 = the host's).
pub fn inner_pid(pid: i32) -> Option<(i32, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let ids: Vec<i32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((*ids.last()?, ids.len()))
}

/// The container's processes: the supervisor's descendants inside the sandbox's PID
/// namespace, as (host pid, pid inside), lowest pid inside first. Pid 1 there is the
/// sandbox's own init; the container's process is the next.
pub fn sandbox_processes(supervisor: i32) -> Vec<(i32, i32)> {
    let mut v: Vec<(i32, i32)> = descendants(supervisor)
        .into_iter()
        .filter_map(|p| match inner_pid(p) {
            Some((inner, depth)) if depth >= 2 => Some((p, inner)),
            _ => None,
        })
        .collect();
    v.sort_by_key(|(_, inner)| *inner);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("0ce75c6b76f6a2f2").is_ok());
        assert!(valid_id("a.b_c-d").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(valid_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_follows_the_supervisor_and_the_fifo() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::new(t.path(), "c1").unwrap();
        std::fs::create_dir(&d.path).unwrap();
        let me = std::process::id() as i32;
        let mut rec = Record {
            id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(d.status(&rec), Status::Creating);
        rec.pid = me;
        rec.pid_start = start_time(me);
        std::fs::write(d.file("exec.fifo"), "").unwrap();
        assert_eq!(d.status(&rec), Status::Creating);
        std::fs::write(d.file("created"), "").unwrap();
        assert_eq!(d.status(&rec), Status::Created);
        std::fs::remove_file(d.file("exec.fifo")).unwrap();
        assert_eq!(d.status(&rec), Status::Running);
        // Same pid, another start time: a reused pid is not our process.
        rec.pid_start += 1;
        assert_eq!(d.status(&rec), Status::Stopped);
    }

    #[test]
    fn this_process_is_on_the_host_pid_namespace() {
        let (_, depth) = inner_pid(std::process::id() as i32).unwrap();
        assert!(depth >= 1);
        assert!(alive(std::process::id() as i32, 0));
        assert!(!alive(i32::MAX, 0));
    }
}
