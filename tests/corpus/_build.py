"""Building blocks of the scanner corpus: sample records, a pickle opcode assembler, writers.

Nothing here loads, imports or unpickles what it writes: pickles are assembled from raw
opcodes, containers are written byte by byte where the standard library would refuse
the oddity (encryption flag, CRC mismatch, differing local and central names).

>>> assemble("PROTO 2; GLOBAL os system; TEXT $cmd; TUPLE1; REDUCE; STOP", cmd="true")
b'\\x80\\x02cos\\nsystem\\n\\x8c\\x04true\\x85R.'
"""

from __future__ import annotations

import io
import json
import shlex
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Corpus",
    "Sample",
    "assemble",
]

MALICIOUS = "malicious"
BENIGN = "benign"


@dataclass(frozen=True, slots=True)
class Sample:
    """One corpus entry: a file or a directory to scan, and what a scanner should say."""

    path: Path
    kind: str  # "malicious" or "benign"
    trick: str  # stable name, one per trick / benign case
    format: str  # what the file really is (pickle, pytorch-zip, joblib, gguf, directory...)
    min_severity: str | None = "high"  # malicious: lowest acceptable max finding; benign: None
    group: str = ""  # coarse family for tables (pickle-opcodes, containers, keras...)
    note: str = ""

    def as_json(self, root: Path | None = None) -> dict[str, str | None]:
        path = self.path.relative_to(root) if root is not None else self.path
        return {
            "path": str(path),
            "kind": self.kind,
            "trick": self.trick,
            "format": self.format,
            "min_severity": self.min_severity,
            "group": self.group,
            "note": self.note,
        }


Corpus = list[Sample]


# --------------------------------------------------------------------------- pickle opcodes
def asm(*parts: bytes) -> bytes:
    """Concatenate opcode fragments into one pickle."""
    return b"".join(parts)


def PROTO(n: int) -> bytes:
    return b"\x80" + bytes([n])


def FRAME(n: int) -> bytes:
    return b"\x95" + struct.pack("<Q", n)


