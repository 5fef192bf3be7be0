"""``octotui token create|list|revoke``: operator tokens, through a server or on its data dir.

With ``--server URL --token ADMIN`` (or ``OCTOTUI_SERVER`` / ``OCTOTUI_TOKEN``) it asks the server;
with ``--database postgresql://…`` (``OCTOTUI_DATABASE``) it opens the servers' PostgreSQL directly;
otherwise the SQLite store of ``--data-dir`` (default: the standalone server's). A server running on
that data dir takes the change within a second (it watches the file), and servers on that PostgreSQL
too (the change is journalled for them like their own), so a revoked token stops working even when
it was revoked without a server.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from octotui.client import Client, ClientError
from octotui.config import ConfigError, Option, add_options, resolve, user_data_dir
from octotui.protocol import TokenCreate, TokenCreated, TokenInfo
from octotui.server.auth import STARTUP_ADMIN, hash_token, new_token
from octotui.server.datadir import DataDirError, check_database, check_postgres
from octotui.server.pgstore import CONNECT_TIMEOUT, PgStartError, is_url, redact
from octotui.server.store import Store

OPTIONS: list[Option] = [
    Option("server", "URL of the control server (else the data dir is opened directly)"),
    Option("token", "admin token of --server"),
    Option("ca-bundle", "CA certificates (PEM) to verify an HTTPS server with", type=Path),
    Option("data-dir", "the server's data directory, used when no --server is named", type=Path),
    Option(
        "database",
        "the servers' PostgreSQL URL (postgresql://user:password@host:port/db), opened directly when no"
        " --server is named, instead of the data dir's SQLite",
    ),
]


class Failure(Exception):
    """A refused or impossible operation; its message is printed and the exit code is 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octotui token", description="Create, list and revoke operator tokens (admin or read-only)."
    )
    add_options(parser, OPTIONS)
    # The same options after the subcommand too; SUPPRESS keeps them from erasing the ones before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for opt in OPTIONS:
        common.add_argument(f"--{opt.name}", dest=opt.dest, type=opt.type, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{create,list,revoke}")
    create = sub.add_parser(
        "create", parents=[common], help="create a token and print its secret (shown this once only)"
    )
    create.add_argument("--name", required=True, help="unique name, shown in the audit log")
    create.add_argument("--role", required=True, choices=["admin", "read-only"])
    sub.add_parser("list", parents=[common], help="list the tokens (never their secrets)")
    revoke = sub.add_parser("revoke", parents=[common], help="revoke a token at once")
    revoke.add_argument("name")
    return parser


# --- through a server ------------------------------------------------------------------------------


async def _remote(args: argparse.Namespace, url: str, token: str | None, ca: Path | None) -> None:
    if not token:
        raise Failure("--server needs an admin token: --token TOKEN or OCTOTUI_TOKEN")
    async with Client(url, token, verify=str(ca) if ca else True) as client:
        try:
            if args.command == "create":
                _print_created(await client.create_token(args.name, args.role))
            elif args.command == "list":
                _print_list(await client.tokens())
            else:
                await client.revoke_token(args.name)
                print(f"token {args.name!r} revoked")
        except ClientError as exc:
            raise Failure(f"{url}: {exc.message}") from None


# --- on the data dir -------------------------------------------------------------------------------


def _journal_kept(database: str) -> bool:
    """True when servers on ``database`` keep a journal of changes (``replica.py``): a change made
    here then goes in it, and they take it as another server's."""
    import psycopg

    with psycopg.connect(database, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute("SELECT to_regclass('replica_changes') IS NOT NULL").fetchone()
    return bool(row and row[0])


async def _open(data_dir: Path, database: str | None) -> tuple[Store, str]:
    """The store (SQLite of ``data_dir``, or PostgreSQL at ``database``) and where it is, as shown."""
    db = data_dir / "octotui.db"
    if database is not None:
        try:
            check_postgres(database)  # unreachable, foreign or newer: one line, left untouched
        except DataDirError as exc:
            raise Failure(str(exc)) from None
        store = Store(db, database)
        try:
            await store.open()
        except PgStartError as exc:
            raise Failure(str(exc)) from None
        if await asyncio.to_thread(_journal_kept, database):
            store.origin = f"cli:{getpass.getuser()}"
        return store, redact(database)
    if not db.is_file():
        raise Failure(
            f"no server state in {data_dir} (no octotui.db): name a data dir with --data-dir DIR, "
            "a database with --database URL, or a server with --server URL --token ADMIN"
        )
    try:
        check_database(db)  # an empty, foreign, newer or damaged file: one line, left untouched
    except DataDirError as exc:
        raise Failure(str(exc)) from None
    store = Store(db)
    await store.open()
    return store, str(data_dir)


async def _local(args: argparse.Namespace, data_dir: Path, database: str | None = None) -> None:
    store, where = await _open(data_dir, database)
    actor = f"local:{getpass.getuser()}"
    try:
        if args.command == "create":
            if args.name == STARTUP_ADMIN:
                raise Failure(f"a token named {STARTUP_ADMIN!r} already exists (the server's start-up admin token)")
            secret = new_token()
            now = time.time()
            if not await store.add_operator(args.name, args.role, hash_token(secret), now):
                raise Failure(f"a token named {args.name!r} already exists")
            await store.add_audit(now, actor, "local", "token.create", args.name, f"role={args.role}", where)
            _print_created(TokenCreated(name=args.name, role=args.role, token=secret))
        elif args.command == "list":
            rows = await store.operators()
            # A server always has its start-up admin token (DATA_DIR/admin.token or --admin-token).
            tokens = [TokenInfo(name=STARTUP_ADMIN, role="admin")]
            tokens += [TokenInfo(name=n, role=r, created_at=datetime.fromtimestamp(c, UTC)) for _, r, n, c in rows]
            _print_list(tokens)
        else:
            if args.name == STARTUP_ADMIN:
                raise Failure("the start-up admin token is DATA_DIR/admin.token (or --admin-token): replace it there")
            if not await store.remove_operator(args.name):
                raise Failure(f"no token named {args.name!r}")
            await store.add_audit(time.time(), actor, "local", "token.revoke", args.name, "", where)
            print(f"token {args.name!r} revoked")
    finally:
        await store.close()


# --- output ----------------------------------------------------------------------------------------


def _print_created(created: TokenCreated) -> None:
    print(f"token {created.name!r} ({created.role}) created; its secret, shown this once only:", file=sys.stderr)
    print(created.token)


def _print_list(tokens: list[TokenInfo]) -> None:
    if not tokens:
        print("no operator tokens")
        return
    width = max(4, *(len(t.name) for t in tokens))
    print(f"{'NAME':<{width}}  {'ROLE':<9}  CREATED")
    for t in tokens:
        created = t.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") if t.created_at else "(start-up token)"
        print(f"{t.name:<{width}}  {t.role:<9}  {created}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``octotui token``; returns the exit code (1 on a refusal, 2 on bad usage)."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        values = resolve(args, OPTIONS, "token")
    except ConfigError as exc:
        parser.error(str(exc))
    if args.command == "create":
        try:
            TokenCreate(name=args.name, role=args.role)
        except ValidationError as exc:
            parser.error(f"--name {args.name!r}: {exc.errors()[0]['msg']}")
        args.name = args.name.strip()
    try:
        if values["server"]:
            asyncio.run(_remote(args, values["server"], values["token"], values["ca_bundle"]))
        else:
            database = values["database"] or None
            if database is not None and not is_url(database):
                parser.error(
                    f"--database: expected a postgresql://user:password@host:port/db URL, got {redact(database)!r}"
                )
            data_dir = Path(values["data_dir"] or user_data_dir() / "server").expanduser()
            asyncio.run(_local(args, data_dir, database))
    except Failure as exc:
        print(f"octotui token: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"octotui token: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
