"""``octotui-agent`` (also ``python -m agent``): monitor this machine and run JMeter containers.

SIGTERM and SIGINT end the agent cleanly with status 0; JMeter containers keep running (they
belong to their test) and the agent finds them again by their labels when it starts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from agent import registry_auth
from agent.settings import parse_settings

# Libraries the agent never uses, refused to keep it under its footprint target (< 45 MB RSS):
# httpx imports its command-line tool's (click, pygments, rich) when installed, ~5 MiB.
for _unused in ("click", "pygments", "rich"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

from agent.runtime import AgentRuntime  # noqa: E402


async def _run(runtime: AgentRuntime) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = await runtime.run(stop)
    if stop.is_set():
        logging.getLogger("octotui.agent").info("stopped by signal; containers keep running")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``octotui-agent`` console script; returns the exit status."""
    settings = parse_settings(argv)
    registry_auth.configure(settings.docker_config)  # every Engine the runtime makes reads this file
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("octotui.agent").info("octotui-agent for %s, state in %s", settings.server, settings.state_dir)
    if settings.docker_config is not None:
        logging.getLogger("octotui.agent").info("registry logins from %s", settings.docker_config)
    return asyncio.run(_run(AgentRuntime(settings)))


if __name__ == "__main__":
    sys.exit(main())
