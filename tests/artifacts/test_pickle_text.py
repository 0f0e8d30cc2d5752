"""Text opcode arguments read as CPython's C unpickler reads them (issue 12, parser differentials).

Each property builds a pickle of one text opcode and STOP (no import, nothing
that could run) and compares the scanner's reading with ``pickle.loads`` itself:
where the unpickler accepts the line, the scanner must read the same value;
where it refuses, so must the scanner.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.formats._pickle_text import load_int, load_long, memo_key
from tests.conftest import examples

# Lines made of what integer parsers care about, in any order, plus any bytes.
_PIECES = st.sampled_from(
    [b"0", b"1", b"7", b"9", b"a", b"F", b"x", b"X", b"o", b"b", b"_", b"+", b"-", b" ",
     b"\t", b"\v", b"\f", b"\r", b"\0", b"L", b"00", b"01", b"0x", b"0o", b"0b", b"1_0",
     b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809",
     b"0777777777777777777777", b"\xff", b"."]
)  # fmt: skip
LINES = st.one_of(
    st.lists(_PIECES, min_size=1, max_size=8).map(b"".join),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b),
)


def _loads(data: bytes) -> tuple[bool, object]:
    try:
        return True, pickle.loads(data)  # one INT/LONG/GET/PUT opcode: no import, nothing runs
    except Exception:
        return False, None


def _agree(ours: object, theirs: object) -> bool:
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize(("opcode", "load"), [(b"I", load_int), (b"L", load_long)])
@settings(max_examples=examples(600), deadline=None)
@given(line=LINES)
@example(line=b"0x1f")
@example(line=b"010")
@example(line=b"+1")
@example(line=b" 1")
@example(line=b"1_000")
@example(line=b"0b101")
@example(line=b"5\0junk")
@example(line=b"0x10L")
@example(line=b"12L")
def test_int_and_long_lines_are_read_as_the_c_unpickler_reads_them(
    opcode: bytes, load: Callable[[bytes], object], line: bytes
) -> None:
    ok, theirs = _loads(opcode + line + b"\n.")
    try:
        ours = load(line)
    except ValueError:
        assert not ok, f"the unpickler reads {opcode!r} {line!r} as {theirs!r}; the scanner refused"
        return
    assert ok, f"the scanner read {opcode!r} {line!r} as {ours!r}; the unpickler refuses it"
    assert ours is None or _agree(ours, theirs), (line, ours, theirs)


@settings(max_examples=examples(600), deadline=None)
@given(put=LINES, get=LINES)
@example(put=b" 3", get=b"+3")
@example(put=b"1_0", get=b"10")
def test_memo_keys_are_read_as_the_c_unpickler_reads_them(put: bytes, get: bytes) -> None:
    # Store the int 5 under the PUT key, pop it, then fetch the GET key.
    ok, _ = _loads(b"I5\np" + put + b"\n0g" + get + b"\n.")
    try:
        key = memo_key(put)
        same = key == memo_key(get)
    except ValueError:
        key, same = -1, False
    if ok:
        assert same, f"the unpickler finds PUT {put!r} under GET {get!r}; the scanner does not"
    else:  # the unpickler runs out of memory for a huge key; the scanner may read on
        assert not same or key >= 1 << 31, (put, get)
