"""Generated PDFs under FILES_DIR at keyed-hash paths, and the Document rows that point at them.

The paths and the reading side live in services/files.py, which the API imports too; they are
re-exported here for the worker's modules."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from models.deliveries import Document, DocumentKind
from models.invoices import InvoiceKind
from models.orders import Order
from services.files import absolute, content_fingerprint, document_name, find_document, fingerprint_of

__all__ = ["DocumentKey", "absolute", "content_fingerprint", "document_name", "documents_ready",
           "expected_keys", "find_document", "fingerprint_of", "store_documents", "stored_documents", "write_file"]

log = logging.getLogger("ticketq.storage")

# (kind, attendee id or None) -> the PDF bytes of one rendering of an order.
DocumentKey = tuple[DocumentKind, int | None]
INVOICE_DOCUMENTS = {InvoiceKind.INVOICE: DocumentKind.INVOICE, InvoiceKind.CREDIT_NOTE: DocumentKind.CREDIT_NOTE}


def write_file(relative: str, data: bytes) -> Path:
    """Write atomically, so a reader never sees half a PDF and two writers never interleave."""
    path = absolute(relative)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pdf")
    except FileNotFoundError:  # the directory's first file (one mkdir per directory, not per file)
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


def expected_keys(order: Order) -> set[DocumentKey]:
    """The tickets, each attendee's ticket, and the invoice and credit note the order was issued."""
    keys: set[DocumentKey] = {(DocumentKind.TICKETS, None)}
    keys.update((DocumentKind.ATTENDEE_TICKET, a.id) for a in order.attendees)
    keys.update((INVOICE_DOCUMENTS[i.kind], None) for i in order.invoices)
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


_documents = cast(sa.Table, Document.__table__)
_REPLACED = (sa.delete(_documents)
             .where(_documents.c.order_id == sa.bindparam("order_id", type_=sa.Integer),
                    _documents.c.revision <= sa.bindparam("revision", type_=sa.Integer))
             .returning(_documents.c.path))
_STORE = sa.insert(_documents)


def store_documents(
    session: Session, order: Order, revision: int, rendered: Mapping[DocumentKey, bytes],
    fingerprint: str | None = None,
) -> None:
    """Write the files and replace the order's rows; files no longer referenced are removed.

    `fingerprint` is the content the PDFs were rendered from (default: the order as it is now).
    The caller holds the order row lock, so two renderings of one order record one set of rows.
    """
    fingerprint = fingerprint or content_fingerprint(order)
    rows: list[dict[str, Any]] = []
    for (kind, attendee_id), data in rendered.items():
        relative = document_name(order.identifier, kind, attendee_id, fingerprint)
        write_file(relative, data)
        rows.append({"order_id": order.id, "kind": kind, "attendee_id": attendee_id, "path": relative,
                     "revision": revision, "size": len(data)})
    # Two statements (no ORM unit of work): the rows this rendering replaces, then its own.
    replaced = list(session.scalars(_REPLACED, {"order_id": order.id, "revision": revision}))
    if rows:
        session.execute(_STORE, rows)  # one multi-row INSERT (SQLAlchemy's "insertmanyvalues")
    keep = {row["path"] for row in rows}
    for path in set(replaced) - keep:
        absolute(path).unlink(missing_ok=True)
    log.info("order %s: stored %d documents for revision %d", order.identifier, len(rendered), revision)


def stored_documents(order: Order, fingerprint: str | None = None) -> dict[DocumentKey, bytes]:
    """The stored PDFs of the order's current content (its fingerprint, when the caller has it),
    read from disk; missing files are left out."""
    fingerprint = fingerprint or content_fingerprint(order)
    found: dict[DocumentKey, bytes] = {}
    for key in expected_keys(order):
        try:
            found[key] = absolute(document_name(order.identifier, key[0], key[1], fingerprint)).read_bytes()
        except FileNotFoundError:
            continue
    return found
