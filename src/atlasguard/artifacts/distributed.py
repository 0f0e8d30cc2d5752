"""Scan a model hub mirror on Dask's distributed scheduler.

:func:`scan_paths_distributed` walks the paths here, cuts the files into
shards (consecutive files in walk order, a few MiB or a few files each; a big
file is a shard of its own), runs :func:`scan_shard` on the cluster's workers
and merges the reports back into walk order. The result is the list
:func:`~atlasguard.artifacts.scan.scan_paths` returns for the same paths: each
worker runs the very same per-file scan, which reads nothing but the file and
its folder.

Failure is Dask's to handle first. A worker that dies mid-file takes its shard
with it, and the scheduler reruns the shard elsewhere. A shard that keeps
killing workers (``distributed.scheduler.allowed-failures``) comes back as
``KilledWorker``: its files are then tried alone and one at a time (so that a
death is the file's own, never an innocent file's that was queued beside the
culprit), each up to :data:`FILE_TRIES` times, and a file that still ends a
worker is reported with a ``high`` ``scan-crashed`` finding.
Every file gets a report; none is dropped.

The workers open the files by the paths the client sees, so every worker must
mount the mirror at the same place (the usual shared volume of a hub mirror).
A worker that cannot open a file reports it ``unreadable``, never clean.

Dask is an extra (``pip install 'atlasguard[dask]'``) and imported only here.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlasguard.artifacts.allowlist import parse_allow_entry
from atlasguard.artifacts.findings import FileReport, Finding, Location, Severity
from atlasguard.artifacts.formats.base import Limits
from atlasguard.artifacts.scan import _scan_file, iter_files, settle_siblings
from atlasguard.errors import ScanError, UsageError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["Shard", "scan_paths_distributed", "scan_shard", "shards"]

SHARD_BYTES = 32 * 1024 * 1024
"""A shard holds files up to this many bytes together (a bigger file is its own shard)."""
SHARD_FILES = 256
"""And at most this many files: a task costs milliseconds of scheduling and transfer."""
TASKS_PER_THREAD = 4
"""Shards are cut so each worker thread gets about this many: enough to balance the load."""
FILE_TRIES = 3
"""Times a file of a shard that killed its workers is tried alone before it is reported."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Files scanned by one task: ``(path, display name)`` pairs, in walk order."""

    index: int
    files: tuple[tuple[str, str], ...]


def shards(
    files: Iterable[tuple[Path, str]],
    *,
    shard_bytes: int = SHARD_BYTES,
    shard_files: int = SHARD_FILES,
) -> list[Shard]:
    """Cut ``(path, display)`` pairs into shards of at most ``shard_files`` / ``shard_bytes``.

    >>> [len(s.files) for s in shards([(Path("a"), "a"), (Path("b"), "b")], shard_files=1)]
    [1, 1]
    """
    if shard_files < 1 or shard_bytes < 1:
        raise UsageError("a shard holds at least one file and one byte")
    out: list[Shard] = []
    current: list[tuple[str, str]] = []
    size = 0
    for path, display in files:
        try:
            length = os.stat(path).st_size
        except OSError:
            length = 0  # the worker reports what it cannot open
        if current and (len(current) >= shard_files or size + length > shard_bytes):
            out.append(Shard(len(out), tuple(current)))
            current, size = [], 0
        current.append((os.path.abspath(path), display))  # workers have their own cwd
        size += length
    if current:
        out.append(Shard(len(out), tuple(current)))
    return out


def scan_shard(shard: Shard, allow: Sequence[str], limits: Limits, fast: bool) -> list[FileReport]:
    """Scan a shard's files, one report each: what a worker runs."""
    allowed = frozenset(parse_allow_entry(a) for a in allow)
    return [
        _scan_file(Path(path), display, allowed, limits, fast=fast) for path, display in shard.files
    ]


ShardTask = Callable[[Shard, Sequence[str], Limits, bool], list[FileReport]]


def scan_paths_distributed(
    paths: Sequence[str | os.PathLike[str]],
    scheduler: str | Client,
    *,
    allow: Iterable[str] = (),
    limits: Limits | None = None,
    progress: Callable[[int, int], None] | None = None,
    fast: bool = False,
    shard_bytes: int = SHARD_BYTES,
    shard_files: int | None = None,
    connect_timeout: float = 30.0,
    task: ShardTask = scan_shard,
) -> list[FileReport]:
    """Scan files and directories on a Dask cluster; the same reports as ``scan_paths``.

    ``scheduler`` is a scheduler address (``tcp://host:8786``) or a connected
    ``distributed.Client``. ``task`` is what each worker runs on a shard (a
    replacement must be importable, or picklable, on the workers). Without
    ``shard_files``, shards are cut so each worker thread gets about
    :data:`TASKS_PER_THREAD` of them, within 1 and :data:`SHARD_FILES` files.
    """
    allow = list(allow)
    for entry in allow:
        parse_allow_entry(entry)  # a bad entry is a usage error here, not on every worker
    limits = limits or Limits()
    files = list(iter_files(paths))
    if not files:
        return []
    client, owned = _connect(scheduler, connect_timeout)
    try:
        if shard_files is None:
            threads = max(1, sum(client.nthreads().values()))
            shard_files = min(SHARD_FILES, max(1, -(-len(files) // (threads * TASKS_PER_THREAD))))
        work = shards(files, shard_bytes=shard_bytes, shard_files=shard_files)
        by_shard = _run(client, work, task, allow, limits, fast, progress, len(files))
    finally:
        if owned:
            client.close()
    return settle_siblings(files, [report for shard in work for report in by_shard[shard.index]])


def _connect(scheduler: str | Client, timeout: float) -> tuple[Client, bool]:
    try:
        from distributed import Client
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the extra
        raise UsageError(
            "scanning on a Dask cluster needs the dask extra: pip install 'atlasguard[dask]'"
        ) from exc
    if not isinstance(scheduler, str):
        return scheduler, False
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(exc).__name__}); "
            "check the address (tcp://HOST:8786) and that `dask scheduler` is running"
        ) from exc


