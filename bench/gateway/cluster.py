"""Two gateways on one PostgreSQL and one Redis, next to one gateway on SQLite.

The demo deployment is served (a) by one ``atlasguard serve`` process on its
SQLite database and (b) by two separate ``atlasguard serve`` processes, as on two
machines, sharing a fresh PostgreSQL database (127.0.0.1:5432) and the Redis
(127.0.0.1:6379) for quotas. wrk loads each set-up with the same number of
connections in all (split over the two processes in (b)); the table gives
requests/s and audit records/s (records counted in the database before and
after), and the log is checked dense after the run.

    python bench/gateway/cluster.py [--seconds 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from _demo import demo_project
from sqlalchemy import text
from throughput import Server, _policy, _serve, _start, _stop, find_wrk

from atlasguard.db import connect

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _records(url: str) -> tuple[int, int, int]:
    eng = connect(url)
    try:
        with eng.connect() as conn:
            count, low, high = conn.execute(
                text("SELECT COUNT(*), MIN(idx), MAX(idx) FROM audit_records")
            ).one()
    finally:
        eng.dispose()
    return int(count), int(low if low is not None else 0), int(high if high is not None else -1)


def _load(wrk: str, lua: Path, servers: list[Server], seconds: int, connections: int) -> float:
    """Run wrk against every server at once; the requests/s of all together."""
    each = max(1, connections // len(servers))
    procs = [
        subprocess.Popen(
            [
                wrk,
                "-t1",
                f"-c{each}",
                f"-d{seconds}s",
                "-s",
                str(lua),
                f"http://127.0.0.1:{s.port}/v2/models/digits/infer",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={"KEY": s.key or ""},
        )
        for s in servers
    ]
    total = 0.0
    for proc in procs:
        out, _ = proc.communicate()
        if re.search(r"Non-2xx or 3xx responses: \d+", out):
            raise RuntimeError(f"some requests failed:\n{out}")
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args(argv)
    wrk = find_wrk("wrk")
    if wrk is None:
        raise SystemExit("cluster.py needs wrk")
    name = f"ag_bench_{uuid.uuid4().hex[:12]}"
    admin = connect(f"{PG}/test").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config, keys, body = demo_project(Path(tmp))
            lua = Path(tmp) / "post.lua"
            lua.write_text(
                f'wrk.method = "POST"\nwrk.body = [[{body.decode()}]]\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                'wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")\n',
                encoding="utf-8",
            )
            sqlite_url = f"sqlite:///{config.parent / 'state' / 'atlasguard.db'}"
            pg_url = f"{PG}/{name}"
            shared = _policy(config, durability="power-loss", redis=True)
            policy = shared.read_text(encoding="utf-8")
            shared.write_text(
                re.sub(r'(?m)^database_url = ""$', f'database_url = "{pg_url}"', policy),
                encoding="utf-8",
            )
            # The demo's keys live in its SQLite database: make one in PostgreSQL.
            made = subprocess.run(
                [sys.executable, "-m", "atlasguard", "keys", "create", "--config", str(shared),
                 "--principal", "bench", "--models", "digits", "--rate", "1000000/second",
                 "--quota", "1000000000/day"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            pg_key = made.stdout.strip().splitlines()[-1]
            setups = {
                "SQLite, 1 process": (
                    [Server("sqlite", _serve(config), keys[1])],
                    sqlite_url,
                ),
                "PostgreSQL + Redis, 2 processes": (
                    [Server(f"pg{i}", _serve(shared), pg_key) for i in range(2)],
                    pg_url,
                ),
            }
            for label, (servers, url) in setups.items():
                try:
                    for s in servers:
                        _start(s, Path(tmp) / "servers.log")
                    _load(wrk, lua, servers, 2, args.connections)  # warm up
                    before, _, _ = _records(url)
                    rps = _load(wrk, lua, servers, args.seconds, args.connections)
                    after, low, high = _records(url)
                finally:
                    for s in servers:
                        _stop(s)
                results[label] = {
                    "rps": rps,
                    "records_per_s": (after - before) / args.seconds,
                    "dense": (low, high) == (0, after - 1),
                }
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
    print("| set-up | req/s | audit records/s | log dense |")
    print("|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['rps']:,.0f} | {r['records_per_s']:,.0f} | {r['dense']} |")
    print(
        f"command: python bench/gateway/cluster.py --seconds {args.seconds} "
        f"--connections {args.connections}"
    )
    return results


if __name__ == "__main__":
    main()
