"""Helpers of the CLI's tests (tests/test_cli.py, tests/test_cli_run.py)."""

from __future__ import annotations

from typing import Any

from tests.support.wireagent import WireAgent


def launched(agent: WireAgent) -> dict[str, Any]:
    """The launch waiting for ``agent``, acknowledged (raises while there is none: poll it with
    ``wait_until``); ``agent`` beats first, so that it stays online while a CLI process starts,
    which a loaded machine may take longer to do than the ``server`` fixture's 3 s before late."""
    agent.beat()
    return agent.take_launch()
