"""Audit records per second, sustained, on SQLite (the default) and the machine's PostgreSQL.

    python bench/gateway/audit_rate.py [--records 4000] [--threads 1,8]

Each record is acknowledged only once committed (group commit: one
transaction per batch of waiting records).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from atlasguard.audit.checkpoint import CheckpointSigner
from atlasguard.audit.log import AuditLog
from atlasguard.audit.records import AuditRecord
from atlasguard.db import connect

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _rate(log: AuditLog, records: int, threads: int) -> float:
    per = records // threads

    def work(t: int) -> None:
        for i in range(per):
            log.append(
                AuditRecord(
                    time=time.time(),
                    principal=f"p{t}",
                    action="infer",
                    decision="allow",
                    model="digits",
                    input_digest=f"sha256:{i:064x}",
                    latency_ms=1.0,
                )
            )

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return per * threads / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--threads", default="1,8")
    args = ap.parse_args()
    signer = CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))
    print("| database | threads | records/s |\n|---|---|---|")
    for threads in (int(t) for t in args.threads.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            engine = connect(f"sqlite:///{Path(tmp) / 'a.db'}")
            log = AuditLog.create(engine, signer=signer)
            print(
                f"| SQLite (WAL, synchronous=FULL) | {threads} | "
                f"{_rate(log, args.records, threads):.0f} |"
            )
            log.close()
            engine.dispose()
        name = f"ag_bench_{uuid.uuid4().hex[:10]}"
        admin = connect(PG_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine = connect(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        try:
            log = AuditLog.create(engine, signer=signer)
            print(f"| PostgreSQL 127.0.0.1 | {threads} | {_rate(log, args.records, threads):.0f} |")
            log.close()
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()
    print(
        f"\ncommand: python bench/gateway/audit_rate.py --records {args.records} "
        f"--threads {args.threads}"
    )


if __name__ == "__main__":
    main()
