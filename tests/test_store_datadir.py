"""The server's state is protected: one server per data dir, a database that is not ours (or is
damaged) refused with a clear message and left untouched, versioned migrations, durable
idempotency keys, a bounded database. Real ``octotui server`` processes where it matters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from octotui.server.records import ProviderRec
from octotui.server.store import Store
from tests.conftest import ServerProcess, free_port

ADMIN = "test-admin-token"


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
