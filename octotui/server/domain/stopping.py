"""Stops: of one container, of a test. Honoured in every state; asked again, handed out again."""

from __future__ import annotations

import logging

from octotui.server.domain import commands, lifecycle
from octotui.server.domain.state import ServerState
from octotui.server.errors import NotFound
from octotui.server.records import ContainerRec, TestRec

log = logging.getLogger("octotui.server")


def stop_container(s: ServerState, c: ContainerRec) -> None:
    """Stop ``c``: a launch not handed out yet is withdrawn, else a stop is queued (again)."""
    if c.state in lifecycle.TERMINAL:
        return
    if c.state == "stopping":
        # Asked again: hand its stop out again now (the first may be lost, or came too early).
        stop = commands.pending_for(s, c.agent_id, "stop", c.id)
        if stop is None or not s.commands.redeliver(c.agent_id, stop.id):
            commands.queue(s, c.agent_id, "stop", c)
        return
    launch = commands.pending_for(s, c.agent_id, "launch", c.id)
    if c.state == "pending" and launch is not None and launch.delivered_at is None:
        # Never handed to the agent: cancel the launch instead of stopping anything.
        commands.withdraw(s, c.agent_id, launch.id)
        lifecycle.set_state(s, c, "failed", "stopped before it started")
        return
    commands.queue(s, c.agent_id, "stop", c)
    lifecycle.set_state(s, c, "stopping")


def stop_test(s: ServerState, t: TestRec, by: str) -> bool:
    """Stop every container of ``t``; False when it had already ended (nothing to do)."""
    if t.state in lifecycle.TEST_TERMINAL:
        return False
    t.stop_requested = True
    t.reason = f"stopped by {by} before its planned end"
    lifecycle.test_changed(s, t)
    for c in s.containers_of(t):
        stop_container(s, c)
    lifecycle.update_test(s, t)
    log.info("test %s (%s): stop requested", t.name, t.id)
    return True


def container_of(s: ServerState, t: TestRec, container_id: str) -> ContainerRec:
    """The container ``container_id`` of test ``t``; :class:`NotFound` when it has none such."""
    c = s.containers.get(container_id)
    if c is None or c.test_id != t.id:
        raise NotFound(f"test {t.id} has no container {container_id!r}")
    return c
