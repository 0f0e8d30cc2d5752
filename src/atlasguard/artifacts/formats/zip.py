"""Zip archives, read the hard way: PyTorch checkpoints, ``.npz``, ``.keras`` and any other zip.

The standard library's :mod:`zipfile` refuses archives that other readers load
happily: a member whose encryption bit is set but whose data is plain (PyTorch
reads it), a CRC that does not match (PyTorch ignores CRCs), a local header
whose name differs from the central directory's. A scanner that gives up there
is bypassed. So this module never uses :mod:`zipfile`: it walks the local file
headers itself and reconciles them with the central directory, reads every
member it can find (including ones the central directory does not list), and
reports each oddity as a finding. Every member, whatever its name or
directory, is handed back to the dispatcher, so pickles, nested archives and
``.npy`` arrays inside are examined by their own scanners.

>>> import io, zipfile
>>> from atlasguard.artifacts.formats.zip import SCANNERS
>>> buf = io.BytesIO()
>>> with zipfile.ZipFile(buf, "w") as zf:
...     zf.writestr("model/data.pkl", b"not really a pickle")
>>> SCANNERS[0].sniff(buf.getvalue()[:4096])
True
"""

from __future__ import annotations

import bz2
import lzma
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from atlasguard.artifacts.findings import Finding, Location, Severity
from atlasguard.artifacts.formats._spool import (
    CHUNK,
    LZMA_MEMLIMIT,
    DecompressError,
    Decompressor,
    RatioExceeded,
    ZlibDecompressor,
    as_binary,
    decompress_to_spool,
    iter_chunks,
    new_spool,
    stream_size,
    view,
)
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    LimitExceeded,
    ScanContext,
    limit_finding,
    unreadable_finding,
)

__all__ = ["SCANNERS", "ZipScanner", "escapes_archive", "has_zip_tail"]

_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOC = b"PK\x06\x07"
_DESCRIPTOR = b"PK\x07\x08"
_LOCAL_FMT = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL_FMT = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD_FMT = struct.Struct("<4sHHHHIIH")
_KNOWN_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x800  # encrypted, deflate options, descriptor, utf-8
_MAX_CD_BYTES = 256 * 1024 * 1024


def _finding(rule: str, severity: Severity, message: str, location: Location) -> Finding:
    return Finding(rule=rule, severity=severity, message=message, location=location)


