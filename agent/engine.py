"""A small asynchronous Docker Engine API client: only what the agent needs, over the agent's httpx.

The engine is found as the docker CLI finds it: ``DOCKER_HOST`` (``unix://PATH`` or ``tcp://HOST:PORT``,
with ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH`` for TLS), else ``/var/run/docker.sock``. The API
version is the engine's own (from ``/_ping``), capped at the newest one this module was written
against, so an old engine and one that dropped old versions both understand it. Pulls carry the
registry's credentials (``X-Registry-Auth``) from the docker CLI's config file, see ``registry_auth``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from agent.registry_auth import RegistryAuth, RegistryAuthError

log = logging.getLogger("octotui.agent")

DEFAULT_HOST = "unix:///var/run/docker.sock"
#: The newest API version whose endpoints this module was checked against (Docker 27).
MAX_API = (1, 47)
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_STREAM_TIMEOUT = httpx.Timeout(30.0, connect=10.0, read=None)  # a log or pull stream waits as long as it must


class EngineError(Exception):
    """The engine refused a request (``status`` is its HTTP status) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(EngineError):
    """No such container or image (HTTP 404)."""


class EngineUnreachable(EngineError):
    """No engine answered, or the connection to it broke."""


def engine_host(env: Mapping[str, str] | None = None) -> str:
    """The engine address the agent uses: ``DOCKER_HOST`` or the local socket."""
    return (env if env is not None else os.environ).get("DOCKER_HOST") or DEFAULT_HOST


