//! Exact-output tests of the pure seccomp plan and its documentation.

use super::*;
use libc::{EAFNOSUPPORT, ENOSYS, EPERM};

const DOC: &str = include_str!("../../../../docs/seccomp.md");

fn names(rows: &[DeniedSyscall]) -> Vec<&'static str> {
    rows.iter().map(|d| d.name).collect()
}

#[test]
fn default_denied_list_is_exact() {
    let plan = seccomp_plan(SyscallProfile::Default);
    assert_eq!(
        names(&plan.denied),
        vec![
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "pidfd_getfd",
            "process_madvise",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "open_tree_attr",
            "move_mount",
            "mount_setattr",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "name_to_handle_at",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "vhangup",
            "syslog",
            "iopl",
            "ioperm",
            "clone3",
            "openat2",
        ]
    );
    for d in &plan.denied {
        let want = if matches!(d.name, "clone3" | "openat2") {
            ENOSYS
        } else {
            EPERM
        };
        assert_eq!(d.errno, want, "{}", d.name);
    }
}

#[test]
fn default_arg_rules_are_exact() {
    let plan = seccomp_plan(SyscallProfile::Default);
    let rows: Vec<(String, String, i32)> = plan
        .arg_rules
        .iter()
        .map(|r| (r.name.to_string(), r.condition_text(), r.errno))
        .collect();
    let want: Vec<(String, String, i32)> = [
        ("chmod", "arg1 & 0x800 == 0x800"),
        ("chmod", "arg1 & 0x400 == 0x400"),
        ("fchmod", "arg1 & 0x800 == 0x800"),
        ("fchmod", "arg1 & 0x400 == 0x400"),
        ("fchmodat", "arg2 & 0x800 == 0x800"),
        ("fchmodat", "arg2 & 0x400 == 0x400"),
        ("fchmodat2", "arg2 & 0x800 == 0x800"),
        ("fchmodat2", "arg2 & 0x400 == 0x400"),
        ("creat", "arg1 & 0x800 == 0x800"),
        ("creat", "arg1 & 0x400 == 0x400"),
        ("mknod", "arg1 & 0x800 == 0x800"),
        ("mknod", "arg1 & 0x400 == 0x400"),
        ("mknodat", "arg2 & 0x800 == 0x800"),
        ("mknodat", "arg2 & 0x400 == 0x400"),
        ("open", "arg1 & 0x40 == 0x40 and arg2 & 0x800 == 0x800"),
        ("open", "arg1 & 0x40 == 0x40 and arg2 & 0x400 == 0x400"),
        ("openat", "arg2 & 0x40 == 0x40 and arg3 & 0x800 == 0x800"),
        ("openat", "arg2 & 0x40 == 0x40 and arg3 & 0x400 == 0x400"),
        ("ioctl", "arg1 & 0xffffffff == 0x5412"),
        ("ioctl", "arg1 & 0xffffffff == 0x541c"),
        (
            "personality",
            "arg0 (low 32 bits) not in {0, 8, 0x20000, 0x20008, 0xffffffff}",
        ),
        ("clone", "arg0 & 0x20000 == 0x20000"),
        ("clone", "arg0 & 0x2000000 == 0x2000000"),
        ("clone", "arg0 & 0x4000000 == 0x4000000"),
        ("clone", "arg0 & 0x8000000 == 0x8000000"),
        ("clone", "arg0 & 0x10000000 == 0x10000000"),
        ("clone", "arg0 & 0x20000000 == 0x20000000"),
        ("clone", "arg0 & 0x40000000 == 0x40000000"),
        ("clone", "arg0 & 0x80 == 0x80"),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), c.to_string(), EPERM))
    .collect();
    assert_eq!(rows, want);
}

