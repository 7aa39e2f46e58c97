"""R2 Redis (a server this script started) stopped for 15 s while the API takes payments and resend
requests: no accepted job is lost, and the API keeps answering clearly (fast, JSON:API) meanwhile."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass

from bench.harness import Harness
from bench.report import Row
from bench.servers import Supervisor

RATE, RESEND_RATE = 5.0, 1.0  # payments/s and resend requests/s through the API
BEFORE, OUTAGE, AFTER = 10.0, 15.0, 15.0
QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER = 3.0, 4.0, 3.0
UNLIMITED = "1000000/minute"


@dataclass(frozen=True)
class Call:
    at: float
    kind: str  # "pay" or "resend"
    order: str
    status: int
    seconds: float
    clear: bool  # a JSON:API error object or the documented success body


def call(client: object, kind: str, order: str) -> Call:
    import httpx

    began = time.time()
    try:
        if kind == "pay":
            r = client.patch(f"/v1/orders/{order}", json={"status": "completed"})  # type: ignore[attr-defined]
        else:
            r = client.post("/v1/orders/resend-email", json={"data": {"order": order}})  # type: ignore[attr-defined]
    except httpx.HTTPError:
        return Call(began, kind, order, 0, time.time() - began, False)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    clear = ("errors" in body) if r.status_code >= 400 else ("status" in body)
    return Call(began, kind, order, r.status_code, time.time() - began, clear)


def drive(url: str, token: str, kind: str, orders: list[str], rate: float, until: float, out: list[Call],
          paid: list[str]) -> None:
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        started, n = time.time(), 0
        while time.time() < until:
            time.sleep(max(0.0, started + n / rate - time.time()))
            if kind == "pay":
                if n >= len(orders):
                    return
                result = call(client, kind, orders[n])
                if result.status == 200:
                    paid.append(result.order)
            elif paid:
                result = call(client, kind, paid[n % len(paid)])
            else:
                n += 1
                continue
            out.append(result)
            n += 1


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import factory, make_pending, seed_event

    assert h.redis is not None and h.sink is not None
    before, outage, after = (QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER) if quick else (BEFORE, OUTAGE, AFTER)
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, int(RATE * (before + outage + after)) + 1)
    env = {"RESEND_LIMIT_PER_USER": UNLIMITED, "RESEND_LIMIT_PER_IP": UNLIMITED}
    worker, beat = h.worker("r2-worker", concurrency=2), h.beat("r2-beat")
    _, url = h.api("r2-api", extra_env=env)
    supervisor = Supervisor([worker, beat], {worker.name: b" ready.", beat.name: b"beat: Starting"})
    supervisor.start()
    calls: list[Call] = []
    paid: list[str] = []
    started = time.time()
    until = started + before + outage + after
    threads = [threading.Thread(target=drive, args=(url, seed.token, kind, orders, rate, until, calls, paid))
               for kind, rate in (("pay", RATE), ("resend", RESEND_RATE))]
    for t in threads:
        t.start()
    time.sleep(before)
    down_at = time.time()
    h.redis.stop()
    time.sleep(outage)
    h.redis.start()
    up_at = time.time()
    for t in threads:
        t.join()
    expected = expected_emails(calls)
    try:
        missing = wait_for(h, expected, 60)
    finally:
        restarts = supervisor.stop()
    marker = "Unrecoverable error:"
    reasons = sorted({line.split(marker, 1)[1].strip() for proc in (worker, beat)
                      for line in proc.logfile.read_text(errors="replace").splitlines() if marker in line})
    rows, notes = judge(calls, expected, missing, down_at, up_at, time.time() - started, restarts, parked(h))
    if reasons:
        notes.append("R2 worker crash, from its log: Celery's 'Unrecoverable error: " + "; ".join(reasons) + "' "
                     "(kombu's Redis channel, closing after the connection was lost, tries to restore the "
                     "in-flight unacknowledged job over a connection that no longer exists).")
    return rows, notes


def parked(h: Harness) -> list[str]:
    """Jobs a dead worker had taken: kombu keeps them in Redis's `unacked` hash until the
    visibility timeout passes, then hands them out again."""
    import json

    import redis

    assert h.redis is not None
    client = redis.Redis.from_url(h.redis.url)
    try:
        entries = client.hvals("unacked")
    finally:
        client.close()
    names = []
    for raw in entries:
        with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
            headers = json.loads(raw)[0]["headers"]
            names.append(f"{headers['task']}{headers.get('argsrepr', '')}")
    return names


def expected_emails(calls: list[Call]) -> Counter[tuple[str, str]]:
    """(order, kind) -> copies: 3 confirmation emails per payment, buyer + guest again per accepted resend."""
    want: Counter[tuple[str, str]] = Counter()
    for c in calls:
        if c.kind == "pay" and c.status == 200:
            for kind in ("confirmation-buyer", "confirmation-attendee", "organizer-notification"):
                want[(c.order, kind)] += 1
        elif c.kind == "resend" and c.status == 202:
            for kind in ("confirmation-buyer", "confirmation-attendee"):
                want[(c.order, kind)] += 1
    return want


def wait_for(h: Harness, expected: Counter[tuple[str, str]], timeout: float) -> int:
    assert h.sink is not None
    deadline = time.time() + timeout
    while True:
        got = Counter((a.order, a.kind) for a in h.sink.snapshot())
        missing = sum(max(0, n - got[key]) for key, n in expected.items())
        if missing == 0 or time.time() > deadline:
            return missing
        time.sleep(0.5)


def judge(calls: list[Call], expected: Counter[tuple[str, str]], missing: int, down_at: float, up_at: float,
          elapsed: float, restarts: list[tuple[float, str, int | None]],
          parked_jobs: list[str]) -> tuple[list[Row], list[str]]:
    during = [c for c in calls if down_at <= c.at <= up_at]
    codes = Counter(f"{c.kind} {c.status}" for c in during)
    slowest = max((c.seconds for c in during), default=0.0)
    unclear = sum(1 for c in during if not c.clear or c.status in (0, 500))
    jobs = sum(expected.values())
    rows = [
        Row("R2", f"emails of accepted jobs not delivered ({jobs} expected; waited 60 s after the load)",
            str(missing), "0", missing == 0),
        Row("R2", "jobs lost: neither delivered nor still held by Redis", "0" if missing == 0 or parked_jobs else
            f"{missing} emails", "0", missing == 0 or bool(parked_jobs)),
        Row("R2", f"API answers during the {up_at - down_at:.0f} s outage", ", ".join(f"{k}: {n}" for k, n in
            sorted(codes.items())) or "none", "clear answers", unclear == 0 and bool(during)),
        Row("R2", "slowest API answer during the outage", f"{slowest:.2f} s", "< 5 s", slowest < 5),
        Row("R2", "worker/beat crashes restarted; jobs parked in Redis `unacked` until visibility_timeout",
            f"{len(restarts)}; {len(parked_jobs)}", "0; 0", not restarts and not parked_jobs),
    ]
    notes = ["R2: the script's own Valkey (append-only file on, like a production Redis) is stopped with SIGTERM "
             f"for {up_at - down_at:.0f} s and restarted on the same port while the API takes {RATE:g} payments/s "
             f"(co-organizer PATCH status=completed) and {RESEND_RATE:g} resend requests/s; a worker `-c 2` and beat "
             "(outbox relay) run throughout. Expected emails: 3 per accepted payment (200), 2 more per accepted "
             "resend (202). 'Clear' means a JSON:API error object (or the documented success body), never a hang, "
             "a dropped connection or a 500. Like docker-compose.yml's `restart: unless-stopped`, the script "
             "restarts a worker or beat that exits: "
             + (", ".join(f"{name} exit {code} at +{at - down_at:.1f} s" for at, name, code in restarts) or "none")
             + ". Jobs still parked in the `unacked` hash at the end (a dead worker's in-flight jobs, handed out "
             "again only after the broker visibility_timeout): "
             + (", ".join(sorted(set(parked_jobs))) or "none") + "."]
    return rows, notes
