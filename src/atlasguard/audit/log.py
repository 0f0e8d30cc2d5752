"""The audit log: records as leaves of an append-only Merkle tree, with signed checkpoints.

Appends are committed in batches, each batch in one transaction under a lock
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so leaf indexes
are dense and in commit order whatever the number of workers. :meth:`AuditLog.append` raises
:class:`AuditWriteError` when the record cannot be written: callers refuse the
request (fail closed). A record is acknowledged only once committed, and
SQLite runs with ``synchronous=FULL``, so a crash loses no acknowledged record.

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

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    "AuditLog",
    "AuditWriteError",
    "InclusionProof",
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


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(slots=True)
class _Pending:
    body: bytes
    leaf: bytes
    # Held until this record has an outcome or its thread is made the leader: a bare
    # C-level lock (acquired here, released once), cheaper than an Event.
    wake: threading.Lock = field(default_factory=_held_lock)
    state: str = "queued"  # queued -> writing -> done
    leader: bool = False
    index: int = -1
    error: BaseException | None = None


class AuditLog:
    """The audit log stored in the deployment's metadata database.

    Appends from many threads are committed together (group commit, as in
    LevelDB's write queue): the thread at the head of the queue becomes the
    leader, writes every record waiting in one transaction and only then
    acknowledges each; the next waiting thread then leads the next batch. One
    disk sync serves many requests, a lone request writes its own record with no
    hand-off to another thread, and no record is acknowledged before it is durable.
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
    ) -> None:
        self._engine = engine
        self._signer = signer
        self.log_id = log_id
        self.checkpoint_every = checkpoint_every
        self._max_batch = max_batch
        self._timeout = write_timeout
        self._mutex = threading.Lock()  # guards the queue and every _Pending's state
        self._waiting: deque[_Pending] = deque()
        self._frontier = Frontier()
        self._frontier_lock = threading.Lock()
        self._rowid_idx: bool | None = None  # SQLite: is idx the rowid? (checked once)
        self._due: set[int] = set()  # checkpoint sizes waiting to be signed
        self._signing: threading.Thread | None = None

    @property
    def signs_checkpoints(self) -> bool:
        """Whether this log has a key to sign checkpoints with."""
        return self._signer is not None

    @classmethod
    def create(cls, engine: Engine, **kwargs: object) -> AuditLog:
        """Migrate the database to the current schema and open the log on it."""
        migrate(engine)
        return cls(engine, **kwargs)  # type: ignore[arg-type]

    # -- writing -------------------------------------------------------------------

    def append(self, record: AuditRecord) -> int:
        """Write one record; return its index once it is durable.

        Raises :class:`AuditWriteError` when it cannot be written (the action it
        records must then not happen).
        """
        body = record.to_bytes()
        pending = _Pending(body=body, leaf=leaf_hash(body))
        with self._mutex:
            self._waiting.append(pending)
            lead = pending.leader = self._waiting[0] is pending
        try:
            if not lead:
                lead = self._follow(pending)
            if lead:
                self._lead()
        except BaseException:
            self._abandon(pending)
            raise
        if pending.error is not None:
            raise AuditWriteError(
                f"audit record could not be written: {pending.error.__class__.__name__}"
            ) from pending.error
        return pending.index

    def _follow(self, pending: _Pending) -> bool:
        """Wait for a leader to write ``pending``; True when this thread must lead instead.

        The timeout applies only while the record waits in the queue: once a
        leader has taken it into a batch, that batch's outcome is its outcome (a
        request is never refused while its record is being committed).
        """
        woken = pending.wake.acquire(timeout=self._timeout)
        with self._mutex:
            if pending.state == "done":
                return False
            if pending.leader:
                return True
            if not woken and pending.state == "queued":
                self._waiting.remove(pending)  # never written, so refused
                raise AuditWriteError(f"audit record not written within {self._timeout:g} s")
        pending.wake.acquire()  # in a batch being written: wait for its outcome
        return False

    def _abandon(self, pending: _Pending) -> None:
        """A thread leaves (interrupted) with its record still queued: keep the queue moving."""
        with self._mutex:
            if pending.state != "queued" or pending not in self._waiting:
                return  # written or being written: the batch's leader hands on the lead
            head = self._waiting[0] is pending
            self._waiting.remove(pending)
            if head and self._waiting:
                self._promote(self._waiting[0])

    @staticmethod
    def _promote(successor: _Pending) -> None:
        successor.leader = True
        successor.wake.release()

    def _lead(self) -> None:
        """Write the records at the head of the queue; hand the lead to the next waiter."""
        with self._mutex:
            batch = [self._waiting[i] for i in range(min(len(self._waiting), self._max_batch))]
            for p in batch:
                p.state = "writing"
        error: BaseException | None = None
        first = -1
        try:
            first = self._insert([(p.leaf, p.body.decode("utf-8")) for p in batch])
        except BaseException as exc:  # every waiting request must learn it failed
            error = exc
        finally:  # even if this thread is interrupted, every waiter gets an outcome
            with self._mutex:
                for i, p in enumerate(batch):
                    self._waiting.popleft()
                    p.state = "done"
                    if error is None and first >= 0:
                        p.index = first + i
                    else:
                        p.error = error or AuditWriteError("the leader was interrupted")
                    if i:  # the leader (batch[0]) is this thread
                        p.wake.release()
                if self._waiting:
                    self._promote(self._waiting[0])
        if error is not None:
            if not isinstance(error, Exception):
                raise error  # an interrupt is not an audit failure: let it through
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
                except Exception:  # a signer or database failure: the records are kept
                    logger.exception("audit checkpoint at %d failed; records are kept", size)
        finally:
            with self._mutex:
                self._signing = None

    def _insert(self, rows: list[tuple[bytes, str]]) -> int:
        """Append ``rows`` (leaf, body) in one transaction; return the first index.

        The leader speaks to the driver directly on a pooled DB-API connection:
        this is the request path, and SQLAlchemy's per-transaction machinery
        cost more than the commit itself. A failed batch discards the
        connection instead of returning it to the pool.
        """
        conn = self._engine.raw_connection()
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
            if isinstance(self._engine.pool, StaticPool):
                conn.close()  # the one shared connection (in-memory SQLite) must survive
                raise
            try:
                conn.invalidate()
            except Exception:  # the connection is being discarded anyway
                logger.debug("discarding the audit connection failed", exc_info=True)
            raise
        conn.close()  # back to the pool
        return first

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

        (Or once the write timeout passed.) The log holds no connection between
        appends and starts its checkpoint thread on demand, so it stays usable.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            with self._mutex:
                signing = self._signing
                if signing is not None and not signing.is_alive():
                    signing = None
                if (not self._waiting and signing is None) or time.monotonic() > deadline:
                    return
            if signing is not None and not self._waiting:
                signing.join(max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.005)

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
                query = select(audit_records.c.idx, audit_records.c.leaf_hash).where(
                    audit_records.c.idx >= self._frontier.size
                )
                if size is not None:
                    query = query.where(audit_records.c.idx < size)
                with self._engine.connect().execution_options(**READ_ONLY) as conn:
                    rows = conn.execute(query.order_by(audit_records.c.idx))
                    for idx, leaf in rows:
                        if idx != self._frontier.size:
                            raise AuditWriteError(
                                f"audit log has a gap: record {self._frontier.size} is missing"
                            )
                        self._frontier.push(bytes(leaf))
                if size is not None and self._frontier.size != size:
                    raise AuditWriteError(f"the audit log holds fewer than {size} records")
                size = self._frontier.size
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
    policy: Policy, *, passphrase: bytes | None = None, need_signer: bool = False
) -> tuple[AuditLog, CheckpointVerifier | None]:
    """The audit log of a deployment, and the verifier for its checkpoints.

    The database is the policy's ``database_url`` (SQLite in the state
    directory by default); checkpoints are signed with ``[keys] signing_key``
    and verified with ``[keys] public_key`` (or the signing key's public half).
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
    log = AuditLog.create(connect(url), signer=signer, log_id=policy.deployment.name)
    return log, verifier
