"""The agents' hot routes without FastAPI's per-request machinery: heartbeat, long poll and ack.

At 5,000 agents the server answers 1,000 heartbeats and ~200 polls a second, and FastAPI's routing,
dependency solving and response validation cost more CPU than the work itself (bench/findings.md).
:class:`AgentFastPath` sits between the gate (which has authenticated the request and bounded its
body) and FastAPI's exception handling and routing. It answers only requests it can answer exactly
as the FastAPI route would: the token is that agent's own, the body is JSON sent as
``application/json`` and valid, the query string is plain. Anything else (every refusal, every
malformed request) falls through to the FastAPI route, with the body it read replayed, so refusals
keep their exact answers by construction. The FastAPI routes stay declared: they document the API
and answer whatever the fast path passes on.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard, TypeVar
from urllib.parse import parse_qsl

from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from octotui.protocol import API_PREFIX, Command, CommandAck, Heartbeat, HeartbeatResponse
from octotui.server.auth import Principal, acts_as_agent
from octotui.server.controller import Controller
from octotui.server.hub import poll_wait

HEARTBEAT = f"{API_PREFIX}/agents/{{agent_id}}/heartbeat"
COMMANDS = f"{API_PREFIX}/agents/{{agent_id}}/commands"
ACK = f"{API_PREFIX}/agents/{{agent_id}}/commands/{{command_id}}/ack"
_AGENTS = f"{API_PREFIX}/agents/"
_JSON = b"application/json"
#: The query values taken here; any other spelling goes to FastAPI, which validates it.
_SECONDS = re.compile(r"[0-9]{1,4}(\.[0-9]{1,6})?")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
#: An integer literal this long overflows a float: pydantic's JSON mode makes it ``inf`` where
#: FastAPI's ``json.loads`` + Python-mode validation refuses it, so such bodies go to FastAPI.
#: Found as a run of digits in the body with every other byte blanked (C speed, ~2 us a heartbeat).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_HUGE_INT = b"0" * 309

M = TypeVar("M", bound=BaseModel)
#: Answers a request and returns None, or returns the ``receive`` to hand the request on with.
Handler = Callable[[Scope, Receive, Send, dict[str, str]], Awaitable[Receive | None]]


def is_async_callable(obj: object) -> TypeGuard[Callable[..., Awaitable[Any]]]:
    """True when calling ``obj`` gives a coroutine: an ``async def`` function or method, an object whose
    ``__call__`` is one, or a :func:`functools.partial` of either. Starlette decides the same way
    whether an exception handler is awaited or run in a thread (its own helper is private)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(type(obj).__call__))


def _pattern(api: FastAPI, path: str, method: str) -> re.Pattern[str]:
    """Starlette's pattern for ``path``, once it is sure the app declares ``method path``."""
    if method.lower() not in api.openapi().get("paths", {}).get(path, {}):
        raise LookupError(f"the app has no route {method} {path}: the fast path would answer an undocumented one")
    return compile_path(path)[0]


