//! `skillsandbox oci`: the OCI runtime command line (runtime-spec `create`, `start`,
//! `state`, `kill`, `delete`, plus runc's `exec` and `features`) that containerd's runc shim
//! and dockerd call, so `docker run --runtime=skillsandbox`, a containerd runtime or a
//! Kubernetes RuntimeClass run a container as a SkillSandbox run.
//!
//! This crate owns the mapping of a bundle onto a run ([`bundle`]), the container
//! state directory ([`state`]) and the supervisor process ([`supervisor`]). It never
//! confines anything itself: every container is one call of the engine's single run
//! entry, [`skillsandbox_runtime::run`], so its layers, trace and audit record are
//! those of every other run. See docs/oci.md.

pub mod args;
pub mod bundle;
pub mod commands;
pub mod error;
pub mod exec;
pub mod seccomp;
pub mod state;
pub mod supervisor;

use std::io::Write;
use std::path::PathBuf;

pub use error::OciError;

use args::{Command, Global};

/// Run one runtime command; returns the process exit code. Errors go to stderr as
/// one line (and a hint), and to `--log` in the shim's JSON format.
pub fn main(argv: &[String]) -> i32 {
    let (global, cmd) = match args::parse(argv) {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "skillsandbox oci: {e}");
            return 2;
        }
    };
    match run(&global, cmd) {
        Ok(code) => code,
        Err(e) => {
            let mut msg = e.to_string();
            if let Some(h) = e.hint() {
                msg.push_str(&format!(" (hint: {h})"));
            }
            commands::log_error(global.log.as_ref(), global.log_format_json, &msg);
            let _ = writeln!(std::io::stderr(), "skillsandbox oci: {msg}");
            match e {
                OciError::Usage(_) => 2,
                _ => 1,
            }
        }
    }
}

/// The state root, symlinks resolved when it exists (`/var/run` is a link to `/run`:
/// the sandbox binds files from it and refuses symlinks).
fn root(g: &Global) -> PathBuf {
    let r = g
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(state::DEFAULT_ROOT));
    std::fs::canonicalize(&r).unwrap_or(r)
}

/// The global flags the supervisor needs again.
fn global_args(g: &Global) -> Vec<String> {
    let mut v = vec!["--root".to_string(), root(g).display().to_string()];
    if let Some(l) = &g.log {
        v.extend(["--log".into(), l.display().to_string()]);
        if g.log_format_json {
            v.extend(["--log-format".into(), "json".into()]);
        }
    }
    if let Some(m) = &g.default_manifest {
        v.extend(["--default-manifest".into(), m.display().to_string()]);
    }
    if let Some(s) = &g.default_session {
        v.extend(["--default-session".into(), s.clone()]);
    }
    if let Some(n) = &g.default_network {
        v.extend(["--default-network".into(), n.clone()]);
    }
    if g.trust_annotations {
        v.push("--trust-annotations".into());
    }
    for (flag, value) in [
        ("--egress-hosts", &g.egress_hosts),
        ("--trace-dir", &g.trace_dir),
        ("--audit-log", &g.audit_log),
    ] {
        if let Some(p) = value {
            v.extend([flag.to_string(), p.display().to_string()]);
        }
    }
    v
}

fn run(g: &Global, cmd: Command) -> Result<i32, OciError> {
    let root = root(g);
    let defaults = bundle::Defaults {
        manifest: g.default_manifest.clone(),
        session: g.default_session.clone(),
        network: g.default_network.clone(),
        trace_dir: g.trace_dir.clone(),
        audit_log: g.audit_log.clone(),
        trust_annotations: g.trust_annotations,
    };
    match cmd {
        Command::Create {
            id,
            bundle,
            pid_file,
            console_socket,
        } => {
            commands::create(
                &root,
                &id,
                &bundle,
                pid_file.as_deref(),
                console_socket.as_deref(),
                &global_args(g),
                &defaults,
            )?;
            Ok(0)
        }
        Command::Start { id } => commands::start(&root, &id).map(|()| 0),
        Command::State { id } => {
            let s = commands::state_json(&root, &id)?;
            let _ = writeln!(std::io::stdout(), "{s}");
            Ok(0)
        }
        Command::Kill { id, signal, all } => {
            let sig = args::parse_signal(&signal)?;
            commands::kill(&root, &id, sig, all).map(|()| 0)
        }
        Command::Delete { id, force } => commands::delete(&root, &id, force).map(|()| 0),
        Command::Features => {
            let _ = writeln!(std::io::stdout(), "{:#}", commands::features());
            Ok(0)
        }
        Command::Supervise { id } => {
            let dir = state::Dir::new(&root, &id)?;
            if let Some(h) = &g.egress_hosts {
                // Still one thread: the egress service reads it when it starts.
                std::env::set_var(skillsandbox_runtime::EGRESS_HOSTS_ENV, h);
            }
            Ok(supervisor::supervise(&dir, &defaults))
        }
        Command::Exec {
            id,
            process,
            pid_file,
            console_socket,
            detach,
        } => {
            let process = process.ok_or_else(|| {
                OciError::Usage("exec needs --process FILE (a runtime-spec process)".into())
            })?;
            exec::exec(
                &root,
                &id,
                &process,
                pid_file.as_deref(),
                console_socket.as_deref(),
                detach,
                &global_args(g),
            )
        }
        Command::ExecInside {
            id,
            process,
            console_socket,
        } => match exec::exec_inside(&root, &id, &process, console_socket.as_deref(), &defaults) {
            Ok(code) => Ok(code),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "skillsandbox: exec: {e}");
                Ok(125)
            }
        },
        Command::Unimplemented { name } => Err(OciError::Unsupported {
            what: format!("the command {name:?}"),
            hint:
                "skillsandbox oci implements create, start, state, kill, delete, exec and features"
                    .into(),
        }),
    }
}
