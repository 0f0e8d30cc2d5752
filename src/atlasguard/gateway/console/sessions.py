"""The console's sign-in sessions, kept in the deployment's database.

A person signs in once with an admin key; the browser then holds only a
random session secret in an HttpOnly, SameSite=Strict cookie, never the key.
The database keeps the secret's SHA-256, who signed in, with what (the key's
id), a CSRF token and an expiry, so every worker and replica knows the
session, a restart keeps it, and signing out ends it everywhere.

>>> from atlasguard.db import connect
>>> from atlasguard.db.migrate import migrate
>>> engine = connect("sqlite://")
>>> migrate(engine)
>>> store = SessionStore(engine)
>>> opened = store.open("ops", "key:0123456789abcdef", seconds=60, now=0.0)
>>> store.find(opened.token, now=30.0).principal, store.find(opened.token, now=61.0)
('ops', None)
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from atlasguard.db.schema import console_sessions

__all__ = ["OpenedSession", "Session", "SessionStore"]


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person: who, with what credential, the CSRF token, until when."""

    principal: str
    credential: str  # "key:<key id>"
    csrf: str
    expires_at: float

    @property
    def key_id(self) -> str | None:
        kind, _, value = self.credential.partition(":")
        return value if kind == "key" else None


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: ``token`` goes in the cookie, and exists nowhere else."""

    token: str
    session: Session


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class SessionStore:
    """Console sessions in the deployment's database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def open(
        self, principal: str, credential: str, *, seconds: float, now: float | None = None
    ) -> OpenedSession:
        """A new session for ``principal``, valid for ``seconds``; expired ones are dropped."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        session = Session(principal, credential, secrets.token_urlsafe(32), now + seconds)
        with self.engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
            conn.execute(
                insert(console_sessions).values(
                    token_hash=_digest(token),
                    principal=principal,
                    credential=credential,
                    csrf=session.csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return OpenedSession(token, session)

    def find(self, token: str | None, *, now: float | None = None) -> Session | None:
        """The live session a cookie's token names, or ``None``."""
        if not token or len(token) > 128:
            return None
        now = time.time() if now is None else now
        with self.engine.connect() as conn:
            row = conn.execute(
                select(console_sessions).where(console_sessions.c.token_hash == _digest(token))
            ).first()
        if row is None or row.expires_at <= now:
            return None
        return Session(row.principal, row.credential, row.csrf, row.expires_at)

    def close(self, token: str | None) -> bool:
        """End the session ``token`` names (signing out); True if there was one."""
        if not token:
            return False
        with self.engine.begin() as conn:
            done = conn.execute(
                delete(console_sessions).where(console_sessions.c.token_hash == _digest(token))
            )
        return bool(done.rowcount)
