"""The text a PDF's pages show, for the release gate's text checks.

A page shows strings (``Tj``/``TJ``, literal or hex) in a font. Simple fonts
show characters; fonts with their own encoding (two-byte Identity-H codes, as
most writers embed TrueType and OpenType fonts) show *codes*, which only the
font's ToUnicode CMap turns into characters. :func:`pdf_read` inflates the
content streams (and object streams, where PDF 1.5 writers put font
dictionaries), parses every ToUnicode CMap (``bfchar`` and ``bfrange``, ranges
kept as ranges), ties each to the resource names of the fonts that use it,
and follows ``/Name size Tf`` through each content stream to decode what the
page shows. A string no map of its font covers is reported as ``unread``: it
is neither passed as clean nor guessed at. Everything is bounded: inflated
bytes by ``budget``, CMap entries per map, and objects per file.

>>> import zlib
>>> cmap = (b"1 begincodespacerange <0000> <ffff> endcodespacerange "
...         b"2 beginbfchar <0001> <0048> <0002> <0069> endbfchar")
>>> pdf = (b"%PDF-1.7\\n1 0 obj\\n<< /Font << /F1 2 0 R >> >>\\nendobj\\n"
...        b"2 0 obj\\n<< /ToUnicode 3 0 R >>\\nendobj\\n"
...        b"3 0 obj\\n<< >>\\nstream\\n" + cmap + b"\\nendstream\\nendobj\\n"
...        b"4 0 obj\\n<< >>\\nstream\\n" + zlib.compress(b"BT /F1 9 Tf <00010002> Tj ET")
...        + b"\\nendstream\\nendobj\\n")
>>> pdf_read(pdf)
PdfText(text='Hi', unread=False)
"""

from __future__ import annotations

import bisect
import re
import zlib
from collections import defaultdict
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["PdfText", "pdf_read"]

MAX_CMAP_ENTRIES = 200_000  # bfchar pairs and bfrange lines, over all of a file's maps
MAX_GUESS_BYTES = 4 << 20  # of shown strings tried against every map, per file
MAX_OBJECTS = 200_000
MAX_BODY_BYTES = 32 << 20  # of objects' dictionary text kept per file

_OBJECT = re.compile(rb"(\d{1,10})\s+\d{1,5}\s+obj\b")
# A shown run: [ ... ] TJ (kerned parts), or one literal (...) or hex <...> string, then Tj;
# or a font selection, /Name size Tf
# Every pattern is linear in its input: no unbounded span may cross the character that
# starts another match ("[" for arrays, "(" for strings), so no run of openers is quadratic.
_LITERAL = rb"\((?:\\[\s\S]|[^\\()]|\((?:\\[\s\S]|[^\\()])*\))*\)"  # one level of ( )
_SHOW = re.compile(
    rb"\[([^\[\]]{0,65536})\]\s*TJ|(" + _LITERAL + rb"|<[0-9A-Fa-f\s]*>)\s*(?:Tj|'|\")"
    rb"|/([^\s/\[\]()<>{}%]{1,127})\s+[-+\d.]{1,32}\s+Tf"
)
_STRING = re.compile(_LITERAL + rb"|<[0-9A-Fa-f\s]*>")
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|\r\n|[\s\S])")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_HEX = rb"<([0-9A-Fa-f\s]{0,64})>"
_PAIR = re.compile(_HEX + rb"\s*" + _HEX)
_RANGE = re.compile(_HEX + rb"\s*" + _HEX + rb"\s*(?:" + _HEX + rb"|\[([^\[\]]{0,65536})\])")
_TO_UNICODE = re.compile(rb"/ToUnicode\s+(\d{1,10})\s+\d{1,5}\s+R")
_FONT_DICT = re.compile(rb"/Font\s*<<(.*?)>>", re.S)
_FONT_REF = re.compile(rb"/Font\s+(\d{1,10})\s+\d{1,5}\s+R")
_NAMED_REF = re.compile(rb"/([^\s/\[\]()<>{}%]{1,127})\s+(\d{1,10})\s+\d{1,5}\s+R")
_OBJSTM = re.compile(rb"/Type\s*/ObjStm")
_FIRST = re.compile(rb"/First\s+(\d{1,10})")


class PdfText(NamedTuple):
    """What a PDF's pages show, and whether some of it was codes no map could read."""

    text: str
    unread: bool


def _blocks(data: bytes, begin: bytes, end: bytes) -> Iterator[tuple[int, bytes]]:
    """Where each ``begin ... end`` block starts, and what it holds; one pass (a ``begin``
    with no ``end`` after it ends the search, so openers cost nothing each)."""
    at = 0
    while (start := data.find(begin, at)) >= 0:
        inside = start + len(begin)
        stop = data.find(end, inside)
        if stop < 0:
            return
        yield start, data[inside:stop]
        at = stop + len(end)


