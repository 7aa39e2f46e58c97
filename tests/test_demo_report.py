"""The demo's bookkeeping (pure logic): which emails count as delivered, and what the summary says."""

from __future__ import annotations

import io
from collections import Counter
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest

from ticketq.demo import Demo, DemoOrder
from ticketq.demo_report import Report, render
from ticketq.stack import Stack

A, B = "a" * 32, "b" * 32


def message(order: str, kind: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["X-Order-Identifier"], msg["X-Email-Kind"], msg["To"] = order, kind, to
    msg.set_content("hello")
    return msg


def demo_with(tmp_path: Path, messages: list[EmailMessage]) -> Demo:
    stack = Stack(env={}, api_url="http://127.0.0.1:9", var_dir=tmp_path, files_dir=tmp_path,
                  database_url="", redis_url="", smtp_url="")
    demo = Demo(stack, SimpleNamespace(messages=messages), Report())  # type: ignore[arg-type]
    demo.orders["x"] = DemoOrder("x", A, "completed", ["initializing", "completed"])
    return demo


def test_delivered_counts_each_recipient_of_this_runs_orders(tmp_path: Path) -> None:
    demo = demo_with(tmp_path, [
        message(A, "organizer-notification", "Olga <olga@example.com>, cora@example.com"),
        message(A, "confirmation-buyer", "BEA@example.com"),
        message(A, "confirmation-buyer", "bea@example.com"),  # a duplicate shows as a count of 2
        message(B, "confirmation-buyer", "bea@example.com"),  # another run's order: ignored
    ])
    assert demo.delivered() == Counter({
        (A, "organizer-notification", "olga@example.com"): 1,
        (A, "organizer-notification", "cora@example.com"): 1,
        (A, "confirmation-buyer", "bea@example.com"): 2,
    })
    demo.api.client.close()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_summary_lists_statuses_with_colours_and_says_ok_or_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    report = Report(seconds=12.5, orders=[("free", A, "green", ["initializing", "completed"]),
                                          ("late", B, "red", ["initializing", "expired"])],
                    emails=Counter({"confirmation-buyer": 1}), expected_emails=Counter({"confirmation-buyer": 1}),
                    paths={"PDFs": "var/files"})
    text = render(report, io.StringIO())
    assert "status        colour    ended passed  orders" in text
    assert "completed     green         1      1  free aaaaaaaa" in text
    assert "expired       red           1      1  late bbbbbbbb" in text
    assert "initializing  yellow        0      2" in text
    assert "confirmation-buyer         1 / 1" in text
    assert "\033[" not in text  # no colour codes off a terminal
    assert text.rstrip().endswith("every PDF and email is there.")
    painted = render(report, Terminal())
    assert "\033[32m\u25cf\033[0m green" in painted  # a coloured badge beside the colour's name
    report.failures.append("cancelled is placed/blue, expected cancelled")
    assert "FAILED:\n  - cancelled is placed/blue" in render(report, io.StringIO())
