"""The query monitor's state in the real Redis at 127.0.0.1:6379, and groups of principals.

Two monitors on one Redis stand for two gateway workers (or replicas): an attack
whose queries alternate between them is seen whole. The detectors are the same
as in-process (tests/runtime/test_monitor.py); only where they remember differs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.errors import ConfigurationError
from atlasguard.models.attacks import jacobian_extraction, random_extraction, simba
from atlasguard.models.data import digits_splits
from atlasguard.policy import load_policy_text
from atlasguard.runtime._monitor_redis import RedisMonitorStates
from atlasguard.runtime.monitor import (
    DistanceNormality,
    OffDistribution,
    QueryFingerprints,
    QueryMonitor,
    Watch,
)
from atlasguard.runtime.pipeline import Denied, Pipeline, Principal, Request
from tests.conftest import examples

REDIS_URL = "redis://127.0.0.1:6379/0"

pytest.importorskip("sklearn")
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    d = digits_splits()
    model = LogisticRegression(max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit)
    watch = Watch(
        QueryFingerprints(value_range=(0.0, 1.0)).fit(d.x_fit),
        DistanceNormality().fit(d.x_fit),
        OffDistribution().fit(d.x_fit),
    )
    return {"d": d, "model": model, "watch": watch}


def _worker(digits: dict[str, Any], prefix: str | None, **kwargs: Any) -> QueryMonitor:
    shared = None
    if prefix is not None:
        shared = RedisMonitorStates.from_url(REDIS_URL, prefix)
        shared.distances = {"digits": digits["watch"].distances}
    return QueryMonitor(watches={"digits": digits["watch"]}, shared=shared, **kwargs)


def _client(monitors: list[QueryMonitor], model: Any, who: Principal) -> Any:
    """A client whose queries the load balancer sends to each worker in turn."""
    pipes = [
        Pipeline(
            guards=(m,),
            predict=lambda i: {"probabilities": model.predict_proba(i["input"]).astype(np.float32)},
        )
        for m in monitors
    ]
    turn = [0]

    def scores(x: np.ndarray) -> np.ndarray:
        pipe = pipes[turn[0] % len(pipes)]
        turn[0] += 1
        request = Request(
            model="digits", inputs={"input": np.asarray(x, np.float32)}, principal=who
        )
        return np.asarray(pipe(request).outputs["probabilities"], float)

    return scores


pytestmark = pytest.mark.services


def test_two_workers_sharing_redis_see_simba_whole_and_alarm_once(
    digits: dict[str, Any], prefix: str
) -> None:
    alarms: list[tuple[str, str, str]] = []
    workers = [_worker(digits, prefix, on_alarm=lambda *a: alarms.append(a)) for _ in range(2)]
    d = digits["d"]
    x, y = d.x_eval[3], int(d.y_eval[3])
    result = simba(_client(workers, digits["model"], Principal("mallory")), x, label=y)
    assert not result.success and result.queries <= 5
    assert [(p, m) for p, m, _ in alarms] == [("mallory", "digits")]  # one alarm, not two
    for worker in workers:  # either worker refuses her now
        with pytest.raises(Denied, match="attack in progress"):
            _client([worker], digits["model"], Principal("mallory"))(x[None])
    _client(workers, digits["model"], Principal("alice"))(x[None])


def test_redis_state_stops_extraction_and_passes_a_benign_client(
    digits: dict[str, Any], prefix: str
) -> None:
    d, model = digits["d"], digits["model"]
    workers = [_worker(digits, prefix) for _ in range(2)]
    jacobian = jacobian_extraction(
        _client(workers, model, Principal("jay")), d.x_eval[:10], budget=600
    )
    assert jacobian.queries < 100 and "attack in progress" in jacobian.stopped
    noise = random_extraction(_client(workers, model, Principal("rand")), n_features=64, budget=300)
    assert noise.queries <= 25
    benign = _client(workers, model, Principal("alice"))
    rng = np.random.default_rng(7)
    pool = np.concatenate([d.x_tune, d.x_eval])
    for row in pool[rng.choice(len(pool), 600, replace=True)]:  # repeats included
        benign(row[None])


def test_a_lift_clears_the_shared_state(digits: dict[str, Any], prefix: str) -> None:
    now = [1000.0]
    worker = _worker(digits, prefix, suspend_seconds=60.0, clock=lambda: now[0])
    client = _client([worker], digits["model"], Principal("mallory"))
    x = digits["d"].x_eval[0]
    rng = np.random.default_rng(3)
    refused = []
    for _ in range(10):
        try:
            client(np.clip(x + rng.normal(0, 0.02, 64), 0, 1)[None])
        except Denied as denied:
            refused.append(denied.reason)
    assert refused and set(refused) == {"suspended"}
    state = worker.shared.state(("mallory", "digits"))
    assert state.alarm() is not None
    now[0] += 61.0  # the suspension ends: the next query starts afresh, for every worker
    client(digits["d"].x_eval[1][None])
    assert state.alarm() is None


def test_the_shared_tables_stay_bounded(digits: dict[str, Any], prefix: str) -> None:
    shared = RedisMonitorStates.from_url(REDIS_URL, prefix, capacity=50)
    monitor = QueryMonitor(watches={"digits": digits["watch"]}, shared=shared, action="log")
    client = _client([monitor], digits["model"], Principal("heavy"))
    rng = np.random.default_rng(0)
    for _ in range(220):
        client(rng.random((1, 64)))
    r = redis.Redis.from_url(REDIS_URL)
    base = RedisMonitorStates.keyspace(prefix, ("heavy", "digits"))
    fields = r.hlen(f"{base}:t0") + r.hlen(f"{base}:t1")
    assert fields <= 2 * 50 * 48  # two generations of at most `capacity` queries
    assert r.zcard(f"{base}:exact") <= 50
    assert r.ttl(f"{base}:seen") > 0  # everything expires when the pair goes quiet


def test_keys_spread_over_a_group_add_up(digits: dict[str, Any]) -> None:
    # Jacobian extraction on a new principal every 15 queries, all in group:acme
    d, model = digits["d"], digits["model"]
    alarms: list[tuple[str, str, str]] = []
    monitor = _worker(digits, None, on_alarm=lambda *a: alarms.append(a))
    count = [0]

    def rotating(x: np.ndarray) -> np.ndarray:
        who = Principal(f"acme-{count[0] // 15}", groups=("group:acme",))
        count[0] += 1
        return _client([monitor], model, who)(x)  # type: ignore[no-any-return]

    result = jacobian_extraction(rotating, d.x_eval[:10], budget=600)
    assert "group:acme" in result.stopped and result.queries < 150
    assert ("group:acme", "digits") in [(p, m) for p, m, _ in alarms]
    # without group watching, each principal stays under the alarm
    alone = _worker(digits, None, groups=False)
    count[0] = 0

    def rotating_alone(x: np.ndarray) -> np.ndarray:
        who = Principal(f"acme-{count[0] // 15}", groups=("group:acme",))
        count[0] += 1
        return _client([alone], model, who)(x)  # type: ignore[no-any-return]

    assert not jacobian_extraction(rotating_alone, d.x_eval[:10], budget=600).stopped


def test_a_group_of_benign_clients_is_not_stopped(digits: dict[str, Any]) -> None:
    d, model = digits["d"], digits["model"]
    monitor = _worker(digits, None)
    rng = np.random.default_rng(11)
    pool = np.concatenate([d.x_tune, d.x_eval])
    clients = [
        _client([monitor], model, Principal(f"user{i}", groups=("group:staff",))) for i in range(8)
    ]
    for _ in range(250):  # 2,000 real digits from 8 members, interleaved
        for client in clients:
            client(pool[rng.integers(len(pool))][None])


def test_redis_state_needs_a_redis_url(tmp_path: Path) -> None:
    text = (
        '[controls.monitor]\nenabled = true\nstate = "redis"\n'
        '[models.digits]\ninputs = [{ name = "input", datatype = "FP32", shape = [-1, 64], '
        "min = 0.0, max = 1.0 }]\n"
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    with pytest.raises(ConfigurationError, match="needs \\[deployment\\] redis_url"):
        QueryMonitor.from_policy(policy)


def test_an_unreachable_redis_refuses_the_request_fail_closed(digits: dict[str, Any]) -> None:
    shared = RedisMonitorStates.from_url("redis://127.0.0.1:1/0", "nowhere")  # nothing listens
    monitor = QueryMonitor(watches={"digits": digits["watch"]}, shared=shared, blocking=True)
    client = _client([monitor], digits["model"], Principal("alice"))
    with pytest.raises(Denied) as refused:
        client(digits["d"].x_eval[:1])
    assert refused.value.reason == "unavailable"
    assert "127.0.0.1" not in str(refused.value)


def test_the_policy_builds_a_shared_blocking_monitor_with_a_redis_url(
    tmp_path: Path, prefix: str
) -> None:
    text = (
        f'[deployment]\nredis_url = "{REDIS_URL}"\nname = "{prefix}"\n'
        "[controls.monitor]\nenabled = true\n"
        '[models.digits]\ninputs = [{ name = "input", datatype = "FP32", shape = [-1, 64], '
        "min = 0.0, max = 1.0 }]\n"
    )
    policy = load_policy_text(text, path=tmp_path / "atlasguard.toml")
    monitor = QueryMonitor.from_policy(policy)
    try:
        assert monitor.shared is not None and monitor.blocking
        assert monitor.shared.prefix.startswith(f"atlasguard:monitor:{prefix}:")
    finally:
        monitor.close()


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 9), st.booleans(), st.booleans()),
        min_size=20,
        max_size=120,
    )
)
@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_the_redis_state_counts_what_the_memory_state_counts(
    digits: dict[str, Any], prefix: str, stream: list[tuple[int, int, bool, bool]]
) -> None:
    """A differential: the Lua script and the in-process memory, fed one stream of queries
    (base digits, small variations of them, exact repeats, flags), count the same."""
    from atlasguard.runtime.monitor import PrincipalState, Seen, _digest, _FingerprintMemory

    watch = digits["watch"]
    fp = watch.fingerprints
    base = digits["d"].x_eval[:12]
    shared = RedisMonitorStates.from_url(REDIS_URL, prefix, capacity=12)  # wraps often
    try:
        remote = shared.state((f"p{uuid.uuid4().hex}", "digits"))
        local = PrincipalState(_FingerprintMemory(capacity=12), None)
        for digit, variant, outside, boundary in stream:
            # variants of a few digits at growing distances: shared hashes cross the
            # near-copy threshold both ways, and hashes recur in many queries
            noise = np.random.default_rng(digit * 16 + variant).normal(0, 0.006 * variant, 64)
            row = np.clip(base[digit] + noise, 0, 1)
            seen = Seen(
                row, _digest(row), fp.fingerprint(row), fp.threshold_, 0, outside, boundary, 7, 6
            )
            a = local.observe(seen, window=9, off_window=5)
            b = remote.observe(seen, window=9, off_window=5)
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert a == replace(
                    b, radius=pytest.approx(a.radius) if a.radius < 1e9 else b.radius
                )
    finally:
        shared.close()


def test_a_lift_reaches_every_worker_and_clears_the_shared_state_once_seen(
    digits: dict[str, Any], prefix: str, tmp_path: Path
) -> None:
    from atlasguard.db.engine import connect
    from atlasguard.db.migrate import migrate
    from atlasguard.runtime.suspensions import SuspensionStore

    engine = connect(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    store = SuspensionStore(engine)
    a, b = (_worker(digits, prefix, store=store, refresh_seconds=0.0) for _ in range(2))
    state = b.shared.state(("mallory", "digits"))
    # worker B has not read the store since A's alarm: it must leave that alarm alone
    assert state.raise_alarm(time.time(), "3 near-copies")
    assert b.suspended(Principal("mallory"), "digits") is None
    assert state.alarm() is not None
    # A's suspension reaches the store; both workers refuse
    store.suspend("mallory", "digits", since=time.time(), until=time.time() + 60, why="copies")
    for worker in (a, b):
        assert worker.suspended(Principal("mallory"), "digits") == "copies"
    store.lift("mallory", "digits")  # an administrator lifts it: the next read forgets
    assert b.suspended(Principal("mallory"), "digits") is None
    assert state.alarm() is None
    engine.dispose()
