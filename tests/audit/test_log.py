from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, text

from atlasguard.audit.checkpoint import Checkpoint, CheckpointSigner
from atlasguard.audit.log import AuditLog, AuditWriteError
from atlasguard.audit.merkle import leaf_hash, root_of, verify_inclusion
from atlasguard.audit.records import AuditRecord
from atlasguard.db import connect
from atlasguard.errors import IntegrityError
from tests.dbfixtures import database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        yield eng


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))


def _rec(i: int, principal: str = "alice", decision: str = "allow") -> AuditRecord:
    return AuditRecord(
        time=1000.0 + i,
        principal=principal,
        action="infer",
        decision=decision,
        reason="" if decision == "allow" else "quota",
        model="digits",
        input_digest=f"sha256:{i:064x}",
        latency_ms=1.5,
    )


def _filled(engine: Engine, signer: CheckpointSigner, n: int = 10, every: int = 4) -> AuditLog:
    log = AuditLog.create(engine, signer=signer, checkpoint_every=every)
    for i in range(n):
        assert log.append(_rec(i, "alice" if i % 3 else "bob")) == i
    log.close()  # checkpoints are signed in the background; close waits for them
    return log


def test_append_checkpoint_verify_prove(engine: Engine, signer: CheckpointSigner) -> None:
    log = _filled(engine, signer)
    assert [c.size for c in log.checkpoints()] == [4, 8]
    log.checkpoint()
    report = log.verify(signer.verifier())
    assert (report.records, report.checkpoints, report.unchecked_tail) == (10, 3, 0)
    proof = log.prove(6)
    assert proof.record == _rec(6, "bob")
    verify_inclusion(proof.leaf_hash, 6, proof.checkpoint.size, proof.path, proof.checkpoint.root)


def _tamper(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "UPDATE audit_records SET body = replace(body, 'allow', 'deny') WHERE idx = 2",
            "record 2 was changed",
        ),
        ("DELETE FROM audit_records WHERE idx = 5", "record 5 is missing"),
        ("DELETE FROM audit_records WHERE idx >= 9", "deleted"),
    ],
)
def test_edits_and_deletions_are_found(
    engine: Engine, signer: CheckpointSigner, sql: str, message: str
) -> None:
    log = _filled(engine, signer)
    log.checkpoint()
    _tamper(engine, sql)
    with pytest.raises(IntegrityError, match=message):
        log.verify(signer.verifier())


def test_edit_that_also_rewrites_the_leaf_hash_is_found(
    engine: Engine, signer: CheckpointSigner
) -> None:
    log = _filled(engine, signer)
    forged = _rec(1, decision="deny").to_bytes()
    from atlasguard.audit.merkle import leaf_hash

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET body = :b, leaf_hash = :h WHERE idx = 1"),
            {"b": forged.decode(), "h": leaf_hash(forged)},
        )
    with pytest.raises(IntegrityError, match="no longer match their signed checkpoint"):
        log.verify(signer.verifier())


def test_reordered_records_are_found(engine: Engine, signer: CheckpointSigner) -> None:
    log = _filled(engine, signer)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET idx = 100 WHERE idx = 1"))
        conn.execute(text("UPDATE audit_records SET idx = 1 WHERE idx = 2"))
        conn.execute(text("UPDATE audit_records SET idx = 2 WHERE idx = 100"))
    with pytest.raises(IntegrityError, match="no longer match"):
        log.verify(signer.verifier())


def test_inserted_record_is_found(engine: Engine, signer: CheckpointSigner) -> None:
    log = _filled(engine, signer)
    from atlasguard.audit.merkle import leaf_hash

    body = _rec(99).to_bytes()
    with engine.begin() as conn:
        for i in range(9, 2, -1):  # shift records 3.. up by one to make room
            conn.execute(
                text("UPDATE audit_records SET idx = :n WHERE idx = :o"), {"n": i + 1, "o": i}
            )
        conn.execute(
            text(
                "INSERT INTO audit_records (idx, created_at, leaf_hash, body) VALUES (3, 0, :h, :b)"
            ),
            {"h": leaf_hash(body), "b": body.decode()},
        )
    with pytest.raises(IntegrityError, match="no longer match"):
        log.verify(signer.verifier())


