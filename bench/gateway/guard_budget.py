"""The per-guard budget: µs of CPU each step of a guarded request costs, p50 and p99.

Every step the demo policy (and the policy generally) can put on a request's
path is timed alone, in this process, one thread, on the digits model's
one-row request: authentication and authorization (from memory, and the first
use of a key), the protocol codec, the in-process input check, each quota
store, each output policy, the model itself, building and queueing the audit
record, the writer's commit per record (batches of 8, as under 8 concurrent
clients), and encoding the answer. ``bench/gateway/budget.toml`` holds the
budget of each; ``make bench`` fails when a step's p50 exceeds its budget, so a
guard added later is held to the table too.

    .venv/bin/python bench/gateway/guard_budget.py [--n 5000] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _demo import demo_project

HERE = Path(__file__).resolve().parent
BUDGET = HERE / "budget.toml"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _percentiles(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(200, n)):  # warm caches
        fn()
    samples = []
    clock = time.thread_time_ns
    for _ in range(n):
        began = clock()
        fn()
        samples.append(clock() - began)
    samples.sort()
    return samples[len(samples) // 2] / 1e3, samples[int(0.99 * (len(samples) - 1))] / 1e3


def measure(n: int) -> dict[str, tuple[float, float]]:
    from starlette.responses import JSONResponse

    from atlasguard.gateway.oip import infer_response, parse_infer_request
    from atlasguard.gateway.service import Gateway
    from atlasguard.policy import load_policy
    from atlasguard.runtime._quota_memory import MemoryQuotaStore
    from atlasguard.runtime._quota_redis import RedisQuotaStore
    from atlasguard.runtime.auditor import Outcome
    from atlasguard.runtime.obfuscation import OutputGuard, OutputPolicy
    from atlasguard.runtime.pipeline import Principal, Request, Response
    from atlasguard.runtime.quotas import QuotaGuard, QuotaPolicy
    from atlasguard.runtime.validate import check_arrays

    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config, keys, body = demo_project(Path(tmp))
        gateway = Gateway.from_policy(load_policy(config))
        try:
            deployment = gateway.deployment
            access = deployment.access
            served = gateway.models["digits"]
            spec = served.spec
            key = keys[1]

            # -- authentication: the first use of a key hashes it (scrypt), once per process
            fresh = deployment.identity.create_key("bench").secret
            deployment.identity.grant("bench", "digits", "user")
            began = time.thread_time_ns()
            record = access.authenticate(fresh)
            once = (time.thread_time_ns() - began) / 1e3
            results["authenticate, first use of a key (scrypt)"] = (once, once)
            record = access.authenticate(key)
            access.authorize(record, "digits")
            results["authenticate (key checked before)"] = _percentiles(
                lambda: access.authenticate_cached(key), n
            )
            results["authorize (grants read before)"] = _percentiles(
                lambda: access.authorize_cached(record, "digits"), n
            )
            max_body = gateway.max_body_bytes
            results["decode and check the body (protocol codec)"] = _percentiles(
                lambda: parse_infer_request(body, spec, max_body_bytes=max_body), n
            )
            inputs = parse_infer_request(body, spec, max_body_bytes=max_body).inputs
            results["check arrays (in-process callers)"] = _percentiles(
                lambda: check_arrays(inputs, spec), n
            )
            principal = Principal("demo", frozenset({"user"}))
            request = Request(model="digits", inputs=inputs, principal=principal)
            high = QuotaPolicy.parse(rate="1000000/second", burst=1_000_000, daily="1000000000/day")
            memory = QuotaGuard(store=MemoryQuotaStore(), resolve=lambda p, m: high)
            results["quotas (memory)"] = _percentiles(lambda: memory.before(request), n)
            redis_store = RedisQuotaStore.from_url(REDIS_URL, prefix=f"bench:{uuid.uuid4().hex}")
            try:
                remote = QuotaGuard(store=redis_store, resolve=lambda p, m: high)
                results["quotas (Redis, one round trip)"] = _percentiles(
                    lambda: remote.before(request), n
                )
            finally:
                redis_store.reset("demo", "digits")
            outputs = served.protected.pipeline.predict(inputs)
            response = Response(outputs=outputs)
            for name in ("round", "top_k+round", "label", "noise"):
                guard = OutputGuard(default=OutputPolicy.parse(name))
                results[f"output policy {name}"] = _percentiles(
                    lambda g=guard: g.after(request, response), n
                )
            results.update(_monitor_cost(deployment, inputs, outputs, n))
            results.update(_input_guard_cost(served, request, outputs, n))
            results["predict (ONNX Runtime, demo model)"] = _percentiles(
                lambda: served.protected.pipeline.predict(inputs), n
            )
            auditor = deployment.auditor

            def outcome() -> Outcome:
                o = Outcome(action="infer", model="digits", principal="demo", request_id="r")
                o.input_digest = "sha256:" + "0" * 64
                o.answered(outputs)
                return o

            results["audit record: build and serialise"] = _percentiles(
                lambda: auditor.build(outcome()).to_bytes(), n
            )
            results["audit: commit per record (batches of 8, writer thread)"] = _writer_cost(
                deployment.audit, auditor, outcome, n
            )
            results["encode the answer"] = _percentiles(
                lambda: JSONResponse(infer_response("digits", "1", outputs, request_id=None)), n
            )
        finally:
            gateway.close()
    return results


def _monitor_cost(
    deployment: Any, inputs: Any, outputs: Any, n: int
) -> dict[str, tuple[float, float]]:
    """The query monitor's before + after on distinct digits: a new principal, and one
    with 10,000 queries stored (its alarm kept off: the cost, not the verdict)."""
    import numpy as np

    from atlasguard.runtime.monitor import QueryMonitor
    from atlasguard.runtime.pipeline import Principal, Request, Response

    (monitor,) = [g for g in deployment.guards if isinstance(g, QueryMonitor)]
    monitor.action, monitor.alarm_after = "log", 10**9
    rng = np.random.default_rng(0)
    base = np.asarray(inputs["input"], np.float32)
    response = Response(outputs=outputs)
    out: dict[str, tuple[float, float]] = {}
    for label, history in (
        ("query monitor (new principal)", 0),
        ("query monitor (10,000 stored queries)", 10_000),
    ):
        who = Principal(f"bench-{history}", frozenset({"user"}))
        for _ in range(history):
            x = np.clip(base + rng.normal(0, 0.3, base.shape), 0, 1).astype(np.float32)
            r = Request(model="digits", inputs={"input": x}, principal=who)
            monitor.after(monitor.before(r), response)
        rows = [
            np.clip(base + rng.normal(0, 0.3, base.shape), 0, 1).astype(np.float32)
            for _ in range(n + 201)  # _percentiles warms up on up to 200 calls first
        ]
        it = iter(rows)

        def step(who: Any = who, it: Any = it) -> None:
            r = Request(model="digits", inputs={"input": next(it)}, principal=who)
            monitor.after(monitor.before(r), response)

        out[label] = _percentiles(step, n)
    return out


def _input_guard_cost(
    served: Any, request: Any, outputs: Any, n: int
) -> dict[str, tuple[float, float]]:
    """The demo's per-model guards: the input detectors (action kept to ``log``: the
    cost, not the verdict), drift's buffering and the input restoration, on one request."""
    from atlasguard.runtime.detectors import DetectorGuard
    from atlasguard.runtime.drift import DriftGuard
    from atlasguard.runtime.pipeline import Response
    from atlasguard.runtime.restoration import RestorationGuard

    response = Response(outputs=outputs)
    out: dict[str, tuple[float, float]] = {}
    for guard in served.protected.pipeline.guards:
        if isinstance(guard, DetectorGuard):
            guard.action, guard.on_alarm = "log", None
            out["input detectors (Mahalanobis)"] = _percentiles(
                lambda g=guard: g.after(g.before(request), response), n
            )
        elif isinstance(guard, DriftGuard):
            # the request path only buffers the row; the window tests run on their own thread
            guard.every = 10**9
            out["drift (buffer the row; tests off the path)"] = _percentiles(
                lambda g=guard: g.after(g.before(request), response), n
            )
        elif isinstance(guard, RestorationGuard):
            out["input restoration (2-bit depth)"] = _percentiles(
                lambda g=guard: g.before(request), n
            )
    return out


