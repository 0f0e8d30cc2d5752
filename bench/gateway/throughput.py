"""Gateway throughput and added latency: atlasguard against a bare FastAPI + ONNX Runtime endpoint.

Both servers serve the same digits ONNX model (built by ``atlasguard init --demo``)
on loopback, each in its own process, one Uvicorn worker each. A bounded load
generator (threads with persistent HTTP/1.1 connections, a fixed number of
requests) posts the same one-row request to each in turn. atlasguard runs with
authentication, quotas (set high enough never to trigger), the output policy and
the audit log all on.

    python bench/gateway/throughput.py [--requests 2000] [--clients 4] [--diagnose]

``--diagnose`` adds a third server: atlasguard with its audit append replaced by a
no-op. It is a diagnostic only (the product never runs without its audit log):
it tells how much of the gap to the bare endpoint is the wait for the durable
audit commit and how much is the rest of the guarded request path.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from _demo import demo_project

BARE_APP = textwrap.dedent("""
    import json, sys
    import numpy as np, onnxruntime as ort
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from fastapi.concurrency import run_in_threadpool
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    app = FastAPI()
    def run(x):
        return sess.run(None, {"input": x})
    @app.post("/v2/models/digits/infer")
    async def infer(request: Request):
        body = json.loads(await request.body())
        t = body["inputs"][0]
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        outs = await run_in_threadpool(run, x)
        return JSONResponse({"model_name": "digits", "outputs": [
            {"name": n, "datatype": "FP32" if o.dtype.kind == "f" else "INT64",
             "shape": list(o.shape), "data": o.ravel().tolist()} for n, o in zip(names, outs)]})
    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
""")


# atlasguard's own command line, with AuditLog.append replaced by a no-op (diagnostic only).
NO_AUDIT = textwrap.dedent("""
    import sys
    import atlasguard.audit.log as log
    log.AuditLog.append = lambda self, record: (record.to_bytes(), 0)[1]
    sys.argv = ["atlasguard", *sys.argv[1:]]
    from atlasguard._cli.main import run
    run()
""")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def _load(
    port: int, body: bytes, headers: dict[str, str], requests: int, clients: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_client = requests // clients

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        for _ in range(per_client):
            start = time.perf_counter()
            conn.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            mine.append(time.perf_counter() - start)
            if res.status != 200:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--diagnose", action="store_true", help="also run atlasguard without its audit log"
    )
    args = ap.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        config, keys, body = demo_project(Path(tmp))
        root = config.parent
        results: dict[str, Any] = {}
        bare_py = Path(tmp) / "bare.py"
        bare_py.write_text(BARE_APP, encoding="utf-8")
        servers = ["bare", "atlasguard"] + (["atlasguard-no-audit"] if args.diagnose else [])
        for name in servers:
            port = _free_port()
            if name == "bare":
                cmd = [python, str(bare_py), str(root / "models/digits/model.onnx"), str(port)]
                headers = {"Content-Type": "application/json"}
            else:
                entry = ["-m", "atlasguard"] if name == "atlasguard" else ["-c", NO_AUDIT]
                cmd = [
                    python,
                    *entry,
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ]
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {keys[1]}"}
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ}
            )
            try:
                _wait(port, proc)
                _load(port, body, headers, min(200, args.requests), args.clients)  # warm up
                before = _cpu_seconds(proc.pid)
                results[name] = _load(port, body, headers, args.requests, args.clients)
                after = _cpu_seconds(proc.pid)
                if before is not None and after is not None:
                    results[name]["cpu_ms"] = (after - before) * 1e3 / args.requests
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    bare, guarded = results["bare"], results["atlasguard"]
    results["ratio_rps"] = guarded["rps"] / bare["rps"]
    results["added_p50_ms"] = guarded["p50_ms"] - bare["p50_ms"]
    results["added_p99_ms"] = guarded["p99_ms"] - bare["p99_ms"]
    print("| server | requests | errors | req/s | p50 ms | p99 ms | server CPU ms/request |")
    print("|---|---|---|---|---|---|---|")
    for name in [n for n in ("bare", "atlasguard", "atlasguard-no-audit") if n in results]:
        r = results[name]
        print(
            f"| {name} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            + (f"{r['cpu_ms']:.2f} |" if "cpu_ms" in r else "n/a |")
        )
    print(
        f"\natlasguard/bare throughput {results['ratio_rps']:.2f} (target >= 0.80); "
        f"added p50 {results['added_p50_ms']:.2f} ms (target < 1), "
        f"added p99 {results['added_p99_ms']:.2f} ms (target < 3)"
    )
    if args.diagnose:
        quiet = results["atlasguard-no-audit"]
        print(
            f"without the audit log (diagnostic): {quiet['rps'] / bare['rps']:.2f} of bare; "
            f"the audit commit accounts for {guarded['p50_ms'] - quiet['p50_ms']:+.2f} ms at p50"
        )
    print(
        f"command: python bench/gateway/throughput.py --requests {args.requests} "
        f"--clients {args.clients}{' --diagnose' if args.diagnose else ''}"
    )
    return results


if __name__ == "__main__":
    main()
