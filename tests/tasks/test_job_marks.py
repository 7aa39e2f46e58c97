"""A job's lease and done marks: the same outcomes and the same row whether they run on a plain
connection (as the worker's JobTask does) or in a session (as when a job is adopted)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.jobs import CONFIRM_TASK
from models.db import get_engine
from models.leases import Claim, claim_job, finish_job, give_back_job
from models.outbox import OutboxJob, enqueue_job

HOLDER, OTHER = "host:1", "host:2"


def _row(db: sessionmaker[Session], job_id: int) -> dict[str, Any]:
    with db() as session:
        job = session.get(OutboxJob, job_id)
        assert job is not None
        return {"attempts": job.attempts, "claimed_by": job.claimed_by, "done": job.done_at is not None,
                "leased": job.lease_until is not None, "published": job.published_at is not None,
                "started": job.started_at is not None, "last_error": job.last_error}


def _walk(db: sessionmaker[Session], on_connection: bool) -> list[tuple[Claim, str | None, int, dict[str, Any]]]:
    """Claim, a second holder refused, a steal from a dead holder, done, a claim after done."""
    with db() as session, session.begin():
        job_id = enqueue_job(session, CONFIRM_TASK, ["x"]).id
        session.execute(sa.update(OutboxJob).where(OutboxJob.id == job_id).values(last_error="before"))
    seen = []
    steps: list[tuple[str, str | None]] = [(HOLDER, None), (OTHER, None), (OTHER, HOLDER), ("finish", None),
                                           (HOLDER, None)]
    for holder, steal in steps:
        if on_connection:
            with get_engine().begin() as conn:
                result = (claim_job(conn, job_id, holder, steal_from=steal) if holder != "finish"
                          else finish_job(conn, job_id))
        else:
            with db() as session, session.begin():
                result = (claim_job(session, job_id, holder, steal_from=steal) if holder != "finish"
                          else finish_job(session, job_id))
        seen.append((*(result or (None, None, 0)), _row(db, job_id)))  # type: ignore[arg-type]
    return seen


@pytest.mark.parametrize("on_connection", [True, False], ids=["connection", "session"])
def test_the_marks_take_release_and_refuse_leases(db: sessionmaker[Session], on_connection: bool) -> None:
    claimed, refused, stolen, finished, after = _walk(db, on_connection)
    assert claimed[:3] == (Claim.CLAIMED, HOLDER, 1) and claimed[3]["leased"] and claimed[3]["published"]
    assert refused[:3] == (Claim.HELD, HOLDER, 1)
    assert stolen[:3] == (Claim.CLAIMED, OTHER, 2) and stolen[3]["claimed_by"] == OTHER
    assert finished[3] == {**stolen[3], "done": True, "leased": False, "last_error": None}
    assert after[:3] == (Claim.DONE, OTHER, 2)


def test_both_forms_leave_the_same_rows(db: sessionmaker[Session]) -> None:
    assert _walk(db, on_connection=True) == _walk(db, on_connection=False)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_marks_made_where_the_task_makes_them_are_committed(request: pytest.FixtureRequest, database: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """JobTask's connection (autocommit on PostgreSQL: one statement, one transaction) commits each
    mark, a failed run's too, and goes back to the pool as it came."""
    from tasks import job_base as jobs

    factory: sessionmaker[Session] = request.getfixturevalue("db" if database == "postgresql" else "sqlite_db")
    engine = factory.kw["bind"]
    monkeypatch.setattr(jobs, "get_engine", lambda: engine)
    with factory() as session, session.begin():
        job_id = enqueue_job(session, CONFIRM_TASK, ["x"]).id
    with jobs._job_transaction() as conn:
        assert claim_job(conn, job_id, HOLDER)[0] is Claim.CLAIMED
    assert _row(factory, job_id)["claimed_by"] == HOLDER
    with jobs._job_transaction() as conn:
        give_back_job(conn, job_id, HOLDER, "boom", 30.0)
    after = _row(factory, job_id)
    assert (after["claimed_by"], after["leased"], after["published"], after["last_error"]) == (None, False, False,
                                                                                               "boom")
    with engine.connect() as conn:  # the pooled connection is transactional again
        assert not getattr(conn.connection.dbapi_connection, "autocommit", False)
