"""``octotui server`` (and ``python -m octotui.server``): run the control server alone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import uvicorn

from octotui.config import (
    ConfigError,
    Option,
    add_options,
    port_number,
    positive_float,
    resolve,
    user_data_dir,
    write_secret,
)
from octotui.server.app import create_app
from octotui.server.auth import new_token
from octotui.server.collector import Collector
from octotui.server.datadir import DataDirError, check_database, check_postgres, lock_data_dir
from octotui.server.pgstore import PgDb, PgStartError, is_url, redact
from octotui.server.schema import migrate
from octotui.server.secrets import KEY_FILE, KeyRefused, Vault, check_shared_key
from octotui.server.settings import ServerSettings

log = logging.getLogger("octotui.server")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of days >= 0, got {text}")
    return value


def _byte_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a number of bytes >= 1, got {text}")
    return int(text)


def _public_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"expected an http(s)://host[:port] URL, got {text!r}")
    try:
        parts.port  # noqa: B018 (a port out of range raises)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an http(s)://host[:port] URL, got {text!r}") from None
    return text.strip().rstrip("/")


OPTIONS: list[Option] = [
    Option("data-dir", "directory of the server's state (SQLite, admin.token, server.url)", type=Path),
    Option(
        "database",
        "PostgreSQL URL of the durable state (postgresql://user:password@host:port/db) instead of SQLite in the"
        " data dir; uploaded files and JTLs are then kept in it too (the data dir holds a copy of them)",
    ),
    Option(
        "secrets-key-file",
        "key monitors' credentials are encrypted with (default: DATA_DIR/monitors.key, made at first need);"
        " servers on one --database must share one (a server whose key differs refuses to start)",
        type=Path,
    ),
    Option("host", "address to listen on", default="127.0.0.1"),
    Option("port", "port to listen on (0: pick a free one, see DATA_DIR/server.url)", default=8427, type=port_number),
    Option(
        "public-url",
        "URL agents and dashboards reach this server at, when not the one it listens on (replicas behind a"
        " load balancer: the balancer's); given in /info and the providers' install lines",
        type=_public_url,
    ),
    Option("admin-token", "admin token (default: DATA_DIR/admin.token, generated at first start)"),
    Option("heartbeat-interval", "seconds between agent heartbeats", default=5.0, type=positive_float),
    Option("late-after", "seconds without heartbeat before an agent is late", default=15.0, type=positive_float),
    Option("offline-after", "seconds without heartbeat before an agent is offline", default=30.0, type=positive_float),
    Option("return-wait", "seconds a test with all its containers lost waits", default=120.0, type=positive_float),
    Option(
        "stop-deadline",
        "seconds an agent has to confirm a stop before the test's reason names the late containers",
        default=30.0,
        type=positive_float,
    ),
    Option(
        "labels-save-interval",
        "seconds between stores of running tests' per-label figures (what a server killed mid-test may"
        " show stale until those labels change again)",
        default=30.0,
        type=positive_float,
    ),
    Option(
        "jtl-retention",
        "days the uploaded JTLs of an ended test are kept (0: for ever); older ones are deleted, logged",
        default=30.0,
        type=_days,
    ),
    Option(
        "max-jtl-bytes",
        "largest JTL an agent may upload (gzip-compressed, as sent)",
        default=4 * 1024**3,
        type=_byte_count,
    ),
    Option(
        "max-file-bytes",
        "largest test file an operator may upload (POST /files; at least 100 MiB recommended)",
        default=1024**3,
        type=_byte_count,
    ),
    Option("default-image", "JMeter image of tests that name none", default="justb4/jmeter:5.5"),
    Option("tls-cert", "certificate file (PEM) to serve HTTPS", type=Path),
    Option("tls-key", "private key file (PEM) of --tls-cert", type=Path),
    Option("log-level", "debug, info, warning or error", default="info"),
]


def admin_token(data_dir: Path, given: str | None) -> str:
    """The admin token: given, else read from DATA_DIR/admin.token, else generated there (mode 0600)."""
    if given:
        return given
    path = data_dir / "admin.token"
    if path.is_file():
        token = path.read_text().strip()
        if token:
            return token
    token = new_token()
    write_secret(path, token)
    log.info("admin token generated in %s", path)
    return token


class _Server(uvicorn.Server):
    """uvicorn's server without re-raising the signal after a graceful stop: we exit 0 ourselves."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


