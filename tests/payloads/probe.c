/*
 * Syscall-level attack probe for the escape tests (crates/cli/tests/it/escape*.rs).
 * Runs INSIDE the sandbox. Every attempt prints one line the test asserts on:
 *
 *   SC <name> ret=<return value> errno=<ERRNO NAME or 0>
 *
 * Subcommands:
 *   syscalls <pid>   every syscall of the seccomp `default` list (DESIGN.md §5), aimed
 *                    at <pid> where a target process is needed
 *   host <pid>...    kill / ptrace / process_vm_readv / pidfd_open against each pid
 *   x32              getpid through the x32 ABI (nr | 0x40000000): must die by SIGSYS
 *   int80            getpid through `int 0x80` (i386 ABI): must die by SIGSYS
 *   tiocsti <fd>     TIOCSCTTY, then TIOCSTI with the high 32 bits of the request set
 *
 * Arguments are chosen so that a call the filter lets through is harmless (NULL
 * pointers, invalid fds, bad magic numbers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long ret)
{
    const char *e = ret < 0 ? strerrorname_np(errno) : "0";
    printf("SC %s ret=%ld errno=%s\n", name, ret, e ? e : "?");
    fflush(stdout);
}

#define TRY(name, call)           \
    do {                          \
        errno = 0;                \
        long r_ = (long)(call);   \
        report(name, r_);         \
    } while (0)

static void clone_ns(const char *name, unsigned long flag)
{
    errno = 0;
    long r = syscall(SYS_clone, flag | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    report(name, r);
}

static int syscalls(pid_t pid)
{
    char buf[16];
    struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};

    TRY("ptrace", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, pid, 0, 0));
    TRY("process_vm_readv", syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0));
    TRY("process_vm_writev", syscall(SYS_process_vm_writev, pid, &local, 1, &remote, 1, 0));
    TRY("pidfd_getfd", syscall(SYS_pidfd_getfd, -1, 0, 0));
    TRY("process_madvise", syscall(SYS_process_madvise, -1, NULL, 0, 0, 0));
    TRY("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL));
    TRY("umount2", syscall(SYS_umount2, "/tmp", 2 /* MNT_DETACH */));
    TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    TRY("chroot", syscall(SYS_chroot, "/tmp"));
    TRY("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    TRY("fsconfig", syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0));
    TRY("fsmount", syscall(SYS_fsmount, -1, 0, 0));
    TRY("fspick", syscall(SYS_fspick, -1, "", 0));
    TRY("open_tree", syscall(SYS_open_tree, -1, "/", 0));
    TRY("move_mount", syscall(SYS_move_mount, -1, "", -1, "", 0));
    TRY("mount_setattr", syscall(SYS_mount_setattr, -1, "", 0, NULL, 0));
    TRY("unshare", syscall(SYS_unshare, CLONE_NEWUSER));
    int nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    TRY("setns", syscall(SYS_setns, nsfd, 0));
    TRY("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0));
    TRY("add_key", syscall(SYS_add_key, NULL, NULL, NULL, 0, 0));
    TRY("request_key", syscall(SYS_request_key, NULL, NULL, NULL, 0));
    TRY("bpf", syscall(SYS_bpf, 0, NULL, 0));
    TRY("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    TRY("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
    TRY("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    TRY("io_uring_enter", syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
    TRY("io_uring_register", syscall(SYS_io_uring_register, -1, 0, NULL, 0));
    TRY("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    TRY("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0));
    TRY("init_module", syscall(SYS_init_module, NULL, 0, NULL));
    TRY("finit_module", syscall(SYS_finit_module, -1, NULL, 0));
    TRY("delete_module", syscall(SYS_delete_module, NULL, 0));
    TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
    TRY("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));
    TRY("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    TRY("swapon", syscall(SYS_swapon, NULL, 0));
    TRY("swapoff", syscall(SYS_swapoff, NULL));
    TRY("acct", syscall(SYS_acct, NULL));
    TRY("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
    TRY("clock_settime", syscall(SYS_clock_settime, 0, NULL));
    TRY("clock_adjtime", syscall(SYS_clock_adjtime, 0, NULL));
    TRY("adjtimex", syscall(SYS_adjtimex, NULL));
    TRY("quotactl", syscall(SYS_quotactl, 0, NULL, 0, NULL));
    TRY("quotactl_fd", syscall(SYS_quotactl_fd, -1, 0, 0, NULL));
    TRY("lookup_dcookie", syscall(SYS_lookup_dcookie, 0, NULL, 0));
    TRY("vhangup", syscall(SYS_vhangup));
    TRY("syslog", syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0));
    TRY("iopl", syscall(SYS_iopl, 3));
    TRY("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
    TRY("personality", syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */));
    TRY("clone3", syscall(SYS_clone3, NULL, 0));
    clone_ns("clone_newuser", CLONE_NEWUSER);
    clone_ns("clone_newns", CLONE_NEWNS);
    clone_ns("clone_newpid", CLONE_NEWPID);
    clone_ns("clone_newnet", CLONE_NEWNET);
    TRY("tioclinux", syscall(SYS_ioctl, 0, 0x541c | 0x100000000UL, buf));
    /* The end marker: the probe survived every refusal. */
    printf("SYSCALLS_DONE\n");
    return 0;
}

static int host(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        pid_t pid = (pid_t)atoi(argv[i]);
        char name[64], buf[16];
        struct iovec local = {buf, sizeof buf}, remote = {(void *)0x400000, sizeof buf};
        snprintf(name, sizeof name, "kill0:%d", pid);
        TRY(name, kill(pid, 0));
        snprintf(name, sizeof name, "kill9:%d", pid);
        TRY(name, kill(pid, SIGKILL));
        snprintf(name, sizeof name, "ptrace:%d", pid);
        TRY(name, syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, pid, 0, 0));
        snprintf(name, sizeof name, "vmread:%d", pid);
        TRY(name, syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0));
        snprintf(name, sizeof name, "pidfd_open:%d", pid);
        TRY(name, syscall(SYS_pidfd_open, pid, 0));
    }
    printf("HOST_DONE\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: probe syscalls|host|x32|int80|tiocsti ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "syscalls"))
        return syscalls(argc > 2 ? (pid_t)atoi(argv[2]) : 1);
    if (!strcmp(cmd, "host"))
        return host(argc - 2, argv + 2);
    if (!strcmp(cmd, "x32")) {
        printf("X32_BEFORE\n");
        fflush(stdout);
        TRY("x32_getpid", syscall(0x40000000 | SYS_getpid));
        printf("X32_SURVIVED\n");
        return 0;
    }
    if (!strcmp(cmd, "int80")) {
        printf("INT80_BEFORE\n");
        fflush(stdout);
        long r;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        printf("SC int80_getpid ret=%ld errno=0\nINT80_SURVIVED\n", r);
        return 0;
    }
    if (!strcmp(cmd, "tiocsti")) {
        int fd = argc > 2 ? atoi(argv[2]) : 0;
        char c = 'X';
        TRY("tiocsctty", syscall(SYS_ioctl, fd, (unsigned long)TIOCSCTTY, 0));
        TRY("tiocsti_high", syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI | 0xdead000000000000UL, &c));
        TRY("tiocsti", syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI, &c));
        printf("TIOCSTI_DONE\n");
        return 0;
    }
    fprintf(stderr, "unknown subcommand %s\n", cmd);
    return 2;
}
