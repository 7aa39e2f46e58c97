"""Generated PDFs under FILES_DIR at keyed-hash paths, and the Document rows that point at them."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.deliveries import Document, DocumentKind
from models.orders import Order
from ticketq.settings import settings

log = logging.getLogger("ticketq.storage")

# (kind, attendee id or None) -> the PDF bytes of one rendering of an order.
DocumentKey = tuple[DocumentKind, int | None]


def document_name(identifier: str, kind: DocumentKind, attendee_id: int | None, revision: int) -> str:
    """The path of a document relative to FILES_DIR: unguessable without SECRET_KEY, stable per revision."""
    key = f"{identifier}/{kind.value}/{attendee_id if attendee_id is not None else '-'}/{revision}"
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


def current_documents(session: Session, order: Order) -> list[Document]:
    return list(session.scalars(
        sa.select(Document).where(Document.order_id == order.id, Document.revision == order.revision)
    ))


def find_document(
    session: Session, order: Order, kind: DocumentKind, attendee_id: int | None = None
) -> Path | None:
    """The stored file for the order's current revision, or None when it is not (or no longer) there."""
    stmt = sa.select(Document.path).where(
        Document.order_id == order.id, Document.kind == kind, Document.revision == order.revision,
        Document.attendee_id.is_(None) if attendee_id is None else Document.attendee_id == attendee_id,
    ).order_by(Document.id.desc()).limit(1)
    relative = session.scalar(stmt)
    if relative is None:
        return None
    path = absolute(relative)
    return path if path.is_file() else None


def expected_keys(order: Order) -> set[DocumentKey]:
    keys: set[DocumentKey] = {(DocumentKind.TICKETS, None), (DocumentKind.INVOICE, None)}
    keys.update((DocumentKind.ATTENDEE_TICKET, a.id) for a in order.attendees)
    return keys


def documents_ready(session: Session, order: Order) -> bool:
    """Every document of the current revision has a row and a file: nothing to render."""
    have = {(d.kind, d.attendee_id): d for d in current_documents(session, order)}
    return all(key in have and absolute(have[key].path).is_file() for key in expected_keys(order))


def store_documents(session: Session, order: Order, revision: int, rendered: Mapping[DocumentKey, bytes]) -> None:
    """Write the files and replace the order's rows; older revisions' files are removed.

    The caller holds the order row lock, so two renderings of one order record one set of rows.
    """
    old = list(session.scalars(sa.select(Document).where(Document.order_id == order.id)))
    keep: set[str] = set()
    for (kind, attendee_id), data in rendered.items():
        relative = document_name(order.identifier, kind, attendee_id, revision)
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