def _streams(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each stream's offset and raw bytes, between ``stream`` and ``endstream``."""
    for start, raw in _blocks(data, b"stream", b"endstream"):
        if raw[:2] == b"\r\n":
            raw = raw[2:]
        elif raw[:1] in (b"\n", b"\r"):
            raw = raw[1:]
        else:
            continue  # "stream" inside a word, not the keyword
        yield start, raw.removesuffix(b"\n").removesuffix(b"\r")


def _hex(digits: bytes) -> bytes:
    digits = re.sub(rb"\s", b"", digits)
    return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode("ascii"))


def _utf16(raw: bytes) -> str:
    return raw.decode("utf-16-be", errors="replace") if len(raw) % 2 == 0 else ""


class CMap:
    """A ToUnicode map: codes (1 to 4 bytes) to text; ranges are kept as ranges."""

    def __init__(self, source: bytes, allowance: int = MAX_CMAP_ENTRIES) -> None:
        self.lengths: set[int] = set()
        self.single: dict[bytes, str] = {}
        ranges: list[tuple[int, int, int, str | list[str]]] = []  # length, lo, hi, dst
        for _, block in _blocks(source, b"begincodespacerange", b"endcodespacerange"):
            for lo, _ in _PAIR.findall(block):
                self.lengths.add(len(_hex(lo)))
        spaced = bool(self.lengths)
        entries = 0
        for _, block in _blocks(source, b"beginbfchar", b"endbfchar"):
            for src, target in _PAIR.findall(block)[: max(0, allowance - entries)]:
                entries += 1
                code = _hex(src)
                self.single[code] = _utf16(_hex(target))
                if not spaced:
                    self.lengths.add(len(code))
        for _, block in _blocks(source, b"beginbfrange", b"endbfrange"):
            for lo, hi, start, array in _RANGE.findall(block)[: max(0, allowance - entries)]:
                entries += 1
                low, high = _hex(lo), _hex(hi)
                if not low or len(low) != len(high) or len(low) > 4:
                    continue
                dst: str | list[str] = (
                    [_utf16(_hex(d)) for d in re.findall(_HEX, array)]
                    if array
                    else _utf16(_hex(start))
                )
                first, last = int.from_bytes(low, "big"), int.from_bytes(high, "big")
                if first <= last:
                    ranges.append((len(low), first, last, dst))
                if not spaced:
                    self.lengths.add(len(low))
        self.entries = entries
        self.lengths = {n for n in self.lengths if 1 <= n <= 4} or {2}
        ranges.sort(key=lambda r: (r[0], r[1]))
        self.ranges = ranges
        self.starts = [(r[0], r[1]) for r in ranges]  # for bisect

    def __bool__(self) -> bool:
        return bool(self.single or self.ranges)

    def _lookup(self, code: bytes) -> str | None:
        if code in self.single:
            return self.single[code]
        value = int.from_bytes(code, "big")
        at = bisect.bisect_right(self.starts, (len(code), value)) - 1
        if at < 0:
            return None
        length, lo, hi, dst = self.ranges[at]
        if length != len(code) or value > hi:
            return None
        if isinstance(dst, list):
            return dst[value - lo] if value - lo < len(dst) else None
        if not dst:
            return None
        # the destination's last character advances with the code
        last = ord(dst[-1]) + value - lo
        return dst[:-1] + chr(last) if last < 0x110000 else None

    def decode(self, raw: bytes) -> str | None:
        """``raw``'s text, or ``None`` when some code is not in the map."""
        out: list[str] = []
        at = 0
        lengths = sorted(self.lengths)
        while at < len(raw):
            for length in lengths:
                text = self._lookup(raw[at : at + length]) if at + length <= len(raw) else None
                if text is not None:
                    out.append(text)
                    at += length
                    break
            else:
                return None
        return "".join(out)


def _is_cmap(content: bytes) -> bool:
    return b"beginbfchar" in content or b"beginbfrange" in content


