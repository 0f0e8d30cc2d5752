"""Streaming digests of files and file ranges, with per-thread reused buffers.

Reads go through ``readinto`` into one 8 MiB buffer per thread; hashlib
releases the GIL for updates that large, so a thread pool over files or
shards keeps every core busy.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable

__all__ = ["READ_SIZE", "blake3_file", "sha256_range"]

READ_SIZE = 8 * 1024 * 1024
ProgressCallback = Callable[[int], None]

_local = threading.local()


def _buffer() -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(READ_SIZE))
        _local.buf = buf
    return buf


def sha256_range(path: str, start: int, end: int | None, progress: ProgressCallback | None) -> str:
    """SHA-256 (hex) of ``path[start:end]`` (``end`` None: to the end of the file)."""
    h = hashlib.sha256()
    buf = _buffer()
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        remaining = -1 if end is None else end - start
        while remaining:
            view = buf if remaining < 0 or remaining >= len(buf) else buf[:remaining]
            n = f.readinto(view)
            if not n:
                if remaining > 0:
                    raise OSError(errno.EIO, "file shrank while it was hashed")
                break
            h.update(view[:n])
            if remaining > 0:
                remaining -= n
            if progress is not None:
                progress(n)
    return h.hexdigest()


def blake3_file(path: str, progress: ProgressCallback | None, threads: int) -> str:
    """BLAKE3 (hex) of a whole file, memory-mapped, on up to ``threads`` threads."""
    import blake3  # lazily: only the BLAKE3 path needs it

    h = blake3.blake3(max_threads=threads)
    size = os.path.getsize(path)
    if size:
        h.update_mmap(path)
    if progress is not None:
        progress(size)
    return str(h.hexdigest())
