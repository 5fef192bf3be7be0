"""Bearer tokens and roles.

- the admin token (from the settings) and operator tokens with role ``admin``: everything;
- operator tokens with role ``read-only``: every GET, no change;
- a provider's registration token: may only register agents into that provider;
- an agent token: may only act as that agent (heartbeat, poll, ack).

The store keeps every token it holds (operator, agent and provider registration tokens) only as its
SHA-256 hash. A provider's registration token is shown once, in the answer that made it (creation or
rotation), and never again; stores that kept them readable are converted when the server opens them.
The start-up admin token is not in the store: it comes from the settings (``--admin-token``, or
DATA_DIR/admin.token, mode 0600, written at first start) and is held here as its hash. A presented token
is hashed and looked up by its digest, so the secret is never compared byte by byte; the start-up
admin token's digest is compared with ``hmac.compare_digest``. Tokens are never logged.

Operator tokens have names (unique; ``admin`` is the start-up token's): the audit log says which
token made each change, and ``DELETE /api/v1/tokens/{name}`` revokes one at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from octotui.server.errors import Forbidden, Unauthorized

Kind = Literal["admin", "read-only", "provider", "agent"]
OPERATOR_KINDS: frozenset[str] = frozenset({"admin", "read-only"})
#: The name of the start-up admin token (from the settings or DATA_DIR/admin.token).
STARTUP_ADMIN = "admin"


#: Every token the server makes starts so: never with "-" (which `--token TOKEN` would read as an
#: option, 1 token in 64 before), and easy to tell apart in a log or a secret scanner's rules.
TOKEN_PREFIX = "octo_"


def new_token() -> str:
    """A new secret: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: its kind and which one (operator token name, provider id or agent id)."""

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
        #: Named operator tokens: name -> (hash, role, created_at).
        self.operators: dict[str, tuple[str, str, float]] = {}

    def add(self, token_hash: str, kind: Kind, subject: str = "") -> None:
        self._by_hash[token_hash] = Principal(kind, subject)

    def remove(self, token_hash: str) -> None:
        self._by_hash.pop(token_hash, None)

    def add_operator(self, name: str, role: str, token_hash: str, created_at: float) -> None:
        """Add (or replace) the operator token called ``name``."""
        self.remove_operator(name)
        self.operators[name] = (token_hash, role, created_at)
        self.add(token_hash, role, name)  # type: ignore[arg-type]

    def remove_operator(self, name: str) -> bool:
        """Revoke the operator token called ``name``; False when there is none."""
        entry = self.operators.pop(name, None)
        if entry is None:
            return False
        self.remove(entry[0])
        return True

    def replace_operators(self, rows: list[tuple[str, str, str, float]]) -> None:
        """Take the stored operator tokens ``(hash, role, name, created_at)`` as the whole truth."""
        for name in list(self.operators):
            self.remove_operator(name)
        for token_hash, role, name, created_at in rows:
            self.add_operator(name, role, token_hash, created_at)

    def resolve(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; 401 when missing or unknown."""
        if not authorization:
            raise Unauthorized("missing token: send 'Authorization: Bearer TOKEN'", challenge=True)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("malformed Authorization header: expected 'Bearer TOKEN'", challenge=True)
        digest = hash_token(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin", STARTUP_ADMIN)
        principal = self._by_hash.get(digest)
        if principal is None:
            raise Unauthorized("invalid or revoked token", challenge=True)
        return principal


def _refuse(principal: Principal, what: str, needs: str) -> Forbidden:
    if principal.kind == "read-only":
        return Forbidden(f"read-only token: {what} is not allowed ({needs})")
    article = "an" if principal.kind[0] in "aeiou" else "a"
    return Forbidden(f"{article} {principal.kind} token cannot do this ({what}): {needs}")


def require_operator(principal: Principal, write: bool, what: str = "this change") -> None:
    """403 unless ``principal`` is an operator allowed to read (or, with ``write``, to change)."""
    if not principal.is_operator:
        article = "an" if principal.kind[0] in "aeiou" else "a"
        raise Forbidden(f"{article} {principal.kind} token cannot use this route: it needs an operator token")
    if write and principal.kind != "admin":
        raise _refuse(principal, what, "changes need an admin token")


def acts_as_agent(principal: Principal, agent_id: str) -> bool:
    """True when ``principal`` is the agent ``agent_id`` itself: the rule of :func:`require_agent`."""
    return principal.kind == "agent" and principal.subject == agent_id


def require_agent(principal: Principal, agent_id: str) -> None:
    """403 unless ``principal`` is the agent ``agent_id`` itself."""
    if acts_as_agent(principal, agent_id):
        return
    if principal.kind != "agent":
        raise _refuse(principal, "acting as an agent", "it needs that agent's token")
    if principal.subject != agent_id:
        raise Forbidden(f"this agent token belongs to agent {principal.subject}, not {agent_id}")


def require_provider(principal: Principal) -> str:
    """The provider id of a registration token; 403 for any other kind."""
    if principal.kind != "provider":
        raise _refuse(principal, "registering an agent", "it needs a provider's registration token")
    return principal.subject
