"""Efficacy of the runtime defences (AML.M0015, M0004, M0010, M0006, M0009, M0002) on digits.

The measurement lives in the package (:mod:`atlasguard.models.efficacy`, also
``atlasguard bench efficacy``); this script runs it from a checkout, prints the
table and writes the JSON rows and, with matplotlib, the PNG plot.

    .venv/bin/python bench/efficacy/runtime_defences.py [--quick] [--output rows.json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    from atlasguard.models.efficacy import plot, render_table, run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer targets and streams")
    parser.add_argument("--output", type=Path, default=None, help="rows as JSON (and a .png)")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, progress=lambda line: print(line, flush=True))
    result.command = "python bench/efficacy/runtime_defences.py" + (
        " --quick" if args.quick else ""
    )
    print("\n" + render_table(result))
    if args.output is not None:
        args.output.write_text(result.to_json())
        try:
            plot(result, args.output.with_suffix(".png"))
        except Exception as exc:  # no matplotlib: the JSON is the result
            print(f"no plot: {exc}")
    return result.rows


if __name__ == "__main__":
    main()
