"""`ticketq` commands on a database without its tables say what to do, with no traceback; in
development on SQLite they bring it up to date themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ticketq(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT", "SECRET_KEY")}
    return subprocess.run([sys.executable, "-m", "ticketq.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**base, "VAR_DIR": str(tmp_path / "var"), **env})


@pytest.mark.slow(4)
def test_production_without_tables_says_run_db_upgrade_and_leaves_no_file(tmp_path: Path) -> None:
    database = tmp_path / "prod.db"
    env = {"ENVIRONMENT": "production", "SECRET_KEY": "x" * 40, "DATABASE_URL": f"sqlite:///{database}"}
    missing = ticketq(tmp_path, "users", "create", "a@example.org", **env)
    assert missing.returncode == 2 and "run `ticketq db upgrade`" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr and not database.exists()
    database.touch()  # an empty file: no tables
    empty = ticketq(tmp_path, "login-link", "a@example.org", **env)
    assert empty.returncode == 2 and "has no tables yet" in empty.stderr and "Traceback" not in empty.stderr
    assert ticketq(tmp_path, "db", "upgrade", **env).returncode == 0
    created = ticketq(tmp_path, "users", "create", "a@example.org", **env)
    assert created.returncode == 0 and len(created.stdout.strip().splitlines()[-1]) >= 40


def test_development_on_sqlite_upgrades_by_itself_then_prints_a_link(tmp_path: Path) -> None:
    env = {"ENVIRONMENT": "development", "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}"}
    result = ticketq(tmp_path, "login-link", "org@example.org", "--base-url", "http://tickets.test/", **env)
    assert result.returncode == 0, result.stderr
    assert "brought the development database up to date" in result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("http://tickets.test/login?token=") and "valid 15 minutes, once" in result.stdout


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    result = ticketq(tmp_path, "users", "create", "a@example.org",
                     DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", ENVIRONMENT="development")
    assert result.returncode == 2 and "cannot use the database at 127.0.0.1:1/none" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_up_flower_runs_on_the_stack_s_redis_behind_basic_auth() -> None:
    from typing import Any

    from ticketq.cli import build_parser
    from ticketq.stack import _start_flower

    args = build_parser().parse_args(["up", "--flower", "--flower-port", "5566"])
    assert (args.flower, args.flower_port) == (True, 5566)
    spawned: list[tuple[list[str], dict[str, str]]] = []

    class Recorder:
        def spawn(self, name: str, argv: list[str], env: dict[str, str], **kwargs: Any) -> None:
            spawned.append((argv, env))

    env = {"REDIS_URL": "redis://127.0.0.1:7777/0"}
    shown = _start_flower(Recorder(), env, "0.0.0.0", 5566, False)  # type: ignore[arg-type]
    (argv, given), = spawned
    assert argv[-4:-1] == ["flower", "--port=5566", "--address=0.0.0.0"] and given["REDIS_URL"] == env["REDIS_URL"]
    password = argv[-1].removeprefix("--basic-auth=admin:")
    assert len(password) >= 16 and shown == f"http://127.0.0.1:5566   login admin:{password}"
    _start_flower(Recorder(), {**env, "FLOWER_BASIC_AUTH": "ops:secret"}, "127.0.0.1", 5555, False)  # type: ignore[arg-type]
    assert spawned[-1][0][-1] == "--basic-auth=ops:secret"
