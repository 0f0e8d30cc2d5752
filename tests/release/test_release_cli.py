"""``atlasguard release-check`` as a user runs it: exit codes, formats, SARIF that validates."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard._cli.main import run as cli
from atlasguard.release import samples as builders

pytest.importorskip("detect_secrets")
pytest.importorskip("PIL")

REPO = Path(__file__).resolve().parents[2]
SARIF_TOOL = REPO / ".tools/node_modules/@microsoft/sarif-multitool-linux"
Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli(["release-check", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_exit_1_with_findings_0_when_clean(capsys: Capture, tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    dirty.mkdir()
    builders.clean_python_package(clean)
    builders.planted_release(dirty)
    code, out = run(capsys, str(clean))
    assert code == 0, out
    assert "0 open finding(s)" in out
    code, out = run(capsys, str(dirty))
    assert code == 1
    assert "models/classifier.onnx" in out and "release blocked" in out


def test_json_report_and_the_allow_list_file(capsys: Capture, tmp_path: Path) -> None:
    builders.planted_release(tmp_path)
    code, out = run(capsys, str(tmp_path), "--format", "json")
    body = json.loads(out)
    assert code == 1 and body["summary"]["open"] == len(body["findings"])
    for f in body["findings"]:
        assert {"rule", "severity", "path", "message", "mitigations", "techniques"} <= set(f)
        assert all(m.startswith("AML.M") for m in f["mitigations"])
    (tmp_path / ".atlasguard-release-allow.toml").write_text(
        '[[accept]]\npath = "*"\nreason = "an internal mirror"\n'
    )
    code, out = run(capsys, str(tmp_path))
    assert code == 0, out


def test_policy_terms(capsys: Capture, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "NOTES.md").write_text("Built by the Zurich\nVision Lab.\n")
    policy = tmp_path / "atlasguard.toml"
    policy.write_text('[controls.release]\nenabled = true\nterms = ["Zurich Vision Lab"]\n')
    code, out = run(capsys, str(release), "--policy", str(policy))
    assert code == 1 and "Zurich Vision Lab" in out and "NOTES.md:1" in out
    code, _ = run(capsys, str(release))
    assert code == 0


def test_usage_errors_are_clear(capsys: Capture, tmp_path: Path) -> None:
    code, out = run(capsys, str(tmp_path / "missing"))
    assert code == 2 and "no such file" in out
    code, out = run(capsys, str(tmp_path), "--history")
    assert code == 2 and "git repository" in out
    code, out = run(capsys, str(tmp_path), "--format", "xml")
    assert code == 2 and "sarif" in out
    assert str(tmp_path) not in out


def _sarif(capsys: Capture, tmp_path: Path) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    builders.planted_release(release)
    (release / ".atlasguard-release-allow.toml").write_text(
        '[[accept]]\npath = "docs/*"\nreason = "press photo, published already"\n'
    )
    out = tmp_path / "report.sarif"
    code, _ = run(capsys, str(release), "--format", "sarif", "-o", str(out))
    assert code == 1
    return out


def test_sarif_validates_against_the_schema(capsys: Capture, tmp_path: Path) -> None:
    schema_file = SARIF_TOOL / "sarif-2.1.0.json"
    if not schema_file.exists():
        pytest.skip("the SARIF Multitool is installed by `make test` (.tools/)")
    import jsonschema

    doc = json.loads(_sarif(capsys, tmp_path).read_text())
    schema = json.loads(schema_file.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    results = doc["runs"][0]["results"]
    assert any("suppressions" in r for r in results)  # the accepted photo
    assert {r["ruleId"] for r in results} >= {"model", "bundled-model", "dataset"}


def test_sarif_passes_the_official_validator(capsys: Capture, tmp_path: Path) -> None:
    tool = SARIF_TOOL / "Sarif.Multitool"
    if not tool.exists():
        pytest.skip("the SARIF Multitool is installed by `make test` (.tools/)")
    report = _sarif(capsys, tmp_path)
    done = subprocess.run(
        [str(tool), "validate", str(report), "-o", str(tmp_path / "v.sarif")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if ": error " in line]
    assert not errors, errors


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=4096),
    name=st.sampled_from(
        ["x.bin", "x.zip", "x.ipynb", "x.csv", "x.jpg", "x.tar.gz", "x.json", "x.whl", "x"]
    ),
)
def test_hostile_bytes_never_crash_the_gate(tmp_path: Path, data: bytes, name: str) -> None:
    target = tmp_path / name
    target.write_bytes(data)
    from atlasguard.release.check import check_release

    check_release(target)  # findings or none; never an exception


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=4000), flip=st.integers(min_value=0, max_value=255))
def test_damaged_archives_never_crash_the_gate(tmp_path: Path, cut: int, flip: int) -> None:
    from atlasguard.release.check import check_release

    whole = builders.wheel(
        {"a/model.tflite": builders.tflite_model(), "a/x.py": b"print(1)\n" * 50}
    )
    damaged = bytearray(whole[: max(30, len(whole) - cut)])
    damaged[min(cut, len(damaged) - 1)] ^= flip
    target = tmp_path / "pkg.whl"
    target.write_bytes(bytes(damaged))
    check_release(target)


@given(text=st.text(max_size=2000))
@settings(max_examples=100, deadline=None)
def test_text_checks_never_crash(text: str) -> None:
    from atlasguard.release.detect import Detector, base64_blobs
    from atlasguard.release.settings import ReleaseSettings
    from atlasguard.release.walk import Item

    item = Item("f.yaml", text.encode("utf-8", "replace"), len(text))
    detector = Detector(ReleaseSettings(terms=["a b", "x"], internal_domains=["acme.net"]))
    list(detector.text(item, text, True))
    detector.ml_config(item, text)
    list(base64_blobs(text))


@given(text=st.text(max_size=500))
@settings(max_examples=100, deadline=None)
def test_allow_list_parser_only_raises_usage_errors(text: str) -> None:
    from atlasguard.errors import UsageError
    from atlasguard.release.findings import AllowList

    with contextlib.suppress(UsageError):  # any other exception fails the test
        AllowList.parse(text)


def test_the_pre_commit_hook_runs_a_real_command(capsys: Capture, tmp_path: Path) -> None:
    import shlex

    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "atlasguard-release-check"]
    program, *args = shlex.split(hook["entry"])
    assert program == "atlasguard" and hook["pass_filenames"] is False
    builders.clean_python_package(tmp_path)
    code = cli([*args, *(a if a != "." else str(tmp_path) for a in hook["args"])])
    assert code == 0
    for ci in ("release-check.github.yml", "release-check.gitlab-ci.yml"):
        text = (REPO / "docs/ci" / ci).read_text()
        assert yaml.safe_load(text)  # valid YAML
        assert "atlasguard release-check . --history" in text


@given(body=st.binary(max_size=3000), inner=st.binary(max_size=500))
@settings(max_examples=80, deadline=None)
def test_pdf_text_never_crashes(body: bytes, inner: bytes) -> None:
    import zlib

    from atlasguard.release.detect import pdf_read

    for stream in (inner, zlib.compress(inner), zlib.compress(b"[(" + inner + b")] TJ")):
        data = b"%PDF-1.4\n" + body + b"stream\n" + stream + b"\nendstream\n" + body
        pages = pdf_read(data, budget=1 << 16)
        assert isinstance(pages.text, str) and isinstance(pages.unread, bool)


MAGICS = [
    b"!<arch>\n",
    b"070701",
    b"070707",
    b"\xed\xab\xee\xdb",
    b"\x04\x00\x00\x00" + bytes(12) + b'{"files"',
]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=2000))
def test_hostile_package_formats_never_crash_the_gate(
    tmp_path: Path, magic: bytes, tail: bytes
) -> None:
    from atlasguard.release.check import check_release

    target = tmp_path / "package.bin"
    target.write_bytes(magic + tail)
    check_release(target)
