//! The runtime command line as containerd's runc shim and dockerd write it
//! (`runc [global flags] COMMAND [flags] ID [ARGS]`). Parsed by hand, not by clap:
//! a flag the shim adds in a later version must not break a create, so unknown
//! flags are kept and reported, never fatal, and `--flag=value` works everywhere.

use std::path::PathBuf;

use crate::error::OciError;

/// Flags before the command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Global {
    /// Where container state lives (`--root`); default `/run/skillsandbox-oci`.
    pub root: Option<PathBuf>,
    /// Where errors go as JSON lines, for the shim (`--log`).
    pub log: Option<PathBuf>,
    pub log_format_json: bool,
    /// Accepted: SkillSandbox always puts the sandbox in a cgroup of its own (the
    /// spec's `cgroupsPath` is not used with either driver), so it changes nothing.
    pub systemd_cgroup: bool,
    /// Operator defaults from the runtime's registration (dockerd `runtimeArgs`):
    /// the manifest and session of containers whose annotations name none.
    pub default_manifest: Option<PathBuf>,
    pub default_session: Option<String>,
    /// `--default-network engine`: the engine's network for containers whose
    /// annotations do not say (Docker 20.10 cannot set annotations).
    pub default_network: Option<String>,
    /// A hosts-format file the egress service consults before the host resolver for
    /// declared names (internal or test names; as `SKILLSANDBOX_EGRESS_HOSTS`).
    pub egress_hosts: Option<PathBuf>,
    /// Write each container's trace to `DIR/<container id>-<ms>.json` (default: the
    /// state directory of the user the engine runs us as).
    pub trace_dir: Option<PathBuf>,
    /// The audit log (default: `SKILLSANDBOX_AUDIT_LOG` or the state directory's).
    pub audit_log: Option<PathBuf>,
    /// Manifests from annotations may grant host paths and secrets (`--trust-annotations`).
    pub trust_annotations: bool,
    /// Flags we do not know (kept for the log).
    pub unknown: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Create {
        id: String,
        bundle: PathBuf,
        pid_file: Option<PathBuf>,
        console_socket: Option<PathBuf>,
    },
    Start {
        id: String,
    },
    State {
        id: String,
    },
    Kill {
        id: String,
        signal: String,
        all: bool,
    },
    Delete {
        id: String,
        force: bool,
    },
    Features,
    /// `runc exec`: one more process in the running container (`docker exec`).
    Exec {
        id: String,
        process: Option<PathBuf>,
        pid_file: Option<PathBuf>,
        console_socket: Option<PathBuf>,
        detach: bool,
    },
    /// Internal: the process `exec` starts (its pid is the exec'd process's).
    ExecInside {
        id: String,
        process: PathBuf,
        /// The engine's console socket, for a process with a terminal.
        console_socket: Option<PathBuf>,
    },
    /// Named but not implemented: refused with a clear error.
    Unimplemented {
        name: String,
    },
    /// Internal: the supervisor `create` starts (its pid is the container's).
    Supervise {
        id: String,
    },
}

/// Global flags that take a value (ours and runc's).
const GLOBAL_VALUED: &[&str] = &[
    "--root",
    "--log",
    "--log-format",
    "--criu",
    "--rootless",
    "--default-manifest",
    "--default-session",
    "--default-network",
    "--egress-hosts",
    "--trace-dir",
    "--audit-log",
];

fn split_flag(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f, Some(v)),
        _ => (arg, None),
    }
}

