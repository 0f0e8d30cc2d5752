"""Scanner speed on a big checkpoint and at start-up, side by side with picklescan (issue 12 §4).

Inputs: a page-cached ``torch.save`` state dict of ``--mib`` MiB (float32
tensors), and one small pickle. Every command runs ``--rounds`` times,
interleaved, and the median wall time is reported:

* ``atlasguard scan CKPT`` (the thorough default: every byte read, SHA-256 of the file);
* ``atlasguard scan --fast CKPT`` (tensor storages left unread, no digest);
* ``picklescan --path CKPT`` (and modelscan, for reference);
* ``atlasguard scan SMALL`` and ``picklescan --path SMALL`` (start-up);
* ``atlasguard --help``.

Next to them, the ceilings that bound the thorough mode on this machine:
SHA-256 of the file on one core, in process (a single digest cannot be split
across cores), and the interpreter's own start-up.

Targets: thorough >= 2 GB/s; ``--fast`` no slower than picklescan on the same
file; one small file under 0.12 s.

    .venv/bin/python bench/scan/speed.py
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV = REPO / ".venv"
ANCHORS = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))
WORK = REPO / "bench" / "results" / "speed-work"

_CHECKPOINT = """
import sys, torch
torch.manual_seed(0)
mib = int(sys.argv[2])
torch.save({f"layer{i}.weight": torch.randn(512, 512) for i in range(mib)}, sys.argv[1])
"""


def _inputs(mib: int) -> tuple[Path, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    ckpt = WORK / f"checkpoint-{mib}mib.pt"
    if not ckpt.exists():
        tmp = ckpt.with_suffix(".tmp")
        subprocess.run(
            [str(VENV / "bin" / "python"), "-c", _CHECKPOINT, str(tmp), str(mib)], check=True
        )
        tmp.rename(ckpt)
    small = WORK / "small.pkl"
    small.write_bytes(pickle.dumps({"step": 1, "lr": 0.1, "w": [0.5] * 16}, protocol=4))
    return ckpt, small


def _page_cache(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(8 << 20):
            pass


def _sha256_seconds(path: Path) -> float:
    h = hashlib.sha256()
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return time.perf_counter() - t0


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-300:]!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="checkpoint size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    ckpt, small = _inputs(args.mib)
    size = ckpt.stat().st_size
    _page_cache(ckpt)
    ag = str(VENV / "bin" / "atlasguard")
    commands: dict[str, list[str]] = {
        "atlasguard scan (thorough)": [ag, "scan", str(ckpt)],
        "atlasguard scan --fast": [ag, "scan", "--fast", str(ckpt)],
        "atlasguard scan SMALL": [ag, "scan", str(small)],
        "atlasguard --help": [ag, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    for tool, make in (
        ("picklescan", lambda p: [str(ANCHORS / "bin" / "picklescan"), "--path", str(p)]),
        ("modelscan", lambda p: [str(ANCHORS / "bin" / "modelscan"), "-p", str(p)]),
    ):
        if (ANCHORS / "bin" / tool).exists():
            commands[tool] = make(ckpt)
            commands[f"{tool} SMALL"] = make(small)
    times: dict[str, list[float]] = {name: [] for name in commands}
    hashing: list[float] = []
    for _ in range(args.rounds):  # interleaved: drift in the machine hits every command alike
        for name, cmd in commands.items():
            times[name].append(_wall(cmd))
        hashing.append(_sha256_seconds(ckpt))
    med = {name: statistics.median(t) for name, t in times.items()}
    med["sha256 in process"] = statistics.median(hashing)
    gbs = {name: size / med[name] / 1e9 for name in med}

    print(f"\ncheckpoint: {size:,} bytes, page-cached; medians of {args.rounds} interleaved runs\n")
    print("| command | wall | on the checkpoint |")
    print("|---|---|---|")
    for name in med:
        on_ckpt = "SMALL" not in name and "help" not in name and "pass" not in name
        rate = f"{gbs[name]:.2f} GB/s" if on_ckpt else ""
        print(f"| {name} | {med[name]:.3f} s | {rate} |")
    thorough = gbs["atlasguard scan (thorough)"]
    fast = med["atlasguard scan --fast"]
    small_s = med["atlasguard scan SMALL"]
    print("\n| target | measured | met |")
    print("|---|---|---|")
    print(f"| thorough >= 2 GB/s | {thorough:.2f} GB/s | {'yes' if thorough >= 2 else 'no'} |")
    if "picklescan" in med:
        ref = med["picklescan"]
        print(f"| --fast <= picklescan | {fast:.3f} s vs {ref:.3f} s | {_yn(fast <= ref)} |")
    print(f"| one small file < 0.12 s | {small_s:.3f} s | {'yes' if small_s < 0.12 else 'no'} |")
    ceiling = size / (med["sha256 in process"] + med["atlasguard scan SMALL"]) / 1e9
    print(
        f"\nceiling for a thorough scan here: SHA-256 alone {gbs['sha256 in process']:.2f} GB/s "
        f"on one core; with the CLI's start-up added, {ceiling:.2f} GB/s"
    )
    print("command: .venv/bin/python bench/scan/speed.py " + " ".join(argv or []))
    return {
        **{f"{k} seconds": v for k, v in med.items()},
        "thorough GB/s": thorough,
        "bytes": float(size),
    }


def _yn(ok: bool) -> str:
    return "yes" if ok else "no"


if __name__ == "__main__":
    main()
