"""Scanner benchmark: atlasguard against picklescan, modelscan and fickling.

Run from the repository root::

    .venv/bin/python bench/scan/run.py          # full: 1 GB checkpoint, 20M ints, 1,000 files
    .venv/bin/python bench/scan/run.py --quick    # small performance inputs, for development

It builds the malicious and benign corpora (``tests/corpus``), runs every tool on every
sample the way its users would (one CLI call per sample), then measures wall time and peak
memory on three large inputs. Results go to ``bench/results/scan.json``; the tables and
the exact command are printed. A tool whose CLI is missing gets ``n/a``, never a figure.

How a "flag" is decided, per tool (``outcome`` in the raw results):

* atlasguard: ``atlasguard scan PATH --format json``; flagged when the JSON report holds a
  finding at ``high`` or ``critical`` (exit code 1 is the same decision).
* picklescan: ``picklescan --path PATH``; flagged on exit code 1 ("dangerous import
  found"); exit 2 is a scan error. "Suspicious" globals alone exit 0 and are not a flag.
* modelscan: ``modelscan -p PATH``; flagged on exit code 1 (issues found, any severity);
  2 is a scan error, 3 "no supported files" (counted as not flagged).
* fickling: ``fickling --check-safety --json-output TMP FILE`` per file (its CLI takes one
  file; for a directory sample every file in the tree is checked and the sample is flagged
  when any file is); flagged on exit 1, exit 2 is a parse error. Its CLI reads a raw
  pickle stream, so on zip-based formats it exits 2; the performance runs therefore time
  its Python API where the CLI cannot work: ``fickling.scan_zip_archive`` for the
  checkpoint and ``fickling.scan_file`` over ``os.walk`` for the tree.

This module imports only the standard library: it also runs, with ``--measure``, as the
tiny wrapper that measures one command's wall time and peak RSS in a fresh process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["TOOLS", "Tool", "main"]

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
ANCHORS = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))
RESULTS = REPO / "bench" / "results"
ANCHOR_PACKAGES = ("picklescan", "modelscan", "fickling")
FLAG, CLEAN, ERROR, TIMEOUT, NA = "flag", "clean", "error", "timeout", "n/a"
TARGETS_FROM_ISSUE = {  # issue 3: measured elsewhere on the 20M-int pickle, for comparison
    "picklescan": "~23 s, 2.7 GB",
    "modelscan": "~25 s",
    "fickling": "~85 s",
}


# --------------------------------------------------------------------------- running commands
@dataclass
class Run:
    """One command run: exit code, outputs, wall seconds, peak RSS of the child (bytes)."""

    cmd: list[str]
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    peak_rss: int | None = None
    timed_out: bool = False


def _run(cmd: Sequence[str], timeout: float, cwd: Path | None = None) -> Run:
    """Run ``cmd`` in its own process group; kill the whole group on timeout."""
    start = time.monotonic()
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Run(
            list(cmd), None, out[-4000:], err[-4000:], time.monotonic() - start, timed_out=True
        )
    return Run(list(cmd), proc.returncode, out[-20000:], err[-4000:], time.monotonic() - start)


def _measure_main(cmd: Sequence[str]) -> int:
    """``run.py --measure CMD...``: run CMD, print wall time and peak RSS of its tree as JSON."""
    start = time.monotonic()
    proc = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - start
    # ru_maxrss of RUSAGE_CHILDREN: the largest resident set of any waited-for descendant
    # (kilobytes on Linux); this wrapper's own memory is not counted.
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "rc": proc.returncode,
                "seconds": wall,
                "peak_rss": peak_kb * 1024,
                "stderr": proc.stderr.decode(errors="replace")[-2000:],
            }
        )
    )
    return 0


def _measured(cmd: Sequence[str], timeout: float) -> Run:
    """Run ``cmd`` under the measuring wrapper in a fresh process."""
    run = _run([sys.executable, str(Path(__file__).resolve()), "--measure", "--", *cmd], timeout)
    if run.timed_out or run.rc != 0:
        return Run(list(cmd), None, "", run.stderr, run.seconds, timed_out=run.timed_out)
    m = json.loads(run.stdout.strip().splitlines()[-1])
    return Run(list(cmd), m["rc"], "", m["stderr"], m["seconds"], m["peak_rss"])


# --------------------------------------------------------------------------- tools
@dataclass
class Tool:
    """How to call one scanner and read its verdict."""

    name: str
    version: str | None
    command: Callable[[Path, Path], list[str]]  # (target, scratch dir) -> argv
    verdict: Callable[[Run], str]
    per_file: bool = False  # the CLI takes single files: walk directories ourselves
    unavailable: str | None = None  # why the tool cannot run (then every figure is n/a)


def _rc_verdict(flag_codes: set[int], error_codes: set[int]) -> Callable[[Run], str]:
    def verdict(run: Run) -> str:
        if run.timed_out:
            return TIMEOUT
        if run.rc in flag_codes:
            return FLAG
        if run.rc in error_codes or run.rc is None or run.rc < 0:
            return ERROR
        return CLEAN

    return verdict


def _atlasguard_verdict(run: Run) -> str:
    if run.timed_out:
        return TIMEOUT
    if not run.stdout.strip():  # measured runs discard the report: the exit code decides
        return {0: CLEAN, 1: FLAG}.get(run.rc if run.rc is not None else -1, ERROR)
    try:
        reports = json.loads(run.stdout)
    except ValueError:
        return FLAG if run.rc == 1 else ERROR
    if isinstance(reports, dict):
        reports = reports.get("files", [reports])
    severities = {
        str(f.get("severity", "")).lower() for r in reports for f in r.get("findings", [])
    }
    if severities & {"high", "critical"}:
        return FLAG
    return ERROR if run.rc not in (0, 1) else CLEAN


def _anchor_version(package: str) -> str | None:
    python = ANCHORS / "bin" / "python"
    if not python.exists():
        return None
    run = _run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"], 60
    )
    return run.stdout.strip() if run.rc == 0 else None


def _atlasguard_tool() -> Tool:
    exe = VENV / "bin" / "atlasguard"
    base = [str(exe)] if exe.exists() else [str(VENV / "bin" / "python"), "-m", "atlasguard"]
    if os.environ.get("ATLASGUARD_BENCH_CMD"):  # e.g. a development build of the CLI
        base = shlex.split(os.environ["ATLASGUARD_BENCH_CMD"])
    env_path = f"{REPO / 'src'}"
    probe = _run(["env", f"PYTHONPATH={env_path}", *base, "scan", "--help"], 120, cwd=REPO)
    reason = None
    if probe.rc != 0 or "--format" not in probe.stdout:
        reason = (
            "`atlasguard scan` CLI not available yet "
            f"(`{' '.join(base[-3:])} scan --help` exited {probe.rc})"
        )
    version = None
    if reason is None:
        ver = _run(
            [
                str(VENV / "bin" / "python"),
                "-c",
                "import atlasguard; print(getattr(atlasguard, '__version__', '?'))",
            ],
            60,
            cwd=REPO,
        )
        version = ver.stdout.strip() or None
    return Tool(
        "atlasguard",
        version,
        lambda target, _tmp: [
            "env",
            f"PYTHONPATH={env_path}",
            *base,
            "scan",
            str(target),
            "--format",
            "json",
        ],
        _atlasguard_verdict,
        unavailable=reason,
    )


def _anchor(
    name: str,
    command: Callable[[Path, Path], list[str]],
    verdict: Callable[[Run], str],
    per_file: bool = False,
) -> Tool:
    version = _anchor_version(name)
    reason = None if version else f"{name} not installed in {ANCHORS} (make anchors)"
    return Tool(name, version, command, verdict, per_file, reason)


def _tools() -> dict[str, Tool]:
    b = ANCHORS / "bin"
    return {
        "atlasguard": _atlasguard_tool(),
        "picklescan": _anchor(
            "picklescan",
            lambda t, _d: [str(b / "picklescan"), "--path", str(t)],
            _rc_verdict({1}, {2}),
        ),
        "modelscan": _anchor(
            "modelscan",
            lambda t, _d: [str(b / "modelscan"), "-p", str(t)],
            _rc_verdict({1}, {2, 4}),
        ),
        "fickling": _anchor(
            "fickling",
            lambda t, d: [
                str(b / "fickling"),
                "--check-safety",
                "--json-output",
                str(d / "f.json"),
                str(t),
            ],
            _rc_verdict({1}, {2}),
            per_file=True,
        ),
    }


TOOLS = ("atlasguard", *ANCHOR_PACKAGES)


def _scan_sample(tool: Tool, target: Path, timeout: float) -> tuple[str, float]:
    """The tool's verdict on one sample (a file or a directory) and the seconds it took."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool.name}-") as tmp:
        scratch = Path(tmp)
        if tool.per_file and target.is_dir():
            outcomes, seconds = [], 0.0
            for path in sorted(p for p in target.rglob("*") if p.is_file()):
                run = _run(tool.command(path, scratch), timeout, cwd=scratch)
                outcomes.append(tool.verdict(run))
                seconds += run.seconds
            for outcome in (FLAG, TIMEOUT, ERROR):
                if outcome in outcomes:
                    return outcome, seconds
            return CLEAN, seconds
        run = _run(tool.command(target, scratch), timeout, cwd=scratch)
        return tool.verdict(run), run.seconds


