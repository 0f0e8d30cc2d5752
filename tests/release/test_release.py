"""The release gate on generated releases: planted items found, clean releases left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlasguard.release import samples as builders
from atlasguard.release.check import check_release
from atlasguard.release.findings import AllowList, ReleaseReport
from atlasguard.release.settings import ReleaseSettings

pytest.importorskip("detect_secrets")
pytest.importorskip("PIL")


def rules_at(report: ReleaseReport) -> set[tuple[str, str]]:
    return {(f.rule, f.path) for f in report.findings}


def test_every_planted_item_is_found(tmp_path: Path) -> None:
    planted = builders.planted_release(tmp_path)
    report = check_release(tmp_path)
    missing = set(planted) - rules_at(report)
    assert not missing, missing
    assert not report.passed
    gps = [f for f in report.findings if f.rule == "image-metadata" and "GPS" in f.message]
    assert gps and "47.37" in gps[0].message  # the position itself, decoded


def test_items_buried_in_git_history_are_found_with_history(tmp_path: Path) -> None:
    planted = builders.planted_release(tmp_path)
    builders.bury_in_history(tmp_path, planted)
    assert check_release(tmp_path).passed  # the working tree is clean now
    report = check_release(tmp_path, history=True)
    assert report.commits == 2
    found = {(f.rule, f.path.split(":", 1)[1]) for f in report.findings if ":" in f.path}
    assert set(planted) <= found


@pytest.mark.parametrize("build", [builders.clean_python_package, builders.clean_web_app])
def test_clean_releases_pass(tmp_path: Path, build: object) -> None:
    build(tmp_path)  # type: ignore[operator]
    report = check_release(tmp_path, ReleaseSettings(terms=["Bluebird", "Zurich lab"]))
    assert report.findings == [], [(f.rule, f.path, f.message) for f in report.findings]
    assert report.files > 10


def test_a_clean_release_with_its_history_passes(tmp_path: Path) -> None:
    builders.clean_python_package(tmp_path)
    builders.git(tmp_path, "init", "-q", "-b", "main")
    builders.git(tmp_path, "add", "-A")
    builders.git(tmp_path, "commit", "-q", "-m", "one")
    (tmp_path / "CHANGELOG.md").write_text("## 1.0.1\n\n- a fix\n")
    builders.git(tmp_path, "commit", "-q", "-am", "two")
    report = check_release(tmp_path, history=True)
    assert report.findings == [], [(f.rule, f.path, f.message) for f in report.findings]


def test_other_formats_and_hiding_places(tmp_path: Path) -> None:
    expected = builders.hidden_release(tmp_path)
    report = check_release(tmp_path, ReleaseSettings(terms=list(builders.HIDDEN_TERMS)))
    missing = set(expected) - rules_at(report)
    assert not missing, (missing, sorted(rules_at(report)))
    assert not [f for f in report.findings if f.rule == "unexamined"]


def test_an_image_folder_is_a_data_set_and_a_few_images_are_not(tmp_path: Path) -> None:
    (tmp_path / "train/cats").mkdir(parents=True)
    for i in range(12):
        (tmp_path / f"train/cats/{i}.png").write_bytes(builders.plain_png(i))
    assert check_release(tmp_path, ReleaseSettings(min_images=10)).open
    assert check_release(tmp_path, ReleaseSettings(min_images=100)).passed


def test_credentials_are_found_and_never_echoed_whole(tmp_path: Path) -> None:
    secret = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
    (tmp_path / "deploy.sh").write_text(f"export GITHUB_TOKEN={secret}\n")
    report = check_release(tmp_path)
    found = [f for f in report.findings if f.rule == "credential"]
    assert found and found[0].line == 1
    assert secret not in json.dumps([f.to_dict() for f in report.findings])


def test_the_allow_list_accepts_with_a_reason(tmp_path: Path) -> None:
    builders.planted_release(tmp_path)
    allow = AllowList.parse(
        """
[[accept]]
path = "*"
reason = "internal mirror, never published"

