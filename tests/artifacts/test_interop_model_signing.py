"""Interoperability with the OpenSSF ``model_signing`` package, both ways.

``model_signing`` lives in the anchors virtual environment (``make anchors``),
found through ``ATLASGUARD_ANCHORS_VENV`` (default ``<repo>/.anchors-venv``);
the tests skip, saying why, when it is absent. Its command line always verifies
with the ``files`` serialization, so the ``shards`` cases use its Python API.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from atlasguard.artifacts.keys import load_private_key, load_public_key, write_signing_keypair
from atlasguard.artifacts.manifest import FileAddedError, FileChangedError
from atlasguard.artifacts.signing import sign_model, verify_model

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("ATLASGUARD_ANCHORS_VENV", REPO / ".anchors-venv"))
CLI = VENV / "bin" / "model_signing"
PYTHON = VENV / "bin" / "python"

pytestmark = pytest.mark.skipif(
    not CLI.exists(),
    reason=f"model_signing not installed in the anchors venv {VENV} (run `make anchors`)",
)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(os.urandom(10_000))
    (root / "config.json").write_text('{"hidden": 8}')
    (root / "a-c").write_text("dash sorts before slash as a string")
    (root / "a").mkdir()
    (root / "a" / "b").write_text("parts order")
    (root / "sub" / "empty").write_bytes(b"")
    (root / ".gitattributes").write_text("*.bin filter=lfs")
    return root


@pytest.fixture(params=["P-256", "P-384"])
def keys(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    return write_signing_keypair(tmp_path / "keys", curve=request.param)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


def run_py(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_model_signing_cli_verifies_our_signature(model: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    sig = sign_model(model, load_private_key(priv))
    res = run(CLI, "verify", "key", model, "--signature", sig, "--public_key", pub)
    assert res.returncode == 0, res.stderr + res.stdout
    (model / "config.json").write_text('{"hidden": 9}')
    res = run(CLI, "verify", "key", model, "--signature", sig, "--public_key", pub)
    assert res.returncode == 1
    assert "config.json" in res.stderr


def test_we_verify_the_model_signing_cli_signature(model: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    sig = model / "model.sig"
    res = run(CLI, "sign", "key", model, "--private_key", priv, "--signature", sig)
    assert res.returncode == 0, res.stderr + res.stdout
    verify_model(model, load_public_key(pub))
    (model / "new.pkl").write_bytes(b"x")
    with pytest.raises(FileAddedError, match=re.escape("new.pkl")):
        verify_model(model, load_public_key(pub))


def test_model_signing_api_verifies_our_shards(
    model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = sign_model(model, load_private_key(priv), signature=tmp_path / "s.sig", shard_size=4096)
    code = f"""
        import model_signing
        model_signing.verifying.Config().use_elliptic_key_verifier(
            public_key={str(pub)!r}).verify({str(model)!r}, {str(sig)!r})
        print("ok")
    """
    res = run_py(code, tmp_path)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    data = bytearray((model / "weights.bin").read_bytes())
    data[9000] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    assert run_py(code, tmp_path).returncode != 0


def test_we_verify_model_signing_api_shards(
    model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "ms.sig"
    code = f"""
        from model_signing import hashing, signing
        hc = hashing.Config().use_shard_serialization(shard_size=4096)
        signing.Config().use_elliptic_key_signer(private_key={str(priv)!r}).set_hashing_config(
            hc).sign({str(model)!r}, {str(sig)!r})
    """
    res = run_py(code, tmp_path)
    assert res.returncode == 0, res.stderr
    m = verify_model(model, load_public_key(pub), signature=sig)
    assert m.serialization.shard_size == 4096
    assert any(r.name == "weights.bin:8192:10000" for r in m.resources)
    data = bytearray((model / "weights.bin").read_bytes())
    data[0] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(FileChangedError, match=re.escape("weights.bin")):
        verify_model(model, load_public_key(pub), signature=sig)
