"""The layers: the pipeline runs without HTTP, and reading a policy starts no server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import atlasguard

PACKAGE = Path(atlasguard.__file__).parent
LOWER = (
    "runtime",
    "artifacts",
    "audit",
    "identity",
    "catalog",
    "db",
    "data",
    "models",
    "release",
    "labs",
)
UPPER = ("atlasguard.gateway", "atlasguard._cli")


def _imports(path: Path, root: Path = PACKAGE.parent) -> list[tuple[int, str]]:
    """Every module ``path`` imports (relative imports resolved), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_the_gateway_or_the_cli(layer: str) -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line}: {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for line, name in _imports(path)
        if name.startswith(UPPER)
    ]
    assert offenders == []


def test_the_layer_check_sees_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "atlasguard" / "runtime" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ..gateway import http\nimport atlasguard._cli.main\n", encoding="utf-8")
    names = [name for _, name in _imports(probe, tmp_path)]
    assert names == ["atlasguard.gateway", "atlasguard._cli.main"]


def test_reading_a_policy_imports_no_server_database_or_numpy() -> None:
    code = (
        "import sys\n"
        "from atlasguard.policy import Policy, load_policy_text\n"
        "from atlasguard.runtime.plan import plan\n"
        "p = Policy.default(); plan(p)\n"
        "heavy = ('fastapi', 'starlette', 'uvicorn', 'sqlalchemy', 'alembic', 'numpy', "
        "'limits', 'redis', 'onnxruntime', 'torch')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
