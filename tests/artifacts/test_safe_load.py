"""Safe loading: refuse before unpickling, restricted find_class, torch weights-only."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from atlasguard.artifacts.safe_load import CONTROLS, RestrictedUnpickler, safe_load, safe_torch_load
from atlasguard.errors import UnsafeArtifactError, UsageError


class Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def test_plain_pickle_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.pkl"
    value = {"a": [1, 2.5, None], "b": {1, 2}, "c": b"x"}
    for protocol in range(6):
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        assert safe_load(path) == value


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(UnsafeArtifactError, match="system"):
        safe_load(path)
    assert not marker.exists()


def test_restricted_unpickler_refuses_what_the_scan_would_miss(tmp_path: Path) -> None:
    import io

    with pytest.raises(UnsafeArtifactError):
        RestrictedUnpickler(io.BytesIO(b"cmypkg\nThing\n.")).load()
    with pytest.raises(UnsafeArtifactError):
        RestrictedUnpickler(io.BytesIO(b"\x80\x04\x8c\x05torch\x8c\tos.system\x93.")).load()
    value = RestrictedUnpickler(io.BytesIO(b"c__builtin__\nset\n(]tR."), allow=()).load()
    assert value == set()


def test_unknown_class_needs_an_explicit_allow(tmp_path: Path) -> None:
    path = tmp_path / "dt.pkl"
    import fractions

    path.write_bytes(pickle.dumps(fractions.Fraction(1, 3)))
    assert safe_load(path) == fractions.Fraction(1, 3)
    import ipaddress

    path.write_bytes(pickle.dumps(ipaddress.ip_address("127.0.0.1")))
    with pytest.raises(UnsafeArtifactError):
        safe_load(path)
    assert safe_load(path, allow=["ipaddress.IPv4Address"]) == ipaddress.ip_address("127.0.0.1")


def test_allow_unsafe_logs_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import ipaddress

    path = tmp_path / "ip.pkl"
    path.write_bytes(pickle.dumps(ipaddress.ip_address("10.0.0.1")))
    with caplog.at_level(logging.WARNING, logger="atlasguard"):
        assert safe_load(path, allow_unsafe=True) == ipaddress.ip_address("10.0.0.1")
    assert "allow_unsafe" in caplog.text


def test_joblib_with_inline_arrays(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).random((30, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    path = tmp_path / "m.joblib"
    joblib.dump(
        {"model": model, "arr": np.arange(7), "obj": np.array([1, "a"], dtype=object)}, path
    )
    loaded = safe_load(path)
    assert (loaded["arr"] == np.arange(7)).all()
    assert (loaded["model"].coef_ == model.coef_).all()
    compressed = tmp_path / "c.joblib"
    joblib.dump({"arr": np.arange(5)}, compressed, compress=3)
    assert (safe_load(compressed)["arr"] == np.arange(5)).all()
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.joblib"
    joblib.dump({"arr": np.arange(5), "x": Touch(marker)}, evil)
    with pytest.raises(UnsafeArtifactError):
        safe_load(evil)
    assert not marker.exists()


def test_torch_checkpoints(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU())
    for zip_format in (True, False):
        path = tmp_path / f"sd{zip_format}.pt"
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zip_format)
        loaded = safe_load(path)
        assert torch.equal(loaded["0.weight"], net.state_dict()["0.weight"])
        assert set(safe_torch_load(path)) == set(net.state_dict())
    full = tmp_path / "full.pt"
    torch.save(net, full)  # a whole nn.Module of standard layers: on our allow-list
    assert isinstance(safe_load(full), torch.nn.Sequential)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Touch(marker)}, evil)
    with pytest.raises(UnsafeArtifactError):
        safe_torch_load(evil)
    with pytest.raises(UnsafeArtifactError):
        safe_load(evil)
    assert not marker.exists()


def test_unsupported_formats_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text\n")
    with pytest.raises(UsageError):
        safe_load(path)


def test_control() -> None:
    (control,) = CONTROLS
    assert control.key == "safe_load" and control.mitigates == frozenset({"AML.M0011"})
