"""The agents' fast path (heartbeat, long poll, ack) answers byte for byte as the FastAPI routes do.

Two real servers on loopback ports, one built as shipped and one with ``create_app(fast_path=False)``,
get the same requests, good and bad, written by hand on raw sockets. Their answers must be the same
bytes once the ``Date`` header is dropped and the ids each server drew are named alike. Each request
also says which path must have answered it on the fast server: good requests the fast path, every
refusal FastAPI itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.rawhttp import ADMIN, MAX_BODY, PLAN, Side, as_kind, beat, exchange, host, request, serving


async def build(side: Side) -> None:
    """A provider, agents A (online) and B, a deleted agent D, a read-only token."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{side.port}/api/v1", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
    ) as api:
        provider = (await api.post("/providers", json={"name": "local"})).json()
        side.ids["P"] = provider["id"]
        for name in ("A", "B", "D"):
            r = await api.post(
                "/agents/register", json={"name": f"host-{name.lower()}", "location": "paris"},
                headers={"Authorization": f"Bearer {provider['token']}"},
            )  # fmt: skip
            assert r.status_code == 200, r.text
            side.ids[name] = r.json()["agent_id"]
            side.tokens[{"A": "agent", "B": "other-agent", "D": "deleted"}[name]] = r.json()["agent_token"]
        assert (await api.delete(f"/agents/{side.ids['D']}")).status_code == 204
        ro = await api.post("/tokens", json={"name": "ro", "role": "read-only"})
        side.tokens.update({"read-only": ro.json()["token"], "admin": ADMIN, "provider": provider["token"]})
        side.tokens["wrong"] = "not-a-token"
        side.ids["X"] = "a-000000000000"  # never drawn
        side.ids["M"] = "m-000000000000"
        r = await api.post(f"/agents/{side.ids['A']}/heartbeat", content=beat(), headers=as_kind(side, "agent"))
        assert r.status_code == 200, r.text


@pytest.fixture
async def sides(tmp_path: Path) -> AsyncIterator[tuple[Side, Side]]:
    async with serving(tmp_path / "fast", True) as fast, serving(tmp_path / "plain", False) as plain:
        await build(fast)
        await build(plain)
        yield fast, plain


HB = "/api/v1/agents/{A}/heartbeat"
POLL = "/api/v1/agents/{A}/commands"
STRAY = [{"container_id": "c-stray", "test_id": "t-gone", "state": "running"}]
HOST = json.dumps({"host": host()})
#: Valid all the same: numbers as strings, NaN, a float literal too big (inf), an integral float for an int.
LAX = b'{"host": {"ts": "1700000000", "cpu_percent": NaN, "memory_percent": 1e400, "memory_used": 1024.0}}'

