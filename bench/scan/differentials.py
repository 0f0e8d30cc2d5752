"""Parser differentials (issue 12 §1): files a loader runs that a scanner may misread.

Writes every sample of ``tests/corpus/differentials.py`` (opcode arguments in the
forms CPython's C unpickler accepts, lying frames, a first opcode longer than a
sniff window, pickles that are also HDF5 or tar, a zip whose end record PyTorch
and Python find differently) and runs each tool on each file the way
``bench/scan/run.py`` does (same commands, same verdict rules).

    .venv/bin/python bench/scan/differentials.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(HERE))
    from precision import _load_run
    from tests.corpus.differentials import SAMPLES

    run = _load_run()
    tools = run._tools()
    work = Path(tempfile.mkdtemp(prefix="bench-differentials-"))
    results: dict[str, dict[str, str]] = {name: {} for name in tools}
    for sample in SAMPLES:
        path = work / f"{sample.name}{sample.suffix}"
        path.write_bytes(sample.build())
        for name, tool in tools.items():
            verdict = "n/a" if tool.unavailable else run._scan_sample(tool, path, args.timeout)[0]
            results[name][sample.name] = verdict
    print("\nFlagged = the tool reports the file (its payload would run under the loader named):\n")
    print("| sample | class | loader | " + " | ".join(tools) + " |")
    print("|---|---|---|" + "---|" * len(tools))
    for sample in SAMPLES:
        cells = [results[name][sample.name] for name in tools]
        print(f"| {sample.name} | {sample.cls} | {sample.loader} | " + " | ".join(cells) + " |")
    totals = [
        f"{sum(v == 'flag' for v in results[name].values())}/{len(SAMPLES)}" for name in tools
    ]
    print("| all | | | " + " | ".join(totals) + " |")
    print("\ncommand: .venv/bin/python bench/scan/differentials.py")
    return results


if __name__ == "__main__":
    main()
