"""`make chaos`: R1-R7 against servers this run starts; prints the table, rewrites docs/RELIABILITY.md."""

from __future__ import annotations

import sys

from bench.report import Scenario, run_scenarios
from bench.servers import ROOT
from chaos import (
    r1_worker_kill,
    r2_redis_outage,
    r2b_redis_empty,
    r3_smtp_outage,
    r4_races,
    r5_scale_out,
    r6_postgres_crash,
    r7_worker_cut_off,
    r8_webhook_outage,
)

SCENARIOS: dict[str, Scenario] = {
    "r1": r1_worker_kill.run,
    "r2": r2_redis_outage.run,
    "r2b": r2b_redis_empty.run,
    "r3": r3_smtp_outage.run,
    "r4": r4_races.run,
    "r5": r5_scale_out.run,
    "r6": r6_postgres_crash.run,
    "r7": r7_worker_cut_off.run,
    "r8": r8_webhook_outage.run,
}

INTRO = """How ticketq behaves when things break, measured by `chaos/` (scripts, not unit tests). Every
server a script stops or kills is one it started itself: its own Redis, a fresh PostgreSQL database
on the local server (R6 crashes a PostgreSQL cluster of its own), an aiosmtpd sink counting by
Message-ID and by `X-Order-Identifier`, Celery workers and beats, the API. Nothing else on the
machine is touched."""


def main(argv: list[str] | None = None) -> int:
    # R3 mostly waits out its SMTP outage and the retries' backoff: it runs alongside R1, R2 and R4.
    return run_scenarios("chaos", SCENARIOS, argv, ROOT / "docs" / "RELIABILITY.md", "ticketq reliability", INTRO,
                         alongside=frozenset({"r3"}), analysis=ROOT / "chaos" / "ANALYSIS.md")


if __name__ == "__main__":
    sys.exit(main())
