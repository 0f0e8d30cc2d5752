"""Suspensions the query monitor decides, kept in the deployment's database.

A suspension outlives the process that decided it: every worker and replica
reads the same rows (refreshed every few seconds), a restart keeps them, and
only its end or an administrator (``atlasguard monitor lift``, audited through
:class:`~atlasguard.runtime.admin.Admin`) lifts one.

>>> from atlasguard.db import connect
>>> from atlasguard.db.migrate import migrate
>>> engine = connect("sqlite://")
>>> migrate(engine)
>>> store = SuspensionStore(engine)
>>> store.suspend("mallory", "digits", since=0.0, until=100.0, why="near-copies")
>>> [(s.principal, s.model) for s in store.active(now=50.0)]
[('mallory', 'digits')]
>>> store.lift("mallory", "digits"), store.active(now=50.0)
(1, [])
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, and_, delete, insert, select, update

from atlasguard.db.schema import monitor_suspensions

__all__ = ["Suspension", "SuspensionStore"]


@dataclass(frozen=True, slots=True)
class Suspension:
    """One suspended (principal, model), why, and until when (seconds since the epoch)."""

    principal: str
    model: str
    since: float
    until: float
    why: str


class SuspensionStore:
    """Suspensions in the deployment's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def suspend(self, principal: str, model: str, *, since: float, until: float, why: str) -> None:
        """Record (or renew) a suspension."""
        row = {"since": since, "until": until, "why": why[:500]}
        key = and_(
            monitor_suspensions.c.principal == principal, monitor_suspensions.c.model == model
        )
        with self.engine.begin() as conn:
            done = conn.execute(update(monitor_suspensions).where(key).values(**row))
            if not done.rowcount:
                conn.execute(
                    insert(monitor_suspensions).values(principal=principal, model=model, **row)
                )

    def active(self, *, now: float) -> list[Suspension]:
        """Every suspension that has not ended at ``now``."""
        t = monitor_suspensions.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.principal, t.model, t.since, t.until, t.why)
                .where(t.until > now)
                .order_by(t.since)
            ).all()
        return [Suspension(*row) for row in rows]

    def lift(self, principal: str, model: str | None = None) -> int:
        """End ``principal``'s suspensions (on ``model`` only, if given); how many ended."""
        t = monitor_suspensions.c
        where = t.principal == principal
        if model is not None:
            where = and_(where, t.model == model)
        with self.engine.begin() as conn:
            return int(conn.execute(delete(monitor_suspensions).where(where)).rowcount)
