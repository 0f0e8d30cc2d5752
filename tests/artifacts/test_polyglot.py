"""Files that are two formats at once: the dispatcher scans both."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.scan import scan_path

EVIL = b"cos\nsystem\n(S'touch /nonexistent/canary'\ntR."


def test_zip_appended_to_a_harmless_pickle_is_scanned(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", EVIL)
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2) + buf.getvalue())
    assert zipfile.is_zipfile(path)  # what loaders that use zipfile would see
    (report,) = scan_path(path)
    assert any(f.severity >= Severity.CRITICAL for f in report.findings), report.findings


def test_hdf5_behind_a_user_block_is_scanned(tmp_path: Path) -> None:
    h5py = __import__("pytest").importorskip("h5py")
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "Lambda",
                    "config": {
                        "name": "l",
                        "function": ["4wEAAAAAAAAA", None, None],
                        "function_type": "lambda",
                    },
                }
            ]
        },
    }
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", userblock_size=8192) as f:
        f.attrs["model_config"] = json.dumps(config)
    with path.open("r+b") as f:  # a harmless-looking text header in the user block
        f.write(b"just some notes\n")
    (report,) = scan_path(path)
    assert any(f.rule == "keras-lambda" for f in report.findings), report.findings
