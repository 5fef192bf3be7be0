"""The real ``octotui`` dashboard on a pseudo-terminal: what it writes, and when."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PtyRun:
    """Bytes read from the pty master with their arrival times (monotonic, from ``started``)."""

    started: float
    chunks: list[tuple[float, int]] = field(default_factory=list)
    found_at: float | None = None
    exit_status: int | None = None

    def bytes_between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.chunks if start <= t < end)


def run_dashboard(
    url: str,
    token: str,
    cols: int,
    rows: int,
    seconds: float,
    needle: bytes | None = None,
    stop_on_needle: bool = False,
) -> PtyRun:
    """Start ``octotui --server URL --token T`` on a pty of ``cols``x``rows``, read for ``seconds``, quit it.

    ``needle``: record when these bytes first appear in the output (the first full frame).
    """
    exe = str(Path(sys.executable).parent / "octotui")
    env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "TEXTUAL", "NO_COLOR")}
    env.update(TERM="xterm-256color", LINES=str(rows), COLUMNS=str(cols))
    started = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size its terminal, then become the dashboard
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(exe, [exe, f"--server={url}", f"--token={token}"], env)
        finally:
            os._exit(127)
    run = PtyRun(started)
    tail = b""
    deadline = started + seconds
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            ready, _, _ = select.select([fd], [], [], min(0.2, deadline - now))
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break  # the child closed the terminal
            if not data:
                break
            at = time.monotonic() - started
            run.chunks.append((at, len(data)))
            if needle is not None and run.found_at is None:
                if needle in tail + data:
                    run.found_at = at
                    if stop_on_needle:
                        break
                tail = (tail + data)[-len(needle) :]
    finally:
        run.exit_status = _quit(pid, fd)
    return run


def _quit(pid: int, fd: int) -> int | None:
    """Press q, then SIGTERM, then SIGKILL: the dashboard (our own child, by pid) always ends."""
    with contextlib.suppress(OSError):
        os.write(fd, b"q")
    status = None
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                while select.select([fd], [], [], 0)[0] and os.read(fd, 65536):
                    pass  # drain, or the child blocks writing its last frame
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                os.close(fd)
                return status
            time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.close(fd)
    return status
