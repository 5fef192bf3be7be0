"""Monitors' credentials at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key kept
in a file of the data dir (mode 0600), never in the database. A database copied without its key
file keeps working: only the monitors that need credentials say they cannot read them.

Several servers on one PostgreSQL (``--database``) must share ONE key: ``--secrets-key-file FILE``
(``OCTOTUI_SECRETS_KEY_FILE``; default ``DATA_DIR/monitors.key``). The database never holds the key,
only its fingerprint (an HMAC of a constant under the key), stored by the first server that starts
on it; a server whose key has another fingerprint refuses to start (:func:`check_shared_key`), so
none writes credentials the others cannot read.

Each encrypted value names the monitor it belongs to, so a value copied onto another monitor's row
is refused rather than handed to the wrong agent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from octotui.server.errors import Conflict

KEY_FILE = "monitors.key"
KEY_FILE_ENV = "OCTOTUI_SECRETS_KEY_FILE"
#: The ``key_fingerprints`` row of this key, and the constant its fingerprint is the HMAC of.
_FINGERPRINT_NAME = "monitors"
_FINGERPRINT_OF = b"octotui secrets key fingerprint v1"


class KeyRefused(Exception):
    """This server's key is not the one of the others on its database: ``str()`` is one line saying
    which file and what to do."""


class SecretUnavailable(Exception):
    """Credentials that cannot be decrypted here: ``str()`` says why and what to do."""


class Vault:
    """Encrypts and decrypts monitors' credentials with the key in ``path`` (made on first need)."""

    def __init__(self, path: Path, database: str | None = None) -> None:
        self.path = path
        #: With ``--database``: the first encryption checks (once) that the key is the one whose
        #: fingerprint the database holds, storing it when none is (:func:`check_shared_key`).
        self.database = database
        self._claimed = database is None
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
        fernet = self._key(create=True)
        if not self._claimed:
            assert self.database is not None
            try:
                check_shared_key(self.database, self.path, create=True)
            except KeyRefused as exc:
                raise Conflict(f"the credentials were not stored: {exc}") from None
            self._claimed = True
        return fernet.encrypt(plain)

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


def fingerprint(key: bytes) -> str:
    """What the database keeps of a key: an HMAC-SHA256 of a constant under it (not the key)."""
    return hmac.new(key.strip(), _FINGERPRINT_OF, hashlib.sha256).hexdigest()


def check_shared_key(url: str, path: Path, create: bool = False) -> None:
    """At the start of a server on PostgreSQL (``url``), and at its first encryption (``create``):
    its key (``path``: ``--secrets-key-file``, else the data dir's) must be the one whose fingerprint
    the database holds. The first use stores the key's fingerprint: a server
    starting with a key file when the database names none, or the first encryption (which makes the
    key when missing). A server whose key differs, or that lacks it while the database names one, is
    refused (:class:`KeyRefused`) and changes nothing."""
    import psycopg

    from octotui.server.pgstore import CONNECT_TIMEOUT, redact

    flag = f"--secrets-key-file (or {KEY_FILE_ENV})"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            row = conn.execute("SELECT fingerprint FROM key_fingerprints WHERE name = %s", (_FINGERPRINT_NAME,))
            stored = row.fetchone()
            if stored is None and not path.exists() and not create:
                return  # no key in use yet: the first encryption makes one and claims it
            if stored is not None and not path.exists():
                raise KeyRefused(
                    f"the monitors' credentials in the database are encrypted with a key this server lacks:"
                    f" {path} is missing; copy the other servers' key file there, or name it with {flag}"
                )
            mine = fingerprint(_load(path))
            if stored is None:
                conn.execute(
                    "INSERT INTO key_fingerprints (name, fingerprint, created_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (name) DO NOTHING",
                    (_FINGERPRINT_NAME, mine, time.time()),
                )
                row = conn.execute("SELECT fingerprint FROM key_fingerprints WHERE name = %s", (_FINGERPRINT_NAME,))
                stored = row.fetchone()
    except psycopg.Error as exc:
        raise KeyRefused(f"the secrets key cannot be checked against PostgreSQL at {redact(url)}: {exc}") from None
    if stored is None or stored[0] != mine:
        raise KeyRefused(
            f"the secrets key file {path} is not the key of the other servers on this database (its"
            f" fingerprint differs): give every server the same key file with {flag}"
        )


def _load(path: Path) -> bytes:
    """The key of ``path`` (made when missing), checked to be a Fernet key."""
    vault = Vault(path)
    try:
        vault._key(create=True)
    except SecretUnavailable as exc:
        raise KeyRefused(str(exc)) from None
    return path.read_bytes().strip()
