"""Replicas on a PostgreSQL that was restarted: the first launch through each one succeeds (its
launch lock's connection, ended by PostgreSQL's restart, is made again rather than answered 503)."""

from __future__ import annotations

import functools
from pathlib import Path

from tests.support.postgres import Cluster
from tests.support.processes import ServerProcess
from tests.support.replicas import agent_on, launch, provider, replicas
from tests.support.waiting import wait_until


def _writes(server: ServerProcess, name: str) -> bool:
    """Whether ``server`` writes to the store again (a provider made, then deleted)."""
    with server.client() as http:
        made = http.post("/providers", json={"name": name})
        if made.status_code != 201:
            return False
        http.delete(f"/providers/{made.json()['id']}").raise_for_status()
    return True


def test_the_first_launch_on_each_replica_after_postgresql_restarted_succeeds(
    dedicated_postgres: Cluster, tmp_path: Path
) -> None:
    dsn = dedicated_postgres.dsn(dedicated_postgres.create_database())
    with replicas(tmp_path, dsn) as (a, b):
        agent = agent_on(b, provider(a), a)
        for server in (a, b):  # each replica's launch lock has its connection
            assert launch(server).status_code == 201
        dedicated_postgres.stop()
        dedicated_postgres.start_same_port()
        for i, server in enumerate((a, b)):
            probe = functools.partial(_writes, server, f"probe{i}")
            wait_until(probe, timeout=30, what="the store back")
        agent.beat()
        answers = [launch(server) for server in (a, b)]
        assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
        agent.close()
