"""The scanner reads what the loaders read (issue 12 §1): every differential sample is caught.

The samples live in ``tests/corpus/differentials.py`` (shared with
``bench/scan/differentials.py``, which runs the anchors on them); none is loaded.
"""

from __future__ import annotations

import io
import pickle
import tarfile

import pytest

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.scan import scan_stream
from tests.corpus import differentials as d


def _findings(data: bytes) -> list[Finding]:
    return scan_stream(io.BytesIO(data))[1]


def _runs_system(findings: list[Finding]) -> bool:
    return any(f.severity >= Severity.HIGH and "system" in f.message for f in findings)


@pytest.mark.parametrize("sample", d.SAMPLES, ids=lambda s: s.name)
def test_every_differential_sample_is_caught(sample: d.Differential) -> None:
    findings = _findings(sample.build())
    assert _runs_system(findings), [(f.rule, f.severity, f.message) for f in findings]


def test_a_pickle_with_an_hdf5_signature_is_a_polyglot() -> None:
    data = d.hdf5_in_a_string()
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"
    findings = _findings(data)
    assert any(f.rule == "polyglot" and f.severity is Severity.HIGH for f in findings)


def test_the_tar_sample_is_one_tarfile_reads() -> None:
    with tarfile.open(fileobj=io.BytesIO(d.tar_header_pickle() + b"\0" * 1024)) as tar:
        assert len(tar.getmembers()) == 1


def test_zip_readers_that_disagree_are_high() -> None:
    findings = _findings(d.cut_short_end_record())
    assert any(f.rule == "zip-readers-disagree" and f.severity is Severity.HIGH for f in findings)


def test_benign_files_that_begin_with_long_strings_are_not_polyglots() -> None:
    assert _findings(pickle.dumps(["x" * 10_000, list(range(10))], protocol=2)) == []


def test_an_unreadable_pickle_inside_a_legacy_torch_file_is_high_never_silent() -> None:
    """torch.load unpickles a legacy file's first five pickles: a part the scanner cannot
    read, in any of them, is a high finding even before any import was seen."""
    findings = _findings(d.legacy_torch_fourth_pickle())
    assert any(f.severity >= Severity.HIGH for f in findings), findings


@pytest.mark.parametrize(
    "sample", [s for s in d.SAMPLES if s.loader == "pickle.load"], ids=lambda s: s.name
)
def test_the_unpickler_really_runs_each_pickle_sample(sample: d.Differential) -> None:
    """The same bytes with a harmless callable (len) in place of os.system: pickle.loads
    runs them to the end, so the real sample's payload would run."""
    harmless = (
        sample.build()
        .replace(b"cos\nsystem\n", b"cbuiltins\nlen\n")
        .replace(b"\x8c\x02os\x8c\x06system", b"\x8c\x08builtins\x8c\x03len")
    )
    assert b"system" not in harmless
    assert pickle.loads(harmless) == 4  # len('true'); nothing else is called


def test_two_data_formats_at_once_are_a_medium_polyglot() -> None:
    """An .npy array whose bytes put the HDF5 signature at 512: no view runs code."""
    np = pytest.importorskip("numpy")
    buf = io.BytesIO()
    np.save(buf, np.zeros(2048, dtype=np.uint8))
    data = bytearray(buf.getvalue())
    data[512:520] = b"\x89HDF\r\n\x1a\n"
    findings = _findings(bytes(data))
    assert [(f.rule, f.severity) for f in findings if f.rule == "polyglot"] == [
        ("polyglot", Severity.MEDIUM)
    ]


def _harmless(data: bytes) -> bytes:
    out = data.replace(b"cos\nsystem\n", b"cbuiltins\nlen\n").replace(
        b"\x8c\x02os\x94\x8c\x06system", b"\x8c\x08builtins\x94\x8c\x03len"
    )
    assert b"system" not in out
    return out


@pytest.mark.parametrize(
    "sample",
    [s for s in d.SAMPLES if s.loader != "pickle.load" and s.name != "zip-cut-short-end-record"],
    ids=lambda s: s.name,
)
def test_the_real_loader_runs_each_other_sample(sample: d.Differential) -> None:
    """With len in place of os.system, the named loader really unpickles the payload."""
    data = io.BytesIO(_harmless(sample.build()))
    if sample.name == "zip-stored-reads-on":  # offsets depend on the payload's length
        data = io.BytesIO(d.stored_reads_on(b"cbuiltins\nlen\n(S'true'\ntR."))
    if sample.loader.startswith("numpy.load"):
        np = pytest.importorskip("numpy")
        assert np.load(data, allow_pickle=True) == 4
    elif sample.loader == "joblib.load":
        joblib = pytest.importorskip("joblib")
        assert joblib.load(data)["w"].tolist() == [4]
    else:
        torch = pytest.importorskip("torch")
        assert torch.load(data, weights_only=False) == 4