#: The URL of the last run, kept after it stopped (``server.url`` is deleted then: it says that a
#: server runs): ``--port 0`` takes that port again when it is free, so that agents and dashboards,
#: which retry the address they were given, find a restarted server (issue 15, part 6).
LAST_URL = "server.last-url"


def _last_port(data_dir: Path) -> int | None:
    """The port of the last run on ``data_dir``: ``server.url`` when a killed run left it, else
    ``server.last-url``; None when neither says one."""
    for name in ("server.url", LAST_URL):
        try:
            port = urlsplit((data_dir / name).read_text().strip()).port
        except (OSError, ValueError):
            continue
        if port:
            return port
    return None


def _bind_port(settings: ServerSettings) -> socket.socket:
    """The listening socket: ``settings.port``, or with port 0 the last run's port when it is free
    (else a new one), saying which on the log."""
    last = _last_port(settings.data_dir) if settings.port == 0 else None
    if last is None:
        return _bind(settings.host, settings.port)
    try:
        sock = _bind(settings.host, last)
    except OSError as exc:
        sock = _bind(settings.host, 0)
        log.warning(
            "port %d of the last run is taken (%s): listening on port %d instead; agents and dashboards "
            "given the old address must be given the new one",
            last, exc.strerror or exc, sock.getsockname()[1],
        )  # fmt: skip
        return sock
    log.info("reusing port %d from the last run (--port 0)", last)
    return sock


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def serve(settings: ServerSettings, log_level: str = "info") -> None:
    """Run the server until SIGTERM/SIGINT; writes DATA_DIR/server.url once listening."""
    url_file = settings.data_dir / "server.url"
    sock = _bind_port(settings)
    url_file.unlink(missing_ok=True)
    port = sock.getsockname()[1]
    settings_port = settings if settings.port == port else _with_port(settings, port)
    app = create_app(settings_port)
    if settings.secrets_key_file is not None or settings.database is not None:
        app.state.controller.vault = Vault(settings.secrets_key_path, settings.database)
    url = _url(settings.scheme, settings.host, port)
    app.state.controller.url = settings.public_url or url
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        # Keep-alive must outlast the heartbeat interval by far, or idle connections close just as
        # the next heartbeat is sent on them (measured: ~10 % of heartbeats broken at 5 s / 5 s).
        timeout_keep_alive=max(5, int(3 * settings.heartbeat_interval) + 1),
        timeout_graceful_shutdown=10,
        backlog=4096,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_config=None,
    )
    server = _Server(config)
    # Listening before uvicorn starts: a client reading server.url at once is queued by the kernel
    # until the app is ready, never refused.
    sock.listen(config.backlog)
    for path in (url_file, settings.data_dir / LAST_URL):  # LAST_URL outlives this run: --port 0 reuses it
        tmp = path.with_suffix(".tmp")
        tmp.write_text(url + "\n")
        os.replace(tmp, path)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    collector = Collector()
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers no event for it
        await asyncio.sleep(0.02)
    if server.started:
        # Tail latency is decided by the collector: freeze the start-up heap out of its reach and
        # collect by time, in small steps (collector.py; DESIGN.md, performance facts).
        gc.collect()
        gc.freeze()
        collector.start()
        log.info("octotui server listening on %s", url)
        while not server.should_exit and not task.done():  # should_exit: set by a signal handler
            await asyncio.sleep(0.1)
            collector.tick()
        # Answer the open long polls now, or the graceful shutdown would wait for each of them.
        app.state.controller.commands.close()
    try:
        await task
    finally:
        # Only now: given back earlier, the automatic collector would walk the whole heap at once
        # (its counts say so after so many collections), delaying the graceful shutdown by ~0.5 s.
        collector.stop()
        url_file.unlink(missing_ok=True)
        sock.close()


