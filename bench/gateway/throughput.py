"""Gateway throughput and added latency: atlasguard against a bare FastAPI + ONNX Runtime endpoint.

Both serve the demo's digits ONNX model (``atlasguard init --demo``) on loopback,
each in its own process, one Uvicorn worker each. atlasguard runs the demo
policy with every guard on (API key, quotas set too high to trigger, input
restoration, output policy) and its audit log durable. ``wrk -t1 -c8`` posts the
same one-row request to each server in turn, for ``--rounds`` interleaved rounds
(the machine's speed drifts; interleaving makes the drift hit every server
alike), and the medians are compared. wrk is a C program on one thread, so the
load generator does not eat the server's core as a Python one would.

    python bench/gateway/throughput.py [--seconds 10] [--rounds 3] [--connections 8]
        [--durability power-loss|process-crash] [--workers 2] [--before REV]
        [--generator wrk|python]

``--workers N`` adds atlasguard with N workers (quotas in the Redis at
127.0.0.1:6379, as ``serve`` requires), against one worker with the same Redis
set-up, and then checks that the N workers admit exactly a key's quota.
``--before REV`` adds the code of revision REV (a ``git worktree`` of this
repository, run with this interpreter): the before/after table. wrk is found on
PATH or, when running as root on Debian, installed with apt-get; without it
(or with ``--generator python``) a Python generator with persistent HTTP/1.1
connections is used instead, and the table says so.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _demo import demo_project

REPO = Path(__file__).resolve().parents[2]
TARGET_RATIO, TARGET_P50_MS, TARGET_P99_MS, TARGET_WORKERS = 0.8, 1.0, 3.0, 1.6

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


@dataclass
class Server:
    name: str
    cmd: list[str]
    key: str | None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, float]] = field(default_factory=list)


def find_wrk(generator: str) -> str | None:
    """wrk's path; installed with apt-get when missing and possible; None: use Python."""
    if generator == "python":
        return None
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)
        found = shutil.which("wrk")
    if found is None:
        print("wrk is unavailable: falling back to the Python generator", file=sys.stderr)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children so far (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _start(server: Server, log: Path) -> None:
    server.port = _free_port()
    with log.open("ab") as out:
        server.proc = subprocess.Popen(
            [*server.cmd, str(server.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **server.env},
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: see {log}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not start: see {log}")


def _stop(server: Server) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _wrk(wrk: str, lua: Path, server: Server, seconds: int, connections: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{server.port}/v2/models/digits/infer"
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua), url]
    env = {**os.environ, "KEY": server.key or ""}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    done = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": float(done[1]) if done else 0.0,
        "errors": float(bad[1] if bad else 0) + (sum(map(float, errors.groups())) if errors else 0),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": _ms(re.search(r"\s50%\s+(\S+)", out)[1]),  # type: ignore[index]
        "p99_ms": _ms(re.search(r"\s99%\s+(\S+)", out)[1]),  # type: ignore[index]
    }


def _python(body: bytes, server: Server, seconds: int, connections: int) -> dict[str, float]:
    headers = {"Content-Type": "application/json"}
    if server.key:
        headers["Authorization"] = f"Bearer {server.key}"
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        mine, bad = [], 0
        while time.monotonic() < stop:
            start = time.perf_counter()
            conn.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            mine.append(time.perf_counter() - start)
            bad += res.status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client) for _ in range(connections)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": float(len(latencies)),
        "errors": float(errors[0]),
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e3,
    }


