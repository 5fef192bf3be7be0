"""The server's data directory: held by one server at a time, its database checked before use."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "server.lock"


class DataDirError(Exception):
    """The data directory cannot be used as it is; ``str()`` is one line saying why and what to do."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory for this process (until it exits): a second server on it is refused.

    ``flock`` on ``DATA_DIR/server.lock``, which holds the owner's pid (written once the lock is
    held). The kernel releases the lock when the process ends, however it ends.
    """
    path = data_dir / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirError(
            f"{data_dir} is in use by another octotui server (pid {owner}, lock {path}): "
            "stop it first, or give this one another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return handle
