"""R2 Redis (a server this script started) stopped for 15 s in the middle of a load, then restarted from
its append-only file, while a worker child is SIGKILLed every 2 s: every accepted job is done within
60 s of Redis returning, no process dies, at most 1 duplicate per 100 kills, and the API keeps
answering clearly meanwhile. R2b (chaos/r2b_redis_empty.py) is the same run with Redis back empty.

The stack is the one an operator runs: 2 API processes, a worker `-c 2` on all queues, beat (outbox
relay and expiry at their defaults), PostgreSQL and an SMTP sink counting by Message-ID and
X-Order-Identifier. Like docker-compose.yml's `restart: unless-stopped`, the script restarts a
worker, beat or API that exits, and reports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Harness
from bench.report import Row
from bench.servers import Restarter
from chaos.metrics_watch import MetricsWatch
from ticketq.processes import Process

RATE, RESEND_RATE = 4.0, 0.5  # payments/s and resend requests/s through the APIs
BEFORE, OUTAGE, AFTER = 20.0, 15.0, 20.0  # 55 s of load: 220 orders, as in issue 11's reproduction
QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER = 4.0, 5.0, 4.0
WAIT, QUICK_WAIT = 90.0, 60.0  # how long after Redis is back the emails may take before they count as missing
GOAL_SECONDS = 60.0
UNLIMITED = "1000000/minute"
CONFIRMATION = ("confirmation-buyer", "confirmation-attendee", "organizer-notification")
RESEND = ("confirmation-buyer", "confirmation-attendee")


@dataclass(frozen=True)
class Call:
    at: float
    kind: str  # "pay" or "resend"
    order: str
    status: int
    seconds: float
    clear: bool  # a JSON:API error object or the documented success body


@dataclass
class Outage:
    """When Redis went away and came back, and what came back."""

    down_at: float = 0.0
    up_at: float = 0.0
    wiped: list[str] = field(default_factory=list)


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
    try:
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    except ValueError:
        body = {}
    clear = ("errors" in body) if r.status_code >= 400 else ("status" in body)
    return Call(began, kind, order, r.status_code, time.time() - began, clear)


def drive(urls: list[str], token: str, kind: str, orders: list[str], rate: float, until: float,
          out: list[Call], paid: list[str]) -> None:
    """An open loop at `rate` calls/s, alternating between the API processes."""
    import httpx

    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {token}"}, timeout=30) for u in urls]
    try:
        started, n = time.time(), 0
        while time.time() < until:
            time.sleep(max(0.0, started + n / rate - time.time()))
            client = clients[n % len(clients)]
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
    finally:
        for client in clients:
            client.close()


def restart_redis(h: Harness, outage: float, wipe: bool) -> Outage:
    """Stop Redis (SIGTERM: it flushes its append-only file), wait, and start it on the same port,
    with its data (R2) or with its data directory emptied (R2b: a failover to a lagging replica,
    a restart without persistence, an eviction)."""
    assert h.redis is not None
    seen = Outage(down_at=time.time())
    h.redis.stop()
    time.sleep(outage)
    if wipe:
        for path in sorted(Path(h.redis.directory).iterdir()):
            if path.name == "redis.log":
                continue
            seen.wiped.append(path.name)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    h.redis.start()
    seen.up_at = time.time()
    return seen


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    return outage_under_kills(h, quick, case="R2", wipe=False)


def outage_under_kills(h: Harness, quick: bool, *, case: str, wipe: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import factory, make_pending, seed_event
    from chaos.r1_worker_kill import Killer

    assert h.redis is not None and h.sink is not None
    before, outage, after = (QUICK_BEFORE, QUICK_OUTAGE, QUICK_AFTER) if quick else (BEFORE, OUTAGE, AFTER)
    wait = QUICK_WAIT if quick else WAIT
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    orders = make_pending(db, seed, int(RATE * (before + outage + after)) + 1)
    env = {"RESEND_LIMIT_PER_USER": UNLIMITED, "RESEND_LIMIT_PER_IP": UNLIMITED}
    name = case.lower()
    worker, beat = h.worker(f"{name}-worker", concurrency=2), h.beat(f"{name}-beat")
    (api1, url1), (api2, url2) = h.api(f"{name}-api-1", extra_env=env), h.api(f"{name}-api-2", extra_env=env)
    procs = [worker, beat, api1, api2]
    supervisor = Restarter(procs)
    supervisor.start()
    killer = Killer(worker)
    killer.start()
    watch = MetricsWatch(url1).start()  # what an operator's Prometheus would have seen (issue 32)
    calls: list[Call] = []
    paid: list[str] = []
    started = time.time()
    until = started + before + outage + after
    threads = [threading.Thread(target=drive, args=([url1, url2], seed.token, kind, orders, rate, until, calls, paid))
               for kind, rate in (("pay", RATE), ("resend", RESEND_RATE))]
    try:
        for t in threads:
            t.start()
        time.sleep(before)
        seen = restart_redis(h, outage, wipe)
        for t in threads:
            t.join()
        expected = expected_emails(calls)
        missing = wait_for(h, expected, seen.up_at + wait)
        killer.halt.set()
        killer.join(5)
        time.sleep(3)  # a copy a last kill left to redeliver still counts as a duplicate
        watch.settled(max(time.time() + 5, seen.up_at + GOAL_SECONDS + 3))
        watch.stop()
        alive = {p.name: p.popen is not None and p.poll() is None for p in procs}
        restarts = supervisor.stop()
        accepted = h.sink.snapshot()
        if os.environ.get("BENCH_KEEP_LOGS") == "1":  # debugging a run: every acceptance and kill, with times
            with (h.root / "accepted.txt").open("w") as out:
                for a in accepted:
                    out.write(f"{a.at:.3f} {a.message_id} {a.order} {a.kind}\n")
                out.write(f"kills {killer.kills}\n")
    finally:
        killer.halt.set()
        supervisor.halt.set()
        watch.stop()
    return judge(h, case, calls, expected, accepted, seen, missing, killer.kills, alive, restarts, procs,
                 time.time() - started, wait, watch)


def expected_emails(calls: list[Call]) -> Counter[tuple[str, str]]:
    """(order, kind) -> logical emails: 3 per accepted payment (200), buyer + guest again per accepted resend (202)."""
    want: Counter[tuple[str, str]] = Counter()
    for c in calls:
        if c.kind == "pay" and c.status == 200:
            want.update((c.order, kind) for kind in CONFIRMATION)
        elif c.kind == "resend" and c.status == 202:
            want.update((c.order, kind) for kind in RESEND)
    return want


def missing_emails(expected: Counter[tuple[str, str]], got: Counter[tuple[str, str]]) -> int:
    return sum(max(0, n - got[key]) for key, n in expected.items())


def wait_for(h: Harness, expected: Counter[tuple[str, str]], deadline: float) -> int:
    """Wait until every expected email arrived (distinct Message-IDs per order and kind) or the deadline."""
    assert h.sink is not None
    while True:
        ids: dict[tuple[str, str], set[str]] = {}
        for a in h.sink.snapshot():
            ids.setdefault((a.order, a.kind), set()).add(a.message_id)
        missing = missing_emails(expected, Counter({key: len(v) for key, v in ids.items()}))
        if missing == 0 or time.time() > deadline:
            return missing
        time.sleep(0.5)


def parked(h: Harness) -> int:
    """Messages in kombu's `unacked` hash at the end: taken by a worker, not yet acknowledged."""
    import redis

    assert h.redis is not None
    client = redis.Redis.from_url(h.redis.url)
    try:
        return int(client.hlen("unacked"))
    except redis.RedisError:
        return -1
    finally:
        client.close()