def _quota_is_exact(config: Path, port: int, body: bytes, quota: int, attempts: int) -> int:
    """Race ``attempts`` requests of a key allowed ``quota`` a day; return how many got 200."""
    made = subprocess.run(
        [sys.executable, "-m", "atlasguard", "keys", "create", "--config", str(config),
         "--principal", f"race{time.time_ns()}", "--models", "digits",
         "--rate", "100000/second", "--quota", f"{quota}/day"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    time.sleep(5.5)  # the workers' key tables refresh every 5 s
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    admitted = [0]
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ok = 0
        for _ in range(n):
            conn.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
            res = conn.getresponse()
            res.read()
            ok += res.status == 200
            if res.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            admitted[0] += ok

    threads = [threading.Thread(target=client, args=(attempts // 8,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return admitted[0]


def _policy(config: Path, *, durability: str, redis: bool) -> Path:
    text = config.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^audit_durability = ".*"$', f'audit_durability = "{durability}"', text)
    if redis:
        text = re.sub(r'(?m)^redis_url = ""$', 'redis_url = "redis://127.0.0.1:6379/0"', text)
    out = config.with_name(f"{durability}{'-redis' if redis else ''}.toml")
    out.write_text(text, encoding="utf-8")
    return out


def _serve(config: Path, workers: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "atlasguard", "serve", "--config", str(config),
        "--log-level", "warning", "--workers", str(workers), "--port",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="length of one wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--durability", choices=["power-loss", "process-crash"], default="power-loss")
    ap.add_argument("--workers", type=int, default=1, help="also run atlasguard with N workers")
    ap.add_argument("--before", metavar="REV", help="also run the code of this revision")
    ap.add_argument("--generator", choices=["wrk", "python"], default="wrk")
    args = ap.parse_args(argv)
    wrk = find_wrk(args.generator)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        config, keys, body = demo_project(work)
        root = config.parent
        bare_py = work / "bare.py"
        bare_py.write_text(BARE_APP, encoding="utf-8")
        model = str(root / "models/digits/model.onnx")
        servers = [
            Server("bare FastAPI + ONNX Runtime", [sys.executable, str(bare_py), model], None),
            Server(
                "atlasguard",
                _serve(_policy(config, durability=args.durability, redis=False)),
                keys[1],
            ),
        ]
        if args.workers > 1:
            shared = _policy(config, durability=args.durability, redis=True)
            servers.append(Server("atlasguard, Redis quotas, 1 worker", _serve(shared), keys[1]))
            servers.append(
                Server(
                    f"atlasguard, Redis quotas, {args.workers} workers",
                    _serve(shared, args.workers),
                    keys[1],
                )
            )
        if args.before:
            old = work / "before"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.before],
                check=True, capture_output=True,
            )  # fmt: skip
            stack.callback(
                subprocess.run,
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                check=False,
                capture_output=True,
            )
            env = {"PYTHONPATH": str(old / "src")}
            os.environ.update(env)  # the old code writes its own demo deployment
            try:
                old_config, old_keys, _ = demo_project(work / "old")
            finally:
                del os.environ["PYTHONPATH"]
            servers.append(
                Server(f"atlasguard {args.before}", _serve(old_config), old_keys[1], env)
            )
        lua = work / "post.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [[{body.decode()}]]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            'local key = os.getenv("KEY")\n'
            'if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end\n',
            encoding="utf-8",
        )
        for server in servers:
            stack.callback(_stop, server)
            _start(server, work / "servers.log")

        def load(server: Server, seconds: int) -> dict[str, float]:
            if wrk is None:
                return _python(body, server, seconds, args.connections)
            return _wrk(wrk, lua, server, seconds, args.connections)

        for server in servers:  # warm up: the key's hash, the grants, the model's placement
            load(server, 2)
        for _ in range(args.rounds):
            for server in servers:
                assert server.proc is not None
                cpu = _cpu_seconds(server.proc.pid)
                run = load(server, args.seconds)
                run["cpu_us"] = (
                    (_cpu_seconds(server.proc.pid) - cpu) / max(run["requests"], 1) * 1e6
                )
                server.runs.append(run)
                print(
                    f"  {server.name}: {run['rps']:,.0f} req/s, p50 {run['p50_ms']:.2f} ms, "
                    f"p99 {run['p99_ms']:.2f} ms, {run['errors']:.0f} errors",
                    file=sys.stderr,
                )
        exact = None
        if args.workers > 1:
            many = servers[3]
            assert many.proc is not None
            exact = _quota_is_exact(shared, many.port, body, quota=300, attempts=480)
        for server in servers:
            _stop(server)

    med = {s.name: {k: statistics.median(r[k] for r in s.runs) for k in s.runs[0]} for s in servers}
    bare, guarded = med[servers[0].name], med[servers[1].name]
    results: dict[str, Any] = {
        "servers": med,
        "errors": sum(r["errors"] for s in servers for r in s.runs),
        "ratio": guarded["rps"] / bare["rps"],
        "added_p50_ms": guarded["p50_ms"] - bare["p50_ms"],
        "added_p99_ms": guarded["p99_ms"] - bare["p99_ms"],
        "generator": "wrk" if wrk else "python",
    }
    print(
        f"\n{args.connections} connections, {args.rounds} interleaved rounds of "
        f"{args.seconds} s, load from {results['generator']}; medians:\n"
    )
    print("| server | req/s | p50 ms | p99 ms | server CPU µs/request | req/s per round |")
    print("|---|---|---|---|---|---|")
    for s in servers:
        m = med[s.name]
        rounds = ", ".join(f"{r['rps']:,.0f}" for r in s.runs)
        print(
            f"| {s.name} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['cpu_us']:.0f} | {rounds} |"
        )
    print(
        f"\natlasguard / bare: {results['ratio']:.2f}× the throughput (target ≥ {TARGET_RATIO}); "
        f"added p50 {results['added_p50_ms']:+.2f} ms (target < {TARGET_P50_MS:g}), "
        f"added p99 {results['added_p99_ms']:+.2f} ms (target < {TARGET_P99_MS:g}); "
        f"audit {args.durability}"
    )
    if args.workers > 1:
        one, many = med[servers[2].name], med[servers[3].name]
        results["workers_ratio"] = many["rps"] / one["rps"]
        results["quota_admitted"] = exact
        print(
            f"{args.workers} workers / 1 worker: {results['workers_ratio']:.2f}× "
            f"(target ≥ {TARGET_WORKERS}); a key allowed 300 a day, 480 racing requests "
            f"over the {args.workers} workers: {exact} admitted"
        )
    if args.before:
        then = med[servers[-1].name]
        results["before_ratio"] = then["rps"] / bare["rps"]
        print(
            f"before ({args.before}): {results['before_ratio']:.2f}× the bare throughput, "
            f"after: {results['ratio']:.2f}×"
        )
    flags = "".join(
        f" --{k} {v}"
        for k, v in (
            ("seconds", args.seconds),
            ("rounds", args.rounds),
            ("connections", args.connections),
            ("durability", args.durability),
            ("workers", args.workers),
            ("before", args.before),
            ("generator", args.generator),
        )
        if v is not None
    )
    print(f"command: python bench/gateway/throughput.py{flags}")
    return results


if __name__ == "__main__":
    main()
