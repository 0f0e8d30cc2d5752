"""Keras model configurations: Lambda layers and custom objects, at any nesting depth.

A Keras model's architecture is a JSON document: ``config.json`` inside a
``.keras`` zip, the ``model_config`` attribute of an ``.h5`` file, node
metadata in ``keras_metadata.pb``. Two things in it run code when the model is
loaded:

* a ``Lambda`` layer carries marshalled Python bytecode (``keras-lambda``,
  critical), as do ``function_type: "lambda"`` fields and Keras 3 ``__lambda__``
  objects;
* an object whose ``module`` (or ``registered_name`` package) lies outside
  Keras makes the loader import that module (``keras-custom-object``, high;
  critical for ``os``, ``subprocess``, ``builtins`` and other code-running
  modules). ``TFOpLambda`` layers calling file or Python-calling TensorFlow
  functions are high.

The walk visits every dict and list of the document (Sequential inside
Functional, ``TimeDistributed``/``Bidirectional`` wrappers, nested models),
iteratively and bounded. :func:`find_json_objects` finds such documents
inside binary files (HDF5, protobuf) without parsing those formats.

>>> from atlasguard.artifacts.formats.keras import config_problems
>>> cfg = {"class_name": "Sequential", "config": {"layers": [
...     {"class_name": "Lambda", "config": {"function": ["4wEAAAAA", None, None]}}]}}
>>> [(rule, sev.label) for rule, sev, _msg in config_problems(cfg)]
[('keras-lambda', 'critical')]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    LimitExceeded,
    ScanContext,
    unreadable_finding,
)

__all__ = [
    "SCANNERS",
    "KerasJsonScanner",
    "config_findings",
    "config_problems",
    "find_json_objects",
]

_KERAS_MODULES = ("keras", "tensorflow.keras", "tf_keras", "tensorflow.python.keras")
_KERAS_FAMILY = ("keras_hub", "keras_nlp", "keras_cv", "keras_rs", "tensorflow_hub")
_DANGEROUS_MODULES = frozenset({
    "builtins", "__builtin__", "os", "posix", "nt", "subprocess", "sys", "importlib", "shutil",
    "socket", "pickle", "marshal", "runpy", "code", "ctypes", "pty", "webbrowser", "requests",
    "urllib", "http", "io", "codecs", "types", "operator", "functools",
})  # fmt: skip
_LAMBDA_CLASSES = frozenset({"Lambda", "__lambda__"})
_TFOP_DANGER = re.compile(
    r"(^|\.)(io|gfile|raw_ops|debugging)\.|py_func|py_function|numpy_function|print|"
    r"load_library|load_op_library|write_file|read_file|matching_files|summary"
)
_MAX_DEPTH = 512
_MAX_NODES = 2_000_000
_MAX_JSON = 64 * 1024 * 1024
_JSON_START = re.compile(rb'\{\s*"')
_MAX_CANDIDATES = 200_000


def _module_root_in(module: str, roots: Iterable[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _object_problems(node: dict[str, Any]) -> Iterator[tuple[str, Severity, str]]:
    cls = node.get("class_name")
    cls = cls if isinstance(cls, str) else None
    module = node.get("module")
    registered = node.get("registered_name")
    config = node.get("config")
    config = config if isinstance(config, dict) else {}
    name = config.get("name", cls)
    if (
        cls in _LAMBDA_CLASSES
        or node.get("function_type") == "lambda"
        or node.get("output_shape_type") == "lambda"
    ):
        yield (
            "keras-lambda",
            Severity.CRITICAL,
            f"Lambda {name!r} carries marshalled Python bytecode that runs when the model "
            "is loaded or called",
        )
    if "class_name" not in node:
        return  # every object Keras deserializes names its class; other keys are data
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        function = str(config.get("function", ""))
        if _TFOP_DANGER.search(function):
            yield (
                "keras-tfop-lambda",
                Severity.HIGH,
                f"TFOpLambda {name!r} calls tf.{function}, which touches files or runs Python",
            )
    if isinstance(module, str) and module and not _module_root_in(module, _KERAS_MODULES):
        root = module.split(".")[0]
        if root in _DANGEROUS_MODULES:
            yield (
                "keras-custom-object",
                Severity.CRITICAL,
                f"object {cls!r} is loaded from module {module!r}, which runs code",
            )
        elif _module_root_in(module, _KERAS_FAMILY):
            yield (
                "keras-custom-object",
                Severity.LOW,
                f"object {cls!r} comes from Keras-team package {module!r}",
            )
        else:
            yield (
                "keras-custom-object",
                Severity.HIGH,
                f"object {cls!r} is loaded from module {module!r}, outside Keras: the "
                "loader imports it",
            )
    if isinstance(registered, str) and ">" in registered:
        package = registered.split(">", 1)[0]
        if not _module_root_in(package, _KERAS_MODULES + _KERAS_FAMILY) and not (
            isinstance(module, str) and module and not _module_root_in(module, _KERAS_MODULES)
        ):
            yield (
                "keras-custom-object",
                Severity.HIGH,
                f"object {cls!r} is registered as {registered!r}, outside Keras",
            )


def config_problems(document: Any) -> list[tuple[str, Severity, str]]:
    """``(rule, severity, message)`` for every problem in a Keras config document."""
    problems: list[tuple[str, Severity, str]] = []
    # (node, depth, inside a Lambda already reported: its function is the same finding)
    stack: list[tuple[Any, int, bool]] = [(document, 0, False)]
    nodes = 0
    while stack:
        node, depth, in_lambda = stack.pop()
        nodes += 1
        if depth > _MAX_DEPTH or nodes > _MAX_NODES:
            problems.append(
                (
                    "limit-exceeded",
                    Severity.HIGH,
                    "Keras config too deep or too large to check in full",
                )
            )
            break
        if isinstance(node, dict):
            found = [
                p for p in _object_problems(node) if not (in_lambda and p[0] == "keras-lambda")
            ]
            problems.extend(found)
            inner = in_lambda or any(p[0] == "keras-lambda" for p in found)
            stack.extend((v, depth + 1, inner) for v in reversed(node.values()))
        elif isinstance(node, list):
            stack.extend((v, depth + 1, in_lambda) for v in reversed(node))
    return list(dict.fromkeys(problems))


def config_findings(
    document: Any, ctx: ScanContext, offset: int | None = None, origin: str = "Keras config"
) -> list[Finding]:
    """:func:`config_problems` as findings located at ``offset``."""
    return [
        Finding(
            rule=rule,
            severity=severity,
            message=f"{origin}: {message}",
            location=ctx.location(offset),
        )
        for rule, severity, message in config_problems(document)
    ]


def looks_like_keras(document: Any) -> bool:
    """True for a JSON object shaped like a Keras model or layer config."""
    return (
        isinstance(document, dict)
        and "class_name" in document
        and ("config" in document or "module" in document)
    )


def find_json_objects(
    stream: BinaryIO, ctx: ScanContext, *, limit: int = _MAX_JSON
) -> Iterator[tuple[int, Any]]:
    """JSON objects stored contiguously anywhere in a binary stream, with their offsets.

    Every ``{"`` is tried as the start of a JSON document (bounded window,
    bounded number of tries); a decoded document is skipped over whole.
    """
    size = stream_size(stream)
    decoder = json.JSONDecoder()
    chunk_size = 1 << 20
    pos = 0
    tries = 0
    skip_until = 0  # inside a document already decoded: its inner "{" are not new ones
    while pos < size:
        ctx.check_time()
        stream.seek(pos)
        chunk = stream.read(chunk_size + 64)
        if not chunk:
            return
        next_pos = pos + chunk_size
        for match in _JSON_START.finditer(chunk):
            start = pos + match.start()
            if start >= next_pos:
                break
            if start < skip_until:
                continue
            tries += 1
            if tries > _MAX_CANDIDATES:
                raise LimitExceeded("too many candidate JSON documents", ctx.location(start))
            found = _decode_at(stream, start, size, decoder, limit)
            if found is not None:
                end, value = found
                yield start, value
                skip_until = end
                if end > next_pos:
                    next_pos = end
                    break
        pos = next_pos


def _decode_at(
    stream: BinaryIO, start: int, size: int, decoder: json.JSONDecoder, limit: int
) -> tuple[int, Any] | None:
    window = 64 * 1024
    while True:
        stream.seek(start)
        # latin-1 keeps one character per byte, so positions stay byte offsets.
        text = stream.read(min(window, size - start)).decode("latin-1")
        try:
            value, used = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            ran_out = exc.pos >= len(text) - 2 or "Unterminated" in exc.msg
            if ran_out and len(text) == window and window < limit:
                window *= 4
                continue
            return None
        except RecursionError:
            return None
        return start + used, value


class KerasJsonScanner:
    """A JSON document checked as a Keras config (``config.json`` of a ``.keras`` zip).

    Every JSON object is sniffed as one; documents not shaped like a Keras
    config (a top-level ``class_name``) yield nothing.
    """

    name = "keras-json"

    def sniff(self, head: bytes) -> bool:
        # Any JSON object: Keras reads config.json with json.loads, so the keys may come in
        # any order, escaped, or after padding longer than the sniffed head.
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return text[:1] == b"{" and text[1:].lstrip(b" \t\r\n")[:1] in (b'"', b"}")

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        stream.seek(0)
        kerasish = b"class_name" in stream.read(4096)
        severity = Severity.MEDIUM if kerasish else Severity.LOW
        if size > min(_MAX_JSON, ctx.limits.max_header_bytes):
            yield unreadable_finding(
                f"JSON document of {size} bytes is too large to check as a Keras config",
                ctx.location(),
                severity=Severity.HIGH if kerasish else Severity.LOW,
            )
            return
        stream.seek(0)
        try:
            document = json.loads(stream.read().decode("utf-8-sig"))
        except (ValueError, RecursionError) as exc:
            yield unreadable_finding(
                f"JSON document is not valid JSON: {exc}", ctx.location(), severity=severity
            )
            return
        if looks_like_keras(document):
            yield from config_findings(document, ctx, 0)


SCANNERS: tuple[FormatScanner, ...] = (KerasJsonScanner(),)
