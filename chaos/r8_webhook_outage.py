"""R8 the webhook receiver down for 60 s while 200 orders are completed and worker children are killed:
every notification is delivered after it comes back, signed, and each webhook-id is accepted once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import Harness
from bench.report import Row
from chaos.r1_worker_kill import Killer

ORDERS, QUICK_ORDERS = 200, 6
DOWN, QUICK_DOWN = 60.0, 8.0
TYPES = ["order.completed", "order.cancelled", "email.sent", "email.failed"]


class Receiver:
    """A stdlib receiver that can go away (connection refused) and come back on the same port."""

    def __init__(self) -> None:
        self.verifier: Any = None  # set once the webhook (and so its secret) exists
        self.port = 0
        self.accepted: Counter[str] = Counter()  # webhook-id -> deliveries that reached the receiver
        self.bad = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    receiver.verifier.verify(body, dict(self.headers.items()))
                    status = 204
                except Exception:
                    status = 400
                with receiver.lock:
                    if status == 204:
                        receiver.accepted[self.headers["webhook-id"]] += 1
                    else:
                        receiver.bad += 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    from standardwebhooks.webhooks import Webhook

    from bench.workload import complete_all, factory, make_pending, seed_event
    from models.webhooks import create_webhook

    count, down = (QUICK_ORDERS, QUICK_DOWN) if quick else (ORDERS, DOWN)
    h.reset()
    db = factory(h.database_url)
    seed = seed_event(db)
    receiver = Receiver()
    receiver.up()  # to learn a free port, kept when it comes back
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    with db() as session, session.begin():
        receiver.verifier = Webhook(create_webhook(session, seed.event_id, url, TYPES).secret)
    receiver.down()
    orders = make_pending(db, seed, count)
    env = {"WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOW_PRIVATE": "true"}
    worker, beat = h.worker("r8-worker", concurrency=2, extra_env=env), h.beat("r8-beat", extra_env=env)
    killer = Killer(worker)
    try:
        went_down = time.time()
        complete_all(db, orders)
        killer.start()
        time.sleep(max(0.0, went_down + down - time.time()))
        receiver.up()
        recovered = time.time()
        deadline = recovered + 300 + count
        while time.time() < deadline and pending(h) > 0:
            time.sleep(1)
        killer.halt.set()
        killer.join(5)
        time.sleep(3)
    finally:
        killer.halt.set()
        h.stop(worker)
        h.stop(beat)
        receiver.down()
    return judge(h, receiver, recovered, len(killer.kills), count, down)


def pending(h: Harness) -> int:
    """Notifications not delivered yet, and orders whose emails (and so their notifications) are not all done."""
    import sqlalchemy as sa

    from models.db import get_sessionmaker
    from models.deliveries import DeliveryState, EmailDelivery
    from models.webhooks import MessageState, WebhookMessage

    with get_sessionmaker(h.database_url)() as session:
        unsent = session.scalar(sa.select(sa.func.count()).where(
            EmailDelivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]))) or 0
        owed = session.scalar(sa.select(sa.func.count()).where(WebhookMessage.state == MessageState.PENDING)) or 0
    return int(unsent) + int(owed)


def judge(h: Harness, receiver: Receiver, recovered: float, kills: int, count: int,
          down: float) -> tuple[list[Row], list[str]]:
    import sqlalchemy as sa

    from models.db import get_sessionmaker
    from models.webhooks import WebhookMessage

    with get_sessionmaker(h.database_url)() as session:
        rows = session.execute(sa.select(WebhookMessage.msg_id, WebhookMessage.state, WebhookMessage.type)).all()
    owed = {msg_id for msg_id, _, _ in rows}
    by_state = Counter(str(state.value) for _, state, _ in rows)
    by_type = Counter(type_ for _, _, type_ in rows)
    got = set(receiver.accepted)
    lost = len(owed - got)
    repeats = sum(n - 1 for n in receiver.accepted.values())
    result = [
        Row("R8", f"notifications delivered after the receiver came back ({count} orders, {kills} child SIGKILLs)",
            f"{len(owed & got)} of {len(owed)}", "all", lost == 0 and len(owed) > 0),
        Row("R8", "notifications lost / with a bad signature", f"{lost} / {receiver.bad}", "0 / 0",
            lost == 0 and receiver.bad == 0),
        Row("R8", "webhook-ids accepted once by a deduping receiver (repeat deliveries seen)",
            f"{len(got)} ({repeats} repeats)", f"{len(owed)}", got == owed),
    ]
    notes = [f"R8: one worker `-c 2` and beat; a stdlib receiver verifying every signature with standardwebhooks "
             f"refuses connections for {down:.0f} s while {count} orders are completed, a worker child is SIGKILLed "
             f"every 2 s throughout. Notifications by type: {dict(by_type)}; final states: {dict(by_state)}. "
             "A repeat is the same webhook-id delivered again (a kill between the answer and its record)."]
    return result, notes
