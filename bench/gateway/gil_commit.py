"""What a busy GIL does to a SQLite commit: the reason the audit log writes a batch in one call.

A loop of durable commits (WAL, synchronous=FULL), four statements each
(``BEGIN IMMEDIATE``, ``SELECT MAX``, ``INSERT``, ``COMMIT``) and then as one
autocommitted ``INSERT ... SELECT`` (what :mod:`atlasguard.audit.log` does), first
alone and then while other threads run pure Python, as a gateway's request
threads do. Every call into the driver gives up the GIL and must win it back.

    python bench/gateway/gil_commit.py [--commits 300] [--busy 2]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path


def _four_statements(conn: sqlite3.Connection, i: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    first = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM t").fetchone()[0]
    conn.execute("INSERT INTO t VALUES (?, ?, ?)", (first, time.time(), b"x" * 400))
    conn.execute("COMMIT")


def _one_statement(conn: sqlite3.Connection, i: int) -> None:
    conn.execute(
        "INSERT INTO t SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM t), ?, ?",
        (time.time(), b"x" * 400),
    )


def _per_commit_us(conn: sqlite3.Connection, commit: object, commits: int) -> float:
    start = time.perf_counter()
    for i in range(commits):
        commit(conn, i)  # type: ignore[operator]
    return (time.perf_counter() - start) / commits * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--busy", type=int, default=2, help="threads running pure Python")
    args = ap.parse_args(argv)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "gil.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, at REAL, body BLOB)")
        for name, commit in (("4 statements", _four_statements), ("1 statement", _one_statement)):
            results[f"{name}, alone"] = _per_commit_us(conn, commit, args.commits)
        stop = threading.Event()

        def spin() -> None:
            n = 0
            while not stop.is_set():
                n += 1

        threads = [threading.Thread(target=spin) for _ in range(args.busy)]
        for t in threads:
            t.start()
        try:
            for name, commit in (
                ("4 statements", _four_statements),
                ("1 statement", _one_statement),
            ):
                key = f"{name}, {args.busy} busy threads"
                results[key] = _per_commit_us(conn, commit, max(20, args.commits // 10))
        finally:
            stop.set()
            for t in threads:
                t.join()
        conn.close()
    print("| commit | µs per commit |")
    print("|---|---|")
    for name, us in results.items():
        print(f"| {name} | {us:,.0f} |")
    print(
        f"command: python bench/gateway/gil_commit.py --commits {args.commits} --busy {args.busy}"
        f"  (switch interval {sys.getswitchinterval() * 1e3:g} ms)"
    )
    return results


if __name__ == "__main__":
    main()
