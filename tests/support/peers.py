"""Real Debian programs a monitor watches, started by the tests on loopback ports, each with its own
configuration in a temporary folder, and ended after (session fixtures: one of each per worker).

- ``node_exporter``: ``prometheus-node-exporter`` (its URL ends in ``/metrics``);
- ``nginx_peer``: nginx with ``/status`` (stub_status), ``/html`` (a page that is not metrics),
  ``/huge`` (5 MiB), ``/metrics.txt`` (a small Prometheus page), ``/server-status`` (a recorded
  Apache mod_status ``?auto`` page), over http and https (a test CA);
- ``sshd_peer``: a second sshd with its own config, host key and authorized_keys, for the local
  user ``octotui-mon`` (created if missing, as root) with a key and a password;
- ``hanging_port``: a socket that accepts connections and never answers.

A missing program fails under CI=true and skips elsewhere (:func:`tests.support.processes.missing`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, missing, stop_process
from tests.support.tlskit import Pki, make_pki
from tests.support.waiting import wait_until

MONITOR_USER = "octotui-mon"
#: Only our sshd on 127.0.0.1 lets this user in (AllowUsers); the system's sshd does not run in tests.
MONITOR_PASSWORD = "octotui-mon-Pw-4f7c2a"
HUGE_BYTES = 5 * 1024 * 1024
METRICS_TEXT = """# HELP demo_requests_total Requests.
# TYPE demo_requests_total counter
demo_requests_total{code="200"} 100
demo_requests_total{code="500"} 3
# HELP demo_temperature A gauge.
# TYPE demo_temperature gauge
demo_temperature 21.5
"""

#: What Apache's mod_status answers to ``?auto`` (Apache 2.4.62), served as a file: apache2 is not
#: among the peers installed.
APACHE_STATUS = """127.0.0.1
ServerVersion: Apache/2.4.62 (Debian)
ServerMPM: event
Total Accesses: 120
Total kBytes: 64
CPULoad: .0123
Uptime: 600
ReqPerSec: .2
BusyWorkers: 2
IdleWorkers: 48
ConnsTotal: 3
Load1: 0.12
Load5: 0.10
Load15: 0.05
Scoreboard: __W_K_____
"""


def _program(name: str, path: str) -> str:
    found = shutil.which(name) or (path if Path(path).exists() else None)
    if found is None:
        missing(f"{name} is not installed: run `bash scripts/test-tools.sh`")
        raise AssertionError("unreachable")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start(cmd: list[str], log: Path, port: int, what: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        return _listening(port)

    wait_until(up, timeout=20, what=f"{what} on 127.0.0.1:{port}")
    return proc


@pytest.fixture(scope="session")
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``prometheus-node-exporter`` on a loopback port; its metrics URL."""
    program = _program("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    work = tmp_path_factory.mktemp("node-exporter")
    port = free_port()
    cmd = [program, f"--web.listen-address=127.0.0.1:{port}", f"--collector.textfile.directory={work}"]
    proc = _start(cmd, work / "node-exporter.log", port, "node exporter")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class Nginx:
    port: int
    tls_port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"


@pytest.fixture(scope="session")
def nginx_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx (one process, no daemon) with a stub_status page and test pages, http and https."""
    program = _program("nginx", "/usr/sbin/nginx")
    work = tmp_path_factory.mktemp("nginx")
    pki = make_pki(work / "pki")
    www = work / "www"
    www.mkdir()
    (www / "huge").write_bytes(b"x" * HUGE_BYTES)
    (www / "metrics.txt").write_text(METRICS_TEXT)
    (www / "server-status").write_text(APACHE_STATUS)  # nginx serves it whatever the query (?auto)
    port, tls_port = free_port(), free_port()
    (work / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 128; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {pki.cert};
    ssl_certificate_key {pki.key};
    root {www};
    location = /status {{ stub_status; }}
    location = /html {{ default_type text/html; return 200 "<html><body>not metrics</body></html>\\n"; }}
    location = /metrics.txt {{ default_type text/plain; }}
  }}
}}
""")
    proc = _start([program, "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
                  work / "nginx.log", port, "nginx")  # fmt: skip
    try:
        wait_until(lambda: _listening(tls_port), timeout=10, what="nginx's TLS port")
        yield Nginx(port, tls_port, pki)
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    password: str
    private_key: str  # OpenSSH text, no passphrase
    log: Path


def _ensure_user() -> None:
    """The local user ``octotui-mon`` with a shell and the known password (idempotent; root only)."""
    if os.geteuid() != 0:
        missing("the sshd peer needs root to create its local user")
    known = subprocess.run(["getent", "passwd", MONITOR_USER], capture_output=True, check=False)
    if known.returncode != 0:
        made = subprocess.run(["useradd", "-M", "-s", "/bin/sh", "-d", "/tmp", MONITOR_USER], capture_output=True,
                              text=True, check=False)  # fmt: skip
        # another xdist worker may have created it meanwhile (useradd exits 9: already exists)
        assert made.returncode in (0, 9), made.stderr
    subprocess.run(["chpasswd"], input=f"{MONITOR_USER}:{MONITOR_PASSWORD}\n", text=True, check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture(scope="session")
def sshd_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A second sshd on a loopback port: its own config, host key, authorized_keys, one user."""
    program = _program("sshd", "/usr/sbin/sshd")
    keygen = _program("ssh-keygen", "/usr/bin/ssh-keygen")
    _ensure_user()
    # sshd reads authorized_keys as the user: a folder the user can reach (pytest's is root's, 0700)
    work = Path(tempfile.mkdtemp(prefix="octotui-sshd-"))
    os.chmod(work, 0o755)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host_key")], check=True)
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(work / "user_key")], check=True)
    (work / "authorized_keys").write_text((work / "user_key.pub").read_text())
    port = free_port()
    (work / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {work}/host_key
PidFile {work}/sshd.pid
AuthorizedKeysFile {work}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {MONITOR_USER}
MaxStartups 50:30:100
LogLevel VERBOSE
""")
    log = work / "sshd.log"
    proc = _start([program, "-D", "-e", "-f", str(work / "sshd_config")], log, port, "sshd")
    try:
        yield Sshd(port, MONITOR_USER, MONITOR_PASSWORD, (work / "user_key").read_text(), log)
    finally:
        stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel's backlog) and never answered."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def metrics_page(url: str) -> str:
    """A Prometheus page as the source serves it (for tests comparing with what a monitor kept)."""
    return httpx.get(url, timeout=10).text
