"""The cyclic garbage collector run on the server's clock instead of CPython's allocation counts.

CPython starts a young collection when allocations minus deallocations of tracked objects pass a
threshold. A server with thousands of agents is in a steady state: every second it creates tens of
thousands of objects that live for seconds (a long poll's coroutines, tasks and futures live
20-30 s) while as many older ones die, so that count hardly moves. The young generation then grows
to hundreds of thousands of objects before a collection walks them all at once: measured at 5,000
agents, young collections of 50-390 ms and middle ones of 150-420 ms, each stalling the event loop
and making the whole heartbeat p99 (and they found no garbage: the hot paths make no cycles).

So the automatic collector is off while serving, and :class:`Collector` collects the two young
generations every ``young_every`` seconds, so each collection walks only what survived since the
last one (a few thousand objects, a few ms), and the whole heap now and then, as the safety net
for cycles among long-lived objects. A full walk costs ~0.4 s at 5,000 agents and has found nothing
in every measurement, so each one that finds nothing doubles the wait before the next, from
``full_every`` up to ``full_most``; one that finds garbage brings the wait back to ``full_every``.
"""

from __future__ import annotations

import gc
import time


class Collector:
    """Collections by time. Call :meth:`start` once the start-up heap is frozen, then :meth:`tick` often."""

    def __init__(self, young_every: float = 0.1, full_every: float = 600.0, full_most: float = 3600.0) -> None:
        self.young_every = young_every
        self.full_every = full_every
        self.full_most = max(full_most, full_every)
        #: Seconds until the next full collection after the last one.
        self.full_wait = full_every
        self._young_at = 0.0
        self._full_at = 0.0
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        """Take over from the automatic collector."""
        self._was_enabled = gc.isenabled()
        gc.disable()
        now = time.monotonic()
        self._young_at = now + self.young_every
        self.full_wait = self.full_every
        self._full_at = now + self.full_wait

    def stop(self) -> None:
        """Give the automatic collector back (as it was before :meth:`start`)."""
        if self._was_enabled:
            gc.enable()

    def tick(self) -> None:
        """Collect what is due: the full heap, else the young generations."""
        now = time.monotonic()
        if now >= self._full_at:
            found = gc.collect(2)
            self.full_wait = self.full_every if found else min(self.full_wait * 2, self.full_most)
            self._full_at = now + self.full_wait
            self._young_at = now + self.young_every
        elif now >= self._young_at:
            # Generations 0 and 1 together: survivors go straight to the old generation, so no
            # generation in between accumulates seconds of survivors for one long walk.
            gc.collect(1)
            self._young_at = now + self.young_every
