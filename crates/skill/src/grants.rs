//! A resolved policy as the lines a person approves (`network: api.example.com:443`,
//! `files.read: /data`), and the difference between two such sets, written so that a
//! widening stands out: `+ network: api.evil.example:443`, `~ files.read: /home → /`.

use std::path::Path;

use skillsandbox_manifest::{EgressRule, EnvPattern, Policy};

/// Every grant of `policy`, one `key: value` line each, in a fixed order.
pub fn lines(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for rule in &policy.network.egress {
        let (target, ports, http, private) = match rule {
            EgressRule::Domain {
                domain,
                ports,
                http,
                allow_private_resolution,
            } => (
                domain.to_string(),
                ports,
                Some(http),
                *allow_private_resolution,
            ),
            EgressRule::Cidr { cidr, ports } => (format!("cidr {cidr}"), ports, None, false),
        };
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        out.push(format!("network: {target}:{}", ports.join(",")));
        if private {
            out.push(format!("network.private_resolution: {target}"));
        }
        if let Some(h) = http.filter(|h| !h.is_empty()) {
            let mut parts = Vec::new();
            if !h.methods.is_empty() {
                parts.push(format!("methods {}", h.methods.join(",")));
            }
            if !h.paths.is_empty() {
                parts.push(format!("paths {}", h.paths.join(" ")));
            }
            for (name, v) in [
                ("max_bytes_out", h.max_bytes_out),
                ("max_bytes_in", h.max_bytes_in),
                ("max_requests", h.max_requests),
            ] {
                if let Some(v) = v {
                    parts.push(format!("{name} {v}"));
                }
            }
            out.push(format!("network.http: {target}: {}", parts.join("; ")));
        }
    }
    if policy.network.egress.is_empty() {
        out.push("network: none".to_owned());
    }
    let fs = &policy.filesystem;
    if fs.read.is_empty() && fs.write.is_empty() {
        out.push("files: none beyond the skill folder (read-only)".to_owned());
    }
    for (key, paths) in [
        ("files.read", &fs.read),
        ("files.write", &fs.write),
        ("files.deny", &fs.deny),
    ] {
        for p in paths {
            out.push(format!("{key}: {}", p.display()));
        }
    }
    for p in &policy.env.allow {
        out.push(match p {
            EnvPattern::Exact(n) => format!("env: {n}"),
            EnvPattern::Prefix(pre) => format!("env: {pre}*"),
        });
    }
    if policy.env.allow.is_empty() {
        out.push("env: none".to_owned());
    }
    let l = &policy.limits;
    out.push(format!("syscalls: {}", enum_name(&policy.syscalls)));
    out.push(format!("tier: {}", enum_name(&policy.tier)));
    // Not a grant, but it hides what the skill tries: a person approves it too.
    if policy.record_denials == Some(false) {
        out.push("record_denials: off (refused file accesses are not recorded)".to_owned());
    }
    out.push(format!("limits.memory_mb: {}", l.memory_mb));
    out.push(format!("limits.cpu_cores: {}", l.cpu_cores));
    out.push(format!(
        "limits.max_runtime_seconds: {}",
        l.max_runtime_seconds
    ));
    out.push(format!("limits.max_output_bytes: {}", l.max_output_bytes));
    out.push(format!("limits.max_processes: {}", l.max_processes));
    out.push(format!("limits.max_open_files: {}", l.max_open_files));
    out.push(format!("limits.max_file_size_mb: {}", l.max_file_size_mb));
    out.push(format!("limits.tmp_size_mb: {}", l.tmp_size_mb));
    let e = &policy.entrypoint;
    if e.command.is_empty() {
        out.push("entrypoint: none chosen (instructions only, or several scripts)".to_owned());
        return out;
    }
    let mut cmd = vec![e.command.clone()];
    cmd.extend(e.args.iter().cloned());
    out.push(format!(
        "entrypoint: {} (in {})",
        cmd.join(" "),
        e.workdir.display()
    ));
    out
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Keys that hold one value each: a change is `~ key: old → new`.
fn is_scalar(key: &str) -> bool {
    matches!(key, "syscalls" | "tier" | "entrypoint") || key.starts_with("limits.")
}

fn split(line: &str) -> (&str, &str) {
    line.split_once(": ").unwrap_or((line, ""))
}

/// Whether `wide` grants at least what `narrow` did (same key): a parent directory,
/// or the same network target on more ports.
fn covers(key: &str, wide: &str, narrow: &str) -> bool {
    match key {
        "files.read" | "files.write" => Path::new(narrow).starts_with(wide),
        "network" => {
            let host = |s: &str| {
                s.rsplit_once(':')
                    .map_or(s.to_owned(), |(h, _)| h.to_owned())
            };
            host(wide) == host(narrow)
                || host(wide)
                    .strip_prefix("*.")
                    .is_some_and(|suffix| host(narrow).ends_with(&format!(".{suffix}")))
        }
        _ => false,
    }
}

/// The change from the approved lines `old` to `new`: `+` granted now, `-` no longer
/// granted, `~` one grant turned into another. Empty when they are the same set.
pub fn diff(old: &[String], new: &[String]) -> Vec<String> {
    let mut added: Vec<&String> = new.iter().filter(|l| !old.contains(l)).collect();
    let mut removed: Vec<&String> = old.iter().filter(|l| !new.contains(l)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < removed.len() {
        let (key, before) = split(removed[i]);
        let partner = added.iter().position(|a| {
            let (k, after) = split(a);
            k == key && (is_scalar(key) || covers(key, after, before))
        });
        if let Some(j) = partner {
            let (_, after) = split(added[j]);
            out.push(format!("~ {key}: {before} → {after}"));
            added.remove(j);
            removed.remove(i);
        } else {
            i += 1;
        }
    }
    out.extend(added.iter().map(|l| format!("+ {l}")));
    out.extend(removed.iter().map(|l| format!("- {l}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn widening_is_shown_as_such() {
        let old = v(&[
            "network: api.x.com:443",
            "files.read: /home",
            "limits.memory_mb: 128",
            "env: LANG",
        ]);
        let new = v(&[
            "network: api.x.com:443",
            "network: api.evil.example:443",
            "files.read: /",
            "limits.memory_mb: 4096",
        ]);
        assert_eq!(
            diff(&old, &new),
            vec![
                "~ files.read: /home → /",
                "~ limits.memory_mb: 128 → 4096",
                "+ network: api.evil.example:443",
                "- env: LANG",
            ]
        );
        assert!(diff(&new, &new).is_empty());
        assert_eq!(
            diff(&v(&["network: a.com:443"]), &v(&["network: a.com:443,80"])),
            vec!["~ network: a.com:443 → a.com:443,80"]
        );
        assert_eq!(
            diff(&v(&["files.read: /a"]), &v(&["files.read: /b"])),
            vec!["+ files.read: /b", "- files.read: /a"]
        );
    }
}