def _check_key(database: str, path: Path) -> None:
    """The schema brought up to date (its key fingerprint table), then this server's secrets key
    checked against the fingerprint the database holds: :class:`DataDirError` (one line) when refused."""
    db = PgDb(database)
    try:
        db.connect()
        migrate(cast(sqlite3.Connection, db))  # PgDb offers the calls (pgstore.py)
    except (PgStartError, sqlite3.Error) as exc:
        raise DataDirError(f"PostgreSQL at {db.where}: {exc}") from None
    finally:
        db.close()
    try:
        check_shared_key(database, path)
    except KeyRefused as exc:
        raise DataDirError(str(exc)) from None


def _with_port(settings: ServerSettings, port: int) -> ServerSettings:
    from dataclasses import replace

    return replace(settings, port=port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``octotui server``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="octotui server", description="Run the octotui control server alone.")
    add_options(parser, OPTIONS)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        values = resolve(args, OPTIONS, "server")
    except ConfigError as exc:
        parser.error(str(exc))
    level = str(values["log_level"]).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        parser.error(f"--log-level: expected debug, info, warning or error, got {values['log_level']!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = Path(values["data_dir"]) if values["data_dir"] else user_data_dir() / "server"
    data_dir = data_dir.expanduser()
    if values["offline_after"] <= values["late_after"]:
        parser.error("--offline-after must be greater than --late-after")
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        parser.error("--tls-cert and --tls-key go together")
    database = values["database"] or None
    key_file = Path(values["secrets_key_file"]).expanduser() if values["secrets_key_file"] else None
    if database is not None and not is_url(database):
        parser.error(f"--database: expected a postgresql://user:password@host:port/db URL, got {redact(database)!r}")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        lock = lock_data_dir(data_dir)  # before anything in it is read or written
    except DataDirError as exc:
        log.error("%s", exc)
        return 1
    try:
        # Refused here in one line, not in a startup traceback.
        if database is not None:
            check_postgres(database)
            _check_key(database, key_file or data_dir / KEY_FILE)
        else:
            check_database(data_dir / "octotui.db")
    except DataDirError as exc:
        lock.close()
        log.error("%s", exc)
        return 1
    _raise_open_files_limit()
    settings = ServerSettings(
        data_dir=data_dir,
        database=database,
        host=values["host"],
        port=values["port"],
        public_url=values["public_url"] or None,
        admin_token=admin_token(data_dir, values["admin_token"]),
        heartbeat_interval=values["heartbeat_interval"],
        late_after=values["late_after"],
        offline_after=values["offline_after"],
        return_wait=values["return_wait"],
        stop_deadline=values["stop_deadline"],
        labels_save_interval=values["labels_save_interval"],
        jtl_retention_days=values["jtl_retention"],
        max_jtl_bytes=values["max_jtl_bytes"],
        max_file_bytes=values["max_file_bytes"],
        default_image=values["default_image"],
        tls_cert=Path(values["tls_cert"]) if values["tls_cert"] else None,
        tls_key=Path(values["tls_key"]) if values["tls_key"] else None,
        secrets_key_file=key_file,
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(settings, str(values["log_level"]).lower()))
    except OSError as exc:
        log.error("cannot serve on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    finally:
        lock.close()
    return 0


def _raise_open_files_limit() -> None:
    """Each agent holds two sockets (heartbeat and long poll): lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ImportError, ValueError, OSError) as exc:
        log.debug("open files limit left as is: %s", exc)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
