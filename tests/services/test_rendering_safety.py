"""Rendering safety without backends: hostile data prints as text, and the fetcher fetches nothing outside."""

from __future__ import annotations

import io

from pypdf import PdfReader

from models.deliveries import DocumentKind
from services.rendering import AssetOnlyFetcher, order_documents, render_html, render_order
from tests.services.hostile import counting_server, hostile_names


def text_of(pdf: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())


def context(names: list[str], event_name: str = "PyCon Test") -> dict[str, object]:
    return {
        "identifier": "f00dfeed", "status": "completed",
        "event": {"name": event_name, "location": "Berlin", "date": "Saturday 01 May 2027",
                  "time": "11:00 – 19:00", "when": "…", "timezone": "Europe/Berlin"},
        "buyer": {"name": names[0], "email": "buyer@example.org"},
        "seller": {"name": "Owner", "email": "owner@example.org", "event": event_name},
        "attendees": [{"id": i + 10, "number": i + 1, "name": n, "email": "", "ticket": "Standard",
                       "secret": f"secret-{i}"} for i, n in enumerate(names)],
        "invoice": {"number": "INV-2026-000001", "date": "2026-11-22", "currency": "EUR", "payment_mode": "bank",
                    "lines": [{"name": "Standard", "quantity": len(names), "unit": "1.00 EUR",
                               "subtotal": f"{len(names)}.00 EUR"}], "total": f"{len(names)}.00 EUR"},
    }


def test_hostile_names_print_as_literal_text_and_fetch_nothing() -> None:
    with counting_server() as server:
        names = hostile_names(server.url)
        rendered = render_order(context(names, event_name=names[2]), [10 + i for i in range(len(names))])
        documents = order_documents(rendered)
        assert server.paths == []
    tickets = text_of(documents[(DocumentKind.TICKETS, None)])
    for name in names:  # a long name wraps wherever the font's widths put it: compare without whitespace
        assert "".join(name.split()) in tickets.replace(" ", "")
    assert "{{ 7*7 }}" in tickets
    assert "root:" not in tickets  # /etc/passwd was never read
    assert rendered.ticket_pages == {10 + i: [i] for i in range(len(names))}
    assert names[0] in text_of(documents[(DocumentKind.ATTENDEE_TICKET, 10)])
    assert names[1] not in text_of(documents[(DocumentKind.ATTENDEE_TICKET, 10)])


def test_the_fetcher_refuses_files_and_network_even_in_raw_markup() -> None:
    with counting_server() as server:
        fetcher = AssetOnlyFetcher()
        html = (f'<link rel="stylesheet" href="{server.url}/x.css"><style>@import url("file:///etc/passwd");'
                f'p {{ background: url({server.url}/bg.png) }}</style><p>hi</p>'
                f'<img src="file:///etc/passwd"><img src="{server.url}/i.png">'
                '<img src="ticketq-asset:../../../etc/passwd"><img src="data:image/png;base64,iVBORw0KGgo=">')
        pdf, _ = render_html(html, fetcher)
        assert server.paths == []
    assert "hi" in text_of(pdf)
    assert any(u.startswith("file:") for u in fetcher.refused)
    assert any(u.startswith(server.url) for u in fetcher.refused)
    assert any(u.startswith("ticketq-asset:") for u in fetcher.refused)
    assert any(u.startswith("data:") for u in fetcher.refused)


def test_the_fetcher_serves_packaged_assets() -> None:
    response = AssetOnlyFetcher().fetch("ticketq-asset:pdf/documents.css")
    assert b"@page" in response.read()
