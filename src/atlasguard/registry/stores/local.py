"""A :class:`~atlasguard.registry.stores.Store` in a local directory.

Blobs live at ``<root>/<aa>/<sha256>``. A blob is written to a temporary file
in the same directory, synced, and renamed into place, so a reader never sees
a partial blob and a crash leaves only a stray temporary file.

>>> import io, tempfile
>>> store = LocalStore(tempfile.mkdtemp())
>>> key = store.put(io.BytesIO(b"abc"))
>>> key[:12], store.exists(key)
('ba7816bf8f01', True)
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO

from atlasguard.errors import UsageError

__all__ = ["LocalStore"]

_KEY = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class LocalStore:
    """Content-addressed blobs under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise UsageError(f"invalid blob key {key!r}")
        return self.root / key[:2] / key

    def put(self, stream: BinaryIO) -> str:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            key = h.hexdigest()
            target = self._path(key)
            target.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def put_bytes(self, data: bytes) -> str:
        return self.put(io.BytesIO(data))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
