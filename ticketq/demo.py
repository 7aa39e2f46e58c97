"""`ticketq demo`: a sample event driven through every order status over the HTTP API, on an
embedded stack under var/, then a summary; exits 1 if anything expected did not happen."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from core.settings import settings
from ticketq.demo_cast import (
    BEA,
    CONFIRM_KINDS,
    CORA,
    HANAKO,
    MOHAMMED,
    OWNER,
    SELLER,
    Api,
    DemoFailed,
    DemoOrder,
    Email,
    issue_token,
    say,
)
from ticketq.demo_report import COLOURS, Progress, Report, render
from ticketq.demo_webhooks import TYPES, DemoReceiver
from ticketq.devserver import Supervisor
from ticketq.embedded import SmtpSink
from ticketq.processes import ChildFailed
from ticketq.stack import Stack, start_stack


class Demo:
    def __init__(self, stack: Stack, sink: SmtpSink, report: Report) -> None:
        self.stack, self.sink, self.report = stack, sink, report
        self.api = Api(httpx.Client(base_url=stack.api_url, timeout=30))
        self.expected: Counter[Email] = Counter()
        self.orders: dict[str, DemoOrder] = {}
        self.tokens: dict[str, str] = {}
        self.hooks = DemoReceiver()

    def run(self) -> None:
        say("==> users: owner, co-organizer and buyer with API tokens (ticketq users create)")
        for person in (OWNER, CORA, BEA):
            self.tokens[person[1]] = issue_token(self.stack.env, person)
        say("==> event with a free and a paid ticket type; Cora becomes co-organizer")
        event, free, paid = self.build_event()
        say("==> webhook for every notification type, received and verified here: " + self.hooks.url)
        hook = self.api.call("POST", f"/v1/events/{event}/webhooks", self.tokens[OWNER[1]],
                             {"url": self.hooks.url, "events": list(TYPES)}, (201,))
        self.hooks.verifier = Webhook(hook["secret"])
        say("==> orders: free, bank, online paid then completed, cancelled, one left to expire")
        self.place_orders(event, free, paid)
        self.wait("confirmations", timeout=90)
        say("==> a bank transfer arrives (payment-received), then that order is refunded (credit note)")
        refunded = self.orders["refunded"]
        self.set_status(refunded, CORA, "completed")
        self.wait("payment", timeout=60)  # else the refund could overtake the payment's email
        self.set_status(refunded, OWNER, "cancelled")
        self.wait("refund", timeout=60)
        say("==> resend the online order's confirmation (202), then once more (429: demo limit 1/minute)")
        self.resend(self.orders["online"])
        self.wait("resend", timeout=60)
        self.wait_webhooks(timeout=60)
        self.verify()

    def wait_webhooks(self, timeout: float) -> None:
        """One of each order status reached, one email.sent per email: signed, verified, counted."""
        paths = [order.path for order in self.orders.values()]
        wanted = Counter({f"order.{s}": sum(s in path for path in paths)
                          for s in ("placed", "completed", "expired", "cancelled")})
        wanted["email.sent"] = sum(self.expected.values())
        self.report.expected_webhooks = wanted
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (wanted - self.hooks.by_type):
            time.sleep(0.25)
        self.report.webhooks = Counter(self.hooks.by_type)
        if missing := sorted((wanted - self.hooks.by_type).elements()):
            self.report.failures.append(f"webhooks missing after {timeout:.0f}s: {Counter(missing)}")
        if self.hooks.bad_signatures:
            self.report.failures.append(f"{self.hooks.bad_signatures} webhook(s) with a bad signature")

    # -- scenario ------------------------------------------------------------------------------

    def build_event(self) -> tuple[int, int, int]:
        owner = self.tokens[OWNER[1]]
        start = (datetime.now(UTC) + timedelta(days=30)).replace(hour=9, minute=0, second=0, microsecond=0)
        event = self.api.call("POST", "/v1/events", owner, {
            "name": "ticketq demo conference", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=8)).isoformat(), "timezone": "Europe/Berlin",
            "location": "Berlin", "currency": "EUR", **SELLER}, (201,))
        tickets = f"/v1/events/{event['id']}/tickets"
        free = self.api.call("POST", tickets, owner, {"name": "Community pass", "price": "0.00", "quantity": 100},
                             (201,))
        paid = self.api.call("POST", tickets, owner, {"name": "Conference ticket", "price": "120.00", "quantity": 100},
                             (201,))
        self.api.call("POST", f"/v1/events/{event['id']}/roles", owner, {"email": CORA[1], "role": "coorganizer"},
                      (201,))
        return int(event["id"]), int(free["id"]), int(paid["id"])

    def place_orders(self, event: int, free: int, paid: int) -> None:
        # Two buyers who read other languages: their emails, tickets and invoice are in them.
        self.order("free", event, free, "free", [BEA, HANAKO], expect="completed", locale="ja")
        self.order("bank", event, paid, "bank", [BEA], expect="placed")
        online = self.order("online", event, paid, "stripe", [BEA, MOHAMMED], expect="completed", locale="de")
        self.set_status(online, CORA, "completed")  # payment received, marked by the co-organizer
        cancelled = self.order("cancelled", event, paid, "stripe", [BEA], expect="cancelled")
        self.set_status(cancelled, OWNER, "cancelled")
        self.order("refunded", event, paid, "bank", [BEA], expect="cancelled")  # paid and refunded after the wait
        self.order("expired", event, paid, None, [BEA], expect="expired")  # never submitted
        for order in self.orders.values():
            say(f"    {order.label:<10} {order.identifier}  {' -> '.join(order.path)}")

    def order(self, label: str, event: int, ticket: int, mode: str | None, people: list[tuple[str, str]],
              *, expect: str, locale: str | None = None) -> DemoOrder:
        buyer = self.tokens[BEA[1]]
        body = {"event": event, "tickets": [{"ticket": ticket, "quantity": len(people)}]}
        created = self.api.call("POST", "/v1/orders", buyer, {**body, "locale": locale} if locale else body, (201,))
        order = DemoOrder(label, created["identifier"], expect, [created["status"]], people)
        self.orders[label] = order
        if mode is not None:
            body = {"payment_mode": mode, "buyer": {"name": BEA[0], "email": BEA[1]},
                    "attendees": [{"name": name, "email": email} for name, email in people]}
            order.saw(self.api.call("PATCH", f"/v1/orders/{order.identifier}", buyer, body)["status"])
        if order.path[-1] in ("placed", "completed"):
            self.expect_confirmation(order)
        return order

    def expect_confirmation(self, order: DemoOrder, *, resend: bool = False) -> None:
        self.expected[(order.identifier, "confirmation-buyer", BEA[1])] += 1
        for email in {email for _, email in order.people if email != BEA[1]}:
            self.expected[(order.identifier, "confirmation-attendee", email)] += 1
        if not resend:
            for _, email in (OWNER, CORA):
                self.expected[(order.identifier, "organizer-notification", email)] += 1

    def set_status(self, order: DemoOrder, who: tuple[str, str], status: str) -> None:
        before = order.path[-1]
        answer = self.api.call("PATCH", f"/v1/orders/{order.identifier}", self.tokens[who[1]], {"status": status})
        order.saw(answer["status"])
        if status == "completed" and before == "placed":  # confirmed when placed; now the invoice marked paid
            self.expected[(order.identifier, "payment-received", BEA[1])] += 1
        elif status == "completed":
            self.expect_confirmation(order)
        if status == "cancelled":
            self.expected[(order.identifier, "cancellation", BEA[1])] += 1
            for _, email in (OWNER, CORA):
                self.expected[(order.identifier, "organizer-notification", email)] += 1

    def resend(self, order: DemoOrder) -> None:
        owner, body = self.tokens[OWNER[1]], {"data": {"order": order.identifier}}
        first = self.api.call("POST", "/v1/orders/resend-email", owner, body, (202,))
        self.expect_confirmation(order, resend=True)
        refused = self.api.client.post("/v1/orders/resend-email", json=body,
                                       headers={"Authorization": f"Bearer {owner}"})
        retry = refused.headers.get("Retry-After")
        detail = (refused.json().get("errors") or [{}])[0].get("detail", "") if refused.content else ""
        self.report.resend = (f"202 \"{first.get('message', '')}\"\n        then {refused.status_code} "
                              f"\"{detail}\" (Retry-After: {retry}s)")
        if refused.status_code != 429 or not retry:
            raise DemoFailed(f"second resend answered {refused.status_code} (Retry-After {retry}), expected 429")

    # -- waiting and checking ------------------------------------------------------------------

    def delivered(self) -> Counter[Email]:
        """(order, kind, recipient) of every message the sink accepted for this run's orders."""
        ours = {order.identifier for order in self.orders.values()}
        seen: Counter[Email] = Counter()
        for message in list(self.sink.messages):
            identifier, kind = str(message.get("X-Order-Identifier", "")), str(message.get("X-Email-Kind", ""))
            if identifier in ours:
                for _, address in getaddresses([str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]):
                    seen[(identifier, kind, address.lower())] += 1
        return seen

    def wait(self, phase: str, timeout: float) -> None:
        progress, expired = Progress(), self.orders["expired"]
        deadline, next_poll = time.monotonic() + timeout, 0.0
        total = sum(self.expected.values()) + 1
        try:
            while True:
                if self.stack.supervisor is not None:
                    self.stack.supervisor.check()  # restarts a worker, beat or API that died, with backoff
                got = self.delivered()
                emails = sum(min(got[key], n) for key, n in self.expected.items())
                if expired.path[-1] != "expired" and time.monotonic() >= next_poll:
                    expired.saw(self.get(expired)["status"])
                    next_poll = time.monotonic() + 1
                done = emails + (expired.path[-1] == "expired")
                progress.update(f"jobs ({phase})", done, total,
                                f"emails {emails}/{total - 1}, expiry {'done' if done > emails else 'waiting'}")
                if done >= total:
                    return
                if time.monotonic() > deadline:
                    missing = sorted((self.expected - got).elements())
                    raise DemoFailed(f"{phase}: after {timeout:.0f}s still missing {missing or 'the expiry'}")
                time.sleep(0.25)
        finally:
            progress.close()

    def get(self, order: DemoOrder) -> Any:
        return self.api.call("GET", f"/v1/orders/{order.identifier}", self.tokens[OWNER[1]])

    def verify(self) -> None:
        time.sleep(1.5)  # room for a duplicate to show up
        got, failures = self.delivered(), self.report.failures
        if extra := sorted((got - self.expected).elements()):
            failures.append(f"unexpected or duplicate emails: {extra}")
        for order in self.orders.values():
            answer = self.get(order)
            order.saw(answer["status"])
            if answer["status"] != order.expect or answer.get("color") != COLOURS[order.expect]:
                failures.append(f"{order.label} is {answer['status']}/{answer.get('color')}, expected {order.expect}")
            if order.expect in ("placed", "completed") and not answer.get("documents"):
                failures.append(f"{order.label}: GET lists no documents")
            states = {str(e.get("state")) for e in answer.get("emails") or []}
            if states - {"sent"}:
                failures.append(f"{order.label}: email states {sorted(states)}, expected all sent")
        pdf = self.api.client.get(f"/v1/orders/{self.orders['bank'].identifier}/tickets.pdf",
                                  headers={"Authorization": f"Bearer {self.tokens[BEA[1]]}"})
        if pdf.status_code != 200 or not pdf.content.startswith(b"%PDF"):
            failures.append(f"GET tickets.pdf answered {pdf.status_code} {pdf.headers.get('content-type')}")
        for message in self.sink.messages:
            if message.get("X-Email-Kind") in CONFIRM_KINDS and not any(
                    part.get_content_type() == "application/pdf" for part in message.iter_attachments()):
                failures.append(f"{message['X-Email-Kind']} to {message['To']} carries no PDF")


