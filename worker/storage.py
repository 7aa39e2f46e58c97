"""Generated PDFs under FILES_DIR at keyed-hash paths, and the Document rows that point at them."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.deliveries import Document, DocumentKind
from models.orders import Order
from ticketq.settings import settings
from worker.presenters import order_context

log = logging.getLogger("ticketq.storage")

# (kind, attendee id or None) -> the PDF bytes of one rendering of an order.
DocumentKey = tuple[DocumentKind, int | None]


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


def write_file(relative: str, data: bytes) -> Path:
    """Write atomically, so a reader never sees half a PDF and two writers never interleave."""
    path = absolute(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pdf")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def find_document(
    session: Session, order: Order, kind: DocumentKind, attendee_id: int | None = None
) -> Path | None:
    """The stored file for the order as it is now, or None when it is not (or no longer) there.

    A row of the current revision wins; else the file rendered for the same content (the order only
    changed status since) is served. Nothing is ever rendered here.
    """
    stmt = sa.select(Document.path).where(
        Document.order_id == order.id, Document.kind == kind, Document.revision == order.revision,
        Document.attendee_id.is_(None) if attendee_id is None else Document.attendee_id == attendee_id,
    ).order_by(Document.id.desc()).limit(1)
    relative = session.scalar(stmt)
    if relative is None or not absolute(relative).is_file():
        relative = document_name(order.identifier, kind, attendee_id, content_fingerprint(order))
    path = absolute(relative)
    return path if path.is_file() else None


def expected_keys(order: Order) -> set[DocumentKey]:
    keys: set[DocumentKey] = {(DocumentKind.TICKETS, None), (DocumentKind.INVOICE, None)}
    keys.update((DocumentKind.ATTENDEE_TICKET, a.id) for a in order.attendees)
    return keys


def documents_ready(session: Session, order: Order, fingerprint: str | None = None) -> bool:
    """Every document for this content is on disk: nothing to render. Rows left from an earlier
    revision of the same content are moved to the current one, so the order lists them."""
    fingerprint = fingerprint or content_fingerprint(order)
    names = {key: document_name(order.identifier, key[0], key[1], fingerprint) for key in expected_keys(order)}
    if not all(absolute(name).is_file() for name in names.values()):
        return False
    rows = session.scalars(sa.select(Document).where(Document.order_id == order.id))
    stale = [row for row in rows if row.revision != order.revision and row.path in names.values()]
    for row in stale:
        row.revision = order.revision
    return True


def store_documents(
    session: Session, order: Order, revision: int, rendered: Mapping[DocumentKey, bytes],
    fingerprint: str | None = None,
) -> None:
    """Write the files and replace the order's rows; files no longer referenced are removed.

    `fingerprint` is the content the PDFs were rendered from (default: the order as it is now).
    The caller holds the order row lock, so two renderings of one order record one set of rows.
    """
    fingerprint = fingerprint or content_fingerprint(order)
    old = list(session.scalars(sa.select(Document).where(Document.order_id == order.id)))
    keep: set[str] = set()
    for (kind, attendee_id), data in rendered.items():
        relative = document_name(order.identifier, kind, attendee_id, fingerprint)
        write_file(relative, data)
        keep.add(relative)
        session.add(Document(order_id=order.id, kind=kind, attendee_id=attendee_id, path=relative,
                             revision=revision, size=len(data)))
    for row in old:
        if row.revision <= revision:
            session.delete(row)
            if row.path not in keep:
                absolute(row.path).unlink(missing_ok=True)
    session.flush()
    log.info("order %s: stored %d documents for revision %d", order.identifier, len(rendered), revision)


def stored_documents(order: Order) -> dict[DocumentKey, bytes]:
    """The stored PDFs of the order's current content, read from disk; missing files are left out."""
    fingerprint = content_fingerprint(order)
    found: dict[DocumentKey, bytes] = {}
    for key in expected_keys(order):
        try:
            found[key] = absolute(document_name(order.identifier, key[0], key[1], fingerprint)).read_bytes()
        except FileNotFoundError:
            continue
    return found
