//! The seccomp lists, one `const` table per profile layer, each row with its reason.
//!
//! `docs/seccomp.md` renders exactly these tables; a unit test in `seccomp.rs` fails
//! when the two drift apart. Change a row here, then paste the rendered table the
//! failing test prints into the doc.

use super::{ArgCond, ArgRule, DeniedSyscall};
use libc::{EAFNOSUPPORT, ENOSYS, EPERM};

const fn deny(name: &'static str, reason: &'static str) -> DeniedSyscall {
    DeniedSyscall {
        name,
        errno: EPERM,
        reason,
    }
}

/// Syscalls `default` (and therefore `strict`) refuses whatever their arguments.
pub const DEFAULT_DENIED: &[DeniedSyscall] = &[
    // Other processes.
    deny(
        "ptrace",
        "inspect or control other processes: read secrets, inject code",
    ),
    deny("process_vm_readv", "read another process's memory"),
    deny("process_vm_writev", "write another process's memory"),
    deny(
        "pidfd_getfd",
        "copy a file descriptor out of another process",
    ),
    deny("process_madvise", "act on another process's memory"),
    // Mounts and roots: the layout the launcher built must stay as it is.
    deny("mount", "change the filesystem layout the sandbox built"),
    deny("umount2", "detach mounts to uncover what lies beneath"),
    deny("pivot_root", "swap the root filesystem"),
    deny(
        "chroot",
        "change the root directory: a classic escape building block",
    ),
    deny("fsopen", "new mount API: create a filesystem context"),
    deny("fsconfig", "new mount API: configure a filesystem context"),
    deny(
        "fsmount",
        "new mount API: turn a filesystem context into a mount",
    ),
    deny("fspick", "new mount API: reconfigure an existing mount"),
    deny("open_tree", "new mount API: clone a mount tree"),
    deny(
        "open_tree_attr",
        "new mount API: clone a mount tree with new attributes",
    ),
    deny("move_mount", "new mount API: attach or move a mount"),
    deny("mount_setattr", "change mount attributes such as read-only"),
    // Namespaces.
    deny(
        "unshare",
        "create namespaces: kernel attack surface, regained capabilities",
    ),
    deny("setns", "join another namespace"),
    // Kernel facilities that are not namespaced or are frequent exploit targets.
    deny(
        "keyctl",
        "kernel keyring: not namespaced, shared with the host user",
    ),
    deny(
        "add_key",
        "kernel keyring: not namespaced, shared with the host user",
    ),
    deny(
        "request_key",
        "kernel keyring: not namespaced, shared with the host user",
    ),
    deny("bpf", "load BPF programs: kernel attack surface"),
    deny(
        "perf_event_open",
        "performance counters: side channels, kernel attack surface",
    ),
    deny(
        "userfaultfd",
        "stall page faults in the kernel: a standard exploit primitive",
    ),
    deny(
        "io_uring_setup",
        "io_uring runs operations seccomp never sees; exploit target",
    ),
    deny(
        "io_uring_enter",
        "io_uring runs operations seccomp never sees; exploit target",
    ),
    deny(
        "io_uring_register",
        "io_uring runs operations seccomp never sees; exploit target",
    ),
    // The machine itself.
    deny("kexec_load", "load and boot another kernel"),
    deny("kexec_file_load", "load and boot another kernel"),
    deny("init_module", "load a kernel module"),
    deny("finit_module", "load a kernel module"),
    deny("delete_module", "unload a kernel module"),
    deny(
        "open_by_handle_at",
        "open files by handle, bypassing paths (the shocker escape)",
    ),
    deny(
        "name_to_handle_at",
        "obtain file handles for open_by_handle_at",
    ),
    deny("reboot", "reboot or halt the machine"),
    deny("swapon", "add swap space"),
    deny("swapoff", "remove swap space"),
    deny("acct", "switch process accounting on or off"),
    deny("settimeofday", "set the system clock (not namespaced)"),
    deny("clock_settime", "set a system clock (not namespaced)"),
    deny("clock_adjtime", "tune a system clock (not namespaced)"),
    deny("adjtimex", "tune the system clock (not namespaced)"),
    deny("quotactl", "manipulate disk quotas"),
    deny("quotactl_fd", "manipulate disk quotas"),
    deny(
        "lookup_dcookie",
        "kernel profiling cookies: leak kernel paths",
    ),
    deny("vhangup", "hang up the terminal"),
    deny("syslog", "read or clear the kernel log"),
    deny("iopl", "raw I/O port access"),
    deny("ioperm", "raw I/O port access"),
    DeniedSyscall {
        name: "clone3",
        errno: ENOSYS,
        reason: "flags live in memory the filter cannot read; libc falls back to clone",
    },
    DeniedSyscall {
        name: "openat2",
        errno: ENOSYS,
        reason: "its mode lives in memory the filter cannot read (set-id bits); libc falls back to openat",
    },
];

