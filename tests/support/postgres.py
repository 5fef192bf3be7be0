"""A real PostgreSQL for the tests: ONE cluster per test run, shared by every xdist worker, and a
fresh database for each test that asks for one.

Fixtures (registered in ``tests/conftest.py``):

- ``postgres`` (session): the shared :class:`Cluster`, started on first use. ``postgres.superuser_dsn``,
  ``postgres.dsn(dbname, user=..., password=...)``, ``postgres.create_database()`` (a fresh name, returns
  it), ``postgres.drop_database(name)``, ``postgres.create_role(name, password)``.
- ``pg_database``: a fresh database for one test, dropped after it; its value is the DSN.
- :func:`dedicated_cluster`: a context manager with a cluster of its own (a test that stops it).

The shared cluster lives in ``/tmp/octotui-pg-<run id>`` (the xdist run's uid): the first worker to
need it initialises and starts it under a file lock, each worker that used it signs in a ``users/``
file, and the last to leave stops it and removes the directory (the controller sweeps whatever a
crashed worker left). PostgreSQL refuses to run as root: as root (CI) its programs run as the
``postgres`` system user (``runuser``). Missing binaries fail under CI=true and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port, missing

SUPERUSER = "postgres"
#: Only loopback: tests never listen elsewhere.
HOST = "127.0.0.1"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_owner() -> list[str]:
    """The prefix that runs a PostgreSQL program as a user it accepts (never root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", SUPERUSER, "--"]


def _give(path: Path) -> None:
    """Make ``path`` the PostgreSQL user's (as root; a no-op otherwise)."""
    if os.geteuid() == 0:
        shutil.chown(path, SUPERUSER, SUPERUSER)


class Cluster:
    """One PostgreSQL cluster in ``root``: initialised once, started and stopped any number of times
    on the same port (a restart keeps its data)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.password_file = root / "password"
        self.port_file = root / "port"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text())

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def superuser_dsn(self) -> str:
        return self.dsn("postgres")

    def dsn(self, dbname: str, user: str = SUPERUSER, password: str | None = None) -> str:
        """A ``postgresql://`` URL of database ``dbname`` (the superuser's password unless given)."""
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@{HOST}:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        bins = bin_dir()
        if bins is None:
            missing("PostgreSQL is not installed (Debian's postgresql: tests/test-tools.sh installs it)")
            raise AssertionError("unreachable")
        cmd = [*_as_owner(), str(bins / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    @property
    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb with a superuser password (scram over TCP, trust on the private socket dir)."""
        if bin_dir() is None:
            missing("PostgreSQL is not installed (Debian's postgresql: tests/test-tools.sh installs it)")
        self.root.mkdir(parents=True, exist_ok=True)
        _give(self.root)
        self.password_file.write_text(secrets.token_hex(12) + "\n")
        _give(self.password_file)
        self.port_file.write_text(f"{free_port()}\n")
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={self.password_file}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip

    def _conf(self) -> None:
        # Rewritten at each start: the port may change when the last one was taken meanwhile.
        settings = {
            "listen_addresses": f"'{HOST}'", "port": str(self.port), "unix_socket_directories": f"'{self.root}'",
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200",
            "shared_buffers": "32MB", "log_min_messages": "warning",
        }  # fmt: skip
        conf = self.data / "postgresql.auto.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        _give(conf)

    def start(self) -> None:
        """Start (initialising first if needed); a port taken meanwhile is replaced by a free one."""
        if not self.initialised:
            self.init()
        for attempt in range(3):
            self._conf()
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                self.port_file.write_text(f"{free_port()}\n")

    def start_same_port(self) -> None:
        """Start again on the port it had (a restart a client reconnects to)."""
        self._conf()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- databases and roles -------------------------------------------------------------------

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """One statement as the superuser, in autocommit (CREATE/DROP DATABASE need it)."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a fresh name unless given); returns its name."""
        name = name or f"t_{secrets.token_hex(6)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_role(self, name: str, password: str) -> None:
        """A login role with a password (not a superuser)."""
        self.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")


#: Set by the controller before xdist starts its workers (they inherit it): the run's one cluster.
RUN_VARIABLE = "OCTOTUI_TEST_PG_RUN"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        os.environ.setdefault(RUN_VARIABLE, secrets.token_hex(6))


def _shared_root() -> Path:
    return Path("/tmp") / f"octotui-pg-{os.environ.get(RUN_VARIABLE) or os.getpid()}"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """The run's shared PostgreSQL cluster (started by the first worker needing it, stopped by the last)."""
    if bin_dir() is None:
        missing("PostgreSQL is not installed (Debian's postgresql: tests/test-tools.sh installs it)")
    root = _shared_root()
    cluster = Cluster(root / "cluster")
    me = root / "users" / str(os.getpid())
    with _locked(root):
        me.parent.mkdir(parents=True, exist_ok=True)
        me.touch()
        if not cluster.running:
            cluster.start()
    try:
        yield cluster
    finally:
        with _locked(root):
            me.unlink(missing_ok=True)
            if not any(me.parent.iterdir()):
                cluster.remove()


@pytest.fixture
def pg_database(postgres: Cluster) -> Iterator[str]:
    """A fresh database for one test (dropped after it): its superuser DSN."""
    name = postgres.create_database()
    yield postgres.dsn(name)
    with contextlib.suppress(Exception):
        postgres.drop_database(name)


@contextlib.contextmanager
def dedicated_cluster() -> Iterator[Cluster]:
    """A cluster of its own (for a test that stops or breaks it), removed after."""
    root = Path("/tmp") / f"octotui-pgx-{secrets.token_hex(4)}"  # short: the socket path has a limit
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def dedicated_postgres() -> Iterator[Cluster]:
    """A cluster of this test's own (it may stop it: ``stop()``, ``start_same_port()``). Request it
    before the fixtures that use it (e.g. ``start_server``) so that they end before it does."""
    with dedicated_cluster() as cluster:
        yield cluster


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the controller (or a run without xdist), remove what a crashed worker left."""
    if hasattr(session.config, "workerinput"):
        return
    root = _shared_root()
    if root.exists():
        with _locked(root):
            users = root / "users"
            alive = [p for p in users.iterdir() if _alive(int(p.name))] if users.exists() else []
            if not alive:
                Cluster(root / "cluster").remove()
                shutil.rmtree(root, ignore_errors=True)
        if not root.exists():
            root.with_name(root.name + ".lock").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
