"""Fault 8: the server's disk is full.

The data dir is a small tmpfs of its own (root only: mount), filled to ENOSPC by a filler file (a
read-only remount is refused, EBUSY, while the server holds the database open for writing). A write
must fail with a clear error to the client, what is stored must stay whole (SQLite integrity check,
every record still there after a restart), and writes work again once space returns.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.xdist_group("fault-disk")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    with contextlib.suppress(OSError), path.open("wb") as handle:
        for _ in range(10_000):  # 4 MiB disk: ends with ENOSPC long before
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())


def _integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _server(disk: Path) -> ServerProcess:
    proc = ServerProcess(disk / "data")
    proc.log_path = disk.parent / "server.log"  # the log must not need the full disk
    return proc.start()


def test_disk_full_write_fails_clearly_and_recovers(small_disk: Path) -> None:
    server = _server(small_disk)
    try:
        api = server.client()
        assert api.post("/providers", json={"name": "before"}).status_code == 201
        filler = small_disk / "filler"
        _fill(filler)
        failed = []
        for i in range(3):
            try:
                failed.append(api.post("/providers", json={"name": f"full-{i}"}))
            except httpx.TransportError as exc:  # today: the connection is reset
                failed.append(exc)
        assert api.get("/providers").status_code == 200, "reads go on"
        filler.unlink()
        after = api.post("/providers", json={"name": "after"})
        assert after.status_code == 201, after.text
        server.restart()
        names = {p["name"] for p in server.client().get("/providers").json()}
        assert {"before", "after"} <= names, names
        assert _integrity(small_disk / "data" / "octotui.db") == "ok"
        assert "full-0" not in names, "a refused write leaves nothing behind"
        for response in failed:  # last: what the product must add
            assert isinstance(response, httpx.Response), f"no answer to the client: {response!r}"
            assert response.status_code == 507, response.text
            assert "disk" in response.json()["detail"].lower(), response.text
    finally:
        server.stop()