def GLOBAL(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def INST(module: str, name: str) -> bytes:
    return b"i" + module.encode() + b"\n" + name.encode() + b"\n"


def SBU(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def BU(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def BU8(s: str) -> bytes:
    raw = s.encode()
    return b"\x8d" + struct.pack("<Q", len(raw)) + raw


def UNICODE(s: str) -> bytes:
    return b"V" + s.encode("raw_unicode_escape") + b"\n"


def STRING(s: str) -> bytes:
    return b"S" + repr(s).encode() + b"\n"


def BINSTRING(s: str) -> bytes:
    raw = s.encode("latin-1")
    return b"T" + struct.pack("<i", len(raw)) + raw


def SBS(s: str) -> bytes:
    raw = s.encode("latin-1")
    return b"U" + bytes([len(raw)]) + raw


def BINBYTES(b: bytes) -> bytes:
    if len(b) < 256:
        return b"C" + bytes([len(b)]) + b
    return b"B" + struct.pack("<I", len(b)) + b


def BININT(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    return b"J" + struct.pack("<i", n)


def BINPUT(i: int) -> bytes:
    return b"q" + bytes([i])


def BINGET(i: int) -> bytes:
    return b"h" + bytes([i])


def LONG_BINPUT(i: int) -> bytes:
    return b"r" + struct.pack("<I", i)


def LONG_BINGET(i: int) -> bytes:
    return b"j" + struct.pack("<I", i)


def PUT(i: int) -> bytes:
    return b"p" + str(i).encode() + b"\n"


def GET(i: int) -> bytes:
    return b"g" + str(i).encode() + b"\n"


def EXT1(code: int) -> bytes:
    return b"\x82" + bytes([code])


def EXT2(code: int) -> bytes:
    return b"\x83" + struct.pack("<H", code)


def EXT4(code: int) -> bytes:
    return b"\x84" + struct.pack("<i", code)


MARK = b"("
STOP = b"."
POP = b"0"
NONE = b"N"
TRUE = b"\x88"
REDUCE = b"R"
BUILD = b"b"
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
EMPTY_LIST = b"]"
APPEND = b"a"
APPENDS = b"e"
SETITEM = b"s"
SETITEMS = b"u"
LIST = b"l"
DICT = b"d"
OBJ = b"o"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"


def text(s: str) -> bytes:
    """A str argument, as protocol 2+ pickles write short strings."""
    return BU(s) if len(s.encode()) > 255 else SBU(s)


def call_global(module: str, name: str, *args: bytes, proto: int = 2) -> bytes:
    """``module.name(*args)`` as one complete pickle; ``args`` are opcode fragments."""
    head = PROTO(proto) if proto >= 2 else b""
    return asm(head, GLOBAL(module, name), MARK, *args, TUPLE, REDUCE, STOP)


def stack_call(module: str, name: str, *args: bytes) -> bytes:
    """``module.name(*args)`` resolved through STACK_GLOBAL (protocol 4 dotted names)."""
    return asm(SBU(module), SBU(name), STACK_GLOBAL, MARK, *args, TUPLE, REDUCE)


def strlist(items: Sequence[str]) -> bytes:
    return asm(EMPTY_LIST, MARK, *(text(i) for i in items), APPENDS)


_INT_OPS: dict[str, Callable[[int], bytes]] = {
    "PROTO": PROTO, "FRAME": FRAME, "BININT": BININT, "BINPUT": BINPUT, "BINGET": BINGET,
    "LONG_BINPUT": LONG_BINPUT, "LONG_BINGET": LONG_BINGET, "PUT": PUT, "GET": GET,
    "EXT1": EXT1, "EXT2": EXT2, "EXT4": EXT4,
}  # fmt: skip
_STR_OPS: dict[str, Callable[..., bytes]] = {
    "GLOBAL": GLOBAL, "INST": INST, "SBU": SBU, "BU": BU, "BU8": BU8, "UNICODE": UNICODE,
    "STRING": STRING, "BINSTRING": BINSTRING, "SBS": SBS, "TEXT": text,
}  # fmt: skip
_PLAIN_OPS = {
    "MARK": MARK, "STOP": STOP, "POP": POP, "NONE": NONE, "TRUE": TRUE, "REDUCE": REDUCE,
    "BUILD": BUILD, "TUPLE": TUPLE, "TUPLE1": TUPLE1, "TUPLE2": TUPLE2, "TUPLE3": TUPLE3,
    "EMPTY_TUPLE": EMPTY_TUPLE, "EMPTY_DICT": EMPTY_DICT, "EMPTY_LIST": EMPTY_LIST,
    "APPEND": APPEND, "APPENDS": APPENDS, "SETITEM": SETITEM, "SETITEMS": SETITEMS,
    "LIST": LIST, "DICT": DICT, "OBJ": OBJ, "NEWOBJ": NEWOBJ, "NEWOBJ_EX": NEWOBJ_EX,
    "STACK_GLOBAL": STACK_GLOBAL, "MEMOIZE": MEMOIZE,
}  # fmt: skip


def assemble(program: str, **env: str | bytes | Sequence[str]) -> bytes:
    """Assemble a pickle from ``"OP arg...; OP...; STOP"`` text.

    Arguments are shell-style words; ``$name`` takes the value ``name`` from ``env``.
    Extra ops: ``TEXT s`` (the short or long unicode opcode that fits), ``LIST_OF $argv``
    (a list of strings), ``BYTES $b`` (SHORT_BINBYTES or BINBYTES), ``RAW $b`` (bytes
    spliced in as they are) and ``FRAME rest`` (a frame as long as everything after it).
    """
    parts: list[bytes] = []
    frame_at: int | None = None
    for statement in program.split(";"):
        words = shlex.split(statement)
        if not words:
            continue
        op, *raw = words
        args = [env[a[1:]] if a.startswith("$") else a for a in raw]
        if op == "FRAME" and args == ["rest"]:
            frame_at = len(parts)
            parts.append(b"")
        elif op in _INT_OPS:
            parts.append(_INT_OPS[op](int(str(args[0]), 0)))
        elif op in _STR_OPS:
            parts.append(_STR_OPS[op](*args))
        elif op == "LIST_OF":
            parts.append(strlist([str(item) for item in args[0]]))
        elif op in ("BYTES", "RAW"):
            data = args[0] if isinstance(args[0], bytes) else str(args[0]).encode()
            parts.append(BINBYTES(data) if op == "BYTES" else data)
        else:
            parts.append(_PLAIN_OPS[op])
    if frame_at is not None:
        parts[frame_at] = FRAME(len(b"".join(parts[frame_at + 1 :])))
    return b"".join(parts)


# --------------------------------------------------------------------------- file writers
def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def joblib_compressors() -> tuple[str, ...]:
    """joblib's compressors usable here (lz4 needs the optional ``lz4`` package)."""
    names = ("zlib", "gzip", "bz2", "xz", "lzma")
    try:
        import lz4.frame  # noqa: F401 - only probing that joblib can use it
    except ImportError:
        return names
    return (*names, "lz4")


def zip_bytes(members: Sequence[tuple[str, bytes]], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: Sequence[tuple[str, bytes]], *, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def raw_zip(
    members: Sequence[tuple[str, bytes]],
    *,
    flags: int = 0,
    bad_crc: bool = False,
    central_names: Sequence[str] | None = None,
) -> bytes:
    """A stored (uncompressed) zip written by hand, so it can carry deliberate oddities.

    ``flags`` goes into the general-purpose bit field of both headers (bit 0 = encrypted);
    ``bad_crc`` writes a wrong CRC-32; ``central_names`` replaces the names in the central
    directory (local headers keep the real ones).
    """
    out = io.BytesIO()
    central = io.BytesIO()
    for index, (name, data) in enumerate(members):
        crc = zlib.crc32(data) ^ (0xDEADBEEF if bad_crc else 0)
        local_name = name.encode()
        cname = (central_names[index] if central_names else name).encode()
        offset = out.tell()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                flags,
                0,
                0,
                0x21,
                crc,
                len(data),
                len(data),
                len(local_name),
                0,
            )
        )
        out.write(local_name)
        out.write(data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                flags,
                0,
                0,
                0x21,
                crc,
                len(data),
                len(data),
                len(cname),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
        )
        central.write(cname)
    cd = central.getvalue()
    cd_offset = out.tell()
    out.write(cd)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), cd_offset, 0
        )
    )
    return out.getvalue()


