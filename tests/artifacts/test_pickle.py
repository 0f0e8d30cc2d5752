"""The static pickle analysis: every import trick, stream shapes, bounds, real benign files."""

from __future__ import annotations

import base64
import bz2
import collections
import datetime
import decimal
import io
import lzma
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.base import Limits, ScanContext
from atlasguard.artifacts.formats.pickle import analyze_pickle, looks_like_pickle


def scan(
    data: bytes, *, allow: tuple[str, ...] = (), limits: Limits | None = None
) -> list[Finding]:
    ctx = None
    if limits is not None:
        ctx = ScanContext(limits=limits, allow=frozenset(allow), dispatch=lambda s, c: [])
    return analyze_pickle(io.BytesIO(data), ctx, allow=allow)


def rules(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


def su(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


class Touch:
    """A payload that would create ``path`` if it ever ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


# -- imports ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_of_os_system_is_critical_in_every_protocol(protocol: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    findings = scan(pickle.dumps(Touch(marker), protocol=protocol))
    assert worst(findings) is Severity.CRITICAL
    assert any("system" in f.message for f in findings)
    assert not marker.exists()


def test_global_text_pickle_without_proto() -> None:
    findings = scan(b"cos\nsystem\n(S'echo hi'\ntR.")
    assert [f.rule for f in findings] == ["pickle-import"]
    assert findings[0].severity is Severity.CRITICAL
    assert findings[0].location.offset == 0


def test_stack_global_names_fetched_from_the_memo() -> None:
    # module and name memoized first, then fetched with BINGET / LONG_BINGET
    data = (
        b"\x80\x04"
        + su("os")
        + b"q\x00"
        + su("system")
        + b"r\x01\x00\x00\x00"
        + b"0"
        + b"0"
        + b"h\x00j\x01\x00\x00\x00\x93"
        + su("id")
        + b"\x85R."
    )
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    assert any("os.system" in f.message for f in findings)


def test_stack_global_names_from_memoize_and_text_get() -> None:
    data = (
        b"\x80\x04"
        + su("subprocess")
        + b"\x94"
        + su("Popen")
        + b"\x94"
        + b"00"
        + b"g0\ng1\n\x93"
        + su("id")
        + b"\x85R."
    )
    assert worst(scan(data)) is Severity.CRITICAL


def test_inst_obj_newobj_newobj_ex_build() -> None:
    inst = b"(S'id'\nios\nsystem\n."
    obj = b"\x80\x02(csubprocess\nPopen\nS'id'\no."
    newobj = b"\x80\x02csubprocess\nPopen\n)\x81."
    newobj_ex = b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93)}\x92."
    for data in (inst, obj, newobj, newobj_ex):
        assert worst(scan(data)) is Severity.CRITICAL, data


def test_build_on_a_class_is_monkey_patching() -> None:
    data = b"\x80\x02ccollections\nOrderedDict\n}(S'x'\nK\x01ub."
    findings = scan(data)
    assert "pickle-build-global" in rules(findings)
    assert worst(findings) is Severity.HIGH


def test_ext_opcodes_are_findings() -> None:
    for data in (
        b"\x80\x02\x82\x01)R.",
        b"\x80\x02\x83\x01\x02)R.",
        b"\x80\x02\x84\x01\x00\x00\x00.",
    ):
        findings = scan(data)
        assert "pickle-ext" in rules(findings)
        assert worst(findings) is not None and worst(findings) >= Severity.HIGH


def test_fix_imports_names_for_old_protocols() -> None:
    for module in (b"__builtin__", b"builtins"):
        findings = scan(b"\x80\x02c" + module + b"\neval\n(S'1'\ntR.")
        assert worst(findings) is Severity.CRITICAL
        assert any("builtins.eval" in f.message for f in findings)
    # exceptions.* maps into builtins; commands maps to subprocess
    assert worst(scan(b"ccommands\ngetoutput\n(S'id'\ntR.")) is Severity.CRITICAL
    # copy_reg._reconstructor of an allowed class is fine in protocol 2
    assert scan(pickle.dumps(collections.OrderedDict(a=1), protocol=2)) == []


def test_dotted_names_walk_into_dangerous_modules() -> None:
    for module, name in (
        ("torch", "os.system"),
        ("numpy", "testing._private.utils.os.system"),
        ("collections", "abc.sys.modules"),
        ("torch._utils", "pickle.loads"),
    ):
        data = b"\x80\x04" + su(module) + su(name) + b"\x93" + su("x") + b"\x85R."
        findings = scan(data)
        assert worst(findings) is Severity.CRITICAL, (module, name)
    # a dotted name through an allowed module never matches an allow entry
    data = b"\x80\x04" + su("torch") + su("nn.modules.linear.Linear") + b"\x93."
    assert worst(scan(data)) is Severity.HIGH


def test_builtins_getattr_chain() -> None:
    data = b"\x80\x02c__builtin__\ngetattr\n(c__builtin__\ndict\nS'get'\ntR(S'x'\ntR."
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    # getattr(<class>, "<name>") is judged as the dotted import it spells (issue 12)
    assert any("builtins.dict.get" in f.message for f in findings)


def test_reconstructor_with_unresolvable_class_is_flagged() -> None:
    data = b"\x80\x02ccopy_reg\n_reconstructor\n(N\x85cbuiltins\nobject\nNtR."
    assert "pickle-call-unresolved" in rules(scan(data))


def test_unknown_module_is_high_not_silent() -> None:
    findings = scan(b"\x80\x02cmypkg.models\nNet\n)\x81.")
    assert worst(findings) is Severity.HIGH
    assert scan(b"\x80\x02cmypkg.models\nNet\n)\x81.", allow=("mypkg.models.Net",)) == []


def test_unresolved_stack_global() -> None:
    # names built by a call the analysis does not fold
    data = b"\x80\x04cbuiltins\nstr\n(S'os'\ntR" + su("system") + b"\x93."
    assert "pickle-import-unresolved" in rules(scan(data))


# -- stream shapes ---------------------------------------------------------------


def test_frame_length_mismatch_does_not_hide_opcodes() -> None:
    payload = b"cos\nsystem\n(S'id'\ntR."
    # the frame claims 2 bytes but the payload follows linearly
    data = b"\x80\x04\x95" + struct.pack("<Q", 2) + payload
    assert worst(scan(data)) is Severity.CRITICAL
    big = b"\x80\x04\x95" + struct.pack("<Q", 10**9) + payload
    assert worst(scan(big)) is Severity.CRITICAL


def test_concatenated_pickles_are_all_scanned(tmp_path: Path) -> None:
    data = pickle.dumps({"w": [1, 2]}) + pickle.dumps(Touch(tmp_path / "x"))
    assert worst(scan(data)) is Severity.CRITICAL
    text = pickle.dumps([1], protocol=0) + b"cposix\nsystem\n(S'id'\ntR."
    assert worst(scan(text)) is Severity.CRITICAL


def test_parse_error_reports_prior_findings_too() -> None:
    data = b"\x80\x02cos\nsystem\n\xff\xff"
    findings = scan(data)
    assert {"pickle-import", "unreadable"} <= rules(findings)
    truncated = pickle.dumps(Touch(Path("/nonexistent")), protocol=2)[:-3]
    assert "unreadable" in rules(scan(truncated))


def test_trailing_non_pickle_bytes_after_stop_are_ignored() -> None:
    assert scan(pickle.dumps([1, 2, 3]) + b"\x00\x01 raw tensor bytes \xff" * 10) == []


@pytest.mark.parametrize("wrap", ["zlib", "bz2", "lzma", "gzip", "b64", "raw", "codecs"])
def test_nested_pickles_are_decoded_and_scanned(wrap: str) -> None:
    inner = b"\x80\x02cposix\nsystem\n(S'id'\ntR."
    if wrap == "raw":
        call = b"cpickle\nloads\n(C" + bytes([len(inner)]) + inner + b"tR."
    elif wrap == "codecs":
        text = inner.decode("latin-1").encode()
        call = (
            b"c_pickle\nloads\n(c_codecs\nencode\n(X"
            + struct.pack("<I", len(text))
            + text
            + b"X\x06\x00\x00\x00latin1tRtR."
        )
    else:
        func, blob = {
            "zlib": (b"zlib\ndecompress", zlib.compress(inner)),
            "bz2": (b"bz2\ndecompress", bz2.compress(inner)),
            "lzma": (b"lzma\ndecompress", lzma.compress(inner)),
            "gzip": (b"gzip\ndecompress", __import__("gzip").compress(inner)),
            "b64": (b"base64\nb64decode", base64.b64encode(inner)),
        }[wrap]
        call = (
            b"cpickle\nloads\n(c" + func + b"\n(B" + struct.pack("<I", len(blob)) + blob + b"tRtR."
        )
    findings = scan(b"\x80\x03" + call)
    nested = [f for f in findings if f.message.startswith("nested pickle")]
    assert any(f.rule == "pickle-nested" and f.severity is Severity.CRITICAL for f in findings)
    assert any("posix.system" in f.message for f in nested), findings


# -- benign data --------------------------------------------------------------------

BENIGN: list[Any] = [
    {"a": [1, 2.5, None, True], "b": (1, "x", b"y"), "c": {1, 2}, "d": frozenset([3])},
    collections.OrderedDict(x=1),
    collections.defaultdict(list, a=[1]),
    collections.Counter("hello"),
    collections.deque([1, 2]),
    bytearray(b"abc"),
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.timedelta(days=2),
    decimal.Decimal("1.5"),
    complex(1, 2),
    range(3),
    slice(1, 2),
    2**200,
    -(2**70),
    "é" * 300,
    b"\x00" * 70_000,
    [[[]]],
]


@pytest.mark.parametrize("protocol", range(6))
def test_benign_builtin_data_has_no_finding(protocol: int) -> None:
    for value in BENIGN:
        assert scan(pickle.dumps(value, protocol=protocol)) == [], (value, protocol)


def test_numpy_arrays_and_scalars_are_benign() -> None:
    np = pytest.importorskip("numpy")
    values = [
        np.arange(10),
        np.zeros((2, 3), dtype="f4"),
        np.array(["a", "bc"]),
        np.float64(1.5),
        np.int32(3),
        np.dtype("i8"),
        np.random.RandomState(0),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    ]
    for protocol in range(6):
        for v in values:
            assert scan(pickle.dumps(v, protocol=protocol)) == [], (v, protocol)


def test_sklearn_pickle_and_joblib_are_benign(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    pipeline_mod = pytest.importorskip("sklearn.pipeline")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    y = (x[:, 0] > 0.5).astype(int)
    models = [
        LogisticRegression().fit(x, y),
        pipeline_mod.Pipeline(
            [("s", StandardScaler()), ("f", RandomForestClassifier(n_estimators=2))]
        ).fit(x, y),
    ]
    for i, model in enumerate(models):
        for protocol in (2, 4, 5):
            assert scan(pickle.dumps(model, protocol=protocol)) == []
        path = tmp_path / f"m{i}.joblib"
        joblib.dump(model, path)
        assert scan(path.read_bytes()) == []
    mixed = tmp_path / "mixed.joblib"
    joblib.dump(
        {
            "ints": np.arange(1000),
            "obj": np.array([1, "x", None], dtype=object),
            "u": np.zeros(3, dtype="U5"),
            "f": np.asfortranarray(np.ones((3, 4))),
            "s": np.zeros(2, dtype=[("a", "f4"), ("b", "i8")]),
            "e": np.zeros((0, 3)),
        },
        mixed,
    )
    assert scan(mixed.read_bytes()) == []


def test_joblib_inline_data_does_not_hide_a_payload(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.joblib"
    joblib.dump({"w": np.arange(100), "x": Touch(marker), "z": np.ones(7)}, path)
    assert worst(scan(path.read_bytes())) is Severity.CRITICAL
    # an object array is a nested pickle inline: its payload is found too
    obj = np.empty(2, dtype=object)
    obj[0] = Touch(marker)
    joblib.dump({"w": np.arange(10), "o": obj}, path)
    assert worst(scan(path.read_bytes())) is Severity.CRITICAL
    assert not marker.exists()


def test_joblib_array_bytes_that_pickle_would_run_are_flagged() -> None:
    # a NumpyArrayWrapper without alignment: joblib reads 24 raw bytes after BUILD,
    # plain pickle.load would run them as opcodes
    payload = b"cos\nsystem\n(S'id'\ntR0"
    payload += b"N" * (24 - len(payload))
    data = (
        b"\x80\x04cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(\x8c\x05shape"
        b"K\x03\x85\x8c\x05dtypecnumpy\ndtype\n\x8c\x02f8\x89\x88\x87R"
        b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbub" + payload + b"."
    )
    assert len(payload) == 24
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    assert any("instead of joblib" in f.message for f in findings)


def _legacy_torch(objs: list[bytes]) -> bytes:
    return b"".join(objs) + struct.pack("<q", 4) + b"\x00" * 16


def test_legacy_torch_files(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4),
        torch.nn.ReLU(),
        torch.nn.BatchNorm1d(4),
        torch.nn.Dropout(),
        torch.nn.Linear(4, 2),
    )
    for obj in (net.state_dict(), net):
        for zip_format in (False, True):
            path = tmp_path / f"m{zip_format}.pt"
            torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
            if not zip_format:
                assert scan(path.read_bytes()) == []
    # a hand-built legacy file whose third pickle (sys info) carries the payload
    marker = tmp_path / "pwned"
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    parts = [
        magic,
        pickle.dumps(1001, protocol=2),
        pickle.dumps(Touch(marker), protocol=2),
        pickle.dumps({}, protocol=2),
        pickle.dumps([], protocol=2),
    ]
    assert worst(scan(_legacy_torch(parts))) is Severity.CRITICAL
    parts[2] = pickle.dumps({"little_endian": True}, protocol=2)
    assert scan(_legacy_torch(parts)) == []
    assert not marker.exists()


# -- bounds -------------------------------------------------------------------------------


def test_many_integers_take_the_fast_path() -> None:
    data = pickle.dumps(list(range(300_000)), protocol=4)
    assert scan(data) == []
    # the fast path must not swallow a payload placed after the data
    evil = data[:-1] + b"0cos\nsystem\n."
    assert worst(scan(evil)) is Severity.CRITICAL


def test_opcode_limit_becomes_a_finding() -> None:
    data = pickle.dumps([[i, "x"] for i in range(40_000)], protocol=2)
    findings = scan(data, limits=Limits(max_pickle_opcodes=1000))
    assert "limit-exceeded" in rules(findings)


def test_looks_like_pickle() -> None:
    assert looks_like_pickle(b"\x80\x04\x95")
    assert looks_like_pickle(b"cos\nsystem\n")
    assert looks_like_pickle(pickle.dumps([1, 2], protocol=0))
    assert not looks_like_pickle(b"Hello, world\n")
    assert not looks_like_pickle(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert not looks_like_pickle(b"")
    # raw int64 tensor bytes starting with 128 are not a pickle (the unpickler stops at once)
    assert not looks_like_pickle(struct.pack("<4q", 128, 1, 2, 3))
    # a PROTO pickle whose first value does not fit in the head still is one
    head = b"\x80\x04\x8e" + struct.pack("<Q", 10**6) + b"\x00" * 4000
    assert looks_like_pickle(head)


def test_random_bytes_are_rarely_sniffed_and_never_flagged() -> None:
    import random

    rng = random.Random(7)
    flagged = 0
    for _ in range(3000):
        head = rng.randbytes(4096)
        if looks_like_pickle(head) and scan(head):
            flagged += 1
    assert flagged == 0


_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=5)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=2000)
@given(value=_plain, protocol=st.integers(0, 5))
def test_random_benign_data_has_no_finding(value: Any, protocol: int) -> None:
    assert scan(pickle.dumps(value, protocol=protocol)) == []


_seeds = [pickle.dumps(Touch(Path("/x")), protocol=p) for p in range(6)] + [
    pickle.dumps({"a": [1, 2, (3, "x")]}, protocol=p) for p in range(6)
]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_seeds),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    truncate=st.integers(0, 400),
)
def test_mutated_pickles_never_raise(
    seed: bytes, cuts: list[tuple[int, int]], truncate: int
) -> None:
    data = bytearray(seed)
    for pos, byte in cuts:
        if data:
            data[pos % len(data)] = byte
    result = scan(bytes(data[: max(truncate, 1)]), limits=Limits(max_seconds_per_file=5))
    assert isinstance(result, list)


@settings(max_examples=200, deadline=2000)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert isinstance(scan(data), list)
    assert isinstance(looks_like_pickle(data), bool)


def test_joblib_alignment_padding_is_checked_not_trusted(tmp_path: Path) -> None:
    """joblib skips the padding its length byte announces; pickle.load runs it as opcodes."""
    np = pytest.importorskip("numpy")
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "a.joblib"
    joblib.dump({"w": np.arange(3, dtype=np.float64)}, path)
    data = path.read_bytes()
    assert scan(data) == []  # joblib's own padding: 0xff bytes, shorter than the alignment
    at = data.index(b"numpy_array_alignment_bytes\x94K\x10ub") + len(
        b"numpy_array_alignment_bytes\x94K\x10ub"
    )
    n = data[at]
    assert data[at + 1 : at + 1 + n] == b"\xff" * n
    # The same file, its padding announced as 99 bytes ('c', GLOBAL to pickle.load) of opcodes.
    opcodes = b"os\nsystem\n(S'id'\ntR0"
    evil = data[:at] + b"c" + opcodes + b"N" * (99 - len(opcodes)) + data[at + 1 + n :]
    findings = scan(evil)
    assert worst(findings) is Severity.CRITICAL  # what pickle.load would run
    assert any(f.rule == "joblib-padding" and f.severity is Severity.HIGH for f in findings)
    # Padding that only holds other bytes is still not what joblib writes.
    quiet = data[:at] + bytes([n]) + b"\x00" * n + data[at + 1 + n :]
    assert [f.rule for f in scan(quiet)] == ["joblib-padding"]
