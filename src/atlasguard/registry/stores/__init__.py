"""Where the registry keeps its bytes: the :class:`Store` protocol, one module per backend.

A store holds immutable blobs addressed by the SHA-256 of their (stored) bytes.
:mod:`atlasguard.registry.stores.local` keeps them in a local directory.

>>> import tempfile
>>> from atlasguard.registry.stores.local import LocalStore
>>> store = LocalStore(tempfile.mkdtemp())
>>> key = store.put_bytes(b"weights")
>>> store.get(key)
b'weights'
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

__all__ = ["Store"]


class Store(Protocol):
    """Content-addressed blob storage (keys are lower-case hex SHA-256 of the bytes)."""

    def put(self, stream: BinaryIO) -> str:
        """Store the bytes read from ``stream``; return their key (idempotent)."""
        ...

    def put_bytes(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`KeyError` if absent."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the blob (the caller closes it)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...
