"""Every worker log line names its task id and, for a task about an order, the order identifier.

Tasks log through plain `logging.getLogger(...)` loggers, which Celery's task formatter does
not reach; so the task's context lives in a ContextVar set on `task_prerun`, and a filter on
the worker's handlers copies it onto every record. A prefork child runs one task at a time in
its main thread and a thread-pool worker gives each thread its own context, so lines never
borrow another task's identifiers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from core.logformat import formatter

NONE = "-"
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s [task=%(task_id)s order=%(order)s] %(message)s"
# Order identifiers are 32 hex characters (models.orders.new_identifier).
IDENTIFIER = re.compile(r"^[0-9a-f]{32}$")
MENTION = re.compile(r"\border ([0-9a-f]{32})\b")
MENTION_ANY = re.compile(r"\b[0-9a-f]{32}\b")
ORDER_KWARGS = ("identifier", "order", "order_identifier")

_context: ContextVar[tuple[str, str]] = ContextVar("ticketq_task_context", default=(NONE, NONE))


def order_of(task_name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> str:
    """The order identifier a task is about: its first argument or a named one, when it is one."""
    for name in ORDER_KWARGS:
        value = (kwargs or {}).get(name)
        if isinstance(value, str) and value:
            return value
    first = args[0] if args else None
    if isinstance(first, str) and (IDENTIFIER.match(first) or task_name.startswith("orders.")):
        return first
    return NONE


def bind_order(identifier: str) -> None:
    """Name the order on the rest of this task's lines, for tasks that learn it late
    (e.g. a mail task that takes a delivery id and loads the delivery's order)."""
    task_id, _ = _context.get()
    _context.set((task_id, identifier))


class TaskContextFilter(logging.Filter):
    """Adds `task_id` and `order` to every record (keeping values a caller passed in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_id, order = _context.get()
        if isinstance(record.args, Mapping) and task_id == NONE:
            # Celery's own lines in the main process ("Task orders.confirm[id] received") pass
            # the request as a dict: take the task id and an identifier among its arguments.
            task_id = str(record.args.get("id") or NONE)
            found = MENTION_ANY.search(str(record.args.get("args") or ""))
            order = found.group(0) if found else NONE
        if getattr(record, "task_id", None) in (None, "", "???"):
            record.task_id = task_id
        if not getattr(record, "order", None):
            named = order if order != NONE else _named_order(record)
            record.order = named
            if order == NONE and named != NONE and task_id != NONE and _context.get()[0] == task_id:
                _context.set((task_id, named))  # the rest of this task's lines carry it too
        return True


def _named_order(record: logging.LogRecord) -> str:
    """A task that took no identifier (mail.send takes a delivery id) still names the order in
    its message ("order <identifier>: ..."); lift it into the field so every line carries it."""
    if "order" not in str(record.msg):
        return NONE
    found = MENTION.search(record.getMessage())
    return found.group(1) if found else NONE


FILTER = TaskContextFilter()


def install(logger: logging.Logger, fmt: str = LOG_FORMAT) -> None:
    """Put the filter and the format on every handler of `logger`."""
    for handler in logger.handlers:
        if FILTER not in handler.filters:
            handler.addFilter(FILTER)
        handler.setFormatter(formatter(fmt))  # LOG_FORMAT=json: the same fields, one JSON object a line


@task_prerun.connect
def _enter_task(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None,
                **_: Any) -> None:
    name = str(getattr(task, "name", "") or "")
    _context.set((task_id or NONE, order_of(name, args, kwargs)))


@task_postrun.connect
def _leave_task(**_: Any) -> None:
    _context.set((NONE, NONE))


@after_setup_logger.connect
def _on_setup_logger(logger: logging.Logger, **_: Any) -> None:
    install(logger)


@after_setup_task_logger.connect
def _on_setup_task_logger(logger: logging.Logger, **_: Any) -> None:
    install(logger)
