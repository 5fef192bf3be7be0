"""HTTPS: ``octotui server --tls-cert --tls-key`` with a throwaway CA; the client verifies by default,
takes a CA bundle, and a certificate from another CA is refused with a clear error."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_until

from octotui.client import Client, ServerUnreachable

ADMIN = "tls-admin"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def make_ca(d: Path, name: str) -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)  # fmt: skip
    return d / f"{name}.pem"


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "test-ca")
    other = make_ca(d, "other-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)  # fmt: skip
    return Pki(ca, other, d / "server.pem", d / "server.key")


@pytest.fixture
def https_url(tmp_path: Path, pki: Pki) -> Iterator[str]:
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "octotui", "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0",
           f"--admin-token={ADMIN}", "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]  # fmt: skip
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:

        def url() -> str:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {log_path.read_text()[-2000:]}")
            return (data / "server.url").read_text().strip()

        yield wait_until(url, timeout=30, what="server.url")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def test_client_verifies_with_the_ca_bundle(https_url: str, pki: Pki) -> None:
    assert https_url.startswith("https://127.0.0.1:")
    async with Client(https_url, ADMIN, verify=str(pki.ca)) as client:
        info = await client.info()
        assert info.role == "admin" and info.url == https_url
        created = await client.create_token("wall", "read-only")
    async with Client(https_url, created.token, verify=str(pki.ca)) as client:
        assert (await client.info()).role == "read-only"


async def test_a_wrong_ca_is_refused_with_a_clear_error(https_url: str, pki: Pki) -> None:
    for verify in (str(pki.other_ca), True):  # another CA, and the system's CAs (verify by default)
        async with Client(https_url, ADMIN, verify=verify) as client:
            with pytest.raises(ServerUnreachable) as caught:
                await client.info()
        assert "certificate verify failed" in caught.value.message, caught.value.message
        assert https_url in caught.value.message


def test_token_cli_takes_a_ca_bundle(https_url: str, pki: Pki) -> None:
    base = [sys.executable, "-m", "octotui", "token", "list", "--server", https_url, f"--token={ADMIN}"]
    r = subprocess.run([*base, "--ca-bundle", str(pki.ca)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "admin" in r.stdout, r.stderr
    r = subprocess.run([*base, "--ca-bundle", str(pki.other_ca)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "certificate verify failed" in r.stderr
