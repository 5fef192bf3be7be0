"""Throwaway TLS material (openssl CLI) and an HTTPS ``octotui server`` for the TLS tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import missing, stop_process
from tests.support.waiting import wait_until


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def _make_ca(directory: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip
    return directory / f"{name}.pem"


@dataclass(frozen=True)
class Pki:
    """A CA, another CA, and a server certificate for 127.0.0.1 signed by the first."""

    ca: Path
    other_ca: Path
    cert: Path
    key: Path


def make_pki(directory: Path) -> Pki:
    """Write a :class:`Pki` into ``directory`` (fails in CI, skips elsewhere, without openssl)."""
    if shutil.which("openssl") is None:
        missing("openssl is not installed: run `bash scripts/test-tools.sh`")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory, "test-ca")
    other = _make_ca(directory, "other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=directory)  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "ext.cnf", "-out", "server.pem", cwd=directory)  # fmt: skip
    return Pki(ca, other, directory / "server.pem", directory / "server.key")


@contextlib.contextmanager
def https_server(work: Path, pki: Pki, admin_token: str, *extra: str) -> Iterator[str]:
    """``octotui server --tls-cert --tls-key`` on 127.0.0.1 (a free port); yields its https:// URL."""
    data = work / "server"
    cmd = [sys.executable, "-m", "octotui", "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0",
           f"--admin-token={admin_token}", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key), *extra]  # fmt: skip
    log_path = work / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:

        def url() -> str:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {log_path.read_text()[-2000:]}")
            return (data / "server.url").read_text().strip()

        found = wait_until(url, timeout=30, what="server.url")
        assert found.startswith("https://127.0.0.1:")
        yield found
    finally:
        stop_process(proc)
