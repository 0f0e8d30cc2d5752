"""joblib's old NDArrayWrapper makes joblib.load unpickle another file (issue 12 §1).

``joblib.load`` calls ``numpy.load(<folder>/<filename>, allow_pickle=True)`` for
each wrapper: a finding unless that file is a sibling scanned in the same run.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.scan import scan_paths

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")


def _legacy(path: Path, filename: str) -> Path:
    """A pickle as joblib < 0.10 wrote it: the array lives in a file the wrapper names."""
    from joblib.numpy_pickle import NDArrayWrapper

    wrapper = NDArrayWrapper.__new__(NDArrayWrapper)
    wrapper.__dict__.update(filename=filename, subclass=np.ndarray, allow_mmap=False)
    data = pickle.dumps({"w": wrapper}, protocol=2)
    path.write_bytes(data.replace(b"joblib.numpy_pickle_compat", b"joblib.numpy_pickle"))
    return path


def _rules(report: object) -> dict[str, Severity]:
    return {f.rule: f.severity for f in report.findings}  # type: ignore[attr-defined]


def test_joblib_load_really_opens_the_named_file(tmp_path: Path) -> None:
    np.save(tmp_path / "arr.npy", np.arange(3))
    model = _legacy(tmp_path / "model.pkl", "arr.npy")
    with pytest.warns(DeprecationWarning, match="joblib version less than 0.10"):
        assert joblib.load(model)["w"].tolist() == [0, 1, 2]


def test_a_sibling_scanned_in_the_same_run_is_info(tmp_path: Path) -> None:
    np.save(tmp_path / "arr.npy", np.arange(3))
    _legacy(tmp_path / "model.pkl", "arr.npy")
    reports = {Path(r.path).name: r for r in scan_paths([tmp_path])}
    assert _rules(reports["model.pkl"]) == {"joblib-sibling-file": Severity.INFO}
    assert reports["arr.npy"].findings == ()


def test_the_same_file_scanned_alone_is_high(tmp_path: Path) -> None:
    np.save(tmp_path / "arr.npy", np.arange(3))
    model = _legacy(tmp_path / "model.pkl", "arr.npy")
    (report,) = scan_paths([model])
    assert _rules(report) == {"joblib-sibling-file": Severity.HIGH}
    assert "scan the folder" in report.findings[0].message


def test_a_missing_sibling_is_high(tmp_path: Path) -> None:
    _legacy(tmp_path / "model.pkl", "gone.npy")
    (report,) = scan_paths([tmp_path])
    assert _rules(report) == {"joblib-sibling-file": Severity.HIGH}


@pytest.mark.parametrize("name", ["/etc/hosts", "../x/arr.npy", "sub/arr.npy", "a\\b", "", ".."])
def test_a_name_outside_the_folder_is_high(tmp_path: Path, name: str) -> None:
    _legacy(tmp_path / "model.pkl", name)
    (report,) = scan_paths([tmp_path])
    assert _rules(report) == {"joblib-external-file": Severity.HIGH}


def test_a_wrapper_naming_its_own_file_is_high(tmp_path: Path) -> None:
    _legacy(tmp_path / "model.pkl", "model.pkl")
    (report,) = scan_paths([tmp_path])
    assert _rules(report) == {"joblib-external-file": Severity.HIGH}
    assert "this file itself" in report.findings[0].message


def test_a_name_the_analysis_cannot_reconstruct_is_high(tmp_path: Path) -> None:
    data = _legacy(tmp_path / "model.pkl", "arr.npy").read_bytes()
    # the filename comes from a call the analysis does not fold
    data = data.replace(b"X\x07\x00\x00\x00arr.npy", b"cbuiltins\ninput\n)R")
    (tmp_path / "model.pkl").write_bytes(data)
    (report,) = scan_paths([tmp_path])
    assert _rules(report).get("joblib-external-file") is Severity.HIGH
