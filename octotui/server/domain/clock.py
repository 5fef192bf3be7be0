"""The domain's wall clock: one place to read it, so that a test can make it stand still."""

from __future__ import annotations

import time


def now() -> float:
    """Seconds since the epoch (``time.time()``)."""
    return time.time()
