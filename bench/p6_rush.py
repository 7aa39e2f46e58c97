"""P6 on-sale rush: 2,000 buyers at once through `ticketq api --workers 2` for 1,000 tickets of one
type; each creates an order and, when it got tickets, submits the form (free and bank mixed). A
worker and beat run throughout; every winner's confirmation must arrive, and nothing is oversold.

The same rush runs three times in one API, for three events: without Idempotency-Key, with a new key
on every logical request (issue 31), and without again (the key's cost is read against the mean of
the two: a drift over the run weighs on both sides), after a short unmeasured warm-up of both paths
so that no run pays the API's first-use costs. Each rush starts with the worker idle (the previous one's
confirmations delivered): API CPU per request grows with what else runs on the 2 cores, and the
keyed rush would otherwise share them with the first rush's PDF rendering. After the keyed rush, a
sample of its requests is sent again with the same key: each must be replayed (same status and
body, `Idempotent-Replayed: true`) and change nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Harness
from bench.monitor import load_average
from bench.p2_resend import tree_cpu_seconds
from bench.report import Row, fmt

BUYERS, QUICK_BUYERS = 2_000, 200
TICKETS, QUICK_TICKETS = 1_000, 100
IN_FLIGHT = 64  # buyers with a request open at once (a browser each)
API_WORKERS = 2
DRAIN_TIMEOUT, QUICK_DRAIN_TIMEOUT = 420.0, 120.0
EMAILS_PER_ORDER = 2  # the buyer attends alone: confirmation-buyer + organizer-notification
REQUEST_TIMEOUT = 30.0
RETRY_EVERY = 50  # with keys: every 50th buyer's requests are kept to be sent again (deliberate retries)
WARM_UP_BUYERS, WARM_UP_TICKETS = 60, 30


@dataclass(frozen=True)
class Sent:
    """A keyed request and its answer, to send again with the same key."""

    method: str
    path: str
    token: str
    key: str
    body: dict[str, Any]
    status: int
    content: bytes


@dataclass
class Replays:
    sent: int = 0
    replayed: int = 0  # same status and body, Idempotent-Replayed: true
    differed: list[str] = field(default_factory=list)


@dataclass
class Rush:
    codes: Counter[tuple[str, int]] = field(default_factory=Counter)
    create_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    submitted_at: dict[str, float] = field(default_factory=dict)  # winning order -> when its form was accepted
    seconds: float = 0.0
    kept: list[Sent] = field(default_factory=list)  # keyed requests to retry


def seed(db: Any, buyers: int, tickets: int) -> tuple[int, int, list[str]]:
    """An event with one free ticket type of `tickets` seats, and a token for each buyer."""
    from bench.workload import seed_event
    from models.users import create_user_token

    event = seed_event(db, tickets, price="0.00", name="Rush Night")
    event_id, ticket_id = event.event_id, event.ticket_id
    tokens: list[str] = []
    for first in range(0, buyers, 500):
        with db() as session, session.begin():
            tokens += [create_user_token(session, f"fan{n}@rush.example", name=f"Fan {n}")[1]
                       for n in range(first, min(buyers, first + 500))]
    return event_id, ticket_id, tokens


async def rush(url: str, event_id: int, ticket_id: int, tokens: list[str], *, keyed: bool = False) -> Rush:
    """Every buyer at once (IN_FLIGHT at a time): create an order for one ticket, submit it if it got one;
    `keyed`: every request carries an Idempotency-Key, as a producer that retries safely sends them."""
    import httpx

    result = Rush()
    gate = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        async def call(kind: str, method: str, path: str, token: str, body: dict[str, Any],
                       keep: bool = False) -> httpx.Response | None:
            began = time.perf_counter()
            headers = {"Authorization": f"Bearer {token}"}
            key = str(uuid.uuid4())  # one per logical request, as a producer that retries sends them
            if keyed:
                headers["Idempotency-Key"] = key
            try:
                response = await client.request(method, path, json=body, headers=headers)
            except httpx.HTTPError:
                result.codes[(kind, 0)] += 1
                return None
            (result.create_ms if kind == "create" else result.submit_ms).append((time.perf_counter() - began) * 1000)
            result.codes[(kind, response.status_code)] += 1
            if keyed and keep:
                result.kept.append(Sent(method, path, token, key, body, response.status_code, response.content))
            return response

        async def buyer(n: int, token: str) -> None:
            keep = n % RETRY_EVERY == 0
            async with gate:
                created = await call("create", "POST", "/v1/orders", token,
                                     {"event": event_id, "tickets": [{"ticket": ticket_id, "quantity": 1}]}, keep)
                if created is None or created.status_code != 201:
                    return
                identifier = created.json()["identifier"]
                person = {"name": f"Fan {n}", "email": f"fan{n}@rush.example"}
                submitted = await call("submit", "PATCH", f"/v1/orders/{identifier}", token, {
                    "payment_mode": "free" if n % 2 else "bank", "buyer": person, "attendees": [person]}, keep)
                if submitted is not None and submitted.status_code == 200:
                    result.submitted_at[identifier] = time.time()

        started = time.perf_counter()
        await asyncio.gather(*(buyer(n, token) for n, token in enumerate(tokens)))
        result.seconds = time.perf_counter() - started
    return result


async def retry(url: str, kept: list[Sent]) -> Replays:
    """Send each kept request again with its key, as a producer would after a timeout."""
    import httpx

    replays = Replays()
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for sent in kept:
            replays.sent += 1
            try:
                again = await client.request(sent.method, sent.path, json=sent.body, headers={
                    "Authorization": f"Bearer {sent.token}", "Idempotency-Key": sent.key})
            except httpx.HTTPError as exc:
                replays.differed.append(f"{sent.method} {sent.path}: {type(exc).__name__}")
                continue
            if (again.status_code, again.content) == (sent.status, sent.content) and \
                    again.headers.get("idempotent-replayed") == "true":
                replays.replayed += 1
            else:
                replays.differed.append(f"{sent.method} {sent.path}: {sent.status} then {again.status_code}")
    return replays


def wait_delivered(h: Harness, winners: set[str], timeout: float) -> float:
    """Wait (up to `timeout`) until every winner's confirmation emails were accepted; when the last came."""
    from bench.workload import complete_orders

    assert h.sink is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(complete_orders(h.sink.snapshot(), winners, EMAILS_PER_ORDER)) >= len(winners):
            break
        time.sleep(0.5)
    return max((a.at for a in h.sink.snapshot() if a.order in winners), default=time.time())