def relay_lines(worker: Process) -> list[tuple[float, str]]:
    """(when, what) of each outbox relay run that did something, from the worker's log (UTC timestamps)."""
    import datetime as dt

    found = []
    text = worker.log.read_text(errors="replace") if worker.log.exists() else ""
    for line in text.splitlines():
        if "outbox relay: " not in line:
            continue
        with contextlib.suppress(ValueError):
            at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=dt.UTC).timestamp()
            found.append((at, line.split("outbox relay: ", 1)[1].strip()))
    return found


def relay_summary(worker: Process, seen: Outage) -> str:
    runs = [(at - seen.up_at, what) for at, what in relay_lines(worker) if at >= seen.up_at]
    if not runs:
        return "no relay run logged after Redis came back"
    first = next(((t, w) for t, w in runs if "empty" in w), runs[0])
    return f"first relay run after Redis came back{' that saw it empty' if 'empty' in first[1] else ''}: " \
           f"+{first[0]:.1f} s, '{first[1]}'"


def last_error(proc: Process) -> str:
    """The last line of a process's log that names an error: why it exited, as far as it said."""
    lines = [line.strip() for line in proc.log.read_text(errors="replace").splitlines()
             if "Error" in line or "error:" in line or "Unrecoverable" in line] if proc.log.exists() else []
    return lines[-1][-200:] if lines else "its log names no error"


