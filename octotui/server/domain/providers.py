"""Providers: groups of agents, each with its registration token (stored hashed, shown once)."""

from __future__ import annotations

import dataclasses
import logging

from octotui.server.auth import hash_token, new_token
from octotui.server.domain import agents, clock
from octotui.server.domain.state import ServerState, new_id
from octotui.server.errors import Conflict, NotFound
from octotui.server.records import ProviderRec

log = logging.getLogger("octotui.server")


def find(s: ServerState, key: str) -> ProviderRec:
    """A provider by id or by name (case-insensitive); :class:`NotFound` when neither matches."""
    if key in s.providers:
        return s.providers[key]
    for p in s.providers.values():
        if p.name.lower() == key.lower():
            return p
    raise NotFound(f"no provider with id or name {key!r}")


def _name_taken(s: ServerState, name: str, except_id: str | None = None) -> bool:
    return any(p.name.lower() == name.lower() and p.id != except_id for p in s.providers.values())


def listed(s: ServerState) -> list[ProviderRec]:
    """The providers, oldest first (as listed)."""
    return sorted(s.providers.values(), key=lambda p: p.created_at)


async def create(s: ServerState, name: str) -> tuple[ProviderRec, str]:
    """Make a provider; its registration token is returned here and never again (stored hashed)."""
    if _name_taken(s, name):
        raise Conflict(f"a provider named {name!r} already exists")
    token = new_token()
    p = ProviderRec(id=new_id("p"), name=name, token_hash=hash_token(token), created_at=clock.now())
    await s.store.save_provider(p)  # first: a refused write must leave nothing behind
    s.providers[p.id] = p
    s.tokens.add(p.token_hash, "provider", p.id)
    s.feed.touch("provider", p.id)
    log.info("provider %s created (%s)", p.name, p.id)
    return p, token


async def rename(s: ServerState, provider_id: str, name: str) -> ProviderRec:
    p = s.get_provider(provider_id)
    if _name_taken(s, name, except_id=p.id):
        raise Conflict(f"a provider named {name!r} already exists")
    await s.store.save_provider(dataclasses.replace(p, name=name))
    p.name = name
    s.feed.touch("provider", p.id)
    for a in s.agents.values():
        if a.provider_id == p.id:  # each agent shows its provider's name
            s.feed.touch("agent", a.id)
    for t in s.tests.values():
        if t.provider_id == p.id:  # and each test
            s.feed.touch("test", t.id)
    return p


async def rotate_token(s: ServerState, provider_id: str) -> tuple[ProviderRec, str]:
    """Give a provider a new registration token, returned here and never again."""
    p = s.get_provider(provider_id)
    token = new_token()
    await s.store.save_provider(dataclasses.replace(p, token_hash=hash_token(token)))
    s.tokens.remove(p.token_hash)
    p.token_hash = hash_token(token)
    s.tokens.add(p.token_hash, "provider", p.id)
    s.feed.touch("provider", p.id)
    log.info("provider %s: registration token rotated", p.name)
    return p, token


async def delete(s: ServerState, provider_id: str) -> None:
    """Forget a provider and its agents; :class:`Conflict` while any of them runs containers."""
    p = s.get_provider(provider_id)
    agent_ids = [a.id for a in s.agents.values() if a.provider_id == p.id]
    busy = [s.agents[i].name for i in agent_ids if s.live.get(i)]
    if busy:
        raise Conflict(f"provider {p.name!r} still runs test containers on {', '.join(sorted(busy))}: stop them first")
    for agent_id in agent_ids:
        agents.forget(s, agent_id)
    agents.touch_containers_of(s, set(agent_ids))
    s.tokens.remove(p.token_hash)
    del s.providers[p.id]
    s.feed.remove("provider", p.id)
    await s.store.delete_provider(p.id, agent_ids)
    log.info("provider %s deleted with %d agent(s)", p.name, len(agent_ids))
