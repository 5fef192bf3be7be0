"""What the CLI's tests share (tests/test_cli.py, tests/test_cli_run.py): a clean environment, a real
server process (the ``server`` fixture) with provider ``lab`` and one wire-level agent in it, a plan
file. Fixtures registered for every test module in ``tests/conftest.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from octotui.commands import main
from tests.support.admin import create_provider
from tests.support.processes import ServerProcess
from tests.support.wire import PLAN
from tests.support.wireagent import WireAgent


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No settings from the user's machine: config and data dirs in tmp, no OCTOTUI_* variables; set
    in this process (the CLI run in process) and returned whole (for a CLI subprocess)."""
    for name in list(os.environ):
        if name.startswith("OCTOTUI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return dict(os.environ)


@pytest.fixture
def wire_agent(server: ServerProcess) -> Iterator[WireAgent]:
    """Provider ``lab`` on the ``server`` with one wire-level agent in it, gen1, online."""
    with server.client() as api:
        token = create_provider(api, "lab")["token"]
    agent = WireAgent(server, token, "gen1")
    agent.beat()
    yield agent
    agent.close()


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    """A small valid plan, ``shop.jmx``."""
    path = tmp_path / "shop.jmx"
    path.write_text(PLAN)
    return path


def launched(agent: WireAgent) -> dict[str, Any]:
    """The launch waiting for ``agent``, acknowledged (raises while there is none: poll it with
    ``wait_until``); ``agent`` beats first, so that it stays online while a CLI process starts,
    which a loaded machine may take longer to do than the ``server`` fixture's 3 s before late."""
    agent.beat()
    return agent.take_launch()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``octotui ARGV`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def remote(server: ServerProcess) -> list[str]:
    """The options that name ``server`` and its admin token."""
    return ["--server", server.url, "--token", server.admin_token]