def _writer_cost(log: Any, auditor: Any, outcome: Callable[[], Any], n: int) -> tuple[float, float]:
    """Process CPU (every thread) per record when 8 coroutines keep the writer busy."""

    async def run(records: int) -> None:
        loop = asyncio.get_running_loop()
        pending: list[Any] = []
        for _ in range(records):
            pending.append(log.submit(auditor.build(outcome()), loop=loop))
            if len(pending) == 8:
                for ticket in pending:
                    await log.confirm(ticket)
                pending.clear()
        for ticket in pending:
            await log.confirm(ticket)

    asyncio.run(run(200))  # warm
    rounds = []
    for _ in range(5):
        began = time.process_time_ns()
        asyncio.run(run(max(400, n // 5)))
        rounds.append((time.process_time_ns() - began) / 1e3 / max(400, n // 5))
    rounds.sort()
    return rounds[len(rounds) // 2], rounds[-1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--check", action="store_true", help="exit 1 when a p50 is over budget")
    args = ap.parse_args(argv)
    results = measure(args.n)
    budget = tomllib.loads(BUDGET.read_text(encoding="utf-8"))["p50_us"]
    over = []
    print("| step | p50 µs | p99 µs | budget (p50 µs) |")
    print("|---|---|---|---|")
    for name, (p50, p99) in results.items():
        limit = budget.get(name)
        mark = "" if limit is None or p50 <= limit else " **over**"
        if limit is not None and p50 > limit:
            over.append(name)
        shown = "n/a" if limit is None else f"{limit:g}"
        print(f"| {name} | {p50:,.1f} | {p99:,.1f} | {shown}{mark} |")
    missing = sorted(set(results) - set(budget))
    print(f"\ncommand: python bench/gateway/guard_budget.py --n {args.n}")
    if missing:
        print(f"steps without a budget: {', '.join(missing)}")
    summary = {"results": results, "over": over, "missing": missing}
    if args.check and (over or missing):
        print(json.dumps(summary, indent=2))
        sys.exit(1)
    return summary


if __name__ == "__main__":
    main()