def held_tickets(db: Any, ticket_id: int) -> int:
    """Tickets held by orders that still hold them (not expired, not cancelled)."""
    from models.base import utcnow
    from models.events import TicketType
    from models.placing import available

    with db() as session:
        ticket = session.get(TicketType, ticket_id)
        assert ticket is not None
        return ticket.quantity - available(session, ticket, utcnow())


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import complete_orders, duplicates, factory, percentile, seed_event

    assert h.sink is not None
    buyers, tickets = (QUICK_BUYERS, QUICK_TICKETS) if quick else (BUYERS, TICKETS)
    h.reset()
    db = factory(h.database_url)
    event_id, ticket_id, tokens = seed(db, buyers, tickets)
    worker = h.worker("p6-worker", concurrency=2)
    beat = h.beat("p6-beat")
    api, url = h.api("p6-api", workers=API_WORKERS)
    drain_timeout = QUICK_DRAIN_TIMEOUT if quick else DRAIN_TIMEOUT
    try:
        warm_winners: set[str] = set()
        for warm_keyed in (False, True):  # both paths once, unmeasured: imports, pools, compiled statements
            warm = seed_event(db, WARM_UP_TICKETS, price="0.00", name="Rush warm-up")
            warm_winners |= set(asyncio.run(rush(url, warm.event_id, warm.ticket_id, tokens[:WARM_UP_BUYERS],
                                                 keyed=warm_keyed)).submitted_at)
        wait_delivered(h, warm_winners, drain_timeout)  # the rush starts with the worker idle
        cpu_before = tree_cpu_seconds(api)
        result = asyncio.run(rush(url, event_id, ticket_id, tokens))
        api_cpu = tree_cpu_seconds(api) - cpu_before
        rush_end = time.time()
        drained = wait_delivered(h, set(result.submitted_at), drain_timeout) - rush_end
        # The same rush for a second event with an Idempotency-Key on every request (issue 31), also
        # from an idle worker, so that both rushes share the cores with the same rendering.
        keyed_event = seed_event(db, tickets, price="0.00", name="Rush Night, keyed")
        cpu_before = tree_cpu_seconds(api)
        keyed = asyncio.run(rush(url, keyed_event.event_id, keyed_event.ticket_id, tokens, keyed=True))
        keyed_cpu = tree_cpu_seconds(api) - cpu_before
        keyed_end = time.time()
        held_before_retries = held_tickets(db, keyed_event.ticket_id)
        replays = asyncio.run(retry(url, keyed.kept))
        held_after_retries = held_tickets(db, keyed_event.ticket_id)
        keyed_drained = wait_delivered(h, set(keyed.submitted_at), drain_timeout) - keyed_end
        # The rush without keys once more, for a third event: the key's cost is read against the mean of
        # the rushes before and after it, so a drift over the run (a growing database, a warming or
        # busier host) weighs on both sides alike (A B A).
        last_event = seed_event(db, tickets, price="0.00", name="Rush Night, again")
        cpu_before = tree_cpu_seconds(api)
        last = asyncio.run(rush(url, last_event.event_id, last_event.ticket_id, tokens))
        last_cpu = tree_cpu_seconds(api) - cpu_before
        winners = set(result.submitted_at) | set(keyed.submitted_at) | set(last.submitted_at)
        wait_delivered(h, set(last.submitted_at), drain_timeout)
        accepted = h.sink.snapshot()
    finally:
        h.stop(api)
        h.stop(beat)
        h.stop(worker)
    delivered = complete_orders(accepted, winners, EMAILS_PER_ORDER)
    held = held_tickets(db, ticket_id)
    oversold = max(0, held - tickets)
    keyed_oversold = max(0, held_tickets(db, keyed_event.ticket_id) - tickets)
    last_oversold = max(0, held_tickets(db, last_event.ticket_id) - tickets)
    per_request = api_cpu * 1000 / max(sum(result.codes.values()), 1)
    last_per_request = last_cpu * 1000 / max(sum(last.codes.values()), 1)
    unkeyed_per_request = (api_cpu + last_cpu) * 1000 / max(sum((result.codes + last.codes).values()), 1)
    keyed_per_request = keyed_cpu * 1000 / max(sum(keyed.codes.values()), 1)
    server_errors = sum(n for (_, code), n in (result.codes + keyed.codes + last.codes).items()
                        if code >= 500 or code == 0)
    requests = sum(result.codes.values())
    create_ms, submit_ms = sorted(result.create_ms), sorted(result.submit_ms)
    by_id, by_logical = duplicates(a for a in accepted if a.order in winners)
    rows = [
        Row("P6", f"on-sale rush: {buyers:,} buyers, {tickets:,} tickets, {IN_FLIGHT} in flight, "
            f"`ticketq api --workers {API_WORKERS}`", f"{len(result.submitted_at):,} orders in {result.seconds:.1f} s"),
        Row("P6", "orders created and submitted per second",
            fmt(len(result.submitted_at) / result.seconds, "orders/s", 1)),
        Row("P6", "requests per second (create, sold out, submit)", fmt(requests / result.seconds, "req/s", 0)),
        Row("P6", "create order: p50 / p99", f"{percentile(create_ms, 50):.0f} / {percentile(create_ms, 99):.0f} ms"),
        Row("P6", "submit form: p50 / p99", f"{percentile(submit_ms, 50):.0f} / {percentile(submit_ms, 99):.0f} ms"),
        Row("P6", "API CPU per request", fmt(per_request, "ms", 2)),
        Row("P6", "API CPU per request without keys, rushes before and after the keyed one (mean)",
            fmt(unkeyed_per_request, "ms", 2)),
        Row("P6", "with an Idempotency-Key on every request: API CPU per request",
            f"{keyed_per_request:.2f} ms ({100 * (keyed_per_request / unkeyed_per_request - 1):+.1f} %)",
            f"<= {unkeyed_per_request * 1.1:.2f} ms (+10 %)", keyed_per_request <= unkeyed_per_request * 1.1),
        Row("P6", "with keys: oversold / winners", f"{keyed_oversold} / {len(keyed.submitted_at):,}",
            f"0 / {tickets:,}", keyed_oversold == 0 and len(keyed.submitted_at) == tickets),
        Row("P6", "with keys: orders created and submitted per second",
            fmt(len(keyed.submitted_at) / keyed.seconds, "orders/s", 1)),
        Row("P6", "with keys: deliberate retries replayed (same answer, nothing new)",
            f"{replays.replayed} / {replays.sent}, tickets held {held_before_retries:,} -> {held_after_retries:,}",
            "all", replays.replayed == replays.sent > 0 and held_after_retries == held_before_retries),
        Row("P6", "oversold (tickets held beyond the quantity)", str(oversold + last_oversold), "0",
            oversold + last_oversold == 0),
        Row("P6", "winners (orders that got a ticket)", f"{len(result.submitted_at):,}", f"{tickets:,}",
            len(result.submitted_at) == tickets),
        Row("P6", "server errors (5xx or no answer)", str(server_errors), "0", server_errors == 0),
        Row("P6", "winners whose confirmation was delivered", f"{len(delivered):,} / {len(winners):,}",
            "all", len(delivered) == len(winners) > 0),
        Row("P6", "backlog drained after the rush ended", fmt(drained, "s", 1)),
    ]
    codes = ", ".join(f"{kind} {code}: {n}" for (kind, code), n in sorted(result.codes.items()))
    codes += "; with keys: " + ", ".join(f"{kind} {code}: {n}" for (kind, code), n in sorted(keyed.codes.items()))
    notes = [f"P6: {buyers:,} buyers with a token each, {IN_FLIGHT} at a time, against `ticketq api --workers "
             f"{API_WORKERS}`; one ticket type of {tickets:,} free seats; every buyer asks for one ticket and, if it "
             "got one, submits the form with payment mode `free` or `bank` (alternating: completed or placed, both "
             "queue the confirmation). One `celery worker -c 2` (every queue) and beat (the outbox relay) run during "
             f"and after the rush on the same 2 cores. Answers: {codes}. Emails counted per winner: "
             f"confirmation-buyer and organizer-notification; repeats by Message-ID {by_id}, by order+kind+recipient "
             f"{by_logical}. Held tickets at the end: {held:,} of {tickets:,}. Load average at the end: "
             f"{load_average()}.",
             f"P6 with keys: the same rush for a second event of {tickets:,} seats, a new UUID Idempotency-Key on "
             f"every create and submit; API CPU {keyed_cpu:.1f} s for {sum(keyed.codes.values()):,} requests against "
             f"{api_cpu:.1f} s for {requests:,} without; then the rush without keys again for a third event: "
             f"{last_cpu:.1f} s for {sum(last.codes.values()):,} requests ({last_per_request:.2f} ms each against "
             f"{per_request:.2f} ms in the first; {len(last.submitted_at):,} winners, {last_oversold} oversold); "
             "the key's cost is read against the mean of the two rushes without keys; "
             f"both paths warmed up first ({WARM_UP_BUYERS} buyers each, "
             f"unmeasured), each rush from an idle worker (the first one's backlog drained in {drained:.0f} s, the "
             f"keyed one's in {keyed_drained:.0f} s). Then every {RETRY_EVERY}th buyer's requests were sent again "
             f"with the same key (a producer retrying after a timeout): {replays.replayed} of {replays.sent} replayed"
             + (f"; differed: {'; '.join(replays.differed[:5])}" if replays.differed else "") + "."]
    return rows, notes
