"""A cancelled or expired order's ticket PDFs answer 410; its invoice is not void. (With PDFs a real
worker rendered: tests/e2e/test_void_and_resend.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.expiration import expire_stale
from tests.api.conftest import only_error


def test_a_cancelled_orders_tickets_answer_410_before_anything_else(client: TestClient,
                                                                   world: dict[str, Any]) -> None:
    identifier, owner = world["orders"]["completed"], world["headers"]["owner"]
    assert client.patch(f"/v1/orders/{identifier}", json={"status": "cancelled"}, headers=owner).status_code == 200
    for who in ("buyer", "owner", "admin"):
        gone = client.get(f"/v1/orders/{identifier}/tickets.pdf", headers=world["headers"][who])
        assert gone.status_code == 410
        error = only_error(gone)
        assert error == {"status": "410", "title": "Gone", "detail": "This order was cancelled; its tickets are void",
                         "source": {"parameter": "identifier"}}
        # The invoice is not void: here only not rendered yet (no worker ran).
        invoice = client.get(f"/v1/orders/{identifier}/invoice.pdf", headers=world["headers"][who])
        assert invoice.status_code == 404 and only_error(invoice)["detail"] == "Document not ready"


def test_an_expired_orders_tickets_answer_410(client: TestClient, db: sessionmaker[Session],
                                              world: dict[str, Any]) -> None:
    identifier = world["orders"]["initializing"]
    expire_stale(db, now=utcnow() + timedelta(days=1))
    gone = client.get(f"/v1/orders/{identifier}/tickets.pdf", headers=world["headers"]["buyer"])
    assert gone.status_code == 410
    assert only_error(gone)["detail"] == "This order expired; its tickets are void"
    # Access is checked first: an outsider learns nothing of the order, void or not.
    assert client.get(f"/v1/orders/{identifier}/tickets.pdf", headers=world["headers"]["stranger"]).status_code == 403