#: (label, answered by the fast path, request arguments). Good requests first: they change state alike.
HEARTBEATS: list[tuple[str, bool, dict[str, Any]]] = [
    ("good", True, {"body": beat()}),
    ("good, only the host", True, {"body": json.dumps({"host": host()}).encode()}),
    ("good, a stray to stop", True, {"body": beat(containers=STRAY)}),
    ("good, numbers as strings, NaN, 1e400", True, {"body": LAX}),
    ("good, duplicate keys", True, {"body": beat()[:-1] + b', "complete": false, "complete": true}'}),
    ("good, percent-encoded id", True, {"body": beat(), "path": "/api/v1/agents/{%A}/heartbeat"}),
    ("good, chunked", True, {"body": beat(), "chunked": True}),
    ("no token", False, {"body": beat(), "token": None}),
    ("unknown token", False, {"body": beat(), "token": "wrong"}),
    ("malformed Authorization", False, {"body": beat(), "token": None, "headers": ("Authorization: Basic eDp5",)}),
    ("deleted agent's token", False, {"body": beat(), "token": "deleted"}),
    (
        "deleted agent's token on its own path",
        False,
        {"body": beat(), "token": "deleted", "path": "/api/v1/agents/{D}/heartbeat"},
    ),
    ("another agent's token", False, {"body": beat(), "token": "other-agent"}),
    ("read-only token", False, {"body": beat(), "token": "read-only"}),
    ("admin token", False, {"body": beat(), "token": "admin"}),
    ("provider token", False, {"body": beat(), "token": "provider"}),
    ("unknown agent", False, {"body": beat(), "path": "/api/v1/agents/{X}/heartbeat"}),
    ("unknown agent, admin", False, {"body": beat(), "token": "admin", "path": "/api/v1/agents/{X}/heartbeat"}),
    ("malformed JSON", False, {"body": b'{"host": '}),
    ("malformed JSON, another agent's token", False, {"body": b"{", "token": "other-agent"}),
    ("wrong types", False, {"body": b'{"host": "x", "containers": {}}'}),
    ("unknown field", False, {"body": beat(colour="red")}),
    ("missing field", False, {"body": b'{"docker": {}}'}),
    ("empty body", False, {"body": b""}),
    ("a list", False, {"body": b"[]"}),
    ("null", False, {"body": b"null"}),
    ("an integer too big for a float", False, {"body": HOST.replace("12.5", "9" * 400).encode()}),
    ("a fraction for an int", False, {"body": HOST.replace("3221225472", "1.5").encode()}),
    ("UTF-16", False, {"body": beat().decode().encode("utf-16-le")}),
    ("UTF-8 with a BOM", False, {"body": b"\xef\xbb\xbf" + beat()}),
    (
        "lone surrogate",
        False,
        {"body": beat(docker={"available": True, "version": "\ud800"}).replace(b"\\ud800", b"\xed\xa0\x80")},
    ),
    ("bad UTF-8", False, {"body": beat(docker={"version": "x"}).replace(b'"x"', b'"\xff"')}),
    ("text/plain", False, {"body": beat(), "content_type": "text/plain"}),
    ("no Content-Type", False, {"body": beat(), "content_type": None}),
    ("JSON with a charset", False, {"body": beat(), "content_type": "application/json; charset=utf-8"}),
    ("vendor JSON type", False, {"body": beat(), "content_type": "application/vnd.x+json"}),
    ("oversized", False, {"body": beat(pad="x" * MAX_BODY)}),
    ("oversized, chunked", False, {"body": beat(pad="x" * MAX_BODY), "chunked": True}),
    ("bad Content-Length", False, {"body": b"", "headers": ("Content-Length: abc",)}),
    ("trailing slash", False, {"body": beat(), "path": HB + "/"}),
    ("GET", False, {"method": "GET", "body": b""}),
    ("PUT", False, {"method": "PUT", "body": beat()}),
]

POLLS: list[tuple[str, bool, dict[str, Any]]] = [
    ("timeout 0", True, {"path": POLL + "?timeout=0"}),
    ("timeout 0.05, fresh", True, {"path": POLL + "?fresh=true&timeout=0.05"}),
    ("fresh 0, percent-encoded", True, {"path": POLL + "?timeout=%30&fr%65sh=0"}),
    ("server's own wait", True, {"path": POLL}),
    ("a timeout over the cap", True, {"path": POLL + "?timeout=3600"}),
    ("no token", False, {"path": POLL + "?timeout=0", "token": None}),
    ("unknown token", False, {"path": POLL + "?timeout=0", "token": "wrong"}),
    ("another agent's token", False, {"path": POLL + "?timeout=0", "token": "other-agent"}),
    ("read-only token", False, {"path": POLL + "?timeout=0", "token": "read-only"}),
    ("admin token", False, {"path": POLL + "?timeout=0", "token": "admin"}),
    ("provider token", False, {"path": POLL + "?timeout=0", "token": "provider"}),
    ("deleted agent's token", False, {"path": "/api/v1/agents/{D}/commands?timeout=0", "token": "deleted"}),
    ("unknown agent, admin", False, {"path": "/api/v1/agents/{X}/commands?timeout=0", "token": "admin"}),
    ("timeout too long", False, {"path": POLL + "?timeout=3601"}),
    ("negative timeout", False, {"path": POLL + "?timeout=-1"}),
    ("timeout not a number", False, {"path": POLL + "?timeout=soon"}),
    ("empty timeout", False, {"path": POLL + "?timeout="}),
    ("nan timeout", False, {"path": POLL + "?timeout=nan"}),
    ("exponent timeout", False, {"path": POLL + "?timeout=1e-3"}),
    ("timeout and a newline", False, {"path": POLL + "?timeout=0%0A"}),
    ("timeout with leading zeros", True, {"path": POLL + "?timeout=0000.000"}),
    ("fresh in capitals", False, {"path": POLL + "?timeout=0&fresh=TRUE"}),
    ("fresh yes", False, {"path": POLL + "?timeout=0&fresh=yes"}),
    ("fresh maybe", False, {"path": POLL + "?timeout=0&fresh=maybe"}),
    ("timeout twice", False, {"path": POLL + "?timeout=0&timeout=0.01"}),
    ("unknown parameter", False, {"path": POLL + "?timeout=0&colour=red"}),
    ("parameter by its Python name", False, {"path": POLL + "?wait_s=0"}),
    ("with a body", True, {"path": POLL + "?timeout=0", "body": b"{}"}),
    ("HEAD", False, {"method": "HEAD", "path": POLL + "?timeout=0"}),
    ("POST", False, {"method": "POST", "path": POLL, "body": b"{}"}),
    ("trailing slash", False, {"path": POLL + "/?timeout=0"}),
]


