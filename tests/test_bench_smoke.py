"""The benchmark scripts keep working: `python -m bench --quick --only p3` end to end, in seconds.

It starts its own Redis, database (on the suite's PostgreSQL server), worker and beat, and must stop
them all; the numbers of a quick run mean nothing and are not checked against the goals.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.backends import Backends

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow(15)
def test_quick_expiry_benchmark_runs_and_prints_its_table(backends: Backends) -> None:
    server = make_url(backends.database_url).set(database="postgres").render_as_string(hide_password=False)
    env = {**os.environ, "BENCH_POSTGRES_URL": server}
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "p3", "--no-doc"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "idle sweep over 10,000 orders" in result.stdout
    assert "one sweep expiring 1,000 due orders" in result.stdout
    assert "lateness after deadline" in result.stdout
    assert "error:" not in result.stdout
