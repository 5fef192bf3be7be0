"""``providers|agents|tests|test ID --json``: the server's own JSON, passed through re-indented.

These four only print what one GET answers, so they skip :mod:`octotui.client` and the contract's
pydantic models, whose import alone is ~150 ms (more than half of the 0.3 s that
``octotui agents --json`` may take, DESIGN.md): the server serializes the contract's models with every
field (defaults too), so the document is the one the models would print. A sync ``httpx.Client``
spares asyncio's import too. Errors read as the client's do (``session.refusal``).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from typing import Any
from urllib.parse import quote

import httpx

from octotui.commands.session import EXIT_OK, Target, Usage, refusal

#: The subcommands answered here when ``--json`` is given.
COMMANDS = frozenset({"providers", "agents", "tests", "test"})
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")
_FAILOVER = frozenset({502, 503, 504})  # a replica behind a proxy that is down: the next may answer


def _urls(target: Target) -> list[str]:
    """``URL[,URL…]``: replicas of one server, tried in order (as the client does)."""
    urls = [u.strip().rstrip("/") for u in target.url.split(",")]
    if "" in urls:
        raise Usage(f"no server URL in {target.url!r}")
    return urls


def _verify(target: Target, urls: list[str]) -> ssl.SSLContext | bool:
    if isinstance(target.verify, str):
        return ssl.create_default_context(cafile=target.verify)
    plain = all(u.lower().startswith("http://") for u in urls) and not any(
        os.environ.get(n) or os.environ.get(n.upper()) for n in _PROXY_VARIABLES
    )
    # No TLS can happen: skip loading the CA bundle (~20 ms), as the client does.
    return False if plain and target.verify is True else target.verify


def _detail(response: httpx.Response) -> str:
    """The server's ``detail`` (FastAPI's validation errors joined), as the client reads it."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = [
            str(item.get("msg", "")) for item in detail if isinstance(item, dict)
        ]  # a GET has no body whose fields to name
        return "; ".join(parts) or response.reason_phrase
    return response.reason_phrase


def _get(target: Target, path: str, params: dict[str, Any] | None = None) -> Any:
    """The JSON answer of ``GET path``; a replica that does not answer (or answers 502, 503 or 504)
    is followed by the next, as the client does; :class:`Usage` with what each one said."""
    urls = _urls(target)
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    failures: list[str] = []
    with httpx.Client(headers=headers, timeout=10.0, verify=_verify(target, urls), trust_env=True) as http:
        for url in urls:
            try:
                response = http.get(f"{url}/api/v1{path}", params=params)
            except httpx.TimeoutException:
                failures.append(f"{url}: no answer in time")
                continue
            except httpx.TransportError as exc:
                failures.append(f"{url}: {str(exc) or type(exc).__name__}")
                continue
            if response.status_code in _FAILOVER and len(urls) > 1:
                failures.append(f"{url}: {response.status_code} {_detail(response)}")
                continue
            if response.is_error:
                raise Usage(refusal(_detail(response), response.status_code))
            try:
                return response.json()
            except ValueError:
                raise Usage(f"unexpected answer from server: not JSON (HTTP {response.status_code})") from None
    raise Usage(f"cannot reach the server: {'; '.join(failures)}")


def answer(target: Target, args: argparse.Namespace) -> int:
    """Print the JSON document of ``args.command`` (one of :data:`COMMANDS`)."""
    name = args.command
    doc: Any
    if name == "providers":
        doc = _get(target, "/providers")
    elif name == "agents":
        doc = _get(target, "/agents")
        if args.provider:
            doc = [a for a in doc if args.provider in (a.get("provider"), a.get("provider_name"))]
    elif name == "tests":
        doc = _get(target, "/tests", {"ended": args.last} if args.last is not None else None)
    else:
        doc = _get(target, f"/tests/{quote(args.id, safe='')}")
    print(json.dumps(doc, indent=2, ensure_ascii=False), file=sys.stdout)
    return EXIT_OK
