"""``make bench``: the release gate (issue 15) on generated releases, beside detect-secrets.

Planted items: :func:`atlasguard.release.samples.planted_release` (the issue's list)
and :func:`~atlasguard.release.samples.hidden_release` (other formats, other hiding
places, deeper nesting), each with and without burying them in git history.
Clean releases: a Python package with tests and docs, a web app with images. For
each tool: planted items found, findings on the clean releases, seconds. The anchor
is detect-secrets (the credential scanner atlasguard delegates to), run from
``.anchors-venv`` on the same trees. Writes ``bench/results/release.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ANCHORS = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))
COMMAND = "make bench (bench/release/test_bench_release.py)"


def _detect_secrets(root: Path, history_files: bool = False) -> tuple[set[str], float]:
    """Files detect-secrets flags under ``root`` (``scan --all-files``)."""
    tool = ANCHORS / "bin" / "detect-secrets"
    start = time.perf_counter()
    done = subprocess.run(
        [str(tool), "scan", "--all-files", str(root)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    seconds = time.perf_counter() - start
    results = json.loads(done.stdout)["results"] if done.returncode == 0 else {}
    return {str(Path(p)) for p in results}, seconds


@pytest.mark.bench
@pytest.mark.timeout(1800)
def test_release_gate(tmp_path: Path) -> None:
    pytest.importorskip("detect_secrets")
    if not (ANCHORS / "bin" / "detect-secrets").exists():
        pytest.skip("detect-secrets is not in the anchors venv (make anchors)")
    from atlasguard.release import samples
    from atlasguard.release.check import check_release
    from atlasguard.release.settings import ReleaseSettings

    settings = ReleaseSettings(terms=samples.HIDDEN_TERMS)
    rows = []

    def planted(name: str, build: object, history: bool) -> None:
        root = tmp_path / f"{name}{'-history' if history else ''}"
        root.mkdir()
        expected = build(root)  # type: ignore[operator]
        if history:
            samples.bury_in_history(root, expected)
        start = time.perf_counter()
        report = check_release(root, settings, history=history)
        seconds = time.perf_counter() - start
        found = {(f.rule, f.path.split(":", 1)[1] if history else f.path) for f in report.findings}
        hits = sum(item in found for item in expected)
        flagged, anchor_seconds = _detect_secrets(root)
        anchor_hits = sum(path.split("!")[0] in flagged for _rule, path in expected)
        rows.append(
            {
                "release": f"{name}{' (buried in git history)' if history else ''}",
                "planted": len(expected),
                "atlasguard found": hits,
                "atlasguard seconds": round(seconds, 2),
                "detect-secrets found": anchor_hits if not history else "n/a (working tree only)",
                "detect-secrets seconds": round(anchor_seconds, 2),
                "missed": sorted(p for r, p in expected if (r, p) not in found),
            }
        )

    for history in (False, True):
        planted("issue 15's planted release", samples.planted_release, history)
        planted("other formats and hiding places", samples.hidden_release, history)
    clean = []
    for name, build in (
        ("Python package with tests and docs", samples.clean_python_package),
        ("web app with images", samples.clean_web_app),
    ):
        root = tmp_path / name.replace(" ", "-")
        root.mkdir()
        build(root)
        start = time.perf_counter()
        report = check_release(root, settings)
        seconds = time.perf_counter() - start
        flagged, anchor_seconds = _detect_secrets(root)
        clean.append(
            {
                "release": name,
                "files": report.files,
                "atlasguard findings": len(report.findings),
                "atlasguard seconds": round(seconds, 2),
                "detect-secrets findings": len(flagged),
                "detect-secrets seconds": round(anchor_seconds, 2),
            }
        )
    # real code written by others: installed packages, as a clean release of real shape
    import importlib.util

    real = []
    for name in (
        "requests",
        "click",
        "jinja2",
        "rich",
        "httpx",
        "urllib3",
        "alembic",
        "starlette",
        "typer",
        "werkzeug",
        "fastapi",
        "pydantic",
    ):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent
        start = time.perf_counter()
        report = check_release(root, settings)
        seconds = time.perf_counter() - start
        flagged, anchor_seconds = _detect_secrets(root)
        real.append(
            {
                "package": name,
                "files": report.files,
                "atlasguard findings": len(report.findings),
                "by rule": report.summary()["by_rule"],
                "atlasguard seconds": round(seconds, 2),
                "detect-secrets files flagged": len(flagged),
                "detect-secrets seconds": round(anchor_seconds, 2),
            }
        )
    src = REPO / "src"
    start = time.perf_counter()
    own = check_release(src, settings)
    own_seconds = time.perf_counter() - start
    print("\n| planted release | items | atlasguard found | s | detect-secrets found | s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['release']} | {r['planted']} | {r['atlasguard found']} | "
            f"{r['atlasguard seconds']} | {r['detect-secrets found']} | "
            f"{r['detect-secrets seconds']} |"
        )
    print("\n| clean release | files | atlasguard findings | s | detect-secrets findings | s |")
    print("|---|---|---|---|---|---|")
    for c in clean:
        print(
            f"| {c['release']} | {c['files']} | {c['atlasguard findings']} | "
            f"{c['atlasguard seconds']} | {c['detect-secrets findings']} | "
            f"{c['detect-secrets seconds']} |"
        )
    print(
        "\n| installed package (real code) | files | atlasguard findings | by rule | s "
        "| detect-secrets files flagged | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in real:
        print(
            f"| {r['package']} | {r['files']} | {r['atlasguard findings']} | {r['by rule']} "
            f"| {r['atlasguard seconds']} | {r['detect-secrets files flagged']} "
            f"| {r['detect-secrets seconds']} |"
        )
    print(
        f"\natlasguard's own src/ ({own.files} files, {own.bytes / 1e6:.1f} MB): "
        f"{len(own.findings)} findings in {own_seconds:.1f} s: "
        + ", ".join(f"{f.rule} {f.path}" for f in own.findings)
    )
    print(f"\ncommand: {COMMAND}")
    out = REPO / "bench" / "results" / "release.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "command": COMMAND,
        "planted": rows,
        "clean": clean,
        "own_src_findings": len(own.findings),
    }
    out.write_text(json.dumps(body, indent=1))
    assert all(r["atlasguard found"] == r["planted"] for r in rows), rows
    assert all(c["atlasguard findings"] == 0 for c in clean), clean
