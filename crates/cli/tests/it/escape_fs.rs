//! Escape tests, files and identity: host secrets (environment, `/proc/*/environ`,
//! `~/.ssh`, `~/.aws`, `/etc/shadow`, host `/tmp`, also through `/proc/<pid>/root`),
//! writes outside the declared paths, symlink escapes through write dirs, `/dev` and
//! `/proc` writes, inherited fds, capabilities and the uid map, and two weaknesses
//! of declared write trees (setuid files, `deny` carve-outs). Harness: `escape.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::escape::{assert_refused, skill_dir, Lab, Outcome};

const GONE: &[&str] = &["ENOENT", "EACCES", "EPERM"];
const READ_ONLY: &[&str] = &["EROFS", "EACCES", "EPERM"];

#[test]
fn host_environment_and_proc_environ_secrets_stay_outside() {
    let Some(lab) = Lab::new() else { return };
    let o = lab.ops(
        &[],
        &[
            "env",
            "procenv",
            "read",
            "/proc/self/environ",
            "read",
            "/proc/1/environ",
        ],
    );
    o.assert_done("OPS_DONE");
    assert!(
        o.stdout.contains("ENV PATH="),
        "the payload dumped its environment:\n{}",
        o.dump()
    );
    assert!(!o.stdout.contains("AWS_SECRET_ACCESS_KEY"), "{}", o.dump());
    assert!(!o.stdout.contains("GITHUB_TOKEN"), "{}", o.dump());
    assert!(
        o.stdout.contains("OP procenv /proc/"),
        "no process was visible at all:\n{}",
        o.dump()
    );
    o.assert_no_secret(&lab.secret);
}

