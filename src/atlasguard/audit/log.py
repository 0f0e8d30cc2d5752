"""The audit log: records as leaves of an append-only Merkle tree, with signed checkpoints.

Appends are committed in batches, each batch in one transaction under a lock
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so leaf indexes
are dense and in commit order whatever the number of workers. :meth:`AuditLog.append` raises
:class:`AuditWriteError` when the record cannot be written: callers refuse the
request (fail closed). A record is acknowledged only once committed as the
deployment's ``audit_durability`` promises (:data:`DURABILITY`): by default on
stable storage, so neither a crash nor a power cut loses an acknowledged record.

:meth:`AuditLog.verify` recomputes every leaf from the stored record and every
checkpoint's head from the leaves: an edited, deleted, reordered or inserted
record is found, and an external checkpoint proves the log only grew.

>>> from atlasguard.audit.log import AuditLog
>>> from atlasguard.audit.records import AuditRecord
>>> from atlasguard.db import connect
>>> log = AuditLog.create(connect("sqlite://"))
>>> log.append(AuditRecord(time=0.0, principal="alice", action="infer", decision="allow"))
0
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's own locking alone
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from atlasguard.audit.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    CheckpointVerifier,
    load_signer,
    load_verifier,
)
from atlasguard.audit.merkle import Frontier, MerkleTree, leaf_hash, root_of, verify_consistency
from atlasguard.audit.records import AuditRecord
from atlasguard.db.engine import READ_ONLY, connect, database_url
from atlasguard.db.migrate import migrate
from atlasguard.db.schema import audit_checkpoints, audit_records
from atlasguard.errors import AtlasguardError, ConfigurationError, IntegrityError
from atlasguard.policy import Policy

__all__ = [
    "DURABILITY",
    "AuditLog",
    "AuditTamperedError",
    "AuditWriteError",
    "Durability",
    "InclusionProof",
    "Ticket",
    "UsageRow",
    "VerifyReport",
    "open_audit_log",
]

logger = logging.getLogger("atlasguard.audit")

_PG_LOCK = 0x61746C61  # "atla": the advisory lock that serialises appends
# Driver-level statements for the hot path, one per DB-API parameter style.
_INSERT_COLUMNS = "INSERT INTO audit_records (idx, created_at, leaf_hash, body) "
_INSERT_QMARK = _INSERT_COLUMNS + "VALUES (?, ?, ?, ?)"
_INSERT_FORMAT = _INSERT_COLUMNS + "VALUES (%s, %s, %s, %s)"
# SQLite, a whole batch in one statement: next index, rows and (autocommit) the commit.
# A constant: {values} only ever receives "(?,?,?)" placeholders, at most
# _ROWS_PER_STATEMENT of them (3 each, plus one: under SQLite's old limit of 999).
_ROWS_PER_STATEMENT = 300
_INSERT_BATCH_SQLITE = (
    "INSERT INTO audit_records (idx, created_at, leaf_hash, body) "
    "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_records) + v.column1, "
    "?, v.column2, v.column3 FROM (VALUES {values}) AS v"
)


_MAX_MINE = 1 << 20  # leaves remembered for the signer at most (32 MiB)


class AuditTamperedError(IntegrityError):
    """The stored log is not what this log wrote: it was edited, deleted or reordered."""


class AuditWriteError(AtlasguardError):
    """A record could not be written; the action it records must not happen."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class VerifyReport:
    records: int
    checkpoints: int
    latest_checkpoint: int
    root: bytes

    @property
    def unchecked_tail(self) -> int:
        """Records appended after the latest checkpoint (covered by none yet)."""
        return self.records - self.latest_checkpoint


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    record: AuditRecord
    leaf_hash: bytes
    checkpoint: Checkpoint
    path: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class UsageRow:
    principal: str
    requests: int
    allowed: int
    denied: int
    models: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


