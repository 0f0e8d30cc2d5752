"""The registry's scan on push picks up code folders and digest entries (issue 12).

The registry (like the gateway's load gate) calls ``scan_path(path, allow=...)`` with the
``allow`` tuple of ``[controls.scan]``; a folder whose config names code is refused
until its digest is in that tuple.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atlasguard.errors import UnsafeArtifactError
from tests.corpus.code_folders import hf_folder, write_tree
from tests.dbfixtures import database
from tests.registry.conftest import make_registry


def test_push_of_a_code_folder_is_refused_until_its_digest_is_allowed(tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "model", hf_folder())
    (tmp_path / "db1").mkdir()
    with database("sqlite", tmp_path / "db1") as engine:
        reg = make_registry(engine, tmp_path / "r1")
        reg.identity.ensure_principal("ops", admin=True)
        with pytest.raises(UnsafeArtifactError, match="model-code") as refused:
            reg.push("ops", "coder", folder, "model")
        reg.audit.close()
    digest = re.search(r"sha256:([0-9a-f]{64})", str(refused.value))
    assert digest
    (tmp_path / "db2").mkdir()
    with database("sqlite", tmp_path / "db2") as engine:
        reg = make_registry(engine, tmp_path / "r2", allow=(f"sha256:{digest.group(1)}",))
        reg.identity.ensure_principal("ops", admin=True)
        version = reg.push("ops", "coder", folder, "model")
        assert version.ref.name == "coder"
        reg.audit.close()
