"""The fast path awaits the app's async exception handlers and runs the others in a thread, deciding
as Starlette does (without Starlette's private helper): async functions and methods, objects with an
async ``__call__``, and ``functools.partial`` of either are awaited."""

from __future__ import annotations

import functools
from typing import Any

from octotui.server.http.fastpath import is_async_callable


async def handler(request: Any, exc: Exception) -> None: ...


def sync_handler(request: Any, exc: Exception) -> None: ...


class AsyncHandler:
    async def __call__(self, request: Any, exc: Exception) -> None: ...

    async def method(self, request: Any, exc: Exception) -> None: ...


class SyncHandler:
    def __call__(self, request: Any, exc: Exception) -> None: ...


def test_async_handlers_of_every_shape_are_awaited() -> None:
    for obj in (
        handler,
        AsyncHandler(),
        AsyncHandler().method,
        functools.partial(handler, None),
        functools.partial(AsyncHandler(), None),
        functools.partial(functools.partial(AsyncHandler()), None),
    ):
        assert is_async_callable(obj), obj


def test_sync_handlers_and_non_callables_are_not() -> None:
    for obj in (sync_handler, SyncHandler(), functools.partial(sync_handler, None), AsyncHandler, None, 3):
        assert not is_async_callable(obj), obj