[[accept]]
path = "nothing/*"
rule = "model"
reason = "unused"
"""
    )
    report = check_release(tmp_path, allow=allow)
    assert report.passed and report.findings
    assert all(f.accepted == "internal mirror, never published" for f in report.findings)
    assert [e.path for e in report.unused_allow] == ["nothing/*"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[accept]]\npath = "x"\n', "reason"),
        ('[[accept]]\npath = "x"\nreason = "  "\n', "reason"),
        ('[[accept]]\npath = "x"\nreason = "ok"\nrule = "nope"\n', "unknown rule"),
        ('[[accept]]\npath = "x"\nreason = "ok"\ncolour = 1\n', "unknown key"),
        ("accept = 3\n", "array of tables"),
        ("[[accept\n", "not valid TOML"),
    ],
)
def test_a_bad_allow_list_says_what_is_wrong(text: str, says: str) -> None:
    from atlasguard.errors import UsageError

    with pytest.raises(UsageError, match=says):
        AllowList.parse(text)


def test_limits_turn_into_unexamined_findings(tmp_path: Path) -> None:
    from atlasguard.release.walk import Limits

    nested = builders.safetensors()
    for _ in range(5):
        nested = builders.zip_of({"x.zip": nested})
    (tmp_path / "deep.zip").write_bytes(nested)
    report = check_release(tmp_path, limits=Limits(max_depth=3))
    assert any(f.rule == "unexamined" and "deeper" in f.message for f in report.findings)
    (tmp_path / "deep.zip").write_bytes(
        builders.zip_of({"big.csv": builders.data_csv(300).encode()})
    )
    report = check_release(tmp_path, limits=Limits(max_total_bytes=1000))
    assert any(f.rule == "unexamined" for f in report.findings)


def test_an_unreadable_archive_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + bytes(100))
    report = check_release(tmp_path)
    assert [f.rule for f in report.findings] == ["unexamined"]


SECRET_LINES = [
    'aws_access_key_id = "AKIAZ7QXH3KD2PLM4WNB"',
    'token = "ghp_9fK2xQ7LmN4pR8sT1vW3yZ5aB6cD0eF2gH4j"',
    'slack = "xoxb-2048765123-3098765432109-a1B2c3D4e5F6g7H8i9J0k1L2"',
    "STRIPE_KEY = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'",
    "-----BEGIN RSA PRIVATE KEY-----",
    'jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"',
    "DATABASE_URL = 'postgres://admin:Xk29fjq8Lw@db.example.com:5432/app'",
    'password = "hunter2-Zq8v!kLw"',
    "npm_token=npm_Vf7b2QkLmN8pR4sT1vW3yZ5aB6cD0eF2gH4j",
    'secret_key = "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1wcm9kdWN0aW9uLTIwMjY="',
]


def test_the_line_prefilter_keeps_what_detect_secrets_finds(tmp_path: Path) -> None:
    """Differential: detect-secrets on the whole file and on the prefiltered lines agree."""
    from detect_secrets.core.secrets_collection import SecretsCollection
    from detect_secrets.settings import default_settings

    from atlasguard.release.check import _detect_secrets
    from atlasguard.release.walk import Item

    filler = ["def f(x):", "    return x + 1", "", "# a comment", "items = [a, b, c]"]
    lines = [line for secret in SECRET_LINES for line in (*filler, secret)]
    for suffix in ("settings.py", "config.yaml", ".env"):
        path = tmp_path / suffix
        path.write_text("\n".join(lines) + "\n")
        with default_settings():
            whole = SecretsCollection()
            whole.scan_file(str(path))
        expected = {(s.line_number, s.secret_value) for v in whole.data.values() for s in v}
        expected = {e for e in expected if not (e[1] and " " in e[1])}
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        item = Item(suffix, path.read_bytes(), path.stat().st_size)
        got = {(line, value) for line, _kinds, value in _detect_secrets(item, scratch)}
        assert expected and expected <= got, (suffix, expected - got)


def test_a_7z_archive_is_opened(tmp_path: Path) -> None:
    py7zr = pytest.importorskip("py7zr")
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "weights.safetensors").write_bytes(builders.safetensors())
    release = tmp_path / "release"
    release.mkdir()
    with py7zr.SevenZipFile(release / "models.7z", "w") as archive:
        archive.write(inner / "weights.safetensors", "weights.safetensors")
    report = check_release(release)
    assert ("model", "models.7z!weights.safetensors") in rules_at(report)


def test_a_zstd_archive_it_cannot_open_is_reported(tmp_path: Path) -> None:
    try:
        import zstandard
    except ImportError:
        (tmp_path / "models.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))
        report = check_release(tmp_path)
        assert [f.rule for f in report.findings] == ["unexamined"]
        assert "zstandard" in report.findings[0].message
        return
    data = zstandard.ZstdCompressor().compress(builders.tflite_model())
    (tmp_path / "model.tflite.zst").write_bytes(data)
    assert ("model", "model.tflite.zst!model.tflite") in rules_at(check_release(tmp_path))


@pytest.mark.timeout(120)  # a hang guard, not a speed target: the bench measures speed
@pytest.mark.parametrize(
    "data",
    [
        b"a" * 300_000,
        b"a1" * 150_000,
        b"a." * 150_000,
        b"x-y.internal-" * 25_000,
        b"10.0.0." * 45_000,
        b"://a:b" * 50_000,
        (b"A" * 399 + b" ") * 800,
    ],
)
def test_long_pathological_lines_finish(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "bundle.min.js").write_bytes(data)
    check_release(tmp_path)


def test_a_signature_bundle_is_not_a_credential_but_the_private_key_is(tmp_path: Path) -> None:
    from atlasguard.artifacts.keys import generate_signing_key, write_signing_keypair
    from atlasguard.artifacts.signing import sign_model

    model = tmp_path / "models" / "digits"
    model.mkdir(parents=True)
    (model / "weights.txt").write_text("0.1 0.2 0.3\n")
    key = generate_signing_key()
    sign_model(model, key, signature=tmp_path / "models" / "digits.sig")
    write_signing_keypair(tmp_path / "keys")
    report = check_release(tmp_path)
    credentials = {f.path for f in report.findings if f.rule == "credential"}
    assert credentials == {"keys/private.pem"}, credentials


def test_a_two_word_term_split_by_markup_kerning_or_compression_is_found(tmp_path: Path) -> None:
    for name in ("docs/brief.docx", "docs/paper.pdf", "site/about.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(builders.HIDDEN[name]())
    report = check_release(tmp_path, ReleaseSettings(terms=["Project Bluebird"]))
    paths = {f.path for f in report.findings if f.rule == "policy-term"}
    assert paths == {"docs/brief.docx!word/document.xml", "docs/paper.pdf", "site/about.html"}


def test_pdf_text_the_gate_cannot_read_is_reported_not_passed(tmp_path: Path) -> None:
    """Glyph ids (fonts with their own encoding, as most writers embed them) are not
    characters: the gate says it did not read them, and reads literal text as before."""
    import zlib

    def pdf(content: bytes) -> bytes:
        stream = zlib.compress(content)
        return (
            b"%PDF-1.7\n1 0 obj\n<< /Filter /FlateDecode >>\nstream\n"
            + stream
            + (b"\nendstream\nendobj\n%%EOF\n")
        )

    (tmp_path / "glyphs.pdf").write_bytes(pdf(b"BT /F1 12 Tf <0033005500520045> Tj ET"))
    (tmp_path / "kerned.pdf").write_bytes(pdf(b"BT [<00330055> -20 <0052>] TJ ET"))
    (tmp_path / "plain.pdf").write_bytes(pdf(b"BT /F1 12 Tf (Project Bluebird) Tj ET"))
    report = check_release(tmp_path, ReleaseSettings(terms=["Project Bluebird"]))
    unread = {f.path for f in report.findings if f.rule == "unexamined"}
    assert unread == {"glyphs.pdf", "kerned.pdf"}
    assert {f.path for f in report.findings if f.rule == "policy-term"} == {"plain.pdf"}


@pytest.mark.parametrize("fonttype", [3, 42])
def test_the_pdf_reader_reads_what_matplotlib_writes(tmp_path: Path, fonttype: int) -> None:
    """Differential, against a real writer: the term a page shows is found whether the
    font is embedded as single-byte Type 3 or as two-byte Type 42 (Identity-H) codes,
    these read through the font's ToUnicode map, so nothing is left unread."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"pdf.fonttype": fonttype}):
        figure = plt.figure()
        figure.text(0.1, 0.5, "Project (Bluebird)")
        figure.savefig(tmp_path / "chart.pdf")
        plt.close(figure)
    report = check_release(tmp_path, ReleaseSettings(terms=["Project Bluebird"]))
    rules = {f.rule for f in report.findings if f.path == "chart.pdf"}
    assert "policy-term" in rules
    assert "unexamined" not in rules


def test_pdf_strings_are_read_as_a_reader_reads_them() -> None:
    """Escapes undone (octal, parentheses, line continuation), hex strings decoded."""
    import zlib

    from atlasguard.release.detect import pdf_read

    content = b"BT <50726f6a656374> Tj (Blue\\142ird \\(2\\)\\\nx) Tj [(Pro) -20 (ject)] TJ ET"
    pages = pdf_read(b"%PDF-1.7\nstream\n" + zlib.compress(content) + b"\nendstream\n")
    assert pages == ("Project Bluebird (2)x Project", False)


def test_the_ar_reader_reads_what_binutils_ar_wrote(tmp_path: Path) -> None:
    """Differential: members and bytes as GNU ar stores them (long names included)."""
    import shutil
    import subprocess

    from atlasguard.release.walk import _ar

    if shutil.which("ar") is None:
        pytest.skip("binutils ar is not installed")
    files = {
        "short.txt": b"odd length",
        "a-very-long-member-name-beyond-sixteen.bin": bytes(range(256)) * 3,
        "model.tflite": builders.tflite_model(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    subprocess.run(["ar", "rc", "out.a", *files], cwd=tmp_path, check=True)
    assert dict(_ar((tmp_path / "out.a").read_bytes())) == files
