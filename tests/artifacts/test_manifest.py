"""Manifests: digests, shards, ignores, symlinks, diffs and the manifest file."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.manifest import (
    CONTROLS,
    FileAddedError,
    FileChangedError,
    FileRemovedError,
    FileRenamedError,
    MalformedManifestError,
    Manifest,
    ManifestError,
    ManifestMismatchError,
    Serialization,
    SymlinkError,
    hash_model,
    verify_manifest,
)
from atlasguard.errors import IntegrityError


def make_model(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (root / "config.json").write_text('{"layers": 2}')
    (root / "sub" / "tok.txt").write_text("hello")
    (root / "a-c").write_text("x")
    (root / "empty").write_bytes(b"")
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


def test_control_declared() -> None:
    (control,) = CONTROLS
    assert control.key == "verify"
    assert control.mitigates == frozenset({"AML.M0014"})


def test_file_digests_are_sha256_of_each_file(model: Path) -> None:
    m = hash_model(model)
    got = {r.name: r.digest for r in m.resources}
    for name, digest in got.items():
        assert digest == hashlib.sha256((model / name).read_bytes()).hexdigest()
    assert set(got) == {"weights.bin", "config.json", "sub/tok.txt", "a-c", "empty"}
    assert all(r.algorithm == "sha256" for r in m.resources)
    assert m.model_name == "model"


def test_order_is_by_path_components_like_model_signing(model: Path) -> None:
    (model / "a").mkdir()
    (model / "a" / "b").write_text("y")
    names = [r.name for r in hash_model(model).resources]
    # PurePosixPath order: "a/b" (parts ("a", "b")) sorts before "a-c"; plain strings would not.
    assert names.index("a/b") < names.index("a-c")
    expected_root = hashlib.sha256(
        b"".join(bytes.fromhex(r.digest) for r in hash_model(model).resources)
    ).hexdigest()
    assert hash_model(model).root_digest() == expected_root


def test_shards_cover_each_file_and_skip_empty_files(model: Path) -> None:
    m = hash_model(model, shard_size=4096)
    data = (model / "weights.bin").read_bytes()
    shards = [r for r in m.resources if r.path == "weights.bin"]
    assert [r.name for r in shards] == [
        "weights.bin:0:4096",
        "weights.bin:4096:8192",
        "weights.bin:8192:10240",
    ]
    for r in shards:
        _, start, end = r.name.split(":")
        assert r.digest == hashlib.sha256(data[int(start) : int(end)]).hexdigest()
        assert r.algorithm == "sha256-sharded-4096"
    assert not [r for r in m.resources if r.path == "empty"]
    assert m.serialization.to_dict()["shard_size"] == 4096


def test_parallel_workers_give_the_same_manifest(model: Path) -> None:
    assert hash_model(model, shard_size=4096, workers=1) == hash_model(
        model, shard_size=4096, workers=4
    )


def test_blake3(model: Path) -> None:
    m = hash_model(model, algorithm="blake3")
    for r in m.resources:
        assert r.digest == blake3.blake3((model / r.name).read_bytes()).hexdigest()
    with pytest.raises(MalformedManifestError, match="sha256"):
        hash_model(model, algorithm="blake3", shard_size=1024)


def test_git_entries_ignored_by_default(model: Path) -> None:
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    (model / ".gitattributes").write_text("*")
    m = hash_model(model)
    assert not [r for r in m.resources if r.name.startswith(".git")]
    assert {".git", ".gitattributes"} <= set(m.serialization.ignore_paths)
    with_git = hash_model(model, ignore_git=False)
    assert {".git/HEAD", ".gitattributes"} <= {r.name for r in with_git.resources}
    # Verification ignores what the manifest recorded, and only that.
    verify_manifest(model, m)
    verify_manifest(model, with_git)
    (model / ".git" / "HEAD").write_text("other")
    verify_manifest(model, m)
    with pytest.raises(FileChangedError, match=re.escape(".git/HEAD")):
        verify_manifest(model, with_git)
    (model / ".gitmodules").write_text("[submodule]")  # not there when m was made
    with pytest.raises(FileAddedError, match=re.escape(".gitmodules")):
        verify_manifest(model, m)


def test_ignore_paths_are_prefixes_by_component(model: Path) -> None:
    names = {r.name for r in hash_model(model, ignore_paths=["sub"]).resources}
    assert "sub/tok.txt" not in names
    with pytest.raises(MalformedManifestError, match="leaves"):
        hash_model(model, ignore_paths=["../x"])


def test_symlinks_rejected_unless_allowed_and_never_outside(model: Path, tmp_path: Path) -> None:
    os.symlink("config.json", model / "link.json")
    with pytest.raises(SymlinkError, match=re.escape("link.json")):
        hash_model(model)
    m = hash_model(model, allow_symlinks=True)
    link = next(r for r in m.resources if r.name == "link.json")
    assert link.digest == hashlib.sha256((model / "config.json").read_bytes()).hexdigest()
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    os.symlink(outside, model / "escape")
    with pytest.raises(SymlinkError, match="leaves the model directory"):
        hash_model(model, allow_symlinks=True)


def test_single_file_model(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"onnx")
    m = hash_model(f)
    assert [r.name for r in m.resources] == ["."]
    verify_manifest(f, m)
    f.write_bytes(b"onnY")
    with pytest.raises(FileChangedError):
        verify_manifest(f, m)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such"):
        hash_model(tmp_path / "nope")


@pytest.mark.parametrize("shard_size", [None, 4096])
def test_each_tamper_is_named(model: Path, shard_size: int | None) -> None:
    m = hash_model(model, shard_size=shard_size)
    verify_manifest(model, m)

    data = bytearray((model / "weights.bin").read_bytes())
    data[5000] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(FileChangedError, match=re.escape("changed: weights.bin")):
        verify_manifest(model, m)
    data[5000] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))

    (model / "extra.pkl").write_bytes(b"x")
    with pytest.raises(FileAddedError, match=re.escape("added: extra.pkl")):
        verify_manifest(model, m)
    (model / "extra.pkl").unlink()

    (model / "sub" / "tok.txt").unlink()
    with pytest.raises(FileRemovedError, match=re.escape("removed: sub/tok.txt")):
        verify_manifest(model, m)
    (model / "sub" / "tok.txt").write_text("hello")

    (model / "config.json").rename(model / "config2.json")
    with pytest.raises(FileRenamedError, match=re.escape("config.json -> config2.json")):
        verify_manifest(model, m)

    (model / "a-c").write_text("changed")
    with pytest.raises(ManifestMismatchError) as info:
        verify_manifest(model, m)
    assert type(info.value) is ManifestMismatchError
    assert "a-c" in str(info.value) and "config2.json" in str(info.value)


def test_manifest_file_round_trip(model: Path) -> None:
    m = hash_model(model, shard_size=4096)
    again = Manifest.from_json(m.to_json())
    assert again == m
    doc = json.loads(m.to_json())
    assert doc["root_digest"]["sha256"] == m.root_digest()


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(mediaType="x"),
        lambda d: d["resources"][0].update(digest="00" * 32),
        lambda d: d["resources"][0].update(digest="zz"),
        lambda d: d["resources"][0].update(algorithm="md5"),
        lambda d: d["resources"][0].update(name="../../etc/passwd"),
        lambda d: d["serialization"].update(method="tensors"),
        lambda d: d["serialization"].update(hash_type="md5"),
        lambda d: d.update(resources={"a": 1}),
        lambda d: d["resources"].append(dict(d["resources"][0])),
    ],
)
def test_malformed_manifest_rejected(model: Path, edit: object) -> None:
    doc = json.loads(hash_model(model).to_json())
    edit(doc)  # type: ignore[operator]
    with pytest.raises(MalformedManifestError):
        Manifest.from_json(json.dumps(doc))


def test_model_signing_float_shard_size_accepted() -> None:
    ser = Serialization.from_dict(
        {"method": "shards", "hash_type": "sha256", "shard_size": 1000.0, "allow_symlinks": False}
    )
    assert ser.shard_size == 1000
    with pytest.raises(MalformedManifestError):
        Serialization.from_dict(
            {"method": "shards", "hash_type": "sha256", "shard_size": 1.5, "allow_symlinks": False}
        )


@settings(
    max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_manifest_is_rejected_or_harmless(tmp_path: Path, data: st.DataObject) -> None:
    root = tmp_path / "m"
    if not root.exists():
        make_model(root)
    original = hash_model(root)
    raw = bytearray(original.to_json().encode())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    try:
        parsed = Manifest.from_json(bytes(raw))
    except MalformedManifestError:
        return
    if parsed.resources == original.resources:
        return  # only unsigned metadata changed (name, ignores): the digests still hold
    with pytest.raises(IntegrityError):
        verify_manifest(root, parsed)


@pytest.mark.parametrize(
    "module",
    [
        "atlasguard.artifacts.manifest",
        "atlasguard.artifacts.signing",
        "atlasguard.artifacts.keys",
        "atlasguard.artifacts.encryption",
        "atlasguard.artifacts.load_gate",
    ],
)
def test_module_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "names",
    [
        [
            "weights.bin:0:4096",
            "weights.bin:4096:8192",
            "weights.bin:8192:12289",
        ],  # longer than a shard
        ["weights.bin:0:4096", "weights.bin:4097:8192", "weights.bin:8192:10240"],  # gap
        ["weights.bin:0:4000", "weights.bin:4000:8192", "weights.bin:8192:10240"],  # short inner
        ["weights.bin:0:4096", "weights.bin:4096:8192", "weights.bin:8192:8192"],  # empty
    ],
)
def test_shards_must_tile_each_file(model: Path, names: list[str]) -> None:
    doc = json.loads(hash_model(model, shard_size=4096).to_json())
    shards = [r for r in doc["resources"] if r["name"].startswith("weights.bin:")]
    for r, name in zip(shards, names, strict=True):
        r["name"] = name
    with pytest.raises(MalformedManifestError, match="tile"):
        Manifest.from_parts("m", doc["serialization"], doc["resources"])