def escapes_archive(name: str) -> bool:
    """True when extracting ``name`` would write outside the target directory."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return True
    return any(part == ".." for part in norm.split("/"))


def _decode_name(raw: bytes, flags: int) -> str:
    # zipfile's rule: UTF-8 when bit 11 says so, cp437 otherwise.
    return raw.decode("utf-8", "replace") if flags & 0x800 else raw.decode("cp437")


def _zip64_values(extra: bytes, wanted: list[str]) -> dict[str, int]:
    """Values of the zip64 extra field (id 1) for the fields stored as 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if tag == 1:
            out: dict[str, int] = {}
            for i, key in enumerate(wanted):
                if 8 * i + 8 <= len(body):
                    out[key] = struct.unpack_from("<Q", body, 8 * i)[0]
            return out
        pos += 4 + size
    return {}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One member as described by a local header or by the central directory."""

    raw_name: bytes
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int  # local header offset (central) or where the header sits (local)
    data_start: int = 0  # local headers only

    @property
    def name(self) -> str:
        return _decode_name(self.raw_name, self.flags)


def _read_local(stream: BinaryIO, offset: int, size: int) -> _Entry | None:
    stream.seek(offset)
    head = stream.read(_LOCAL_FMT.size)
    if len(head) < _LOCAL_FMT.size or head[:4] != _LOCAL:
        return None
    _sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = _LOCAL_FMT.unpack(head)
    raw_name = stream.read(nlen)
    extra = stream.read(xlen)
    if len(raw_name) < nlen or len(extra) < xlen:
        return None
    wanted = [k for k, v in (("usize", usize), ("csize", csize)) if v == 0xFFFFFFFF]
    if wanted:
        z64 = _zip64_values(extra, wanted)
        usize, csize = z64.get("usize", usize), z64.get("csize", csize)
    data_start = offset + _LOCAL_FMT.size + nlen + xlen
    if data_start > size:
        return None
    return _Entry(raw_name, flags, method, crc, csize, usize, offset, data_start)


def _find_central(stream: BinaryIO, size: int) -> tuple[list[_Entry], list[str], list[str]]:
    """The central directory entries, its problems, and where zip readers disagree.

    Readers find the end record differently: Python's :mod:`zipfile` (NumPy's
    npz, joblib, Keras) takes the last signature in the tail and gives up if
    that record is cut short; PyTorch's reader (miniz) takes the last one that
    is complete. The directory PyTorch's reader finds is the one read (offsets
    adjusted for prepended data); a file on which zipfile would find another
    record, and fail, gets a disagreement.
    """
    tail_len = min(size, 65536 + _EOCD_FMT.size + 20)
    stream.seek(size - tail_len)
    tail = stream.read(tail_len)
    found: list[int] = []
    at = tail.rfind(_EOCD)
    while at >= 0:
        found.append(at)
        at = tail.rfind(_EOCD, 0, at)
    complete = [a for a in found if a + _EOCD_FMT.size <= len(tail)]
    if not complete:
        return [], ["no end-of-central-directory record"], []
    python_at = found[0] if found[0] in complete else None
    miniz_at = complete[0]
    entries, problems = _central_at(stream, size, tail, size - tail_len, miniz_at)
    disagreements: list[str] = []
    if python_at != miniz_at:
        disagreements.append(
            f"zip readers disagree: Python's zipfile finds a cut-short end record at offset "
            f"{size - tail_len + found[0]} and fails, PyTorch's reader uses the one at "
            f"{size - tail_len + miniz_at}"
        )
    return entries, problems, disagreements


def _central_at(
    stream: BinaryIO, size: int, tail: bytes, tail_start: int, at: int
) -> tuple[list[_Entry], list[str]]:
    """The entries of the central directory the end record at ``tail[at:]`` points to."""
    eocd_pos = tail_start + at
    _s, _d, _dcd, _n, count, cd_size, cd_offset, _clen = _EOCD_FMT.unpack_from(tail, at)
    cd_end = eocd_pos
    loc_at = at - 20
    if loc_at >= 0 and tail[loc_at : loc_at + 4] == _EOCD64_LOC:
        (z64_off,) = struct.unpack_from("<Q", tail, loc_at + 8)
        if z64_off + 56 <= size:
            stream.seek(z64_off)
            rec = stream.read(56)
            if rec[:4] == _EOCD64:
                count, cd_size, cd_offset = struct.unpack_from("<QQQ", rec, 32)
                cd_end = z64_off
    problems: list[str] = []
    # Data prepended to the archive (self-extractors) shifts every offset.
    shift = cd_end - cd_size - cd_offset
    if shift < 0 or cd_size > min(size, _MAX_CD_BYTES):
        return [], [f"central directory out of bounds (offset {cd_offset}, size {cd_size})"]
    stream.seek(cd_offset + shift)
    cd = stream.read(cd_size)
    entries: list[_Entry] = []
    pos = 0
    while pos + _CENTRAL_FMT.size <= len(cd) and cd[pos : pos + 4] == _CENTRAL:
        fields = _CENTRAL_FMT.unpack_from(cd, pos)
        flags, method, crc, csize, usize, nlen, xlen, clen = (
            fields[3],
            fields[4],
            fields[7],
            fields[8],
            fields[9],
            fields[10],
            fields[11],
            fields[12],
        )
        offset = fields[16]
        raw_name = cd[pos + 46 : pos + 46 + nlen]
        extra = cd[pos + 46 + nlen : pos + 46 + nlen + xlen]
        wanted = [
            k
            for k, v in (("usize", usize), ("csize", csize), ("offset", offset))
            if v == 0xFFFFFFFF
        ]
        if wanted:
            z64 = _zip64_values(extra, wanted)
            usize = z64.get("usize", usize)
            csize = z64.get("csize", csize)
            offset = z64.get("offset", offset)
        entries.append(_Entry(raw_name, flags, method, crc, csize, usize, offset + shift))
        pos += 46 + nlen + xlen + clen
    if len(entries) != count:
        problems.append(f"central directory lists {len(entries)} entries, end record says {count}")
    return entries, problems


def has_zip_tail(stream: BinaryIO) -> bool:
    """True when ``stream`` ends with a zip end-of-central-directory record.

    ``zipfile`` (and so Keras, NumPy and joblib's callers) finds an archive by
    its end, whatever precedes it: a file whose head sniffs as something else
    (a pickle, a text file) may also be a zip. The dispatcher should run
    :class:`ZipScanner` on such a file as well.
    """
    size = stream_size(stream)
    tail_len = min(size, 65536 + _EOCD_FMT.size)
    stream.seek(size - tail_len)
    found = _EOCD in stream.read(tail_len)
    stream.seek(0)
    return found


class ZipScanner:
    """Every member of a zip archive, read from the raw headers."""

    name = "zip"

    def sniff(self, head: bytes) -> bool:
        return head[:4] in (_LOCAL, _EOCD) or head[:8] in (
            _DESCRIPTOR + _LOCAL,
            b"PK00" + _LOCAL,
        )

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        size = stream_size(stream)
        central, problems, disagreements = _find_central(stream, size)
        for problem in problems:
            yield _finding("zip-structure", Severity.MEDIUM, f"zip {problem}", ctx.location())
        for problem in disagreements:
            yield _finding("zip-readers-disagree", Severity.HIGH, problem, ctx.location())
        by_offset = {e.offset: e for e in central}
        storages = _torch_storage_pattern(e.name for e in central)
        seen_names: dict[bytes, int] = {}
        done: set[int] = set()
        count = 0
        for offset in self._member_offsets(stream, size, by_offset, ctx):
            if offset in done:
                continue
            done.add(offset)
            count += 1
            if count > ctx.limits.max_members:
                yield limit_finding(
                    LimitExceeded(f"more than {ctx.limits.max_members} members", ctx.location())
                )
                return
            ctx.check_time()
            entry = by_offset.get(offset)
            if ctx.fast and entry is not None and storages and storages.fullmatch(entry.name):
                ctx.skip(entry.csize)  # raw tensor bytes: torch.load never unpickles them
                continue
            yield from _member(stream, size, offset, entry, seen_names, ctx, storages)

    def _member_offsets(
        self, stream: BinaryIO, size: int, by_offset: dict[int, _Entry], ctx: ScanContext
    ) -> Iterator[int]:
        """Local headers found by walking from the start, then central entries not reached."""
        pos = 0
        stream.seek(0)
        if stream.read(4) != _LOCAL:
            pos = min(by_offset, default=size)
        while pos < size:
            ctx.check_time()
            local = _read_local(stream, pos, size)
            if local is None:
                break
            yield pos
            central = by_offset.get(pos)
            csize = central.csize if central is not None else local.csize
            if central is None and local.flags & 0x8 and local.csize == 0:
                found = _measure(stream, local, size, ctx)
                if found is None:
                    break
                csize = found
            end = local.data_start + csize
            if local.flags & 0x8:
                stream.seek(end)
                end += 16 if stream.read(4) == _DESCRIPTOR else 12
            if end <= pos or end > size:
                break
            pos = end
        yield from sorted(by_offset)


def _measure(stream: BinaryIO, local: _Entry, size: int, ctx: ScanContext) -> int | None:
    """Compressed size of a member whose sizes sit only in a trailing data descriptor."""
    if local.method == 8:
        # Inflate to find where the stream ends; output is dropped, bounded per call.
        d = ZlibDecompressor(-15)
        used = produced = 0
        stream.seek(local.data_start)
        try:
            for chunk in iter_chunks(stream, size - local.data_start, ctx):
                out = d.decompress(chunk, CHUNK)
                while out and not d.eof and produced <= ctx.limits.max_decompressed_bytes:
                    produced += len(out)
                    ctx.check_time()
                    out = d.decompress(b"", CHUNK)
                if d.eof:
                    return used + len(chunk) - len(d.unused_data)
                used += len(chunk)
        except zlib.error:
            return None
        return None
    # Stored: the descriptor that follows the data repeats its length.
    pos = local.data_start
    stream.seek(pos)
    carry = b""
    base = pos
    for chunk in iter_chunks(stream, size - pos, ctx):
        buf = carry + chunk
        at = buf.find(_DESCRIPTOR)
        while at >= 0:
            if at + 16 <= len(buf):
                csize = int.from_bytes(buf[at + 8 : at + 12], "little")
                if csize == base + at - local.data_start:
                    return csize
            at = buf.find(_DESCRIPTOR, at + 1)
        carry = buf[-15:]
        base += len(buf) - len(carry)
    return None


def _zip_lzma(raw: BinaryIO) -> Decompressor:
    """An LZMA decompressor for a zip member (APPNOTE 5.8.8: version, props size, props)."""
    head = raw.read(4)
    props = raw.read(int.from_bytes(head[2:4], "little")) if len(head) == 4 else b""
    if len(props) < 5 or props[0] >= 9 * 5 * 5:
        raise ValueError("LZMA properties are missing or out of range")
    lc, rest = props[0] % 9, props[0] // 9
    lp, pb = rest % 5, rest // 5
    dict_size = int.from_bytes(props[1:5], "little")
    if dict_size > LZMA_MEMLIMIT:  # the raw decoder has no memlimit: it would allocate it all
        raise ValueError(f"LZMA dictionary of {dict_size} bytes is too large")
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}]
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)


def _open_member(
    stream: BinaryIO,
    local: _Entry,
    method: int,
    csize: int,
    ctx: ScanContext,
    where: Location,
    declared: int | None = None,
) -> tuple[BinaryIO, int, int, list[Finding]]:
    """The member's data as a stream, its CRC-32 and size, and problems met reading it.

    With ``declared`` (the uncompressed size the directory records), the stream
    and CRC hold at most that many bytes, as :mod:`zipfile` returns them (it
    cuts a member's output at its recorded size; PyTorch's reader refuses
    more). The size returned is what the data really holds.
    """
    problems: list[Finding] = []
    raw = view(stream, local.data_start, csize)
    if method == 0:
        crc = 0
        total = 0
        for chunk in iter_chunks(raw, None, ctx):
            kept = chunk if declared is None else chunk[: max(0, declared - total)]
            crc = zlib.crc32(kept, crc)
            total += len(chunk)
        if declared is not None and total > declared:
            raw = view(stream, local.data_start, declared)
        raw.seek(0)
        return raw, crc, total, problems
    decompressor: Decompressor
    if method == 14:
        try:
            decompressor = _zip_lzma(raw)
        except (ValueError, lzma.LZMAError) as exc:
            problems.append(unreadable_finding(f"zip member LZMA header is invalid: {exc}", where))
            return raw, 0, -1, problems
    else:
        decompressor = ZlibDecompressor(-15) if method == 8 else bz2.BZ2Decompressor()
    crc_box = [0, 0]  # CRC-32 of the bytes kept, bytes seen

    def on_output(out: bytes) -> None:
        kept = out if declared is None else out[: max(0, declared - crc_box[1])]
        crc_box[0] = zlib.crc32(kept, crc_box[0])
        crc_box[1] += len(out)

    spool = new_spool(ctx)
    try:
        spool, _used, produced = decompress_to_spool(
            iter_chunks(raw, None, ctx),
            decompressor,
            ctx,
            where,
            sink=spool,
            on_output=on_output,
        )
    except DecompressError as exc:
        if declared is None or exc.produced < declared:
            problems.append(
                unreadable_finding(
                    f"zip member data is corrupt after {exc.produced} bytes: {exc}; "
                    "the recovered part is scanned",
                    where,
                )
            )
        # else: every recorded byte came out; zipfile stops there and never sees the damage
        produced = exc.produced
        spool.seek(0)
    except RatioExceeded as exc:
        problems.append(limit_finding(exc))
        produced = -1
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    if declared is not None and produced > declared:
        spool.truncate(declared)
        spool.seek(0)
    return as_binary(spool), crc_box[0], produced, problems


def _member_findings(
    local: _Entry, central: _Entry | None, seen: dict[bytes, int], where: Location
) -> list[Finding]:
    out: list[Finding] = []
    ref = central or local
    if central is None:
        out.append(
            _finding(
                "zip-hidden-member",
                Severity.HIGH,
                f"member {local.name!r} has a local header but no central-directory entry: "
                "readers that walk local headers load it, others never see it",
                where,
            )
        )
    elif central.raw_name != local.raw_name:
        out.append(
            _finding(
                "zip-name-mismatch",
                Severity.HIGH,
                f"central directory names the member {central.name!r} but its local header "
                f"names it {local.name!r}",
                where,
            )
        )
    if ref.flags & 0x1:
        out.append(
            _finding(
                "zip-flag-bits",
                Severity.HIGH,
                f"member {ref.name!r} has the encryption flag set: zipfile refuses it while "
                "other readers (PyTorch) load it; read anyway",
                where,
            )
        )
    odd = ref.flags & ~_KNOWN_FLAGS
    if odd or (central is not None and (central.flags ^ local.flags) & ~0x8):
        out.append(
            _finding(
                "zip-flag-bits",
                Severity.MEDIUM,
                f"member {ref.name!r} has unusual general-purpose flags "
                f"(central 0x{ref.flags:04x}, local 0x{local.flags:04x})",
                where,
            )
        )
    if central is not None and central.method != local.method:
        out.append(
            _finding(
                "zip-header-mismatch",
                Severity.MEDIUM,
                f"member {ref.name!r}: compression method {central.method} in the central "
                f"directory, {local.method} in the local header",
                where,
            )
        )
    if escapes_archive(ref.name) or escapes_archive(local.name):
        out.append(
            _finding(
                "archive-path-escape",
                Severity.HIGH,
                f"member name {ref.name!r} escapes the extraction directory",
                where,
            )
        )
    seen[ref.raw_name] = seen.get(ref.raw_name, 0) + 1
    if seen[ref.raw_name] == 2:
        out.append(
            _finding(
                "zip-duplicate-name",
                Severity.HIGH,
                f"member name {ref.name!r} occurs more than once: readers disagree on which "
                "copy they load; every copy is scanned",
                where,
            )
        )
    return out


def _member(
    stream: BinaryIO,
    size: int,
    offset: int,
    central: _Entry | None,
    seen: dict[bytes, int],
    ctx: ScanContext,
    storages: re.Pattern[str] | None = None,
) -> Iterator[Finding]:
    local = _read_local(stream, offset, size)
    described = central or local
    name = described.name if described is not None else f"<member at {offset}>"
    where = ctx.location(offset=offset, inner=name)
    if local is None:
        yield unreadable_finding(
            f"central directory entry {name!r} points at offset {offset}, "
            "where there is no valid local header",
            where,
        )
        return
    yield from _member_findings(local, central, seen, where)
    ref = central or local
    method = ref.method
    csize = ref.csize
    if central is None and local.flags & 0x8 and local.csize == 0:
        csize = _measure(stream, local, size, ctx) or 0
    if local.data_start + csize > size:
        yield unreadable_finding(
            f"member {name!r} claims {csize} compressed bytes, past the end of the file", where
        )
        csize = size - local.data_start
    if method not in (0, 8, 12, 14):
        yield unreadable_finding(
            f"member {name!r} uses compression method {method}, which the scanner does not read",
            where,
        )
        return
    if name.endswith("/") and csize == 0:
        return
    descriptor_only = bool(local.flags & 0x8) and central is None  # sizes unknown up front
    declared = None if descriptor_only else ref.usize
    data, crc, produced, problems = _open_member(stream, local, method, csize, ctx, where, declared)
    yield from problems
    if produced >= 0 and not any(p.rule == "unreadable" for p in problems):
        if crc != ref.crc:
            yield _finding(
                "zip-crc-mismatch",
                Severity.HIGH,
                f"member {name!r}: CRC-32 0x{crc:08x} does not match the recorded "
                f"0x{ref.crc:08x}; zipfile refuses it, PyTorch loads it",
                where,
            )
        if produced != ref.usize and not descriptor_only:
            yield _finding(
                "zip-size-mismatch",
                Severity.MEDIUM,
                f"member {name!r}: {produced} bytes, header says {ref.usize}"
                + (
                    "; the first ones, which zipfile returns, are scanned"
                    if produced > ref.usize
                    else ""
                ),
                where,
            )
    yield from _pytorch_stored_view(stream, size, local, central, method, csize, name, ctx)
    try:
        found = ctx.scan_member(data, name)
    finally:
        data.close()
    if storages is not None and storages.fullmatch(name):
        found = [_as_storage(f) for f in found]
    yield from found


def _pytorch_stored_view(
    stream: BinaryIO,
    size: int,
    local: _Entry,
    central: _Entry | None,
    method: int,
    csize: int,
    name: str,
    ctx: ScanContext,
) -> Iterator[Finding]:
    """A stored member whose two sizes differ: PyTorch's reader reads the other length.

    miniz copies a stored member's *uncompressed* size from where its data
    starts (and PyTorch skips the CRC check), while zipfile reads the compressed
    size and cuts it at the uncompressed one. With a larger uncompressed size,
    PyTorch unpickles bytes that run on past the member, into what follows it:
    that view is scanned too, and the disagreement is high.
    """
    if method != 0 or central is None or central.usize == csize:
        return
    yield _finding(
        "zip-readers-disagree",
        Severity.HIGH,
        f"stored member {name!r} records {csize} compressed and {central.usize} uncompressed "
        "bytes: PyTorch's reader reads the second, zipfile the first; both views are scanned",
        ctx.location(offset=local.offset, inner=name),
    )
    if central.usize <= csize:
        return
    longer = view(stream, local.data_start, min(central.usize, size - local.data_start))
    yield from ctx.scan_member(longer, name)


def _torch_storage_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """Names of the raw tensor storages of a PyTorch checkpoint (``<top>/data/<n>``).

    ``torch.load`` unpickles ``<top>/data.pkl`` and reads storages as raw bytes,
    never as pickles. Raw tensor bytes may happen to start like a pickle
    (``\\x80`` then a small byte), so a storage that fails to parse as one is no
    risk: such ``unreadable`` findings are lowered. Anything the pickle scanner
    does find in a storage keeps its severity.
    """
    tops = {n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl")}
    if not tops:
        return None
    alternatives = "|".join(re.escape(t) for t in sorted(tops))
    return re.compile(rf"(?:{alternatives})/data/\d+")


def _as_storage(finding: Finding) -> Finding:
    if finding.rule != "unreadable" or finding.severity <= Severity.LOW:
        return finding
    return replace(
        finding,
        severity=Severity.LOW,
        message=f"{finding.message} (a PyTorch tensor storage, which torch.load never unpickles)",
    )


SCANNERS: tuple[FormatScanner, ...] = (ZipScanner(),)
