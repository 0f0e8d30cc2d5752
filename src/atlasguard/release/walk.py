"""Walk a release: a directory, a git history, an archive, and every archive inside.

Everything becomes an :class:`Item`: a name to report (``dist/app.whl!lib/m.onnx``;
``<commit>:path`` for a blob found only in history), its size, and its bytes
(whole up to :attr:`Limits.max_item_bytes`, else the first ``HEAD`` bytes).
Members are read into memory under that cap, never extracted to disk, never
executed. Archives are recognised by content, whatever their names: zip (and
wheels, jars, APKs, IPAs, Office files), tar (sdists, npm packages), gzip,
bzip2, xz and, with ``py7zr`` installed, 7z. A part that cannot be read or is
past a limit becomes an ``unexamined`` finding: nothing is passed silently.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, cast

__all__ = ["HEAD", "Item", "Limits", "Walker", "archive_kind", "git_blob_id", "strip_commit"]

HEAD = 1 << 20  # what is kept of an item larger than the cap: enough to sniff


@dataclass(frozen=True, slots=True)
class Limits:
    max_item_bytes: int = 64 << 20  # read whole (and descended into) up to this
    max_total_bytes: int = 8 << 30  # all members decompressed, per release
    max_members: int = 200_000
    max_depth: int = 16
    max_commits: int = 100_000


@dataclass(slots=True)
class Item:
    path: str
    data: bytes
    size: int
    depth: int = 0
    bundle: str | None = None  # the client package it ships in (wheel, Android app...)
    disk: Path | None = None  # on disk: large archives are opened from here

    @property
    def complete(self) -> bool:
        return len(self.data) >= self.size

    @property
    def name(self) -> str:
        return PurePosixPath(self.inner).name

    @property
    def inner(self) -> str:
        """The path inside the innermost container (the file path for a file on disk)."""
        return strip_commit(self.path.rpartition("!")[2])


# suffix -> the kind of client package a model inside it ships to
CLIENT_PACKAGES = {
    ".whl": "Python wheel",
    ".egg": "Python egg",
    ".apk": "Android app",
    ".aab": "Android app bundle",
    ".aar": "Android library",
    ".ipa": "iOS app",
    ".jar": "Java archive",
    ".xpi": "browser extension",
    ".deb": "Debian package",
    ".crx": "browser extension",
    ".vsix": "VS Code extension",
    ".nupkg": "NuGet package",
    ".snap": "snap package",
    ".appx": "Windows app",
    ".msix": "Windows app",
}


def archive_kind(head: bytes) -> str | None:
    """``zip``, ``tar``, ``gzip``, ``bz2``, ``xz``, ``7z``, ``zstd``, ``ar``, ``cpio``,
    ``rpm``, ``asar`` or ``None``, from content alone."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:4] == b"Cr24" and b"PK\x03\x04" in head[:4096]:
        return "zip"  # a Chrome extension: a zip behind a signed header
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:8] == b"!<arch>\n":
        return "ar"  # Debian packages, static libraries
    if head[:6] in (b"070701", b"070702", b"070707"):
        return "cpio"
    if head[:4] == b"\xed\xab\xee\xdb":
        return "rpm"
    if head[:4] == b"\x04\x00\x00\x00" and head[16:24] == b'{"files"':
        return "asar"  # Electron's app archive
    return None


_COMMIT = re.compile(r"^[0-9a-f]{12}:")


def strip_commit(path: str) -> str:
    """``1a2b3c4d5e6f:dir/file`` -> ``dir/file``: a history path without its commit."""
    return _COMMIT.sub("", path, count=1)


class _MemorySink:
    """A py7zr writer into memory, refusing to grow past ``cap`` bytes."""

    def __init__(self, cap: int, path: str) -> None:
        self.buffer = bytearray()
        self.cap = cap
        self.path = path

    def write(self, data: bytes) -> int:
        if len(self.buffer) + len(data) > self.cap:
            raise Unexamined(self.path, "7z member larger than the size limit: not opened")
        self.buffer += data
        return len(data)

    def read(self, size: int | None = None) -> bytes:
        return bytes(self.buffer if size is None or size < 0 else self.buffer[:size])

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return len(self.buffer)

    def close(self) -> None:
        return None


class _MemoryFactory:
    """py7zr's ``WriterFactory``: one :class:`_MemorySink` per member."""

    def __init__(self, cap: int, path: str) -> None:
        self.cap = cap
        self.path = path
        self.sinks: dict[str, _MemorySink] = {}

    def create(self, filename: str) -> _MemorySink:
        self.sinks[filename] = _MemorySink(self.cap, self.path)
        return self.sinks[filename]