#[test]
fn credential_files_and_host_tmp_are_unreachable() {
    let Some(lab) = Lab::new() else { return };
    let home = lab.home.display().to_string();
    let tmp_secret = lab.tmp_secret.display().to_string();
    let mut files = vec![
        format!("{home}/.ssh/id_rsa"),
        format!("{home}/.aws/credentials"),
        format!("{home}/.env"),
        "/home/sandbox/.ssh/id_rsa".to_string(),
        "/root/.ssh/id_rsa".to_string(),
        "/root/.aws/credentials".to_string(),
        "/etc/shadow".to_string(),
        "/etc/gshadow".to_string(),
        "/etc/sudoers".to_string(),
        tmp_secret.clone(),
    ];
    // The same files through other processes' view of the filesystem: PID 1 is the
    // sandbox's init and the parent of the skill.
    for pid in ["1", "self", "thread-self"] {
        files.push(format!("/proc/{pid}/root{tmp_secret}"));
        files.push(format!("/proc/{pid}/root{home}/.ssh/id_rsa"));
        files.push(format!("/proc/{pid}/cwd/../../../{tmp_secret}"));
    }
    let dirs = [
        home.clone(),
        format!("{home}/.ssh"),
        "/root".to_string(),
        lab.dir.path().display().to_string(),
        "/sys/fs/cgroup".to_string(),
        "/sys/kernel".to_string(),
        "/proc/1/root/root".to_string(),
    ];
    let mut ops: Vec<&str> = Vec::new();
    for f in &files {
        ops.extend(["read", f.as_str()]);
    }
    for d in &dirs {
        ops.extend(["list", d.as_str()]);
    }
    let o = lab.ops(&[], &ops);
    o.assert_done("OPS_DONE");
    for f in &files {
        assert_refused(&o, "read", f, GONE);
    }
    for d in &dirs {
        assert_refused(&o, "list", d, GONE);
    }
    o.assert_no_secret(&lab.secret);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

#[test]
fn writes_outside_declared_paths_are_refused() {
    let Some(lab) = Lab::new() else { return };
    let ro = lab.path("ro");
    let rw = lab.path("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("data.txt"), "original\n").unwrap();
    let (ro_s, rw_s) = (ro.display().to_string(), rw.display().to_string());
    let ro_file = format!("{ro_s}/data.txt");
    let ro_new = format!("{ro_s}/new.txt");
    let rw_ok = format!("{rw_s}/ok.txt");
    let host_name_before = hostname();
    let denied_writes = [
        "/usr/bin/escape-probe",
        "/usr/lib/escape-probe",
        "/bin/escape-probe",
        "/lib/escape-probe",
        "/opt/escape-probe",
        "/etc/escape-probe",
        "/etc/passwd",
        "/etc/resolv.conf",
        "/escape-probe",
        "/var/escape-probe",
        "/run/escape-probe",
        ro_file.as_str(),
        ro_new.as_str(),
        "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger", // masked; ENOENT where the kernel has no magic SysRq
        "/dev/escape-probe",
        "/dev/shm/../escape-probe",
    ];
    let denied_mkdirs = [
        "/usr/escape-probe-dir",
        "/etc/escape-probe-dir",
        "/escape-probe-dir",
    ];
    let mut ops: Vec<&str> = Vec::new();
    for w in &denied_writes {
        ops.extend(["write", w]);
    }
    for d in &denied_mkdirs {
        ops.extend(["mkdir", d]);
    }
    // Positive controls: the payload can write where it was allowed to.
    ops.extend([
        "write",
        rw_ok.as_str(),
        "write",
        "/tmp/ok.txt",
        "write",
        "/home/sandbox/ok.txt",
    ]);
    let o = lab.ops(&["--read", &ro_s, "--write", &rw_s], &ops);
    o.assert_done("OPS_DONE");
    for w in &denied_writes {
        let ok: &[&str] = if w.starts_with("/proc/sysrq") {
            &["EROFS", "EACCES", "EPERM", "ENOENT"]
        } else {
            READ_ONLY
        };
        assert_refused(&o, "write", w, ok);
    }
    for d in &denied_mkdirs {
        assert_refused(&o, "mkdir", d, READ_ONLY);
    }
    for ok in [rw_ok.as_str(), "/tmp/ok.txt", "/home/sandbox/ok.txt"] {
        assert!(
            o.op("write", ok).starts_with("OK"),
            "control write failed: {ok}\n{}",
            o.dump()
        );
    }
    // The host is unchanged.
    assert_eq!(
        std::fs::read_to_string(ro.join("data.txt")).unwrap(),
        "original\n"
    );
    assert!(!ro.join("new.txt").exists());
    assert_eq!(hostname(), host_name_before);
    for p in [
        "/usr/bin/escape-probe",
        "/etc/escape-probe",
        "/escape-probe",
        "/opt/escape-probe",
    ] {
        assert!(
            !std::path::Path::new(p).exists(),
            "BREACH: {p} appeared on the host"
        );
    }
    assert!(std::fs::read_to_string(rw.join("ok.txt"))
        .unwrap()
        .contains("escape-probe"));
}

#[test]
fn proc_kcore_and_kernel_internals_are_masked() {
    let Some(lab) = Lab::new() else { return };
    let o = lab.ops(
        &[],
        &[
            "read",
            "/proc/kcore",
            "read",
            "/proc/kallsyms",
            "read",
            "/proc/keys",
            "read",
            "/proc/timer_list",
        ],
    );
    o.assert_done("OPS_DONE");
    for f in [
        "/proc/kcore",
        "/proc/kallsyms",
        "/proc/keys",
        "/proc/timer_list",
    ] {
        let r = o.op("read", f);
        assert!(
            r == "OK b''" || r.starts_with("ERR "),
            "BREACH: {f} readable: {r}\n{}",
            o.dump()
        );
    }
}

#[test]
fn skill_dir_is_read_only_inside_and_unchanged_on_host() {
    let Some(lab) = Lab::new() else { return };
    let py = crate::escape::ops_py();
    let payloads = crate::escape::payload_dir().display().to_string();
    let dir = skill_dir(
        &lab,
        "ro-skill",
        &format!("  filesystem:\n    read: [{payloads}]"),
        "  memory_mb: 128",
        "python3",
        &[],
    );
    std::fs::write(dir.join("main.py"), "print('original')\n").unwrap();
    let host_main = dir.join("main.py").display().to_string();
    let o = Outcome::from(
        lab.cmd()
            .args(["run", "--json"])
            .arg(&dir)
            .args([
                "--",
                &py,
                "write",
                "/skill/main.py",
                "write",
                "/skill/new.py",
                "write",
                &host_main,
                "chmod",
                "777",
                "/skill/main.py",
            ])
            .output()
            .unwrap(),
    );
    o.assert_done("OPS_DONE");
    assert_refused(&o, "write", "/skill/main.py", READ_ONLY);
    assert_refused(&o, "write", "/skill/new.py", READ_ONLY);
    // The skill dir's host path is not mounted at all.
    assert_refused(&o, "write", &host_main, &["ENOENT", "EROFS", "EACCES"]);
    assert_refused(&o, "chmod", "/skill/main.py", READ_ONLY);
    assert_eq!(
        std::fs::read_to_string(dir.join("main.py")).unwrap(),
        "print('original')\n"
    );
    assert!(!dir.join("new.py").exists());
}

#[test]
fn symlinks_made_inside_a_write_dir_do_not_lead_out() {
    let Some(lab) = Lab::new() else { return };
    let rw = lab.path("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let victim = lab.path("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    let rw_s = rw.display().to_string();
    let secret = lab.tmp_secret.display().to_string();
    let via_proc = format!("/proc/1/root{secret}");
    let ssh = format!("{}/.ssh", lab.home.display());
    let (l1, l2, l3, l4) = (
        format!("{rw_s}/l-secret"),
        format!("{rw_s}/l-proc"),
        format!("{rw_s}/l-victim"),
        format!("{rw_s}/l-ssh"),
    );
    let victim_s = victim.display().to_string();
    let l4_key = format!("{l4}/id_rsa");
    let o = lab.ops(
        &["--write", &rw_s],
        &[
            "symlink", &secret, &l1, "read", &l1, "symlink", &via_proc, &l2, "read", &l2,
            "symlink", &victim_s, &l3, "write", &l3, "symlink", &ssh, &l4, "list", &l4, "read",
            &l4_key,
        ],
    );
    o.assert_done("OPS_DONE");
    for l in [&l1, &l2, &l3, &l4] {
        assert!(
            o.op("symlink", l).starts_with("OK"),
            "could not even make {l}:\n{}",
            o.dump()
        );
    }
    assert_refused(&o, "read", &l1, GONE);
    assert_refused(&o, "read", &l2, GONE);
    // The link resolves inside the sandbox: the write is refused or lands in the
    // private /tmp (the parent dirs of declared paths exist there); never on the host.
    assert!(
        o.op("write", &l3) == "OK " || o.op("write", &l3).starts_with("ERR "),
        "{}",
        o.dump()
    );
    assert_refused(&o, "list", &l4, GONE);
    assert_refused(&o, "read", &l4_key, GONE);
    o.assert_no_secret(&lab.secret);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

#[test]
fn symlinks_planted_in_a_write_dir_beforehand_do_not_lead_out() {
    let Some(lab) = Lab::new() else { return };
    let rw = lab.path("rw");
    std::fs::create_dir_all(&rw).unwrap();
    let victim = lab.path("victim.txt");
    std::fs::write(&victim, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&lab.tmp_secret, rw.join("p-file")).unwrap();
    std::os::unix::fs::symlink(lab.home.join(".ssh"), rw.join("p-dir")).unwrap();
    std::os::unix::fs::symlink(&victim, rw.join("p-victim")).unwrap();
    std::os::unix::fs::symlink("/etc", rw.join("p-etc")).unwrap();
    std::os::unix::fs::symlink("../../..", rw.join("p-up")).unwrap();
    let r = |n: &str| format!("{}/{n}", rw.display());
    let up_secret = format!("{}{}", r("p-up"), lab.tmp_secret.display());
    let o = lab.ops(
        &["--write", &rw.display().to_string()],
        &[
            "read",
            &r("p-file"),
            "list",
            &r("p-dir"),
            "read",
            &r("p-dir/id_rsa"),
            "write",
            &r("p-victim"),
            "read",
            &r("p-etc/shadow"),
            "read",
            &up_secret,
        ],
    );
    o.assert_done("OPS_DONE");
    assert_refused(&o, "read", &r("p-file"), GONE);
    assert_refused(&o, "list", &r("p-dir"), GONE);
    assert_refused(&o, "read", &r("p-dir/id_rsa"), GONE);
    // Refused, or written into the sandbox's private /tmp: the host file is checked below.
    let _ = o.op("write", &r("p-victim"));
    assert_refused(&o, "read", &r("p-etc/shadow"), GONE);
    assert_refused(&o, "read", &up_secret, GONE);
    o.assert_no_secret(&lab.secret);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

#[test]
fn a_declared_path_that_is_a_symlink_is_refused_with_125() {
    let Some(lab) = Lab::new() else { return };
    let link = lab.path("link-to-home");
    std::os::unix::fs::symlink(&lab.home, &link).unwrap();
    let link_s = link.display().to_string();
    let through = format!("{link_s}/.ssh");
    for flags in [
        ["--read", link_s.as_str()],
        ["--write", link_s.as_str()],
        ["--read", through.as_str()],
    ] {
        let o = lab.ops(
            &flags,
            &["read", &format!("{}/.ssh/id_rsa", lab.home.display())],
        );
        assert_eq!(o.exit_code, 125, "{flags:?} was not refused:\n{}", o.dump());
        assert!(
            o.json["error"].as_str().unwrap_or("").contains("symlink"),
            "{flags:?}: the error should say why:\n{}",
            o.dump()
        );
        assert!(!o.stdout.contains("OP "), "the payload ran:\n{}", o.dump());
        o.assert_no_secret(&lab.secret);
    }
}

#[test]
fn inherited_fds_do_not_reach_the_sandbox() {
    let Some(lab) = Lab::new() else { return };
    // sh opens the secret on fds 7 and 9 without close-on-exec and execs the binary.
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(r#"exec 7<"$SECRET_FILE" 9<"$SECRET_FILE"; exec "$@""#)
        .arg("sh")
        .env("SECRET_FILE", &lab.tmp_secret);
    let inner = lab.cmd();
    c.arg(inner.get_program());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["exec", "--json", "--read"])
        .arg(crate::escape::payload_dir())
        .args(["--", "python3", &crate::escape::ops_py(), "fds"]);
    let o = Outcome::from(c.output().unwrap());
    o.assert_done("OPS_DONE");
    for line in o.stdout.lines().filter(|l| l.starts_with("FD ")) {
        let mut parts = line.splitn(3, ' ').skip(1);
        let fd: u32 = parts.next().unwrap().parse().unwrap();
        let target = parts.next().unwrap_or("");
        // Besides stdio, only the directory listing /proc/self/fd itself may show.
        // (`ERR ENOENT`: the listing's own fd, closed before readlink.)
        assert!(
            fd <= 2 || target.ends_with("/fd") || target == "ERR ENOENT",
            "BREACH: fd {fd} -> {target} inherited:\n{}",
            o.dump()
        );
    }
    assert!(
        !o.stdout.contains("OP readfd"),
        "BREACH: an inherited fd was readable:\n{}",
        o.dump()
    );
    o.assert_no_secret(&lab.secret);
}

#[test]
fn no_capabilities_no_new_privs_seccomp_and_an_unprivileged_host_uid() {
    let Some(lab) = Lab::new() else { return };
    let o = lab.ops(&[], &["status"]);
    o.assert_done("OPS_DONE");
    let field = |name: &str| {
        o.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STATUS status {name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status:\n{}", o.dump()))
    };
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}\n{}", o.dump());
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    for map in ["uid_map", "gid_map"] {
        let line = o
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STATUS {map} ")))
            .unwrap_or_else(|| panic!("no {map}:\n{}", o.dump()));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "one mapping line only: {line}");
        assert_eq!(cols[2], "1", "exactly one id is mapped: {line}");
        assert_ne!(
            cols[1], "0",
            "BREACH: the sandbox maps to host root: {line}"
        );
    }
}

#[test]
fn setuid_and_setgid_files_cannot_be_planted_on_the_host() {
    // A skill that may write a directory must not leave a setuid executable there:
    // files it creates are owned by the invoker (root when the invoker is root), so a
    // `chmod 4755` would hand any local user who can reach the directory the invoker's
    // uid — root — outside the sandbox.
    let Some(lab) = Lab::new() else { return };
    let rw = lab.path("rw");
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = |n: &str| format!("{}/{n}", rw.display());
    let o = lab.ops(
        &["--write", &rw.display().to_string()],
        &[
            "copy",
            "/bin/true",
            &r("suid"),
            "chmod",
            "4755",
            &r("suid"),
            "copy",
            "/bin/true",
            &r("sgid"),
            "chmod",
            "2755",
            &r("sgid"),
            "mkdir",
            &r("sgid-dir"),
            "chmod",
            "2777",
            &r("sgid-dir"),
        ],
    );
    o.assert_done("OPS_DONE");
    assert!(
        o.op("copy", &r("suid")).starts_with("OK"),
        "control: copy failed\n{}",
        o.dump()
    );
    for name in ["suid", "sgid", "sgid-dir"] {
        let meta = std::fs::metadata(rw.join(name)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "BREACH: the skill left {} with mode {:o} (owner uid {}) on the host\n{}",
            rw.join(name).display(),
            meta.permissions().mode(),
            std::os::unix::fs::MetadataExt::uid(&meta),
            o.dump()
        );
    }
}

#[test]
fn deny_carve_outs_inside_a_write_tree_are_refused() {
    // write: [D], deny: [D/private/key]. Such a carve-out cannot hold across runs: run 1
    // could move `private` aside and leave a decoy at the denied path, and run 2 would
    // read the real key under its new name. So the launcher refuses the manifest.
    let Some(lab) = Lab::new() else { return };
    let d = lab.path("data");
    std::fs::create_dir_all(d.join("private")).unwrap();
    std::fs::write(d.join("private/key"), format!("{}\n", lab.secret)).unwrap();
    let d_s = d.display().to_string();
    let payloads = crate::escape::payload_dir().display().to_string();
    let dir = skill_dir(
        &lab,
        "deny-skill",
        &format!("  filesystem:\n    read: [{payloads}]\n    write: [{d_s}]\n    deny: [{d_s}/private/key]"),
        "  memory_mb: 128",
        "python3",
        &[],
    );
    let py = crate::escape::ops_py();
    let out = lab
        .cmd()
        .args(["run", "--json"])
        .arg(&dir)
        .arg("--")
        .arg(&py)
        .args(["read", &format!("{d_s}/private/key")])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(125), "{text}");
    assert!(text.contains("lies inside the write path"), "{text}");
    assert!(!text.contains(&lab.secret), "{text}");
}

/// The host uid a sandbox's files get: the invoker, or the dedicated id when root.
fn sandbox_host_uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory.
    match unsafe { libc::getuid() } {
        0 => 65534,
        uid => uid,
    }
}

/// `--stdin` with a file or a directory on it: the skill reads the bytes, but its fd
/// 0 is a pipe of the supervisor's, so `/proc/self/fd/0` leads to no host inode (found
/// by the third review: the file could be rewritten and made set-uid, and `..` from a
/// directory reached the host's whole filesystem).
#[test]
fn a_file_or_directory_on_stdin_is_relayed_not_handed_over() {
    let Some(lab) = Lab::new() else { return };
    let uid = sandbox_host_uid();
    let victim = lab.path("victim.txt");
    std::fs::write(&victim, "ORIGINAL\n").unwrap();
    let dir = lab.path("stdin-dir");
    std::fs::create_dir(&dir).unwrap();
    for p in [&victim, &dir] {
        std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    }
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let file_attack = "cat; echo OVERWRITTEN > /proc/self/fd/0; echo w=$?; \
                       chmod 4755 /proc/self/fd/0; echo c=$?; \
                       python3 -c 'import os; os.fchmod(0, 0o6755)'; echo f=$?";
    let dir_attack = "ls /proc/self/fd/0/../../../..; echo l=$?; \
                      touch /proc/self/fd/0/created; echo t=$?; \
                      cat /proc/self/fd/0/../../../../etc/hostname; echo h=$?";
    for (input, script) in [(&victim, file_attack), (&dir, dir_attack)] {
        let out = lab
            .cmd()
            .args(["exec", "--json", "--stdin", "--", "sh", "-c", script])
            .stdin(std::fs::File::open(input).unwrap())
            .output()
            .unwrap();
        let o = Outcome::from(out);
        let so = o.json["stdout"].as_str().unwrap_or_default().to_string();
        if input == &victim {
            assert!(
                so.contains("ORIGINAL"),
                "stdin bytes must arrive:\n{}",
                o.dump()
            );
        }
        for ok in ["w=0", "c=0", "f=0", "l=0", "t=0", "h=0"] {
            assert!(!so.contains(ok), "BREACH: {ok} through fd 0:\n{}", o.dump());
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "ORIGINAL\n");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o7777,
        0o644,
        "BREACH: the file's mode changed to {mode:o}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "BREACH: something was created in the directory"
    );
}

/// Left open by the mount view once Landlock stopped handling filesystem rights on
/// the container tier (third review): the audit login uid, which an unset one lets
/// anybody set once, and PSI triggers, system-wide kernel objects.
#[test]
fn login_uid_and_pressure_triggers_are_out_of_reach() {
    let Some(lab) = Lab::new() else { return };
    let script = "echo 0 > /proc/self/loginuid; echo l=$?; \
                  printf 'some 150000 1000000' > /proc/pressure/cpu; echo p=$?; \
                  ls /proc/pressure; cat /proc/self/loginuid";
    let out = lab
        .cmd()
        .args(["exec", "--json", "--", "sh", "-c", script])
        .output()
        .unwrap();
    let o = Outcome::from(out);
    let so = o.json["stdout"].as_str().unwrap_or_default().to_string();
    assert!(so.contains("l=") && so.contains("p="), "{}", o.dump());
    assert!(
        !so.contains("l=0"),
        "BREACH: the login uid was set:\n{}",
        o.dump()
    );
    assert!(
        !so.contains("p=0"),
        "BREACH: a PSI trigger was created:\n{}",
        o.dump()
    );
}

/// A declared path swapped under the supervisor (TOCTOU between its checks and the
/// bind): a host thread atomically exchanges the declared directory — and, in a
/// second round, a parent of it — with a symlink to a secret directory, as fast as
/// it can, while runs read through the declared path. Each run must either refuse
/// (the path is a symlink, 125) or see the real directory; none may see the secret.
/// On both tiers: the container tier's bind and the process tier's Landlock rule are
/// both opened without following symlinks (the process tier used to follow them: the
/// rule landed on the secret directory).
#[test]
fn a_declared_path_swapped_for_a_symlink_during_setup_never_leaks() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(lab) = Lab::new() else { return };
    let uid = sandbox_host_uid();
    let race = lab.path("race");
    let secret_dir = lab.path("race-secret");
    for d in [&race, &secret_dir, &race.join("p")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(race.join("p/inner")).unwrap();
    std::fs::create_dir_all(race.join("cur")).unwrap();
    std::fs::create_dir_all(secret_dir.join("inner")).unwrap();
    for (f, text) in [
        (race.join("cur/file"), "BENIGN".to_string()),
        (race.join("p/inner/file"), "BENIGN".to_string()),
        (secret_dir.join("file"), lab.secret.clone()),
        (secret_dir.join("inner/file"), lab.secret.clone()),
    ] {
        std::fs::write(&f, text).unwrap();
        std::os::unix::fs::chown(&f, Some(uid), None).unwrap();
    }
    std::os::unix::fs::symlink(&secret_dir, race.join("alt")).unwrap();
    std::os::unix::fs::symlink(&secret_dir, race.join("palt")).unwrap();

    // (swapped name, its symlink twin, the declared path, the file read through it)
    let rounds = [
        ("cur", "alt", race.join("cur"), race.join("cur/file")),
        ("p", "palt", race.join("p/inner"), race.join("p/inner/file")),
    ];
    for ((name, twin, declared, file), tier) in rounds
        .iter()
        .flat_map(|r| ["container", "process"].map(|t| (r, t)))
    {
        let stop = AtomicBool::new(false);
        let (a, b) = (
            CString::new(race.join(name).as_os_str().as_bytes()).unwrap(),
            CString::new(race.join(twin).as_os_str().as_bytes()).unwrap(),
        );
        let (mut refused, mut benign) = (0, 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: two valid C paths; RENAME_EXCHANGE swaps them atomically.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                }
            });
            // Stops the racer however this closure ends: a breach panics below, and the
            // scope would otherwise wait for the racer forever.
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(&stop);
            for _ in 0..40 {
                let out = lab
                    .cmd()
                    .args(["exec", "--json", "--tier", tier, "--read"])
                    .arg(declared)
                    // In a script, not an argument: the process tier maps arguments
                    // under /tmp to the run's scratch directory.
                    .args(["--", "sh", "-c"])
                    .arg(format!("exec cat '{}'", file.display()))
                    .output()
                    .unwrap();
                let o = Outcome::from(out);
                o.assert_no_secret(&lab.secret);
                let error = o.json["error"].as_str().unwrap_or_default().to_lowercase();
                match o.exit_code {
                    // Refused because the path was a symlink at that moment, by the
                    // supervisor's check or the no-symlink open; nothing else.
                    125 if error.contains("symlink") || error.contains("symbolic link") => {
                        refused += 1
                    }
                    125 => panic!(
                        "{name} ({tier} tier): refused for another reason:\n{}",
                        o.dump()
                    ),
                    0 if o.json["stdout"].as_str() == Some("BENIGN") => benign += 1,
                    // The swap can also land between the bind and `cat`'s open: the
                    // path inside may then be a dangling name (cat fails), never the
                    // secret (asserted above).
                    _ => {}
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(
            refused + benign > 0,
            "{name} ({tier} tier): no run was refused or read the real file"
        );
    }
}