def _literal(token: bytes) -> bytes:
    """The bytes of a literal ``(...)`` string (escapes undone) or a hex ``<...>`` one."""
    if token[:1] == b"<":
        return _hex(token[1:-1])

    def undo(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] in (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"):
            return bytes([int(code, 8) & 0xFF])
        if code in (b"\n", b"\r", b"\r\n"):
            return b""  # a line continuation
        return _ESCAPES.get(code, code)

    return _ESCAPE.sub(undo, token[1:-1])


def _plain(raw: bytes) -> tuple[str, bool]:
    """A shown string read without a map, and whether it may be codes instead.

    Control bytes mean codes of a font with its own encoding. When they are two-byte
    codes whose high bytes are all 0 they are read as characters too (some writers
    put the characters themselves), and still reported as possibly unread."""
    if not any(b < 0x20 and b not in (9, 10, 13) for b in raw):
        return raw.decode("latin-1"), False
    if len(raw) % 2 == 0 and not any(raw[0::2]):
        return raw[1::2].decode("latin-1"), True
    return "", True


class _Reader:
    """One file's objects, maps and font names, then its content streams read."""

    def __init__(self, data: bytes, budget: int) -> None:
        self.budget = budget
        self.spent = 0
        self.streams: list[tuple[int | None, bytes]] = []  # object number, inflated content
        self.bodies: dict[int, bytes] = {}  # object number -> dictionary text
        self.kept = 0
        starts = [(m.start(), int(m.group(1))) for m in _OBJECT.finditer(data[: 64 << 20])]
        starts = starts[:MAX_OBJECTS]
        at = 0
        for offset, raw in _streams(data[: 64 << 20]):
            while at + 1 < len(starts) and starts[at + 1][0] < offset:
                at += 1
            number = starts[at][1] if starts and starts[at][0] < offset else None
            head = b""
            if number is not None:
                head = data[starts[at][0] : min(offset, starts[at][0] + 4096)]
            content = self._inflate(raw)
            if number is not None:
                self._keep(number, head)
            if _OBJSTM.search(head):
                self._objects_in(content, head)
            else:
                self.streams.append((number, content))
            if self.spent >= budget:
                break
        for start, number in starts:
            if number not in self.bodies:
                self._keep(number, data[start : start + 4096].split(b"endobj")[0])

    def _keep(self, number: int, body: bytes) -> None:
        """Keep an object's dictionary text, within the file's allowance."""
        if self.kept + len(body) <= MAX_BODY_BYTES:
            self.bodies[number] = body
            self.kept += len(body)

    def _inflate(self, raw: bytes) -> bytes:
        try:
            content = zlib.decompressobj().decompress(raw, max(1, self.budget - self.spent))
        except zlib.error:
            content = raw
        self.spent += len(content)
        return content

    def _objects_in(self, content: bytes, head: bytes) -> None:
        """The objects a PDF 1.5 object stream holds: ``N offset`` pairs, then bodies."""
        first = _FIRST.search(head)
        if first is None:
            return
        base = int(first.group(1))
        pairs = re.findall(rb"(\d{1,10})\s+(\d{1,10})", content[: min(base, 1 << 20)])
        for (number, offset), following in zip(pairs, [*pairs[1:], (b"", b"")], strict=True):
            if len(self.bodies) >= MAX_OBJECTS:
                return
            begin = base + int(offset)
            end = base + int(following[1]) if following[1] else len(content)
            if int(number) not in self.bodies:
                self._keep(int(number), content[begin : min(end, begin + 4096)])

    def maps(self) -> tuple[dict[bytes, list[CMap]], list[CMap]]:
        """Each font resource name with the ToUnicode maps of the fonts it names, and
        every map of the file."""
        cmaps: dict[int, CMap] = {}
        allowance = MAX_CMAP_ENTRIES
        for number, content in self.streams:
            if number is not None and _is_cmap(content) and allowance > 0:
                cmap = CMap(content, allowance)
                allowance -= cmap.entries
                if cmap:
                    cmaps[number] = cmap
        unicode_of = {}
        for number, body in self.bodies.items():
            found = _TO_UNICODE.search(body)
            if found is not None and int(found.group(1)) in cmaps:
                unicode_of[number] = cmaps[int(found.group(1))]
        names: dict[bytes, list[CMap]] = defaultdict(list)
        for body in self.bodies.values():
            tables = _FONT_DICT.findall(body)
            tables += [self.bodies.get(int(ref), b"") for ref in _FONT_REF.findall(body)[:64]]
            for table in tables:
                for name, ref in _NAMED_REF.findall(table):
                    used = unicode_of.get(int(ref))
                    if used is not None and all(used is not m for m in names[name]):
                        names[name].append(used)
        return names, list(cmaps.values())

    def read(self) -> PdfText:
        names, every = self.maps()
        spare = MAX_GUESS_BYTES
        out: list[str] = []
        unread = False
        for _, content in self.streams:
            if _is_cmap(content):
                continue
            font: bytes | None = None
            words = []
            for shown in _SHOW.finditer(content):
                if shown.group(3) is not None:
                    font = shown.group(3)
                    continue
                # [(Pro) -20 (ject)] TJ: the kerned parts of one run
                parts = (
                    _STRING.findall(shown.group(1))
                    if shown.group(1) is not None
                    else [shown.group(2)]
                )
                raw = b"".join(_literal(part) for part in parts)
                text, glyphs = self._decode(raw, names.get(font, []) if font else [])
                if glyphs and every and spare > 0:  # no map of its font reads it: any map
                    spare -= len(raw)
                    text, glyphs = self._decode(raw, every)
                unread |= glyphs
                words.append(text)
            if any(words):
                out.append(" ".join(w for w in words if w))
        return PdfText("\n".join(out), unread)

    @staticmethod
    def _decode(raw: bytes, candidates: list[CMap]) -> tuple[str, bool]:
        """What ``raw`` shows: through the maps that cover every code (each distinct
        reading kept, when a font's name stands for several fonts or its font is not
        known), else as characters, ``unread`` when they may be codes."""
        readings = list(dict.fromkeys(t for m in candidates if (t := m.decode(raw)) is not None))
        if readings:
            return " ".join(readings), False
        return _plain(raw)


def pdf_read(data: bytes, budget: int = 16 << 20) -> PdfText:
    """The text a PDF's pages show, one content stream per line, bounded to ``budget``
    bytes inflated; ``unread`` when some shown codes could not be read."""
    return _Reader(data, budget).read()