def _ack(command: str = "{M}") -> str:
    return f"/api/v1/agents/{{A}}/commands/{command}/ack"


ACKS: list[tuple[str, bool, dict[str, Any]]] = [
    ("unknown command", True, {"path": _ack(), "body": b'{"ok": true}'}),
    ("another agent's token", False, {"path": _ack(), "body": b'{"ok": true}', "token": "other-agent"}),
    ("admin token", False, {"path": _ack(), "body": b'{"ok": true}', "token": "admin"}),
    ("no token", False, {"path": _ack(), "body": b'{"ok": true}', "token": None}),
    ("malformed JSON", False, {"path": _ack(), "body": b'{"ok": '}),
    ("wrong type", False, {"path": _ack(), "body": b'{"ok": "perhaps"}'}),
    ("missing field", False, {"path": _ack(), "body": b"{}"}),
    ("no Content-Type", False, {"path": _ack(), "body": b'{"ok": true}', "content_type": None}),
]


async def compare(fast: Side, plain: Side, label: str, by_fast_path: bool, args: dict[str, Any]) -> bytes:
    """Send one request to both sides; their answers must match. Returns the fast side's answer."""
    kwargs = dict(args)
    path = kwargs.pop("path", HB)
    method = kwargs.pop("method", "GET" if "/commands" in path and not path.endswith("/ack") else "POST")
    before = fast.fast
    answers = []
    for side in (fast, plain):
        answers.append(side.canonical(await exchange(side.port, request(side, method, path, **kwargs))))
    assert answers[0] == answers[1], f"{label}: the fast path answers\n{answers[0]!r}\nFastAPI answers\n{answers[1]!r}"
    answered, passed = fast.fast[0] - before[0], fast.fast[1] - before[1]
    if by_fast_path:
        assert (answered, passed) == (1, 0), f"{label}: expected the fast path to answer it"
    else:
        assert answered == 0, f"{label}: expected FastAPI to answer it"
    return answers[0]


async def test_heartbeats_good_and_bad_answer_alike(sides: tuple[Side, Side]) -> None:
    fast, plain = sides
    assert plain.fast == (0, 0) and not hasattr(plain.app.state, "fast_path")
    for label, by_fast_path, args in HEARTBEATS:
        answer = await compare(fast, plain, label, by_fast_path, args)
        if label == "good":
            assert (
                answer.endswith(b'{"ok":true,"stop":[],"labels_wanted":[],"monitors":null,"monitor_revision":null}')
                and b"content-type: application/json" in answer
            )
        if label == "good, a stray to stop":
            stray = b'{"ok":true,"stop":["c-stray"],"labels_wanted":[],"monitors":null,"monitor_revision":null}'
            assert answer.endswith(stray)
    assert fast.fast[1] > 10  # the refusals did reach the fast path before FastAPI


