//! Probe items of the isolation group about the process: namespaces, privileges,
//! inherited fds, `/dev` and `/proc`. Runs inside the sandbox; each item prints
//! exactly one result.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::isolation::{proc_pids, tally};
use super::params::ProbeParams;
use super::{emit, fail, io_name, pass, read_text, status_field, sys, verdict};
use crate::catalog::Status;

pub fn run_all(p: &ProbeParams) {
    ns_items(p);
    privileges(p);
    no_inherited_fds(p);
    dev_minimal(p);
    proc_sys_readonly();
    proc_kernel_masked();
}

fn ns_link(name: &str) -> Option<String> {
    fs::read_link(format!("/proc/self/ns/{name}"))
        .ok()
        .map(|l| l.display().to_string())
}

/// `PASS` detail when the namespace differs from the host's, else the FAIL reason.
fn ns_differs(p: &ProbeParams, name: &str) -> Result<String, String> {
    let inside = ns_link(name).ok_or_else(|| format!("cannot read /proc/self/ns/{name}"))?;
    match p.host.namespaces.get(name) {
        Some(host) if *host == inside => {
            Err(format!("same {name} namespace as the host ({inside})"))
        }
        Some(host) => Ok(format!("{inside} (host {host})")),
        None => Err(format!("the check could not read its own {name} namespace")),
    }
}

