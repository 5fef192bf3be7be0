"""A wire agent kept online while a dashboard test runs: the tests' servers call an agent offline
after 6 s without a heartbeat, which a loaded machine passes while the app starts and its screens open."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def beating_every(beat: Callable[[], object], interval: float = 0.5, most: int = 600) -> Iterator[None]:
    """Call ``beat`` every ``interval`` seconds in a thread while the block runs (at most ``most`` times)."""
    stop = threading.Event()

    def run() -> None:
        for _ in range(most):
            beat()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
