"""The operator's side of a real server, through a sync admin client (``ServerProcess.client()``)."""

from __future__ import annotations

from typing import Any

import httpx


def create_provider(api: httpx.Client, name: str = "lab") -> dict[str, Any]:
    """Create a provider; its record (with the registration token)."""
    response = api.post("/providers", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def online_agent(api: httpx.Client, name: str, docker: bool = False) -> dict[str, Any] | None:
    """The record of agent ``name`` once it is online with host figures (and, with ``docker``, a usable
    Docker engine); None before."""
    found = [a for a in api.get("/agents").json() if a["name"] == name and a["status"] == "online"]
    if not found or not found[0].get("host"):
        return None
    return found[0] if not docker or (found[0].get("docker") or {}).get("available") else None
