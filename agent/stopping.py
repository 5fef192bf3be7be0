"""Stopping a container in any state: before its launch (remembered), while it is prepared (its
pull or download cancelled), running (JMeter's ``StopTestNow``, then ``docker stop``)."""

from __future__ import annotations

import asyncio
import logging
import time

from agent.dockerbase import DockerBase
from agent.engine import NotFound
from agent.launches import SAFE_ID, send_stop_now
from agent.records import Tracked, message

log = logging.getLogger("octotui.agent.containers")


class Stopping(DockerBase):
    """The stops of the containers of :class:`DockerBase`."""

    async def stop(self, container_id: str, grace_s: float) -> str:
        """Ask JMeter to stop (UDP ``StopTestNow``), ``docker stop`` it after ``grace_s``; returns what happened.

        Returns at once; the wait and the fallback run in a task of their own.
        """
        with self._lock:
            tracked = self.records.by_id.get(container_id)
        if tracked is None:
            return await self._stop_early(container_id)
        with self._lock:
            if tracked.terminal:
                return f"already {tracked.state}"
            if tracked.state == "stopping":
                # asked again (heartbeat answers repeat it until it ends): nothing to do, unless the
                # first stop's grace is long past and the container still runs (its fallback was lost)
                if tracked.stop_deadline is None or time.monotonic() < tracked.stop_deadline or tracked.finishing:
                    return "already stopping"
                tracked.stop_deadline = time.monotonic() + self.stop_margin_s
                forced = True
            else:
                forced = False
                tracked.stop_requested = True
                if tracked.state in ("pulling", "starting") or not tracked.docker_id:
                    pull = tracked.pull_task
                    if pull is not None:
                        pull.cancel()
                    return "stopping before start"
                tracked.state = "stopping"
                tracked.stop_deadline = time.monotonic() + grace_s + self.stop_margin_s
        if forced:
            log.warning("container %s still runs long after its stop: docker stop", container_id)
            self._spawn(self._stop_after(tracked, 0.0), f"stop-{container_id}-again")
            return "docker stop (repeated)"
        log.info("container %s stopping", container_id)
        sent = await send_stop_now(self._engine, tracked)
        self._spawn(self._stop_after(tracked, grace_s if sent else 0.0), f"stop-{container_id}")
        return "StopTestNow sent" if sent else "docker stop"

    async def _stop_early(self, container_id: str) -> str:
        """A stop of a container not known (yet): remember it, so that its launch, if it comes, does not start it."""
        if not SAFE_ID.match(container_id) or not self._early_stops.add(container_id):
            return "not running on this agent"
        log.info("container %s: stop before its launch, remembered", container_id)
        await asyncio.to_thread(self._early_stops.save)
        return "not running on this agent"

    async def _stop_after(self, tracked: Tracked, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        resend_at = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tracked.terminal or tracked.finishing or self._closed:
                return
            if time.monotonic() >= resend_at:
                # JMeter opens its shutdown listener only once its plan is loaded: a JVM still
                # starting (a busy machine) misses the first datagram, so say it again each second.
                await send_stop_now(self._engine, tracked)
                resend_at = time.monotonic() + 1.0
            await asyncio.sleep(0.2)
        if tracked.terminal or tracked.finishing or not tracked.docker_id or self._closed:
            return
        log.info("container %s did not stop in %.0f s: docker stop", tracked.container_id, grace_s)
        try:
            await self._api().stop(tracked.docker_id, timeout_s=10)
        except NotFound:
            pass
        except Exception as exc:
            log.warning("docker stop of %s failed: %s", tracked.container_id, message(exc))