def test_truncate_and_resign_is_found_by_a_trusted_checkpoint(
    engine: Engine, signer: CheckpointSigner
) -> None:
    log = _filled(engine, signer)
    trusted = Checkpoint.from_json(log.checkpoint().to_json())  # exported, kept elsewhere
    # an attacker without the key wipes checkpoints and the tail: the stored log alone
    # has nothing to contradict it, the exported checkpoint does
    _tamper(engine, "DELETE FROM audit_checkpoints")
    _tamper(engine, "DELETE FROM audit_records WHERE idx >= 6")
    with pytest.raises(IntegrityError, match="deleted"):
        log.verify(signer.verifier(), trusted=trusted)


def test_wrong_key_and_forged_signature(engine: Engine, signer: CheckpointSigner) -> None:
    log = _filled(engine, signer)
    other = CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(IntegrityError, match="not by the configured key"):
        log.verify(other.verifier())
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_checkpoints SET size = 3 WHERE size = 4"))
    with pytest.raises(IntegrityError, match="invalid signature"):
        log.verify(signer.verifier())


def test_concurrent_appends_get_dense_indexes(engine: Engine, signer: CheckpointSigner) -> None:
    log = AuditLog.create(engine, signer=signer, checkpoint_every=25)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                log.append(_rec(t * 100 + i, principal=f"p{t}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert log.size() == 100
    log.checkpoint()
    assert log.verify(signer.verifier()).records == 100
    usage = {row.principal: row.requests for row in log.report()}
    assert usage == {"p0": 25, "p1": 25, "p2": 25, "p3": 25}


def test_report_counts_decisions_and_reasons(engine: Engine, signer: CheckpointSigner) -> None:
    log = AuditLog.create(engine, signer=signer)
    log.append(_rec(0))
    log.append(_rec(1, decision="deny"))
    log.append(_rec(2, principal="bob"))
    rows = {r.principal: r for r in log.report()}
    assert (rows["alice"].requests, rows["alice"].allowed, rows["alice"].denied) == (2, 1, 1)
    assert rows["alice"].reasons == {"quota": 1}
    assert [r.principal for r in log.report(since=1001.5)] == ["bob"]


def test_a_write_that_fails_is_an_error_not_a_silent_loss(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    eng = connect(f"sqlite:///{tmp_path / 'b.db'}")
    log = AuditLog.create(eng, signer=signer)
    _tamper(eng, "DROP TABLE audit_records")
    with pytest.raises(AuditWriteError):
        log.append(_rec(0))
    eng.dispose()


def test_verify_without_checkpoint_fails_closed(engine: Engine, signer: CheckpointSigner) -> None:
    log = AuditLog.create(engine, signer=signer)
    log.append(_rec(0))
    with pytest.raises(IntegrityError, match="no checkpoint"):
        log.verify(signer.verifier())


def test_group_commit_batches_waiters_and_acknowledges_only_after_commit(
    engine: Engine, signer: CheckpointSigner
) -> None:
    """While one leader is inside its transaction, later appends queue and go in one batch."""
    log = AuditLog.create(engine, signer=signer)
    inserted: list[int] = []
    inside, release = threading.Event(), threading.Event()
    real_insert = log._insert

    def slow_insert(rows: list[tuple[bytes, str]]) -> int:
        inserted.append(len(rows))
        if len(inserted) == 1:
            inside.set()
            assert release.wait(10)
        return real_insert(rows)

    log._insert = slow_insert  # type: ignore[method-assign]
    results: dict[int, int] = {}

    def work(i: int) -> None:
        results[i] = log.append(_rec(i))

    first = threading.Thread(target=work, args=(0,))
    first.start()
    assert inside.wait(10)
    followers = [threading.Thread(target=work, args=(i,)) for i in range(1, 6)]
    for th in followers:
        th.start()
    deadline = 100
    while len(log._waiting) < 5 and deadline:  # five followers queued behind the batch
        threading.Event().wait(0.01)
        deadline -= 1
    assert not results  # nothing acknowledged while the first transaction is open
    release.set()
    for th in [first, *followers]:
        th.join(10)
    assert inserted == [1, 5]
    assert sorted(results.values()) == list(range(6))
    assert log.size() == 6
    log.checkpoint()
    assert log.verify(signer.verifier()).records == 6  # dense, in order, leaves intact
    stored = {r.input_digest: idx for idx, r in log.records()}
    assert stored == {_rec(i).input_digest: results[i] for i in range(6)}


def test_a_failed_batch_fails_every_waiter_and_the_next_batch_recovers(
    engine: Engine, signer: CheckpointSigner
) -> None:
    log = AuditLog.create(engine, signer=signer)
    calls = [0]
    real_insert = log._insert

    def flaky(rows: list[tuple[bytes, str]]) -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("disk full")
        return real_insert(rows)

    log._insert = flaky  # type: ignore[method-assign]
    with pytest.raises(AuditWriteError, match="RuntimeError"):
        log.append(_rec(0))
    assert log.append(_rec(1)) == 0  # the refused record took no index
    assert log.size() == 1


def test_a_follower_that_waits_too_long_is_refused_and_never_written(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    eng = connect(f"sqlite:///{tmp_path / 'c.db'}")
    log = AuditLog.create(eng, signer=signer, write_timeout=0.3)
    inside, release = threading.Event(), threading.Event()
    real_insert = log._insert

    def stuck(rows: list[tuple[bytes, str]]) -> int:
        inside.set()
        assert release.wait(10)
        return real_insert(rows)

    log._insert = stuck  # type: ignore[method-assign]
    leader = threading.Thread(target=log.append, args=(_rec(0),))
    leader.start()
    assert inside.wait(10)
    with pytest.raises(AuditWriteError, match="not written within"):
        log.append(_rec(1))
    release.set()
    leader.join(10)
    log._insert = real_insert  # type: ignore[method-assign]
    assert log.append(_rec(2)) == 1
    stored = [r.input_digest for _, r in log.records()]
    assert stored == [_rec(0).input_digest, _rec(2).input_digest]
    log.close()
    eng.dispose()


def test_checkpoints_are_signed_off_the_request_path_at_exact_multiples(
    engine: Engine, signer: CheckpointSigner
) -> None:
    log = AuditLog.create(engine, signer=signer, checkpoint_every=3)
    gate = threading.Event()
    real_sign = signer.sign

    def slow_sign(*args: Any, **kwargs: Any) -> Checkpoint:
        assert gate.wait(10)
        return real_sign(*args, **kwargs)

    signer.sign = slow_sign  # type: ignore[method-assign]
    for i in range(4):
        log.append(_rec(i))  # returns although the checkpoint at 3 is still being signed
    assert log.checkpoints() == []
    gate.set()
    for i in range(4, 7):
        log.append(_rec(i))
    log.close()
    assert [c.size for c in log.checkpoints()] == [3, 6]
    assert log.verify(signer.verifier()).checkpoints == 2


def test_a_new_process_resumes_from_the_stored_frontier(
    engine: Engine, signer: CheckpointSigner
) -> None:
    """Old leaves are not read again: only those after the last signed frontier."""
    first = AuditLog.create(engine, signer=signer, checkpoint_every=4)
    for i in range(4):
        first.append(_rec(i))
    first.close()
    assert [c.size for c in first.checkpoints()] == [4]
    # Records before the stored frontier are gone (a test of what is read, not a
    # supported state): a writer that re-read every leaf would stop at the gap.
    _tamper(engine, "DELETE FROM audit_records WHERE idx < 3")  # 3 stays: next index is 4
    second = AuditLog.create(engine, signer=signer, checkpoint_every=4)
    for i in range(4, 8):
        second.append(_rec(i))
    second.close()
    assert [c.size for c in second.checkpoints()] == [4, 8]
    leaves = [leaf_hash(_rec(i).to_bytes()) for i in range(8)]
    assert second.checkpoints()[-1].root == root_of(leaves)


def test_a_frontier_that_does_not_match_its_signed_root_is_not_used(
    engine: Engine, signer: CheckpointSigner
) -> None:
    first = AuditLog.create(engine, signer=signer, checkpoint_every=4)
    for i in range(4):
        first.append(_rec(i))
    first.close()
    _tamper(engine, "UPDATE audit_checkpoints SET frontier = root")  # 32 bytes, wrong
    second = AuditLog.create(engine, signer=signer, checkpoint_every=4)
    for i in range(4, 6):
        second.append(_rec(i))
    cp = second.checkpoint()  # rebuilt from every leaf instead
    assert cp.size == 6
    assert cp.root == root_of([leaf_hash(_rec(i).to_bytes()) for i in range(6)])
    assert second.verify(signer.verifier()).records == 6


def test_migration_0005_adds_the_frontier_and_old_checkpoints_still_work(
    engine: Engine, signer: CheckpointSigner
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect

    from atlasguard.db.migrate import migrate

    migrate(engine, "0004")
    old = AuditLog(engine, signer=signer)
    for i in range(3):
        old.append(_rec(i))
    with engine.begin() as conn:  # a checkpoint as 0004 stored it: no frontier column
        cp = signer.sign(
            old.log_id, 3, root_of([leaf_hash(_rec(i).to_bytes()) for i in range(3)]), 1.0
        )
        conn.execute(
            text(
                "INSERT INTO audit_checkpoints (size, root, created_at, key_id, signature, note) "
                "VALUES (:s, :r, :c, :k, :g, :n)"
            ),
            {
                "s": 3,
                "r": cp.root,
                "c": 1.0,
                "k": cp.key_id,
                "g": cp.signature,
                "n": cp.note.decode(),
            },
        )
    migrate(engine)
    assert "frontier" in {c["name"] for c in inspect(engine).get_columns("audit_checkpoints")}
    log = AuditLog(engine, signer=signer)
    log.append(_rec(3))
    assert log.checkpoint().size == 4  # no stored frontier: every leaf read
    assert log.verify(signer.verifier()).checkpoints == 2
    cfg = Config()
    cfg.set_main_option("script_location", "atlasguard.db:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert "frontier" not in {c["name"] for c in inspect(engine).get_columns("audit_checkpoints")}
    migrate(engine)


def test_an_interrupted_waiter_does_not_wedge_the_queue(
    engine: Engine, signer: CheckpointSigner
) -> None:
    """A thread interrupted while its record waits in the queue withdraws the record (it is
    never written) and the queue keeps moving."""
    log = AuditLog.create(engine, signer=signer, write_timeout=5)
    inside, release = threading.Event(), threading.Event()
    real_insert = log._insert

    def slow_insert(rows: list[tuple[bytes, str]]) -> int:
        if not inside.is_set():
            inside.set()
            assert release.wait(10)
        return real_insert(rows)

    log._insert = slow_insert  # type: ignore[method-assign]
    first = threading.Thread(target=log.append, args=(_rec(0),))
    first.start()
    assert inside.wait(10)
    ticket = log.submit(_rec(1))

    class Interrupting:
        def acquire(self, timeout: float = -1) -> bool:
            raise KeyboardInterrupt  # arrives while the record is still queued

    real_done, ticket._done = ticket._done, Interrupting()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        log.wait(ticket)
    ticket._done = real_done
    release.set()
    first.join(10)
    assert log.append(_rec(2)) == 1  # not stuck behind the withdrawn record
    assert list(log._waiting) == []
    assert [r.input_digest for _, r in log.records()] == [
        _rec(0).input_digest,
        _rec(2).input_digest,
    ]


def test_a_batch_that_crosses_several_multiples_signs_each(
    engine: Engine, signer: CheckpointSigner
) -> None:
    log = AuditLog.create(engine, signer=signer, checkpoint_every=2)
    inside, release = threading.Event(), threading.Event()
    real_insert = log._insert

    def slow_first(rows: list[tuple[bytes, str]]) -> int:
        if not inside.is_set():
            inside.set()
            assert release.wait(10)
        return real_insert(rows)

    log._insert = slow_first  # type: ignore[method-assign]
    first = threading.Thread(target=log.append, args=(_rec(0),))
    first.start()
    assert inside.wait(10)
    rest = [threading.Thread(target=log.append, args=(_rec(i),)) for i in range(1, 6)]
    for th in rest:
        th.start()
    while len(log._waiting) < 5:
        threading.Event().wait(0.01)
    release.set()  # then one batch of five: the log grows from 1 to 6 records
    for th in [first, *rest]:
        th.join(10)
    log.close()
    assert [c.size for c in log.checkpoints()] == [2, 4, 6]  # every multiple signed


def test_coroutines_await_their_records_without_a_thread_each(
    engine: Engine, signer: CheckpointSigner
) -> None:
    """Records submitted from an event loop are settled on it, in one batch when announced."""
    import asyncio

    log = AuditLog.create(engine, signer=signer, commit_delay=5.0)
    batches: list[int] = []
    real_insert = log._insert

    def counting(rows: list[tuple[bytes, str]]) -> int:
        batches.append(len(rows))
        return real_insert(rows)

    log._insert = counting  # type: ignore[method-assign]

    async def call(i: int) -> int:
        with log.coming():
            await asyncio.sleep(0.01 * i)  # the calls finish their work at different times
            return await log.confirm(log.submit(_rec(i), loop=asyncio.get_running_loop()))

    async def main() -> list[int]:
        return await asyncio.gather(*(call(i) for i in range(6)))

    indexes = asyncio.run(main())
    assert sorted(indexes) == list(range(6))
    assert batches == [6]  # the writer waited for every announced call, not the 5 s
    assert log.size() == 6


def test_a_call_that_never_submits_holds_the_writer_only_for_the_delay(
    engine: Engine, signer: CheckpointSigner
) -> None:
    import time

    log = AuditLog.create(engine, signer=signer, commit_delay=0.3)
    announced, done = threading.Event(), threading.Event()

    def silent() -> None:
        with log.coming():
            announced.set()
            done.wait(10)  # announced, and stays away without a record

    t = threading.Thread(target=silent)
    t.start()
    assert announced.wait(10)
    began = time.monotonic()
    try:
        log.append(_rec(0))
    finally:
        done.set()
        t.join(10)
    assert 0.25 <= time.monotonic() - began < 5  # the commit delay, then written anyway
    assert log.size() == 1
    assert log._announced == 0  # leaving without a record withdrew the announcement


def test_a_record_still_queued_after_the_timeout_is_refused_on_the_loop(
    tmp_path: Path, signer: CheckpointSigner
) -> None:
    import asyncio

    log = AuditLog.create(connect(f"sqlite:///{tmp_path / 'd.db'}"), write_timeout=0.2)
    inside, release = threading.Event(), threading.Event()
    real_insert = log._insert

    def stuck(rows: list[tuple[bytes, str]]) -> int:
        inside.set()
        assert release.wait(10)
        return real_insert(rows)

    log._insert = stuck  # type: ignore[method-assign]
    first = threading.Thread(target=log.append, args=(_rec(0),))
    first.start()
    assert inside.wait(10)

    async def late() -> None:
        await log.confirm(log.submit(_rec(1), loop=asyncio.get_running_loop()))

    with pytest.raises(AuditWriteError, match="not written within"):
        asyncio.run(late())
    release.set()
    first.join(10)
    log._insert = real_insert  # type: ignore[method-assign]
    assert log.append(_rec(2)) == 1  # the refused record took no index


@pytest.mark.parametrize(("durability", "pragma"), [("power-loss", 2), ("process-crash", 1)])
def test_durability_sets_what_a_commit_waits_for(
    tmp_path: Path, durability: Any, pragma: int
) -> None:
    log = AuditLog.create(connect(f"sqlite:///{tmp_path / 'e.db'}"), durability=durability)
    log.append(_rec(0))
    assert log._conn is not None
    cur = log._conn.cursor()
    cur.execute("PRAGMA synchronous")
    assert cur.fetchone()[0] == pragma  # FULL = 2, NORMAL = 1
    assert (tmp_path / "e.db.audit-lock").exists()  # writers of every process queue here
    log.close()
    with pytest.raises(Exception, match="durability"):
        AuditLog(connect("sqlite://"), durability="sometimes")  # type: ignore[arg-type]


@pytest.mark.services
def test_postgresql_durability_is_synchronous_commit(tmp_path: Path) -> None:
    with database("postgresql", tmp_path) as engine:
        for durability, expected in (("power-loss", "on"), ("process-crash", "off")):
            log = AuditLog.create(engine, durability=durability)  # type: ignore[arg-type]
            log.append(_rec(0))
            cur = log._conn.cursor()
            cur.execute("SHOW synchronous_commit")
            assert cur.fetchone()[0] == expected
            log.close()


# -- the signer signs what the log wrote, never what the database says now -------------


def _rewrite(engine: Engine, idx: int, record: AuditRecord) -> None:
    """An insider edits a stored record and its leaf consistently (as `admin` could)."""
    body = record.to_bytes()
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET body = :b, leaf_hash = :l WHERE idx = :i"),
            {"b": body.decode(), "l": leaf_hash(body), "i": idx},
        )


def test_the_signer_refuses_a_database_edited_under_it(
    engine: Engine, signer: CheckpointSigner
) -> None:
    from atlasguard.audit.log import AuditTamperedError

    log = AuditLog.create(engine, signer=signer, checkpoint_every=10_000)
    errors: list[BaseException] = []

    def appender(start: int) -> None:
        try:
            for i in range(start, start + 25):
                log.append(_rec(i, principal="-", decision="deny"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=appender, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    # While the appenders run, a refused anonymous request is rewritten as an allowed one.
    while log.size() < 20:
        threading.Event().wait(0.005)
    _rewrite(engine, 7, _rec(7, principal="admin", decision="allow"))
    for t in threads:
        t.join(30)
    assert errors == []
    with pytest.raises(AuditTamperedError, match="record 7 is not the record this log wrote"):
        log.checkpoint()
    assert log.checkpoints() == []  # nothing signed over the edit
    assert log.tampered is not None


def test_the_signer_refuses_a_deleted_record_and_a_body_that_no_longer_hashes(
    engine: Engine, signer: CheckpointSigner
) -> None:
    from atlasguard.audit.log import AuditTamperedError

    log = AuditLog.create(engine, signer=signer, checkpoint_every=10_000)
    for i in range(6):
        log.append(_rec(i))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE idx = 3"))
    with pytest.raises(AuditTamperedError, match="record 3 is missing"):
        log.checkpoint()
    # A record this process did not write (another worker's): its body must still hash.
    other = AuditLog(engine, signer=signer)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET body = REPLACE(body, 'alice', 'mallory')"))
    with pytest.raises(AuditTamperedError, match="no longer hashes"):
        other.checkpoint()
