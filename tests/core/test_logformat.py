"""LOG_FORMAT=json: the fields of one log line, as a JSON object (the worker test shows it live)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from core import logformat


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ticketq.pipeline", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_task_line_names_its_order_task_and_job() -> None:
    line = json.loads(logformat.JsonFormatter().format(
        record("order %s: %d sent", "ab" * 16, 2, order="ab" * 16, task_id="outbox-42")))
    assert line["message"] == f"order {'ab' * 16}: 2 sent"
    assert (line["order"], line["task_id"], line["job"], line["level"]) == ("ab" * 16, "outbox-42", 42, "WARNING")
    assert line["logger"] == "ticketq.pipeline" and line["time"].endswith("+00:00")


def test_a_line_outside_any_task_has_null_fields_and_its_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed", order="-", task_id="-")
        rec.exc_info = sys.exc_info()
    line = json.loads(logformat.JsonFormatter().format(rec))
    assert (line["order"], line["task_id"], line["job"]) == (None, None, None)
    assert "ValueError: boom" in line["exception"]


@pytest.mark.parametrize(("setting", "kind"), [("json", logformat.JsonFormatter), ("text", logging.Formatter)])
def test_log_format_picks_the_formatter(monkeypatch: pytest.MonkeyPatch, setting: str, kind: type) -> None:
    monkeypatch.setattr(logformat.settings, "log_format", setting)
    chosen = logformat.formatter("%(message)s")
    assert type(chosen) is kind
    assert logformat.uvicorn_log_config("info")["root"]["level"] == "INFO"
