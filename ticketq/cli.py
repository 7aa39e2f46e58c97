"""The `ticketq` command: api, up, demo, db upgrade, users create, login-link."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.logformat import formatter
from core.settings import ConfigurationError, settings
from core.version import VERSION

NEEDS_DATABASE = "needs_database"


def _where() -> str:
    return settings.database_url.split("@")[-1]


def _db_upgrade(args: argparse.Namespace) -> int:
    from migrations.migrate import upgrade

    upgrade()
    print(f"database at head: {_where()}")
    return 0


def ready_database() -> None:
    """Refuse, with what to do, a database without its tables (or behind the code); in development on
    SQLite upgrade it instead, as `ticketq up` does."""
    from sqlalchemy.engine import make_url

    from migrations.migrate import is_current, upgrade

    url = make_url(settings.database_url)
    on_sqlite, development = url.get_backend_name() == "sqlite", settings.environment == "development"
    in_file = on_sqlite and bool(url.database) and url.database != ":memory:"
    missing_file = in_file and not Path(str(url.database)).exists()
    if missing_file and not development:  # checked first: connecting would leave an empty file behind
        raise ConfigurationError(f"no database at {_where()}: run `ticketq db upgrade` to create it")
    if not missing_file and is_current():
        return
    if on_sqlite and development:
        upgrade()
        print(f"ticketq: brought the development database up to date ({_where()})", file=sys.stderr)
        return
    raise ConfigurationError(f"the database at {_where()} has no tables yet, or older ones: "
                             "run `ticketq db upgrade`")


def _users_create(args: argparse.Namespace) -> int:
    from models.db import session_scope
    from models.users import create_user_token

    with session_scope() as session:
        user, token = create_user_token(session, args.email, name=args.name, admin=args.admin)
        print(f"user {user.email} (id {user.id}{', admin' if user.is_admin else ''}): new API token")
    print(token)
    return 0


def _login_link(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    from models.db import session_scope
    from models.logins import LINK_TTL, create_login_link

    with session_scope() as session:
        user, token = create_login_link(session, args.email)
        print(f"sign-in link for {user.email} to the organizer page (valid {LINK_TTL.seconds // 60} minutes, once):")
    print(f"{args.base_url.rstrip('/')}/login?{urlencode({'token': token})}")
    return 0


def _api(args: argparse.Namespace) -> int:
    from api.server import serve

    return serve(host=args.host, port=args.port, workers=args.workers)


def _up(args: argparse.Namespace) -> int:
    from ticketq.stack import run_up

    return run_up(host=args.host, port=args.port, flower_port=args.flower_port if args.flower else None)


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
    create.add_argument("--admin", action="store_true", help="may act on every event, and create events "
                        "when EVENT_CREATORS=admins")
    create.set_defaults(func=_users_create, **{NEEDS_DATABASE: True})

    link = sub.add_parser("login-link", help="a one-time sign-in link to the organizer page (15 minutes); "
                          "prints the URL last")
    link.add_argument("email")
    link.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the API answers browsers")
    link.set_defaults(func=_login_link, **{NEEDS_DATABASE: True})

    api = sub.add_parser("api", help="the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="API processes sharing the port (default 1)")
    api.set_defaults(func=_api, **{NEEDS_DATABASE: True})

    up = sub.add_parser("up", help="API + worker + beat (embedded Redis/SMTP where no URL is set) until Ctrl-C")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--flower", action="store_true", help="also Flower on the same Redis, with basic auth from "
                    "FLOWER_BASIC_AUTH (or a password it prints)")
    up.add_argument("--flower-port", type=int, default=5555)
    up.set_defaults(func=_up)
    sub.add_parser("demo", help="drive a sample event through every order status on an embedded stack") \
        .set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import sqlalchemy.exc

    logging.basicConfig(level=settings.log_level)
    for handler in logging.getLogger().handlers:  # LOG_FORMAT=json: one JSON object per line
        handler.setFormatter(formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, NEEDS_DATABASE, False):
            ready_database()
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"ticketq: {exc}", file=sys.stderr)
        return 2
    except sqlalchemy.exc.OperationalError as exc:  # an expected mistake (server down, wrong URL): no traceback
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        print(f"ticketq: cannot use the database at {_where()}: {reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
