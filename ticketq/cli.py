"""The `ticketq` command: api, up, demo, db upgrade, users create."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from core.logformat import formatter
from core.settings import ConfigurationError, settings
from core.version import VERSION


def _db_upgrade(args: argparse.Namespace) -> int:
    from migrations.migrate import upgrade

    upgrade()
    print(f"database at head: {settings.database_url.split('@')[-1]}")
    return 0


def _users_create(args: argparse.Namespace) -> int:
    from models.db import session_scope
    from models.users import create_user_token

    with session_scope() as session:
        user, token = create_user_token(session, args.email, name=args.name, admin=args.admin)
        print(f"user {user.email} (id {user.id}{', admin' if user.is_admin else ''}): new API token")
    print(token)
    return 0


def _api(args: argparse.Namespace) -> int:
    from api.server import serve

    return serve(host=args.host, port=args.port, workers=args.workers)


def _up(args: argparse.Namespace) -> int:
    from ticketq.stack import run_up

    return run_up(host=args.host, port=args.port)


def _demo(args: argparse.Namespace) -> int:
    from ticketq.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ticketq", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ticketq {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations (Alembic)").set_defaults(func=_db_upgrade)

    users = sub.add_parser("users", help="users and API tokens").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user (or a new token); prints the token last")
    create.add_argument("email")
    create.add_argument("--name")
    create.add_argument("--admin", action="store_true")
    create.set_defaults(func=_users_create)

    api = sub.add_parser("api", help="the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="API processes sharing the port (default 1)")
    api.set_defaults(func=_api)

    up = sub.add_parser("up", help="API + worker + beat (embedded Redis/SMTP where no URL is set) until Ctrl-C")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.set_defaults(func=_up)
    sub.add_parser("demo", help="drive a sample event through every order status on an embedded stack") \
        .set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=settings.log_level)
    for handler in logging.getLogger().handlers:  # LOG_FORMAT=json: one JSON object per line
        handler.setFormatter(formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"ticketq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
