"""Host-side helper for the terminal-injection escape tests (runs OUTSIDE the sandbox).

Usage: pty_host.py COMMAND...

Runs COMMAND (the skillsandbox binary with its arguments) the way a user's shell
would: in its own session, with a fresh pseudo-terminal as its controlling terminal
and as its stdin. Afterwards drains the terminal's input queue: anything found there
was typed into the "user's terminal" by the sandbox (TIOCSTI). Prints one JSON
object: {"status": exit code, "stdout": COMMAND's stdout, "injected": repr of the
input queue}.
"""
import fcntl
import json
import os
import subprocess
import sys
import termios
import tty


def main(argv):
    master, slave = os.openpty()
    tty.setraw(slave)  # injected bytes become readable without a newline

    def make_ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.run(
        argv,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=make_ctty,
        timeout=120,
    )
    os.set_blocking(slave, False)
    try:
        injected = os.read(slave, 4096)
    except BlockingIOError:
        injected = b""
    print(json.dumps({
        "status": p.returncode,
        "stdout": p.stdout.decode(errors="replace"),
        "stderr": p.stderr.decode(errors="replace"),
        "injected": repr(injected),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
