"""`make bench`: P1-P6 on local services in one run; prints the table and rewrites docs/PERFORMANCE.md."""

from __future__ import annotations

import sys

from bench import p1_throughput, p2_resend, p3_expiry, p4_latency, p5_memory, p6_rush
from bench.report import Scenario, run_scenarios
from bench.servers import ROOT

SCENARIOS: dict[str, Scenario] = {
    "p1": p1_throughput.run,
    "p2": p2_resend.run,
    "p3": p3_expiry.run,
    "p4": p4_latency.run,
    "p5": p5_memory.run,
    "p6": p6_rush.run,
}

INTRO = """What ticketq sustains on one machine, measured by `bench/` (scripts, not timed unit tests):
every server a script uses is one it started itself (Redis, a fresh PostgreSQL database on the local
server, an aiosmtpd sink, Celery workers and beat, the API) and stopped at the end."""


def main(argv: list[str] | None = None) -> int:
    return run_scenarios("bench", SCENARIOS, argv, ROOT / "docs" / "PERFORMANCE.md", "ticketq performance", INTRO,
                         analysis=ROOT / "bench" / "ANALYSIS.md")


if __name__ == "__main__":
    sys.exit(main())