# --------------------------------------------------------------------------- corpus
def _build_corpus(work: Path) -> dict[str, object]:
    out = work / "corpus"
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [str(VENV / "bin" / "python"), "-m", "tests.corpus.generate", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    manifest: dict[str, object] = json.loads((out / "manifest.json").read_text())
    manifest["root"] = str(out)
    return manifest


@dataclass
class ToolSummary:
    tool: str
    version: str | None
    unavailable: str | None
    malicious: int = 0
    detected: int = 0
    malicious_errors: int = 0
    malicious_timeouts: int = 0
    benign: int = 0
    false_positives: int = 0
    benign_errors: int = 0
    seconds: float = 0.0
    missed: list[str] = field(default_factory=list)
    flagged_benign: list[str] = field(default_factory=list)


def _efficacy(
    manifest: dict[str, object], tools: dict[str, Tool], timeout: float, jobs: int
) -> tuple[list[ToolSummary], list[dict[str, object]]]:
    root = Path(str(manifest["root"]))
    samples: list[dict[str, str]] = manifest["samples"]  # type: ignore[assignment]
    rows: list[dict[str, object]] = [dict(s) for s in samples]
    summaries = []
    for tool in tools.values():
        summary = ToolSummary(tool.name, tool.version, tool.unavailable)
        if tool.unavailable:
            for row in rows:
                row[tool.name] = NA
            summaries.append(summary)
            continue
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            verdicts = list(
                pool.map(lambda s, t=tool: _scan_sample(t, root / s["path"], timeout), samples)
            )
        for row, sample, (outcome, seconds) in zip(rows, samples, verdicts, strict=True):
            row[tool.name] = outcome
            summary.seconds += seconds
            if sample["kind"] == "malicious":
                summary.malicious += 1
                summary.detected += outcome == FLAG
                summary.malicious_errors += outcome == ERROR
                summary.malicious_timeouts += outcome == TIMEOUT
                if outcome != FLAG:
                    summary.missed.append(sample["trick"])
            else:
                summary.benign += 1
                summary.false_positives += outcome == FLAG
                summary.benign_errors += outcome in (ERROR, TIMEOUT)
                if outcome == FLAG:
                    summary.flagged_benign.append(sample["trick"])
        summaries.append(summary)
    return summaries, rows


# --------------------------------------------------------------------------- performance
_PERF_SCRIPT = r"""
import os, pickle, struct, json, sys
from pathlib import Path
kind, out, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
if kind == "checkpoint":
    import torch
    # n MiB of float32 in 64 MiB tensors (a state dict of big tensors)
    per = 16 * 1024 * 1024
    count, rest = divmod(n * 1024 * 1024 // 4, per)
    sd = {f"layer{i}.weight": torch.ones(per) for i in range(count)}
    if rest:
        sd["tail.weight"] = torch.ones(rest)
    torch.save(sd, out)
elif kind == "ints":
    out.write_bytes(pickle.dumps(list(range(n)), protocol=4))
elif kind == "tree":
    for i in range(n):
        d = out / f"shard{i % 10}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 2:
            (d / f"f{i}.pkl").write_bytes(pickle.dumps({"step": i, "w": [0.5] * 8}, protocol=4))
        else:
            h = json.dumps({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}).encode()
            (d / f"f{i}.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + bytes(32))
"""


def _perf_inputs(work: Path, quick: bool, wanted: Sequence[str]) -> dict[str, tuple[Path, str]]:
    perf = work / ("perf-quick" if quick else "perf")
    perf.mkdir(parents=True, exist_ok=True)
    specs = {
        "checkpoint": (
            "checkpoint.pt",
            64 if quick else 1024,
            "PyTorch state dict, {n} MiB of float32 tensors (torch.save)",
        ),
        "ints": (
            "ints.pkl",
            2_000_000 if quick else 20_000_000,
            "pickle.dumps(list(range({n})), protocol=4)",
        ),
        "tree": (
            "tree",
            100 if quick else 1000,
            "{n} small files, half pickles, half safetensors, in nested directories",
        ),
    }
    inputs = {}
    for kind, (name, n, what) in specs.items():
        if kind not in wanted:
            continue
        path = perf / name
        stamp = perf / f".{name}.done"
        if not stamp.exists():
            subprocess.run(["rm", "-rf", str(path)], check=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "tree":
                path.mkdir()
            subprocess.run(
                [str(VENV / "bin" / "python"), "-c", _PERF_SCRIPT, kind, str(path), str(n)],
                check=True,
            )
            stamp.touch()
        inputs[kind] = (path, what.format(n=n))
    return inputs


_FICKLING_TREE = (
    "import os, sys, fickling\n"
    "for d, _, fs in os.walk(sys.argv[1]):\n"
    "    for f in fs:\n"
    "        fickling.scan_file(os.path.join(d, f), graceful=True)\n"
)


_FICKLING_ZIP = (
    "import sys, fickling\n"
    "results = fickling.scan_zip_archive(sys.argv[1], graceful=True)\n"
    "sys.exit(0 if all(r.is_safe for r in results.values()) else 1)\n"
)


def _perf_command(tool: Tool, path: Path, tmp: Path) -> list[str]:
    """The command timed for ``path``: the tool's CLI, or fickling's API where its CLI can't."""
    python = str(ANCHORS / "bin" / "python")
    if tool.name == "fickling" and path.is_dir():
        # fickling's CLI takes one file; its Python API walks the tree in one process.
        return [python, "-c", _FICKLING_TREE, str(path)]
    if tool.name == "fickling" and zipfile.is_zipfile(path):
        # Its CLI reads a raw pickle stream and exits 2 on a zip; the API scans zip members.
        return [python, "-c", _FICKLING_ZIP, str(path)]
    return tool.command(path, tmp)


def _perf(
    tools: dict[str, Tool], inputs: dict[str, tuple[Path, str]], timeout: float
) -> list[dict[str, object]]:
    results = []
    for kind, (path, what) in inputs.items():
        size = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        for tool in tools.values():
            row: dict[str, object] = {"input": kind, "what": what, "bytes": size, "tool": tool.name}
            if tool.unavailable:
                row.update(outcome=NA, note=tool.unavailable)
                results.append(row)
                continue
            with tempfile.TemporaryDirectory() as tmp:
                run = _measured(cmd := _perf_command(tool, path, Path(tmp)), timeout)
            row.update(
                command=shlex.join(cmd),
                outcome=tool.verdict(run) if not run.timed_out else TIMEOUT,
                rc=run.rc,
                seconds=round(run.seconds, 2),
                peak_rss=run.peak_rss,
                stderr_tail=run.stderr[-300:],
            )
            results.append(row)
            print(f"  perf {kind:10} {tool.name:10} {_fmt_perf(row)}", flush=True)
    return results


# --------------------------------------------------------------------------- reporting
def _fmt_perf(row: dict[str, object]) -> str:
    if row["outcome"] in (NA, TIMEOUT):
        return str(row["outcome"])
    rss = row.get("peak_rss")
    mem = f"{int(rss) / 1024**2:,.0f} MB" if isinstance(rss, int) else "?"
    # every performance input is benign: a flag there is a false positive
    flag = {CLEAN: "", FLAG: " (flagged: false positive)"}.get(
        str(row["outcome"]), f" ({row['outcome']}, exit {row['rc']})"
    )
    return f"{row['seconds']:.2f} s, {mem}{flag}"


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f}%)" if d else "-"


