"""``octotui drain AGENT`` and ``undrain AGENT``: take an agent out of service before upgrading it
(no new containers are placed on it, its running ones finish), then put it back."""

from __future__ import annotations

import argparse

from octotui.client import Client, ClientError
from octotui.commands import output as o
from octotui.commands.session import EXIT_OK, Usage


async def _agent_id(client: Client, given: str) -> str:
    """The id of the agent named (or whose id is) ``given``; the name as given when none is, so that
    the server's 404 says so; :class:`Usage` when two agents share that name."""
    found = await client.agents()
    if any(a.id == given for a in found):
        return given
    named = [a for a in found if a.name == given]
    if len(named) > 1:
        ids = ", ".join(a.id for a in named)
        raise Usage(f"{len(named)} agents are named {given!r}: give the id of the one to use ({ids})")
    return named[0].id if named else given


async def drain(client: Client, args: argparse.Namespace, *, undo: bool) -> int:
    agent_id = await _agent_id(client, args.agent)
    try:
        agent = await (client.undrain(agent_id) if undo else client.drain(agent_id))
    except ClientError as exc:
        if exc.status == 404:
            raise Usage(f"no agent named {args.agent!r} (nor with that id): {exc.message} (HTTP 404)") from None
        raise
    if args.json:
        o.print_json(agent)
    elif undo:
        print(f"agent {agent.name} ({agent.id}) undrained: new containers may be placed on it again")
    else:
        running = o.plural(agent.containers, "running container")
        print(f"agent {agent.name} ({agent.id}) drained: no new containers are placed on it ({running} to finish)")
    return EXIT_OK
