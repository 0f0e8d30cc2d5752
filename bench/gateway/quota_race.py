"""Quota exactness under a race (AML.M0004), on the Redis at 127.0.0.1:6379.

4 worker processes x 2 threads (8 concurrent clients) race one principal's limits:
a rate with burst ``N`` (refilling once a day, so nothing refills during the run)
and a daily quota of ``D``. Three ways to enforce both limits are compared:

* ``atlasguard``: :class:`RedisQuotaStore`, one Lua script checks and charges both;
* ``limits-hit``: the ``limits`` library, one ``hit`` per limit in turn (daily, then
  rate): exact per limit, but a request the rate refuses has already been charged
  to the daily quota, so a client that is rate limited burns its daily quota on
  requests it never got;
* ``limits-test-hit``: ``test`` both limits, then ``hit`` both: nothing is charged
  on refusal, but between the test and the hit other clients get in, so more
  than ``min(N, D)`` requests are admitted.

    .venv/bin/python bench/gateway/quota_race.py [--attempts 400] [--rate-burst 200] [--daily 300]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from atlasguard.runtime._quota_redis import RedisQuotaStore
from atlasguard.runtime.quotas import QuotaPolicy

REDIS_URL = "redis://127.0.0.1:6379/0"
RESULTS = Path(__file__).resolve().parents[1] / "results"
METHODS = ("atlasguard", "limits-hit", "limits-test-hit")


def _worker(
    method: str, prefix: str, burst: int, daily: int, attempts: int, start_at: float
) -> tuple[int, list[float]]:
    admitted = [0, 0]
    latencies: list[list[float]] = [[], []]
    if method == "atlasguard":
        store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
        policy = QuotaPolicy.parse(rate="1/day", burst=burst, daily=str(daily))

        def once() -> bool:
            return store.acquire("racer", "digits", policy, 1).admitted

    else:
        limiter = FixedWindowRateLimiter(storage_from_string(REDIS_URL, key_prefix=prefix))
        rate, day = parse(f"{burst}/day"), parse(f"{daily}/day")
        if method == "limits-hit":

            def once() -> bool:
                return limiter.hit(day, "racer", "daily") and limiter.hit(rate, "racer", "rate")

        else:

            def once() -> bool:
                if limiter.test(rate, "racer", "rate") and limiter.test(day, "racer", "daily"):
                    limiter.hit(rate, "racer", "rate")
                    limiter.hit(day, "racer", "daily")
                    return True
                return False

    def hammer(slot: int) -> None:
        for _ in range(attempts):
            began = time.perf_counter()
            ok = once()
            latencies[slot].append(time.perf_counter() - began)
            admitted[slot] += ok

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    time.sleep(max(0.0, start_at - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(admitted), latencies[0] + latencies[1]


def race(method: str, *, burst: int, daily: int, attempts: int) -> dict[str, Any]:
    """One race; returns admitted count, what the counters were charged, and latency."""
    prefix = f"atlasguard-bench-{uuid.uuid4().hex}"
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 4.0
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with ctx.Pool(4) as pool:
            began = time.time()
            job = pool.starmap_async(
                _worker, [(method, prefix, burst, daily, attempts, start_at)] * 4
            )
            out = job.get(timeout=300)
            elapsed = time.time() - max(began, start_at)
        admitted = sum(n for n, _ in out)
        latencies = sorted(x for _, lat in out for x in lat)
        if method == "atlasguard":
            store = RedisQuotaStore(client, prefix=prefix)
            _, daily_key, _ = store.keys("racer", "digits")
            charged_rate = None  # GCRA keeps a time, not a count: derived from admissions
            charged_daily = int(client.hget(daily_key, "used") or 0)
        else:
            counts = {k.decode(): int(client.get(k) or 0) for k in client.scan_iter(f"{prefix}*")}
            charged_rate = sum(v for k, v in counts.items() if "/racer/rate/" in k)
            charged_daily = sum(v for k, v in counts.items() if "/racer/daily/" in k)
    finally:
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
    return {
        "method": method,
        "clients": 8,
        "attempts": 8 * attempts,
        "expected": min(burst, daily),
        "admitted": admitted,
        "charged_rate": charged_rate,
        "charged_daily": charged_daily,
        "decisions_per_s": 8 * attempts / elapsed if elapsed > 0 else None,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=400, help="per client")
    parser.add_argument("--rate-burst", type=int, default=200)
    parser.add_argument("--daily", type=int, default=300)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=RESULTS / "quota-race.json")
    args = parser.parse_args(argv)
    rows = [
        race(m, burst=args.rate_burst, daily=args.daily, attempts=args.attempts)
        for m in args.methods.split(",")
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        f"{'method':<16} {'attempts':>8} {'expected':>8} {'admitted':>8} "
        f"{'rate charged':>12} {'daily charged':>13} {'dec/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in rows:
        rate = "-" if r["charged_rate"] is None else str(r["charged_rate"])
        print(
            f"{r['method']:<16} {r['attempts']:>8} {r['expected']:>8} {r['admitted']:>8} "
            f"{rate:>12} {r['charged_daily']:>13} {r['decisions_per_s']:>7.0f} "
            f"{r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
