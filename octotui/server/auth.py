"""Bearer tokens and roles.

- the admin token (from the settings) and operator tokens with role ``admin``: everything;
- operator tokens with role ``read-only``: every GET, no change;
- a provider's registration token: may only register agents into that provider;
- an agent token: may only act as that agent (heartbeat, poll, ack).

Operator and agent tokens are stored as SHA-256 hashes; provider tokens as they are, since admins
must read them to install agents.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException

Kind = Literal["admin", "read-only", "provider", "agent"]
OPERATOR_KINDS: frozenset[str] = frozenset({"admin", "read-only"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: its kind and, for providers and agents, which one."""

    kind: Kind
    subject: str = ""

    @property
    def is_operator(self) -> bool:
        return self.kind in OPERATOR_KINDS


class TokenIndex:
    """Every valid token, by hash, resolved in constant time per request (no store access)."""

    def __init__(self, admin_token: str | None) -> None:
        self._admin_hash = hash_token(admin_token) if admin_token else None
        self._by_hash: dict[str, Principal] = {}

    def add(self, token_hash: str, kind: Kind, subject: str = "") -> None:
        self._by_hash[token_hash] = Principal(kind, subject)

    def remove(self, token_hash: str) -> None:
        self._by_hash.pop(token_hash, None)

    def resolve(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; 401 when missing or unknown."""
        if not authorization:
            raise HTTPException(401, "missing token: send 'Authorization: Bearer TOKEN'", _CHALLENGE)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "malformed Authorization header: expected 'Bearer TOKEN'", _CHALLENGE)
        digest = hash_token(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin")
        principal = self._by_hash.get(digest)
        if principal is None:
            raise HTTPException(401, "invalid or revoked token", _CHALLENGE)
        return principal


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_operator(principal: Principal, write: bool) -> None:
    """403 unless ``principal`` is an operator allowed to read (or, with ``write``, to change)."""
    if not principal.is_operator:
        raise HTTPException(403, f"a {principal.kind} token cannot use this route: it needs an operator token")
    if write and principal.kind != "admin":
        raise HTTPException(403, "read-only token: changes need an admin token")


def require_agent(principal: Principal, agent_id: str) -> None:
    """403 unless ``principal`` is the agent ``agent_id`` itself."""
    if principal.kind != "agent":
        raise HTTPException(403, f"a {principal.kind} token cannot act as an agent: it needs that agent's token")
    if principal.subject != agent_id:
        raise HTTPException(403, f"this agent token belongs to agent {principal.subject}, not {agent_id}")


def require_provider(principal: Principal) -> str:
    """The provider id of a registration token; 403 for any other kind."""
    if principal.kind != "provider":
        raise HTTPException(
            403, f"registering an agent needs a provider's registration token, not a {principal.kind} token"
        )
    return principal.subject
