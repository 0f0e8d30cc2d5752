"""CPU per request of the guarded path, in process, next to a bare handler's work.

No HTTP: one thread calls, in a loop, (a) what the bare FastAPI endpoint of
``throughput.py`` does per request (parse the JSON body, build the array, run
the ONNX session, encode the answer) and (b) atlasguard's ``Gateway.infer`` with
every guard and the durable audit log (SQLite, synchronous=FULL), plus the same
answer encoding; (c) is (b) with the audit append replaced by a no-op, a
diagnostic only. The minimum over several rounds is reported.

What it tells: a CPU-bound server reaches at most ``F + a`` over ``F + b`` of
the bare throughput, where ``F`` is the HTTP framework's own cost per request
(the same for both; ``throughput.py`` reports each server's CPU per request).

    python bench/gateway/request_cost.py [--n 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _demo import demo_project


def _best_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    for _ in range(min(200, n)):  # warm caches, the key cache and the audit table
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n * 1e6)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from atlasguard.audit.log import AuditLog
    from atlasguard.gateway.oip import infer_response
    from atlasguard.gateway.service import Gateway
    from atlasguard.policy import load_policy

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config, keys, body = demo_project(Path(tmp))
        root, key = config.parent, keys[1]

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(
            str(root / "models/digits/model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in sess.get_outputs()]

        def bare() -> bytes:
            doc = json.loads(body)
            t = doc["inputs"][0]
            arr = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
            outs = sess.run(None, {"input": arr})
            return json.dumps(
                {
                    "model_name": "digits",
                    "outputs": [
                        {
                            "name": n,
                            "datatype": "FP32" if o.dtype.kind == "f" else "INT64",
                            "shape": list(o.shape),
                            "data": o.ravel().tolist(),
                        }
                        for n, o in zip(names, outs, strict=True)
                    ],
                }
            ).encode()

        gateway = Gateway.from_policy(load_policy(config))
        version = gateway.models["digits"].spec.version

        def guarded() -> bytes:
            response = gateway.infer("digits", body, credential=key)
            doc: dict[str, Any] = infer_response(
                "digits", version, response.outputs, request_id=None
            )
            return json.dumps(doc).encode()

        try:
            results["bare handler"] = _best_us(bare, args.n, args.rounds)
            results["atlasguard Gateway.infer"] = _best_us(guarded, args.n, args.rounds)
            real_append = AuditLog.append
            AuditLog.append = lambda self, record: (record.to_bytes(), 0)[1]  # type: ignore[method-assign]
            try:
                results["atlasguard, audit a no-op (diagnostic)"] = _best_us(
                    guarded, args.n, args.rounds
                )
            finally:
                AuditLog.append = real_append  # type: ignore[method-assign]
        finally:
            gateway.close()
    print("| path | CPU µs per request |")
    print("|---|---|")
    for name, us in results.items():
        print(f"| {name} | {us:,.0f} |")
    extra = results["atlasguard Gateway.infer"] - results["bare handler"]
    print(
        f"\nthe guarded path adds {extra:,.0f} µs of CPU per request; a CPU-bound server "
        "reaches at most (F + bare) / (F + atlasguard) of the bare throughput, "
        "F = the framework's CPU per request"
    )
    print(f"command: python bench/gateway/request_cost.py --n {args.n} --rounds {args.rounds}")
    return results


if __name__ == "__main__":
    main()
