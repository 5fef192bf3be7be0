"""The image a launch needs: used when present, else pulled with its progress on the container's
record, in a task of its own so that a stop cancels the pull at once.
"""

from __future__ import annotations

import logging

from agent.engine import Engine, EngineError, NotFound
from agent.records import LaunchError, Tracked, message, stoppable

log = logging.getLogger("octotui.agent.containers")


async def ensure_image(api: Engine, tracked: Tracked, image: str) -> None:
    """Make sure ``image`` is on the engine; :class:`LaunchError` when it cannot be, or a stop came."""
    try:
        await api.inspect_image(image)
        return
    except NotFound:
        pass
    tracked.state, tracked.pull_progress = "pulling", 0.0
    log.info("container %s: pulling %s", tracked.container_id, image)
    # the pull runs as a task of its own, so that a stop cancels it at once (and closes the stream)
    await stoppable(tracked, _pull(tracked, api, image), f"pull of {image}")
    tracked.pull_progress = 1.0
    try:
        await api.inspect_image(image)
    except NotFound as exc:
        raise LaunchError(f"pull of {image} failed: the image is still missing after the pull") from exc


async def _pull(tracked: Tracked, api: Engine, image: str) -> None:
    layers: dict[str, tuple[int, int]] = {}
    try:
        async for event in api.pull(image):
            if "error" in event:
                raise LaunchError(f"pull of {image} failed: {event['error']}")
            layer, detail, status = event.get("id"), event.get("progressDetail") or {}, event.get("status", "")
            if layer and detail.get("total"):
                layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
            elif layer and status in ("Download complete", "Pull complete", "Already exists") and layer in layers:
                layers[layer] = (layers[layer][1], layers[layer][1])
            if layers:
                done = sum(c for c, _ in layers.values()) / max(sum(t for _, t in layers.values()), 1)
                tracked.pull_progress = min(max(done, tracked.pull_progress or 0.0), 1.0)
    except EngineError as exc:
        raise LaunchError(f"pull of {image} failed: {message(exc)}") from exc