/// `clone` with one namespace flag set: the rule compares just that bit, so any
/// combination of other flags is caught too.
macro_rules! clone_new {
    ($flag:literal, $bit:literal) => {
        ArgRule {
            name: "clone",
            errno: EPERM,
            when: &[ArgCond::MaskedEq {
                arg: 0,
                mask: $bit,
                value: $bit,
            }],
            reason: concat!(
                $flag,
                ": create a namespace (kernel attack surface, new capabilities)"
            ),
        }
    };
}

/// Refuse a mode argument carrying a set-id bit (like systemd's `RestrictSUIDSGID=`):
/// with a root invoker the skill's files are owned by root on the host, so a setuid
/// bit would plant a setuid-root binary there; rootless, one setuid to the invoker.
macro_rules! no_setid {
    ($name:literal, $arg:literal, $bit:literal, $what:literal) => {
        ArgRule {
            name: $name,
            errno: EPERM,
            when: &[ArgCond::MaskedEq {
                arg: $arg,
                mask: $bit,
                value: $bit,
            }],
            reason: concat!(
                $what,
                " bit in a mode: would leave a set-id file on the host"
            ),
        }
    };
    ($name:literal, $flags_arg:literal, $mode_arg:literal, $bit:literal, $what:literal) => {
        ArgRule {
            name: $name,
            errno: EPERM,
            when: &[
                ArgCond::MaskedEq {
                    arg: $flags_arg,
                    mask: 0o100,
                    value: 0o100,
                },
                ArgCond::MaskedEq {
                    arg: $mode_arg,
                    mask: $bit,
                    value: $bit,
                },
            ],
            reason: concat!(
                "O_CREAT with the ",
                $what,
                " bit: would leave a set-id file on the host"
            ),
        }
    };
}

/// Set-id refusals of `default` (and therefore `strict`): part of every plan unless
/// nothing the skill creates can outlive the run on the host
/// ([`super::SeccompPlan::without_setid_rules`]).
pub const SETID_ARG_RULES: &[ArgRule] = &[
    no_setid!("chmod", 1, 0o4000, "S_ISUID"),
    no_setid!("chmod", 1, 0o2000, "S_ISGID"),
    no_setid!("fchmod", 1, 0o4000, "S_ISUID"),
    no_setid!("fchmod", 1, 0o2000, "S_ISGID"),
    no_setid!("fchmodat", 2, 0o4000, "S_ISUID"),
    no_setid!("fchmodat", 2, 0o2000, "S_ISGID"),
    no_setid!("fchmodat2", 2, 0o4000, "S_ISUID"),
    no_setid!("fchmodat2", 2, 0o2000, "S_ISGID"),
    no_setid!("creat", 1, 0o4000, "S_ISUID"),
    no_setid!("creat", 1, 0o2000, "S_ISGID"),
    no_setid!("mknod", 1, 0o4000, "S_ISUID"),
    no_setid!("mknod", 1, 0o2000, "S_ISGID"),
    no_setid!("mknodat", 2, 0o4000, "S_ISUID"),
    no_setid!("mknodat", 2, 0o2000, "S_ISGID"),
    no_setid!("open", 1, 2, 0o4000, "S_ISUID"),
    no_setid!("open", 1, 2, 0o2000, "S_ISGID"),
    no_setid!("openat", 2, 3, 0o4000, "S_ISUID"),
    no_setid!("openat", 2, 3, 0o2000, "S_ISGID"),
];

