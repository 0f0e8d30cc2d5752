"""Per-request cost of the access, quota and output guards, in process (no HTTP).

Times ``before`` + ``after`` of each guard for a one-row request of the digits
model (10 class scores), many times in one thread, and prints the median and p99.

    .venv/bin/python bench/gateway/guard_overhead.py [--n 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid

import numpy as np

from atlasguard.db import connect
from atlasguard.identity.store import IdentityStore
from atlasguard.runtime._quota_memory import MemoryQuotaStore
from atlasguard.runtime._quota_redis import RedisQuotaStore
from atlasguard.runtime.access import AccessGuard
from atlasguard.runtime.obfuscation import OutputGuard, OutputPolicy
from atlasguard.runtime.pipeline import Guard, Principal, Request, Response
from atlasguard.runtime.quotas import QuotaGuard, QuotaPolicy

REDIS_URL = "redis://127.0.0.1:6379/0"


def _time(guard: Guard, n: int, credential: str | None = None) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(10), size=1).astype(np.float32)
    inputs = {"input": np.zeros((1, 64), np.float32)}
    response = Response(outputs={"probabilities": scores})
    samples = []
    for _ in range(n):
        request = Request(
            model="digits", inputs=inputs, principal=Principal("p"), credential=credential
        )
        began = time.perf_counter()
        guard.after(guard.before(request), response)
        samples.append(time.perf_counter() - began)
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(0.99 * (len(samples) - 1))] * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    high = QuotaPolicy.parse(rate="1000000/second", burst=1_000_000, daily="1000000000/day")
    prefix = f"atlasguard-bench-{uuid.uuid4().hex}"
    redis_store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    tmp = tempfile.mkdtemp(prefix="atlasguard-bench-")
    identity = IdentityStore.create(connect(f"sqlite:///{tmp}/atlasguard.db"))
    key = identity.create_key("p").secret
    identity.grant("p", "digits", "user")
    guards: dict[str, Guard] = {
        "access (API key)": AccessGuard(identity),
        "quotas (memory)": QuotaGuard(store=MemoryQuotaStore(), resolve=lambda p, m: high),
        "quotas (redis)": QuotaGuard(store=redis_store, resolve=lambda p, m: high),
    }
    for name in ("round", "top_k+round", "label", "noise"):
        guards[f"output {name}"] = OutputGuard(default=OutputPolicy.parse(name), random_state=0)
    print(f"{'guard':<22} {'p50 µs':>8} {'p99 µs':>8}")
    try:
        for name, guard in guards.items():
            p50, p99 = _time(guard, args.n, key)
            print(f"{name:<22} {p50:>8.1f} {p99:>8.1f}")
    finally:
        redis_store.reset("p", "digits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
