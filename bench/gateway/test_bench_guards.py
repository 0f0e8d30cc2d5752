"""``make bench``: the quota race (AML.M0004) and output obfuscation vs extraction (AML.M0002).

The quota race needs the Redis at 127.0.0.1:6379; atlasguard must admit exactly
``min(burst, daily)`` of the raced requests and charge nothing for the refused
ones. The ``limits``-based baselines are measured and printed, not asserted: a
race either happens on a given run or does not.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    # A plain import from sys.path: spawned worker processes re-import the module by
    # name to find their target function, which a module loaded from a file spec
    # would not allow.
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(name)


@pytest.mark.bench
@pytest.mark.services
def test_quota_race_is_exact() -> None:
    race = _load("quota_race")
    row = race.race("atlasguard", burst=200, daily=300, attempts=400)
    print(row)
    assert row["admitted"] == 200
    assert row["charged_daily"] == 200


@pytest.mark.bench
def test_output_policies_cut_extraction_fidelity() -> None:
    bench = _load("output_extraction")
    result = bench.run(budget=50, seeds=3)
    rows = result["policies"]
    print(rows)
    assert rows["full"]["label_flip_rate"] == 0.0
    assert rows["noise@0.02"]["label_flip_rate"] < 0.01
    # Exact scores let a log-linear surrogate solve for the victim; noise breaks that.
    assert rows["noise@0.02"]["fidelity_logit"] < rows["full"]["fidelity_logit"] - 0.3


def _script(name: str, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run one of this folder's bench scripts; its output is printed and returned."""
    out = subprocess.run(
        [sys.executable, str(HERE / name), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    print(out.stdout)
    return out


@pytest.mark.bench
@pytest.mark.services
def test_audit_rate_prints_sqlite_and_postgresql() -> None:
    _load("audit_rate")
    out = _script("audit_rate.py", "--records", "2000", timeout=600)
    assert "PostgreSQL" in out.stdout and "SQLite" in out.stdout


@pytest.mark.bench
@pytest.mark.services
def test_gateway_throughput_against_a_bare_endpoint() -> None:
    """Issue 10, targets 1 and 2, side by side with the bare endpoint and the code before.

    Prints the table and how far each figure is from its target (>= 0.8x the bare
    throughput, added p50 < 1 ms and p99 < 3 ms; 2 workers >= 1.6x one);
    docs/mitigations/AML.M0019.md records the figures and, where a target is
    missed, the profile that shows why. Asserts what must hold on any machine:
    every request answered, and the two workers admit exactly a key's quota.
    """
    bench = _load("throughput")
    results = bench.main(["--rounds", "3", "--workers", "2", "--before", "b167472"])
    assert results["errors"] == 0
    assert results["quota_admitted"] == 300


@pytest.mark.bench
@pytest.mark.services
def test_every_step_of_a_request_is_within_its_budget() -> None:
    """Issue 10, target 4: the per-guard budget table; a step over budget, or without one, fails."""
    summary = _load("guard_budget").main(["--n", "3000"])
    assert summary["missing"] == []
    assert summary["over"] == []


@pytest.mark.bench
def test_protect_cost_in_process() -> None:
    """Issue 10, target 3: prints what atlasguard.protect adds per call (8 callers)."""
    results = _load("protect_cost").main(["--calls", "4000", "--rounds", "5"])
    assert results["records"] >= 5 * 4000  # every call audited
    assert results["added_us"] > 0


@pytest.mark.bench
def test_one_statement_commits_suffer_less_from_a_busy_gil() -> None:
    """The reason the audit log writes a SQLite batch in one call (printed, then checked)."""
    results = _load("gil_commit").main(["--commits", "200", "--busy", "2"])
    assert results["1 statement, 2 busy threads"] < results["4 statements, 2 busy threads"]


@pytest.mark.bench
@pytest.mark.services
def test_two_processes_on_postgresql_and_redis_next_to_sqlite() -> None:
    """Issue 10, many machines: req/s and audit records/s of each set-up; the log stays dense."""
    results = _load("cluster").main(["--seconds", "10"])
    for row in results.values():
        assert row["dense"]
        assert row["records_per_s"] >= row["rps"] * 0.9  # every answered request is recorded


@pytest.mark.bench
@pytest.mark.services
def test_console_reads_stay_bounded_as_the_log_grows() -> None:
    """The console's pages read a bounded number of the newest records: their cost at
    100,000 records stays within twice their cost at 20,000."""
    out = _script("console_reads.py", "--records", "20000,100000", timeout=1200)
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for line in out.stdout.splitlines()[1:]:
        parts = line.split()
        cells = dict(zip(parts[3::3], map(float, parts[4::3]), strict=False))
        rows[(parts[0], parts[1])] = cells
    for store in ("sqlite", "postgresql"):
        small, large = rows[(store, "20000")], rows[(store, "100000")]
        assert large["traffic"] <= 2 * small["traffic"] + 50, (store, small, large)
