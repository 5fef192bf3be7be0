"""The command lines that install an agent for a provider, as the install dialog shows them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: The agent image as ``make agent-image`` tags it.
AGENT_IMAGE = "octotui-agent:latest"
#: Shown instead of the registration token to tokens that may not see it (read-only).
TOKEN_PLACEHOLDER = "PROVIDER_TOKEN"


@dataclass(frozen=True)
class InstallLine:
    """One line to copy: what it is for, and the command."""

    label: str
    command: str


def install_lines(server_url: str, token: str, location: str) -> list[InstallLine]:
    """The native install (two lines) and the Docker one, with everything filled in.

    The token goes in the environment (``OCTOTUI_TOKEN``), never in the agent's arguments, where
    ``ps`` shows it to every user of the machine.
    """
    url = shlex.quote(server_url)
    tok = shlex.quote(token or TOKEN_PLACEHOLDER)
    loc = shlex.quote(location.strip())
    docker = (
        "docker run -d --restart unless-stopped --name octotui-agent --network host"
        " -v /var/run/docker.sock:/var/run/docker.sock -v /var/lib/octotui-agent:/var/lib/octotui-agent"
        f" -e OCTOTUI_SERVER={url} -e OCTOTUI_TOKEN={tok} -e OCTOTUI_LOCATION={loc} {AGENT_IMAGE}"
    )
    return [
        InstallLine("native, step 1", "pip install octotui"),
        InstallLine("native, step 2", f"OCTOTUI_TOKEN={tok} octotui-agent --server={url} --location={loc}"),
        InstallLine("docker", docker),
    ]
