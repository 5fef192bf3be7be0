"""HTTPS: ``octotui server --tls-cert --tls-key`` with a throwaway CA; the client verifies by default,
takes a CA bundle, and a certificate from another CA is refused with a clear error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from octotui.client import Client, ServerUnreachable
from tests.support.tlskit import Pki, https_server, make_pki

ADMIN = "tls-admin"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https_url(tmp_path: Path, pki: Pki) -> Iterator[str]:
    with https_server(tmp_path, pki, ADMIN) as url:
        yield url


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