/// Parse the whole argument list (without the program name and `oci`).
pub fn parse(args: &[String]) -> Result<(Global, Command), OciError> {
    let mut g = Global::default();
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let (flag, inline) = split_flag(&args[i]);
        let value = if GLOBAL_VALUED.contains(&flag) {
            match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    Some(
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| OciError::Usage(format!("{flag} needs a value")))?,
                    )
                }
            }
        } else {
            None
        };
        match (flag, value) {
            ("--root", Some(v)) => g.root = Some(PathBuf::from(v)),
            ("--log", Some(v)) => g.log = Some(PathBuf::from(v)),
            ("--log-format", Some(v)) => g.log_format_json = v == "json",
            ("--default-manifest", Some(v)) => g.default_manifest = Some(PathBuf::from(v)),
            ("--default-session", Some(v)) => g.default_session = Some(v),
            ("--default-network", Some(v)) => g.default_network = Some(v),
            ("--egress-hosts", Some(v)) => g.egress_hosts = Some(PathBuf::from(v)),
            ("--trace-dir", Some(v)) => g.trace_dir = Some(PathBuf::from(v)),
            ("--audit-log", Some(v)) => g.audit_log = Some(PathBuf::from(v)),
            ("--systemd-cgroup", _) => g.systemd_cgroup = true,
            ("--trust-annotations", _) => g.trust_annotations = true,
            (f, _) => g.unknown.push(f.to_string()),
        }
        i += 1;
    }
    let Some(name) = args.get(i) else {
        return Err(OciError::Usage(
            "skillsandbox oci [--root DIR] [--log FILE] COMMAND ... (create, start, state, kill, delete, features)".into(),
        ));
    };
    let rest = &args[i + 1..];
    let cmd = command(name, rest, &mut g.unknown)?;
    Ok((g, cmd))
}

/// Flags of a command: (flag, takes a value).
fn command_flags(name: &str) -> &'static [(&'static str, bool)] {
    match name {
        "create" | "run" => &[
            ("--bundle", true),
            ("-b", true),
            ("--pid-file", true),
            ("--console-socket", true),
            ("--preserve-fds", true),
            ("--no-pivot", false),
            ("--no-new-keyring", false),
            ("--detach", false),
            ("-d", false),
        ],
        "kill" => &[("--all", false), ("-a", false)],
        "delete" => &[("--force", false), ("-f", false)],
        "exec" => &[
            ("--process", true),
            ("-p", true),
            ("--pid-file", true),
            ("--console-socket", true),
            ("--detach", false),
            ("-d", false),
        ],
        _ => &[],
    }
}

fn command(name: &str, rest: &[String], unknown: &mut Vec<String>) -> Result<Command, OciError> {
    let known = command_flags(name);
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        if a == "--" {
            positional.extend(rest[i + 1..].iter().cloned());
            break;
        }
        if a.starts_with('-') && a.len() > 1 {
            let (flag, inline) = split_flag(a);
            match known.iter().find(|(f, _)| *f == flag) {
                Some((_, true)) => {
                    let v = match inline {
                        Some(v) => v.to_string(),
                        None => {
                            i += 1;
                            rest.get(i).cloned().ok_or_else(|| {
                                OciError::Usage(format!("{name} {flag} needs a value"))
                            })?
                        }
                    };
                    flags.push((flag.to_string(), Some(v)));
                }
                Some((_, false)) => flags.push((flag.to_string(), None)),
                None => unknown.push(flag.to_string()),
            }
        } else {
            positional.push(a.clone());
        }
        i += 1;
    }
    let get = |names: &[&str]| {
        flags
            .iter()
            .rev()
            .find(|(f, _)| names.contains(&f.as_str()))
            .and_then(|(_, v)| v.clone())
    };
    let has = |names: &[&str]| flags.iter().any(|(f, _)| names.contains(&f.as_str()));
    let id = || {
        positional
            .first()
            .cloned()
            .ok_or_else(|| OciError::Usage(format!("{name} needs a container id")))
    };
    Ok(match name {
        "create" => Command::Create {
            id: id()?,
            // runc's default: the current directory.
            bundle: PathBuf::from(get(&["--bundle", "-b"]).unwrap_or_else(|| ".".into())),
            pid_file: get(&["--pid-file"]).map(PathBuf::from),
            console_socket: get(&["--console-socket"]).map(PathBuf::from),
        },
        "start" => Command::Start { id: id()? },
        "state" => Command::State { id: id()? },
        "kill" => Command::Kill {
            id: id()?,
            signal: positional
                .get(1)
                .cloned()
                .unwrap_or_else(|| "SIGTERM".into()),
            all: has(&["--all", "-a"]),
        },
        "delete" => Command::Delete {
            id: id()?,
            force: has(&["--force", "-f"]),
        },
        "features" => Command::Features,
        "_supervise" => Command::Supervise { id: id()? },
        "exec" => Command::Exec {
            id: id()?,
            process: get(&["--process", "-p"]).map(PathBuf::from),
            pid_file: get(&["--pid-file"]).map(PathBuf::from),
            console_socket: get(&["--console-socket"]).map(PathBuf::from),
            detach: has(&["--detach", "-d"]),
        },
        "_exec" => Command::ExecInside {
            id: id()?,
            process: positional
                .get(1)
                .map(PathBuf::from)
                .ok_or_else(|| OciError::Usage("_exec needs a process file".into()))?,
            console_socket: positional.get(2).map(PathBuf::from),
        },
        other => Command::Unimplemented {
            name: other.to_string(),
        },
    })
}

