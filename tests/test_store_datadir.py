"""The server's state is protected: one server per data dir, a database that is not ours (or is
damaged) refused with a clear message and left untouched, versioned migrations, durable
idempotency keys, a bounded database. Real ``octotui server`` processes where it matters."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from octotui.server.records import ProviderRec
from octotui.server.store import SCHEMA_VERSION, Snapshot, Store
from tests.support.processes import ServerProcess, free_port

ADMIN = "test-admin-token"
FIXTURE = Path(__file__).parent / "data" / "store-v1.sqlite"


def run_server(data_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``octotui server`` expected to refuse at once: its exit and what it said."""
    cmd = [sys.executable, "-m", "octotui", "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
           "--port", str(free_port()), f"--admin-token={ADMIN}"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- 5. one server per data dir ------------------------------------------------------------------


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "data").start()
    try:
        with first.client() as api:
            r = api.post("/providers", json={"name": "paris"})
            assert r.status_code == 201
            provider = r.json()
        second = run_server(tmp_path / "data")
        assert second.returncode != 0
        assert first.proc is not None
        assert f"pid {first.proc.pid}" in second.stderr and "in use" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        with first.client() as api:
            assert [p["id"] for p in api.get("/providers").json()] == [provider["id"]]
    finally:
        first.stop()
    # Gone with its process: the next server starts on it.
    again = ServerProcess(tmp_path / "data").start()
    try:
        with again.client() as api:
            assert [p["name"] for p in api.get("/providers").json()] == ["paris"]
    finally:
        again.stop()


def test_a_provider_is_updated_in_place_never_deleted_and_inserted(tmp_path: Path) -> None:
    async def main() -> None:
        store = Store(tmp_path / "octotui.db")
        await store.open()
        p = ProviderRec(id="p-1", name="paris", token_hash="h1", created_at=1.0)
        await store.save_provider(p)
        await store.save_provider(ProviderRec(id="p-2", name="berlin", token_hash="h3", created_at=2.0))
        (before,) = store.db.execute("SELECT rowid FROM providers WHERE id = 'p-1'").fetchone()
        await store.save_provider(ProviderRec(id="p-1", name="lyon", token_hash="h2", created_at=1.0))
        rows = store.db.execute("SELECT rowid, name, token_hash FROM providers WHERE id = 'p-1'").fetchall()
        await store.close()
        assert rows == [(before, "lyon", "h2")]

    asyncio.run(main())


# --- 6. a database that is not ours, or damaged, is refused and left untouched -------------------


def refused(tmp_path: Path, content: bytes | None, *expected: str) -> None:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    db = data / "octotui.db"
    if content is not None:
        db.write_bytes(content)
    before = db.read_bytes()
    done = run_server(data)
    assert done.returncode != 0, done.stderr
    line = next((x for x in done.stderr.splitlines() if str(db) in x), "")
    assert all(word in line for word in expected), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert db.read_bytes() == before
    assert not db.with_name("octotui.db-wal").exists()


def test_an_empty_database_is_not_a_fresh_install(tmp_path: Path) -> None:
    refused(tmp_path, b"", "empty (0 bytes)", "move it away")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, b"this is a text file, not a database\n" * 200, "not a SQLite database")


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
        db.executemany("INSERT INTO photos (path) VALUES (?)", [(f"/img/{i}.jpg",) for i in range(500)])
    db.close()
    refused(tmp_path, other.read_bytes(), "no octotui tables")