def run_demo(var_dir: Path | None = None) -> int:
    """Start the stack, run the scenario, stop everything, print the summary; 0 only if all went right."""
    var_dir = (var_dir or settings.var_dir).resolve()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the demo narrates its own requests
    for suffix in ("", "-wal", "-shm"):  # the demo's own database starts empty every run
        (var_dir / f"demo.db{suffix}").unlink(missing_ok=True)
    began, wall = time.monotonic(), time.time()
    report, code, demo = Report(), 1, None
    say("==> starting embedded Redis, SMTP sink, SQLite, API, worker and beat under " + str(var_dir))
    with Supervisor(var_dir) as sup:
        try:
            stack = start_stack(sup, demo=True)
            say(f"    ready in {time.monotonic() - began:.1f}s: API {stack.api_url}/docs, metrics "
                f"{stack.api_url}/metrics and http://127.0.0.1:{stack.env['WORKER_METRICS_PORT']}/metrics (worker)")
            assert sup.sink is not None
            demo = Demo(stack, sup.sink, report)
            demo.run()
        except KeyboardInterrupt:
            report.failures.append("interrupted")
            code = 130
        except (DemoFailed, ChildFailed, httpx.HTTPError) as exc:
            report.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            if demo is not None:
                demo.api.client.close()
                demo.hooks.stop()
            say("==> stopping everything the demo started")
            sup.stop()
            report.leftovers = sup.leftovers()
    fill_report(report, var_dir, demo, wall)
    report.seconds = time.monotonic() - began
    if report.leftovers:
        report.failures.append(f"processes still running: {report.leftovers}")
    print(render(report), flush=True)
    return 0 if not report.failures else code


