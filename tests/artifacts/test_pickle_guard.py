"""getattr, functools.partial and torch.storage._load_from_bytes: judged where used (issue 12).

Ordinary pickles use them with their targets in plain sight (protocol-2 nested names,
pandas 1.x blocks, tensors pickled with ``pickle``). Each benign shape must pass; every
variant that hides the target, or lets the primitive escape where the analysis cannot
follow it, must stay ``critical``.
"""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any

import pytest

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.pickle import analyze_pickle
from atlasguard.artifacts.scan import scan_stream


def su(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def scan(data: bytes) -> list[Finding]:
    return scan_stream(io.BytesIO(data))[1]


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


# --------------------------------------------------------------------------- getattr
def test_protocol_2_nested_name_is_judged_as_the_dotted_import() -> None:
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, 0.01, 0.1)
    data = pickle.dumps(sched, protocol=2)
    assert b"getattr" in data
    findings = scan(data)
    assert not [f for f in findings if f.severity >= Severity.LOW], findings


def test_getattr_of_a_dangerous_attribute_is_critical() -> None:
    # getattr(os, "system") spelled as protocol 2 writes a nested name
    data = b"\x80\x02c__builtin__\ngetattr\ncos\nname\nX\x06\x00\x00\x00system\x86R."
    assert worst(scan(data)) is Severity.CRITICAL
    data = b"\x80\x02cbuiltins\ngetattr\ncbuiltins\ndict\nX\x03\x00\x00\x00get\x86R."
    assert worst(scan(data)) is Severity.CRITICAL  # builtins.dict.get


def test_getattr_on_an_allowed_class_with_an_unknown_attribute_is_high() -> None:
    data = b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nX\x04\x00\x00\x00spam\x86R."
    assert worst(scan(data)) is Severity.HIGH


@pytest.mark.parametrize(
    "data",
    [
        # attribute name not a constant
        b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nN\x86R.",
        # target not an import: the result of a call
        b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nset\n)R" + b"X\x03\x00\x00\x00add\x86R.",
        # getattr stored in a list, where the analysis cannot follow it
        b"\x80\x02]cbuiltins\ngetattr\na.",
        # getattr passed as an argument to an allowed higher-order function
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\ncbuiltins\ngetattr\nN)N(tR.",
        # getattr left as the pickle's result
        b"\x80\x02cbuiltins\ngetattr\n.",
        # memoized once, fetched twice: the second use escapes into a tuple
        b"\x80\x02cbuiltins\ngetattr\nq\x00ccollections\nOrderedDict\nX\x01\x00\x00\x00x\x86R0h\x00\x85.",
        # NEWOBJ on getattr
        b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\nX\x01\x00\x00\x00x\x86\x81.",
    ],
)
def test_getattr_where_the_analysis_cannot_follow_it_is_critical(data: bytes) -> None:
    assert worst(scan(data)) is Severity.CRITICAL


def test_memoized_getattr_reused_for_two_nested_names_passes() -> None:
    body = (
        b"cbuiltins\ngetattr\nq\x00ctorch.optim.lr_scheduler\nCyclicLR\nX\x14\x00\x00\x00"
        b"_triangular_scale_fn\x86R"
        b"h\x00ctorch.optim.lr_scheduler\nCyclicLR\nX\x14\x00\x00\x00_triangular_scale_fn\x86R"
        b"\x86."
    )
    assert worst(scan(b"\x80\x02" + body)) is None