def _ar(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Members of a Unix ``ar`` archive (a .deb: debian-binary, control.tar.*, data.tar.*)."""
    offset, names = 8, b""
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"ar header without its end mark at byte {offset}")
        name, size = header[:16].rstrip(b" "), int(header[48:58].strip() or b"0")
        body = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size & 1)
        if name == b"//":  # GNU long-name table
            names = body
            continue
        if name in (b"/", b"/SYM64/"):  # symbol tables
            continue
        if name.startswith(b"#1/"):  # BSD: the name leads the body
            length = int(name[3:])
            name, body = body[:length].rstrip(b"\0"), body[length:]
        elif name.startswith(b"/") and name[1:].isdigit():
            start = int(name[1:])
            name = names[start : names.find(b"/\n", start)]
        yield name.rstrip(b"/").decode("utf-8", "replace"), body


def _cpio(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Regular files of a cpio archive, "newc"/"crc" (RPM payloads, initramfs) or "odc"."""
    offset = 0
    while offset + 76 <= len(data):
        magic = data[offset : offset + 6]
        if magic in (b"070701", b"070702"):
            fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
            mode, size, namesize = fields[1], fields[6], fields[11]
            name_at = offset + 110
            body_at = (name_at + namesize + 3) & ~3
            end = (body_at + size + 3) & ~3
        elif magic == b"070707":
            mode = int(data[offset + 18 : offset + 24], 8)
            namesize = int(data[offset + 59 : offset + 65], 8)
            size = int(data[offset + 65 : offset + 76], 8)
            name_at = offset + 76
            body_at = name_at + namesize
            end = body_at + size
        else:
            raise ValueError(f"cpio header expected at byte {offset}")
        name = data[name_at : name_at + namesize].rstrip(b"\0").decode("utf-8", "replace")
        if name == "TRAILER!!!":
            return
        if mode & 0o170000 == 0o100000:  # regular files only
            yield name.removeprefix("./"), data[body_at : body_at + size]
        offset = end


_PAYLOADS = (b"\xfd7zXZ\x00", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh")


def _rpm(data: bytes) -> Iterator[tuple[str, bytes]]:
    """An RPM's payload: the compressed cpio after its lead and headers (opened next)."""
    starts = [i for i in (data.find(m, 96) for m in _PAYLOADS) if i >= 0]
    if not starts:
        raise ValueError("no compressed payload found after the RPM headers")
    yield "payload", data[min(starts) :]


def _asar(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Files of an Electron ``app.asar``: a JSON index, then the files' bytes."""
    import json

    header_size, json_size = (
        struct.unpack_from("<I", data, 4)[0],
        struct.unpack_from("<I", data, 12)[0],
    )
    index = json.loads(data[16 : 16 + json_size])
    base = 8 + header_size

    def walk(node: dict[str, object], prefix: str) -> Iterator[tuple[str, bytes]]:
        files = node.get("files")
        if not isinstance(files, dict):
            return
        for name, entry in files.items():
            if not isinstance(entry, dict):
                continue
            path = f"{prefix}{name}"
            if "files" in entry:
                yield from walk(entry, path + "/")
            elif "offset" in entry and not entry.get("unpacked"):
                start, size = base + int(str(entry["offset"])), int(str(entry.get("size", 0)))
                yield path, data[start : start + size]

    yield from walk(index, "")


def _decompressor(kind: str, raw: IO[bytes]) -> IO[bytes]:
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw))
    if kind == "bz2":
        return bz2.BZ2File(raw)
    return lzma.LZMAFile(raw)


def git_blob_id(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class Unexamined(Exception):
    """Part of the release could not be read; becomes an ``unexamined`` finding."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(why)
        self.path = path
        self.why = why


@dataclass
class Walker:
    """Yields items and collects what could not be examined (:attr:`unexamined`)."""

    limits: Limits = field(default_factory=Limits)
    unexamined: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0
    member_count: int = 0
    commits: int = 0
    listing: dict[str, list[str]] = field(default_factory=dict)  # archive -> member names

    # -- sources ---------------------------------------------------------------------

    def directory(self, root: Path, skip_git: bool = True) -> Iterator[Item]:
        """Every regular file under ``root`` (symbolic links are not followed)."""
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            if skip_git and ".git" in dirs:
                dirs.remove(".git")
            for name in sorted(files):
                full = Path(folder) / name
                rel = full.relative_to(root).as_posix()
                if full.is_symlink() or not full.is_file():
                    continue
                item = self.file(full, rel)
                if item is not None:
                    yield item

    def file(self, full: Path, shown: str) -> Item | None:
        try:
            size = full.stat().st_size
            with full.open("rb") as fh:
                data = fh.read(size if size <= self.limits.max_item_bytes else HEAD)
        except OSError as exc:
            self.unexamined.append((shown, f"cannot read: {exc.strerror or exc}"))
            return None
        return Item(shown, data, size, disk=full)

    def history(self, repo: Path, seen: set[str]) -> Iterator[Item]:
        """Blobs of every commit reachable from HEAD that are not in ``seen`` (git blob ids
        of the working tree), each named ``path@<commit>`` after the newest commit that
        holds it. Reads through ``git cat-file``: nothing is checked out, no hook runs."""
        git = ["git", "-c", "core.fsmonitor=false", "-c", "safe.directory=*", "-C", str(repo)]
        try:
            listing = subprocess.run(
                [*git, "rev-list", "HEAD"], capture_output=True, check=True, timeout=600
            ).stdout.decode()
        except (OSError, subprocess.SubprocessError):
            self.unexamined.append(
                (
                    ".git",
                    "git history could not be listed (is git installed, "
                    "and does the repository have a commit?)",
                )
            )
            return
        commits = listing.split()[: self.limits.max_commits]
        self.commits = len(commits)
        wanted: dict[str, str] = {}  # blob -> path@commit, newest commit first
        for commit in commits:
            try:
                tree = subprocess.run(
                    [*git, "ls-tree", "-r", "-z", commit],
                    capture_output=True,
                    check=True,
                    timeout=600,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                self.unexamined.append((f"{commit[:12]}:", "commit tree unreadable"))
                continue
            for entry in tree.split(b"\0"):
                meta, _, name = entry.partition(b"\t")
                parts = meta.split()
                if len(parts) != 3 or parts[1] != b"blob":
                    continue
                blob = parts[2].decode()
                if blob not in seen and blob not in wanted:
                    wanted[blob] = f"{commit[:12]}:{name.decode(errors='replace')}"
        if not wanted:
            return
        yield from self._cat(git, wanted)

    def _cat(self, git: list[str], wanted: dict[str, str]) -> Iterator[Item]:
        proc = subprocess.Popen(
            [*git, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for blob, shown in wanted.items():
                proc.stdin.write(blob.encode() + b"\n")
                proc.stdin.flush()
                header = proc.stdout.readline().split()
                if len(header) != 3:
                    self.unexamined.append((shown, "blob missing from the repository"))
                    continue
                size = int(header[2])
                keep = size if size <= self.limits.max_item_bytes else HEAD
                data = proc.stdout.read(keep)
                left = size - keep
                while left > 0:
                    left -= len(proc.stdout.read(min(left, 1 << 20)))
                proc.stdout.read(1)  # the newline after each object
                self.total += size
                yield Item(shown, data, size)
        finally:
            proc.stdin.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()

    # -- archives --------------------------------------------------------------------

    def members(self, item: Item, kind: str) -> Iterator[Item]:
        """The members of archive ``item`` (``kind`` from :func:`archive_kind`)."""
        if item.depth >= self.limits.max_depth:
            self.unexamined.append(
                (
                    item.path,
                    f"archive nested deeper than {self.limits.max_depth} levels: not opened",
                )
            )
            return
        if not item.complete and item.disk is None:
            self.unexamined.append(
                (
                    item.path,
                    f"archive of {item.size} bytes inside another "
                    f"is above the {self.limits.max_item_bytes}-byte limit",
                )
            )
            return
        bundle = item.bundle or CLIENT_PACKAGES.get(PurePosixPath(item.name).suffix.lower())
        source = io.BytesIO(item.data) if item.complete else None
        try:
            if kind == "zip":
                yield from self._zip(item, source, bundle)
            elif kind == "tar":
                yield from self._tar(item, source, bundle)
            elif kind == "7z":
                yield from self._sevenzip(item, source, bundle)
            elif kind == "zstd":
                yield from self._zstd(item, bundle)
            elif kind in ("ar", "cpio", "rpm", "asar"):
                if not item.complete:
                    raise Unexamined(item.path, f"{kind} archive above the size limit: not opened")
                reader = {"ar": _ar, "cpio": _cpio, "rpm": _rpm, "asar": _asar}[kind]
                if kind == "asar":
                    bundle = bundle or "Electron app"
                if kind == "rpm":
                    bundle = bundle or "RPM package"
                for name, data in reader(item.data):
                    self._count(item, len(data))
                    self.listing.setdefault(item.path, []).append(name)
                    yield Item(f"{item.path}!{name}", data, len(data), item.depth + 1, bundle)
            else:
                yield from self._stream(item, kind, bundle)
        except Unexamined as exc:
            self.unexamined.append((exc.path, exc.why))
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            zlib.error,
            lzma.LZMAError,
            EOFError,
            OSError,
            ValueError,
            NotImplementedError,
            RuntimeError,
            KeyError,
            IndexError,
            struct.error,
        ) as exc:
            self.unexamined.append(
                (item.path, f"{kind} archive unreadable: {type(exc).__name__}: {str(exc)[:120]}")
            )

    def _count(self, item: Item, size: int) -> None:
        self.member_count += 1
        self.total += size
        if self.member_count > self.limits.max_members:
            raise Unexamined(
                item.path,
                f"more than {self.limits.max_members} members in the "
                "release: the rest was not examined",
            )
        if self.total > self.limits.max_total_bytes:
            raise Unexamined(
                item.path,
                f"more than {self.limits.max_total_bytes} bytes "
                "decompressed: the rest was not examined",
            )

    def _read(self, fh: IO[bytes], size: int) -> bytes:
        cap = self.limits.max_item_bytes
        return fh.read(size if size <= cap else HEAD)

    def _zip(self, item: Item, source: io.BytesIO | None, bundle: str | None) -> Iterator[Item]:
        opened = source if source is not None else item.disk
        assert opened is not None
        with zipfile.ZipFile(opened) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                self._count(item, info.file_size)
                shown = f"{item.path}!{info.filename}"
                self.listing.setdefault(item.path, []).append(info.filename)
                if info.flag_bits & 0x1:
                    self.unexamined.append((shown, "encrypted zip member: not readable"))
                    continue
                with archive.open(info) as fh:
                    data = self._read(fh, info.file_size)
                yield Item(shown, data, info.file_size, item.depth + 1, bundle)

    def _tar(self, item: Item, source: io.BytesIO | None, bundle: str | None) -> Iterator[Item]:
        with tarfile.open(fileobj=source, name=None if source else item.disk, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                self._count(item, member.size)
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                data = self._read(fh, member.size)
                name = member.name.removeprefix("./")
                self.listing.setdefault(item.path, []).append(name)
                if bundle is None and name == "package/package.json":
                    bundle = "npm package"
                yield Item(f"{item.path}!{name}", data, member.size, item.depth + 1, bundle)

    def _stream(self, item: Item, kind: str, bundle: str | None) -> Iterator[Item]:
        """A single compressed stream (``x.csv.gz``): one member, named without the suffix."""
        raw: IO[bytes]
        if item.complete:
            raw = io.BytesIO(item.data)
        else:
            assert item.disk is not None
            raw = item.disk.open("rb")
        with raw, _decompressor(kind, raw) as fh:
            cap = self.limits.max_item_bytes
            data = fh.read(cap + 1)
            size = len(data)
            if size > cap:
                while chunk := fh.read(1 << 20):
                    size += len(chunk)
                    if self.total + size > self.limits.max_total_bytes:
                        break
                data = data[:HEAD]
        self._count(item, size)
        stem = item.name.rsplit(".", 1)[0] if "." in item.name else item.name
        if kind == "gzip" and item.name.lower().endswith((".tgz", ".tar.gz")):
            stem = stem if stem.endswith(".tar") else f"{stem}.tar"
        yield Item(f"{item.path}!{stem}", data, size, item.depth + 1, bundle)

    def _zstd(self, item: Item, bundle: str | None) -> Iterator[Item]:
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise Unexamined(item.path, "zstd-compressed: install zstandard to open it") from None
        if not item.complete:
            raise Unexamined(item.path, "zstd stream above the size limit: not opened")
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(item.data))
        data = reader.read(self.limits.max_item_bytes + 1)
        size = len(data)
        if size > self.limits.max_item_bytes:
            data = data[:HEAD]
        self._count(item, size)
        stem = item.name.rsplit(".", 1)[0] if "." in item.name else item.name
        yield Item(f"{item.path}!{stem}", data, size, item.depth + 1, bundle)

    def _sevenzip(
        self, item: Item, source: io.BytesIO | None, bundle: str | None
    ) -> Iterator[Item]:
        try:
            import py7zr  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise Unexamined(item.path, "7z archive: install py7zr to open it") from None
        opened = source if source is not None else item.disk
        assert opened is not None
        sinks = _MemoryFactory(self.limits.max_item_bytes, item.path)
        try:
            with py7zr.SevenZipFile(opened, mode="r") as archive:
                infos = [i for i in archive.list() if not i.is_directory]
                for info in infos:
                    self._count(item, int(info.uncompressed or 0))
                if any(int(i.uncompressed or 0) > self.limits.max_item_bytes for i in infos):
                    raise Unexamined(item.path, "7z member above the size limit: not opened")
                archive.extractall(factory=sinks)  # noqa: S202 - into memory, never to disk
        except Unexamined:
            raise
        except Exception as exc:  # py7zr raises many types on malformed input
            raise Unexamined(
                item.path, f"7z archive unreadable: {type(exc).__name__}: {str(exc)[:120]}"
            ) from None
        for name, sink in sorted(sinks.sinks.items()):
            data = bytes(sink.buffer)
            yield Item(f"{item.path}!{name}", data, len(data), item.depth + 1, bundle)
