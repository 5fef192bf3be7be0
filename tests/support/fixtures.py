"""Fixtures for every test: the real Docker engine and JMeter image, a real server, the agents a
test starts, and the session-end sweep of containers left by this session's agents."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import JMETER_IMAGE, STARTED_AGENT_STATE_DIRS, AgentProcess, ServerProcess, missing


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client on a live engine."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        missing(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def jmeter_image(docker_client: Any) -> str:
    """The locally built JMeter image (``make jmeter-image``)."""
    import docker.errors

    try:
        docker_client.images.get(JMETER_IMAGE)
    except docker.errors.ImageNotFound:
        missing(f"image {JMETER_IMAGE} is missing: run `make jmeter-image`")
    return JMETER_IMAGE


#: Modules whose in-process servers (``env``, ``start_server``) run on both stores, SQLite and
#: PostgreSQL; the others on SQLite alone (the whole suite twice would double its time).
#: OCTOTUI_TEST_STORE=postgres runs every such server on PostgreSQL (a manual full run).
BOTH_STORES = frozenset({"test_api", "test_api_tests"})
#: Tests of those modules that run on SQLite alone: those that read SQLite's own files (the bytes
#: on disk), and those the store never answers past its opening, so that PostgreSQL under them would
#: prove nothing more at twice the cost: the gate's refusals (401, 403, 413, 422: refused before any
#: write: tokens are resolved in memory), health from memory, the long poll's timing, the OpenAPI page.
SQLITE_ONLY = frozenset({
    "test_registration_tokens_are_stored_hashed_and_shown_once",
    "test_health_needs_no_token",
    "test_openapi_is_published",
    "test_health_goes_online_late_offline",
    "test_long_poll_is_empty_after_its_timeout",
    "test_missing_or_wrong_token_is_401_and_changes_nothing",
    "test_wrong_role_is_403_and_changes_nothing",
    "test_malformed_json_and_wrong_types_are_422_and_change_nothing",
    "test_oversized_body_is_413_and_changes_nothing",
    "test_plan_limit_is_stated_and_enforced",
})  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_kind" not in metafunc.fixturenames:
        return
    forced = os.environ.get("OCTOTUI_TEST_STORE")
    if forced:
        metafunc.parametrize("store_kind", [forced], indirect=True)
    elif metafunc.module.__name__.rsplit(".", 1)[-1] in BOTH_STORES and metafunc.function.__name__ not in SQLITE_ONLY:
        metafunc.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: the store of this test's in-process servers."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_database(request: pytest.FixtureRequest, store_kind: str) -> Iterator[Callable[[Path], str | None]]:
    """The ``database`` setting of a server on a data dir: None (SQLite in it) or the URL of a fresh
    PostgreSQL database (the same one again for the same data dir: a restart finds its state)."""
    if store_kind == "sqlite":
        yield lambda data_dir: None
        return
    cluster = request.getfixturevalue("postgres")
    made: dict[Path, str] = {}

    def database(data_dir: Path) -> str:
        if data_dir not in made:
            made[data_dir] = cluster.create_database()
        return str(cluster.dsn(made[data_dir]))

    yield database
    for name in made.values():
        with contextlib.suppress(Exception):
            cluster.drop_database(name)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real control server with short health thresholds, for end-to-end tests."""
    proc = ServerProcess(tmp_path / "server", "--heartbeat-interval", "1", "--late-after", "3", "--offline-after", "6")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Collects agents a test starts and stops every one of them at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        with contextlib.suppress(Exception):
            agent.stop()


@pytest.fixture(scope="session", autouse=True)
def _sweep_agent_containers() -> Iterator[None]:
    """At the end of the session, remove any container an agent of this session left behind.

    Tests clean up after themselves; this is the net under a test that failed half-way (a killed
    agent's exited JMeter container would otherwise stay on the engine). It touches only containers
    labelled with the id of an agent this pytest process started.
    """
    yield
    ids: set[str] = set()
    for state_dir in STARTED_AGENT_STATE_DIRS:
        with contextlib.suppress(OSError, ValueError, KeyError):
            ids.add(str(json.loads((state_dir / "identity.json").read_text())["agent_id"]))
    if not ids:
        return
    try:
        import docker

        client = docker.from_env(timeout=30)
    except Exception:
        return
    from octotui.protocol import LABEL_AGENT

    try:
        for agent_id in ids:
            with contextlib.suppress(Exception):
                for container in client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"}):
                    with contextlib.suppress(Exception):
                        container.remove(force=True, v=True)
    finally:
        client.close()
