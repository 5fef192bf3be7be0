"""A real HTTP proxy with CONNECT on loopback: Debian's tinyproxy in the foreground, with its own
config and log (``bash scripts/test-tools.sh`` installs it); the ``tinyproxy`` fixture starts one."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, missing, stop_process
from tests.support.waiting import wait_until

TINYPROXY = shutil.which("tinyproxy") or next(
    (p for p in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy") if Path(p).exists()), None
)


class Tinyproxy:
    """tinyproxy in the foreground on a free loopback port, with its own config and log."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "tinyproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Tinyproxy:
        assert TINYPROXY is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "tinyproxy.conf"
        # No ConnectPort line: CONNECT is allowed to any port. Timeout outlasts the agent's long poll.
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 120\nMaxClients 50\n"
            f'LogFile "{self.log_path}"\nPidFile "{self.directory / "tinyproxy.pid"}"\nLogLevel Info\n'
            "DisableViaHeader Yes\n"
        )
        self.log_path.touch()
        self.proc = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "tinyproxy.stderr").open("wb"),
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._listening, timeout=15, what=f"tinyproxy on {self.url}")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            stderr = (self.directory / "tinyproxy.stderr").read_text(errors="replace")
            raise AssertionError(f"tinyproxy exited with {self.proc.returncode}: {stderr}{self.log()[-2000:]}")
        with contextlib.suppress(OSError), httpx.Client(timeout=1, trust_env=False) as probe:
            probe.get(self.url + "/")  # tinyproxy answers a non-proxy request with an error page
            return True
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def requests(self, what: str) -> int:
        """How many requests the log shows whose line contains ``what`` (e.g. "/heartbeat", "CONNECT")."""
        return sum(1 for line in self.log().splitlines() if "Request" in line and what in line)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a process that must use this proxy (lower-case variants too: urllib prefers them)."""
        env = {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "NO_PROXY": "", "ALL_PROXY": ""}
        env.update(extra)
        return {**env, **{k.lower(): v for k, v in env.items()}}

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
        self.proc = None


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A real HTTP proxy with CONNECT on loopback (``bash scripts/test-tools.sh`` installs it)."""
    if TINYPROXY is None:
        missing("tinyproxy is not installed: run `bash scripts/test-tools.sh`")
    proxy = Tinyproxy(tmp_path / "proxy").start()
    yield proxy
    proxy.stop()
