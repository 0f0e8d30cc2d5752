"""The text arguments of pickle opcodes, read exactly as CPython's ``_pickle.c`` reads them.

A scanner that rejects an argument the unpickler accepts calls the file "not a
pickle" and reports nothing, while ``pickle.load`` runs it: a parser
differential. So each function here follows the C code it names, line for line:

* ``INT`` (``load_int``): the line, newline included, is a C string (it ends at
  its first NUL byte). ``strtol(s, &end, 0)`` on a 64-bit ``long``: leading C
  whitespace, a sign, ``0x`` hexadecimal, a leading ``0`` octal. If that stops
  anywhere but the newline or the end, or overflows, ``PyLong_FromString(s,
  NULL, 0)`` decides instead (Python's own literal rules: ``0b``, ``0o``,
  underscores, surrounding whitespace). A two-character line whose value is 0
  or 1 is a bool (protocol 0's ``True``/``False``).
* ``LONG`` (``load_long``): one ``L`` just before the newline is cut off (the C
  code writes a NUL over it), then ``PyLong_FromString(s, NULL, 0)``.
* ``GET``/``PUT`` (``load_get``, ``load_put``): ``PyLong_FromString(s, NULL,
  10)``, then a ``Py_ssize_t``: negative or larger keys fail.

Each raises ``ValueError`` where the unpickler fails. A literal that is valid
but longer than Python's integer-string limit (``sys.int_info``), which a
loader may have raised, gives ``None``: a value the scanner does not know,
never a refusal to read on.

>>> load_int(b"0x1f"), load_int(b"010"), load_int(b"1_000"), load_int(b"+1")
(31, 8, 1000, True)
>>> load_long(b"0b101L"), memo_key(b" 7 ")
(5, 7)
"""

from __future__ import annotations

import re

__all__ = ["load_int", "load_long", "memo_key"]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_C_SPACE = frozenset(b" \t\n\v\f\r")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Python's integer literal with surrounding whitespace, as PyLong_FromString takes it.
_LITERAL_0 = re.compile(
    rb"\s*[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+"
    rb"|0(?:_?0)*|[1-9](?:_?[0-9])*)\s*"
)


def _c_string(line: bytes) -> bytes:
    """The line as the C code sees it: newline included, up to the first NUL."""
    return (line + b"\n").split(b"\0", 1)[0]


def _strtol0(s: bytes) -> tuple[int, int, bool]:
    """C ``strtol(s, &end, 0)`` for a 64-bit long: (value, end index, overflowed)."""
    n, i = len(s), 0
    while i < n and s[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and s[i] in b"+-":
        negative = s[i] == 0x2D
        i += 1
    if i + 2 < n and s[i] == 0x30 and s[i + 1] in b"xX" and s[i + 2] in _HEX:
        base, i = 16, i + 2
    elif i < n and s[i] == 0x30:
        base = 8
    else:
        base = 10
    start, value = i, 0
    while i < n:
        c = s[i]
        digit = c - 0x30 if 0x30 <= c <= 0x39 else (c | 0x20) - 0x57 if c in _HEX else 99
        if digit >= base:
            break
        value = value * base + digit
        i += 1
    if i == start:  # no digits at all: end is the start of the string
        return 0, 0, False
    value = -value if negative else value
    return value, i, not _LONG_MIN <= value <= _LONG_MAX


def _python_int(s: bytes, base: int) -> int | None:
    """``PyLong_FromString(s, NULL, base)``; ``None`` for a valid literal over the digit limit."""
    try:
        return int(s, base)
    except ValueError:
        if base == 0 and _LITERAL_0.fullmatch(s):
            return None  # valid, only longer than this interpreter's limit
        raise


def load_int(line: bytes) -> int | bool | None:
    """The value of an ``INT`` opcode's line (without its newline)."""
    if not line:
        raise ValueError("pickle data was truncated")  # bad_readline: len < 2
    s = _c_string(line)
    value, end, overflowed = _strtol0(s)
    if overflowed or (end < len(s) and s[end] != 0x0A):
        return _python_int(s, 0)
    if len(line) == 2 and value in (0, 1):
        return bool(value)
    return value


def load_long(line: bytes) -> int | None:
    """The value of a ``LONG`` opcode's line (without its newline)."""
    if not line:
        raise ValueError("pickle data was truncated")
    if line.endswith(b"L"):
        line = line[:-1] + b"\0"
    return _python_int(_c_string(line), 0)


def memo_key(line: bytes) -> int:
    """The memo index of a ``GET`` or ``PUT`` opcode's line (without its newline)."""
    if not line:
        raise ValueError("pickle data was truncated")
    key = int(_c_string(line), 10)
    if not 0 <= key <= _LONG_MAX:
        raise ValueError("memo key out of range")
    return key
