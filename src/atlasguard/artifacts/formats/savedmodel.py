"""TensorFlow SavedModel (``saved_model.pb``) and Keras ``keras_metadata.pb``.

``saved_model.pb`` is walked with the bounded wire-format reader (TensorFlow is
never imported): every meta graph, every node of its graph and of every
function in its function library. Operators that call back into Python
(``PyFunc``, ``EagerPyFunc``) are critical; operators that read or write
files (``ReadFile``, ``WriteFile``, ``MatchingFiles``, ``ImmutableConst``,
readers and dataset writers, ``PrintV2`` to a ``file://`` stream) are high;
debug ops that ship tensors to a URL are medium.

Every SavedModel holds checkpoint operators (``SaveV2``, ``RestoreV2``,
``MergeV2Checkpoints``...) in its saver: TF1 puts them under a ``save/`` (or
``save_N/``) name scope, TF2 in the functions ``__inference__traced_save_N``
and ``__inference__traced_restore_N``. There they are not flagged; anywhere
else (a serving function writing a file) they are high. This is a
conservative, name-based rule: a model could name a malicious function
``..._traced_save_1`` and call it from serving code; the call graph is not
followed.

Keras metadata (``keras_metadata.pb``, and metadata embedded in the object
graph) is JSON inside protobuf strings: those documents are checked for
``Lambda`` layers and custom objects by :mod:`.keras`.

>>> from atlasguard.artifacts.formats.savedmodel import op_risk
>>> op_risk("PyFunc", "", "StatefulPartitionedCall")[0].label
'critical'
>>> op_risk("SaveV2", "__inference__traced_save_42", "SaveV2") is None
True
"""

from __future__ import annotations

import re
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
    FormatScanner,
    LimitExceeded,
    ScanContext,
    limit_finding,
    unreadable_finding,
)
from atlasguard.artifacts.formats.keras import config_findings, find_json_objects, looks_like_keras

__all__ = ["SCANNERS", "KerasMetadataScanner", "SavedModelScanner", "op_risk"]

_PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
_FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "LoadAndRemapMatrix",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "TextLineReader", "TextLineReaderV2", "WholeFileReader",
    "WholeFileReaderV2", "LMDBReader", "TFRecordDataset", "TFRecordDatasetV2",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "TextLineDataset",
    "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "SaveDataset", "SaveDatasetV2",
    "LoadDataset", "ExperimentalLMDBDataset", "LMDBDataset", "CreateSummaryFileWriter",
    "CreateSummaryDbWriter", "WriteRawProtoSummary", "CSVDataset", "CSVDatasetV2",
    "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset",
})  # fmt: skip
_CHECKPOINT_OPS = frozenset({
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
    "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
})  # fmt: skip
_DEBUG_OPS = frozenset({
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2", "Copy", "CopyHost",
})  # fmt: skip
_SAVER_FUNCTION = re.compile(r"_traced_(save|restore)(_\d+)?$")
_SAVER_SCOPE = re.compile(r"^save(_\d+)?/")
_META_GRAPH_TAGS = frozenset({0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A})


def op_risk(op: str, function: str, node: str) -> tuple[Severity, str] | None:
    """How dangerous operator ``op`` is, run as node ``node`` of ``function`` ('' = graph)."""
    if op in _PYTHON_OPS:
        return Severity.CRITICAL, "calls back into Python"
    if op in _FILE_OPS:
        return Severity.HIGH, "reads or writes files"
    if op in _CHECKPOINT_OPS:
        saver = _SAVER_FUNCTION.search(function) if function else _SAVER_SCOPE.match(node)
        return (
            None
            if saver
            else (Severity.HIGH, "writes or reads checkpoint files outside the standard saver")
        )
    if op in _DEBUG_OPS and op.startswith("Debug"):
        return Severity.MEDIUM, "sends tensors to debug URLs (files or network)"
    return None


@dataclass
class _Walk:
    hits: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    severity: dict[tuple[str, str], Severity] = field(default_factory=dict)
    fields: int = 0


