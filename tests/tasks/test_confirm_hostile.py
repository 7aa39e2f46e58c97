"""Hostile names through the whole pipeline: literal text in PDFs and emails, no extra header, nothing fetched."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models.deliveries import DeliveryState
from tests.backends import CeleryWorker
from tests.services.hostile import counting_server, hostile_names
from tests.tasks.confirm_helpers import BUYER, SHARED, attachments, by_kind, confirmed_order, pdf_text, wait_settled
from ticketq.embedded import SmtpSink
from worker import app


def flat(text: str) -> str:
    return " ".join(text.split())


def bare(text: str) -> str:
    return "".join(text.split())


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def test_hostile_names_come_out_as_literal_text(
    db: sessionmaker[Session], celery_worker: CeleryWorker, smtp: SmtpSink
) -> None:
    with counting_server() as server:
        names = hostile_names(server.url)
        people = [(names[0], BUYER)] + [(n, SHARED) for n in names[1:]]
        identifier = confirmed_order(db, people, buyer_name=names[5], event_name=names[4])
        app.send_task(CONFIRM_TASK, args=[identifier], queue="orders")
        rows = wait_settled(db, identifier, 3)
        assert server.paths == []

    assert [r.state for r in rows] == [DeliveryState.SENT] * 3
    mails = by_kind(smtp.messages)
    assert len(smtp.messages) == 3
    for message in smtp.messages:
        assert message["Bcc"] is None and "evil" not in str(message["To"])
        assert all(key.lower() != "bcc" for key in message)
    buyer = mails[("confirmation-buyer", BUYER)]
    assert flat(names[4]) in str(buyer["Subject"])
    text, html = body(buyer, "plain"), body(buyer, "html")
    assert names[0] in text and "{{ 7*7 }}" in text
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html and '<img src="file' not in html
    assert "<link" not in html and "<style>@import" not in html

    # A long name wraps wherever the font's widths put it, even inside a word: compare without whitespace.
    files = attachments(buyer)
    tickets = bare(pdf_text(next(pdf for name, pdf in files.items() if name.endswith(" - tickets.pdf"))))
    for name in names:
        assert bare(name) in tickets
    family = attachments(mails[("confirmation-attendee", SHARED)])
    # Names carry the event and the attendee, never a path, a quote or a line break.
    assert all(not set(name) & set('/\\:*?"<>|\r\n') for name in [*files, *family])
    numbered = {int(name.split(" - ticket ")[1].split(" ")[0]): name for name in family if " - ticket " in name}
    assert set(numbered) == set(range(2, 7)) and "event.ics" in family and len(family) == 6
    assert bare(names[3]) in bare(pdf_text(family[numbered[4]]))
