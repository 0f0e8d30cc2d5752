"""What the console's pages cost to read, over audit logs of growing size, on SQLite
(the default) and the machine's PostgreSQL.

    python bench/gateway/console_reads.py [--records 20000,100000]

Each page reads the newest records: traffic (15 minutes, at most 20,000 records),
alerts (a day), one page of the audit log, and the newest run of a command
(coverage's evidence, found by the database). Times are the median of 5 reads.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from atlasguard.audit.log import AuditLog
from atlasguard.audit.records import AuditRecord
from atlasguard.db import connect
from atlasguard.db.migrate import migrate
from atlasguard.gateway.console import views
from atlasguard.policy import Policy

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _fill(log: AuditLog, records: int) -> None:
    now = time.time()
    for i in range(records):
        ok = i % 7 != 0
        log.submit(
            AuditRecord(
                time=now - records * 0.01 + i * 0.01,
                principal=f"p{i % 50}",
                action="infer",
                decision="allow" if ok else "deny",
                reason="" if ok else "rate",
                model="digits",
                latency_ms=1.0 + i % 5,
                details={"client": "127.0.0.1"},
            )
        )
    log.append(
        AuditRecord(time=now - 3600, principal="ops", action="labs.completed", decision="allow")
    )
    log.append(AuditRecord(time=now, principal="ops", action="infer", decision="allow"))


def _median(read: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        read()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(name: str, url: str, records: int) -> None:
    engine = connect(url)
    migrate(engine)
    log = AuditLog(engine)
    _fill(log, records)
    policy = Policy.default()
    reads = {
        "traffic": lambda: views.traffic_view(log, policy, {}),
        "alerts": lambda: views.alerts_view(log, [], {}, {}),
        "audit-page": lambda: views.audit_page(log, principal="p3"),
        "latest-run": lambda: log.latest("labs.completed"),
    }
    cells = "  ".join(f"{k} {_median(f) * 1000:7.1f} ms" for k, f in reads.items())
    print(f"{name:<10} {records:>7} records  {cells}", flush=True)
    log.close()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="20000,100000")
    sizes = [int(n) for n in parser.parse_args().records.split(",")]
    print("command: python bench/gateway/console_reads.py --records " + ",".join(map(str, sizes)))
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            _measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", size)
        db = f"console_bench_{uuid.uuid4().hex[:8]}"
        admin = connect(PG_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {db}"))
        try:
            _measure("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", size)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE {db} WITH (FORCE)"))
            admin.dispose()


if __name__ == "__main__":
    main()