def fill_report(report: Report, var_dir: Path, demo: Demo | None, since: float) -> None:
    files, mail = var_dir / "files", var_dir / "mail"
    report.pdfs = [p for p in files.rglob("*.pdf") if p.stat().st_mtime >= since - 1] if files.exists() else []
    report.eml_files = sum(1 for p in mail.glob("*.eml") if p.stat().st_mtime >= since - 1) if mail.exists() else 0
    report.paths = {"emails": f"{mail}/*.eml (X-Email-Kind in each name)", "PDFs": str(files),
                    "database": str(var_dir / "demo.db"), "logs": f"{var_dir / 'log'}/{{api,worker,beat,redis}}.log"}
    if report.pdfs:
        report.paths["PDFs"] += f"\n            e.g. {min(report.pdfs, key=lambda p: p.stat().st_mtime)}"
    if demo is None:
        return
    report.orders = [(o.label, o.identifier, COLOURS.get(o.path[-1], ""), o.path) for o in demo.orders.values()]
    for message in list(demo.sink.messages):  # the language each order's emails were written in
        report.languages.setdefault(str(message.get("X-Order-Identifier", "")), set()).add(
            str(message.get("Content-Language", "?")))
    for label, locale in (("free", "ja"), ("online", "de")):
        got = report.languages.get(demo.orders[label].identifier, set()) if label in demo.orders else set()
        if label in demo.orders and not {locale} <= got:  # the organizers' copies are in the event's language (en)
            report.failures.append(f"{label}: emails in {sorted(got)}, expected some in {locale}")
    report.expected_emails = Counter(kind for (_, kind, _), n in demo.expected.items() for _ in range(n))
    report.emails = Counter(kind for (_, kind, _), n in demo.delivered().items() for _ in range(n))
    confirmed = sum(1 for o in demo.orders.values() if o.expect in ("placed", "completed"))
    if not report.failures and len(report.pdfs) < confirmed:
        report.failures.append(f"only {len(report.pdfs)} PDFs written for {confirmed} confirmed orders")
