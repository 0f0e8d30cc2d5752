"""HDF5 files (Keras ``.h5`` models and ``.keras`` weights), without an HDF5 library.

A Keras ``.h5`` model keeps its architecture as a JSON string attribute
(``model_config``, and ``training_config``) on the root group. Reading hostile
files with ``h5py`` means running a large C library over them, so instead the
file's bytes are searched for contiguous JSON documents (attribute values are
stored whole) and each Keras-shaped one is checked by
:mod:`atlasguard.artifacts.formats.keras`. A file that names a ``model_config``
attribute but holds no readable config is reported: the value may be stored
in a way this search cannot see (a filtered fractal heap), and Keras would
still load it.

>>> from atlasguard.artifacts.formats.hdf5 import SCANNERS
>>> SCANNERS[0].sniff(b"\\x89HDF\\r\\n\\x1a\\n" + bytes(8))
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size
from atlasguard.artifacts.formats.base import FormatScanner, ScanContext, unreadable_finding
from atlasguard.artifacts.formats.keras import config_findings, find_json_objects, looks_like_keras

__all__ = ["SCANNERS", "SIGNATURE", "Hdf5Scanner"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The HDF5 superblock signature, at offset 0, 512, 1024, 2048... (after a user block)."""


def find_signature(stream: BinaryIO) -> int | None:
    """Offset of the HDF5 signature (0, 512, 1024, 2048... up to the file size), if any.

    The HDF5 library looks at every power of two from 512, so a file with a
    large user block (whose first bytes may look like anything) is still an
    HDF5 file to Keras. The dispatcher should run :class:`Hdf5Scanner` on a
    file where this finds a signature past the sniffed head.
    """
    size = stream_size(stream)
    offset = 0
    while offset + len(SIGNATURE) <= size:
        stream.seek(offset)
        if stream.read(len(SIGNATURE)) == SIGNATURE:
            stream.seek(0)
            return offset
        offset = 512 if offset == 0 else offset * 2
    stream.seek(0)
    return None


class Hdf5Scanner:
    """Keras configs stored in an HDF5 file."""

    name = "hdf5"

    def sniff(self, head: bytes) -> bool:
        offset = 0
        while offset + len(SIGNATURE) <= len(head):
            if head[offset : offset + len(SIGNATURE)] == SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
        return False

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        configs = 0
        for offset, document in find_json_objects(stream, ctx):
            if looks_like_keras(document):
                configs += 1
                yield from config_findings(document, ctx, offset, "Keras config in HDF5")
        if configs == 0 and self._names_model_config(stream, ctx):
            yield unreadable_finding(
                "HDF5 file has a model_config attribute, but no Keras config could be read "
                "from it; Keras may still load one",
                ctx.location(),
                severity=Severity.HIGH,
            )

    def _names_model_config(self, stream: BinaryIO, ctx: ScanContext) -> bool:
        stream.seek(0)
        tail = b""
        while True:
            ctx.check_time()
            chunk = stream.read(1 << 20)
            if not chunk:
                return False
            if b"model_config" in tail + chunk:
                return True
            tail = chunk[-16:]


SCANNERS: tuple[FormatScanner, ...] = (Hdf5Scanner(),)
