"""Registry credentials for image pulls, found as the docker CLI finds them.

The engine pulls anonymously unless the client sends ``X-Registry-Auth``: the base64url of a JSON
``{"username", "password", "serveraddress"}`` (or ``{"identitytoken", "serveraddress"}``). The docker
CLI reads those credentials from ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``);
this module reads the same file the same way, for the registry that an image reference names:

- the registry is the reference's first path component when it holds a ``.`` or a ``:``, is
  ``localhost`` or has an upper-case letter; otherwise Docker Hub, whose key in the file is
  ``https://index.docker.io/v1/``;
- ``credHelpers[key]`` names a helper for that registry, else ``credsStore`` one for all: the helper
  ``docker-credential-NAME get`` reads the key on its standard input and answers JSON
  ``{"ServerURL", "Username", "Secret"}`` (``Username`` ``<token>`` means an identity token);
- else ``auths[key]`` (or the entry whose key's host is the registry): ``auth`` is the base64 of
  ``user:password``, or ``username`` / ``password``; ``identitytoken`` when the login gave one.

The agent may name the file itself (``--docker-config`` / ``OCTOTUI_DOCKER_CONFIG``, see
:func:`configure`): its image has no credential helpers, so a mounted config file with ``auths`` is
the way to give it credentials there. The file is read again for every pull, so a refreshed login
is taken without a restart. Credentials are never logged: only the registry, the file and the source.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("octotui.agent")

DOCKER_HUB = "docker.io"
#: Docker Hub's key in ``config.json`` (what ``docker login`` writes for it).
INDEX_SERVER = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
#: What a helper prints when it holds nothing for the registry: an anonymous pull, not an error.
_NOT_FOUND = "credentials not found in native keychain"
_TOKEN_USERNAME = "<token>"
_HELPER_TIMEOUT_S = 30.0

_configured: Path | None = None


class RegistryAuthError(Exception):
    """The credentials for a registry could not be read (a broken config file, a helper missing or failing)."""


def configure(path: Path | None) -> None:
    """Name the config file every :class:`RegistryAuth` made afterwards reads (the agent's ``--docker-config``).

    A folder means its ``config.json``, as ``DOCKER_CONFIG`` does. ``None`` goes back to the environment.
    """
    global _configured
    _configured = config_file(path) if path is not None else None


def config_file(path: Path) -> Path:
    """The ``config.json`` a named path means: the file itself, or ``config.json`` in a folder."""
    path = path.expanduser()
    return path / "config.json" if path.is_dir() else path


def registry_host(image: str) -> str:
    """The registry an image reference pulls from, as Docker splits it (``docker.io`` when none is named)."""
    name = image.split("@", 1)[0]
    first, slash, _ = name.partition("/")
    if not slash:
        return DOCKER_HUB
    if "." not in first and ":" not in first and first != "localhost" and first == first.lower():
        return DOCKER_HUB
    return DOCKER_HUB if first == "index.docker.io" else first


def auth_key(host: str) -> str:
    """The key of a registry in ``config.json``: its host, or Docker Hub's historical index URL."""
    return INDEX_SERVER if host == DOCKER_HUB else host


def _hostname(key: str) -> str:
    """The host of a key as the CLI compares them (``https://h:5000/v2/`` → ``h:5000``)."""
    for scheme in ("http://", "https://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.split("/", 1)[0]


@dataclass(frozen=True)
class Credentials:
    """What ``X-Registry-Auth`` carries for one registry. The secrets never show in a repr."""

    serveraddress: str
    username: str = ""
    password: str = field(default="", repr=False)
    identitytoken: str = field(default="", repr=False)
    source: str = ""  # where they came from, for the log: "auths of FILE" or "helper NAME"

    def header(self) -> str:
        """The ``X-Registry-Auth`` value: base64url of the JSON the engine decodes."""
        if self.identitytoken:
            body: dict[str, str] = {"identitytoken": self.identitytoken, "serveraddress": self.serveraddress}
        else:
            body = {"username": self.username, "password": self.password, "serveraddress": self.serveraddress}
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


class RegistryAuth:
    """The credentials source of one engine client: a config file read at each pull, and its helpers."""

    def __init__(self, path: Path, *, named: bool = False, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.named = named  # named by the agent's option: a missing file is then an error, not "no login"
        self._env = env if env is not None else os.environ

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistryAuth:
        """The file :func:`configure` named, else ``OCTOTUI_DOCKER_CONFIG``, else the docker CLI's own."""
        env = env if env is not None else os.environ
        if _configured is not None:
            return cls(_configured, named=True, env=env)
        if env.get("OCTOTUI_DOCKER_CONFIG"):
            return cls(config_file(Path(env["OCTOTUI_DOCKER_CONFIG"])), named=True, env=env)
        if env.get("DOCKER_CONFIG"):
            folder = Path(env["DOCKER_CONFIG"]).expanduser()
        else:  # the CLI's home is $HOME, as here
            folder = (Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".docker"
        return cls(folder / "config.json", env=env)

    def read(self) -> dict[str, Any]:
        """The config file's content; ``{}`` when the CLI's default file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if self.named:
                raise RegistryAuthError(f"docker config {self.path} is missing") from None
            return {}
        except OSError as exc:
            raise RegistryAuthError(f"cannot read docker config {self.path}: {exc.strerror or exc}") from exc
        try:
            config = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise RegistryAuthError(f"docker config {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(config, dict):
            raise RegistryAuthError(f"docker config {self.path} is not a JSON object")
        return config

    def lookup(self, image: str) -> Credentials | None:
        """The credentials for the registry of ``image``, or None for an anonymous pull (blocking: helpers run)."""
        config = self.read()
        key = auth_key(registry_host(image))
        helpers = config.get("credHelpers") or {}
        helper = helpers.get(key) if isinstance(helpers, dict) else None
        if helper:
            return self._from_helper(str(helper), key, f"credHelpers of {key}")
        if config.get("credsStore"):
            return self._from_helper(str(config["credsStore"]), key, "credsStore")
        return self._from_auths(config.get("auths") or {}, key)

    async def lookup_async(self, image: str) -> Credentials | None:
        """:meth:`lookup` off the event loop (it reads a file and may run a helper)."""
        return await asyncio.to_thread(self.lookup, image)

    def _from_auths(self, auths: Any, key: str) -> Credentials | None:
        if not isinstance(auths, dict):
            raise RegistryAuthError(f"docker config {self.path}: auths is not an object")
        entry, found = auths.get(key), key
        if entry is None:
            found = next((k for k in auths if _hostname(k) == key), "")
            entry = auths.get(found) if found else None
        if not isinstance(entry, dict):
            return None
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise RegistryAuthError(f"docker config {self.path}: the auth of {found} is not base64") from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise RegistryAuthError(f"docker config {self.path}: the auth of {found} is not user:password")
        token = str(entry.get("identitytoken") or "")
        if not (username or password or token):
            return None
        return Credentials(found, username, password, token, source=f"auths of {self.path}")

    def _from_helper(self, name: str, key: str, named_by: str) -> Credentials | None:
        program = HELPER_PREFIX + name
        binary = shutil.which(program, path=self._env.get("PATH", os.defpath))
        if binary is None:
            raise RegistryAuthError(
                f"credential helper {program} ({named_by} in {self.path}) is not installed: not found on PATH"
            )
        try:
            done = subprocess.run([binary, "get"], input=key.encode(), capture_output=True,
                                  timeout=_HELPER_TIMEOUT_S, env=dict(self._env), check=False)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RegistryAuthError(f"credential helper {program} hung for {_HELPER_TIMEOUT_S:.0f} s") from None
        except OSError as exc:
            raise RegistryAuthError(f"credential helper {program} could not run: {exc.strerror or exc}") from exc
        out = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0:
            if out == _NOT_FOUND:
                return None
            said = out or done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
            raise RegistryAuthError(f"credential helper {program} failed for {key}: {said[:300]}")
        try:
            answer = json.loads(out)
        except ValueError:
            raise RegistryAuthError(f"credential helper {program} answered no JSON for {key}") from None
        if not isinstance(answer, dict):
            raise RegistryAuthError(f"credential helper {program} answered no JSON object for {key}")
        username, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
        if username == _TOKEN_USERNAME:
            return Credentials(key, identitytoken=secret, source=f"helper {program}")
        return Credentials(key, username, secret, source=f"helper {program}")