def _family_table(names: list[str], rows: list[dict[str, object]]) -> list[str]:
    """Per family: malicious samples flagged, and benign samples flagged (false positives)."""
    lines = [
        "",
        "## Per family (malicious flagged / benign flagged)",
        "",
        "| family | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for group in dict.fromkeys(str(r["group"]) for r in rows):
        cells = []
        for name in names:
            parts = []
            for kind in ("malicious", "benign"):
                mine = [r for r in rows if r["group"] == group and r["kind"] == kind]
                if any(r.get(name) == NA for r in mine):
                    parts.append("n/a")
                elif mine:
                    parts.append(f"{sum(r.get(name) == FLAG for r in mine)}/{len(mine)}")
                else:
                    parts.append("-")
            cells.append(" / ".join(parts))
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def _tables(
    names: list[str],
    summaries: list[ToolSummary],
    rows: list[dict[str, object]],
    perf: list[dict[str, object]],
    command: str,
) -> str:
    lines = [
        f"command: {command}",
        "",
        "## Detection and false positives",
        "",
        "| tool | version | detected (malicious flagged) | errors/timeouts on malicious "
        "| false positives (benign flagged) | benign errors | CPU-serial seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        if s.unavailable:
            lines.append(f"| {s.tool} | - | n/a: {s.unavailable} | | | | |")
            continue
        lines.append(
            f"| {s.tool} | {s.version} | {_pct(s.detected, s.malicious)} | "
            f"{s.malicious_errors}/{s.malicious_timeouts} | "
            f"{_pct(s.false_positives, s.benign)} | {s.benign_errors} | "
            f"{s.seconds:.0f} |"
        )
    lines += _family_table(names, rows)
    mark = {FLAG: "✔", CLEAN: "✘", ERROR: "E", TIMEOUT: "T", NA: "·"}
    lines += [
        "",
        "## Per trick (✔ flagged, ✘ missed, E error, T timeout, · not run)",
        "",
        "| group | trick | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for kind in ("malicious", "benign"):
        if kind == "benign":
            lines += [
                "",
                "Benign samples flagged by any tool (false positives):",
                "",
                "| group | sample | " + " | ".join(names) + " |",
                "|---|---|" + "---|" * len(names),
            ]
        for row in rows:
            if row["kind"] != kind:
                continue
            if kind == "benign" and not any(row.get(n) == FLAG for n in names):
                continue
            cells = " | ".join(mark.get(str(row.get(n)), "?") for n in names)
            lines.append(f"| {row['group']} | {row['trick']} | {cells} |")
    lines += [
        "",
        "## Performance (wall time, peak RSS)",
        "",
        "| input | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for kind in dict.fromkeys(str(r["input"]) for r in perf):
        what = next(str(r["what"]) for r in perf if r["input"] == kind)
        cells = " | ".join(
            next((_fmt_perf(r) for r in perf if r["input"] == kind and r["tool"] == n), "-")
            for n in names
        )
        lines.append(f"| {kind}: {what} | {cells} |")
    lines += [
        "",
        "Figures quoted in issue 3 for the 20M-int pickle: "
        + "; ".join(f"{k} {v}" for k, v in TARGETS_FROM_ISSUE.items()),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--measure"]:
        return _measure_main(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    parser = argparse.ArgumentParser(description="atlasguard scan vs picklescan/modelscan/fickling")
    parser.add_argument("--quick", action="store_true", help="small performance inputs")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--skip-perf", action="store_true")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per tool run (default 60 per sample, 900 per perf run)",
    )
    parser.add_argument(
        "--perf-inputs", default="checkpoint,ints,tree", help="performance inputs to run"
    )
    parser.add_argument("--jobs", type=int, default=2, help="samples scanned in parallel")
    parser.add_argument("--work", type=Path, default=RESULTS / "scan-work")
    parser.add_argument("--out", type=Path, default=RESULTS / "scan.json")
    args = parser.parse_args(argv)
    command = "python bench/scan/run.py " + shlex.join(argv) if argv else "python bench/scan/run.py"
    all_tools = _tools()
    tools = {n: all_tools[n] for n in args.tools.split(",")}
    for tool in tools.values():
        state = tool.unavailable or f"version {tool.version}"
        print(f"{tool.name}: {state}", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    summaries: list[ToolSummary] = []
    rows: list[dict[str, object]] = []
    if not args.skip_corpus:
        manifest = _build_corpus(args.work)
        summaries, rows = _efficacy(manifest, tools, args.timeout or 60.0, args.jobs)
    perf: list[dict[str, object]] = []
    if not args.skip_perf:
        inputs = _perf_inputs(args.work, args.quick, args.perf_inputs.split(","))
        perf = _perf(tools, inputs, args.timeout or 900.0)
    report = _tables(list(tools), summaries, rows, perf, command)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": command,
                "quick": args.quick,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                "tools": {
                    t.name: {"version": t.version, "unavailable": t.unavailable}
                    for t in tools.values()
                },
                "summary": [asdict(s) for s in summaries],
                "samples": rows,
                "perf": perf,
                "table": report,
            },
            indent=1,
        )
    )
    print(f"\nraw results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