#[test]
fn clone_flags_match_libc() {
    let bits: Vec<u64> = DEFAULT_ARG_RULES
        .iter()
        .filter(|r| r.name == "clone")
        .flat_map(|r| r.when.iter())
        .filter_map(|c| match *c {
            ArgCond::MaskedEq { mask, .. } => Some(mask),
            _ => None,
        })
        .collect();
    let want: Vec<u64> = [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        0x80, // CLONE_NEWTIME (not in every libc)
    ]
    .iter()
    .map(|&b| b as u64)
    .collect();
    assert_eq!(bits, want);
    assert_eq!(libc::TIOCSTI, 0x5412);
    assert_eq!(libc::TIOCLINUX, 0x541c);
}

#[test]
fn strict_is_default_plus_its_own_lists() {
    let strict = seccomp_plan(SyscallProfile::Strict);
    let default = seccomp_plan(SyscallProfile::Default);
    assert_eq!(strict.denied[..default.denied.len()], default.denied[..]);
    assert_eq!(
        names(&strict.denied[default.denied.len()..]),
        vec!["fork", "vfork"]
    );
    let extra: Vec<(&str, String, i32)> = strict.arg_rules[default.arg_rules.len()..]
        .iter()
        .map(|r| (r.name, r.condition_text(), r.errno))
        .collect();
    assert_eq!(
        extra,
        vec![
            (
                "socket",
                "arg0 (low 32 bits) not in {1, 2, 10}".into(),
                EAFNOSUPPORT
            ),
            (
                "socketpair",
                "arg0 (low 32 bits) not in {1, 2, 10}".into(),
                EAFNOSUPPORT
            ),
            (
                "socket",
                "arg0 (low 32 bits) in {1, 2, 10} and arg1 & 0xf == 0x3".into(),
                EPERM
            ),
            (
                "socket",
                "arg0 (low 32 bits) in {1, 2, 10} and arg1 & 0xf == 0xa".into(),
                EPERM
            ),
            ("clone", "arg0 & 0x10000 == 0x0".into(), EPERM),
        ]
    );
    assert_eq!(
        STRICT_SOCKET_FAMILIES,
        &[
            libc::AF_UNIX as u32,
            libc::AF_INET as u32,
            libc::AF_INET6 as u32
        ]
    );
}

#[test]
fn permissive_has_no_lists() {
    let plan = seccomp_plan(SyscallProfile::Permissive);
    assert!(plan.denied.is_empty() && plan.arg_rules.is_empty());
}

#[test]
fn evaluator_matches_the_lists() {
    let plan = seccomp_plan(SyscallProfile::Strict);
    let a = |v: &[u64]| {
        let mut args = [0u64; 6];
        args[..v.len()].copy_from_slice(v);
        args
    };
    let errno = |name: &str, args: [u64; 6]| plan.refusal_for(name, &args).map(|r| r.errno);
    assert_eq!(errno("ptrace", a(&[])), Some(EPERM));
    assert_eq!(errno("clone3", a(&[])), Some(ENOSYS));
    assert_eq!(errno("read", a(&[])), None);
    assert_eq!(errno("ioctl", a(&[0, 0xdead_beef_0000_5412])), Some(EPERM));
    assert_eq!(errno("ioctl", a(&[0, 0x5413])), None);
    assert_eq!(errno("personality", a(&[0xffff_ffff])), None);
    assert_eq!(errno("personality", a(&[0x1_0000_0008])), None);
    assert_eq!(errno("personality", a(&[0x40000])), Some(EPERM));
    assert_eq!(errno("socket", a(&[17, 3])), Some(EAFNOSUPPORT));
    assert_eq!(errno("socket", a(&[0x1_0000_0011, 3])), Some(EAFNOSUPPORT));
    assert_eq!(errno("socket", a(&[2, 3 | 0x800])), Some(EPERM));
    assert_eq!(errno("socket", a(&[10, 1])), None);
    assert_eq!(errno("clone", a(&[0x11])), Some(EPERM));
    assert_eq!(errno("clone", a(&[0x10000 | 0x100])), None);
    assert_eq!(errno("clone", a(&[0x10000 | 0x1000_0000])), Some(EPERM));
    let default = seccomp_plan(SyscallProfile::Default);
    assert_eq!(default.refusal_for("clone", &a(&[0x11])), None);
}

