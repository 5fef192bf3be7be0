"""A file's deletion through one replica racing a launch naming that file through another: exactly one
of them succeeds, every time (the deletion takes the replicas' launch lock, a launch reads its files'
records under it). Both succeeding left a test whose agents could not fetch the file."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.support.processes import ServerProcess
from tests.support.replicas import agent_on, launch, provider, replicas

ROUNDS = 6


def _race(launcher: ServerProcess, deleter: ServerProcess, file_id: str) -> tuple[httpx.Response, httpx.Response]:
    """``POST /tests`` naming the file through ``launcher`` and ``DELETE /files/ID`` through
    ``deleter``, released together."""
    go = threading.Barrier(2)
    got: dict[str, httpx.Response] = {}

    def launched() -> None:
        go.wait(timeout=10)
        got["launch"] = launch(launcher, files=[{"id": file_id}])

    def deleted() -> None:
        with deleter.client() as http:
            go.wait(timeout=10)
            got["delete"] = http.delete(f"/files/{file_id}")

    threads = [threading.Thread(target=launched), threading.Thread(target=deleted)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return got["launch"], got["delete"]


def test_a_delete_and_a_launch_of_one_file_through_two_replicas_never_both_succeed(
    tmp_path: Path, pg_database: str
) -> None:
    with replicas(tmp_path, pg_database) as (a, b):
        agent = agent_on(b, provider(a), a)
        outcomes = []
        for i in range(ROUNDS):
            with b.client() as http:
                uploaded = http.post("/files", params={"name": f"race{i}.csv"}, content=b"user\n1\n2\n")
                file_id = uploaded.raise_for_status().json()["id"]
            agent.beat()
            launcher, deleter = (b, a) if i % 2 == 0 else (a, b)  # the uploader launches, then deletes
            launched, deleted = _race(launcher, deleter, file_id)
            codes = (launched.status_code, deleted.status_code)
            if launched.status_code == 201:
                assert deleted.status_code == 409, (codes, deleted.text)
                assert "not ended" in deleted.json()["detail"], deleted.text
                with deleter.client() as http:  # the file stays, for the test's agents to fetch
                    assert http.get(f"/files/{file_id}").status_code == 200
                outcomes.append("launched")
            else:
                assert deleted.status_code == 204, (codes, launched.text)
                assert launched.status_code == 422 and "unknown file id" in launched.json()["detail"], launched.text
                outcomes.append("deleted")
        agent.close()
    assert len(outcomes) == ROUNDS, outcomes
