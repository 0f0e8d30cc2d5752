"""ONNX scanner: real exports clean; escaping external data, custom domains found at any depth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._protobuf import ProtoError, Source, iter_fields
from atlasguard.artifacts.formats.onnx import SCANNERS, location_escapes
from tests.artifacts.formats._mutate import mutate

onnx = pytest.importorskip("onnx")
helper = onnx.helper
set_external_data = pytest.importorskip("onnx.external_data_helper").set_external_data
TensorProto = onnx.TensorProto
Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def model(
    nodes: list[Any],
    *,
    initializers: list[Any] | None = None,
    opsets: list[Any] | None = None,
    functions: list[Any] | None = None,
) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=initializers or [],
    )
    m = helper.make_model(
        graph,
        opset_imports=opsets or [helper.make_opsetid("", 17)],
        functions=functions or [],
        producer_name="atlasguard-tests",
    )
    out: bytes = m.SerializeToString()
    return out


def test_sklearn_export_is_clean(scan: Scan) -> None:
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    onx = skl2onnx.convert_sklearn(clf, initial_types=[("x", FloatTensorType([None, 3]))])
    data = onx.SerializeToString()
    assert [s.name for s in SCANNERS if s.sniff(data[:4096])] == ["onnx"]
    assert rules(scan(data), Severity.MEDIUM) == set()


def test_plain_model_clean(scan: Scan) -> None:
    assert scan(model([helper.make_node("Relu", ["x"], ["y"])])) == []


def test_external_data_escape(scan: Scan) -> None:
    for loc in ["../../../etc/passwd", "/etc/shadow", "C:\\Windows\\win.ini", "a/../../b"]:
        t = helper.make_tensor("w", TensorProto.FLOAT, [1], b"\0\0\0\0", raw=True)
        set_external_data(t, location=loc)
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        found = scan(model([helper.make_node("Relu", ["x"], ["y"])], initializers=[t]))
        assert rules(found, Severity.CRITICAL) == {"onnx-external-data-escape"}, loc
    t = helper.make_tensor("w", TensorProto.FLOAT, [1], b"\0\0\0\0", raw=True)
    set_external_data(t, location="weights.bin")
    t.data_location = TensorProto.EXTERNAL
    assert scan(model([helper.make_node("Relu", ["x"], ["y"])], initializers=[t])) == []


def test_custom_domain_in_nested_subgraphs(scan: Scan) -> None:
    evil = helper.make_node("RunShell", ["x"], ["y"], domain="evil.ops")
    body = helper.make_graph(
        [evil], "inner", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    )
    for _ in range(5):  # If inside Loop inside If ...
        node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)
        body = helper.make_graph(
            [node], "wrap", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
        )
    found = scan(
        model(
            [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
            opsets=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)],
        )
    )
    hits = [f for f in found if f.rule == "onnx-custom-domain"]
    assert len(hits) == 1
    assert hits[0].severity == Severity.HIGH
    assert "RunShell" in hits[0].message


def test_contrib_is_low_and_local_function_is_fine(scan: Scan) -> None:
    fn = helper.make_function(
        "local.fn",
        "MyAdd",
        ["a"],
        ["b"],
        [helper.make_node("Relu", ["a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    found = scan(
        model(
            [
                helper.make_node("MyAdd", ["x"], ["t"], domain="local.fn"),
                helper.make_node("FusedGemm", ["t"], ["y"], domain="com.microsoft"),
            ],
            opsets=[
                helper.make_opsetid("", 17),
                helper.make_opsetid("local.fn", 1),
                helper.make_opsetid("com.microsoft", 1),
            ],
            functions=[fn],
        )
    )
    assert rules(found) == {"onnx-custom-domain"}
    assert max(f.severity for f in found) == Severity.LOW


def test_custom_op_inside_function(scan: Scan) -> None:
    fn = helper.make_function(
        "local.fn",
        "F",
        ["a"],
        ["b"],
        [helper.make_node("Native", ["a"], ["b"], domain="ai.onnx.contrib")],
        [helper.make_opsetid("ai.onnx.contrib", 1)],
    )
    found = scan(
        model(
            [helper.make_node("F", ["x"], ["y"], domain="local.fn")],
            opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local.fn", 1)],
            functions=[fn],
        )
    )
    assert rules(found, Severity.HIGH) == {"onnx-custom-domain"}


def test_location_escapes() -> None:
    assert location_escapes("..\\x")
    assert location_escapes("")
    assert location_escapes("file:///etc/passwd")
    assert not location_escapes("sub/dir/w.bin")


def test_truncated_model_is_unreadable(scan: Scan) -> None:
    data = model([helper.make_node("Relu", ["x"], ["y"])])
    assert "unreadable" in rules(scan(data[:-5]))


SEED = model(
    [
        helper.make_node(
            "If",
            ["c"],
            ["y"],
            then_branch=helper.make_graph(
                [helper.make_node("X", ["x"], ["y"], domain="d")], "b", [], []
            ),
        )
    ]
)


@settings(max_examples=200, deadline=2000)
@given(st.data())
def test_mutated_protobufs_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = mutate(SEED, data)
    run_scanner(SCANNERS[0], raw)
    SCANNERS[0].sniff(raw)


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=300))
def test_reader_raises_only_proto_error(raw: bytes) -> None:
    src = Source.from_bytes(raw)
    try:
        for _ in iter_fields(src, 0, src.size):
            pass
    except ProtoError:
        pass


def test_reordered_fields_and_unknown_fields_still_sniffed(scan: Scan) -> None:
    data = model([helper.make_node("Native", ["x"], ["y"], domain="evil.ops")])
    src = Source.from_bytes(data)
    fields = {
        f.number: data[f.start - len_prefix(data, f) : f.end]
        for f in iter_fields(src, 0, src.size)
        if f.wire == 2
    }
    ir = b"\x08" + bytes([onnx.IR_VERSION])
    unknown = b"\xf8\x06\x01"  # field 111, varint 1: ignored by every protobuf parser
    reordered = unknown + fields[7] + b"".join(v for k, v in fields.items() if k != 7) + ir
    assert onnx.load_from_string(reordered).graph.node[0].domain == "evil.ops"
    assert [s.name for s in SCANNERS if s.sniff(reordered[:4096])] == ["onnx"]
    assert rules(scan(reordered), Severity.HIGH) == {"onnx-custom-domain"}


def len_prefix(data: bytes, f: Any) -> int:
    """Bytes of tag and length before a length-delimited field's payload."""
    tag = 1 if f.number < 16 else 2
    n = f.end - f.start
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return tag + size


def test_other_protobufs_are_not_onnx() -> None:
    from atlasguard.artifacts.formats.savedmodel import SCANNERS as SM

    frozen_graph = b"\x0a\x05\x0a\x01x\x12\x00"  # a TF GraphDef: node {name: "x"}
    assert not SCANNERS[0].sniff(frozen_graph)
    assert not SM[0].sniff(frozen_graph)
    assert not SCANNERS[0].sniff(b"::\nhello world")
