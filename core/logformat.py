"""LOG_FORMAT=json: one JSON object per log line, with the order, task and job it is about, for log
pipelines that index fields; the default stays the readable text line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from core.jobs import job_id_of
from core.settings import settings

NONE = "-"  # worker/tasklog.py's "no value"


def _field(value: Any) -> Any:
    return None if value in (None, "", NONE, "???") else value


class JsonFormatter(logging.Formatter):
    """time, level, logger, process, message, order, task_id, job (the outbox row its task id names)
    and, when there is one, the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        task_id = _field(getattr(record, "task_id", None))
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
            "order": _field(getattr(record, "order", None)),
            "task_id": task_id,
            "job": job_id_of(task_id) if isinstance(task_id, str) else None,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(text_format: str) -> logging.Formatter:
    """The formatter LOG_FORMAT asks for; `text_format` is the readable line's %-format."""
    return JsonFormatter() if settings.log_format == "json" else logging.Formatter(text_format)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging (applied in each of its worker processes) with every line as JSON."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "level": level.upper(), "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
