"""What the agent says when a proxy in front of the server answers an error of its own (Debian's
HAProxy, as ``deploy/`` runs it, with no replica up): the status and its reason, never the proxy's
HTML page in the agent's log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent.link import ServerLink, ServerUnreachable
from agent.settings import parse_settings
from agent.state import Identity
from tests.support.haproxy import HAProxy
from tests.support.processes import free_port


async def test_a_proxys_html_error_page_is_not_what_the_agent_says(
    haproxy: Callable[[Sequence[int]], HAProxy], tmp_path: Path
) -> None:
    lb = haproxy([free_port()])  # its only replica: nothing listens there
    link = ServerLink(parse_settings(["--server", lb.url, "--state-dir", str(tmp_path)], env={}))
    try:
        with pytest.raises(ServerUnreachable) as failed:
            await link.info(Identity("a-1", "tok", lb.url))
    finally:
        await link.aclose()
    said = str(failed.value)
    assert said in ("server error 503: Service Unavailable", "server error 502: Bad Gateway"), said