def _run(
    client: Client,
    work: list[Shard],
    task: ShardTask,
    allow: list[str],
    limits: Limits,
    fast: bool,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> dict[int, list[FileReport]]:
    from distributed import as_completed

    run = uuid.uuid4().hex[:12]

    def submit(shard: Shard, attempt: str) -> Future[list[FileReport]]:
        return client.submit(
            task,
            shard,
            allow,
            limits,
            fast,
            key=f"atlasguard-scan-{run}-{shard.index}-{attempt}",
            pure=False,
            retries=0,
        )

    # future -> (shard, slot, tries): slot is None for a whole shard, else one file's place
    pending: dict[Any, tuple[Shard, int | None, int]] = {
        submit(s, "all"): (s, None, 1) for s in work
    }
    results: dict[int, list[FileReport]] = {}
    parts: dict[int, dict[int, FileReport]] = {}  # a split shard's reports, file by file
    # Files of shards that killed their workers, tried alone and one at a time, so that a
    # death is the file's own and never takes an innocent file queued beside it.
    suspects: deque[tuple[Shard, int, int]] = deque()
    busy = False
    done = 0
    queue = as_completed(list(pending), loop=client.loop)

    def next_suspect() -> bool:
        if not suspects:
            return False
        one, slot, tries = suspects.popleft()
        again = submit(one, f"file{slot}-{tries}")
        pending[again] = (one, slot, tries)
        queue.add(again)
        return True

    for future in queue:
        shard, slot, tries = pending.pop(future)
        reports = _outcome(future, shard)
        if slot is not None:
            busy = False
        if reports is None and slot is None:
            # The shard kept killing workers: find the file that does.
            parts[shard.index] = {}
            suspects.extend((Shard(shard.index, (one,)), i, 1) for i, one in enumerate(shard.files))
        elif reports is None and slot is not None and tries < FILE_TRIES:
            # Alone, it still died (a worker can also die of a neighbouring shard): again.
            suspects.appendleft((shard, slot, tries + 1))
        else:
            if reports is None:
                reports = [_crashed(display) for _, display in shard.files]
            if slot is None:
                results[shard.index] = reports
            else:
                parts[shard.index][slot] = reports[0]
            done += len(shard.files)
            if progress is not None:
                progress(done, total)
        if not busy:
            busy = next_suspect()
    for index, got in parts.items():
        results[index] = [got[i] for i in sorted(got)]
    missing = [s.index for s in work if s.index not in results]
    if missing:  # pragma: no cover - every future ends in a result or an error above
        raise ScanError(f"the cluster returned no report for {len(missing)} shard(s)")
    return results


def _outcome(future: Future[list[FileReport]], shard: Shard) -> list[FileReport] | None:
    """A shard's reports; ``None`` when it killed its workers; a finding for any other error."""
    from distributed import KilledWorker

    if future.status == "finished":
        reports = future.result()
        if isinstance(reports, list) and len(reports) == len(shard.files):
            return reports
        raise ScanError("a worker returned a malformed result; is atlasguard the same version?")
    exc = future.exception()
    if isinstance(exc, KilledWorker):
        return None
    if future.status == "cancelled" or exc is None:
        raise ScanError(
            "the Dask scheduler cancelled the scan (was it restarted?); run the scan again"
        )
    why = (
        f"the worker could not scan this file: {type(exc).__name__}; "
        "scan it alone with `atlasguard scan` to see why"
    )
    return [_unexamined(display, "unreadable", why) for _, display in shard.files]


def _crashed(display: str) -> FileReport:
    return _unexamined(
        display,
        "scan-crashed",
        "scanning this file ended every Dask worker that tried it, so it was "
        "not examined: quarantine it, then scan it alone with `atlasguard scan`",
    )


def _unexamined(display: str, rule: str, message: str) -> FileReport:
    """The report of a file the cluster could not examine: one high finding, never silence."""
    finding = Finding(rule=rule, severity=Severity.HIGH, message=message, location=Location())
    return FileReport(path=display, format="unknown", sha256="", size=0, findings=(finding,))
