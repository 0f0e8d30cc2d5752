"""Where the gateway's CPU goes: py-spy samples `atlasguard serve` under wrk's load.

The demo deployment (quotas set too high to trigger, audit durable) is served by
one Uvicorn worker; ``wrk -t1 -c8`` posts the one-row request while ``py-spy
record --gil`` samples the server (only the thread holding the GIL: the
process's Python work, the loop and the audit writer alike). The samples are
summed per step of the request path (a frame's function decides its step, the
innermost known frame wins) and printed as a share of the GIL-held time and as
µs per request; the server's CPU per request (user + system, every thread, from
/proc) is printed next to it.

    .venv/bin/python bench/gateway/profile.py [--seconds 20] [--rate 250] [--raw FILE]

``--src DIR`` serves another source tree with the same interpreter, e.g. the code
before issue 10: ``git worktree add /tmp/before b167472`` then ``--src /tmp/before/src``.

Needs ``wrk`` (Debian package) and ``py-spy`` (PyPI; ``pip install py-spy``, run
as root or with ptrace allowed). Without either it says so and exits 2.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _demo import demo_project

# (step, substrings of "function (file" that put a frame in it), outermost first:
# the innermost frame that matches any step decides the sample's step.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("uvicorn and the event loop", ("httptools_impl", "protocol.py", "uvloop", "runners.py")),
    ("routing and the call's frame", ("app.py", "calls.py", "inference.py")),
    (
        "authenticate and authorize",
        (
            "Call.authenticate",
            "Call.authorize",
            "credential_of",
            "access.py",
            "store.py",
            "hmac.py",
        ),
    ),
    ("read the body", ("read_body", "body_chunks", "timeouts.py")),
    ("decode and check the request", ("oip.py", "decoder.py")),
    (
        "guards: quotas, output policy",
        ("protect.py", "pipeline.py", "quotas.py", "_quota_", "obfuscation.py"),
    ),
    ("model: preprocessing and predict", ("predict", "preprocess.py", "onnx")),
    (
        "audit: build, submit, await",
        ("Auditor.", "AuditLog.submit", "AuditLog.confirm", "records.py", "merkle.py", "Ticket"),
    ),
    (
        "audit writer thread",
        ("_write_forever", "_write_batch", "_insert", "_gather", "_sign_due", "checkpoint.py"),
    ),
    (
        "encode and send the answer",
        (
            "infer_response",
            "encode_tensor",
            "JSONResponse",
            "responses.py",
            "ratelimit_headers",
            "encoder.py",
        ),
    ),
    ("metrics", ("metrics.py",)),
]


def _step(frames: list[str]) -> str:
    if not frames:  # the GIL held in native code with no Python frame: uvloop's loop
        return STEPS[0][0]
    for frame in reversed(frames):
        for step, needles in reversed(STEPS):
            if any(n in frame for n in needles):
                return step
    return "other"


def summarise(raw: Path) -> dict[str, int]:
    """Samples per step of a ``py-spy record -f raw`` file."""
    steps: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        steps[_step(stack.split(";")[1:])] += int(count)
    return dict(steps)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        print(f"{name} is not installed: see this script's docstring", file=sys.stderr)
        raise SystemExit(2)
    return found


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--raw", type=Path, help="keep py-spy's raw samples here")
    ap.add_argument(
        "--src", type=Path, help="serve atlasguard from this source tree (e.g. an old revision's)"
    )
    args = ap.parse_args(argv)
    if args.src is not None:  # init and serve both run from it
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    wrk, pyspy = _tool("wrk"), _tool("py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        config, keys, body = demo_project(Path(tmp))
        lua = Path(tmp) / "post.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [[{body.decode()}]]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {keys[1]}"\n'
        )
        port = _free_port()
        with (Path(tmp) / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "atlasguard",
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the gateway did not start") from None
                    time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
            subprocess.run(
                [wrk, "-t1", "-c8", "-d3s", "-s", str(lua), url], check=True, capture_output=True
            )  # warm up
            raw = args.raw or Path(tmp) / "samples.raw"
            cpu0 = _cpu_seconds(server.pid)
            load = subprocess.Popen(
                [wrk, "-t1", "-c8", f"-d{args.seconds + 2}s", "-s", str(lua), url],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1)
            subprocess.run(
                [
                    pyspy,
                    "record",
                    "--gil",
                    "--nonblocking",
                    "-p",
                    str(server.pid),
                    "-d",
                    str(args.seconds),
                    "-r",
                    str(args.rate),
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                ],
                check=True,
                capture_output=True,
            )
            out, _ = load.communicate()
            cpu = _cpu_seconds(server.pid) - cpu0
        finally:
            server.terminate()
            server.wait(timeout=30)
        requests = next(
            float(line.split()[0]) for line in out.splitlines() if " requests in " in line
        )
        steps = summarise(raw)
    total = sum(steps.values()) or 1
    gil_us = total / args.rate / requests * (args.seconds + 2) / args.seconds * 1e6
    print("| step | share of GIL-held samples | µs per request |")
    print("|---|---|---|")
    table = {}
    for step, _ in [*STEPS, ("other", ())]:
        n = steps.get(step, 0)
        table[step] = n / total * gil_us
        print(f"| {step} | {n / total:.1%} | {table[step]:.0f} |")
    print(
        f"\n{requests:,.0f} requests; server CPU {cpu / requests * 1e6:.0f} µs per request "
        f"(every thread, user + system); GIL held {gil_us:.0f} µs per request"
    )
    src = f" --src {args.src}" if args.src else ""
    print(
        f"command: python bench/gateway/profile.py --seconds {args.seconds} --rate {args.rate}{src}"
    )
    return table


if __name__ == "__main__":
    main()