def npy_bytes(descr: str, shape: tuple[int, ...], payload: bytes) -> bytes:
    """A ``.npy`` v1.0 file with the given header and raw payload (object arrays: a pickle)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    total = 10 + len(header) + 1
    header += b" " * ((64 - total % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


# --------------------------------------------------------------------------- GGUF
_GGUF_STRING = 8
_GGUF_UINT32 = 4


def _gguf_str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf_bytes(kv: Sequence[tuple[str, str | int]]) -> bytes:
    """A GGUF v3 file with metadata only (no tensors)."""
    out = io.BytesIO()
    out.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)))
    for key, value in kv:
        out.write(_gguf_str(key))
        if isinstance(value, int):
            out.write(struct.pack("<II", _GGUF_UINT32, value))
        else:
            out.write(struct.pack("<I", _GGUF_STRING) + _gguf_str(value))
    return out.getvalue()


# --------------------------------------------------------------------------- protobuf
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field: int, value: bytes | str) -> bytes:
    """A length-delimited protobuf field."""
    raw = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def pb_int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def saved_model_bytes(nodes: Sequence[tuple[str, str]], *, in_library: bool = False) -> bytes:
    """SavedModel{1: schema, 2: MetaGraphDef{2: GraphDef{1: NodeDef{1: name, 2: op}}}}.

    With ``in_library`` the nodes sit in a function of the graph's FunctionDefLibrary
    (GraphDef.library = 2, FunctionDefLibrary.function = 1, FunctionDef.node_def = 3).
    """
    node_defs = b"".join(pb_bytes(1, pb_bytes(1, name) + pb_bytes(2, op)) for name, op in nodes)
    if in_library:
        fn = pb_bytes(1, pb_bytes(1, "innocent_fn")) + b"".join(
            pb_bytes(3, pb_bytes(1, name) + pb_bytes(2, op)) for name, op in nodes
        )
        graph = pb_bytes(1, pb_bytes(1, "x") + pb_bytes(2, "Placeholder")) + pb_bytes(
            2, pb_bytes(1, fn)
        )
    else:
        graph = node_defs
    meta_info = pb_bytes(1, pb_bytes(4, "serve"))  # MetaInfoDef.tags
    meta = meta_info + pb_bytes(2, graph)
    return pb_int(1, 1) + pb_bytes(2, meta)


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj, indent=1).encode()
