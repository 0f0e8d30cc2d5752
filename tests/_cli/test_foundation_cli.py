"""The command line of the foundation: catalog, policy, coverage, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SHARED_SEEDS


def test_catalog_list_json_is_twenty_objects_in_id_order(cli: Any) -> None:
    res = cli("catalog", "list", "--format", "json")
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["id"] for r in rows] == [f"AML.M{n:04d}" for n in range(20)]
    for row in rows:
        assert {"id", "name", "uuid", "techniques"} <= set(row)
        assert all(t.startswith("AML.T") for t in row["techniques"])
    seed = next(iter(SHARED_SEEDS.glob("*.txt")), None)
    if seed is not None:
        text = seed.read_text(encoding="utf-8")
        for row in rows:
            assert f"UUID {row['uuid']} " in text


def test_catalog_list_all_has_35(cli: Any) -> None:
    res = cli("catalog", "list", "--all", "--format", "json")
    assert res.exit_code == 0
    assert len(json.loads(res.stdout)) == 35


def test_catalog_show_reads_well(cli: Any) -> None:
    res = cli("catalog", "show", "AML.M0011")
    assert res.exit_code == 0
    for expected in (
        "Restrict Library Loading",
        "AML.T0011.000",
        "Restrict library loading by",
        "In atlasguard",
        "allow-list unpickler",
    ):
        assert expected in res.stdout


def test_unknown_id_is_a_usage_error(cli: Any) -> None:
    res = cli("catalog", "show", "AML.M0999")
    assert res.exit_code == 2
    assert "no ATLAS mitigation with id 'AML.M0999'" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_option_is_a_usage_error(cli: Any) -> None:
    assert cli("catalog", "list", "--format", "yaml").exit_code == 2
    assert cli("no-such-command").exit_code == 2


def test_policy_init_then_check(cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "atlasguard.toml"
    assert cli("policy", "init", str(target)).exit_code == 0
    assert target.read_text(encoding="utf-8").startswith("# atlasguard policy")
    again = cli("policy", "init", str(target))
    assert again.exit_code == 2 and "already exists" in again.stderr
    res = cli("policy", "check", str(target))
    assert res.exit_code == 0 and "ok" in res.stdout


def test_bad_policy_gives_one_line_and_exit_2(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[deployment]\nname = 42\n", encoding="utf-8")
    for args in (("policy", "check", str(bad)), ("coverage", "--policy", str(bad))):
        res = cli(*args)
        assert res.exit_code == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert f"{bad}:2: deployment.name" in lines[0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_any_bytes_as_policy_give_exit_0_or_one_line_and_2(
    cli: Any, tmp_path: Path, data: bytes
) -> None:
    f = tmp_path / "gen.toml"
    f.write_bytes(data)
    res = cli("policy", "check", str(f))
    assert res.exit_code in (0, 2)
    if res.exit_code == 2:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_coverage_formats(cli: Any, tmp_path: Path) -> None:
    table = cli("coverage")
    assert table.exit_code == 0 and "AML.M0019" in table.stdout
    doc = json.loads(cli("coverage", "--format", "json").stdout)
    assert len(doc["mitigations"]) == 20 and len(doc["techniques"]) == 170
    misp = json.loads(cli("coverage", "--format", "misp").stdout)
    assert misp["type"] == "mitre-atlas-course-of-action" and len(misp["values"]) == 20
    out = tmp_path / "layer.json"
    assert cli("coverage", "--format", "navigator", "--output", str(out)).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["domain"] == "atlas-atlas"


def test_python_dash_m_and_version() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "atlasguard", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.startswith("atlasguard ")


def test_the_command_table_names_what_each_module_adds() -> None:
    """`run` imports a command's module alone: the table must match what modules register."""
    import importlib

    import typer

    from atlasguard._cli import main

    for module in main._COMMAND_MODULES:
        probe = typer.Typer()
        importlib.import_module(module).register(probe)
        added = {c.name for c in probe.registered_commands} | {
            g.name for g in probe.registered_groups
        }
        assert added == {n for n, m in main._COMMANDS.items() if m == module}, module


def test_a_command_starts_without_the_other_commands_modules() -> None:
    """`atlasguard scan` imports neither the server nor the database layer."""
    code = (
        "import sys\n"
        "from atlasguard._cli.main import run\n"
        "rc = run(['scan', sys.argv[1]])\n"
        "heavy = [m for m in ('uvicorn', 'fastapi', 'sqlalchemy', 'atlasguard.gateway',"
        " 'atlasguard._cli.serve', 'atlasguard.registry') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, __file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_help_still_lists_every_command(cli: Any) -> None:
    from atlasguard._cli import main

    res = cli("--help")
    assert res.exit_code == 0
    for name in main._COMMANDS:
        assert name in res.stdout
