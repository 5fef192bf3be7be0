"""Operator tokens (named, ``admin`` or ``read-only``, stored hashed) and the audit log."""

from __future__ import annotations

import logging

from octotui.protocol import TokenCreated, TokenInfo
from octotui.server.auth import STARTUP_ADMIN, Principal, hash_token, new_token
from octotui.server.domain import clock
from octotui.server.domain.state import ServerState
from octotui.server.domain.views import dt
from octotui.server.errors import Conflict, Invalid, NotFound

log = logging.getLogger("octotui.server")


async def create(s: ServerState, name: str, role: str) -> TokenCreated:
    """A new named operator token; only its hash is kept, the secret is returned once."""
    if role not in ("admin", "read-only"):
        raise Invalid(f"role must be 'admin' or 'read-only', not {role!r}")
    if name == STARTUP_ADMIN or name in s.tokens.operators:
        raise Conflict(f"a token named {name!r} already exists")
    token = new_token()
    token_hash = hash_token(token)
    now = clock.now()
    if not await s.store.add_operator(name, role, token_hash, now):
        raise Conflict(f"a token named {name!r} already exists")
    s.tokens.add_operator(name, role, token_hash, now)
    log.info("operator token %s (%s) created", name, role)
    return TokenCreated(name=name, role=role, token=token)


def listed(s: ServerState) -> list[TokenInfo]:
    """The operator tokens, the start-up admin token first; never their secrets."""
    out = [TokenInfo(name=STARTUP_ADMIN, role="admin")] if s.settings.admin_token else []
    for name, (_, role, created) in sorted(s.tokens.operators.items(), key=lambda kv: kv[1][2]):
        out.append(TokenInfo(name=name, role=role, created_at=dt(created)))
    return out


async def revoke(s: ServerState, name: str) -> None:
    """Revoke a named operator token at once (the next request with it gets 401)."""
    if name == STARTUP_ADMIN:
        raise Conflict("the start-up admin token cannot be revoked through the API: restart the server with another")
    if name not in s.tokens.operators:
        raise NotFound(f"no token named {name!r}")
    s.tokens.remove_operator(name)
    await s.store.remove_operator(name)
    log.info("operator token %s revoked", name)


async def sync(s: ServerState) -> None:
    """Take operator tokens changed in the store by another process (``octotui token --data-dir``)."""
    rows = await s.store.operators_if_changed()
    if rows is not None:
        s.tokens.replace_operators(rows)


def actor(s: ServerState, who: Principal) -> str:
    """How the audit log names the holder of a token."""
    if who.kind == "provider":
        p = s.providers.get(who.subject)
        return f"provider:{p.name if p else who.subject}"
    if who.kind == "agent":
        return f"agent:{who.subject}"
    return who.subject or who.kind


async def audit(s: ServerState, who: Principal, action: str, target: str, detail: str = "", address: str = "") -> None:
    """Record one change: who (token name and role), what, when, from where."""
    await s.store.add_audit(clock.now(), actor(s, who), who.kind, action, target, detail, address)
