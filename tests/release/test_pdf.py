"""The PDF reader: ToUnicode maps read glyph codes back into what the page shows, against
generated files, a real writer (Chromium's), and hostile input."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.release.check import check_release
from atlasguard.release.pdf import CMap, pdf_read
from atlasguard.release.settings import ReleaseSettings


def _pdf(objects: dict[int, bytes], streams: dict[int, bytes]) -> bytes:
    out = [b"%PDF-1.7\n"]
    for number, body in objects.items():
        out.append(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    for number, content in streams.items():
        packed = zlib.compress(content)
        out.append(
            b"%d 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream\nendobj\n"
            % (number, len(packed), packed)
        )
    return b"".join(out) + b"%%EOF\n"


def _cmap(codes: dict[str, int], as_ranges: bool) -> bytes:
    """A ToUnicode map of two-byte ``codes``; consecutive ones as bfrange lines."""
    lines = [b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap"]
    lines.append(b"1 begincodespacerange <0000> <FFFF> endcodespacerange")
    pairs = sorted((code, char) for char, code in codes.items())
    if as_ranges:
        lines.append(b"%d beginbfrange" % len(pairs))
        lines += [
            b"<%04X> <%04X> <%s>" % (c, c, ch.encode("utf-16-be").hex().encode()) for c, ch in pairs
        ]
        lines.append(b"endbfrange")
    else:
        lines.append(b"%d beginbfchar" % len(pairs))
        lines += [b"<%04X> <%s>" % (c, ch.encode("utf-16-be").hex().encode()) for c, ch in pairs]
        lines.append(b"endbfchar")
    lines.append(b"endcmap CMapName currentdict /CMap defineresource pop end end")
    return b"\n".join(lines)


def _shown(text: str, codes: dict[str, int]) -> bytes:
    return b"<" + b"".join(b"%04X" % codes[ch] for ch in text) + b">"


@given(
    text=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
        min_size=1,
        max_size=40,
    ),
    offset=st.integers(1, 0xF000),
    as_ranges=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_glyph_codes_are_read_through_their_fonts_map(
    text: str, offset: int, as_ranges: bool
) -> None:
    """Any text, shown as codes unrelated to its characters, is read back as the text;
    a second font with another map, named on the same page, does not mix in."""
    codes = {ch: offset + i for i, ch in enumerate(dict.fromkeys(text))}
    other = {ch: offset + len(codes) - i for i, ch in enumerate(dict.fromkeys("zyx"))}
    content = b"BT /F2 9 Tf %s Tj /F1 12 Tf [%s] TJ ET" % (
        _shown("zyx", other),
        _shown(text, codes),
    )
    data = _pdf(
        {
            1: b"<< /Type /Page /Resources << /Font << /F1 2 0 R /F2 5 0 R >> >> >>",
            2: b"<< /Type /Font /Subtype /Type0 /Encoding /Identity-H /ToUnicode 3 0 R >>",
            5: b"<< /Type /Font /Subtype /Type0 /Encoding /Identity-H /ToUnicode 6 0 R >>",
        },
        {3: _cmap(codes, as_ranges), 6: _cmap(other, not as_ranges), 4: content},
    )
    assert pdf_read(data) == ("zyx " + text, False)


def test_a_range_maps_consecutive_codes_and_an_array_maps_each() -> None:
    cmap = CMap(
        b"1 begincodespacerange <00> <FF> endcodespacerange\n"
        b"2 beginbfrange <41> <43> <0061> <50> <51> [<0078> <00660069>] endbfrange"
    )
    assert cmap.decode(b"ABCPQ") == "abcxfi"
    assert cmap.decode(b"D") is None


def test_codes_no_map_covers_are_reported_unread(tmp_path: Path) -> None:
    codes = {"a": 10, "b": 11}
    data = _pdf(
        {1: b"<< /Font << /F1 2 0 R >> >>", 2: b"<< /ToUnicode 3 0 R >>"},
        {3: _cmap(codes, False), 4: b"BT /F1 9 Tf <000A000B0063> Tj ET"},
    )
    assert pdf_read(data).unread


def test_fonts_in_an_object_stream_are_found() -> None:
    """PDF 1.5 writers put font dictionaries into compressed object streams."""
    codes = {ch: 0x100 + i for i, ch in enumerate("Bluebird ")}
    held = b"<< /Font << /F7 2 0 R >> >> << /Subtype /Type0 /ToUnicode 3 0 R >>"
    header = b"1 0 2 28 "
    packed = zlib.compress(header + held)
    data = (
        b"%PDF-1.7\n9 0 obj\n<< /Type /ObjStm /N 2 /First "
        + str(len(header)).encode()
        + b" /Filter /FlateDecode >>\nstream\n"
        + packed
        + b"\nendstream\nendobj\n"
        + _pdf({}, {3: _cmap(codes, True), 4: b"BT /F7 9 Tf %s Tj ET" % _shown("Bluebird", codes)})[
            9:
        ]
    )
    assert pdf_read(data) == ("Bluebird", False)


@given(source=st.binary(max_size=2000), shown=st.binary(max_size=200))
@settings(max_examples=80, deadline=None)
def test_hostile_maps_never_crash(source: bytes, shown: bytes) -> None:
    head = b"1 begincodespacerange <0000> <FFFF> endcodespacerange beginbfrange "
    for body in (source, head + source, b"beginbfchar " + source + b" endbfchar"):
        cmap = CMap(body)
        assert cmap.decode(shown) is None or isinstance(cmap.decode(shown), str)
        data = _pdf(
            {1: b"<< /Font << /F1 2 0 R >> >>", 2: b"<< /ToUnicode 3 0 R >>"},
            {3: body, 4: b"BT /F1 9 Tf <" + shown.hex().encode() + b"> Tj ET"},
        )
        assert isinstance(pdf_read(data, budget=1 << 16).text, str)


def test_a_huge_range_is_kept_as_a_range() -> None:
    """<0000> <FFFF> in every line of a map costs a list entry, not 65,536 per line."""
    lines = b"\n".join(b"<%02X00> <%02XFF> <4E00>" % (i, i) for i in range(256))
    cmap = CMap(b"beginbfrange\n" + lines + b"\nendbfrange")
    assert len(cmap.ranges) == 256 and not cmap.single
    assert cmap.decode(b"\x12\x05") == chr(0x4E05)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed")
def test_the_reader_reads_what_chromium_prints(tmp_path: Path) -> None:
    """Differential, against a real writer: Chromium embeds fonts as subsets shown by glyph
    id (Identity-H) with ToUnicode maps; the gate reads the term and reads everything."""
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body><p>Quarterly notes: Project Bluebird ships in May.</p>"
        '<p style="font-family: monospace">token table 42</p></body></html>'
    )
    out = tmp_path / "site" / "notes.pdf"
    out.parent.mkdir()
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = out.read_bytes()
    assert b"/ToUnicode" in data and b"Project Bluebird" not in data  # shown as glyph ids
    pages = pdf_read(data)
    assert "Project Bluebird ships" in pages.text and "token table 42" in pages.text
    assert not pages.unread
    report = check_release(out.parent, ReleaseSettings(terms=["Project Bluebird"]))
    rules = {f.rule for f in report.findings}
    assert "policy-term" in rules and "unexamined" not in rules


def test_a_backslash_before_a_non_octal_digit_is_that_digit() -> None:
    """``\\8`` is not an escape (PDF 32000 7.3.4.2): the backslash is dropped."""
    data = b"%PDF-1.4\nstream\n" + zlib.compress(b"BT (\\8\\101\\9) Tj ET") + b"\nendstream\n"
    assert pdf_read(data) == ("8A9", False)


@pytest.mark.timeout(60)  # a hang guard: 200 KB of "[" took 285 s before the patterns were linear
@pytest.mark.parametrize(
    "run",
    [b"[", b"(", b"<", b"(a(", b"[(a) (b", b"stream\n", b"beginbfrange <00> <01> [", b"1 0 obj "],
)
def test_runs_of_openers_are_read_in_one_pass(run: bytes) -> None:
    content = run * (1_000_000 // len(run))
    for data in (
        b"%PDF-1.7\n1 0 obj\n<<>>\nstream\n" + zlib.compress(content) + b"\nendstream\n",
        b"%PDF-1.7\n" + content,
    ):
        assert pdf_read(data).text == ""


def test_codes_of_a_font_not_traced_to_a_map_are_tried_on_every_map() -> None:
    """Resources this reader does not follow (inherited from the page tree, say): the
    file's maps are tried, and a reading that covers every code is taken."""
    codes = {ch: 0x300 + i for i, ch in enumerate("secret")}
    data = _pdf(
        {2: b"<< /Subtype /Type0 /ToUnicode 3 0 R >>"},
        {3: _cmap(codes, False), 4: b"BT /F3 9 Tf %s Tj ET" % _shown("secret", codes)},
    )
    assert pdf_read(data) == ("secret", False)


def test_a_files_maps_share_one_allowance() -> None:
    entry = b"<0001> <0041>\n"
    big = b"beginbfchar\n" + entry * 10 + b"endbfchar"
    assert CMap(big, allowance=4).entries == 4 and CMap(big).entries == 10
