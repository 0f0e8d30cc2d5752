"""A model hub mirror scanned on Dask (issue 12 §5): files/s on 1 and 2 local workers.

Generates a mirror (the scanner corpus, malicious and benign, copied ``--copies``
times, plus ``--medium`` pickles of a few hundred thousand opcodes each, so the
workers have real scanning to do), then scans it:

* in this process, with ``scan_paths`` (the local reference);
* on a ``distributed.LocalCluster`` with 1 worker process, then 2 (one thread each).

Each cluster run must return the local report exactly; the files/s and the
ratio of 2 workers to 1 are printed. Cluster start-up is not timed.

    .venv/bin/python bench/scan/dask_mirror.py
"""

from __future__ import annotations

import argparse
import logging
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def build_mirror(root: Path, copies: int, medium: int) -> int:
    sys.path.insert(0, str(REPO))
    from tests.corpus import build_corpus

    seed = root / "seed"
    build_corpus(seed / "hub", seed / "canary" / "CANARY")
    for i in range(copies):
        shutil.copytree(seed / "hub", root / "mirror" / f"org{i:03d}")
    for i in range(medium):
        folder = root / "mirror" / f"big{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        data = {"step": i, "weights": [float(x) for x in range(60_000 + i)]}
        (folder / f"checkpoint{i}.pkl").write_bytes(pickle.dumps(data, protocol=4))
    return sum(1 for p in (root / "mirror").rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of the corpus")
    parser.add_argument("--medium", type=int, default=120, help="medium-sized pickles")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs each")
    parser.add_argument(
        "--shard-files", type=int, default=None, help="files per task (default: adaptive)"
    )
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from atlasguard.artifacts.distributed import scan_paths_distributed
    from atlasguard.artifacts.scan import scan_paths

    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        files = build_mirror(work, args.copies, args.medium)
        mirror = work / "mirror"
        size = sum(p.stat().st_size for p in mirror.rglob("*") if p.is_file())
        print(f"mirror: {files} files, {size / 1024**2:.1f} MiB", flush=True)

        def best(run: object) -> tuple[float, object]:
            times, result = [], None
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                result = run()  # type: ignore[operator]
                times.append(time.perf_counter() - t0)
            return min(times), result

        seconds, local = best(lambda: scan_paths([mirror]))
        rates = {"local": files / seconds}
        print(f"  in process (scan_paths):   {rates['local']:8.1f} files/s", flush=True)
        for n in (1, 2):
            with (
                LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.CRITICAL,
                ) as cluster,
                Client(cluster, set_as_default=False) as client,
            ):
                client.wait_for_workers(n)
                scan_paths_distributed([mirror], client)  # warm the workers' imports
                seconds, remote = best(
                    lambda c=client, k=args.shard_files: scan_paths_distributed(
                        [mirror], c, shard_files=k
                    )
                )
            assert remote == local, f"{n} worker(s): the cluster report differs from the local one"
            rates[f"{n}w"] = files / seconds
            print(f"  Dask, {n} worker process(es): {rates[f'{n}w']:8.1f} files/s", flush=True)
        rates["scaling"] = rates["2w"] / rates["1w"]
        print(f"\n2 workers / 1 worker: {rates['scaling']:.2f}x (reports identical to local)")
        print("command: .venv/bin/python bench/scan/dask_mirror.py")
        return rates
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
