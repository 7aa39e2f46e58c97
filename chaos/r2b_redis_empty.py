"""R2b R2's run with Redis restarted EMPTY (its data directory wiped while it was down), as after a
failover to a lagging replica, a restart without persistence, or an eviction: whatever the broker
held is gone, so every unfinished job must come back from PostgreSQL (contract section 8)."""

from __future__ import annotations

from bench.harness import Harness
from bench.report import Row
from chaos.r2_redis_outage import outage_under_kills


def run(h: Harness, quick: bool) -> tuple[list[Row], list[str]]:
    return outage_under_kills(h, quick, case="R2b", wipe=True)