# --------------------------------------------------------------------------- partial
class _Pandas1Block:
    """Pickles as pandas 1.3-1.5 blocks did: ``(partial(new_block, ndim=2), args)``."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return functools.partial(self.target, ndim=2), ([1.0, 2.0], slice(0, 2))


def test_pandas_1_partial_of_an_internal_constructor_passes() -> None:
    blocks = pytest.importorskip("pandas.core.internals.blocks")
    for protocol in (2, 4, 5):
        data = pickle.dumps(_Pandas1Block(blocks.new_block), protocol=protocol)
        assert b"partial" in data
        assert worst(scan(data)) is None, protocol


def test_partial_of_a_dangerous_function_is_critical() -> None:
    import os

    data = pickle.dumps(_Pandas1Block(os.system), protocol=4)
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    assert any(".system" in f.message for f in findings)


def test_partial_whose_state_swaps_in_an_unresolved_function_is_critical() -> None:
    # partial(OrderedDict) built, then its state replaces the function by a call result
    data = (
        b"\x80\x04"
        + su("functools")
        + su("partial")
        + b"\x93"
        + su("collections")
        + su("OrderedDict")
        + b"\x93\x85R("
        + su("builtins")
        + su("set")
        + b"\x93)R)}Nt"
        + b"b)R."
    )
    assert worst(scan(data)) is Severity.CRITICAL


def test_partial_of_an_unresolvable_value_is_critical() -> None:
    data = b"\x80\x04" + su("functools") + su("partial") + b"\x93" + b"]\x85R)R."
    assert worst(scan(data)) is Severity.CRITICAL


def test_partial_that_escapes_into_a_container_is_critical() -> None:
    data = b"\x80\x04]" + su("functools") + su("partial") + b"\x93a."
    assert worst(scan(data)) is Severity.CRITICAL


# --------------------------------------------------------------------------- _load_from_bytes
def test_tensor_pickled_with_pickle_is_scanned_as_a_nested_file() -> None:
    torch = pytest.importorskip("torch")
    data = pickle.dumps(
        {"w": torch.ones(3), "opt": torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)},
        protocol=4,
    )
    findings = scan(data)
    assert worst(findings) is Severity.INFO
    assert any(f.rule == "pickle-nested" for f in findings)


def test_load_from_bytes_payload_with_a_payload_is_critical() -> None:
    torch = pytest.importorskip("torch")

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return os.system, ("true",)

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)

    class Carrier:
        def __reduce__(self) -> tuple[Any, ...]:
            return torch.storage._load_from_bytes, (buf.getvalue(),)

    data = pickle.dumps(Carrier(), protocol=4)
    for findings in (scan(data), analyze_pickle(io.BytesIO(data))):  # with or without a dispatcher
        assert worst(findings) is Severity.CRITICAL
        assert any("os.system" in f.message or "posix.system" in f.message for f in findings)


def test_load_from_bytes_on_data_the_analysis_cannot_see_is_critical() -> None:
    data = (
        b"\x80\x04"
        + su("torch.storage")
        + su("_load_from_bytes")
        + b"\x93"
        + su("builtins")
        + su("bytes")
        + b"\x93]\x85R\x85R."
    )
    assert worst(scan(data)) is Severity.CRITICAL


# --------------------------------------------------------------------------- calls through torch
def test_rebuild_from_type_calls_are_judged_as_direct_calls() -> None:
    # _rebuild_from_type_v2(getattr, T, (os-ish class, "system"), state): getattr's target is judged
    data = (
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n("
        b"cbuiltins\ngetattr\nctorch\nTensor\ncbuiltins\ndict\nX\x03\x00\x00\x00get\x86}tR."
    )
    findings = scan(data)
    assert worst(findings) is Severity.CRITICAL
    assert any("builtins.dict.get" in f.message for f in findings)


def test_booster_called_with_a_file_name_is_flagged() -> None:
    data = b"\x80\x02cxgboost.core\nBooster\nNNX\x0b\x00\x00\x00/etc/passwd\x87R."
    findings = scan(data)
    assert worst(findings) is Severity.HIGH and any(f.rule == "pickle-call-args" for f in findings)
    rebuilt = b"\x80\x02cxgboost.core\nBooster\n)\x81}b."  # NEWOBJ + BUILD, as ordinary pickles
    assert worst(scan(rebuilt)) is None
