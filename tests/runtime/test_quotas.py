"""Quotas (AML.M0004) with the in-process backend: admission, cost, refill, headers."""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from atlasguard.errors import UsageError
from atlasguard.gateway.http import ratelimit_headers
from atlasguard.policy import render_default_policy
from atlasguard.runtime._quota_memory import MemoryQuotaStore
from atlasguard.runtime.pipeline import Denied, Pipeline, Principal, Request
from atlasguard.runtime.quotas import (
    QuotaGuard,
    QuotaPolicy,
    QuotaSettings,
    parse_daily,
    parse_rate,
    settings_policy,
)
from atlasguard.runtime.settings import CONTROLS, DAY

# A UTC midnight, so tests can cross a day boundary on purpose.
MIDNIGHT = 20_000 * DAY


class FakeClock:
    def __init__(self, start: float = MIDNIGHT + 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(rows: int = 1, principal: str | None = "alice", model: str = "digits") -> Request:
    who = Principal(principal) if principal is not None else None
    return Request(model=model, inputs={"input": np.zeros((rows, 4), np.float32)}, principal=who)


def guard_for(policy: QuotaPolicy | None, clock: FakeClock | None = None) -> QuotaGuard:
    store = MemoryQuotaStore(clock=clock or FakeClock())
    return QuotaGuard(store=store, resolve=lambda principal, model: policy)


def admitted(guard: QuotaGuard, attempts: int, rows: int = 1) -> int:
    count = 0
    for _ in range(attempts):
        try:
            guard.before(request(rows))
        except Denied:
            continue
        count += 1
    return count


# -- specs ------------------------------------------------------------------------


def test_parse_specs() -> None:
    assert parse_rate("10/second") == (10, 1.0)
    assert parse_rate("100 per minute") == (100, 60.0)
    assert parse_daily("1000/day") == 1000
    assert parse_daily("250") == 250
    policy = QuotaPolicy.parse(rate="10/second", burst=20, daily="1000/day", lifetime=5000)
    assert policy == QuotaPolicy(rate=(10, 1.0), burst=20, daily=1000, lifetime=5000)
    assert QuotaPolicy.parse(rate="5/second").capacity == 5  # burst defaults to the amount


@pytest.mark.parametrize("bad", ["ten per second", "10/fortnight", "", "0/second"])
def test_bad_rate_is_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_rate(bad)


def test_daily_must_be_per_day() -> None:
    with pytest.raises(UsageError, match="per day"):
        parse_daily("1000/hour")
    with pytest.raises(UsageError):
        QuotaPolicy(daily=0)


# -- admission --------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "attempts"), [(1, 5), (7, 20), (20, 21), (100, 250)])
def test_exactly_n_admitted(limit: int, attempts: int) -> None:
    guard = guard_for(QuotaPolicy.parse(rate=f"{limit}/hour", burst=limit))
    assert admitted(guard, attempts) == limit


def test_daily_limit_exact() -> None:
    guard = guard_for(QuotaPolicy.parse(daily="30/day"))
    assert admitted(guard, 50) == 30


def test_cost_is_weighted_by_rows() -> None:
    guard = guard_for(QuotaPolicy.parse(rate="1/hour", burst=20))
    assert admitted(guard, 3, rows=8) == 2  # 16 fits in 20, 24 does not
    assert admitted(guard, 5, rows=4) == 1  # the 4 rows left
    assert admitted(guard, 1, rows=1) == 0


def test_cost_over_burst_or_daily_is_never_admissible() -> None:
    guard = guard_for(QuotaPolicy.parse(rate="10/second", burst=20, daily="100/day"))
    with pytest.raises(Denied) as info:
        guard.before(request(21))
    assert info.value.reason == "over-limit"
    assert "burst of 20" in str(info.value)
    guard = guard_for(QuotaPolicy.parse(daily="100/day"))
    with pytest.raises(Denied, match="daily quota of 100") as info:
        guard.before(request(101))
    assert info.value.reason == "over-limit"


def test_burst_then_refill() -> None:
    clock = FakeClock()
    guard = guard_for(QuotaPolicy.parse(rate="10/second", burst=20), clock)
    assert admitted(guard, 25) == 20
    with pytest.raises(Denied) as info:
        guard.before(request())
    assert info.value.retry_after == 1  # 0.1 s, rounded up
    clock.advance(0.1)
    assert admitted(guard, 3) == 1
    clock.advance(1.0)
    assert admitted(guard, 15) == 10
    clock.advance(60.0)  # refills up to the burst, never beyond
    assert admitted(guard, 50) == 20


def test_refusal_by_one_limit_consumes_no_other() -> None:
    clock = FakeClock()
    store = MemoryQuotaStore(clock=clock)
    policy = QuotaPolicy.parse(rate="10/second", burst=10, daily="15/day", lifetime=100)
    assert store.acquire("a", "m", policy, 10).admitted
    # Refused by the rate: daily and lifetime stay at 10 used.
    for _ in range(5):
        refused = store.acquire("a", "m", policy, 5)
        assert (refused.admitted, refused.reason) == (False, "rate")
    clock.advance(1.0)
    # Refused by the daily quota (10 + 6 > 15): the bucket stays full.
    refused = store.acquire("a", "m", policy, 6)
    assert (refused.admitted, refused.reason) == (False, "daily")
    windows = {w.name: w for w in refused.windows}
    assert windows["rate"].remaining == 10
    assert windows["daily"].remaining == 5
    assert windows["lifetime"].remaining == 90
    ok = store.acquire("a", "m", policy, 5)
    assert ok.admitted
    assert {w.name: w.remaining for w in ok.windows} == {"rate": 5, "daily": 0, "lifetime": 85}


def test_daily_resets_at_utc_midnight_lifetime_never() -> None:
    clock = FakeClock(MIDNIGHT + DAY - 10.0)
    store = MemoryQuotaStore(clock=clock)
    policy = QuotaPolicy.parse(daily="5/day", lifetime=8)
    assert store.acquire("a", "m", policy, 5).admitted
    refused = store.acquire("a", "m", policy, 1)
    assert refused.reason == "daily"
    assert refused.retry_after == pytest.approx(10.0)
    clock.advance(10.0)
    assert store.acquire("a", "m", policy, 3).admitted
    refused = store.acquire("a", "m", policy, 1)
    assert refused.reason == "lifetime"
    clock.advance(30 * DAY)
    assert store.acquire("a", "m", policy, 1).reason == "lifetime"


def test_principals_and_models_are_counted_apart() -> None:
    store = MemoryQuotaStore(clock=FakeClock())
    policy = QuotaPolicy.parse(daily="2/day")
    for who, model in [("a", "m"), ("b", "m"), ("a", "n")]:
        assert store.acquire(who, model, policy, 2).admitted
        assert not store.acquire(who, model, policy, 1).admitted


def test_memory_store_is_thread_safe() -> None:
    store = MemoryQuotaStore()
    policy = QuotaPolicy.parse(rate="1/day", burst=500)
    results: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [store.acquire("a", "m", policy, 1).admitted for _ in range(200)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1600
    assert sum(results) == 500


# -- the guard and its headers ----------------------------------------------------


def test_rate_refusal_headers_and_message() -> None:
    guard = guard_for(QuotaPolicy.parse(rate="10/second", burst=20, daily="1000/day"))
    guard.before(request(20))
    with pytest.raises(Denied) as info:
        guard.before(request(5))
    denied = info.value
    assert denied.reason == "rate"
    assert "rate limit" in str(denied)
    assert denied.retry_after is not None and denied.retry_after >= 1
    # The bucket is the limit closest to exhaustion: 20, 0 left, full again in 2 s.
    headers = ratelimit_headers(denied.limits)
    assert headers["RateLimit-Limit"] == "20"
    assert headers["RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Reset"] == "2"
    assert headers["RateLimit-Policy"] == "20;w=2, 1000;w=86400"


def test_daily_and_lifetime_refusals_say_quota() -> None:
    guard = guard_for(QuotaPolicy.parse(daily="3/day"))
    guard.before(request(3))
    with pytest.raises(Denied, match="daily quota") as info:
        guard.before(request())
    assert info.value.reason == "quota"
    assert info.value.retry_after is not None and info.value.retry_after > 0
    assert ratelimit_headers(info.value.limits)["RateLimit-Remaining"] == "0"
    guard = guard_for(QuotaPolicy.parse(lifetime=3))
    guard.before(request(3))
    with pytest.raises(Denied, match="lifetime quota") as info:
        guard.before(request())
    assert info.value.reason == "quota"
    assert info.value.retry_after is None  # a lifetime quota never resets


def test_admitted_responses_carry_the_limits_left() -> None:
    guard = guard_for(QuotaPolicy.parse(rate="10/second", burst=20, daily="1000/day"))
    pipe = Pipeline(guards=(guard,), predict=lambda inputs: {"scores": inputs["input"]})
    headers = ratelimit_headers(pipe(request(5)).limits)
    assert headers["RateLimit-Limit"] == "20"
    assert headers["RateLimit-Remaining"] == "15"
    assert headers["RateLimit-Reset"] == "1"  # 0.5 s to refill, rounded up
    assert ratelimit_headers(()) == {}


def test_unlimited_and_anonymous() -> None:
    guard = guard_for(None)
    assert admitted(guard, 100, rows=1000) == 100
    seen: list[str] = []

    def resolve(principal: Principal, model: str) -> QuotaPolicy:
        seen.append(principal.name)
        return QuotaPolicy.parse(daily="1/day")

    guard = QuotaGuard(store=MemoryQuotaStore(), resolve=resolve)
    guard.before(request(principal=None))
    with pytest.raises(Denied):
        guard.before(request(principal=None))
    assert seen == ["anonymous", "anonymous"]


# -- settings and the control -----------------------------------------------------


def test_settings_and_factory() -> None:
    settings = QuotaSettings(enabled=True)
    assert settings_policy(settings) == QuotaPolicy(rate=(10, 1.0), burst=20, daily=10000)
    assert settings_policy(QuotaSettings(rate="", daily="")) is None
    with pytest.raises(ValidationError):
        QuotaSettings(rate="fast")
    with pytest.raises(ValidationError):
        QuotaSettings(daily="10/hour")
    with pytest.raises(ValidationError):
        QuotaSettings(burst=-1)
    vip = QuotaPolicy.parse(daily="1000/day")
    guard = QuotaGuard.from_settings(
        QuotaSettings(rate="", daily="2/day"),
        overrides=lambda principal, model: vip if principal.name == "vip" else None,
    )
    assert isinstance(guard.store, MemoryQuotaStore)
    for _ in range(5):
        guard.before(request(principal="vip"))
    guard.before(request(2, principal="bob"))
    with pytest.raises(Denied):
        guard.before(request(principal="bob"))


def test_control_declaration_renders_in_the_default_policy() -> None:
    control = next(c for c in CONTROLS if c.key == "quotas")
    assert control.mitigates == frozenset({"AML.M0004"})
    assert QuotaGuard.mitigates == control.mitigates
    text = render_default_policy((control,))
    assert '[controls.quotas]\nenabled = true\nrate = "10/second"\nburst = 20' in text


# -- property: the GCRA backend against a plain token bucket -----------------------


class ReferenceBucket:
    """A fractional token bucket with daily and lifetime counters, in exact arithmetic."""

    def __init__(self, policy: QuotaPolicy, now_ms: int) -> None:
        self.policy = policy
        assert policy.rate is not None
        self.per_ms = Fraction(policy.rate[0]) / Fraction(int(policy.rate[1] * 1000))
        self.tokens = Fraction(policy.capacity)
        self.last = now_ms
        self.day = now_ms // (DAY * 1000)
        self.today = 0
        self.total = 0

    def acquire(self, now_ms: int, cost: int) -> bool:
        self.tokens = min(
            Fraction(self.policy.capacity), self.tokens + (now_ms - self.last) * self.per_ms
        )
        self.last = now_ms
        if now_ms // (DAY * 1000) != self.day:
            self.day, self.today = now_ms // (DAY * 1000), 0
        assert self.policy.daily is not None and self.policy.lifetime is not None
        if self.total + cost > self.policy.lifetime or self.today + cost > self.policy.daily:
            return False
        if self.tokens < cost:
            return False
        self.tokens -= cost
        self.today += cost
        self.total += cost
        return True


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from(["10/second", "3/second", "7/minute", "1/second"]),
    burst=st.integers(1, 12),
    daily=st.integers(1, 60),
    lifetime=st.integers(1, 120),
    steps=st.lists(
        st.tuples(
            # Short advances land near refill boundaries, long ones refill and cross midnight.
            st.one_of(st.sampled_from([0, 1, 99, 100, 101, 333, 334]), st.integers(0, 1500)),
            st.one_of(st.integers(1, 3), st.integers(1, 12)),
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_memory_backend_matches_reference(
    rate: str, burst: int, daily: int, lifetime: int, steps: list[tuple[int, int]]
) -> None:
    policy = QuotaPolicy.parse(rate=rate, burst=burst, daily=str(daily), lifetime=lifetime)
    start_ms = (MIDNIGHT + DAY) * 1000 - 20_000  # crosses a UTC midnight after 20 s
    now_ms = start_ms
    clock = FakeClock(now_ms / 1000)
    store = MemoryQuotaStore(clock=clock)
    reference = ReferenceBucket(policy, now_ms)
    for advance_ms, cost in steps:
        now_ms += advance_ms
        clock.now = now_ms / 1000
        decision = store.acquire("p", "m", policy, cost)
        assert decision.admitted == reference.acquire(now_ms, cost), (now_ms, cost)
        for window in decision.windows:
            assert 0 <= window.remaining <= window.limit
        if not decision.admitted:
            assert decision.retry_after >= 0


def test_policy_file_table_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import atlasguard.policy as policy_module
    from atlasguard.errors import PolicyError

    monkeypatch.setattr(policy_module, "control_by_key", lambda: {c.key: c for c in CONTROLS})
    text = '[controls.quotas]\nenabled = true\nrate = "5/second"\nburst = 8\ndaily = ""\n'
    loaded = policy_module.load_policy_text(text).settings("quotas")
    assert isinstance(loaded, QuotaSettings)
    assert settings_policy(loaded) == QuotaPolicy(rate=(5, 1.0), burst=8)
    with pytest.raises(PolicyError, match=r"controls\.quotas\.rate"):
        policy_module.load_policy_text('[controls.quotas]\nrate = "5/fortnight"\n')


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["/", " / ", " per ", "per"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=100)),
    st.sampled_from(["second", "minute", "hour", "day", "month", "year", "fortnight", "sec"]),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=300)
def test_the_rate_parser_reads_what_the_limits_library_reads(
    amount: int, sep: str, multiple: int | None, unit: str, plural: bool, upper: bool
) -> None:
    """Our parser (so reading a policy needs no `limits` import) agrees with `limits`."""
    import limits

    text = f"{amount}{sep}{'' if multiple is None else f'{multiple} '}{unit}{'s' if plural else ''}"
    text = text.upper() if upper else text
    try:
        theirs: tuple[int, float] | None = None
        item = limits.parse(text)
        theirs = (int(item.amount), float(item.get_expiry()))
    except ValueError:
        theirs = None
    try:
        ours: tuple[int, float] | None = parse_rate(text)
    except UsageError:
        ours = None
    if theirs is not None and (theirs[0] <= 0 or theirs[1] <= 0):
        theirs = None  # limits accepts "0/second"; a quota that admits nothing is refused
    assert ours == theirs, text


def test_a_zero_period_is_refused_where_limits_reads_one() -> None:
    with pytest.raises(UsageError):
        parse_rate("10/0 seconds")  # limits.parse reads 10 per 1 second: a surprise
