"""GGUF models: the metadata header, and chat templates that reach Python from Jinja.

A GGUF file carries its chat template (``tokenizer.chat_template``, and named
variants ``tokenizer.chat_template.<name>``) as a Jinja2 string. Runtimes
render it, some in a non-sandboxed environment, so a template that walks
``__class__.__mro__[1].__subclasses__()`` or ``lipsum.__globals__`` runs
arbitrary code (CVE-2024-34359). The header is parsed with every length
bounded by what is left of the file; each template is normalised (string
escapes decoded, concatenated and repeated literals joined, reversed) before
it is searched for the handful of primitives every such payload needs.
Ordinary chat templates (ChatML, Llama, Mistral, Gemma) use none of them.

>>> from atlasguard.artifacts.formats.gguf import template_risks
>>> template_risks("{% for m in messages %}{{ m['content'] }}{% endfor %}")
[]
>>> template_risks("{{ ''|attr('__cla' ~ 'ss__') }}")[0]
"dunder name '__class__' in the template's strings"
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._spool import stream_size
from atlasguard.artifacts.formats.base import FormatScanner, ScanContext, unreadable_finding

__all__ = ["SCANNERS", "GgufScanner", "template_risks"]

_MAGIC = b"GGUF"
_TEMPLATE_KEY = "tokenizer.chat_template"
_MAX_TEMPLATE = 16 * 1024 * 1024
_MAX_KEY = 65536
_MAX_ARRAY_DEPTH = 4
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9

_LIT = r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_LITERAL = re.compile(_LIT + r"(?:\s*\*\s*\d+)?", re.S)
_REPLACE = re.compile(r"replace\s*\(\s*(" + _LIT + r")\s*,\s*(" + _LIT + r")", re.S)
_MAP_FILTER = re.compile(r"\bmap\s*\(\s*(?!attribute\s*=)((?:" + _LIT + r"\s*[~+]?\s*)*)([^,)]*)")
_DICT_KWARGS = re.compile(r"\bdict\s*\(([^)]*)\)")
_DUNDER = re.compile(r"__[a-z][a-z0-9_]*?__")
_CODE_PRIMITIVES = (
    (re.compile(r"\battr\s*\("), "the attr() filter (dynamic attribute access)"),
    (re.compile(r"''\s*\["), "a subscript of a string literal"),
    (re.compile(r"\battribute\s*=\s*(?!'')[\w(]"), "map(attribute=) with a computed name"),
    (re.compile(r"\bmro\s*\("), "mro()"),
    (re.compile(r"\bos\s*\.\s*\w"), "os.*"),
    (re.compile(r"\b(popen|subprocess|eval|exec|getattr|globals|builtins|import)\b"), "{0}"),
    (re.compile(r"\b(request|config|self|namespace)\s*\.\s*\w"), "{0}.*"),
    (re.compile(r"\b(cycler|joiner|lipsum|url_for|get_flashed_messages)\b"), "{0}"),
    (re.compile(r"\bstring\s*\)?\s*(\|\s*list\s*\)?\s*)?\[\s*-?\d"), "characters cut from a repr"),
    (re.compile(r"\|\s*format\s*\(\s*\d"), "characters built with |format"),
)  # fmt: skip
_STRING_PRIMITIVES = re.compile(r"popen|subprocess|os\.system|\bbuiltins\b|eval\(|exec\(|%c")
_MAX_ANALYSED = 1024 * 1024  # real chat templates are a few kilobytes
_MAX_REPLACES = 64


def _decode_literal(token: str) -> str:
    """A Jinja string literal's value, as Jinja's lexer decodes it; ``'x' * 3`` repeated."""
    repeat = 1
    star = re.search(r"\*\s*(\d+)$", token)
    if star:
        repeat = min(int(star.group(1)), 64)
        token = token[: star.start()].rstrip()
    body = token[1:-1]
    try:
        value = body.encode("ascii", "backslashreplace").decode("unicode-escape")
    except (UnicodeDecodeError, ValueError):
        value = body
    return value * repeat


def _code_regions(template: str) -> list[str]:
    """The insides of ``{{ }}`` and ``{% %}``, found in one linear pass."""
    regions: list[str] = []
    pos = 0
    while True:
        a, b = template.find("{{", pos), template.find("{%", pos)
        start = min(x for x in (a, b) if x >= 0) if a >= 0 or b >= 0 else -1
        if start < 0:
            return regions
        close = "}}" if start == a else "%}"
        end = template.find(close, start + 2)
        if end < 0:  # unterminated: Jinja refuses it, but look at it anyway
            regions.append(template[start + 2 :])
            return regions
        regions.append(template[start + 2 : end])
        pos = end + 2


def template_risks(template: str) -> list[str]:
    """Why ``template`` reaches Python internals from Jinja; empty for an ordinary template.

    Text outside ``{{ }}``/``{% %}`` is output verbatim and never looked at.
    Inside, string literals are decoded and joined in order (so ``'__cla' ~
    'ss__'``, ``['__cla', 'ss__']|join``, ``'_' * 2`` and escapes collapse),
    every literal ``replace`` is applied to them, and the result is also read
    backwards (``|reverse``). Then dunder names, the few Jinja globals and
    filters that reach Python (``attr``, ``lipsum``, ``cycler``, ``joiner``,
    ``namespace``, ``self``...) and character-building tricks are reported.
    """
    if len(template) > _MAX_ANALYSED:
        return [f"template of {len(template)} characters is too large to check"]
    reasons: list[str] = []
    literals: list[str] = []
    replaces: list[tuple[str, str]] = []
    code_parts: list[str] = []
    for code in _code_regions(template):
        literals.extend(_decode_literal(t) for t in _LITERAL.findall(code))
        for names, rest in _MAP_FILTER.findall(code):
            name = "".join(_decode_literal(t) for t in _LITERAL.findall(names)).strip().lower()
            if name == "attr" or rest.strip():
                reasons.append("map() applying the attr filter or a computed filter name")
        for old, new in _REPLACE.findall(code):
            replaces.append((_decode_literal(old).lower(), _decode_literal(new).lower()))
        for kwargs in _DICT_KWARGS.findall(code):
            literals.extend(re.findall(r"(\w+)\s*=(?!=)", kwargs))
        code_parts.append(_LITERAL.sub(" '' ", code))
    code = " ".join(code_parts).lower()
    stream = "".join(literals).lower()
    replaced = stream
    for old, new in replaces[:_MAX_REPLACES]:
        if old:
            replaced = replaced.replace(old, new)[: 4 * _MAX_ANALYSED]
    hays = ((code, "code"), (stream, "strings"), (stream[::-1], "reversed strings"),
            (replaced, "strings after replace()"))  # fmt: skip
    for hay, where in hays:
        for name in dict.fromkeys(_DUNDER.findall(hay)):
            reasons.append(f"dunder name {name!r} in the template's {where}")
    for pattern, label in _CODE_PRIMITIVES:
        for m in pattern.finditer(code):
            reasons.append(f"{label.format(m.group(1) if m.groups() else '')} in the template")
            break
    for m in _STRING_PRIMITIVES.finditer(stream):
        reasons.append(f"{m.group(0)!r} in the template's strings")
    return list(dict.fromkeys(reasons))


class _Truncated(Exception):
    pass


class _Reader:
    """Bounded reads of the header: nothing past the end of the file, nothing huge."""

    def __init__(self, stream: BinaryIO, size: int, endian: str, len_size: int) -> None:
        self.stream = stream
        self.size = size
        self.endian = endian
        self.len_fmt = "I" if len_size == 4 else "Q"
        self.pos = stream.tell()

    def read(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise _Truncated(f"{n} bytes wanted at offset {self.pos}, past the end of the file")
        data = self.stream.read(n)
        if len(data) != n:
            raise _Truncated(f"short read at offset {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n > self.size - self.pos:
            raise _Truncated(f"{n} bytes to skip at offset {self.pos}, past the end of the file")
        self.pos += n
        self.stream.seek(self.pos)

    def unpack(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        value: int | float | bool = struct.unpack(self.endian + fmt, self.read(size))[0]
        return value

    def length(self) -> int:
        return int(self.unpack(self.len_fmt))

    def string(self, limit: int) -> bytes | None:
        """A length-prefixed string; ``None`` (and skipped) when longer than ``limit``."""
        n = self.length()
        if n > limit:
            self.skip(n)
            return None
        return self.read(n)


class GgufScanner:
    """GGUF metadata: chat templates checked for Jinja server-side template injection."""

    name = "gguf"

    def sniff(self, head: bytes) -> bool:
        return head[:4] == _MAGIC

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        stream.seek(4)
        raw = stream.read(4)
        version = int.from_bytes(raw, "little")
        endian = "<"
        if version > 0xFFFF:
            version, endian = int.from_bytes(raw, "big"), ">"
        if version not in (1, 2, 3):
            yield unreadable_finding(f"GGUF version {version} is unknown", ctx.location(4))
            return
        reader = _Reader(stream, size, endian, 4 if version == 1 else 8)
        try:
            yield from self._kvs(reader, ctx)
        except _Truncated as exc:
            yield unreadable_finding(
                f"GGUF header cannot be read in full: {exc}", ctx.location(reader.pos)
            )

    def _kvs(self, reader: _Reader, ctx: ScanContext) -> Iterable[Finding]:
        _tensors = reader.length()
        kv_count = reader.length()
        if kv_count > (reader.size - reader.pos) // 13:
            raise _Truncated(f"{kv_count} metadata entries cannot fit in the file")
        for _ in range(kv_count):
            ctx.check_time()
            at = reader.pos
            key_raw = reader.string(_MAX_KEY)
            if key_raw is None:
                raise _Truncated(f"metadata key at offset {at} is longer than {_MAX_KEY} bytes")
            key = key_raw.decode("utf-8", "replace")
            vtype = int(reader.unpack("I"))
            is_template = key == _TEMPLATE_KEY or key.startswith(_TEMPLATE_KEY + ".")
            if is_template and vtype == _STRING:
                value_at = reader.pos
                text = reader.string(min(_MAX_TEMPLATE, ctx.limits.max_header_bytes))
                if text is None:
                    yield unreadable_finding(
                        f"chat template {key!r} is too large to check", ctx.location(value_at)
                    )
                    continue
                yield from self._template(key, text.decode("utf-8", "replace"), value_at, ctx)
            else:
                self._skip_value(reader, vtype, ctx, 0)

    def _skip_value(self, reader: _Reader, vtype: int, ctx: ScanContext, depth: int) -> None:
        if vtype in _FIXED:
            reader.skip(struct.calcsize(_FIXED[vtype]))
        elif vtype == _STRING:
            reader.skip(reader.length())
        elif vtype == _ARRAY and depth < _MAX_ARRAY_DEPTH:
            etype = int(reader.unpack("I"))
            count = reader.length()
            if etype in _FIXED:
                reader.skip(count * struct.calcsize(_FIXED[etype]))
                return
            if count > (reader.size - reader.pos) // 4:
                raise _Truncated(f"array of {count} entries cannot fit in the file")
            for i in range(count):
                if not i & 0xFFF:
                    ctx.check_time()
                self._skip_value(reader, etype, ctx, depth + 1)
        else:
            raise _Truncated(f"unknown metadata value type {vtype} at offset {reader.pos}")

    def _template(self, key: str, text: str, offset: int, ctx: ScanContext) -> Iterable[Finding]:
        reasons = template_risks(text)
        if reasons:
            yield Finding(
                rule="gguf-template-injection",
                severity=Severity.CRITICAL,
                message=f"chat template {key!r} reaches Python internals from Jinja: "
                + "; ".join(reasons[:6]),
                location=ctx.location(offset),
            )


SCANNERS: tuple[FormatScanner, ...] = (GgufScanner(),)
