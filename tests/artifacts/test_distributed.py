"""`atlasguard scan --dask`: a mirror scanned on a real Dask cluster gives the local report.

The clusters are real ``distributed.LocalCluster`` objects with worker processes
under nannies; the kill is a real SIGKILL of a worker process while it scans.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from atlasguard.artifacts.distributed import Shard, scan_paths_distributed, scan_shard, shards
from atlasguard.artifacts.findings import FileReport, Severity
from atlasguard.artifacts.formats.base import Limits
from atlasguard.artifacts.scan import iter_files, scan_paths
from atlasguard.errors import UsageError
from tests.corpus import build_corpus

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.timeout(240)


def _cluster(**config: Any) -> Any:
    with dask.config.set(config):
        return distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with _cluster() as c:
        yield c


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scanner corpus, malicious and benign, as a mirror's folder tree."""
    root = tmp_path_factory.mktemp("mirror")
    build_corpus(root / "hub", root / "canary" / "CANARY")
    return root / "hub"


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files that each take a noticeable time to scan: long enough to be killed mid-file."""
    root = tmp_path_factory.mktemp("slow")
    for i in range(6):
        (root / f"big{i}.pkl").write_bytes(pickle.dumps(list(range(1_500_000 + i)), protocol=2))
    return root


def test_the_cluster_report_is_the_local_report(cluster: Any, mirror: Path) -> None:
    local = scan_paths([mirror])
    remote = scan_paths_distributed([mirror], cluster.scheduler_address)
    assert len(remote) == len(local) > 250
    assert remote == local
    assert any(r.fails(Severity.CRITICAL) for r in remote)  # the malicious half is caught


def test_shard_sizes_do_not_change_the_report(cluster: Any, mirror: Path) -> None:
    target = mirror / "malicious"
    local = scan_paths([target])
    for shard_files, shard_bytes in ((1, 1 << 30), (50, 1 << 30), (50, 4096)):
        got = scan_paths_distributed(
            [target], cluster.scheduler_address, shard_files=shard_files, shard_bytes=shard_bytes
        )
        assert got == local


def test_allow_fast_and_limits_reach_the_workers(cluster: Any, tmp_path: Path) -> None:
    (tmp_path / "a.pkl").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({"x": list(range(2000))}))
    for kwargs in (
        {"allow": ["os.system"]},
        {"fast": True},
        {"limits": Limits(max_pickle_opcodes=50)},
    ):
        assert scan_paths_distributed(
            [tmp_path], cluster.scheduler_address, **kwargs
        ) == scan_paths([tmp_path], **kwargs)


def _executing(dask_worker: Any) -> list[str]:
    return [str(ts.key) for ts in dask_worker.state.executing]


def test_a_worker_killed_mid_file_is_rescanned_not_dropped(cluster: Any, slow: Path) -> None:
    local = scan_paths([slow])
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        done: dict[str, list[FileReport]] = {}
        runner = threading.Thread(
            target=lambda: done.update(r=scan_paths_distributed([slow], client, shard_files=1))
        )
        runner.start()
        victim, key = None, None
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline:
            for worker, keys in client.run(_executing).items():
                if keys:
                    victim, key = worker, keys[0]
                    break
            else:
                time.sleep(0.005)
        assert victim is not None, "no worker ever started a file"
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)  # mid-file: the task was executing on it a moment ago
        runner.join(180)
        assert not runner.is_alive()
        assert done["r"] == local
        assert key is not None and key.startswith("atlasguard-scan-")
        # The scheduler's own record: the file was lost with its worker, then scanned again.
        moves = [(t.start, t.finish, t.stimulus_id) for t in cluster.scheduler.story(key)]
        lost = [i for i, m in enumerate(moves) if m[:2] == ("processing", "released")]
        assert lost and "worker-cleanup" in moves[lost[0]][2]
        assert ("processing", "memory") in [m[:2] for m in moves[lost[0] :]]
        client.wait_for_workers(2, timeout=60)  # the nanny brings the worker back


def kill_on_poison(
    shard: Shard, allow: Sequence[str], limits: Limits, fast: bool
) -> list[FileReport]:
    """A stand-in for a file whose scan takes its worker down (as an OOM kill would)."""
    if any(display.endswith("poison.bin") for _, display in shard.files):
        os._exit(1)
    return scan_shard(shard, allow, limits, fast)


def test_a_file_that_kills_every_worker_is_reported_and_its_shard_mates_scanned(
    tmp_path: Path,
) -> None:
    for name in ("a.pkl", "poison.bin", "z.pkl"):
        (tmp_path / name).write_bytes(pickle.dumps({"name": name}))
    local = {r.path: r for r in scan_paths([tmp_path])}
    # allowed-failures 0: the first death of a worker on a task gives up on it
    with _cluster(**{"distributed.scheduler.allowed-failures": 0}) as small:
        reports = scan_paths_distributed(
            [tmp_path], small.scheduler_address, task=kill_on_poison, shard_files=10
        )
    assert [Path(r.path).name for r in reports] == ["a.pkl", "poison.bin", "z.pkl"]
    crashed = reports[1]
    assert [f.rule for f in crashed.findings] == ["scan-crashed"]
    assert crashed.fails(Severity.HIGH)
    assert "quarantine" in crashed.findings[0].message
    assert reports[0] == local[reports[0].path] and reports[2] == local[reports[2].path]


def test_a_task_error_is_a_finding_not_a_lost_file(cluster: Any, tmp_path: Path) -> None:
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(1))
    (reported,) = scan_paths_distributed([tmp_path], cluster.scheduler_address, task=raise_always)
    assert [f.rule for f in reported.findings] == ["unreadable"]
    assert reported.fails(Severity.HIGH)
    assert "RuntimeError" in reported.findings[0].message


def raise_always(
    shard: Shard, allow: Sequence[str], limits: Limits, fast: bool
) -> list[FileReport]:
    raise RuntimeError("scanner bug")


def test_shards_keep_walk_order_and_split_by_count_and_size(tmp_path: Path) -> None:
    for name, size in (("a", 10), ("b", 10), ("c", 100), ("d", 10)):
        (tmp_path / name).write_bytes(b"x" * size)
    files = list(iter_files([tmp_path]))
    by_bytes = shards(files, shard_bytes=50, shard_files=10)
    assert [[Path(p).name for p, _ in s.files] for s in by_bytes] == [["a", "b"], ["c"], ["d"]]
    by_count = shards(files, shard_bytes=1 << 20, shard_files=3)
    assert [len(s.files) for s in by_count] == [3, 1]
    assert all(Path(p).is_absolute() for s in by_count for p, _ in s.files)
    with pytest.raises(UsageError):
        shards(files, shard_files=0)


def test_an_unreachable_scheduler_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(1))
    with pytest.raises(UsageError, match="cannot reach the Dask scheduler"):
        scan_paths_distributed([tmp_path], "tcp://127.0.0.1:9", connect_timeout=1)


def test_cli_scan_dask(cluster: Any, mirror: Path, cli: Any) -> None:
    local = cli("scan", "--format", "json", str(mirror))
    remote = cli("scan", "--format", "json", "--dask", cluster.scheduler_address, str(mirror))
    assert remote.exit_code == local.exit_code == 1
    assert json.loads(remote.stdout) == json.loads(local.stdout)
