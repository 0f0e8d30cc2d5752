"""Quotas (AML.M0004) on the real Redis at 127.0.0.1:6379: atomic, shared, exact."""

from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
import redis

from atlasguard.runtime._quota_redis import RedisQuotaStore
from atlasguard.runtime.pipeline import Denied, Principal, Request
from atlasguard.runtime.quotas import (
    DAY,
    QuotaBackendError,
    QuotaGuard,
    QuotaPolicy,
    QuotaSettings,
)

REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = pytest.mark.services


def test_exactly_n_admitted_and_cost_weighted(prefix: str) -> None:
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    policy = QuotaPolicy.parse(rate="1/hour", burst=25)
    results = [store.acquire("alice", "digits", policy, 1).admitted for _ in range(40)]
    assert sum(results) == 25
    assert results[:25] == [True] * 25
    policy = QuotaPolicy.parse(rate="1/hour", burst=20)
    results = [store.acquire("bob", "digits", policy, 8).admitted for _ in range(3)]
    assert results == [True, True, False]


def test_rate_refills_on_server_time(prefix: str) -> None:
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    policy = QuotaPolicy.parse(rate="20/second", burst=2)
    assert [store.acquire("a", "m", policy, 1).admitted for _ in range(3)] == [True, True, False]
    refused = store.acquire("a", "m", policy, 1)
    assert refused.reason == "rate"
    assert 0 < refused.retry_after <= 0.05
    time.sleep(0.06)
    assert store.acquire("a", "m", policy, 1).admitted


def test_all_or_nothing_across_counters(prefix: str) -> None:
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    policy = QuotaPolicy.parse(rate="1/hour", burst=10, daily="15/day", lifetime=12)
    assert store.acquire("a", "m", policy, 10).admitted
    for _ in range(3):  # refused by the rate: daily and lifetime untouched
        assert store.acquire("a", "m", policy, 1).reason == "rate"
    client = store.client
    rate_key, daily_key, lifetime_key = store.keys("a", "m")
    assert int(client.hget(daily_key, "used") or 0) == 10
    assert int(client.get(lifetime_key) or 0) == 10
    tat_before = client.get(rate_key)
    # Refused by the lifetime quota: the bucket and the daily counter stay as they were.
    bigger = QuotaPolicy.parse(rate="1/hour", burst=100, daily="15/day", lifetime=12)
    refused = store.acquire("a", "m", bigger, 3)
    assert refused.reason == "lifetime"
    assert client.get(rate_key) == tat_before
    assert int(client.hget(daily_key, "used") or 0) == 10


def test_key_expiry(prefix: str) -> None:
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    policy = QuotaPolicy.parse(rate="10/second", burst=20, daily="100/day", lifetime=1000)
    assert store.acquire("a:b{c}", "m", policy, 5).admitted
    rate_key, daily_key, lifetime_key = store.keys("a:b{c}", "m")
    assert rate_key.startswith(f"{{{prefix}:a%3Ab%7Bc%7D:m}}")  # one hash tag per pair
    client = store.client
    assert 0 < client.pttl(rate_key) <= 0.5 * 1000 + 1000
    now = int(client.time()[0])
    midnight = (now // DAY + 1) * DAY
    assert midnight - now < client.ttl(daily_key) <= midnight - now + 3600
    assert client.ttl(lifetime_key) == -1  # never expires


def test_guard_on_redis_headers(prefix: str) -> None:
    settings = QuotaSettings(rate="10/second", burst=20, daily="", key_prefix=prefix)
    guard = QuotaGuard.from_settings(settings, redis_url=REDIS_URL)
    assert isinstance(guard.store, RedisQuotaStore)
    req = Request(model="m", inputs={"input": np.zeros((20, 2))}, principal=Principal("p"))
    guard.before(req)
    with pytest.raises(Denied) as info:
        guard.before(req)
    assert info.value.reason == "rate"
    assert info.value.retry_after == 2
    assert [w.remaining for w in info.value.limits if w.name == "rate"] == [0]


def test_unreachable_redis_fails_closed() -> None:
    store = RedisQuotaStore.from_url("redis://127.0.0.1:1/0")
    policy = QuotaPolicy.parse(daily="5/day")
    with pytest.raises(QuotaBackendError):
        store.acquire("a", "m", policy, 1)
    guard = QuotaGuard(store=store, resolve=lambda principal, model: policy)
    req = Request(model="m", inputs={"input": np.zeros((1, 2))}, principal=Principal("p"))
    with pytest.raises(Denied) as info:
        guard.before(req)
    assert info.value.reason == "unavailable"


def _race_worker(prefix: str, limit: int, attempts: int, start_at: float) -> int:
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    policy = QuotaPolicy.parse(
        rate="1/day", burst=limit, daily=str(10 * limit), lifetime=10 * limit
    )
    counts = [0, 0]

    def hammer(slot: int) -> None:
        for _ in range(attempts):
            if store.acquire("racer", "digits", policy, 1).admitted:
                counts[slot] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    time.sleep(max(0.0, start_at - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def test_race_four_processes_two_threads_exactly_n(prefix: str) -> None:
    limit, attempts = 60, 40  # 8 clients x 40 attempts = 320 against a limit of 60
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every process connected before the race starts
    with ctx.Pool(4) as pool:
        totals = pool.starmap(_race_worker, [(prefix, limit, attempts, start_at)] * 4)
    assert sum(totals) == limit
    store = RedisQuotaStore.from_url(REDIS_URL, prefix=prefix)
    _, daily_key, lifetime_key = store.keys("racer", "digits")
    # Refused attempts charged nothing: the counters hold exactly the admitted cost.
    assert int(store.client.hget(daily_key, "used") or 0) == limit
    assert int(store.client.get(lifetime_key) or 0) == limit


def test_two_deployments_on_one_redis_never_share_counts(tmp_path: object) -> None:
    """Same name, same principal, same model: separate counts unless they share their state."""
    from pathlib import Path

    from atlasguard.policy import load_policy_text
    from atlasguard.runtime.deployment import Deployment
    from atlasguard.runtime.quotas import QuotaGuard

    root = Path(str(tmp_path))
    text = (
        f'[deployment]\nname = "demo"\nredis_url = "{REDIS_URL}"\n'
        "[controls.access]\nenabled = true\n"
        '[controls.quotas]\nenabled = true\nrate = ""\ndaily = "2/day"\n'
    )
    a = Deployment.open(load_policy_text(text, path=root / "a" / "atlasguard.toml"))
    b = Deployment.open(load_policy_text(text, path=root / "b" / "atlasguard.toml"))
    a2 = Deployment.open(load_policy_text(text, path=root / "a" / "atlasguard.toml"))
    try:
        assert a.quota_prefix != b.quota_prefix and a.quota_prefix == a2.quota_prefix
        guards = [next(g for g in d.guards if isinstance(g, QuotaGuard)) for d in (a, b, a2)]
        req = Request(model="m", inputs={"x": np.zeros((1, 1))}, principal=Principal("demo"))
        guards[0].before(req)
        guards[2].before(req)  # a second worker of deployment A: the same count
        with pytest.raises(Denied):
            guards[0].before(req)
        guards[1].before(req)  # deployment B's demo key still has its whole quota
        guards[1].before(req)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for d in (a, b):
            for k in client.scan_iter(f"{d.quota_prefix}*"):
                client.delete(k)
            d.close()
        a2.close()
