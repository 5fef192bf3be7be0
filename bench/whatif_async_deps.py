"""What-if, not the product: ``octotui server`` with its route dependencies made ``async def``.

FastAPI runs plain ``def`` dependencies in its thread pool; this runs the very same server with each
dependency wrapped in a coroutine, to measure what recommendation 1 of docs/BENCHMARKS.md would gain
(``BENCH_WHATIF=async-deps python -m bench --only server_scale``). The product's code is untouched.
Since commit 89e0b38 the product's dependencies are ``async def`` themselves: there is nothing left
to wrap, and this exits 1 saying so (the what-if server never starts) rather than serve 500s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, get_args


def _coroutine(func: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def patch() -> int:
    """Wrap each plain ``def`` dependency of the route aliases in a coroutine; how many were.
    One already ``async def`` is left alone: wrapped, the route would get an un-awaited coroutine
    (every request a 500). Since commit 89e0b38 they all are (the recommendation was taken)."""
    import asyncio

    import octotui.server.app as app

    wrapped = 0
    # Before the app is built (octotui/server/http/factory.py builds its routes once per process, at
    # the first create_app): the routes then take these coroutines as their dependencies.
    for alias in (app.Ctl, app.Reader, app.Writer, app.Anyone):
        for dep in get_args(alias)[1:]:  # Annotated[T, Depends(...)]: its metadata
            if asyncio.iscoroutinefunction(dep.dependency):
                continue
            object.__setattr__(dep, "dependency", _coroutine(dep.dependency))
            wrapped += 1
    return wrapped


if __name__ == "__main__":
    if not patch():
        sys.exit(
            "bench.whatif_async_deps: nothing to measure, the server's dependencies are all async def "
            "already (the product does what this what-if measured)"
        )
    from octotui.server.cli import main

    sys.exit(main(sys.argv[1:]))
