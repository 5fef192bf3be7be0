"""``providers|agents|tests|test ID --json``: the server's own JSON, passed through re-indented.

These four only print what one GET answers, so they skip :mod:`octotui.client` and the contract's
pydantic models, whose import alone is ~150 ms (more than half of the 0.3 s that
``octotui agents --json`` may take, DESIGN.md): the server serializes the contract's models with every
field (defaults too), so the document is the one the models would print. A sync ``httpx.Client``
spares asyncio's import too. Errors read as the client's do: the same texts (``httpcommon``) and
``session.refusal``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

import httpx

from octotui.commands.session import EXIT_OK, Target, Usage, refusal
from octotui.httpcommon import FAILOVER_STATUSES, detail, server_urls, tls_verify, unreachable

#: The subcommands answered here when ``--json`` is given.
COMMANDS = frozenset({"providers", "agents", "tests", "test"})


def _get(target: Target, path: str, params: dict[str, Any] | None = None) -> Any:
    """The JSON answer of ``GET path``; a replica that does not answer (or answers 502, 503 or 504)
    is followed by the next, as the client does; :class:`Usage` with what each one said."""
    try:
        urls = server_urls(target.url)
    except ValueError as exc:
        raise Usage(str(exc)) from None
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    failures: list[str] = []
    with httpx.Client(headers=headers, timeout=10.0, verify=tls_verify(target.verify, urls), trust_env=True) as http:
        for url in urls:
            try:
                response = http.get(f"{url}/api/v1{path}", params=params)
            except httpx.TransportError as exc:
                failures.append(unreachable(url, exc))
                continue
            if response.status_code in FAILOVER_STATUSES and len(urls) > 1:
                failures.append(f"{url}: {response.status_code} {detail(response)}")
                continue
            if response.is_error:
                raise Usage(refusal(detail(response), response.status_code))
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
