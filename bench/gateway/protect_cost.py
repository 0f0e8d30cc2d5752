"""CPU per call that ``atlasguard.protect`` adds to a model, audit record included.

The demo deployment's digits model (ONNX Runtime) is called in process by 8
threads at once, first bare (its predict function), then through
``atlasguard.protect`` with the demo policy (API key, quotas set too high to
trigger, output policy, the durable audit log). The process's CPU time (every
thread, the audit writer's included) over all calls, divided by the calls,
gives the CPU per call of each; the difference is what protection costs.
Issue 10's target: at most 50 µs per call.

    .venv/bin/python bench/gateway/protect_cost.py [--calls 4000] [--threads 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _demo import demo_project

TARGET_US = 50.0


def _cpu_per_call(call: Callable[[], object], calls: int, threads: int) -> float:
    per_thread = calls // threads
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            call()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    began = time.process_time()
    barrier.wait()
    for t in pool:
        t.join()
    return (time.process_time() - began) / (per_thread * threads) * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import atlasguard
    from atlasguard.gateway.backends import load_backend
    from atlasguard.policy import load_policy

    with tempfile.TemporaryDirectory() as tmp:
        config, keys, _body = demo_project(Path(tmp))
        policy = load_policy(config)
        backend = load_backend("digits", policy.models["digits"], policy.base_dir)
        x = (np.arange(64, dtype=np.float32) % 17 / 16.0).reshape(1, 64)
        protected = atlasguard.protect(backend.predict, policy, name="digits")
        key = keys[1]

        def bare() -> object:
            return backend.predict({"input": x})

        def guarded() -> object:
            return protected({"input": x}, credential=key)

        for fn in (bare, guarded):  # warm: the key's hash, the grants, the audit table
            _cpu_per_call(fn, 400, args.threads)
        rows = {"bare predict": [], "atlasguard.protect": []}
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            rows["bare predict"].append(_cpu_per_call(bare, args.calls, args.threads))
            rows["atlasguard.protect"].append(_cpu_per_call(guarded, args.calls, args.threads))
        records = protected.auditor.log.size() if protected.auditor.log else 0
    median = {name: sorted(v)[len(v) // 2] for name, v in rows.items()}
    added = median["atlasguard.protect"] - median["bare predict"]
    print("| path | CPU µs per call (median of rounds) |")
    print("|---|---|")
    for name, us in median.items():
        print(f"| {name} | {us:,.1f} |")
    print(
        f"\nprotect adds {added:,.1f} µs of CPU per call with {args.threads} callers "
        f"(target <= {TARGET_US:g}); {records} audit records written"
    )
    print(
        f"command: python bench/gateway/protect_cost.py --calls {args.calls} "
        f"--threads {args.threads} --rounds {args.rounds}"
    )
    return {"median_us": median, "added_us": added, "records": records}


if __name__ == "__main__":
    main()
