"""The tar a client pushes is hostile input: properties of the registry API's unpacker."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.errors import UsageError
from atlasguard.gateway.registry_api import _safe_untar

SEGMENTS = st.sampled_from(["a", "b", "model.onnx", "..", ".", "", "c d", "é"])
NAMES = st.one_of(
    st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join),
    st.lists(SEGMENTS, min_size=1, max_size=3).map(lambda p: "/" + "/".join(p)),
    st.text(min_size=1, max_size=20),
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
    ]
)
MEMBERS = st.lists(
    st.tuples(NAMES, TYPES, st.binary(max_size=64), st.sampled_from(["", "..", "/etc", "a"])),
    min_size=1,
    max_size=6,
)


def _archive(members: list[tuple[str, int, bytes, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind  # type: ignore[assignment]
            info.linkname = link
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


@contextmanager
def _unpacking(data: bytes) -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "in.tar"
        archive.write_bytes(data)
        box = root / "box"
        dest = box / "out"
        dest.mkdir(parents=True)
        yield archive, dest


def _contents(dest: Path) -> dict[str, bytes]:
    """Every file under ``dest``, checking nothing else was made: no links, no devices."""
    found: dict[str, bytes] = {}
    for top, dirs, files in os.walk(dest, followlinks=False):
        for d in dirs:
            assert not os.path.islink(os.path.join(top, d))
        for f in files:
            path = Path(top, f)
            assert path.is_file() and not path.is_symlink(), path
            found[path.relative_to(dest).as_posix()] = path.read_bytes()
    return found


@given(members=MEMBERS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_only_plain_files_and_directories_inside_the_destination(
    members: list[tuple[str, int, bytes, str]],
) -> None:
    try:
        data = _archive(members)
    except (ValueError, UnicodeError):  # tarfile cannot even write this name
        return
    with _unpacking(data) as (archive, dest):
        try:
            _safe_untar(archive, dest, max_bytes=1 << 20)
        except UsageError:
            assert [p.name for p in dest.parent.iterdir()] == ["out"]  # nothing escaped
            return
        assert [p.name for p in dest.parent.iterdir()] == ["out"]
        files = _contents(dest)
    # Success means every member, as tarfile reads it back, was a plain file or
    # directory with a plain name, and every file is there with its bytes.
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            assert member.isreg() or member.isdir()
            assert not member.name.startswith("/") and ".." not in member.name.split("/")
            if member.isreg():
                clean = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                source = tar.extractfile(member)
                assert source is not None and files[clean] == source.read()
    assert files


PLAIN = st.dictionaries(
    st.lists(st.sampled_from(["x", "y", "z.bin"]), min_size=1, max_size=3).map(
        lambda parts: (
            "/".join(f"d{i}" for i in range(len(parts) - 1)) + "/" + parts[-1]
            if len(parts) > 1
            else parts[0]
        )
    ),
    st.binary(max_size=256),
    min_size=1,
    max_size=5,
)


@given(files=PLAIN)
@settings(max_examples=100, deadline=None)
def test_a_plain_archive_round_trips(files: dict[str, bytes]) -> None:
    # A file name never doubles as a directory name here (d0, d1 vs x, y, z.bin).
    data = _archive([(name, tarfile.REGTYPE, body, "") for name, body in files.items()])
    with _unpacking(data) as (archive, dest):
        _safe_untar(archive, dest, max_bytes=1 << 20)
        assert _contents(dest) == files


@given(data=st.binary(max_size=4096), flips=st.lists(st.integers(0, 10_000), max_size=8))
@settings(max_examples=300, deadline=None)
def test_any_bytes_unpack_or_raise_usage_error(data: bytes, flips: list[int]) -> None:
    base = bytearray(_archive([("m/a", tarfile.REGTYPE, b"hello", "")]) + data)
    for i in flips:
        base[i % len(base)] ^= 0xFF
    with _unpacking(bytes(base)) as (archive, dest):
        try:
            _safe_untar(archive, dest, max_bytes=1 << 20)
        except UsageError:
            return
        _contents(dest)


def test_content_past_the_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "big.tar"
    archive.write_bytes(
        _archive([("a", tarfile.REGTYPE, b"x" * 600, ""), ("b", tarfile.REGTYPE, b"y" * 600, "")])
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError, match="more than 1000 bytes"):
        _safe_untar(archive, dest, max_bytes=1000)


def test_an_archive_of_only_directories_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dirs.tar"
    archive.write_bytes(
        _archive([("a", tarfile.DIRTYPE, b"", ""), ("a/b", tarfile.DIRTYPE, b"", "")])
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError, match="no regular file"):
        _safe_untar(archive, dest, max_bytes=1000)


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    # A GNU sparse member claims far more bytes than the archive holds.
    info = tarfile.TarInfo("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info)
    archive = tmp_path / "sparse.tar"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError, match=r"refused|not a valid"):
        _safe_untar(archive, dest, max_bytes=1000)


def _tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape"
    ) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("a/" * 1500 + "f", b"x")], "too deep"),  # would overflow recursive copies
        ([("\udcffbad.bin", b"x")], "not UTF-8"),
        ([("a", b"x"), ("a/b", b"y")], "cannot be unpacked"),  # a file, then a child of it
    ],
)
def test_hostile_names_are_refused_without_server_paths(
    tmp_path: Path, entries: list[tuple[str, bytes]], message: str
) -> None:
    archive = tmp_path / "in.tar"
    archive.write_bytes(_tar_bytes(entries))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(UsageError, match=message) as info:
        _safe_untar(archive, dest, max_bytes=1 << 20)
    assert str(tmp_path) not in str(info.value)
    str(info.value).encode("utf-8")  # sendable as JSON
