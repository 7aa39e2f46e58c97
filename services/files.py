"""Stored documents: keyed-hash paths under FILES_DIR, and finding the file an order's document is
in. The worker writes them (services/storage.py); the API only reads them, through this module."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.settings import settings
from models.deliveries import Document, DocumentKind
from models.orders import Order
from services.presenters import order_context

# Documents whose content is fixed once issued (only the printed payment status follows the order).
ACCOUNTING = frozenset({DocumentKind.INVOICE, DocumentKind.CREDIT_NOTE})


def fingerprint_of(context: Mapping[str, Any]) -> str:
    """A digest of everything the documents show. A status change bumps the order's revision but
    prints nothing new, so the stored PDFs stay valid; a changed name or event makes new ones."""
    shown = {k: v for k, v in context.items() if k != "status"}
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()


def content_fingerprint(order: Order) -> str:
    return fingerprint_of(order_context(order))


def document_name(identifier: str, kind: DocumentKind, attendee_id: int | None, fingerprint: str) -> str:
    """The path of a document relative to FILES_DIR: unguessable without SECRET_KEY, stable per content."""
    key = f"{identifier}/{kind.value}/{attendee_id if attendee_id is not None else '-'}/{fingerprint}"
    digest = hmac.new(settings.secret(), key.encode(), hashlib.sha256).hexdigest()
    return f"{digest[:2]}/{digest}.pdf"


def absolute(relative: str) -> Path:
    return settings.files_dir / relative


def find_document(
    session: Session, order: Order, kind: DocumentKind, attendee_id: int | None = None
) -> Path | None:
    """The stored file for the order as it is now, or None when it is not (or no longer) there.

    A row of the current revision wins; else the file rendered for the same content (the order only
    changed status since) is served; else, for an invoice or credit note, the newest one stored: its
    number, lines and amounts never change, so while a status change (a cancellation) is rendered
    again the buyer gets the previous print rather than a 404. Nothing is ever rendered here.
    """
    same = sa.select(Document.path).where(
        Document.order_id == order.id, Document.kind == kind,
        Document.attendee_id.is_(None) if attendee_id is None else Document.attendee_id == attendee_id,
    ).order_by(Document.id.desc())
    relative = session.scalar(same.where(Document.revision == order.revision).limit(1))
    if relative is None or not absolute(relative).is_file():
        relative = document_name(order.identifier, kind, attendee_id, content_fingerprint(order))
    if not absolute(relative).is_file() and kind in ACCOUNTING:
        relative = next((p for p in session.scalars(same.limit(5)) if absolute(p).is_file()), relative)
    path = absolute(relative)
    return path if path.is_file() else None
