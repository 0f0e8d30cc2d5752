"""Precision benchmark (issue 12): false alarms on ordinary artifacts, code in model folders.

Run from the repository root::

    .venv/bin/python bench/scan/precision.py            # every library sample
    .venv/bin/python bench/scan/precision.py --quick    # one pickle protocol per object

It generates, with the libraries installed, the ordinary artifacts of
``tests/corpus/benign_libs.py`` (scikit-learn, XGBoost, LightGBM, CatBoost, statsmodels,
pandas, NumPy, PyTorch and TorchScript, Keras; pickle, joblib, ``torch.save``) and the
code-folder samples of ``tests/corpus/code_folders.py`` (Transformers ``auto_map``,
custom pipelines, Diffusers, sentence-transformers, TorchServe ``.mar``, MLflow,
Triton), then runs every tool on every sample exactly as ``bench/scan/run.py`` does (same
commands, same verdict rules) and prints, per library, how many ordinary files each tool
flags and which code folders it sees. Raw results go to ``bench/results/precision.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scan_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="protocol 4 pickles only")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "precision.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "src"))
    from tests.corpus.benign_libs import build_library_samples, library_versions, main_class_sample
    from tests.corpus.code_folders import build_code_folders

    run = _load_run()
    tools = run._tools()
    work = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    benign = build_library_samples(work)
    if args.quick:
        benign = [s for s in benign if not s.trick.endswith(("-p2", "-p5"))]
    code = build_code_folders(work)
    main_class = main_class_sample(work)
    samples = [*benign, *code, main_class]
    results: dict[str, dict[str, str]] = {name: {} for name in tools}
    for name, tool in tools.items():
        if tool.unavailable:
            print(f"{name}: n/a ({tool.unavailable})")
            continue
        with ThreadPoolExecutor(args.jobs) as pool:
            verdicts = pool.map(
                lambda s, t=tool: run._scan_sample(t, s.path, args.timeout)[0], samples
            )
            for sample, verdict in zip(samples, verdicts, strict=True):
                results[name][sample.trick] = verdict
    rows = []
    groups = sorted({s.group for s in benign})
    print(f"\nCommand: .venv/bin/python bench/scan/precision.py{' --quick' if args.quick else ''}")
    print(f"Libraries: {json.dumps(library_versions())}")
    print("\nOrdinary artifacts flagged (false positives) / errors, per library:\n")
    print("| library | files | " + " | ".join(tools) + " |")
    print("|---|---|" + "---|" * len(tools))
    for group in [*groups, "all"]:
        members = [s for s in benign if group in ("all", s.group)]
        cells = []
        for name in tools:
            got = Counter(results[name].get(s.trick, "n/a") for s in members)
            cells.append(
                "n/a" if got["n/a"] else f"{got['flag']} / {got['error'] + got['timeout']}"
            )
        rows.append({"group": group, "files": len(members), **dict(zip(tools, cells, strict=True))})
        print(f"| {group.removeprefix('lib-')} | {len(members)} | " + " | ".join(cells) + " |")
    print("\nCode in model folders (flag = the tool reports it):\n")
    print("| sample | " + " | ".join(tools) + " |")
    print("|---|" + "---|" * len(tools))
    for sample in [*code, main_class]:
        cells = [results[name].get(sample.trick, "n/a") for name in tools]
        print(f"| {sample.trick} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "results": results}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
