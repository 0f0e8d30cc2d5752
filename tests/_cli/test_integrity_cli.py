"""``atlasguard hash|keygen|sign|verify|encrypt|decrypt|rekey``: exit codes and messages."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from atlasguard._cli import integrity


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(50_000))
    (root / "config.json").write_text("{}")
    return root


def test_hash_to_stdout_and_file(cli: Any, model: Path, tmp_path: Path) -> None:
    res = cli("hash", str(model), "--shard-size", "16384")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["serialization"]["method"] == "shards"
    assert len(doc["resources"]) == 5
    out = model / "manifest.json"
    res = cli("hash", str(model), "--algorithm", "blake3", "--output", str(out))
    assert res.exit_code == 0, res.stderr
    assert "root sha256" in res.stderr
    assert {r["name"] for r in json.loads(out.read_text())["resources"]} == {
        "weights.bin",
        "config.json",
    }
    assert cli("verify", str(model), "--manifest", str(out)).exit_code == 0
    (model / "config.json").write_text('{"x": 1}')
    res = cli("verify", str(model), "--manifest", str(out))
    assert res.exit_code == 1
    assert "config.json" in res.stderr
    assert cli("hash", str(model), "--algorithm", "md5").exit_code == 2


def test_keygen_sign_verify_and_tamper(
    cli: Any, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    monkeypatch.setenv("ATLASGUARD_TEST_PASS", "s3cret")
    res = cli("keygen", "--output", str(keys), "--passphrase-env", "ATLASGUARD_TEST_PASS")
    assert res.exit_code == 0, res.stderr
    assert stat.S_IMODE((keys / "private.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (keys / "private.pem").read_bytes()
    assert cli("sign", str(model), "--key", str(keys / "private.pem")).exit_code == 2
    res = cli(
        "sign",
        str(model),
        "--key",
        str(keys / "private.pem"),
        "--passphrase-env",
        "ATLASGUARD_TEST_PASS",
    )
    assert res.exit_code == 0, res.stderr
    assert (model / "model.sig").exists()
    res = cli("verify", str(model), "--public-key", str(keys / "public.pem"))
    assert res.exit_code == 0, res.stderr
    assert "verified" in res.stdout

    (model / "added.txt").write_text("x")
    res = cli("verify", str(model), "--public-key", str(keys / "public.pem"))
    assert res.exit_code == 1
    assert "added: added.txt" in res.stderr
    (model / "added.txt").unlink()

    other = tmp_path / "other"
    assert cli("keygen", "--output", str(other), "--curve", "P-384").exit_code == 0
    res = cli("verify", str(model), "--public-key", str(other / "public.pem"))
    assert res.exit_code == 1
    assert "another key" in res.stderr

    (model / "model.sig").write_text("garbage")
    res = cli("verify", str(model), "--public-key", str(keys / "public.pem"))
    assert res.exit_code == 1
    assert "not JSON" in res.stderr
    assert cli("verify", str(model)).exit_code == 2


def test_encrypt_decrypt_rekey(
    cli: Any, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    res = cli("keygen", "--symmetric", "--output", str(keys))
    assert res.exit_code == 0, res.stderr
    ring = keys / "kek.json"
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    enc, out = tmp_path / "enc", tmp_path / "out"
    assert cli("encrypt", str(model), str(enc), "--key-file", str(ring)).exit_code == 0
    assert cli("decrypt", str(enc), str(out), "--key-file", str(ring)).exit_code == 0
    assert (out / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()

    monkeypatch.setenv("ATLASGUARD_KEK", base64.b64encode(os.urandom(32)).decode())
    res = cli("rekey", str(enc), "--key-file", str(ring), "--new-key-env", "ATLASGUARD_KEK")
    assert res.exit_code == 0, res.stderr
    res = cli("decrypt", str(enc), str(tmp_path / "out2"), "--key-file", str(ring))
    assert res.exit_code == 1
    assert "not in keyring" in res.stderr
    res = cli("decrypt", str(enc), str(tmp_path / "out2"))  # ATLASGUARD_KEK by default
    assert res.exit_code == 0, res.stderr

    blob = bytearray((enc / "weights.bin").read_bytes())
    blob[-40] ^= 1
    (enc / "weights.bin").write_bytes(bytes(blob))
    res = cli("decrypt", str(enc), str(tmp_path / "out3"))
    assert res.exit_code == 1
    assert "fails authentication" in res.stderr
    assert not (tmp_path / "out3").exists()

    monkeypatch.delenv("ATLASGUARD_KEK")
    assert cli("encrypt", str(model), str(tmp_path / "x")).exit_code == 2
    monkeypatch.setenv("ATLASGUARD_KEK", "dG9vIHNob3J0")
    assert cli("encrypt", str(model), str(tmp_path / "x")).exit_code == 2


def test_passphrase_encryption_and_unencrypted_key(
    cli: Any, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLASGUARD_TEST_PASS", "a long passphrase")
    enc = tmp_path / "w.enc"
    src = model / "weights.bin"
    res = cli("encrypt", str(src), str(enc), "--passphrase-env", "ATLASGUARD_TEST_PASS")
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "w.bin"
    res = cli("decrypt", str(enc), str(out), "--passphrase-env", "ATLASGUARD_TEST_PASS")
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes() == src.read_bytes()
    monkeypatch.setenv("ATLASGUARD_TEST_PASS", "wrong")
    res = cli(
        "decrypt", str(enc), str(tmp_path / "w2.bin"), "--passphrase-env", "ATLASGUARD_TEST_PASS"
    )
    assert res.exit_code == 1
    assert "wrong key or passphrase" in res.stderr
    assert not (tmp_path / "w2.bin").exists()
    res = cli("encrypt", str(src), str(enc), "--passphrase-env", "UNSET_VARIABLE_X")
    assert res.exit_code == 2
    assert "UNSET_VARIABLE_X" in res.stderr


def test_progress_bar_on_a_terminal(cli: Any, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    sink = io.StringIO()
    monkeypatch.setattr(integrity, "err_console", Console(file=sink, force_terminal=True))
    res = cli("hash", str(model))
    assert res.exit_code == 0
    assert "hashing" in sink.getvalue()
