"""No input crashes the pickle analysis: the stack and memo model, fuzzed (issue 12).

The scanner crashed with ``IndexError`` on ordinary dict pickles: a run of
fixed-width data opcodes collapsed into one placeholder left SETITEMS with an odd
number of items, and the pairing loop indexed past the end. These tests feed the
machine what real picklers write (any plain data, every protocol), opcode
sequences built from the whole instruction set, and raw bytes; the analysis may
report, never raise.
"""

from __future__ import annotations

import io
import pickle
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.formats.pickle import analyze_pickle, looks_like_pickle

_PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=70)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.integers() | st.text(max_size=5) | st.floats(allow_nan=False), inner, max_size=70
        )
        | st.frozensets(st.integers(), max_size=10)
    ),
    max_leaves=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PLAIN, st.integers(0, 5))
def test_plain_data_never_crashes_nor_alarms(value: object, protocol: int) -> None:
    findings = analyze_pickle(io.BytesIO(pickle.dumps(value, protocol)))
    assert not [f for f in findings if f.severity >= Severity.LOW], findings


def test_regression_dict_of_collapsed_numbers() -> None:
    # Key/value pairs after a run of ints/floats that the fast path collapses.
    for value in (
        {"a": 1, **{i: float(i) for i in range(60)}},
        {"k": [None] * 3, **{i: i * 1.5 for i in range(40)}, "z": "x"},
        [{"x": 0.5, **dict.fromkeys(range(50), True)}],
    ):
        for protocol in range(6):
            data = pickle.dumps(value, protocol)
            assert analyze_pickle(io.BytesIO(data)) == [], protocol


def test_regression_odd_items_after_collapsed_run_is_reported_not_raised() -> None:
    # SETITEMS over [key, <60 BININT1 values>]: odd once collapsed, must not crash.
    run = b"K\x01" * 60
    data = b"\x80\x02}(X\x01\x00\x00\x00k" + run + b"u."
    analyze_pickle(io.BytesIO(data))
    data = b"\x80\x02(X\x01\x00\x00\x00k" + run + b"d."
    analyze_pickle(io.BytesIO(data))


# Every opcode with a well-formed argument; sequences of them reach every branch of
# the machine (stack underflow, marks, memo, calls, builds, frames, imports).
def _op(code: bytes, arg: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[bytes]:
    return st.just(code) if arg is None else arg.map(lambda a: code + a)


_SMALL = st.integers(0, 255).map(lambda n: bytes([n]))
_MEMO = st.integers(0, 6)
_NAME = st.sampled_from([b"os", b"builtins", b"collections", b"torch._utils", b"x y", b"__main__"])
_ATTR = st.sampled_from([b"system", b"OrderedDict", b"getattr", b"_rebuild_tensor_v2", b"Net"])
_OPS = st.one_of(
    _op(b"("),
    _op(b"."),
    _op(b"0"),
    _op(b"1"),
    _op(b"2"),
    _op(b"N"),
    _op(b"\x88"),
    _op(b"\x89"),
    _op(b")"),
    _op(b"]"),
    _op(b"}"),
    _op(b"\x8f"),
    _op(b"\x85"),
    _op(b"\x86"),
    _op(b"\x87"),
    _op(b"t"),
    _op(b"l"),
    _op(b"d"),
    _op(b"e"),
    _op(b"a"),
    _op(b"s"),
    _op(b"u"),
    _op(b"\x90"),
    _op(b"\x91"),
    _op(b"R"),
    _op(b"\x81"),
    _op(b"\x92"),
    _op(b"o"),
    _op(b"b"),
    _op(b"\x93"),
    _op(b"\x94"),
    _op(b"Q"),
    _op(b"\x97"),
    _op(b"\x98"),
    _op(b"K", _SMALL),
    _op(b"M", st.binary(min_size=2, max_size=2)),
    _op(b"J", st.binary(min_size=4, max_size=4)),
    _op(b"G", st.binary(min_size=8, max_size=8)),
    _op(
        b"\x8a",
        st.integers(0, 8)
        .flatmap(lambda n: st.binary(min_size=n, max_size=n))
        .map(lambda b: bytes([len(b)]) + b),
    ),
    _op(b"\x8c", st.text(max_size=8).map(lambda t: bytes([len(t.encode())]) + t.encode())),
    _op(b"C", st.binary(max_size=8).map(lambda b: bytes([len(b)]) + b)),
    _op(b"X", st.text(max_size=8).map(lambda t: struct.pack("<I", len(t.encode())) + t.encode())),
    _op(b"q", _MEMO.map(lambda n: bytes([n]))),
    _op(b"h", _MEMO.map(lambda n: bytes([n]))),
    _op(b"p", _MEMO.map(lambda n: b"%d\n" % n)),
    _op(b"g", _MEMO.map(lambda n: b"%d\n" % n)),
    _op(b"I", st.sampled_from([b"01\n", b"00\n", b"12\n", b"-3\n"])),
    _op(b"S", st.sampled_from([b"'a'\n", b"'os'\n", b"'system'\n"])),
    _op(b"V", st.sampled_from([b"os\n", b"system\n", b"x\n"])),
    _op(b"c", st.tuples(_NAME, _ATTR).map(lambda p: p[0] + b"\n" + p[1] + b"\n")),
    _op(b"i", st.tuples(_NAME, _ATTR).map(lambda p: p[0] + b"\n" + p[1] + b"\n")),
    _op(b"\x82", _SMALL),
    _op(b"\x95", st.integers(0, 64).map(lambda n: struct.pack("<Q", n))),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]), st.lists(_OPS, max_size=60))
def test_opcode_sequences_never_crash(proto: bytes, ops: list[bytes]) -> None:
    data = proto + b"".join(ops)
    analyze_pickle(io.BytesIO(data))
    looks_like_pickle(data[:4096])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_raw_bytes_never_crash(data: bytes) -> None:
    analyze_pickle(io.BytesIO(b"\x80\x04" + data))
    analyze_pickle(io.BytesIO(data))
