"""The jobs table: one row per run of either batch job."""
from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from db.models import Job, utcnow


def start_job(engine: Engine, kind: str) -> int:
    """Insert a 'running' row for a new run and return its id."""
    with engine.begin() as connection:
        result = connection.execute(insert(Job).values(kind=kind, started_at=utcnow(),
                                                        outcome="running"))
        return result.inserted_primary_key[0]


def vector_cache_left(engine: Engine, before: int) -> str | None:
    """Return the token of the vector copy the grouping run before run `before` left, if
    that run completed."""
    with engine.connect() as connection:
        row = connection.execute(
            select(Job.outcome, Job.vector_cache)
            .where(Job.kind == "grouping", Job.id < before)
            .order_by(Job.id.desc()).limit(1)).first()
    return row.vector_cache if row is not None and row.outcome == "completed" else None


def set_vector_cache_left(engine: Engine, job_id: int, token: str) -> None:
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(vector_cache=token))


def finish_job(engine: Engine, job_id: int, outcome: str, counts: dict[str, int],
               message: str | None = None) -> None:
    """Record how a run ended: 'completed' or 'failed', with its counts."""
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.id == job_id).values(
            finished_at=utcnow(), outcome=outcome, counts=counts,
            message=message))


JOB_KINDS = ("features", "grouping")


def last_jobs(connection: Connection) -> dict[str, dict | None]:
    """Return the latest run of each job kind as a dict, or None if it never ran."""
    result = {}
    for kind in JOB_KINDS:
        query = (select(Job.id, Job.started_at, Job.finished_at, Job.outcome, Job.counts,
                        Job.message).where(Job.kind == kind)
                 .order_by(Job.started_at.desc(), Job.id.desc()).limit(1))
        job = connection.execute(query).first()
        result[kind] = None if job is None else {
            "id": job.id, "started_at": job.started_at, "finished_at": job.finished_at,
            "outcome": job.outcome, "counts": job.counts, "message": job.message}
    return result


def set_job_counts(engine: Engine, job_id: int, counts: dict) -> None:
    """Store a running job's counts (its progress)."""
    with engine.begin() as connection:
        record_progress(connection, job_id, counts)


def record_progress(connection: Connection, job_id: int, counts: dict) -> None:
    """Store a running job's counts in the caller's transaction (with what they count)."""
    connection.execute(update(Job).where(Job.id == job_id)
                       .values(counts=counts))
