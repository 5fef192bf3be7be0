"""What-if, not the product: ``octotui server`` with its route dependencies made ``async def``.

FastAPI runs plain ``def`` dependencies in its thread pool; this runs the very same server with each
dependency wrapped in a coroutine, to measure what recommendation 1 of docs/BENCHMARKS.md would gain
(``BENCH_WHATIF=async-deps python -m bench --only server_scale``). The product's code is untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _coroutine(func: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def patch() -> None:
    import octotui.server.app as app

    for alias in (app.Ctl, app.Reader, app.Writer, app.Anyone):
        for dep in alias.__metadata__:
            object.__setattr__(dep, "dependency", _coroutine(dep.dependency))


if __name__ == "__main__":
    patch()
    from octotui.server.cli import main

    sys.exit(main(sys.argv[1:]))