def test_a_truncated_database_is_explained_without_a_traceback(tmp_path: Path) -> None:
    whole = FIXTURE.read_bytes()  # a real octotui database, 18 pages
    refused(tmp_path, whole[: len(whole) // 2], "damaged", "restore it from a backup")


# --- 7. versioned migrations ---------------------------------------------------------------------


def test_a_version_1_store_opens_with_everything_in_it(tmp_path: Path) -> None:
    """tests/data/store-v1.sqlite was made by the code of 3656da1 (tests/data/make_store_v1.py)."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURE, data / "octotui.db")

    async def load() -> Snapshot:
        store = Store(data / "octotui.db")
        try:
            return await store.open()
        finally:
            await store.close()

    snap = asyncio.run(load())
    assert [p.name for p in snap.providers] == ["paris-fleet"]
    (agent,) = snap.agents
    assert (agent.name, agent.location, agent.cpu_count, agent.instance) == ("gen-1", "paris", 4, None)
    tests = {t.name: t for t in snap.tests}
    ended, queued = tests["ended-test"], tests["queued-test"]
    assert ended.state == "finished" and ended.results is not None and ended.results.samples == 120
    assert queued.state == "pending"
    assert {c.test_id: c.state for c in snap.containers} == {ended.id: "finished", queued.id: "pending"}
    (command,) = snap.commands
    assert command.kind == "launch" and command.test_id == queued.id
    assert command.launch is not None and command.launch.plan == queued.plan and "jmeterTestPlan" in queued.plan
    assert [name for _, _, name, _ in snap.operators] == ["ci-reader"]
    with sqlite3.connect(data / "octotui.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (launch,) = db.execute("SELECT launch FROM commands").fetchone()
        assert "plan" not in json.loads(launch)  # stored once, with its test
        assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 5
    db.close()
    # And a real server on it lists it all.
    server = ServerProcess(data).start()
    try:
        with server.client() as api:
            assert {t["name"]: t["state"] for t in api.get("/tests").json()} == {
                "ended-test": "finished",
                "queued-test": "pending",
            }
            assert [a["name"] for a in api.get("/agents").json()] == ["gen-1"]
            assert "ci-reader" in [t["name"] for t in api.get("/tokens").json()]
            assert len(api.get("/audit").json()) == 5
    finally:
        server.stop()


def test_a_database_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    shutil.copy(FIXTURE, newer)
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    refused(tmp_path, newer.read_bytes(), "newer octotui", "upgrade")


# --- 4. idempotency keys outlive the server ------------------------------------------------------

PLAN = (
    '<?xml version="1.0"?><jmeterTestPlan version="1.2"><hashTree><TestPlan testname="t"/></hashTree></jmeterTestPlan>'
)


def wire_agent(api: httpx.Client, provider_token: str, name: str = "gen-1") -> tuple[str, str]:
    """An agent at the wire level: registered, one heartbeat."""
    r = api.post("/agents/register", json={"name": name, "location": "paris"}, headers=bearer(provider_token))
    assert r.status_code == 200, r.text
    agent_id, token = r.json()["agent_id"], r.json()["agent_token"]
    host = {"ts": time.time(), "cpu_percent": 5.0, "cpu_per_core": [5.0, 5.0], "memory_percent": 20.0,
            "memory_total": 8 * 1024**3, "memory_used": 1024**3}  # fmt: skip
    body = {"host": host, "docker": {"available": True, "version": "24"}}
    assert api.post(f"/agents/{agent_id}/heartbeat", json=body, headers=bearer(token)).status_code == 200
    return agent_id, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_idempotency_key_survives_a_server_crash(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    launch = {"name": "checkout", "plan": PLAN, "provider": "local", "containers": 1}
    key = {"Idempotency-Key": "retry-after-crash-0001"}
    try:
        with server.client() as api:
            provider = api.post("/providers", json={"name": "local"}).json()
            wire_agent(api, provider["token"])
            r = api.post("/tests", json=launch, headers=key)
            assert r.status_code == 201, r.text
            first = r.json()["id"]
        server.restart(signal.SIGKILL)  # the answer was lost with the server
        with server.client() as api:
            r = api.post("/tests", json=launch, headers=key)
            assert r.status_code == 200, r.text
            assert r.json()["id"] == first and r.headers["Idempotent-Replayed"] == "true"
            assert [t["id"] for t in api.get("/tests").json()] == [first]
            # The same key for another launch is still refused.
            assert api.post("/tests", json={**launch, "containers": 2}, headers=key).status_code == 422
    finally:
        server.stop()