def _dump(adapter: TypeAdapter[Any], content: Any) -> bytes:
    """What FastAPI's ``serialize_response`` makes of a route's return value (validate, dump by alias)."""
    return adapter.dump_json(adapter.validate_python(content, from_attributes=True), by_alias=True)


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    # The headers of ``Response(content, media_type="application/json")``, in its order.
    return [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", _JSON)]


def _content_type(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value  # type: ignore[no-any-return]
    return None


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Every message of the request body, and the body (None when the client left before its end)."""
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        return [message], message.get("body", b"")
    messages = [message]
    chunks: list[bytes] = []
    while message["type"] == "http.request":
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)
        message = await receive()
        messages.append(message)
    return messages, None


def _validate(model: type[M], body: bytes | None) -> M | None:
    """``body`` as ``model`` when FastAPI's route would take it the same; None to let FastAPI judge."""
    if body is None or _HUGE_INT in body.translate(_DIGITS_ONLY):
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None  # FastAPI says what is wrong, in its own words


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` again, then the real ones."""
    pending = list(reversed(messages))

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _poll_query(query: bytes) -> tuple[float | None, bool] | None:
    """``(timeout, fresh)`` of a plain query string; None for anything FastAPI should judge."""
    if not query:
        return None, False
    timeout: float | None = None
    fresh = False
    seen: set[str] = set()
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key in seen:
            return None
        seen.add(key)
        if key == "timeout" and _SECONDS.fullmatch(value) and float(value) <= 3600:
            timeout = float(value)
        elif key == "fresh" and value in _BOOLS:
            fresh = _BOOLS[value]
        else:
            return None
    return timeout, fresh


class AgentFastPath:
    """ASGI middleware answering the agents' hot routes; everything else goes on to ``app``.

    ``api`` is the FastAPI app whose routes it shadows: the routes must be declared there, and its
    exception handlers answer the errors of the controller, so both paths answer alike.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.controller: Controller = api.state.controller
        # As FastAPI's ExceptionMiddleware: a handler of 500 or Exception belongs to the outer layer.
        handlers = {k: v for k, v in api.exception_handlers.items() if k not in (500, Exception)}
        self._handlers = {k: v for k, v in handlers.items() if not isinstance(k, int)}
        self._status_handlers = {k: v for k, v in handlers.items() if isinstance(k, int)}
        #: (method, suffix, compiled path pattern, handler), tried in this order.
        self._routes: list[tuple[str, str, re.Pattern[str], Handler]] = [
            ("POST", "/heartbeat", _pattern(api, HEARTBEAT, "POST"), self._heartbeat),
            ("GET", "/commands", _pattern(api, COMMANDS, "GET"), self._poll),
            ("POST", "/ack", _pattern(api, ACK, "POST"), self._ack),
        ]
        # The response models of those routes' declarations.
        self._beat_answer = TypeAdapter(HeartbeatResponse)
        self._poll_answer = TypeAdapter(list[Command])
        self._idle = HeartbeatResponse()
        self._idle_body = _dump(self._beat_answer, self._idle)
        self._idle_headers = _json_headers(self._idle_body)
        self._empty_poll = _dump(self._poll_answer, [])
        self._empty_poll_headers = _json_headers(self._empty_poll)
        #: Requests of those routes answered here, and handed to FastAPI (refusals, odd requests).
        self.answered = 0
        self.passed_on = 0
        api.state.fast_path = self  # for the tests and a debugger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(_AGENTS):
                method = scope["method"]
                for want, suffix, pattern, handler in self._routes:
                    if method == want and path.endswith(suffix):
                        match = pattern.match(path)
                        if match is None:
                            break
                        passed = await handler(scope, receive, send, match.groupdict())
                        if passed is None:
                            self.answered += 1
                            return
                        self.passed_on += 1
                        receive = passed
                        break
        await self.app(scope, receive, send)

    def _agent(self, scope: Scope, agent_id: str) -> bool:
        principal: Principal | None = scope.get("state", {}).get("principal")
        return principal is not None and acts_as_agent(principal, agent_id)

    async def _own_json(
        self, scope: Scope, receive: Receive, agent_id: str, model: type[M]
    ) -> tuple[M | None, Receive]:
        """The body as ``model`` when the agent itself sent it as valid JSON; else None and the
        ``receive`` to hand the request on to FastAPI with (replaying what was read)."""
        content_type = _content_type(scope)
        if not self._agent(scope, agent_id) or content_type is None or content_type.lower() != _JSON:
            return None, receive
        messages, body = await _read_body(receive)
        value = _validate(model, body)
        return value, (receive if value is not None else _replaying(messages, receive))

    async def _answer(self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer ``exc`` with the app's own exception handler, as FastAPI's routing would."""
        handler = self._status_handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        for cls in type(exc).__mro__:
            if handler is not None:
                break
            handler = self._handlers.get(cls)
        if handler is None:
            raise exc
        request = Request(scope, receive)
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        if response is not None:
            await response(scope, receive, send)
        exc.__traceback__ = None

    async def _heartbeat(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> Receive | None:
        agent_id = params["agent_id"]
        beat, receive = await self._own_json(scope, receive, agent_id, Heartbeat)
        if beat is None:
            return receive
        try:
            answer = self.controller.heartbeat(agent_id, beat)
        except Exception as exc:  # answered by the app's handlers, or re-raised
            await self._refuse(scope, receive, send, exc)
            return None
        if answer.__dict__ == self._idle.__dict__:
            await self._answer(send, 200, self._idle_headers, self._idle_body)
        else:
            out = _dump(self._beat_answer, answer)
            await self._answer(send, 200, _json_headers(out), out)
        return None

    async def _ack(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> Receive | None:
        agent_id = params["agent_id"]
        ack, receive = await self._own_json(scope, receive, agent_id, CommandAck)
        if ack is None:
            return receive
        try:
            self.controller.ack(agent_id, params["command_id"], ack)
        except Exception as exc:  # answered by the app's handlers, or re-raised
            await self._refuse(scope, receive, send, exc)
            return None
        await self._answer(send, 204, [], b"")
        return None

    async def _poll(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> Receive | None:
        agent_id = params["agent_id"]
        query = _poll_query(scope["query_string"])
        if query is None or not self._agent(scope, agent_id):
            return receive
        ctl = self.controller
        try:
            ctl.get_agent(agent_id)
        except Exception as exc:  # answered by the app's handlers, or re-raised
            await self._refuse(scope, receive, send, exc)
            return None
        timeout, fresh = query
        wait = poll_wait(ctl.settings.poll_timeout_min, ctl.settings.poll_timeout_max, timeout)
        commands = await ctl.commands.wait_while_connected(agent_id, wait, fresh, receive)
        if not commands:
            await self._answer(send, 200, self._empty_poll_headers, self._empty_poll)
        else:
            out = _dump(self._poll_answer, commands)
            await self._answer(send, 200, _json_headers(out), out)
        return None
