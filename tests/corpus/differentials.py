"""Parser-differential samples (issue 12 §1): bytes a real loader runs that a scanner may misread.

Each builder returns a file's bytes whose payload would call ``os.system('true')``
when loaded by the loader named in its entry; none is ever loaded here. The
tests (``tests/artifacts/test_differentials.py``) hold atlasguard to every one;
``bench/scan/differentials.py`` runs the anchors on the same files.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

PAYLOAD = b"cos\nsystem\n(S'true'\ntR."  # os.system('true'), protocol 0


@dataclass(frozen=True)
class Differential:
    name: str
    cls: str  # the class of issue 12 §1 it belongs to
    loader: str  # what would run the payload
    suffix: str
    build: Callable[[], bytes]


def int_literal(literal: bytes) -> bytes:
    """An INT opcode in a form the C unpickler accepts (strtol base 0 / PyLong_FromString)."""
    return b"I" + literal + b"\n0" + PAYLOAD


def memo_keys(put: bytes, get: bytes) -> bytes:
    """A memo store and fetch, used before the import, under keys written unusually."""
    return b"I5\np" + put + b"\n0g" + get + b"\n0" + PAYLOAD


def lying_frame(length: int) -> bytes:
    """A FRAME whose length is not the frame's: the C unpickler reads on regardless."""
    body = b"\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R."
    return b"\x80\x04\x95" + length.to_bytes(8, "little") + body


def long_first_opcode() -> bytes:
    """A first opcode longer than a 4 KiB sniff window."""
    text = b"a" * 6000
    return b"X" + struct.pack("<I", len(text)) + text + b"0" + PAYLOAD


def hdf5_in_a_string() -> bytes:
    """A pickle string that puts the HDF5 signature at offset 512."""
    blob = b"\0" * (512 - 7) + b"\x89HDF\r\n\x1a\n" + b"\0" * 600
    return b"\x80\x03B" + struct.pack("<I", len(blob)) + blob + b"0" + PAYLOAD


def tar_header_pickle() -> bytes:
    """512 bytes that are a valid tar header and a BINBYTES opcode at once."""
    info = tarfile.TarInfo("x")
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT)[:512])
    header[0:5] = b"B" + struct.pack("<I", 512 - 5)
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"0" + PAYLOAD


def cut_short_end_record() -> bytes:
    """A torch-style zip: a broken first local header and a fake end record, cut short."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/decoy", b"x" * 100)
        zf.writestr("archive/data.pkl", b"\x80\x02" + PAYLOAD)
    data = bytearray(buf.getvalue())
    data[0:4] = b"PK\x03\xff"
    return bytes(data) + b"PK\x05\x06\x00\x00"


def legacy_torch_fourth_pickle() -> bytes:
    """A legacy torch file whose fourth pickle starts with bytes a scanner cannot read."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    head = magic + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"little_endian": True}, protocol=2)
    return head + b"\xfe junk, then cos\nsystem\n"


def stored_reads_on(pickle_body: bytes = PAYLOAD) -> bytes:
    """A torch zip whose stored ``data.pkl`` records 2 compressed bytes but more uncompressed.

    zipfile reads the two bytes (``\\x80\\x02``, a pickle cut short); PyTorch's
    reader copies the uncompressed size, running on into a gap no directory
    names, where the rest of the pickle waits.
    """
    payload = b"\x80\x02" + pickle_body
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload[:2])
        zf.writestr("archive/version", b"3\n")
    data = bytearray(buf.getvalue())
    rest = payload[2:]
    gap = data.find(b"archive/data.pkl") + len("archive/data.pkl") + 2
    data[gap:gap] = rest
    first = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", first + 4)
    struct.pack_into("<I", data, first + 24, len(payload))  # data.pkl's uncompressed size
    struct.pack_into(
        "<I", data, second + 42, struct.unpack_from("<I", data, second + 42)[0] + len(rest)
    )  # version's local header moved
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<I", data, end + 16, struct.unpack_from("<I", data, end + 16)[0] + len(rest))
    return bytes(data)


def npy_with_descr(descr: object) -> bytes:
    """An ``.npy`` whose dtype descriptor holds objects in a form NumPy reads ('i4,O'...)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + PAYLOAD


def joblib_dtype_spec(spec: bytes) -> bytes:
    """A joblib dump of an object array whose pickled dtype is written another way."""
    import joblib  # the differential tests and the bench have it; the package does not

    class Stand:  # pickles as builtins.len('true'), then rewritten to os.system
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (len, ("true",))

    import numpy as np

    buf = io.BytesIO()
    joblib.dump({"w": np.array([Stand()], dtype=object)}, buf)
    raw = buf.getvalue()
    at = raw.index(b"\x8c\x02O8")
    raw = raw[:at] + bytes([0x8C, len(spec)]) + spec + raw[at + 4 :]
    return raw.replace(b"\x8c\x08builtins\x94\x8c\x03len", b"\x8c\x02os\x94\x8c\x06system")


SAMPLES: tuple[Differential, ...] = (
    *(
        Differential(f"int-{lit.decode()}", "opcode arguments", "pickle.load", ".pkl",
                     lambda lit=lit: int_literal(lit))  # type: ignore[misc]
        for lit in (b"0x0", b"0b0", b"0o7", b"010", b"+1", b" 2", b"1_0")
    ),
    *(
        Differential(f"memo-{n}", "opcode arguments", "pickle.load", ".pkl",
                     lambda p=p, g=g: memo_keys(p, g))  # type: ignore[misc]
        for n, (p, g) in enumerate([(b"1_0", b"10"), (b" 2", b"+2"), (b"\t4", b"4\v")])
    ),
    *(
        Differential(f"frame-{n}", "frames", "pickle.load", ".pkl",
                     lambda n=n: lying_frame(n))  # type: ignore[misc]
        for n in (0, 9, 20)
    ),
    Differential("long-first-opcode", "format detection", "pickle.load", ".pkl",
                 long_first_opcode),
    Differential("hdf5-signature-in-pickle", "format detection", "pickle.load", ".pkl",
                 hdf5_in_a_string),
    Differential("tar-header-pickle", "format detection", "pickle.load", ".pkl",
                 tar_header_pickle),
    Differential("zip-cut-short-end-record", "zip directories", "torch.load", ".pt",
                 cut_short_end_record),
    Differential("zip-stored-reads-on", "zip directories", "torch.load", ".pt",
                 stored_reads_on),
    *(
        Differential(f"npy-{name}", "numpy dtypes", "numpy.load(allow_pickle=True)", ".npy",
                     lambda d=d: npy_with_descr(d))  # type: ignore[misc]
        for name, d in (("subarray-O", "(1,)O"), ("comma-O", "i4,O"),
                        ("field-subarray-O", [("a", "(2,)O")]))
    ),
    *(
        Differential(f"joblib-dtype-{name}", "numpy dtypes", "joblib.load", ".joblib",
                     lambda sp=sp: joblib_dtype_spec(sp))  # type: ignore[misc]
        for name, sp in (("comma-O", b"i4,O"), ("subarray-O", b"(1,)O"), ("V8-flags", b"V8"))
    ),
)  # fmt: skip
