"""ONNX models: external data that escapes the model directory, and custom operator domains.

The model is walked with the bounded wire-format reader of
:mod:`._protobuf` (the ``onnx`` package is never imported): every graph,
including the bodies of ``If``/``Loop``/``Scan`` nodes at any depth (bounded),
training graphs and model-local functions. Two things make an ONNX model more
than data:

* an initializer (or constant) whose data lives in an external file: a
  ``location`` that is absolute or climbs out with ``..`` makes the loader read
  any file on the machine (``onnx-external-data-escape``, critical);
* an operator from a domain the runtime does not implement: custom-op
  libraries load native code (``onnx-custom-domain``, high; ``com.microsoft``
  contrib ops, built into onnxruntime, are low). Calls to functions defined in
  the model itself are not custom ops.

>>> from atlasguard.artifacts.formats.onnx import location_escapes
>>> location_escapes("../../etc/passwd"), location_escapes("weights.bin")
(True, False)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._protobuf import (
    LEN,
    VARINT,
    Field,
    ProtoError,
    Source,
    head_fields,
    iter_fields,
    printable,
    read_text,
)
from atlasguard.artifacts.formats._spool import stream_size
from atlasguard.artifacts.formats.base import (
    HEAD_BYTES,
    FormatScanner,
    LimitExceeded,
    ScanContext,
    limit_finding,
    unreadable_finding,
)

__all__ = ["SCANNERS", "STANDARD_DOMAINS", "OnnxScanner", "location_escapes"]

STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"}
)
"""Operator domains every ONNX runtime implements itself."""

_CONTRIB = "com.microsoft"
_MODEL_FIELDS = {1: VARINT, 2: LEN, 3: LEN, 4: LEN, 5: VARINT, 6: LEN, 7: LEN, 8: LEN, 14: LEN,
                 20: LEN, 25: LEN}  # fmt: skip
_MODEL_FIELDS[26] = LEN  # configuration (ONNX 1.18)
_GRAPH_TAGS = frozenset({0x0A, 0x12, 0x2A, 0x52, 0x5A, 0x62, 0x6A, 0x72, 0x7A, 0x82})
_MAX_GRAPH_DEPTH = 64
_EXTERNAL = 1


def location_escapes(location: str) -> bool:
    """True when an external-data ``location`` points outside the model's directory."""
    norm = location.replace("\\", "/")
    return (
        not norm
        or norm.startswith(("/", "~"))
        or (len(norm) > 1 and norm[1] == ":")
        or "\0" in norm
        or "://" in norm
        or any(part == ".." for part in norm.split("/"))
    )


@dataclass
class _Walk:
    """What the walk collects: operators used, functions defined, findings so far."""

    ops: dict[tuple[str, str], int] = field(default_factory=dict)
    op_offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    functions: set[tuple[str, str]] = field(default_factory=set)
    opsets: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    fields: int = 0
    graphs: int = 0


