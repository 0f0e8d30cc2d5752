"""Zero false alarms on ordinary artifacts of every supported library (issue 12).

The corpus is generated here by the real libraries installed (scikit-learn, XGBoost,
LightGBM, CatBoost, statsmodels, pandas, NumPy, PyTorch with TorchScript, Keras),
each object saved as its users save it (``pickle`` with several protocols, joblib,
``torch.save`` in both formats). None may get a finding at ``high`` or above, and the
scanner must never fail on one (no ``unreadable`` finding). The names their pickles
import must all be on the shipped, derived allow-list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.scan import scan_path
from tests.corpus._build import Sample
from tests.corpus.benign_libs import build_library_samples, library_objects, main_class_sample
from tests.corpus.derive_allowlist import derive, read_derived


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    return library_objects()


@pytest.fixture(scope="module")
def samples(
    objects: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> list[Sample]:
    return build_library_samples(tmp_path_factory.mktemp("libs"), objects=objects)


def test_every_supported_library_is_in_the_corpus(samples: list[Sample]) -> None:
    groups = {s.group for s in samples}
    for lib in (
        "numpy",
        "sklearn",
        "xgboost",
        "lightgbm",
        "catboost",
        "statsmodels",
        "pandas",
        "torch",
    ):
        assert f"lib-{lib}" in groups, lib
    assert "lib-torchscript" in groups and "lib-keras" in groups
    assert len(samples) > 300


def test_no_ordinary_artifact_is_flagged(samples: list[Sample]) -> None:
    flagged = []
    for sample in samples:
        for report in scan_path(sample.path):
            bad = [
                f for f in report.findings if f.severity >= Severity.HIGH or f.rule == "unreadable"
            ]
            if bad:
                flagged.append(
                    f"{sample.trick}: {[(f.rule, f.severity.label, f.message[:90]) for f in bad]}"
                )
    rate = len(flagged) / len(samples)
    assert not flagged, (
        f"false-positive rate {rate:.1%} ({len(flagged)}/{len(samples)}):\n" + "\n".join(flagged)
    )


def test_torchscript_sources_are_not_read_as_pickles(samples: list[Sample]) -> None:
    scripted = [s for s in samples if s.group == "lib-torchscript"]
    assert scripted
    for sample in scripted:
        (report,) = scan_path(sample.path)
        assert all(f.severity <= Severity.INFO for f in report.findings), report.findings
        assert not any(
            "/code/" in str(f.location) and f.rule.startswith("pickle") for f in report.findings
        )


def test_training_script_class_is_medium(tmp_path: Path) -> None:
    sample = main_class_sample(tmp_path)
    (report,) = scan_path(sample.path)
    assert report.max_severity is Severity.MEDIUM
    assert not report.fails(Severity.HIGH)
    assert report.findings[0].rule == "pickle-author-code"


def test_shipped_allow_list_covers_the_installed_versions(
    objects: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.corpus.derive_allowlist as derive_mod

    monkeypatch.setattr(derive_mod, "library_objects", lambda *a, **k: objects)
    derived, refused = derive(exhaustive=False)
    shipped, _versions = read_derived()
    missing = sorted(
        f"{lib}: {m}.{n}"
        for lib, names in derived.items()
        for m, n in names - shipped.get(lib, set())
    )
    assert not missing, "run `python -m tests.corpus.derive_allowlist`; new names:\n" + "\n".join(
        missing
    )
    assert not refused, refused
