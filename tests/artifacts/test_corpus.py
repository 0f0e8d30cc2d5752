"""Acceptance test of the scanner on the generated corpora (issue 3).

Every malicious sample must get a finding at ``high`` or above (and at least the severity
its trick calls for), no benign sample may get one, and no payload may ever have run: the
canary file stays absent and the directory the ``shutil.rmtree`` sample targets survives.

The corpus itself is checked too: each malicious raw pickle must be a real, loadable
trick. That check unpickles under an unpickler whose ``find_class`` returns inert
placeholder classes, so names are resolved exactly as ``pickle`` would resolve them while
nothing the pickle names is ever imported or called.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import BENIGN, MALICIOUS, Sample, build_corpus
from tests.corpus.generate import SENTINEL_DIR

SEVERITIES = ("info", "low", "medium", "high", "critical")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], Path]:
    root = tmp_path_factory.mktemp("corpus")
    canary = root / "canary" / "CANARY"
    return build_corpus(root / "samples", canary), canary


@pytest.fixture(scope="module")
def scanned(corpus_dir: tuple[list[Sample], Path]) -> dict[str, tuple[int, list[str]]]:
    """trick -> (highest severity found as an index into SEVERITIES, finding summaries)."""
    scan = pytest.importorskip("atlasguard.artifacts.scan")
    corpus, _canary = corpus_dir
    results = {}
    for sample in corpus:
        reports = scan.scan_path(sample.path)
        levels = [int(f.severity) for r in reports for f in r.findings]
        summary = [
            f"{r.path}: {f.rule}/{f.severity.name.lower()} {f.message[:80]}"
            for r in reports
            for f in r.findings
        ]
        results[sample.trick] = (max(levels, default=-1), summary)
    return results


def _level(name: str) -> int:
    return SEVERITIES.index(name)


def test_every_malicious_sample_is_flagged_high(
    corpus_dir: tuple[list[Sample], Path], scanned: dict[str, tuple[int, list[str]]]
) -> None:
    corpus, _ = corpus_dir
    missed = [
        f"{s.trick} ({s.format}): {scanned[s.trick][1] or 'no finding'}"
        for s in corpus
        if s.kind == MALICIOUS and scanned[s.trick][0] < _level("high")
    ]
    assert not missed, f"{len(missed)} malicious samples not flagged high:\n" + "\n".join(missed)


def test_malicious_samples_reach_their_trick_severity(
    corpus_dir: tuple[list[Sample], Path], scanned: dict[str, tuple[int, list[str]]]
) -> None:
    corpus, _ = corpus_dir
    low = [
        f"{s.trick}: expected {s.min_severity}, got "
        f"{SEVERITIES[scanned[s.trick][0]] if scanned[s.trick][0] >= 0 else 'nothing'}"
        for s in corpus
        if s.kind == MALICIOUS
        and s.min_severity is not None
        and scanned[s.trick][0] < _level(s.min_severity)
    ]
    assert not low, f"{len(low)} samples below their expected severity:\n" + "\n".join(low)


def test_no_benign_sample_is_flagged(
    corpus_dir: tuple[list[Sample], Path], scanned: dict[str, tuple[int, list[str]]]
) -> None:
    corpus, _ = corpus_dir
    flagged = [
        f"{s.trick}: {scanned[s.trick][1]}"
        for s in corpus
        if s.kind == BENIGN and scanned[s.trick][0] >= _level("high")
    ]
    assert not flagged, f"{len(flagged)} benign samples flagged:\n" + "\n".join(flagged)


def test_no_payload_ran(
    corpus_dir: tuple[list[Sample], Path], scanned: dict[str, tuple[int, list[str]]]
) -> None:
    _, canary = corpus_dir
    assert scanned, "the scan produced no results"
    assert not canary.exists(), "a payload ran while scanning: the canary file exists"
    assert (canary.parent / SENTINEL_DIR).is_dir(), "the shutil.rmtree payload ran"


# --------------------------------------------------------------------------- the corpus itself
def test_corpus_covers_every_family(corpus_dir: tuple[list[Sample], Path]) -> None:
    corpus, canary = corpus_dir
    groups = Counter((s.kind, s.group) for s in corpus)
    for group in (
        "pickle",
        "pytorch",
        "joblib",
        "numpy",
        "keras",
        "tensorflow",
        "onnx",
        "gguf",
        "safetensors",
        "archives",
        "extensions",
    ):
        assert groups[(MALICIOUS, group)] > 0, f"no malicious {group} sample"
    for group in (
        "pickle",
        "pytorch",
        "sklearn",
        "numpy",
        "safetensors",
        "onnx",
        "keras",
        "gguf",
        "archives",
    ):
        assert groups[(BENIGN, group)] > 0, f"no benign {group} sample"
    assert len({s.trick for s in corpus}) == len(corpus)
    assert all(s.path.exists() for s in corpus)
    assert not canary.exists()


class _Inert:
    """Stands for whatever a pickle names: accepts any call, attribute or state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __getattr__(self, name: str) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass


class _ResolvingUnpickler(pickle.Unpickler):
    """Records ``module.name`` as pickle resolves it and hands back an inert class."""

    def __init__(self, file: io.BytesIO, seen: list[str]) -> None:
        super().__init__(file)
        self.seen = seen

    def find_class(self, module: str, name: str) -> type:
        # The C unpickler applies the Python 2 mapping inside find_class, which we replace.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        self.seen.append(f"{module}.{name}")
        return type("Placeholder", (_Inert,), {})


def test_malicious_raw_pickles_are_loadable_tricks(corpus_dir: tuple[list[Sample], Path]) -> None:
    corpus, _ = corpus_dir
    broken = []
    for sample in corpus:
        if sample.kind != MALICIOUS or sample.format != "pickle":
            continue
        data = sample.path.read_bytes()
        stream, seen = io.BytesIO(data), list[str]()
        try:
            while stream.tell() < len(data):
                _ResolvingUnpickler(stream, seen).load()
        except ValueError as exc:
            # EXT opcodes name a copyreg registry entry the loading process would own.
            if not (sample.trick.startswith("ext") and "extension code" in str(exc)):
                broken.append(f"{sample.trick}: {exc!r}")
            continue
        except Exception as exc:
            broken.append(f"{sample.trick}: {exc!r}")
            continue
        if not seen:
            broken.append(f"{sample.trick}: resolved no import")
    assert not broken, "corpus pickles that would not load:\n" + "\n".join(broken)
