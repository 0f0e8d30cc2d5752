from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from atlasguard.errors import UsageError
from atlasguard.registry.stores.local import LocalStore


def test_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    key = store.put(io.BytesIO(b"x" * 3_000_000))
    assert key == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert store.put_bytes(b"x" * 3_000_000) == key
    with store.open(key) as f:
        assert f.read(3) == b"xxx"
    assert [p.name for p in (tmp_path / "s").rglob("*") if p.is_file()] == [key]
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(KeyError):
        store.get(key)
    with pytest.raises(KeyError):
        store.open(key)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "", "ab"])
def test_bad_keys_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError):
        LocalStore(tmp_path).get(bad)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    class Boom(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            raise OSError("disk gone")

    store = LocalStore(tmp_path / "s")
    with pytest.raises(OSError, match="disk gone"):
        store.put(Boom())
    assert [p for p in (tmp_path / "s").rglob("*") if p.is_file()] == []
