"""R3 the SMTP server down for 60 s, then answering 421/451 for a while, and 550 for one address for
good: every other email is delivered after recovery, the 550 one fails once, and retries back off."""

from __future__ import annotations

import math
import time

from bench.harness import Harness
from bench.report import Row

ORDERS, QUICK_ORDERS = 40, 4
DOWN, QUICK_DOWN = 60.0, 5.0
TEMPORARY = ["421 4.3.2 Service shutting down, try again", "451 4.3.0 Temporary local problem, try again"]
TEMP_REPLIES, QUICK_TEMP_REPLIES = 20, 4
REFUSED = "nobody@refused.example"


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from bench.workload import EMAILS_PER_ORDER, complete_all, factory, make_pending, seed_event, wait_for_emails

    sink = h.sink
    assert sink is not None
    count, down, temp = (QUICK_ORDERS, QUICK_DOWN, QUICK_TEMP_REPLIES) if quick else (ORDERS, DOWN, TEMP_REPLIES)
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    refused_order = make_pending(db, seed, 1, guest=REFUSED)
    orders = refused_order + make_pending(db, seed, count - 1, first=1)
    # Retries are jobs in PostgreSQL with a later run_after: beat's outbox relay sends them when due.
    worker, beat = h.worker("r3-worker", concurrency=2), h.beat("r3-beat")
    try:
        sink.go_down()
        went_down = time.time()
        complete_all(db, orders)
        time.sleep(max(0.0, went_down + down - time.time()))
        with sink._lock:
            sink.refuse[REFUSED] = "550 5.1.1 No such user here"
        sink.script_replies(*(TEMPORARY[n % 2] for n in range(temp)))
        sink.come_back()
        recovered = time.time()
        attempts_while_down = total_attempts(h)
        others = orders[1:]
        wait_for_emails(sink.snapshot, others, 400)
        deadline = time.time() + 60  # the refused order's other two emails, and its failure record
        while time.time() < deadline and (len(mine(sink.snapshot(), refused_order)) < EMAILS_PER_ORDER - 1
                                         or refused_state(h) not in ("failed", "sent")):
            time.sleep(0.5)
        accepted = sink.snapshot()
    finally:
        h.stop(worker)
        h.stop(beat)
    return judge(h, orders, accepted, went_down, recovered, attempts_while_down, temp, down)


def mine(accepted: list, orders: list[str]) -> list:
    return [a for a in accepted if a.order in set(orders)]


def refused_state(h: Harness) -> str:
    import sqlalchemy as sa

    from models.db import get_sessionmaker
    from models.deliveries import EmailDelivery

    with get_sessionmaker(h.database_url)() as session:
        state = session.scalar(sa.select(EmailDelivery.state).where(EmailDelivery.recipient == REFUSED))
        return str(state.value) if state else "none"


def total_attempts(h: Harness) -> tuple[int, int, int]:
    """(sum of attempts, max attempts of one email, emails) from the delivery records."""
    import sqlalchemy as sa

    from models.db import get_sessionmaker
    from models.deliveries import EmailDelivery

    with get_sessionmaker(h.database_url)() as session:
        attempts = EmailDelivery.attempts
        total, most, emails = session.execute(sa.select(
            sa.func.coalesce(sa.func.sum(attempts), 0), sa.func.coalesce(sa.func.max(attempts), 0),
            sa.func.count())).one()
    return int(total), int(most), int(emails)


def storm_bound(down: float) -> int:
    """Tries one email can make in `down` seconds when each wait at least doubles from 1 s."""
    return 2 + math.ceil(math.log2(down + 1))


def judge(h: Harness, orders: list[str], accepted: list, went_down: float, recovered: float,
          while_down: tuple[int, int, int], temp: int, down: float) -> tuple[list[Row], list[str]]:
    from bench.workload import EMAILS_PER_ORDER, duplicates

    assert h.sink is not None
    ours = mine(accepted, orders)
    expected = len(orders) * EMAILS_PER_ORDER - 1
    delivered = len({(a.order, a.kind, a.recipients) for a in ours})
    to_refused = sum(1 for a in ours if REFUSED in a.recipients)
    last = max((a.at for a in ours), default=recovered)
    refused_tries = h.sink.rcpt_attempts.get(REFUSED, 0)
    state = refused_state(h)
    total, most, emails = total_attempts(h)
    by_id, by_logical = duplicates(ours)
    data_after = h.sink.data_attempts
    rows = [
        Row("R3", f"emails delivered after recovery (of {expected} deliverable, {len(orders)} orders)",
            f"{delivered}, last {last - recovered:.0f} s after recovery", f"all {expected}",
            delivered == expected and by_logical == 0),
        Row("R3", "the 550 address: SMTP attempts after recovery / record state", f"{refused_tries} / {state}",
            "1 / failed", refused_tries == 1 and state == "failed" and to_refused == 0),
        Row("R3", f"tries per email while down {down:.0f} s: mean / max", f"{while_down[0] / max(1, emails):.1f} / "
            f"{while_down[1]}", f"<= {storm_bound(down)} (exponential backoff)", while_down[1] <= storm_bound(down)),
        Row("R3", "tries per email in all: mean / max; DATA commands after recovery",
            f"{total / max(1, emails):.1f} / {most}; {data_after}", f"<= {delivered + temp + 2} DATA",
            data_after <= delivered + temp + 2),
    ]
    notes = [f"R3: one worker `-c 2`; the sink stops listening (connection refused) for {down:.0f} s while "
             f"{len(orders)} orders are completed; it comes back answering the next {temp} DATA commands with "
             "421/451 and refusing "
             f"{REFUSED} (one order's guest) with 550 at RCPT. DATA commands seen after recovery: {data_after} "
             f"(= {delivered} accepted + {temp} scripted temporary replies + the rest); duplicates by Message-ID: "
             f"{by_id}. Attempts are the delivery records' counters, which count every try while the server was down."]
    return rows, notes
