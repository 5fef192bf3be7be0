"""Command queueing: launches and stops queued for an agent's long poll, and their acknowledgements."""

from __future__ import annotations

from octotui.protocol import CommandAck, CommandKind, LaunchSpec
from octotui.server.domain import clock, lifecycle
from octotui.server.domain.state import ServerState, new_id
from octotui.server.errors import NotFound
from octotui.server.records import CommandRec, ContainerRec

#: How many acknowledged command ids are remembered, so that an acknowledgement sent again is no error.
ACKED_KEPT = 10_000


def make(agent_id: str, kind: CommandKind, c: ContainerRec, launch: LaunchSpec | None = None) -> CommandRec:
    """A new command for container ``c`` (not queued yet)."""
    return CommandRec(
        id=new_id("m"),
        agent_id=agent_id,
        kind=kind,
        container_id=c.id,
        test_id=c.test_id,
        created_at=clock.now(),
        launch=launch,
    )


def queue(s: ServerState, agent_id: str, kind: CommandKind, c: ContainerRec) -> CommandRec:
    """Queue a command for ``agent_id`` (handed to its next poll, written at the next flush)."""
    cmd = make(agent_id, kind, c)
    s.commands.push(cmd)
    s.unsaved.new_commands.append(cmd)
    return cmd


def withdraw(s: ServerState, agent_id: str, command_id: str) -> None:
    """Take a queued command back (it is deleted from the store at the next flush)."""
    s.commands.remove(agent_id, command_id)
    s.unsaved.done_commands.append(command_id)


def pending_for(s: ServerState, agent_id: str, kind: CommandKind, container_id: str) -> CommandRec | None:
    """The queued ``kind`` command of a container, if any."""
    return next((x for x in s.commands.pending(agent_id) if x.kind == kind and x.container_id == container_id), None)


def ack(s: ServerState, agent_id: str, command_id: str, answer: CommandAck) -> None:
    """An agent's acknowledgement of a command: its outcome moves the container on."""
    cmd = s.commands.remove(agent_id, command_id)
    if cmd is None:
        if command_id in s.acked:
            return  # a repeated acknowledgement (its first answer was lost)
        raise NotFound(f"no queued command {command_id!r} for agent {agent_id}")
    s.acked[command_id] = None
    while len(s.acked) > ACKED_KEPT:
        s.acked.popitem(last=False)
    s.unsaved.done_commands.append(cmd.id)
    c = s.containers.get(cmd.container_id)
    if c is None:
        return
    if not answer.ok:
        if cmd.kind == "launch" and c.state not in lifecycle.TERMINAL:
            lifecycle.set_state(s, c, "failed", answer.error or "the agent could not launch the container")
        elif cmd.kind == "stop":
            c.error = answer.error or "the agent could not stop the container"
            s.unsaved.containers.add(c.id)
            lifecycle.touch_container(s, c)
    elif cmd.kind == "launch" and c.state == "pending":
        lifecycle.set_state(s, c, "starting")
