"""chaos/metrics_watch.py reads what an operator's Prometheus would: the oldest unstarted job's age
(max over queues) from the API's text format, and judges it rising in an outage and back to 0 after."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from api.gauges import families
from chaos.metrics_watch import MetricsWatch, Sample, parse


class _Fixed:
    def __init__(self, found: list) -> None:
        self.found = found

    def collect(self) -> list:
        return self.found


def _text(*, readable: bool) -> str:
    jobs, oldest, emails, orders, beat, database = families()
    if readable:
        jobs.add_metric(["orders.confirm", "due"], 3)
        jobs.add_metric(["orders.resend_confirmation", "sent"], 2)
        oldest.add_metric(["documents"], 12.5)
        oldest.add_metric(["mail"], 4.0)
    database.add_metric([], 1 if readable else 0)
    beat.add_metric([], 1)
    registry = CollectorRegistry()
    registry.register(_Fixed([jobs, oldest, beat, database] if readable else [beat, database]))
    return generate_latest(registry).decode()


def test_parse_takes_the_oldest_queue_and_sums_the_unfinished_jobs() -> None:
    assert parse(1.0, 200, _text(readable=True)) == Sample(1.0, 200, 1.0, 12.5, 5.0)


def test_parse_of_a_scrape_without_the_census_has_no_age() -> None:
    assert parse(1.0, 200, _text(readable=False)) == Sample(1.0, 200, 0.0, None, None)


def _watch(ages: list[float | None], failed: tuple[int, ...] = ()) -> MetricsWatch:
    """One sample a second from t=0; the outage from t=10 to t=20."""
    watch = MetricsWatch("http://api")
    watch.samples = [Sample(float(t), 0) if t in failed else Sample(float(t), 200, 0.0 if a is None else 1.0, a, 0.0)
                     for t, a in enumerate(ages)]
    return watch


def test_an_age_that_rises_and_falls_back_to_zero_within_the_goal_meets_both_rows() -> None:
    ages: list[float | None] = [0.0] * 10 + [float(n) for n in range(11)] + [5.0, 2.0] + [0.0] * 10
    rows, note = _watch(ages, failed=(12,)).judge("R", "Redis", 10.0, 20.0, 30.0)
    assert [r.met for r in rows] == [True, True]
    assert rows[0].value == "10.0 s at +10 s" and "1 failed, 0 without the census" in rows[0].metric
    assert rows[1].value == "+2.0 s; 0.0 s"
    assert "1 failed" in note


def test_an_outage_without_census_and_an_age_never_back_to_zero_are_reported() -> None:
    ages: list[float | None] = [0.0] * 10 + [None] * 11 + [11.0 + n for n in range(10)]
    rows, note = _watch(ages).judge("R", "PostgreSQL", 10.0, 20.0, 30.0)
    assert rows[0].met is True and "11 without the census" in rows[0].metric
    assert rows[1].met is False and rows[1].value == "never 0 again; 20.0 s"
    assert "of the 11 during the outage, 0 read an age." in note