def parse_image(image: str) -> tuple[str, str]:
    """``(repository, tag or digest)`` of an image reference; the tag is ``latest`` when none is named."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:  # no tag, or the colon was a registry's port
        return image, "latest"
    return repository, tag


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    if not verify and not env.get("DOCKER_CERT_PATH"):
        return None
    certs = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    ca = certs / "ca.pem"
    if verify:
        context = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if (certs / "cert.pem").is_file() and (certs / "key.pem").is_file():
        context.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))
    return context


def _transport(host: str, env: Mapping[str, str]) -> tuple[httpx.AsyncHTTPTransport, str]:
    """The transport and base URL for an engine address; ValueError for an address it cannot use."""
    parts = urlsplit(host)
    # many log streams (one per container) are open at once: no cap on connections
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=8)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"DOCKER_HOST {host!r} names no socket")
        # no TLS on a socket: verify=False spares loading a CA bundle for a context never used
        return httpx.AsyncHTTPTransport(uds=parts.path, verify=False, limits=limits), "http://docker"
    if parts.scheme in ("tcp", "http", "https"):
        context = _tls_context(env) if parts.scheme != "http" else None
        tls = context is not None or parts.scheme == "https"
        if not parts.hostname:
            raise ValueError(f"DOCKER_HOST {host!r} names no host")
        port = parts.port or (2376 if tls else 2375)
        verify: ssl.SSLContext | bool = context if context is not None else tls
        netloc = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        url = f"{'https' if tls else 'http'}://{netloc}:{port}"
        return httpx.AsyncHTTPTransport(verify=verify, limits=limits), url
    raise ValueError(f"DOCKER_HOST {host!r}: the agent speaks to unix:// and tcp:// engines only")


def _message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else (response.text.strip()[:300] or f"HTTP {response.status_code}")


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    error = NotFound if response.status_code == 404 else EngineError
    raise error(_message(response), response.status_code)


class Engine:
    """One Docker engine, reached by one pooled ``httpx.AsyncClient``. Every call may raise :class:`EngineError`."""

    def __init__(
        self, host: str | None = None, env: Mapping[str, str] | None = None, auth: RegistryAuth | None = None
    ) -> None:
        env = env if env is not None else os.environ
        self.host = host or engine_host(env)
        self.auth = auth if auth is not None else RegistryAuth.from_env(env)
        transport, base_url = _transport(self.host, env)
        self._http = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=_TIMEOUT, trust_env=False)
        self._prefix: str | None = None  # "/v1.41", once the engine said which versions it speaks

    async def aclose(self) -> None:
        """Close every connection (open log streams end with :class:`EngineUnreachable`)."""
        await self._http.aclose()

    def _unreachable(self, exc: httpx.TransportError) -> EngineUnreachable:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            return EngineUnreachable(f"no Docker engine answers at {self.host} ({text})")
        return EngineUnreachable(f"the Docker engine at {self.host} went away: {text}")

    async def _request(self, method: str, path: str, *, versioned: bool = True, **kwargs: Any) -> httpx.Response:
        if versioned and self._prefix is None:
            await self.ping()
        url = f"{self._prefix}{path}" if versioned else path
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        _raise_for(response)
        return response

    # --- engine --------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Check the engine answers; learns the API version to speak."""
        response = await self._request("GET", "/_ping", versioned=False)
        version = response.headers.get("Api-Version", "1.41")
        try:
            major, minor = (int(part) for part in version.split(".")[:2])
        except ValueError:
            major, minor = 1, 41
        major, minor = min((major, minor), MAX_API)
        self._prefix = f"/v{major}.{minor}"

    async def version(self) -> dict[str, Any]:
        """The engine's ``/version`` (``Version``, ``ApiVersion``, ...)."""
        result: dict[str, Any] = (await self._request("GET", "/version")).json()
        return result

    # --- images --------------------------------------------------------------------------------

    async def inspect_image(self, image: str) -> dict[str, Any]:
        """An image's attributes; :class:`NotFound` when the engine does not have it."""
        result: dict[str, Any] = (await self._request("GET", f"/images/{quote(image, safe='/:@')}/json")).json()
        return result

    async def pull(self, image: str) -> AsyncIterator[dict[str, Any]]:
        """Pull ``image``, yielding the engine's progress events (``{"error": ...}`` ones included).

        With credentials for its registry in the config file, they go as ``X-Registry-Auth``; one that
        cannot be read (a broken file, a missing or failing helper) raises :class:`EngineError` saying why.
        """
        repository, tag = parse_image(image)
        headers: dict[str, str] = {}
        try:
            credentials = await self.auth.lookup_async(image)
        except RegistryAuthError as exc:
            raise EngineError(f"registry credentials: {exc}") from exc
        if credentials is not None:
            headers["X-Registry-Auth"] = credentials.header()
            log.info("pulling %s with credentials for %s (%s)", image, credentials.serveraddress, credentials.source)
        if self._prefix is None:
            await self.ping()
        try:
            async with self._http.stream("POST", f"{self._prefix}/images/create",
                                         params={"fromImage": repository, "tag": tag}, headers=headers,
                                         timeout=_STREAM_TIMEOUT) as response:  # fmt: skip
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(event, dict):
                            yield event
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # --- containers ----------------------------------------------------------------------------

    async def containers(self, labels: list[str]) -> list[dict[str, Any]]:
        """Containers in any state carrying every label of ``labels`` (``key`` or ``key=value``)."""
        filters = json.dumps({"label": labels})
        result: list[dict[str, Any]] = (
            await self._request("GET", "/containers/json", params={"all": "1", "filters": filters})
        ).json()
        return result

    async def create(self, name: str, config: dict[str, Any]) -> str:
        """Create a container (``config`` as the API's create body); its id."""
        response = await self._request("POST", "/containers/create", params={"name": name}, json=config)
        return str(response.json()["Id"])

    async def start(self, container: str) -> None:
        """Start a created container (a running one is left as it is)."""
        await self._request("POST", f"/containers/{container}/start")

    async def inspect(self, container: str) -> dict[str, Any]:
        """A container's attributes; :class:`NotFound` when it does not exist."""
        result: dict[str, Any] = (await self._request("GET", f"/containers/{container}/json")).json()
        return result

    async def stats(self, container: str) -> dict[str, Any]:
        """One sample of a container's resource usage (API ≥ 1.41 answers it at once)."""
        response = await self._request("GET", f"/containers/{container}/stats",
                                       params={"stream": "0", "one-shot": "1"})  # fmt: skip
        result: dict[str, Any] = response.json()
        return result

    async def stop(self, container: str, timeout_s: int = 10) -> None:
        """``docker stop``: SIGTERM, SIGKILL after ``timeout_s``."""
        await self._request("POST", f"/containers/{container}/stop", params={"t": str(timeout_s)},
                            timeout=httpx.Timeout(timeout_s + 30.0, connect=10.0))  # fmt: skip

    async def remove(self, container: str) -> None:
        """``docker rm -f -v``."""
        await self._request("DELETE", f"/containers/{container}", params={"force": "1", "v": "1"})

    async def logs(self, container: str, since: int | None = None, tty: bool = False) -> AsyncIterator[bytes]:
        """Follow a container's stdout and stderr from ``since`` (epoch s) until it ends; raw bytes.

        Without a TTY the engine multiplexes both streams in frames (1 byte stream, 3 zero bytes,
        a 4-byte big-endian length, the payload): the frames are unwrapped here.
        """
        params = {"follow": "1", "stdout": "1", "stderr": "1"}
        if since is not None:
            params["since"] = str(since)
        if self._prefix is None:
            await self.ping()
        try:
            async with self._http.stream("GET", f"{self._prefix}/containers/{container}/logs", params=params,
                                         timeout=_STREAM_TIMEOUT) as response:  # fmt: skip
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for(response)
                if tty:
                    async for chunk in response.aiter_raw():
                        yield chunk
                    return
                pending = b""
                async for chunk in response.aiter_raw():
                    pending += chunk
                    while len(pending) >= 8:
                        size = int.from_bytes(pending[4:8], "big")
                        if len(pending) < 8 + size:
                            break
                        payload, pending = pending[8 : 8 + size], pending[8 + size :]
                        yield payload
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
