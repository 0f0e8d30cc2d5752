"""Severities that say what a name can do, the derived allow-list, digest entries (issue 12)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from atlasguard.artifacts._allowlist_derived import DERIVED, VERSIONS
from atlasguard.artifacts.allowlist import (
    AllowList,
    digest_entries,
    parse_allow_entry,
    rated_names,
)
from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.formats.pickle import analyze_pickle
from atlasguard.errors import UsageError
from tests.corpus.benign_libs import save_main_class

ALLOW = AllowList()


@pytest.mark.parametrize(
    ("module", "name", "severity"),
    [
        ("types", "SimpleNamespace", Severity.INFO),
        ("argparse", "Namespace", Severity.INFO),
        ("pathlib", "PosixPath", Severity.INFO),
        ("pathlib._local", "WindowsPath", Severity.INFO),
        ("__future__", "annotations", Severity.INFO),
        ("builtins", "len", Severity.LOW),
        ("builtins", "sorted", Severity.LOW),
        ("pyarrow.lib", "_restore_array", Severity.MEDIUM),
    ],
)
def test_plain_values_and_pure_builtins_are_allowed_and_reported_low(
    module: str, name: str, severity: Severity
) -> None:
    verdict = ALLOW.verdict(module, name)
    assert verdict.allowed
    assert verdict.severity is severity


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pathlib", "Path.write_text"),  # a method is not the value type
        ("pathlib", "Path.unlink"),
        ("types", "FunctionType"),
        ("types", "CodeType"),
        ("builtins", "getattr"),
        ("builtins", "eval"),
        ("builtins", "len.__self__"),
        ("__main__", "system"),
        ("__main__", "os.system"),
        ("__torch__", "os.system"),
        ("numpy.core", "_ufunc_reconstruct"),
        ("numpy._core", "_ufunc_reconstruct"),
        ("torch.jit", "load"),
    ],
)
def test_anything_reaching_code_stays_critical(module: str, name: str) -> None:
    verdict = ALLOW.verdict(module, name)
    assert not verdict.allowed
    assert verdict.severity is Severity.CRITICAL, verdict


def test_training_script_classes_are_a_kind_of_their_own(tmp_path: Path) -> None:
    verdict = ALLOW.verdict("__main__", "Net")
    assert (verdict.allowed, verdict.severity, verdict.rule) == (
        False,
        Severity.MEDIUM,
        "pickle-author-code",
    )
    assert "author's code" in verdict.reason
    # dunder and dotted names in __main__ are not classes of a script
    assert ALLOW.verdict("__main__", "__builtins__").severity is Severity.HIGH
    assert ALLOW.verdict("__main__", "Net.inner").severity is Severity.HIGH
    path = tmp_path / "main.pkl"
    save_main_class(path)
    findings = analyze_pickle(io.BytesIO(path.read_bytes()))
    assert [(f.rule, f.severity) for f in findings] == [("pickle-author-code", Severity.MEDIUM)]
    assert "needs the author's code to load" in findings[0].message


def test_torchscript_types_are_info_unless_they_walk_somewhere() -> None:
    assert ALLOW.verdict("__torch__.torch.nn.modules.linear", "Linear").severity is Severity.INFO
    assert ALLOW.verdict("__torch__", "x y").severity is Severity.HIGH


def test_unknown_names_stay_high() -> None:
    for module, name in (
        ("mypkg.models", "Net"),
        ("xgboost.core", "DMatrix"),
        ("pandas", "read_csv"),
    ):
        assert ALLOW.verdict(module, name).severity is Severity.HIGH, (module, name)


def test_derived_names_are_allowed_and_never_critical_by_themselves() -> None:
    base = AllowList(use_derived=False)
    assert DERIVED and VERSIONS
    for lib, entries in DERIVED.items():
        for entry in entries:
            module, _, name = entry.partition(":")
            assert ALLOW.verdict(module, name).allowed, entry
            assert base.verdict(module, name).severity is not Severity.CRITICAL, (lib, entry)
    # the derivation spans library versions, not only the installed ones
    assert len(VERSIONS["numpy"]) >= 2 and len(VERSIONS["pandas"]) >= 2


def test_rated_table_is_documented() -> None:
    doc = (
        Path(__file__).resolve().parents[2] / "docs" / "mitigations" / "AML.M0016.md"
    ).read_text()
    for module, name in rated_names():
        if module == "__future__":
            continue
        module = module.replace("pathlib._local", "pathlib")  # "also under pathlib._local"
        assert f"{module}.{name}" in doc, (module, name)


def test_digest_entries_parse_and_normalise() -> None:
    digest = "AB" * 32
    entry = parse_allow_entry(f"  sha256:{digest} ")
    assert entry == "sha256:" + digest.lower()
    assert digest_entries([entry, "mypkg.Net"]) == {digest.lower()}
    allow = AllowList([entry, "mypkg.Net"])
    assert allow.digests == {digest.lower()}
    assert allow.extra == {"mypkg.Net"}
    assert allow.verdict("mypkg", "Net").allowed
    for bad in ("sha256:", "sha256:xyz", "sha256:" + "a" * 63, "sha1:" + "a" * 40, "md5:abc"):
        with pytest.raises(UsageError):
            parse_allow_entry(bad)


def test_policy_refuses_a_malformed_allow_entry() -> None:
    from pydantic import ValidationError

    from atlasguard.artifacts.settings import ScanSettings

    ok = ScanSettings(allow=("mypkg.Net", "SHA256:" + "c" * 64))
    assert ok.allow == ("mypkg.Net", "sha256:" + "c" * 64)
    with pytest.raises(ValidationError):
        ScanSettings(allow=("sha256:nothex",))


def test_every_pickled_value_type_loads_as_reported() -> None:
    import argparse
    import types

    for value in (argparse.Namespace(a=1), types.SimpleNamespace(b=2), Path("x/y")):
        findings = analyze_pickle(io.BytesIO(pickle.dumps(value, 4)))
        assert findings and max(f.severity for f in findings) is Severity.INFO


def test_pandas_arrow_strings_pass_the_default_gate_and_not_a_medium_one(tmp_path: Path) -> None:
    """With pyarrow installed pandas pickles string columns as Arrow arrays: the array is
    rebuilt from unvalidated buffers (medium), its companions are plain constructors."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from atlasguard.artifacts.scan import scan_path

    frame = pd.DataFrame({"name": ["a", "b"], "n": [1, 2]}).astype({"name": "string[pyarrow]"})
    path = tmp_path / "frame.pkl"
    path.write_bytes(pickle.dumps(frame, protocol=5))
    findings = [f for report in scan_path(path) for f in report.findings]
    assert findings and max(f.severity for f in findings) == Severity.MEDIUM
    assert all("_restore_array" in f.message for f in findings)
    for module, name in (("pyarrow.lib", "type_for_alias"), ("pyarrow.lib", "py_buffer")):
        assert ALLOW.verdict(module, name).allowed and ALLOW.verdict(module, name).severity is None
    # nothing else of pyarrow is allowed: its IPC readers and extension types stay high
    assert not ALLOW.verdict("pyarrow.lib", "ipc_read_message").allowed
    assert not ALLOW.verdict("pyarrow", "PyExtensionType").allowed
