"""Docker helpers of the benchmarks: find a test's containers, read their start time, clean up."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker

from octotui.protocol import LABEL_MANAGED, LABEL_TEST


def client() -> Any:
    return docker.from_env(timeout=60)


def of_test(dc: Any, test_id: str) -> list[Any]:
    return dc.containers.list(all=True, filters={"label": f"{LABEL_TEST}={test_id}"})  # type: ignore[no-any-return]


def started_at(container: Any) -> float | None:
    """Unix time of ``State.StartedAt`` (nanoseconds trimmed to microseconds), None before it started."""
    container.reload()
    state = container.attrs.get("State", {})
    raw: str = state.get("StartedAt", "")
    if not raw or raw.startswith("0001-"):
        return None
    head, _, frac = raw.rstrip("Z").partition(".")
    stamp = f"{head}.{(frac + '000000')[:6]}+00:00"
    return datetime.fromisoformat(stamp).timestamp()


def first_start(dc: Any, test_id: str) -> Callable[[], float | None]:
    """A ``wait_until`` predicate: when the first of the test's containers started (None before)."""
    return lambda: next((s for c in of_test(dc, test_id) if (s := started_at(c))), None)


def containers_gone(dc: Any, test_id: str) -> Callable[[], bool]:
    """A ``wait_until`` predicate: True once every container of the test is gone."""
    return lambda: not of_test(dc, test_id)


def remove_tests(dc: Any, test_ids: list[str]) -> int:
    """Force-remove every container of these tests that is still there; how many were."""
    removed = 0
    for test_id in test_ids:
        for c in of_test(dc, test_id):
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True, v=True)
                removed += 1
    return removed


def managed_count(dc: Any) -> int:
    return len(dc.containers.list(all=True, filters={"label": LABEL_MANAGED}))