Durability = Literal["power-loss", "process-crash"]
DURABILITY: tuple[Durability, ...] = ("power-loss", "process-crash")
"""What an acknowledged record survives (``[deployment] audit_durability``).

``power-loss`` (the default): a record is acknowledged once it is on stable
storage (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit = on``), so it
survives a crash of the gateway, of the machine and a power cut.
``process-crash``: acknowledged once written to the operating system (SQLite
``synchronous=NORMAL``, the WAL synced at its checkpoints; PostgreSQL
``synchronous_commit = off``), so it survives ``kill -9`` of the gateway but a power
cut or an operating-system crash may lose the last records acknowledged (and then
``audit verify`` reports the gap against the last signed checkpoint).
"""


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class Ticket:
    """A record submitted to the log: wait for it (``wait``) or await it (``future``).

    Created by :meth:`AuditLog.submit`. It holds the record's index once written,
    or the error that kept it from being written.
    """

    __slots__ = ("_done", "_future", "_loop", "error", "index", "state")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._done = _held_lock()  # released once, when the outcome is known
        self._loop = loop
        self._future: asyncio.Future[int] | None = loop.create_future() if loop else None
        self.state = "queued"  # queued -> writing -> done (or abandoned)
        self.index = -1
        self.error: BaseException | None = None

    @property
    def future(self) -> asyncio.Future[int]:
        """The record's index, for a coroutine on the loop given to :meth:`AuditLog.submit`."""
        if self._future is None:
            raise RuntimeError("this ticket was submitted without an event loop")
        return self._future

    def result(self) -> int:
        """The index once written; raises :class:`AuditWriteError` if it was not."""
        if self.error is not None:
            raise AuditWriteError(
                f"audit record could not be written: {self.error.__class__.__name__}"
            ) from self.error
        return self.index


