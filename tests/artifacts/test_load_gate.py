"""The load gate: nothing is loaded unless signature, manifest and decryption all pass."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from atlasguard.artifacts.encryption import KeyMismatchError, encrypt_path
from atlasguard.artifacts.keys import generate_signing_key, kek_from_bytes
from atlasguard.artifacts.load_gate import load_verified, stage_verified
from atlasguard.artifacts.manifest import FileChangedError, ManifestError
from atlasguard.artifacts.signing import WrongKeyError, sign_model, verify_model
from atlasguard.errors import UsageError

KEY = generate_signing_key()
KEK = kek_from_bytes(bytes(range(32)))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "weights.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    (root / "notes.txt").write_text("n")
    return root


def test_stage_plain_and_swap_after_check(model: Path, tmp_path: Path) -> None:
    sign_model(model, KEY)
    manifest = verify_model(model, KEY.public_key())
    dest = tmp_path / "stage"
    dest.mkdir()
    staged = stage_verified(model, "weights.pkl", manifest, dest)
    assert staged.read_bytes() == (model / "weights.pkl").read_bytes()
    # The file changes between the verification and the load: the copy's check catches it.
    (model / "weights.pkl").write_bytes(pickle.dumps({"w": [666.0]}))
    with pytest.raises(FileChangedError, match="weights"):
        stage_verified(model, "weights.pkl", manifest, dest)
    with pytest.raises(ManifestError, match="not a file of the signed manifest"):
        stage_verified(model, "other.pkl", manifest, dest)


def test_stage_encrypted(model: Path, tmp_path: Path) -> None:
    sealed = tmp_path / "sealed"
    encrypt_path(model, sealed, KEK)
    sign_model(sealed, KEY, shard_size=4096)
    manifest = verify_model(sealed, KEY.public_key())
    dest = tmp_path / "stage"
    dest.mkdir()
    with pytest.raises(UsageError, match="encrypted"):
        stage_verified(sealed, "weights.pkl", manifest, dest)
    with pytest.raises(KeyMismatchError):
        stage_verified(sealed, "weights.pkl", manifest, dest, key=kek_from_bytes(bytes(32)))
    plain = stage_verified(sealed, "weights.pkl", manifest, dest, key=KEK)
    assert plain.read_bytes() == (model / "weights.pkl").read_bytes()


def test_load_verified_end_to_end(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("atlasguard.artifacts.safe_load")
    sign_model(model, KEY)
    assert load_verified(model, "weights.pkl", public_key=KEY.public_key()) == {"w": [1.0, 2.0]}
    with pytest.raises(WrongKeyError):
        load_verified(model, "weights.pkl", public_key=generate_signing_key().public_key())
    (model / "notes.txt").write_text("changed")
    with pytest.raises(FileChangedError, match="notes"):
        load_verified(model, "weights.pkl", public_key=KEY.public_key())


def test_the_gates_signature_refusals_name_no_private_copy(model: Path, tmp_path: Path) -> None:
    """A refused signature names the file within what was pushed or staged, never the
    directory the server keeps its private copy in (as the scan's findings do)."""
    from atlasguard.artifacts.load_gate import LoadGate
    from atlasguard.errors import VerificationError

    gate = LoadGate(signature_key=KEY.public_key())
    with pytest.raises(VerificationError) as pushed:
        gate.screen(model, name="digits")
    assert str(tmp_path) not in str(pushed.value) and "model/model.sig" in str(pushed.value)
    staging = tmp_path / "staging"
    pulled = staging / "pulled"
    pulled.mkdir(parents=True)
    (pulled / "weights.pkl").write_bytes((model / "weights.pkl").read_bytes())
    with pytest.raises(VerificationError) as staged:
        gate.stage(pulled / "weights.pkl", staging, name="digits")
    assert str(staging) not in str(staged.value) and "pulled/model.sig" in str(staged.value)
