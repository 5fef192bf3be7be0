"""What a server kept in its data dir, shared by replicas on one PostgreSQL (issue 14): uploaded files
and JTLs (bytes in the ``blobs`` table, each data dir a cache: ``octotui/server/blobs.py``), the
secrets key of monitors' credentials (one file for all, its fingerprint in the database), and
``octotui token --database``."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.support.monitorkit import PASSWORD, ssh_body
from tests.support.processes import ServerProcess, free_port
from tests.support.replicas import replicas
from tests.support.waiting import wait_until
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent

MIB = 1024 * 1024


def _agent_on_b(a: ServerProcess, b: ServerProcess) -> WireAgent:
    """Provider ``lab`` made on a, an agent registered and beating on b, online as a sees it."""
    with a.client() as http:
        token = http.post("/providers", json={"name": "lab"}).raise_for_status().json()["token"]

    def register() -> WireAgent | None:
        try:
            return WireAgent(b, token)
        except AssertionError:  # the provider not known on b yet
            return None

    agent: WireAgent = wait_until(register, timeout=10, what="provider known on b")
    agent.beat()
    with a.client() as http:
        wait_until(
            lambda: (got := http.get(f"/agents/{agent.id}").json())["status"] == "online" and got["docker"],
            timeout=10,
            what="agent online on a, with Docker",
        )
    return agent


def _launch_taken(agent: WireAgent) -> dict[str, Any]:
    """The launch command queued for ``agent`` (through another replica), acknowledged."""
    got = wait_until(
        lambda: agent.http.get(f"/agents/{agent.id}/commands", params={"timeout": 0}, headers=agent.auth).json(),
        timeout=10,
        what="launch delivered",
    )
    (cmd,) = got
    agent.http.post(f"/agents/{agent.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=agent.auth)
    return dict(cmd)


def _blob_rows(dsn: str, kind: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT key, count(*) FROM blobs WHERE kind = %s GROUP BY key ORDER BY key", (kind,))
        return [(k, int(n)) for k, n in rows.fetchall()]


def _cut_short(url: str, headers: dict[str, str]) -> None:
    """An upload whose client dies after 1 MiB of the 3 MiB it announced."""

    def body() -> Iterator[bytes]:
        yield os.urandom(MIB)
        raise ConnectionAbortedError("client died")

    with pytest.raises(ConnectionAbortedError), httpx.Client(timeout=10) as http:
        http.post(url, content=body(), headers={**headers, "Content-Length": str(3 * MIB)})


def test_files_and_jtls_uploaded_through_one_replica_are_served_by_the_other(tmp_path: Path, pg_database: str) -> None:
    data = os.urandom(2 * MIB + 123)  # three chunks
    with replicas(tmp_path, pg_database) as (a, b):
        agent = _agent_on_b(a, b)
        with a.client() as ha, b.client() as hb:
            info = ha.post("/files", params={"name": "blob.bin"}, content=data).raise_for_status().json()
            # Launched through b, first thing, before b read the upload: it reads the file's record.
            made = hb.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1,
                                           "files": [{"id": info["id"]}]})  # fmt: skip
            assert made.status_code == 201, made.text
            assert hb.get(f"/files/{info['id']}").json() == info
            assert [f["id"] for f in hb.get("/files").json()] == [info["id"]]
            _cut_short(f"{a.url}/api/v1/files?name=cut.bin", {"Authorization": f"Bearer {a.admin_token}"})
            assert _blob_rows(pg_database, "file") == [(info["id"], 3)]  # the cut upload left nothing

            cmd = _launch_taken(agent)
            report = {"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"]}
            agent.beat({**report, "state": "running"})
            (wanted,) = cmd["launch"]["files"]
            got = agent.http.get(wanted["path"], headers=agent.auth)
            assert got.status_code == 200 and got.content == data
            cache = b.data_dir / "files" / info["id"]
            cache.write_bytes(b"x" * len(data))  # corrupted: read again from the database
            assert agent.http.get(wanted["path"], headers=agent.auth).content == data
            assert cache.read_bytes() == data

            # The container ends; its JTL goes through b, the merged export through a.
            agent.beat({**report, "state": "finished", "exit_code": 0})
            jtl = b"timeStamp,elapsed,label\n1700000000000,12,home\n"
            gz = gzip.compress(jtl)
            put = f"/agents/{agent.id}/containers/{cmd['container_id']}/jtl"
            wrong = agent.http.put(put, content=gz, headers={**agent.auth, "X-Checksum-Sha256": "0" * 64})
            assert wrong.status_code == 422 and "checksum mismatch" in wrong.text
            _cut_short(b.url + "/api/v1" + put, {**agent.auth, "X-Checksum-Sha256": "0" * 64})
            assert _blob_rows(pg_database, "jtl") == []
            sha = hashlib.sha256(gz).hexdigest()
            ok = agent.http.put(put, content=gz, headers={**agent.auth, "X-Checksum-Sha256": sha})
            assert ok.status_code == 204, ok.text
            exported = wait_until(
                lambda: (r := ha.get(f"/tests/{cmd['test_id']}/export/jtl")).status_code == 200 and r,
                timeout=10,
                what="export through a",
            )
            assert exported.content == jtl

            # Deleted through a: gone on both, bytes and b's copy too.
            wait_until(lambda: ha.delete(f"/files/{info['id']}").status_code == 204, timeout=10, what="deleted")
            assert hb.get(f"/files/{info['id']}").status_code == 404
            assert agent.http.get(wanted["path"], headers=agent.auth).status_code == 404
            assert not cache.exists() and _blob_rows(pg_database, "file") == []
            # The test deleted through b: its JTL's bytes go.
            assert hb.delete(f"/tests/{cmd['test_id']}").status_code in (200, 204)
            assert _blob_rows(pg_database, "jtl") == []
        agent.close()


def _fingerprints(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT name, fingerprint, created_at FROM key_fingerprints").fetchall()


def _server(data_dir: Path, dsn: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "octotui", "server", "--data-dir", str(data_dir), "--port", str(free_port()),
           "--database", dsn, *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_replicas_share_one_secrets_key_and_one_with_another_is_refused(tmp_path: Path, pg_database: str) -> None:
    key = tmp_path / "secrets.key"
    key.write_bytes(Fernet.generate_key() + b"\n")
    key.chmod(0o400)
    shared = {"OCTOTUI_SECRETS_KEY_FILE": str(key)}
    with replicas(tmp_path, pg_database, env={"a": shared, "b": shared}) as (a, b):
        agent = _agent_on_b(a, b)
        with a.client() as http:
            assert http.post("/monitors", json=ssh_body(agent.id)).status_code == 201
        beat = {"containers": [], "complete": False, "monitors": [], "monitor_revision": 0,
                "host": {"ts": 1.0, "cpu_percent": 1.0, "memory_percent": 1.0, "memory_total": 2**33}}  # fmt: skip
        got = wait_until(
            lambda: agent.http.post(f"/agents/{agent.id}/heartbeat", json=beat, headers=agent.auth).json()["monitors"],
            timeout=10,
            what="monitor assigned on b",
        )
        assert got[0]["credentials"]["password"] == PASSWORD  # decrypted on b with the one key
        agent.close()
        before = _fingerprints(pg_database)
        assert len(before) == 1

        other = tmp_path / "other.key"
        other.write_bytes(Fernet.generate_key())
        refused = _server(tmp_path / "c", pg_database, "--secrets-key-file", str(other))
        assert refused.returncode == 1
        (line,) = [ln for ln in refused.stderr.splitlines() if "secrets key" in ln]
        assert f"the secrets key file {other} is not the key of the other servers" in line
        assert "--secrets-key-file" in line
        lacking = _server(tmp_path / "d", pg_database)  # the data dir's default: none there
        assert lacking.returncode == 1 and "monitors.key is missing" in lacking.stderr
        assert not (tmp_path / "d" / "monitors.key").exists()
        assert _fingerprints(pg_database) == before


def _token(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "octotui", "token", "--database", dsn, *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


def test_the_token_command_works_on_the_database_of_running_replicas(tmp_path: Path, pg_database: str) -> None:
    with replicas(tmp_path, pg_database, count=1) as (a,):
        made = _token(pg_database, "create", "--name", "ops", "--role", "read-only")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        who = {"Authorization": f"Bearer {secret}"}
        wait_until(lambda: httpx.get(f"{a.url}/api/v1/agents", headers=who).status_code == 200, timeout=5, what="ok")
        listed = _token(pg_database, "list")
        assert listed.returncode == 0 and "ops" in listed.stdout and "read-only" in listed.stdout
        assert _token(pg_database, "revoke", "ops").returncode == 0
        wait_until(lambda: httpx.get(f"{a.url}/api/v1/agents", headers=who).status_code == 401, timeout=5, what="no")
    bad = _token("postgresql://nobody@127.0.0.1:1/none", "list")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
