"""File/env/proc attack payload for the escape tests; runs INSIDE the sandbox.

Usage: ops.py OP ARGS... [OP ARGS...]...  Every operation prints one line:

    OP <op> <path> OK [data]        the attempt worked (data: what was read)
    OP <op> <path> ERR <ERRNO>      the kernel refused it

and the run ends with OPS_DONE, so a test can tell "refused" from "crashed".

Operations:
    read PATH              read a file (first 4 KiB)
    list PATH              list a directory
    write PATH             append a marker line to a file (created if missing)
    mkdir PATH             create a directory
    symlink TARGET LINK    create LINK pointing to TARGET
    chmod MODE PATH        chmod (octal MODE)
    rename SRC DST         rename SRC to DST
    copy SRC DST           copy file SRC to DST (mode included)
    unix PATH              connect to a unix socket (@NAME: abstract) and send a line
    tcp HOST PORT          connect to HOST:PORT over TCP and send a line
    env                    dump the whole environment (ENV lines)
    procenv                read /proc/*/environ of every visible process (PROCENV lines)
    status                 print /proc/self/status and uid_map/gid_map (STATUS lines)
    fds                    list /proc/self/fd and read every fd > 2 (FD lines)
"""
import errno
import os
import shutil
import socket
import sys

MARK = b"escape-probe-was-here\n"


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else type(e).__name__


def out(*parts):
    print(*parts, flush=True)


def attempt(op, path, fn):
    try:
        data = fn()
    except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
        out("OP", op, path, "ERR", ename(e))
        return
    out("OP", op, path, "OK", "" if data is None else repr(data))


def read(path):
    with open(path, "rb") as f:
        return f.read(4096)


def write(path):
    with open(path, "ab") as f:
        f.write(MARK)


def connect(family, addr):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(addr)
        s.sendall(MARK)


def main(argv):
    i = 0
    while i < len(argv):
        op = argv[i]
        i += 1
        if op == "read":
            attempt(op, argv[i], lambda p=argv[i]: read(p)); i += 1
        elif op == "list":
            attempt(op, argv[i], lambda p=argv[i]: sorted(os.listdir(p))); i += 1
        elif op == "write":
            attempt(op, argv[i], lambda p=argv[i]: write(p)); i += 1
        elif op == "mkdir":
            attempt(op, argv[i], lambda p=argv[i]: os.mkdir(p)); i += 1
        elif op == "symlink":
            t, l = argv[i], argv[i + 1]
            attempt(op, l, lambda: os.symlink(t, l)); i += 2
        elif op == "chmod":
            m, p = int(argv[i], 8), argv[i + 1]
            attempt(op, p, lambda: os.chmod(p, m)); i += 2
        elif op == "rename":
            a, b = argv[i], argv[i + 1]
            attempt(op, a, lambda: os.rename(a, b)); i += 2
        elif op == "copy":
            a, b = argv[i], argv[i + 1]
            attempt(op, b, lambda: shutil.copy(a, b)); i += 2
        elif op == "unix":
            attempt(op, argv[i], lambda p=argv[i]: connect(socket.AF_UNIX, "\0" + p[1:] if p.startswith("@") else p)); i += 1
        elif op == "tcp":
            h, port = argv[i], int(argv[i + 1])
            attempt(op, "%s:%d" % (h, port), lambda: connect(socket.AF_INET6 if ":" in h else socket.AF_INET, (h, port))); i += 2
        elif op == "env":
            for k, v in sorted(os.environ.items()):
                out("ENV", k + "=" + v)
        elif op == "procenv":
            for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
                attempt("procenv", "/proc/%s/environ" % pid,
                        lambda pid=pid: read("/proc/%s/environ" % pid))
        elif op == "status":
            for name in ("status", "uid_map", "gid_map"):
                try:
                    with open("/proc/self/" + name) as f:
                        for line in f:
                            out("STATUS", name, line.rstrip("\n"))
                except OSError as e:
                    out("STATUS", name, "ERR", ename(e))
        elif op == "fds":
            fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
            for fd in fds:
                try:
                    target = os.readlink("/proc/self/fd/%d" % fd)
                except OSError as e:
                    target = "ERR " + ename(e)
                out("FD", fd, target)
            for fd in range(3, 64):
                try:
                    data = os.pread(fd, 4096, 0)
                    out("OP", "readfd", fd, "OK", repr(data))
                except OSError as e:
                    if e.errno != errno.EBADF:
                        out("OP", "readfd", fd, "ERR", ename(e))
        else:
            out("UNKNOWN_OP", op)
            return 2
    out("OPS_DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
