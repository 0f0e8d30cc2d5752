"""``atlasguard scan``: formats, thresholds, --allow, --output, exit codes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import click
import pytest
import typer

from atlasguard._cli.scan import register
from atlasguard.errors import AtlasguardError

try:  # typer >= 0.29 vendors click
    from typer._click import ClickException as _TyperClickException

    _TYPER_CLICK: tuple[type[Exception], ...] = (_TyperClickException,)
except ImportError:  # pragma: no cover - older typer uses click itself
    _TYPER_CLICK = ()

EVIL = b"\x80\x02cposix\nsystem\n(S'touch /nonexistent/x'\ntR."
CUSTOM = b"\x80\x02cmypkg\nNet\n)\x81."


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Mirror ``atlasguard._cli.main.run`` on an app holding only ``scan``."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Root."""

    capsys.readouterr()
    try:
        result = app(args=list(args), standalone_mode=False, prog_name="atlasguard")
        code = result if isinstance(result, int) else 0
    except (click.exceptions.Exit, typer.Exit) as exc:
        code = int(exc.exit_code)
    except (click.ClickException, *_TYPER_CLICK):
        code = 2
    except AtlasguardError as exc:
        code = exc.exit_code
    return code, capsys.readouterr().out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "clean.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
    (tmp_path / "custom.bin").write_bytes(CUSTOM)
    return tmp_path


def test_clean_exits_zero(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out = run(capsys, "scan", str(tree / "clean.pkl"))
    assert code == 0 and "1 file(s) scanned, 0 with findings" in out


def test_findings_exit_one_and_fail_on(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert run(capsys, "scan", str(tree))[0] == 1
    assert run(capsys, "scan", str(tree), "--fail-on", "critical")[0] == 0
    assert run(capsys, "scan", str(tree), "--allow", "mypkg.Net")[0] == 0
    (tree / "evil").write_bytes(EVIL)
    assert run(capsys, "scan", str(tree), "--fail-on", "critical")[0] == 1


def test_json_and_sarif_output(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    code, out = run(capsys, "scan", str(tree), "--format", "json")
    assert code == 1
    doc = json.loads(out)
    assert {Path(d["path"]).name for d in doc} == {"clean.pkl", "custom.bin"}
    target = tree.parent / f"{tree.name}.sarif"
    code, out = run(capsys, "scan", str(tree), "--format", "sarif", "--output", str(target))
    assert code == 1 and out == ""
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    assert run(capsys, "scan", str(tree / "missing"))[0] == 2
    assert run(capsys, "scan", str(tree), "--fail-on", "bogus")[0] == 2
    assert run(capsys, "scan", str(tree), "--fail-on", "info")[0] == 2
    assert run(capsys, "scan", str(tree), "--allow", "not an entry")[0] == 2
    assert run(capsys, "scan", str(tree), "--format", "xml")[0] == 2
