"""The scanner names what Transformers really imports (differential, issue 12).

Transformers is run, offline, on generated, payload-free model folders (its code only
defines a configuration class), in a child process so its module cache and import
path stay out of the test process. Every module file it imports must be among the
code files the ``model-code`` finding names (and so covered by its digest); a folder
whose configuration names no code makes it import nothing, and the scanner report
nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atlasguard.artifacts.scan import scan_path

pytest.importorskip("transformers")

_LOADER = """
import json, sys
from transformers import AutoConfig
AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)
files = sorted(
    m.__file__ for name, m in list(sys.modules.items())
    if name.startswith("transformers_modules.") and getattr(m, "__file__", None)
    and not m.__file__.endswith("__init__.py")
)
print(json.dumps([f.rsplit("/", 1)[1] for f in files]))
"""

CONFIG_CLASS = b"from transformers import PretrainedConfig\n%s\n\nclass XConfig(PretrainedConfig):\n    model_type = 'xtest'\n"


def imported_by_transformers(folder: Path, cache: Path) -> list[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HF_")},
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(cache),
        "HF_HOME": str(cache / "home"),
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "helper_import",
    [b"from .helpers import thing", b"from .chain import thing"],
)
def test_every_module_transformers_imports_is_named(tmp_path: Path, helper_import: bytes) -> None:
    folder = tmp_path / "xmodel"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "xtest", "auto_map": {"AutoConfig": "configuration_x.XConfig"}})
    )
    (folder / "configuration_x.py").write_bytes(CONFIG_CLASS % helper_import)
    (folder / "helpers.py").write_bytes(b"thing = 1\n")
    (folder / "chain.py").write_bytes(b"from .helpers import thing\n")  # a transitive import
    (folder / "sub" / "stray.py").write_bytes(b"x = 2\n")
    (folder / "unused.py").write_bytes(b"raise SystemExit('never imported')\n")
    imported = imported_by_transformers(folder, tmp_path / "cache")
    assert "configuration_x.py" in imported and len(imported) >= 2
    findings = [f for r in scan_path(folder) for f in r.findings if f.rule == "model-code"]
    assert len(findings) == 1
    for name in imported:
        assert name in findings[0].message, (name, findings[0].message)


def test_a_plain_folder_imports_nothing_and_is_clean(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (folder / "modeling_stray.py").write_bytes(b"raise SystemExit('never imported')\n")
    assert imported_by_transformers(folder, tmp_path / "cache") == []
    assert not [f for r in scan_path(folder) for f in r.findings]
