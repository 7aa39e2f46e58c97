"""PROMETHEUS_MULTIPROC_DIR for processes that share their metrics through files (prometheus_client's
multiprocess mode): Celery's prefork children, `ticketq api --workers N`.

prometheus_client picks its mode when it is first imported, from the environment; so this module
must not import it, and `prepare` must run before anything else does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare(prefix: str) -> Path:
    """Use the directory the operator set, emptied (files of an earlier run would be added to this
    one's), or a fresh private one; children inherit it through the environment."""
    given = os.environ.get(VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        os.environ[VARIABLE] = str(path)
    return path


def too_late() -> bool:
    """prometheus_client was imported before `prepare`: this process's values stay in memory."""
    return "prometheus_client" in sys.modules