fn ns_items(p: &ProbeParams) {
    // PID: own namespace, and only the sandbox's few processes are visible.
    let pids = proc_pids();
    match ns_differs(p, "pid") {
        Ok(d) if pids.len() < 16 => pass(
            "ns.pid",
            format!(
                "{d}; {} processes visible, we are pid {}",
                pids.len(),
                sys::getpid()
            ),
        ),
        Ok(d) => fail(
            "ns.pid",
            format!("{d}, but {} processes are visible", pids.len()),
        ),
        Err(e) => fail("ns.pid", e),
    }
    match ns_differs(p, "ipc") {
        Ok(d) => pass("ns.ipc", d),
        Err(e) => fail("ns.ipc", e),
    }
    let hostname = read_text("/proc/sys/kernel/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    match ns_differs(p, "uts") {
        Ok(d) if hostname != p.host.hostname => {
            pass("ns.uts", format!("hostname {hostname:?}; {d}"))
        }
        Ok(_) => fail("ns.uts", format!("hostname is the host's ({hostname:?})")),
        Err(e) => fail("ns.uts", e),
    }
    let ifaces: Vec<String> = read_text("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    let foreign: Vec<&String> = ifaces.iter().filter(|i| i.as_str() != "lo").collect();
    match ns_differs(p, "net") {
        Ok(d) if foreign.is_empty() => {
            pass("ns.net", format!("interfaces: {}; {d}", ifaces.join(" ")))
        }
        Ok(_) => fail("ns.net", format!("host interfaces visible: {foreign:?}")),
        Err(e) => fail("ns.net", e),
    }
    ns_mount(p);
    let cgroup = read_text("/proc/self/cgroup").unwrap_or_default();
    match ns_differs(p, "cgroup") {
        Ok(d) => pass(
            "ns.cgroup",
            format!("{d}; /proc/self/cgroup: {}", cgroup.trim()),
        ),
        Err(e) => fail("ns.cgroup", e),
    }
}

fn ns_mount(p: &ProbeParams) {
    let id = "ns.mount";
    let d = match ns_differs(p, "mnt") {
        Ok(d) => d,
        Err(e) => return fail(id, e),
    };
    let info = read_text("/proc/self/mountinfo").unwrap_or_default();
    // Fields: id parent major:minor root mount-point options ... - fstype source super
    let root = info
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"));
    let Some(root) = root else {
        return fail(id, "no mount at / in mountinfo");
    };
    let fields: Vec<&str> = root.split_whitespace().collect();
    let fstype = root
        .split(" - ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("?");
    let read_only = fields
        .get(5)
        .is_some_and(|o| o.split(',').any(|x| x == "ro"));
    if info
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/oldroot"))
    {
        return fail(id, "the host root is still mounted at /oldroot");
    }
    if sys::stat_dev(Path::new("/")) == Some(p.host.root_dev) {
        return fail(id, "/ is the host's root filesystem");
    }
    if !read_only {
        return fail(id, format!("the root ({fstype}) is writable"));
    }
    pass(
        id,
        format!(
            "{d}; / is a read-only {fstype}, not the host root; {} mounts",
            info.lines().count()
        ),
    );
}

fn privileges(p: &ProbeParams) {
    let caps: Vec<(String, String)> = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .iter()
        .map(|k| (k.to_string(), status_field(k).unwrap_or_else(|| "?".into())))
        .collect();
    let held: Vec<String> = caps
        .iter()
        .filter(|(_, v)| !v.trim_start_matches('0').is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    verdict(
        "priv.capabilities",
        held.is_empty(),
        if held.is_empty() {
            "CapInh, CapPrm, CapEff, CapBnd, CapAmb all 0".to_string()
        } else {
            format!("capabilities held: {}", held.join(" "))
        },
    );
    let nnp = status_field("NoNewPrivs").unwrap_or_default();
    verdict(
        "priv.no_new_privs",
        nnp == "1",
        format!("NoNewPrivs: {nnp}"),
    );

    if p.process_tier {
        return not_host_root_in_the_host_namespace(p);
    }
    let mut maps = Vec::new();
    let mut to_root = false;
    for file in ["uid_map", "gid_map"] {
        let text = read_text(format!("/proc/self/{file}")).unwrap_or_default();
        for line in text.lines() {
            let n: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if let [_, outside, count] = n[..] {
                to_root |= outside == 0 && count > 0;
                maps.push(format!(
                    "{file}: {}",
                    line.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
    }
    verdict(
        "priv.not_host_root",
        !to_root && !maps.is_empty(),
        if to_root {
            format!("an id inside maps to host root ({})", maps.join("; "))
        } else {
            format!("{} (inside → host → count)", maps.join("; "))
        },
    );
}

fn no_inherited_fds(p: &ProbeParams) {
    let id = "priv.no_inherited_fds";
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return fail(id, "cannot list /proc/self/fd");
    };
    let mut extra = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(n) = name.parse::<i32>() else { continue };
        if n <= 2 {
            continue;
        }
        let target = fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        // The directory handle this listing holds.
        if target.starts_with("/proc/") && target.ends_with("/fd") {
            continue;
        }
        extra.push(format!("{n} → {target}"));
    }
    match (extra.is_empty(), p.canary_fd) {
        (true, Some(fd)) => pass(
            id,
            format!("only 0-2 open; the check's leaky fd {fd} did not arrive"),
        ),
        (true, None) => pass(id, "only 0-2 open"),
        (false, _) => fail(id, format!("inherited: {}", extra.join(", "))),
    }
}

/// The process tier: no user namespace, so no map to read; the ids themselves must
/// not be 0 (a root invoker's skill runs as 65534).
fn not_host_root_in_the_host_namespace(p: &ProbeParams) {
    let id = "priv.not_host_root";
    if ns_link("user").as_ref() != p.host.namespaces.get("user") {
        return fail(
            id,
            "told it is the process tier, but in a user namespace of its own",
        );
    }
    let uid = status_field("Uid").unwrap_or_default();
    let gid = status_field("Gid").unwrap_or_default();
    let ids: Vec<&str> = uid
        .split_whitespace()
        .chain(gid.split_whitespace())
        .collect();
    let root = ids.is_empty() || ids.contains(&"0");
    verdict(
        id,
        !root,
        format!(
            "the host's user namespace (process tier); Uid: {}; Gid: {}{}",
            uid.split_whitespace().collect::<Vec<_>>().join(" "),
            gid.split_whitespace().collect::<Vec<_>>().join(" "),
            if root { ": host root" } else { ": not root" }
        ),
    );
}

fn dev_minimal(p: &ProbeParams) {
    let id = "dev.minimal";
    let dangerous = [
        "mem",
        "kmem",
        "port",
        "kmsg",
        "sda",
        "vda",
        "xvda",
        "nvme0",
        "nvme0n1",
        "loop0",
        "loop-control",
        "kvm",
        "fuse",
        "net/tun",
        "dri",
        "input",
        "snd",
        "mapper/control",
        "vhost-net",
        "cpu",
        "hpet",
        "watchdog",
        "console",
        "tty0",
        "tty1",
        "ttyS0",
        "rtc0",
        "disk",
        "btrfs-control",
        "uinput",
    ];
    let present: Vec<&str> = dangerous
        .iter()
        .copied()
        .filter(|n| fs::symlink_metadata(Path::new("/dev").join(n)).is_ok())
        .collect();
    // The process tier shows the host's /dev: the nodes are there, and none may open.
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    if p.process_tier {
        for n in &present {
            // Never opened: a watchdog starts counting down when opened.
            if *n == "watchdog" {
                continue;
            }
            let path = Path::new("/dev").join(n);
            match fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)
            {
                Ok(_) => opened.push(path.display().to_string()),
                Err(e) => refused.push(io_name(&e)),
            }
        }
        if !opened.is_empty() {
            return fail(id, format!("opened: {}", opened.join(" ")));
        }
    } else if !present.is_empty() {
        return fail(id, format!("present: /dev/{}", present.join(" /dev/")));
    }
    let shown = if p.process_tier {
        format!(
            "the host's /dev (process tier): {} of {} dangerous nodes present, none opens ({})",
            present.len(),
            dangerous.len(),
            if refused.is_empty() {
                "none tried".to_string()
            } else {
                tally(&refused)
            }
        )
    } else {
        format!("{} dangerous nodes absent", dangerous.len())
    };
    let null_ok = fs::write("/dev/null", b"x").is_ok();
    match sys::mknod_char(Path::new("/tmp/.skillsandbox-check-mem"), 1, 1) {
        Ok(()) => {
            let _ = fs::remove_file("/tmp/.skillsandbox-check-mem");
            fail(id, "mknod of /dev/mem's device number succeeded")
        }
        Err(e) if null_ok => pass(
            id,
            format!("{shown}; /dev/null works; mknod: {}", super::errno_name(e)),
        ),
        Err(_) => fail(id, "/dev/null is not writable: /dev is broken"),
    }
}

fn proc_sys_readonly() {
    let id = "proc.sys_readonly";
    // Writable for root of a network namespace's owner were /proc/sys not read-only.
    let targets = ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/hostname"];
    let mut errors = Vec::new();
    for t in targets {
        let current = read_text(t).unwrap_or_default();
        match fs::OpenOptions::new().write(true).open(t) {
            Ok(mut f) => {
                if f.write_all(current.as_bytes()).is_ok() {
                    return fail(id, format!("{t} is writable"));
                }
                errors.push("write refused".to_string());
            }
            Err(e) => errors.push(io_name(&e)),
        }
    }
    pass(id, format!("/proc/sys writes: {}", tally(&errors)));
}

fn proc_kernel_masked() {
    let id = "proc.kernel_masked";
    let masked: Vec<&str> = [
        "/proc/kcore",
        "/proc/kallsyms",
        "/proc/keys",
        "/proc/timer_list",
    ]
    .into_iter()
    .filter(|f| {
        let mut buf = [0u8; 16];
        match fs::File::open(f) {
            Ok(mut file) => {
                use std::io::Read;
                !matches!(file.read(&mut buf), Ok(n) if n > 0)
            }
            Err(_) => true,
        }
    })
    .collect();
    if masked.len() < 4 {
        return emit(
            id,
            Status::Fail,
            format!(
                "kernel internals readable (masked only: {})",
                masked.join(" ")
            ),
        );
    }
    pass(id, format!("{} masked (read empty)", masked.join(" ")));
}