/// `9`, `KILL`, `SIGKILL` → 9.
pub fn parse_signal(s: &str) -> Result<i32, OciError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(OciError::BadSignal(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "WINCH" => libc::SIGWINCH,
        _ => return Err(OciError::BadSignal(s.to_string())),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_shims_create_line_parses() {
        let (g, c) = parse(&v(
            "--root /run/x/moby --log /b/log.json --log-format json --systemd-cgroup \
             create --bundle /b --pid-file /b/init.pid --no-new-keyring abc",
        ))
        .unwrap();
        assert_eq!(g.root, Some(PathBuf::from("/run/x/moby")));
        assert_eq!(g.log, Some(PathBuf::from("/b/log.json")));
        assert!(g.log_format_json && g.systemd_cgroup);
        assert_eq!(
            c,
            Command::Create {
                id: "abc".into(),
                bundle: "/b".into(),
                pid_file: Some("/b/init.pid".into()),
                console_socket: None,
            }
        );
    }

    #[test]
    fn unknown_flags_are_kept_not_fatal_and_equals_form_works() {
        let (g, c) = parse(&v("--root=/r --future-flag delete --force --also-new abc")).unwrap();
        assert_eq!(g.root, Some(PathBuf::from("/r")));
        assert_eq!(g.unknown, vec!["--future-flag", "--also-new"]);
        assert_eq!(
            c,
            Command::Delete {
                id: "abc".into(),
                force: true
            }
        );
    }

    #[test]
    fn kill_takes_an_optional_signal_and_all() {
        let (_, c) = parse(&v("kill --all abc 9")).unwrap();
        assert_eq!(
            c,
            Command::Kill {
                id: "abc".into(),
                signal: "9".into(),
                all: true
            }
        );
        let (_, c) = parse(&v("kill abc")).unwrap();
        assert!(matches!(c, Command::Kill { signal, all: false, .. } if signal == "SIGTERM"));
    }

    #[test]
    fn exec_parses_pause_is_unimplemented_and_missing_values_are_usage_errors() {
        let (_, c) = parse(&v("exec --process /p.json --detach --pid-file /x.pid abc")).unwrap();
        assert_eq!(
            c,
            Command::Exec {
                id: "abc".into(),
                process: Some("/p.json".into()),
                pid_file: Some("/x.pid".into()),
                console_socket: None,
                detach: true
            }
        );
        let (_, c) = parse(&v("pause abc")).unwrap();
        assert_eq!(
            c,
            Command::Unimplemented {
                name: "pause".into()
            }
        );
        assert!(matches!(parse(&v("--root")), Err(OciError::Usage(_))));
        assert!(matches!(parse(&v("start")), Err(OciError::Usage(_))));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("sigint").unwrap(), 2);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("BOGUS").is_err());
    }
}
