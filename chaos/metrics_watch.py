"""What the API's /metrics said during a chaos run (issue 32): scraped once a second, as Prometheus
would (but 15 times as often), and parsed with prometheus_client's own parser.

The figure an operator alerts on is `ticketq_job_oldest_unstarted_age_seconds` (README "Metrics",
`TicketqJobWaiting`): during an outage that strands jobs it must rise, and after recovery fall back
to 0. A scrape that fails, or answers without the census (`ticketq_database_up` 0: PostgreSQL
unreadable), is counted, never skipped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from bench.report import Row

AGE = "ticketq_job_oldest_unstarted_age_seconds"
UNFINISHED = "ticketq_jobs_unfinished"
DATABASE_UP = "ticketq_database_up"


@dataclass(frozen=True)
class Sample:
    at: float
    status: int  # 0: no answer
    database_up: float | None = None
    age: float | None = None  # the oldest over every queue; None: not in the answer
    unfinished: float | None = None  # every task and state together


def parse(at: float, status: int, text: str) -> Sample:
    from prometheus_client.parser import text_string_to_metric_families

    ages: list[float] = []
    unfinished: float | None = None
    up: float | None = None
    for family in text_string_to_metric_families(text):
        if family.name == AGE:
            ages += [s.value for s in family.samples]
        elif family.name == UNFINISHED:
            unfinished = sum(s.value for s in family.samples)
        elif family.name == DATABASE_UP and family.samples:
            up = family.samples[0].value
    return Sample(at, status, up, max(ages) if ages else None, unfinished)


@dataclass
class MetricsWatch:
    """GET `url`/metrics every `every` s in a thread of its own until `halt`."""

    url: str
    every: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> MetricsWatch:
        self.thread = threading.Thread(target=self._run, name="metrics-watch", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.halt.set()
        if self.thread is not None:
            self.thread.join(10)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=5) as client:
            began = time.time()
            while not self.halt.is_set():
                at = time.time()
                try:
                    r = client.get("/metrics")
                    sample = parse(at, r.status_code, r.text) if r.status_code == 200 else Sample(at, r.status_code)
                except (httpx.HTTPError, ValueError):  # ValueError: an answer the parser refuses
                    sample = Sample(at, 0)
                self.samples.append(sample)
                began += self.every
                self.halt.wait(max(0.0, began - time.time()))

    def settled(self, deadline: float) -> None:
        """Wait until two samples in a row read an age of 0, or `deadline`."""
        while time.time() < deadline:
            last = [s.age for s in self.samples[-2:]]
            if len(last) == 2 and last == [0.0, 0.0]:
                return
            time.sleep(0.5)

    def judge(self, case: str, what: str, down: float, up: float, within: float) -> tuple[list[Row], str]:
        """Rows: the age's peak from `down` (the outage began) to `within` s after `up` (it ended),
        which must be at least half the outage (it rose), and how long after `up` it read non-zero for
        the last time, with its value at the end (goal <= `within` s and 0)."""
        outage = up - down
        window = [s for s in self.samples if down <= s.at <= up + within]
        failed = sum(1 for s in window if s.status != 200)
        blind = sum(1 for s in window if s.status == 200 and s.age is None)
        ages = [s for s in window if s.age is not None]
        peak = max((s.age for s in ages if s.age is not None), default=float("nan"))
        peak_at = next((s.at - down for s in ages if s.age == peak), float("nan"))
        read = [s for s in self.samples if s.age is not None]
        end = read[-1].age if read else None
        after = [s for s in read if s.at >= up]
        nonzero = [s for s in after if s.age]
        settle = (nonzero[-1].at - up) if nonzero else 0.0
        settled = bool(after) and end == 0.0
        during = [s for s in self.samples if down <= s.at <= up]
        in_outage = [s.age for s in during if s.age is not None]
        rows = [
            Row(case, f"oldest unstarted job's age on the API's /metrics (max over queues, scraped every "
                f"{self.every:g} s): peak from the {outage:.0f} s {what} outage to {within:.0f} s after it "
                f"({len(window)} scrapes, {failed} failed, {blind} without the census)",
                f"{peak:.1f} s at +{peak_at:.0f} s", f">= {outage / 2:.0f} s (it rises)", peak >= outage / 2),
            Row(case, f"that age after {what} came back: its last non-zero reading; at the end of the run",
                (f"+{settle:.1f} s; " if settled else "never 0 again; ") + (f"{end:.1f} s" if end is not None
                                                                            else "no census"),
                f"<= {within:.0f} s; 0", settled and settle <= within),
        ]
        unfinished = [s.unfinished for s in self.samples if s.unfinished is not None]
        timeline = ", ".join(f"{t:+d}: {_age_near(self.samples, down + t)}"
                             for t in range(-5, int(outage + within) + 1, 5))
        note = (f"{case} metrics: the API's /metrics ({self.url}) scraped every {self.every:g} s from the start of "
                f"the load to the end of the run, {len(self.samples)} scrapes: "
                f"{sum(1 for s in self.samples if s.status != 200)} failed, "
                f"{sum(1 for s in self.samples if s.status == 200 and s.database_up == 0)} with "
                f"{DATABASE_UP} 0 (no census); of the {len(during)} during the outage, {len(in_outage)} read an age"
                + (f" (max {max(in_outage):.1f} s)" if in_outage else "") + ". The oldest unstarted job's age, s from "
                f"the outage's start (it ended at +{outage:.0f} s; '-': no census): {timeline}. Unfinished "
                f"jobs ({UNFINISHED}, summed): max {max(unfinished, default=float('nan')):.0f}, "
                f"{unfinished[-1] if unfinished else float('nan'):.0f} at the end.")
        return rows, note


def _age_near(samples: list[Sample], at: float) -> str:
    """The age of the sample taken nearest `at` (within a second), '-' when it had none."""
    near = min(samples, key=lambda s: abs(s.at - at), default=None)
    if near is None or abs(near.at - at) > 1.0:
        return "?"
    return "-" if near.age is None else f"{near.age:.0f}"