class SavedModelScanner:
    """A TensorFlow ``saved_model.pb``."""

    name = "savedmodel"

    def sniff(self, head: bytes) -> bool:
        fields = head_fields(head, 4)
        if not fields:
            return False
        if fields[0][:2] == (1, VARINT) and fields[0][2] in (0, 1):
            fields = fields[1:]  # saved_model_schema_version; optional on the wire
        if not fields or fields[0][:2] != (2, LEN):
            return False
        start, length = fields[0][3], fields[0][2]
        payload = head[start : start + min(length, 64)]
        # A MetaGraphDef message, not the printable producer name an ONNX field 2 holds.
        return bool(payload) and payload[0] in _META_GRAPH_TAGS and not printable(payload)

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        src = Source(stream, stream_size(stream))
        walk = _Walk()
        try:
            for f in iter_fields(src, 0, src.size):
                if f.number == 2 and f.wire == LEN:
                    self._meta_graph(src, f, walk, ctx)
        except ProtoError as exc:
            yield unreadable_finding(f"SavedModel is malformed: {exc}", ctx.location())
        except LimitExceeded as exc:
            yield limit_finding(exc)
        for (op, reason), where in sorted(walk.hits.items()):
            yield Finding(
                rule="savedmodel-pyfunc" if op in _PYTHON_OPS else "savedmodel-file-op",
                severity=walk.severity[(op, reason)],
                message=f"operator {op} {reason}; used by {len(where)} node(s), e.g. {where[0]!r}",
                location=ctx.location(walk.offsets[(op, reason)]),
            )
        yield from _embedded_keras(stream, ctx, "Keras metadata in SavedModel")

    def _meta_graph(self, src: Source, meta: Field, walk: _Walk, ctx: ScanContext) -> None:
        for f in iter_fields(src, meta.start, meta.end):
            if f.number == 2 and f.wire == LEN:  # GraphDef
                for g in iter_fields(src, f.start, f.end):
                    self._tick(walk, ctx)
                    if g.number == 1 and g.wire == LEN:
                        self._node(src, g, "", walk)
                    elif g.number == 2 and g.wire == LEN:
                        self._library(src, g, walk, ctx)

    def _library(self, src: Source, library: Field, walk: _Walk, ctx: ScanContext) -> None:
        for f in iter_fields(src, library.start, library.end):
            if f.number != 1 or f.wire != LEN:
                continue
            name = ""
            nodes: list[Field] = []
            for g in iter_fields(src, f.start, f.end):
                self._tick(walk, ctx)
                if g.number == 1 and g.wire == LEN:  # OpDef signature: its name
                    for h in iter_fields(src, g.start, g.end):
                        if h.number == 1 and h.wire == LEN:
                            name = read_text(src, h, 512)
                elif g.number == 3 and g.wire == LEN:
                    nodes.append(g)
            for node in nodes:
                self._node(src, node, name or "<unnamed function>", walk)

    def _node(self, src: Source, node: Field, function: str, walk: _Walk) -> None:
        name = op = ""
        output_stream = ""
        for f in iter_fields(src, node.start, node.end):
            if f.number == 1 and f.wire == LEN:
                name = read_text(src, f, 512)
            elif f.number == 2 and f.wire == LEN:
                op = read_text(src, f, 256)
            elif f.number == 5 and f.wire == LEN:
                attr, value = _attr_string(src, f)
                if attr == "output_stream":
                    output_stream = value
        risk = op_risk(op, function, name)
        if op == "PrintV2" and output_stream.startswith("file://"):
            risk = (Severity.HIGH, f"prints to {output_stream}")
        if risk is None:
            return
        where = f"{function}/{name}" if function else name
        key = (op, risk[1])
        walk.hits.setdefault(key, []).append(where)
        walk.offsets.setdefault(key, node.start)
        walk.severity[key] = risk[0]

    def _tick(self, walk: _Walk, ctx: ScanContext) -> None:
        walk.fields += 1
        if not walk.fields & 0x3FF:
            ctx.check_time()


def _attr_string(src: Source, entry: Field) -> tuple[str, str]:
    """A NodeDef ``attr`` map entry as ``(key, s value)``; ``s`` is AttrValue field 2."""
    key = value = ""
    for f in iter_fields(src, entry.start, entry.end):
        if f.number == 1 and f.wire == LEN:
            key = read_text(src, f, 256)
        elif f.number == 2 and f.wire == LEN:
            for g in iter_fields(src, f.start, f.end):
                if g.number == 2 and g.wire == LEN:
                    value = read_text(src, g, 1024)
    return key, value


def _embedded_keras(stream: BinaryIO, ctx: ScanContext, origin: str) -> Iterator[Finding]:
    try:
        for offset, document in find_json_objects(stream, ctx):
            if looks_like_keras(document):
                yield from config_findings(document, ctx, offset, origin)
    except LimitExceeded as exc:
        yield limit_finding(exc)


class KerasMetadataScanner:
    """``keras_metadata.pb``: per-layer JSON metadata of a Keras SavedModel."""

    name = "keras-metadata"

    def sniff(self, head: bytes) -> bool:
        return head[:1] == b"\x0a" and b"_tf_keras_" in head

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        yield from _embedded_keras(stream, ctx, "Keras metadata")


SCANNERS: tuple[FormatScanner, ...] = (SavedModelScanner(), KerasMetadataScanner())