async def test_polls_and_acks_answer_alike_with_and_without_commands(sides: tuple[Side, Side]) -> None:
    fast, plain = sides
    for label, by_fast_path, args in POLLS + ACKS:
        answer = await compare(fast, plain, label, by_fast_path, args)
        if label == "timeout 0":
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n[]")
        if label == "unknown command":
            assert b"404" in answer.split(b"\r\n")[0]
    # A queued command: the same launch in the answer, then the acknowledgements.
    for side in (fast, plain):
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            test = {"name": "t", "plan": PLAN, "provider": side.ids["P"], "containers": 1}
            r = await api.post(f"http://127.0.0.1:{side.port}/api/v1/tests", json=test)
            assert r.status_code == 201, r.text
            side.ids["T"] = r.json()["id"]
            side.ids["C"] = r.json()["containers"][0]["id"]
    answer = await compare(fast, plain, "a launch", True, {"path": POLL + "?timeout=5"})
    assert b'"kind":"launch"' in answer and b'"container_id":"<C>"' in answer
    for side in (fast, plain):
        queued = side.app.state.controller.commands.pending(side.ids["A"])
        assert len(queued) == 1
        side.ids["CMD"] = queued[0].id
    ack = _ack("{CMD}")
    await compare(fast, plain, "delivered: not again at once", True, {"path": POLL + "?timeout=0"})
    await compare(fast, plain, "fresh: again", True, {"path": POLL + "?timeout=0&fresh=true"})
    await compare(
        fast, plain, "ack by another agent", False, {"path": ack, "body": b'{"ok":true}', "token": "other-agent"}
    )
    await compare(fast, plain, "ack", True, {"path": ack, "body": b'{"ok": true}'})
    await compare(fast, plain, "ack again", True, {"path": ack, "body": b'{"ok": false, "error": "x"}'})
    await compare(fast, plain, "acknowledged: gone", True, {"path": POLL + "?timeout=0&fresh=true"})
    for side in (fast, plain):
        ctl = side.app.state.controller
        assert [c.state for c in ctl.test_out(ctl.tests[side.ids["T"]]).containers] == ["starting"]


async def test_a_poll_whose_client_left_takes_no_command(sides: tuple[Side, Side]) -> None:
    """The server drops a held poll when its client goes: the next command goes to the next poll at once."""
    before = sides[0].fast[0]
    for side in sides:
        raw = request(side, "GET", POLL + "?timeout=30")
        _, writer = await asyncio.open_connection("127.0.0.1", side.port)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()  # the client leaves while its poll is held
        await writer.wait_closed()
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{side.port}/api/v1", timeout=10) as api:
            test = {"name": "t", "plan": PLAN, "provider": side.ids["P"], "containers": 1}
            created = await api.post("/tests", json=test, headers={"Authorization": f"Bearer {ADMIN}"})
            assert created.status_code == 201, created.text
            started = time.monotonic()
            r = await api.get(
                f"/agents/{side.ids['A']}/commands", params={"timeout": 10}, headers=as_kind(side, "agent")
            )
            assert r.status_code == 200 and [c["kind"] for c in r.json()] == ["launch"], r.text
            assert time.monotonic() - started < 2, "the command went to the poll whose client had left"
    assert sides[0].fast[0] - before == 2  # the held poll and the last one went through the fast path


async def test_the_openapi_document_is_the_same(sides: tuple[Side, Side]) -> None:
    """The fast path shadows the declared routes: they stay documented, unchanged."""
    fast, plain = sides
    documents = [await exchange(side.port, request(side, "GET", "/api/v1/openapi.json", None)) for side in sides]
    assert fast.canonical(documents[0]) == plain.canonical(documents[1])
    paths = json.loads(documents[0].partition(b"\r\n\r\n")[2])["paths"]
    assert {"/api/v1/agents/{agent_id}/heartbeat", "/api/v1/agents/{agent_id}/commands"} <= set(paths)