class _Announcement:
    """A call announced with :meth:`AuditLog.coming` whose record is not submitted yet."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True


_ANNOUNCED: contextvars.ContextVar[_Announcement | None] = contextvars.ContextVar(
    "atlasguard_audit_announced", default=None
)


def _resolve(tickets: list[Ticket]) -> None:
    """On the event loop: settle the futures of a written batch."""
    for ticket in tickets:
        future = ticket._future
        if future is None or future.done():
            continue
        if ticket.error is not None:
            try:
                ticket.result()
            except AuditWriteError as exc:
                future.set_exception(exc)
        else:
            future.set_result(ticket.index)


class AuditLog:
    """The audit log stored in the deployment's metadata database.

    Records are written by one writer thread per log, in batches (group commit):
    while one batch commits, the next gathers, and each batch is one
    transaction — one disk sync for many requests. Calls announced with
    :meth:`coming` are waited for (at most ``commit_delay`` seconds) before a
    batch is written, so concurrent requests share one sync. A record is acknowledged
    (its :class:`Ticket` settled) only once its batch is durable as
    ``durability`` promises. Threads wait with :meth:`append`; coroutines submit
    with their event loop and await :attr:`Ticket.future`, so a request waiting
    for its record holds no thread.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        signer: CheckpointSigner | None = None,
        log_id: str = "atlasguard",
        checkpoint_every: int = 1000,
        max_batch: int = 512,
        write_timeout: float = 30.0,
        durability: Durability = "power-loss",
        commit_delay: float = 0.001,
    ) -> None:
        if durability not in DURABILITY:
            raise ConfigurationError(
                f"audit durability {durability!r}: expected one of {', '.join(DURABILITY)}"
            )
        self._engine = engine
        self._signer = signer
        self.log_id = log_id
        self.checkpoint_every = checkpoint_every
        self.durability: Durability = durability
        self._max_batch = max_batch
        self._timeout = write_timeout
        self._mutex = threading.Lock()  # guards the queue, every Ticket's state, the writer
        self._wake = threading.Condition(self._mutex)
        self._waiting: deque[Ticket] = deque()
        self._bodies: dict[int, tuple[bytes, bytes]] = {}  # id(ticket) -> (leaf, body)
        self._writer: threading.Thread | None = None
        self._stopping = False
        self._commit_delay = commit_delay
        self._announced = 0  # calls inside coming() that have not submitted yet
        self._gathering = False
        self._conn: Any = None  # the writer's own DB-API connection
        self._file_lock: int | None = None  # SQLite file: serialises writers of all processes
        self._frontier = Frontier()
        self._frontier_lock = threading.Lock()
        self._rowid_idx: bool | None = None  # SQLite: is idx the rowid? (checked once)
        self._due: set[int] = set()  # checkpoint sizes waiting to be signed
        self._mine: dict[int, bytes] = {}  # index -> leaf of records written here, unsigned
        self.tampered: str | None = None  # why the signer refused, once it has
        self._signing: threading.Thread | None = None

    @property
    def signs_checkpoints(self) -> bool:
        """Whether this log has a key to sign checkpoints with."""
        return self._signer is not None

    @classmethod
    def create(cls, engine: Engine, **kwargs: Any) -> AuditLog:
        """Migrate the database to the current schema and open the log on it."""
        migrate(engine)
        return cls(engine, **kwargs)

    # -- writing -------------------------------------------------------------------

    def append(self, record: AuditRecord) -> int:
        """Write one record; return its index once it is durable.

        Raises :class:`AuditWriteError` when it cannot be written (the action it
        records must then not happen).
        """
        return self.wait(self.submit(record))

    def submit(
        self, record: AuditRecord, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> Ticket:
        """Queue ``record`` for the writer and return its ticket at once.

        With ``loop`` (the caller's running event loop) the ticket's
        :attr:`~Ticket.future` is settled on that loop; await it with
        :meth:`confirm`. Nothing may act on the record's decision before then.
        """
        body = record.to_bytes()
        entry = (leaf_hash(body), body)
        ticket = Ticket(loop)
        mark = _ANNOUNCED.get()
        with self._mutex:
            if mark is not None and mark.open:  # announced: no longer on its way
                mark.open = False
                self._announced -= 1
            self._bodies[id(ticket)] = entry
            self._waiting.append(ticket)
            if self._writer is None:
                self._stopping = False
                self._writer = threading.Thread(
                    target=self._write_forever, name="atlasguard-audit-writer", daemon=True
                )
                self._writer.start()
            elif len(self._waiting) == 1 or self._gathering:
                self._wake.notify()
        return ticket

    def wait(self, ticket: Ticket) -> int:
        """Block until ``ticket``'s record is written; its index, or :class:`AuditWriteError`.

        The timeout applies only while the record waits in the queue: once the
        writer has taken it into a batch, that batch's outcome is its outcome (a
        request is never refused while its record is being committed).
        """
        try:
            written = ticket._done.acquire(timeout=self._timeout)
        except BaseException:  # interrupted: withdraw the record if it is still queued
            self._give_up(ticket)
            raise
        if not written:
            if self._give_up(ticket):
                raise AuditWriteError(f"audit record not written within {self._timeout:g} s")
            ticket._done.acquire()
        return ticket.result()

    async def confirm(self, ticket: Ticket) -> int:
        """Await ``ticket`` (submitted with this loop); its index, or :class:`AuditWriteError`.

        As :meth:`wait`: refused if still queued after the write timeout.
        """
        future = ticket.future
        if not future.done():
            # One timer, not wait_for's task: this runs for every request.
            timer = future.get_loop().call_later(self._timeout, self._expire, ticket)
            try:
                return await future
            finally:
                timer.cancel()
        return future.result()

    def _expire(self, ticket: Ticket) -> None:
        """On the loop, after the write timeout: refuse a record still queued."""
        future = ticket._future
        if future is not None and not future.done() and self._give_up(ticket):
            future.set_exception(
                AuditWriteError(f"audit record not written within {self._timeout:g} s")
            )

    def _give_up(self, ticket: Ticket) -> bool:
        """Withdraw a ticket still queued (never to be written); False if it is being written."""
        with self._mutex:
            if ticket.state != "queued":
                return False
            ticket.state = "abandoned"
            self._waiting.remove(ticket)
            self._bodies.pop(id(ticket), None)
            return True

    def _write_forever(self) -> None:
        """The writer thread: take what is queued, write it as one batch, settle it; repeat."""
        while True:
            with self._mutex:
                while not self._waiting and not self._stopping:
                    self._wake.wait()
                if not self._waiting:  # stopping, and nothing left to write
                    self._writer = None
                    self._close_connection()
                    return
                self._gather()
                batch = [
                    self._waiting.popleft() for _ in range(min(len(self._waiting), self._max_batch))
                ]
                rows = []
                for ticket in batch:
                    ticket.state = "writing"
                    rows.append(self._bodies.pop(id(ticket)))
            self._write_batch(batch, rows)

    def _gather(self) -> None:
        """Hold the batch open while calls in progress are about to add their records.

        Called with the mutex held. A sync costs the same for one record as for
        many, so while calls announced with :meth:`coming` have not submitted
        yet, the writer waits for them — at most ``commit_delay`` seconds —
        instead of syncing once per record (PostgreSQL's ``commit_delay``, but
        only when records really are on their way). A lone call never waits.
        """
        if not self._announced or self._commit_delay <= 0:
            return
        deadline = time.monotonic() + self._commit_delay
        self._gathering = True
        try:
            while (
                self._announced
                and len(self._waiting) < self._max_batch
                and not self._stopping
                and (left := deadline - time.monotonic()) > 0
            ):
                self._wake.wait(left)
        finally:
            self._gathering = False

    @contextmanager
    def coming(self) -> Iterator[None]:
        """Announce that this call (thread or task) will submit a record before it ends.

        The writer then waits for the record rather than syncing without it
        (see :meth:`_gather`); the announcement ends at the call's first
        :meth:`submit`, or when the context exits without one.
        """
        mark = _Announcement()
        token = _ANNOUNCED.set(mark)
        with self._mutex:
            self._announced += 1
        try:
            yield
        finally:
            _ANNOUNCED.reset(token)
            self._withdraw(mark)

    def _withdraw(self, mark: _Announcement) -> None:
        if mark.open:
            mark.open = False
            with self._mutex:
                self._announced -= 1
                if self._gathering:
                    self._wake.notify()

    def _write_batch(self, batch: list[Ticket], rows: list[tuple[bytes, bytes]]) -> None:
        error: BaseException | None = None
        first = -1
        try:
            first = self._insert([(leaf, body.decode("utf-8")) for leaf, body in rows])
        except Exception as exc:  # every waiting request must learn it failed
            logger.error("audit batch of %d records could not be written: %s", len(batch), exc)
            error = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[Ticket]] = {}
        with self._mutex:
            if error is None and self._signer is not None and len(self._mine) < _MAX_MINE:
                for i, (leaf, _body) in enumerate(rows):  # what the signer may vouch for
                    self._mine[first + i] = leaf
            for i, ticket in enumerate(batch):
                ticket.state = "done"
                if error is None:
                    ticket.index = first + i
                else:
                    ticket.error = error
                if ticket._loop is not None:
                    by_loop.setdefault(ticket._loop, []).append(ticket)
                ticket._done.release()
        for loop, tickets in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, tickets)
            except RuntimeError:  # the loop is closed: nobody awaits these any more
                continue
        if error is not None:
            return
        last = first + len(batch)
        every = self.checkpoint_every
        if self._signer is not None and last // every > first // every:
            self._schedule_checkpoint(range((first // every + 1) * every, last + 1, every))

    def _schedule_checkpoint(self, sizes: Iterable[int]) -> None:
        """Sign the head at each of ``sizes`` on a background thread: no request waits."""
        with self._mutex:
            self._due.update(sizes)
            if self._signing is not None and self._signing.is_alive():
                return  # the running thread picks the new sizes up before it exits
            self._signing = threading.Thread(
                target=self._sign_due, name="atlasguard-audit-checkpoint", daemon=True
            )
            self._signing.start()

    def _sign_due(self) -> None:
        try:
            while True:
                with self._mutex:
                    if not self._due:
                        return
                    size = min(self._due)
                    self._due.discard(size)
                if size <= self._frontier.size:
                    continue  # signed already, at this size or past it (a manual checkpoint)
                try:
                    self.checkpoint(size=size)
                except AuditTamperedError:
                    continue  # logged as critical where it was found
                except Exception:  # a signer or database failure: the records are kept
                    logger.exception("audit checkpoint at %d failed; records are kept", size)
        finally:
            with self._mutex:
                self._signing = None

    def _insert(self, rows: list[tuple[bytes, str]]) -> int:
        """Append ``rows`` (leaf, body) in one transaction; return the first index.

        The writer speaks to the driver directly on a DB-API connection of its
        own (SQLAlchemy's per-transaction machinery cost more than the commit
        itself), set up once for the log's durability. A failed batch discards
        the connection; the next batch opens a new one.
        """
        shared = isinstance(self._engine.pool, StaticPool)
        if shared:  # the one connection of in-memory SQLite, lent per batch
            conn = self._engine.raw_connection()
        else:
            if self._conn is None:
                self._conn = self._open_connection()
            conn = self._conn
        try:
            cur = conn.cursor()
            try:
                if self._engine.dialect.name == "sqlite":
                    first = self._insert_sqlite(cur, rows)
                else:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
                    cur.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_records")
                    row = cur.fetchone()
                    first = int(row[0]) if row is not None else 0
                    now = time.time()
                    cur.executemany(
                        _INSERT_FORMAT,
                        [(first + i, now, leaf, body) for i, (leaf, body) in enumerate(rows)],
                    )
                    conn.commit()
            finally:
                cur.close()
        except BaseException:
            if shared:
                conn.close()  # back to the pool: the one shared connection must survive
            else:
                self._close_connection(invalidate=True)
            raise
        if shared:
            conn.close()
        return first

    def _open_connection(self) -> Any:
        """The writer's connection, set up for ``durability``."""
        conn = self._engine.raw_connection()
        cur = conn.cursor()
        try:
            if self._engine.dialect.name == "sqlite":
                sync = "FULL" if self.durability == "power-loss" else "NORMAL"
                cur.execute(f"PRAGMA synchronous={sync}")
                self._file_lock = _sqlite_file_lock(self._engine)
            else:
                sync = "on" if self.durability == "power-loss" else "off"
                cur.execute(f"SET synchronous_commit TO {sync}")
                conn.commit()
        finally:
            cur.close()
        return conn

    def _close_connection(self, *, invalidate: bool = False) -> None:
        conn, self._conn = self._conn, None
        if self._file_lock is not None:
            os.close(self._file_lock)
            self._file_lock = None
        if conn is None:
            return
        try:
            if invalidate:
                conn.invalidate()
            else:
                conn.close()
        except Exception:  # the connection is being discarded anyway
            logger.debug("discarding the audit connection failed", exc_info=True)

    def _insert_sqlite(self, cur: Any, rows: list[tuple[bytes, str]]) -> int:
        """The whole batch as one autocommitted statement: one call into SQLite.

        Each call into the driver gives up the GIL and must win it back, and in a
        busy gateway winning it back costs far more than the statement; so the
        next index, the rows and the commit are one ``INSERT ... SELECT`` (SQLite
        takes the write lock before it reads ``MAX(idx)``, and evaluates that
        uncorrelated subquery once). ``idx`` is the table's rowid, so the last
        inserted row id gives the batch's indexes without another call.
        """
        if self._rowid_idx is None:
            cur.execute(
                "SELECT COUNT(*), MAX(type = 'INTEGER' AND name = 'idx') "
                "FROM pragma_table_info('audit_records') WHERE pk > 0"
            )
            keys, is_idx = cur.fetchone()
            self._rowid_idx = keys == 1 and bool(is_idx)
        if self._file_lock is not None:
            # Writers of every process queue on the lock file, woken by the kernel the
            # moment it is free, instead of polling SQLite's write lock (its busy
            # handler sleeps 1, 2, 5, 10... ms between tries).
            fcntl.flock(self._file_lock, fcntl.LOCK_EX)
            try:
                return self._insert_sqlite_locked(cur, rows)
            finally:
                fcntl.flock(self._file_lock, fcntl.LOCK_UN)
        return self._insert_sqlite_locked(cur, rows)

    def _insert_sqlite_locked(self, cur: Any, rows: list[tuple[bytes, str]]) -> int:
        if not self._rowid_idx or len(rows) > _ROWS_PER_STATEMENT:
            # Not the schema this code creates, or more placeholders than an old SQLite
            # (before 3.32: 999) binds in one statement: the general path.
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_records")
            first = int(cur.fetchone()[0])
            now = time.time()
            cur.executemany(
                _INSERT_QMARK,
                [(first + i, now, leaf, body) for i, (leaf, body) in enumerate(rows)],
            )
            cur.execute("COMMIT")
            return first
        now = time.time()
        params: list[object] = []
        for i, (leaf, body) in enumerate(rows):
            params += (i, leaf, body)
        values = ",".join(["(?,?,?)"] * len(rows))  # placeholders only, never data
        cur.execute(_INSERT_BATCH_SQLITE.format(values=values), [now, *params])
        return int(cur.lastrowid) - len(rows) + 1

    def close(self) -> None:
        """Return once the records queued are written and due checkpoints signed.

        (Or once the write timeout passed.) The writer thread stops and its
        connection closes; a later :meth:`submit` starts them again, so the log
        stays usable.
        """
        deadline = time.monotonic() + self._timeout
        with self._mutex:
            writer = self._writer
            self._stopping = True
            self._wake.notify()
        if writer is not None:
            writer.join(max(0.0, deadline - time.monotonic()))
        while True:
            with self._mutex:
                signing = self._signing
                if signing is not None and not signing.is_alive():
                    signing = None
            if signing is None or time.monotonic() > deadline:
                return
            signing.join(max(0.0, deadline - time.monotonic()))

    def checkpoint(self, *, size: int | None = None) -> Checkpoint:
        """Sign the head (or the head at ``size``) and store it; returns the checkpoint.

        Appends sign every ``checkpoint_every`` records on a background thread,
        at exactly the multiples of it.

        Only the leaves added since this process's last checkpoint are read: the
        head is kept as a Merkle frontier (O(log n) state). They are read without
        the append lock — batches commit whole and in index order, so any snapshot
        holds a dense prefix of the log (checked) — and only the checkpoint row is
        written under it, so appends never wait for the reading or the signing.
        """
        if self._signer is None:
            raise AuditWriteError("no signing key configured for audit checkpoints")
        try:
            with self._frontier_lock:
                if size is not None and size < self._frontier.size:
                    existing_cp = self._stored_checkpoint(size)
                    if existing_cp is None:  # passed already by a manual checkpoint
                        raise AuditWriteError(f"the head at {size} can no longer be signed")
                    return existing_cp
                if self._frontier.size == 0:
                    self._resume_frontier(size)
                work = Frontier.from_bytes(self._frontier.size, self._frontier.to_bytes())
                self._read_leaves(work, size)
                if size is not None and work.size != size:
                    raise AuditWriteError(f"the audit log holds fewer than {size} records")
                size = work.size
                self._frontier = work
                self._forget_mine(size)
                cp = self._signer.sign(self.log_id, size, self._frontier.root(), time.time())
                try:
                    with self._engine.begin() as conn:
                        conn.execute(
                            audit_checkpoints.insert().values(
                                size=cp.size,
                                root=cp.root,
                                created_at=cp.created_at,
                                key_id=cp.key_id,
                                signature=cp.signature,
                                note=cp.note.decode(),
                                frontier=self._frontier.to_bytes(),
                            )
                        )
                except DBIntegrityError:  # another worker signed this size first
                    stored = self._stored_checkpoint(size)
                    if stored is None:
                        raise
                    return stored
                return cp
        except SQLAlchemyError as exc:
            raise AuditWriteError(f"audit checkpoint could not be written: {exc}") from exc

    def _read_leaves(self, work: Frontier, size: int | None) -> None:
        """Push the stored leaves from ``work.size`` (to ``size``) onto ``work``, checked.

        Each stored body must still hash to its stored leaf, and each record this
        log wrote itself must still be what it wrote: the signer signs what the
        log appended, never what the database says now. Anything else raises
        :class:`AuditTamperedError` (logged as critical) and nothing is signed.
        """
        query = select(audit_records.c.idx, audit_records.c.leaf_hash, audit_records.c.body).where(
            audit_records.c.idx >= work.size
        )
        if size is not None:
            query = query.where(audit_records.c.idx < size)
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(query.order_by(audit_records.c.idx))
            for idx, leaf, body in rows:
                if idx != work.size:
                    raise self._tampered(f"record {work.size} is missing from the stored log")
                stored = bytes(leaf)
                if leaf_hash(body.encode("utf-8")) != stored:
                    raise self._tampered(f"record {idx} no longer hashes to its stored leaf")
                own = self._mine.get(idx)
                if own is not None and own != stored:
                    raise self._tampered(f"record {idx} is not the record this log wrote")
                work.push(stored)

    def _tampered(self, what: str) -> AuditTamperedError:
        message = f"audit log {self.log_id}: {what}; refusing to sign it"
        logger.critical(message)
        self.tampered = message
        return AuditTamperedError(message)

    def _forget_mine(self, signed: int) -> None:
        with self._mutex:
            for idx in [i for i in self._mine if i < signed]:
                del self._mine[idx]

    def _resume_frontier(self, limit: int | None) -> None:
        """Start from the latest stored frontier (at most ``limit`` leaves), if it checks out.

        The frontier must hash to its checkpoint's root and the checkpoint must carry
        a valid signature of this log's key; otherwise (or with none stored) the
        frontier is rebuilt from every leaf, as before frontiers were stored.
        """
        assert self._signer is not None
        query = (
            select(audit_checkpoints)
            .where(audit_checkpoints.c.frontier.is_not(None))
            .order_by(audit_checkpoints.c.size.desc())
            .limit(1)
        )
        if limit is not None:
            query = query.where(audit_checkpoints.c.size <= limit)
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(query).first()
        if row is None:
            return
        try:
            stored = _checkpoint_from_row(self.log_id, row._mapping)
            self._signer.verifier().verify(stored)
            frontier = Frontier.from_bytes(int(row.size), bytes(row.frontier))
            if frontier.root() != stored.root:
                raise IntegrityError(f"the frontier stored at {row.size} does not hash to its root")
        except IntegrityError as exc:
            logger.warning(
                "audit: not resuming from checkpoint %s (%s); reading every leaf", row.size, exc
            )
            return
        self._frontier = frontier

    def _stored_checkpoint(self, size: int) -> Checkpoint | None:
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(
                select(audit_checkpoints).where(audit_checkpoints.c.size == size)
            ).first()
        return None if row is None else _checkpoint_from_row(self.log_id, row._mapping)

    # -- reading -------------------------------------------------------------------

    def size(self) -> int:
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            return int(conn.execute(select(func.count()).select_from(audit_records)).scalar_one())

    def checkpoints(self) -> list[Checkpoint]:
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.size))
            return [_checkpoint_from_row(self.log_id, r._mapping) for r in rows]

    def records(
        self, *, principal: str | None = None, since: float | None = None
    ) -> Iterator[tuple[int, AuditRecord]]:
        """Stored records in order, optionally of one principal and after a time."""
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execution_options(yield_per=1000).execute(
                select(audit_records.c.idx, audit_records.c.body).order_by(audit_records.c.idx)
            )
            try:
                for idx, body in rows:
                    record = AuditRecord.from_bytes(body)
                    if principal is not None and record.principal != principal:
                        continue
                    if since is not None and record.time < since:
                        continue
                    yield int(idx), record
            finally:
                rows.close()

    def recent(self, limit: int, *, before: int | None = None) -> list[tuple[int, AuditRecord]]:
        """The newest ``limit`` records (with an index below ``before``), newest first.

        Reads at most ``limit`` rows whatever the log's size (the index is the key).
        """
        query = select(audit_records.c.idx, audit_records.c.body)
        if before is not None:
            query = query.where(audit_records.c.idx < before)
        query = query.order_by(audit_records.c.idx.desc()).limit(max(0, limit))
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            return [(int(idx), AuditRecord.from_bytes(body)) for idx, body in conn.execute(query)]

    def newest_first(
        self, *, before: int | None = None, chunk: int = 1000
    ) -> Iterator[tuple[int, AuditRecord]]:
        """Every record (with an index below ``before``), newest first, read ``chunk`` at a
        time: stop iterating and no more is read."""
        while True:
            rows = self.recent(chunk, before=before)
            if not rows:
                return
            yield from rows
            before = rows[-1][0]

    def latest(
        self, action: str, *, since: float = 0.0, decision: str | None = None
    ) -> tuple[int, AuditRecord] | None:
        """The newest record of ``action`` (with ``decision``) written at or after ``since``.

        The database finds candidates by the canonical text of the action field (a
        quote inside any value is escaped, so only the field itself matches); each is
        parsed and checked before it is returned.
        """
        needle = '"action":' + json.dumps(action, ensure_ascii=False)
        query = (
            select(audit_records.c.idx, audit_records.c.body)
            .where(audit_records.c.created_at >= since)
            .where(audit_records.c.body.contains(needle, autoescape=True))
            .order_by(audit_records.c.idx.desc())
            .limit(50)
        )
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            for idx, body in conn.execute(query):
                record = AuditRecord.from_bytes(body)
                if record.time < since:  # the record's own time, not only when it was stored
                    continue
                if record.action == action and decision in (None, record.decision):
                    return int(idx), record
        return None

    def report(self, *, principal: str | None = None, since: float | None = None) -> list[UsageRow]:
        """Per-principal usage: requests, allowed, denied, by model and by reason."""
        counts: dict[str, Counter[str]] = {}
        models: dict[str, Counter[str]] = {}
        reasons: dict[str, Counter[str]] = {}
        for _, r in self.records(principal=principal, since=since):
            counts.setdefault(r.principal, Counter())[r.decision] += 1
            if r.model:
                models.setdefault(r.principal, Counter())[r.model] += 1
            if r.decision != "allow" and r.reason:
                reasons.setdefault(r.principal, Counter())[r.reason] += 1
        return [
            UsageRow(
                principal=p,
                requests=sum(c.values()),
                allowed=c["allow"],
                denied=c["deny"],
                models=dict(models.get(p, {})),
                reasons=dict(reasons.get(p, {})),
            )
            for p, c in sorted(counts.items())
        ]

    # -- verification --------------------------------------------------------------

    def _leaves(self) -> list[bytes]:
        """Every leaf, recomputed from the stored record and checked against the stored hash."""
        leaves: list[bytes] = []
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execution_options(yield_per=5000).execute(
                select(
                    audit_records.c.idx, audit_records.c.leaf_hash, audit_records.c.body
                ).order_by(audit_records.c.idx)
            )
            try:
                for idx, stored, body in rows:
                    if idx != len(leaves):
                        raise IntegrityError(
                            f"audit record {len(leaves)} is missing (next stored index is {idx})"
                        )
                    computed = leaf_hash(body.encode("utf-8"))
                    if bytes(stored) != computed:
                        raise IntegrityError(f"audit record {idx} was changed after it was written")
                    leaves.append(computed)
            finally:
                rows.close()
        return leaves

    def verify(
        self, verifier: CheckpointVerifier, *, trusted: Checkpoint | None = None
    ) -> VerifyReport:
        """Prove the stored log consistent with its signed checkpoints (and ``trusted``).

        Raises :class:`IntegrityError` naming the first problem found.
        """
        leaves = self._leaves()
        stored = self.checkpoints()
        if trusted is not None:
            verifier.verify(trusted)
        if not stored and trusted is None:
            raise IntegrityError("the audit log has no checkpoint: nothing to verify against")
        for cp in [*stored, *([trusted] if trusted else [])]:
            verifier.verify(cp)
            if cp.size > len(leaves):
                raise IntegrityError(
                    f"checkpoint covers {cp.size} records but the log holds {len(leaves)}: "
                    "records were deleted"
                )
            if root_of(leaves[: cp.size]) != cp.root:
                raise IntegrityError(
                    f"the first {cp.size} records no longer match their signed checkpoint: "
                    "a record was edited, deleted, inserted or reordered"
                )
        latest = max((c.size for c in stored), default=0)
        return VerifyReport(
            records=len(leaves),
            checkpoints=len(stored),
            latest_checkpoint=latest,
            root=root_of(leaves),
        )

    def prove(self, index: int) -> InclusionProof:
        """An inclusion proof of record ``index`` in the latest checkpoint that covers it."""
        covering = [c for c in self.checkpoints() if c.size > index]
        if index < 0 or not covering:
            raise IntegrityError(f"no checkpoint covers audit record {index} yet")
        cp = covering[-1]
        with self._engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(
                select(audit_records.c.leaf_hash)
                .where(audit_records.c.idx < cp.size)
                .order_by(audit_records.c.idx)
            )
            tree = MerkleTree([bytes(r[0]) for r in rows])
            body = conn.execute(
                select(audit_records.c.body).where(audit_records.c.idx == index)
            ).scalar_one()
        if tree.root() != cp.root:
            raise IntegrityError(f"the log no longer matches its checkpoint at size {cp.size}")
        return InclusionProof(
            index=index,
            record=AuditRecord.from_bytes(body),
            leaf_hash=leaf_hash(body.encode("utf-8")),
            checkpoint=cp,
            path=tuple(tree.inclusion_proof(index)),
        )

    def consistency(self, old: Checkpoint) -> list[bytes]:
        """A proof that the current log extends the checkpoint ``old``."""
        tree = MerkleTree(self._leaves())
        proof = tree.consistency_proof(old.size)
        verify_consistency(old.size, len(tree), old.root, tree.root(), proof)
        return proof


def _sqlite_file_lock(engine: Engine) -> int | None:
    """An open lock file beside a SQLite database file (``None`` in memory or off POSIX)."""
    database = engine.url.database
    if fcntl is None or not database or database == ":memory:":
        return None
    path = f"{database}.audit-lock"
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _checkpoint_from_row(log_id: str, row: object) -> Checkpoint:
    m = dict(row)  # type: ignore[call-overload]
    return Checkpoint(
        log_id=log_id,
        size=int(m["size"]),
        root=bytes(m["root"]),
        created_at=float(m["created_at"]),
        key_id=str(m["key_id"]),
        signature=bytes(m["signature"]),
    )


def open_audit_log(
    policy: Policy,
    *,
    passphrase: bytes | None = None,
    need_signer: bool = False,
    engine: Engine | None = None,
) -> tuple[AuditLog, CheckpointVerifier | None]:
    """The audit log of a deployment, and the verifier for its checkpoints.

    The database is the policy's ``database_url`` (SQLite in the state
    directory by default); checkpoints are signed with ``[keys] signing_key``
    and verified with ``[keys] public_key`` (or the signing key's public half).
    ``engine`` is the deployment's engine when the caller has one open already.
    """
    url = database_url(policy.deployment.database_url, policy.state_dir)
    signer = None
    verifier = None
    if policy.keys.signing_key:
        signer = load_signer(policy.base_dir / policy.keys.signing_key, passphrase)
        verifier = signer.verifier()
    elif need_signer:
        raise ConfigurationError(
            f"{policy.where('keys.signing_key')}: keys.signing_key is not "
            "set; audit checkpoints need a signing key"
        )
    if policy.keys.public_key:
        verifier = load_verifier(policy.base_dir / policy.keys.public_key)
    log = AuditLog.create(
        engine or connect(url),
        signer=signer,
        log_id=policy.deployment.name,
        durability=policy.deployment.audit_durability,
    )
    return log, verifier
