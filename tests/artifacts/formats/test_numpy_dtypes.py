"""NumPy dtype descriptors, differentially: the scanner reads them as NumPy does.

Hypothesis writes descriptors in every form NumPy accepts (byte orders, sizes,
subarray shapes like ``'(1,)O'``, comma lists like ``'i4,O'``, field lists with
nested shapes). Whenever ``numpy.load`` would unpickle the payload, really
checked with a harmless payload, the scanner must dispatch it as a pickle; and
the pickled-dtype path joblib uses must agree with :class:`numpy.dtype` too.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.formats._pickle_decode import spec_has_object
from atlasguard.artifacts.formats.numpy import has_object_dtype
from atlasguard.artifacts.scan import scan_stream
from tests.conftest import examples

_CODES = ["b", "B", "i", "u", "f", "c", "O", "S", "U", "V", "?", "M8[s]", "m8[ns]", "e", "d"]
_NAMED = ["i4", "f8", "O", "object", "O8", "u1", "c16", "S3", "U2", "V8", "bool"]

plain = st.builds(
    lambda order, code, size: f"{order}{code}{size}",
    st.sampled_from(["", "<", ">", "|", "="]),
    st.sampled_from(_CODES),
    st.sampled_from(["", "1", "2", "4", "8", "16"]),
)
shape = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(
    lambda dims: "(" + ",".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
)
spec = st.one_of(
    plain,
    st.sampled_from(_NAMED),
    st.builds(lambda s, t: s + t, shape, st.sampled_from(_NAMED)),
    st.lists(st.one_of(st.sampled_from(_NAMED), plain), min_size=2, max_size=3).map(",".join),
)
descr = st.recursive(
    spec,
    lambda inner: st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["a", "b", "c"]), inner),
            st.tuples(st.sampled_from(["d", "e"]), inner, st.tuples(st.integers(1, 2))),
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda f: f[0],
    ),
    max_leaves=4,
)


def _numpy_hasobject(d: object) -> bool | None:
    try:
        return bool(np.lib.format.descr_to_dtype(d).hasobject)
    except Exception:
        return None


@settings(max_examples=examples(400), deadline=None)
@given(descr)
def test_has_object_dtype_agrees_with_numpy(d: object) -> None:
    truth = _numpy_hasobject(d)
    if truth is not None:  # where NumPy refuses it, numpy.load fails and nothing runs
        assert has_object_dtype(d) == truth


@settings(max_examples=examples(400), deadline=None)
@given(spec)
def test_a_pickled_dtype_spec_is_judged_as_numpy_judges_it(s: str) -> None:
    try:
        truth: bool | None = bool(np.dtype(s).hasobject)
    except Exception:
        truth = None
    assert spec_has_object(s) == truth


def _npy(d: object, payload: bytes) -> bytes:
    header = repr({"descr": d, "fortran_order": False, "shape": (1,)}).encode()
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


_HARMLESS = b"cbuiltins\nlen\n(S'true'\ntR."
_EVIL = b"cos\nsystem\n(S'true'\ntR."


@settings(max_examples=examples(200), deadline=None)
@given(descr)
def test_every_npy_numpy_would_unpickle_is_scanned_as_a_pickle(d: object) -> None:
    try:
        loaded = np.load(io.BytesIO(_npy(d, _HARMLESS)), allow_pickle=True)
    except Exception:
        return  # numpy.load refuses it (or reads raw bytes that do not fit): nothing unpickled
    if type(loaded) is not int:
        return  # raw bytes read as an array: no pickle ran (an unpickled payload gives 4)
    _fmt, findings = scan_stream(io.BytesIO(_npy(d, _EVIL)))
    assert any(f.severity >= Severity.HIGH and "system" in f.message for f in findings), d


@pytest.mark.parametrize("form", ["(1,)O", "i4,O", "|O8", "O", [("a", "(2,)O")], ("O", (1,))])
def test_the_forms_named_in_the_issue_are_objects(form: object) -> None:
    assert np.load(io.BytesIO(_npy(form, _HARMLESS)), allow_pickle=True) == 4
    _fmt, findings = scan_stream(io.BytesIO(_npy(form, _EVIL)))
    assert {f.rule for f in findings} >= {"numpy-object-dtype", "pickle-import"}


def test_plain_dtypes_stay_clean() -> None:
    for form in ["<f4", "(2,)i4", "i4,f8", [("a", "<f4", (2,))], "|V8", "<U3"]:
        arr = np.zeros(2, dtype=np.lib.format.descr_to_dtype(form))
        buf = io.BytesIO()
        np.save(buf, arr)
        assert scan_stream(io.BytesIO(buf.getvalue()))[1] == [], form
    assert pickle.loads(_HARMLESS) == 4
