"""The store's connection: one SQLite connection, used only from one worker thread, so SQLite is
never touched from the event loop and writes keep the order they were submitted in."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Connection:
    """The connection and its worker thread, shared by the store's parts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-store")
        self._db: sqlite3.Connection | None = None
        self._data_version: int | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def _tx(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