/// The other argument-dependent refusals of `default` (and therefore `strict`).
pub const DEFAULT_ARG_RULES: &[ArgRule] = &[
    ArgRule {
        name: "ioctl",
        errno: EPERM,
        when: &[ArgCond::MaskedEq {
            arg: 1,
            mask: 0xffff_ffff,
            value: 0x5412,
        }],
        reason: "TIOCSTI: type input into the terminal (commands run in the invoker's shell)",
    },
    ArgRule {
        name: "ioctl",
        errno: EPERM,
        when: &[ArgCond::MaskedEq {
            arg: 1,
            mask: 0xffff_ffff,
            value: 0x541c,
        }],
        reason: "TIOCLINUX: console selection paste injects input like TIOCSTI",
    },
    ArgRule {
        name: "personality",
        errno: EPERM,
        when: &[ArgCond::Lo32NotIn {
            arg: 0,
            values: &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff],
        }],
        reason: "change the execution domain (no ASLR, READ_IMPLIES_EXEC); query and defaults stay",
    },
    clone_new!("CLONE_NEWNS", 0x0002_0000),
    clone_new!("CLONE_NEWCGROUP", 0x0200_0000),
    clone_new!("CLONE_NEWUTS", 0x0400_0000),
    clone_new!("CLONE_NEWIPC", 0x0800_0000),
    clone_new!("CLONE_NEWUSER", 0x1000_0000),
    clone_new!("CLONE_NEWPID", 0x2000_0000),
    clone_new!("CLONE_NEWNET", 0x4000_0000),
    clone_new!("CLONE_NEWTIME", 0x0000_0080),
];

/// What `strict` refuses by name on top of `default`.
pub const STRICT_DENIED: &[DeniedSyscall] = &[
    deny("fork", "create a process (strict allows threads only)"),
    deny("vfork", "create a process (strict allows threads only)"),
];

/// Address families `strict` lets `socket`/`socketpair` create: AF_UNIX, AF_INET, AF_INET6.
pub const STRICT_SOCKET_FAMILIES: &[u32] = &[1, 2, 10];

/// What `strict` refuses by argument on top of `default`.
pub const STRICT_ARG_RULES: &[ArgRule] = &[
    ArgRule {
        name: "socket",
        errno: EAFNOSUPPORT,
        when: &[ArgCond::Lo32NotIn {
            arg: 0,
            values: STRICT_SOCKET_FAMILIES,
        }],
        reason: "families other than unix/IPv4/IPv6 (netlink, packet, vsock, ...)",
    },
    ArgRule {
        name: "socketpair",
        errno: EAFNOSUPPORT,
        when: &[ArgCond::Lo32NotIn {
            arg: 0,
            values: STRICT_SOCKET_FAMILIES,
        }],
        reason: "families other than unix/IPv4/IPv6 (netlink, packet, vsock, ...)",
    },
    ArgRule {
        name: "socket",
        errno: EPERM,
        when: &[
            ArgCond::Lo32In {
                arg: 0,
                values: STRICT_SOCKET_FAMILIES,
            },
            ArgCond::MaskedEq {
                arg: 1,
                mask: 0xf,
                value: 3,
            },
        ],
        reason: "SOCK_RAW: hand-crafted packets",
    },
    ArgRule {
        name: "socket",
        errno: EPERM,
        when: &[
            ArgCond::Lo32In {
                arg: 0,
                values: STRICT_SOCKET_FAMILIES,
            },
            ArgCond::MaskedEq {
                arg: 1,
                mask: 0xf,
                value: 10,
            },
        ],
        reason: "SOCK_PACKET: link-level packets",
    },
    ArgRule {
        name: "clone",
        errno: EPERM,
        when: &[ArgCond::MaskedEq {
            arg: 0,
            mask: 0x0001_0000,
            value: 0,
        }],
        reason: "without CLONE_THREAD: a new process (strict allows threads only)",
    },
];
