"""Values a pickle computes that the analysis folds: dtypes, decoded and decompressed bytes.

Bounded: decompression stops at :data:`NESTED_MAX_BYTES`, so a bomb hidden in
a pickle costs no more than that.

>>> import zlib
>>> decode(("zlib", "decompress"), (zlib.compress(b"payload"),))
b'payload'
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable

from atlasguard.artifacts.formats._pickle_ops import UNKNOWN, Global, Obj, PickleDict

__all__ = ["DECODERS", "NESTED_MAX_BYTES", "decode", "dtype_size", "spec_has_object"]

NESTED_MAX_BYTES = 16 << 20

DECODERS = frozenset(
    {
        ("zlib", "decompress"),
        ("bz2", "decompress"),
        ("lzma", "decompress"),
        ("gzip", "decompress"),
        ("base64", "b64decode"),
        ("base64", "standard_b64decode"),
        ("base64", "urlsafe_b64decode"),
        ("base64", "b32decode"),
        ("base64", "b16decode"),
        ("base64", "b85decode"),
        ("base64", "a85decode"),
        ("base64", "decodebytes"),
        ("binascii", "a2b_base64"),
        ("binascii", "unhexlify"),
        ("binascii", "a2b_hex"),
        ("codecs", "decode"),
        ("_codecs", "decode"),
        ("_codecs", "encode"),
        ("codecs", "encode"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("builtins", "bytes.fromhex"),
    }
)


def dtype_size(dtype: object) -> tuple[int | None, bool]:
    """Item size of a pickled ``numpy.dtype`` and whether it holds Python objects."""
    if isinstance(dtype, Obj) and dtype.factory.name == "_convert_to_stringdtype_kwargs":
        return None, True  # NumPy 2's StringDType: hasobject, so joblib pickles the array
    if not isinstance(dtype, Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        return None, False
    spec = dtype.args[0]
    if isinstance(spec, Global):
        return _scalar_type_size(spec, dtype.state)
    if not isinstance(spec, str) or not spec:
        return None, False
    state = dtype.state
    if spec[0] == "O" or _mentions_object(state, 0) or _flags_say_object(state):
        return None, True
    parsed = spec_has_object(spec)
    if parsed is None or parsed:
        # NumPy cannot read it (the load fails there) or reads objects ('i4,O', '(1,)O')
        return None, bool(parsed)
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] >= 0:
        return state[5], False
    digits = spec.lstrip("<>=|").lstrip("bBiuUfcmMOSVa?")
    return (int(digits), False) if digits.isdigit() else (None, False)


# Fixed-size scalar types other packages register with NumPy (bfloat16, float8...):
# a dtype of one pickles as numpy.dtype(<the type>); any other class means object.
_REGISTERED_SCALARS = frozenset(
    [
        "bfloat16",
        "bcomplex32",
        "complex32",
        "float4_e2m1fn",
        "float6_e2m3fn",
        "float6_e3m2fn",
        "float8_e3m4",
        "float8_e4m3",
        "float8_e4m3b11fnuz",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
        "float8_e5m3fnu",
        "float8_e8m0fnu",
        "int1",
        "int2",
        "int4",
        "uint1",
        "uint2",
        "uint4",
    ]
)


def _scalar_type_size(spec: Global, state: object) -> tuple[int | None, bool]:
    if spec.module != "ml_dtypes" or spec.name not in _REGISTERED_SCALARS:
        return None, True  # numpy.dtype(<a Python class>) is the object dtype
    size = state[5] if isinstance(state, tuple) and len(state) > 5 else None
    return (size, False) if isinstance(size, int) and 0 < size <= 16 else (None, False)


_HASOBJECT = 0x01  # NPY_ITEM_HASOBJECT in a dtype's pickled flags (state[7])


def _flags_say_object(state: object) -> bool:
    """``numpy.dtype.__setstate__`` takes the flags as given: set, joblib unpickles the array."""
    flags = state[7] if isinstance(state, tuple) and len(state) > 7 else None
    return isinstance(flags, int) and bool(flags & _HASOBJECT)


def spec_has_object(spec: str) -> bool | None:
    """Whether NumPy reads the type string ``spec`` as holding Python objects.

    Parsed by :class:`numpy.dtype` itself (``'i4,O'`` and ``'(1,)O'`` hold
    objects), whose string parser never imports or unpickles. ``None`` when
    NumPy refuses the string.
    """
    if len(spec) > 512:
        return None
    try:
        import numpy

        return bool(numpy.dtype(spec).hasobject)
    except Exception:  # TypeError, ValueError, RecursionError...: numpy.load fails too
        return None


def _mentions_object(value: object, depth: int) -> bool:
    if depth > 8:
        return False
    if isinstance(value, Obj):
        args = value.args
        if (
            value.factory.name == "dtype"
            and isinstance(args, tuple)
            and args
            and isinstance(args[0], str)
            and args[0].startswith("O")
        ):
            return True
        return _mentions_object(value.state, depth + 1)
    if isinstance(value, tuple):
        return any(_mentions_object(v, depth + 1) for v in value)
    if isinstance(value, PickleDict):
        return any(_mentions_object(v, depth + 1) for v in value.items.values())
    return False


def decode(key: tuple[str, str], args: object) -> object:
    """Constant-fold a decoding call on constant data (bounded), else UNKNOWN."""
    if not isinstance(args, tuple) or not args:
        return UNKNOWN
    data, rest = args[0], args[1:]
    encoding = rest[0] if rest and isinstance(rest[0], str) else None
    try:
        if key in (("_codecs", "encode"), ("codecs", "encode")) or (
            key == ("builtins", "bytes") and isinstance(data, str)
        ):
            if isinstance(data, str):
                return data.encode(encoding or "utf-8")
            return UNKNOWN
        if isinstance(data, str) and key[0] in ("base64", "binascii"):
            data = data.encode("ascii")
        if key == ("builtins", "bytes.fromhex") and isinstance(data, str):
            return bytes.fromhex(data)
        if not isinstance(data, bytes):
            return UNKNOWN
        return _bounded_decode(key, data, encoding)
    except (ValueError, TypeError, LookupError, zlib.error, OSError, EOFError, lzma.LZMAError):
        return UNKNOWN


def _bounded_decode(key: tuple[str, str], data: bytes, encoding: str | None) -> object:
    import base64
    import binascii

    module, name = key
    limit = NESTED_MAX_BYTES
    if module == "codecs" or module == "_codecs":
        module = {
            "zlib": "zlib",
            "zlib_codec": "zlib",
            "bz2": "bz2",
            "bz2_codec": "bz2",
            "base64": "base64",
            "base64_codec": "base64",
            "hex": "binascii",
            "hex_codec": "binascii",
        }.get((encoding or "").lower(), "")
        name = {"base64": "b64decode", "binascii": "unhexlify"}.get(module, "decompress")
        if not module:
            return UNKNOWN
    if module == "zlib" or module == "gzip":
        d = zlib.decompressobj(47 if module == "gzip" else 15)
        return d.decompress(data, limit)
    if module == "bz2":
        return bz2.BZ2Decompressor().decompress(data, limit)
    if module == "lzma":
        return lzma.LZMADecompressor().decompress(data, limit)
    if module == "base64":
        decoders: dict[str, Callable[[bytes], bytes]] = {
            "b32decode": base64.b32decode,
            "b16decode": base64.b16decode,
            "b85decode": base64.b85decode,
            "a85decode": base64.a85decode,
            "urlsafe_b64decode": base64.urlsafe_b64decode,
        }
        return decoders.get(name, base64.b64decode)(data)
    if module == "binascii":
        return binascii.a2b_base64(data) if name == "a2b_base64" else binascii.unhexlify(data)
    if name in ("bytes", "bytearray"):
        return data
    return UNKNOWN