/// Rules of one syscall with different errnos must never match the same call, or
/// the filter's answer would depend on libseccomp's rule order.
#[test]
fn overlapping_rules_agree_on_the_errno() {
    let plan = seccomp_plan(SyscallProfile::Strict);
    let samples: Vec<u64> = [0u64, 1, 2, 3, 8, 10, 16, 17, 0x80, 0x5412, 0x541c, 0x10000]
        .iter()
        .flat_map(|&v| [v, v | 0x800, v | 0x1_0000_0000, v | 0x1000_0000])
        .chain([0xffff_ffff, u64::MAX])
        .collect();
    for name in plan.syscall_names() {
        for &a0 in &samples {
            for &a1 in &samples {
                let args = [a0, a1, 0, 0, 0, 0];
                let errnos: Vec<i32> = plan
                    .arg_rules
                    .iter()
                    .filter(|r| r.name == name && r.matches(&args))
                    .map(|r| r.errno)
                    .collect();
                assert!(
                    errnos.windows(2).all(|w| w[0] == w[1]),
                    "{name}({a0:#x}, {a1:#x}) matches rules with errnos {errnos:?}"
                );
            }
        }
    }
}

#[test]
fn rules_are_expressible_in_libseccomp() {
    let plan = seccomp_plan(SyscallProfile::Strict);
    for r in &plan.arg_rules {
        let mut args: Vec<u32> = r.when.iter().map(ArgCond::arg).collect();
        args.sort_unstable();
        args.dedup();
        assert_eq!(
            args.len(),
            r.when.len(),
            "{}: one comparison per argument",
            r.name
        );
        assert!(
            !plan.denied.iter().any(|d| d.name == r.name),
            "{} is both denied by name and by argument",
            r.name
        );
    }
}

#[test]
fn docs_render_the_same_tables() {
    for (title, table) in [
        ("DEFAULT_DENIED", denied_table_markdown(DEFAULT_DENIED)),
        ("SETID_ARG_RULES", arg_rules_table_markdown(SETID_ARG_RULES)),
        (
            "DEFAULT_ARG_RULES",
            arg_rules_table_markdown(DEFAULT_ARG_RULES),
        ),
        ("STRICT_DENIED", denied_table_markdown(STRICT_DENIED)),
        (
            "STRICT_ARG_RULES",
            arg_rules_table_markdown(STRICT_ARG_RULES),
        ),
    ] {
        assert!(
            DOC.contains(&table),
            "docs/seccomp.md is out of date: replace the {title} table with\n\n{table}"
        );
    }
    let plan = seccomp_plan(SyscallProfile::Strict);
    for name in plan.syscall_names() {
        assert!(
            DOC.contains(&format!("`{name}`")),
            "docs/seccomp.md lacks `{name}`"
        );
    }
}

#[test]
fn without_setid_rules_drops_those_and_nothing_else() {
    let creat_suid = [libc::AT_FDCWD as u64, 0, 0o100, 0o4755, 0, 0];
    for profile in [SyscallProfile::Default, SyscallProfile::Strict] {
        let full = seccomp_plan(profile);
        assert!(full.refuses_setid());
        assert!(full.refusal_for("openat", &creat_suid).is_some());
        let lean = full.clone().without_setid_rules();
        assert!(!lean.refuses_setid());
        assert!(lean.refusal_for("openat", &creat_suid).is_none());
        assert!(lean
            .refusal_for("chmod", &[0, 0o4755, 0, 0, 0, 0])
            .is_none());
        // No rule names openat any more: the kernel's action cache allows it.
        assert!(!lean.syscall_names().contains(&"openat"));
        assert_eq!(lean.denied, full.denied);
        assert_eq!(
            lean.arg_rules.len(),
            full.arg_rules.len() - SETID_ARG_RULES.len()
        );
        assert!(
            lean.summary().contains("set-id modes allowed"),
            "{}",
            lean.summary()
        );
        assert!(!full.summary().contains("set-id"), "{}", full.summary());
    }
    let permissive = seccomp_plan(SyscallProfile::Permissive).without_setid_rules();
    assert!(!permissive.summary().contains("set-id"));
}