def judge(h: Harness, case: str, calls: list[Call], expected: Counter[tuple[str, str]], accepted: list,
          seen: Outage, missing_at_deadline: int, kills: list[tuple[float, int]], alive: dict[str, bool],
          restarts: list[tuple[float, str, int | None]], procs: list[Process], elapsed: float,
          wait: float, watch: MetricsWatch) -> tuple[list[Row], list[str]]:
    from chaos.tally import log_count, per_hundred_kills, tally

    got = tally(h.database_url, accepted, {order for order, _ in expected})
    missing = missing_emails(expected, got.emails_of())
    wanted = set(expected)
    firsts = [times[0] for (order, kind, _, _), times in got.copies.items() if (order, kind) in wanted]
    last = max(firsts, default=seen.up_at) - seen.up_at
    early = {c.order for c in calls if c.at < seen.up_at}  # jobs accepted before Redis was back
    backlog = [times[0] for (order, kind, _, _), times in got.copies.items()
               if (order, kind) in wanted and order in early]
    owed = sum(n for (order, _), n in expected.items() if order in early) - sum(
        1 for (order, kind, _, _), times in got.copies.items() if (order, kind) in wanted and order in early
        and times[0] < seen.up_at)
    after_up = sorted(t for t in firsts if t >= seen.up_at)
    pace = len(after_up) / (after_up[-1] - seen.up_at) if len(after_up) > 1 else float("nan")
    during = [c for c in calls if seen.down_at <= c.at <= seen.up_at]
    codes = Counter(f"{c.kind} {c.status}" for c in during)
    slowest = max((c.seconds for c in during), default=0.0)
    unclear = sum(1 for c in during if not c.clear or c.status in (0, 500))
    jobs = sum(expected.values())
    rate = per_hundred_kills(got.duplicates, len(kills))
    back = "from its append-only file" if not seen.wiped else "empty"
    rows = [
        Row(case, f"emails missing {wait:.0f} s after Redis came back {back} ({jobs} expected, "
            f"{len(kills)} child SIGKILLs, run of {elapsed:.0f} s)", str(missing), "0", missing == 0),
        Row(case, "seconds from Redis back to the last email", f"{last:.1f} s" if missing == 0 else
            f"> {wait:.0f} s ({missing} missing)", f"<= {GOAL_SECONDS:.0f} s", missing == 0 and last <= GOAL_SECONDS),
        Row(case, f"duplicates per 100 kills ({got.duplicates} by order+kind+recipient+batch; "
            f"{got.repeated_message_ids} repeats of a Message-ID)", f"{rate:.1f}", "<= 1",
            got.duplicates <= len(kills) / 100),
        Row(case, "processes alive at the end (worker, beat, API x2); exits restarted by the script",
            f"{sum(alive.values())}/{len(alive)}; {len(restarts)}", f"{len(alive)}/{len(alive)}; 0",
            all(alive.values()) and not restarts),
        Row(case, f"API answers during the {seen.up_at - seen.down_at:.0f} s outage",
            ", ".join(f"{k}: {n}" for k, n in sorted(codes.items())) or "none", "clear answers",
            unclear == 0 and bool(during)),
        Row(case, "slowest API answer during the outage", f"{slowest:.2f} s", "< 5 s", slowest < 5),
    ]
    # the age must be back to 0 within the recovery goal (every accepted job done within GOAL_SECONDS)
    watched, watch_note = watch.judge(case, "Redis", seen.down_at, seen.up_at, GOAL_SECONDS)
    rows += watched
    rejects = log_count(procs[:1], "Couldn't reject")
    why = {n: last_error(next(p for p in procs if p.name == n)) for _, n, _ in restarts}
    notes = [f"{case}: Redis (the script's own Valkey, append-only file on) stopped with SIGTERM "
             f"{seen.down_at - (calls[0].at if calls else seen.down_at):.0f} s into the load for "
             f"{seen.up_at - seen.down_at:.0f} s, then restarted on the same port "
             + ("with its data directory wiped (" + ", ".join(seen.wiped) + " removed)" if seen.wiped else
                "from its append-only file")
             + f"; {RATE:g} payments/s (co-organizer PATCH status=completed) and {RESEND_RATE:g} resend requests/s "
             "alternate between 2 API processes; a worker `-c 2` on all queues and beat run throughout with their "
             f"default settings; a random worker child gets SIGKILL every 2 s ({len(kills)} kills). Expected: 3 "
             "emails per accepted payment (200), 2 more per accepted resend (202); an email counts once per "
             "(order, kind, recipient, batch), the batch read from the delivery record its Message-ID names "
             f"({got.unattributed} messages named none). Missing emails were still missing {wait:.0f} s after "
             f"Redis came back (the wait ended with {missing_at_deadline}). Last email of a job accepted before "
             f"Redis came back: +{max(backlog, default=seen.up_at) - seen.up_at:.1f} s; the load went on for "
             f"{max(0.0, (calls[-1].at if calls else seen.up_at) - seen.up_at):.0f} s after it. When Redis came back, "
             f"{owed} emails of jobs accepted before were owed; from then on the sink accepted {pace:.1f} emails/s "
             "(the worker's pace under the kills: when it is below what is owed and still arriving, the wait is "
             f"throughput, not loss); {relay_summary(procs[0], seen)}. Processes at the "
             "end: " + ", ".join(f"{n} {'alive' if ok else 'DEAD'}" for n, ok in alive.items()) + "; restarted: "
             + (", ".join(f"{n} exit {code} at +{at - seen.down_at:.1f} s after Redis went down ({why[n]})"
                          for at, n, code in restarts) or "none")
             + f". Worker log lines \"Couldn't reject\": {rejects}; messages left in Redis's `unacked` hash at the "
             f"end: {parked(h)}. 'Clear' API answers are a JSON:API error object or the documented success body, "
             "never a hang, a dropped connection or a 500.", watch_note]
    return rows, notes
