"""SavedModel scanner: Python and file ops found, the standard saver left alone, Keras metadata."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.onnx import SCANNERS as ONNX_SCANNERS
from atlasguard.artifacts.formats.savedmodel import SCANNERS
from tests.artifacts.formats._mutate import mutate

Scan = Callable[..., list[Finding]]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def vfield(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def lfield(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def node(name: str, op: str, **attrs: str) -> bytes:
    out = lfield(1, name) + lfield(2, op) + lfield(3, "input:0")
    for key, value in attrs.items():
        out += lfield(5, lfield(1, key) + lfield(2, lfield(2, value)))
    return out


def function(name: str, nodes: list[bytes]) -> bytes:
    return lfield(1, lfield(1, name)) + b"".join(lfield(3, n) for n in nodes)


def saved_model(graph_nodes: list[bytes], functions: list[bytes]) -> bytes:
    graph = b"".join(lfield(1, n) for n in graph_nodes)
    graph += lfield(2, b"".join(lfield(1, f) for f in functions))
    meta = lfield(1, lfield(4, "serve")) + lfield(2, graph)
    return vfield(1, 1) + lfield(2, meta)


STANDARD_SAVER = [
    function(
        "__inference__traced_save_123",
        [
            node("SaveV2", "SaveV2"),
            node("ShardedFilename", "ShardedFilename"),
            node("MergeV2Checkpoints", "MergeV2Checkpoints"),
            node("StringJoin", "StringJoin"),
        ],
    ),
    function("__inference__traced_restore_456", [node("RestoreV2", "RestoreV2")]),
    function(
        "__inference_serving_default_789",
        [node("MatMul", "MatMul"), node("PrintV2", "PrintV2", output_stream="stderr")],
    ),
]
GRAPH = [
    node("x", "Placeholder"),
    node("StatefulPartitionedCall", "StatefulPartitionedCall"),
    node("save/SaveV2", "SaveV2"),
    node("save_1/RestoreV2", "RestoreV2"),
]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def test_standard_saved_model_is_clean(scan: Scan) -> None:
    data = saved_model(GRAPH, STANDARD_SAVER)
    assert [s.name for s in SCANNERS if s.sniff(data[:4096])] == ["savedmodel"]
    assert not ONNX_SCANNERS[0].sniff(data[:4096])
    assert scan(data) == []


@pytest.mark.parametrize(
    ("where", "op", "attrs", "rule", "severity"),
    [
        ("function", "PyFunc", {}, "savedmodel-pyfunc", Severity.CRITICAL),
        ("function", "EagerPyFunc", {}, "savedmodel-pyfunc", Severity.CRITICAL),
        ("graph", "ReadFile", {}, "savedmodel-file-op", Severity.HIGH),
        ("graph", "WriteFile", {}, "savedmodel-file-op", Severity.HIGH),
        ("function", "MatchingFiles", {}, "savedmodel-file-op", Severity.HIGH),
        ("function", "SaveV2", {}, "savedmodel-file-op", Severity.HIGH),
        ("graph", "ImmutableConst", {}, "savedmodel-file-op", Severity.HIGH),
        (
            "function",
            "PrintV2",
            {"output_stream": "file:///tmp/x"},
            "savedmodel-file-op",
            Severity.HIGH,
        ),
        ("graph", "DebugIdentityV2", {}, "savedmodel-file-op", Severity.MEDIUM),
    ],
)
def test_dangerous_ops(
    scan: Scan, where: str, op: str, attrs: dict[str, str], rule: str, severity: Severity
) -> None:
    evil = node("evil", op, **attrs)
    graph = [*GRAPH, evil] if where == "graph" else GRAPH
    functions = (
        [*STANDARD_SAVER, function("__inference_call_1", [evil])]
        if where == "function"
        else STANDARD_SAVER
    )
    found = scan(saved_model(graph, functions))
    assert [(f.rule, f.severity) for f in found] == [(rule, severity)]
    assert op in found[0].message


def keras_metadata(layers: list[dict[str, object]]) -> bytes:
    out = b""
    for i, layer in enumerate(layers):
        obj = vfield(2, i) + lfield(3, f"root.layer-{i}") + lfield(4, "_tf_keras_layer")
        out += lfield(1, obj + lfield(5, json.dumps(layer)))
    return out


def test_keras_metadata(scan: Scan) -> None:
    dense: dict[str, object] = {
        "name": "dense",
        "trainable": True,
        "class_name": "Dense",
        "config": {"name": "dense", "units": 2},
    }
    lam: dict[str, object] = {
        "name": "lambda",
        "class_name": "Lambda",
        "config": {"name": "lambda", "function": ["4wEAAA", None, None], "function_type": "lambda"},
    }
    assert scan(keras_metadata([dense])) == []
    found = scan(keras_metadata([dense, lam]))
    assert [(f.rule, f.severity) for f in found] == [("keras-lambda", Severity.CRITICAL)]


def test_truncated_is_unreadable(scan: Scan) -> None:
    data = saved_model(GRAPH, STANDARD_SAVER)
    assert rules(scan(data[:-7])) == {"unreadable"}


SEED = saved_model(GRAPH, [*STANDARD_SAVER, function("f", [node("e", "PyFunc")])])


@settings(max_examples=200, deadline=2000)
@given(st.data())
def test_mutated_never_raise(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = mutate(SEED, data)
    for scanner in SCANNERS:
        run_scanner(scanner, raw)


def test_schema_version_omitted_still_sniffed(scan: Scan) -> None:
    data = saved_model(GRAPH, [*STANDARD_SAVER, function("f", [node("e", "PyFunc")])])
    without = data[2:]  # drop field 1 (saved_model_schema_version = 1)
    assert [s.name for s in SCANNERS if s.sniff(without[:4096])] == ["savedmodel"]
    assert rules(scan(without)) == {"savedmodel-pyfunc"}