class OnnxScanner:
    """An ONNX ``ModelProto``."""

    name = "onnx"

    def sniff(self, head: bytes) -> bool:
        # Protobuf fields may come in any order and unknown ones are ignored by runtimes,
        # so do not insist on ir_version first: a model reordered to dodge the sniff loads.
        fields = head_fields(head)
        if not fields:
            return False
        known = [(n, w, v, s) for n, w, v, s in fields if n in _MODEL_FIELDS]
        if len(known) * 2 < len(fields) or any(_MODEL_FIELDS[n] != w for n, w, _v, _s in known):
            return False
        if head[:1] == b"\x80" and head[1:2] < b"\x06":
            return False  # a pickle's PROTO opcode: a protobuf would rarely start so
        named = any(n in (2, 3, 4, 6) and v for n, _w, v, _s in known)
        anchors = {n for n, _w, _v, _s in known if n in (1, 7, 8)}
        if 7 not in anchors and not (1 in anchors and named):
            return False  # ir_version alone is two bytes: too little to claim a file
        if len(head) < HEAD_BYTES and any(w == LEN and s + v > len(head) for _n, w, v, s in fields):
            return False  # the whole file is in view and a field runs past its end
        for number, _wire, value, start in known:
            payload = head[start : start + min(value, 64)]
            if number == 1 and not 1 <= value <= 64:
                return False
            if number == 2 and not printable(payload):
                return False  # a SavedModel's field 2 is a message, ONNX's a name
            if number == 7 and payload and payload[0] not in _GRAPH_TAGS:
                return False
        return True

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        src = Source(stream, stream_size(stream))
        walk = _Walk()
        try:
            self._model(src, walk, ctx)
        except ProtoError as exc:
            walk.findings.append(
                unreadable_finding(f"ONNX model is malformed: {exc}", ctx.location())
            )
        except LimitExceeded as exc:
            walk.findings.append(limit_finding(exc))
        yield from walk.findings
        yield from self._domains(walk, ctx)

    def _model(self, src: Source, walk: _Walk, ctx: ScanContext) -> None:
        graphs: list[tuple[Field, int]] = []
        for f in iter_fields(src, 0, src.size):
            if f.number == 7 and f.wire == LEN:
                graphs.append((f, 0))
            elif f.number == 8 and f.wire == LEN:
                domain, version = self._opset(src, f)
                walk.opsets[domain] = version
            elif f.number == 20 and f.wire == LEN:  # TrainingInfoProto: two graphs
                graphs.extend(
                    (g, 0)
                    for g in iter_fields(src, f.start, f.end)
                    if g.number in (1, 2) and g.wire == LEN
                )
            elif f.number == 25 and f.wire == LEN:
                self._function(src, f, walk, graphs, ctx)
        while graphs:
            graph, depth = graphs.pop()
            if depth > _MAX_GRAPH_DEPTH:
                raise LimitExceeded(
                    f"ONNX subgraphs nested deeper than {_MAX_GRAPH_DEPTH}",
                    ctx.location(graph.start),
                )
            self._graph(src, graph, depth, walk, graphs, ctx)
            walk.graphs += 1

    def _opset(self, src: Source, f: Field) -> tuple[str, int]:
        domain, version = "", 0
        for g in iter_fields(src, f.start, f.end):
            if g.number == 1 and g.wire == LEN:
                domain = read_text(src, g)
            elif g.number == 2 and g.wire == VARINT:
                version = g.value
        return domain, version

    def _function(
        self, src: Source, f: Field, walk: _Walk, graphs: list[tuple[Field, int]], ctx: ScanContext
    ) -> None:
        name = domain = ""
        for g in iter_fields(src, f.start, f.end):
            self._tick(walk, ctx)
            if g.number == 1 and g.wire == LEN:
                name = read_text(src, g)
            elif g.number == 10 and g.wire == LEN:
                domain = read_text(src, g)
            elif g.number == 7 and g.wire == LEN:
                self._node(src, g, 0, walk, graphs, ctx)
        walk.functions.add((domain, name))

    def _graph(
        self,
        src: Source,
        graph: Field,
        depth: int,
        walk: _Walk,
        graphs: list[tuple[Field, int]],
        ctx: ScanContext,
    ) -> None:
        for f in iter_fields(src, graph.start, graph.end):
            self._tick(walk, ctx)
            if f.wire != LEN:
                continue
            if f.number == 1:
                self._node(src, f, depth, walk, graphs, ctx)
            elif f.number == 5:
                self._tensor(src, f, walk, ctx)
            elif f.number == 15:  # SparseTensorProto: values, indices
                for g in iter_fields(src, f.start, f.end):
                    if g.number in (1, 2) and g.wire == LEN:
                        self._tensor(src, g, walk, ctx)

    def _node(
        self,
        src: Source,
        node: Field,
        depth: int,
        walk: _Walk,
        graphs: list[tuple[Field, int]],
        ctx: ScanContext,
    ) -> None:
        op = domain = ""
        for f in iter_fields(src, node.start, node.end):
            if f.wire != LEN:
                continue
            if f.number == 4:
                op = read_text(src, f, 256)
            elif f.number == 7:
                domain = read_text(src, f, 256)
            elif f.number == 5:
                self._attribute(src, f, depth, walk, graphs, ctx)
        key = (domain, op)
        walk.ops[key] = walk.ops.get(key, 0) + 1
        walk.op_offsets.setdefault(key, node.start)

    def _attribute(
        self,
        src: Source,
        attr: Field,
        depth: int,
        walk: _Walk,
        graphs: list[tuple[Field, int]],
        ctx: ScanContext,
    ) -> None:
        for f in iter_fields(src, attr.start, attr.end):
            if f.wire != LEN:
                continue
            if f.number in (6, 11):  # g, graphs: subgraph bodies (If, Loop, Scan)
                graphs.append((f, depth + 1))
            elif f.number in (5, 10):  # t, tensors
                self._tensor(src, f, walk, ctx)
            elif f.number in (22, 23):  # sparse_tensor(s)
                for g in iter_fields(src, f.start, f.end):
                    if g.number in (1, 2) and g.wire == LEN:
                        self._tensor(src, g, walk, ctx)

    def _tensor(self, src: Source, tensor: Field, walk: _Walk, ctx: ScanContext) -> None:
        name = ""
        external = False
        locations: list[str] = []
        for f in iter_fields(src, tensor.start, tensor.end):
            if f.number == 8 and f.wire == LEN:
                name = read_text(src, f, 256)
            elif f.number == 14 and f.wire == VARINT:
                external = f.value == _EXTERNAL
            elif f.number == 13 and f.wire == LEN:
                key = value = ""
                for g in iter_fields(src, f.start, f.end):
                    if g.number == 1 and g.wire == LEN:
                        key = read_text(src, g, 256)
                    elif g.number == 2 and g.wire == LEN:
                        value = read_text(src, g, 4096)
                if key == "location":
                    locations.append(value)
        for location in locations:
            if location_escapes(location):
                walk.findings.append(
                    Finding(
                        rule="onnx-external-data-escape",
                        severity=Severity.CRITICAL,
                        message=f"tensor {name!r} loads its data from {location!r}, outside the "
                        "model directory: loading the model reads that file",
                        location=ctx.location(tensor.start),
                    )
                )
        if external and not locations:
            walk.findings.append(
                unreadable_finding(
                    f"tensor {name!r} is stored externally but names no location",
                    ctx.location(tensor.start),
                    severity=Severity.MEDIUM,
                )
            )

    def _tick(self, walk: _Walk, ctx: ScanContext) -> None:
        walk.fields += 1
        if not walk.fields & 0x3FF:
            ctx.check_time()

    def _domains(self, walk: _Walk, ctx: ScanContext) -> Iterator[Finding]:
        for (domain, op), count in sorted(walk.ops.items()):
            if domain in STANDARD_DOMAINS or (domain, op) in walk.functions:
                continue
            contrib = domain == _CONTRIB or domain.startswith(_CONTRIB + ".")
            yield Finding(
                rule="onnx-custom-domain",
                severity=Severity.LOW if contrib else Severity.HIGH,
                message=(
                    f"{count} node(s) use operator {op!r} from domain {domain!r}: "
                    + (
                        "an onnxruntime contrib operator"
                        if contrib
                        else "a custom operator, implemented by a native library the runtime "
                        "must load"
                    )
                ),
                location=ctx.location(walk.op_offsets[(domain, op)]),
            )
        function_domains = {d for d, _n in walk.functions}
        used = {d for d, _o in walk.ops}
        for domain in sorted(walk.opsets):
            if (
                domain not in STANDARD_DOMAINS
                and domain not in function_domains
                and domain not in used
                and domain != _CONTRIB
            ):
                yield Finding(
                    rule="onnx-custom-domain",
                    severity=Severity.LOW,
                    message=f"model imports operator set {domain!r}, which no node uses",
                    location=ctx.location(),
                )


SCANNERS: tuple[FormatScanner, ...] = (OnnxScanner(),)
