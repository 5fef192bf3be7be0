"""Monitors' credentials at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key kept
in a file of the data dir (mode 0600), never in the database. A database copied without its key
file keeps working: only the monitors that need credentials say they cannot read them.

Each encrypted value names the monitor it belongs to, so a value copied onto another monitor's row
is refused rather than handed to the wrong agent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "monitors.key"


class SecretUnavailable(Exception):
    """Credentials that cannot be decrypted here: ``str()`` says why and what to do."""


class Vault:
    """Encrypts and decrypts monitors' credentials with the key in ``path`` (made on first need)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fernet: Fernet | None = None

    @property
    def has_key(self) -> bool:
        """True when the key file is there (cheap: nothing is decrypted)."""
        return self._fernet is not None or self.path.exists()

    def _key(self, create: bool) -> Fernet:
        if self._fernet is not None:
            return self._fernet
        try:
            key = self.path.read_bytes().strip()
        except FileNotFoundError:
            if not create:
                raise SecretUnavailable(
                    f"the credentials cannot be decrypted: the key file {self.path} is missing (a database"
                    " copied without its key file?); restore it, or set the monitor's credentials again"
                ) from None
            key = self._make()
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise SecretUnavailable(f"the key file {self.path} is not a Fernet key: restore the right one") from None
        return self._fernet

    def _make(self) -> bytes:
        """A new key file, written whole (0600 from its creation) before it is put in place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)  # never over a key another process made meanwhile
        except FileExistsError:
            key = self.path.read_bytes().strip()
        finally:
            tmp.unlink(missing_ok=True)
        return key

    def encrypt(self, owner: str, values: dict[str, Any]) -> bytes:
        """``values`` (the credentials' fields) encrypted for monitor ``owner``."""
        plain = json.dumps({"owner": owner, "values": values}, separators=(",", ":")).encode()
        return self._key(create=True).encrypt(plain)

    def decrypt(self, owner: str, blob: bytes) -> dict[str, Any]:
        """The fields encrypted for ``owner``; :class:`SecretUnavailable` when they cannot be read."""
        try:
            plain = json.loads(self._key(create=False).decrypt(bytes(blob)))
        except InvalidToken:
            raise SecretUnavailable(
                f"the credentials cannot be decrypted with the key file {self.path} (not the key they were"
                " encrypted with?); restore it, or set the monitor's credentials again"
            ) from None
        if not isinstance(plain, dict) or plain.get("owner") != owner or not isinstance(plain.get("values"), dict):
            raise SecretUnavailable("the stored credentials belong to another monitor: set them again")
        return plain["values"]  # type: ignore[no-any-return]
