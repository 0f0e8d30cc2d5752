"""Query quotas per principal and model (AML.M0004 Restrict Number of ML Model Queries).

Each (principal, model) pair has up to three limits, all charged by the cost of a
request (its number of rows by default, so one large batch cannot carry what many
small requests may not):

* a **rate with burst**, a GCRA token bucket: ``"10/second"`` with ``burst=20``
  admits 20 rows at once, then one row every 0.1 s;
* a **daily total** that resets at 00:00 UTC;
* a **lifetime total** that never resets.

Admission is all-or-nothing: a request refused by one limit consumes none of the
others. The counters live in a :class:`QuotaStore`: in process memory by default
(:class:`~atlasguard.runtime._quota_memory.MemoryQuotaStore`) or in Redis, shared
by every worker and replica, checked and updated by one atomic script
(:class:`~atlasguard.runtime._quota_redis.RedisQuotaStore`).

A refused request raises :class:`~atlasguard.runtime.pipeline.Denied` with reason
``rate`` or ``quota`` and ``retry_after``; refused and admitted requests alike
carry the state of every limit (:class:`~atlasguard.runtime.pipeline.Limit`),
which the gateway sends as the ``RateLimit-*`` headers of
draft-ietf-httpapi-ratelimit-headers.

>>> import numpy as np
>>> from atlasguard.runtime.pipeline import Principal, Request
>>> from atlasguard.runtime.quotas import MemoryQuotaStore, QuotaGuard, QuotaPolicy
>>> policy = QuotaPolicy.parse(rate="10/second", burst=20, daily="1000/day")
>>> guard = QuotaGuard(store=MemoryQuotaStore(), resolve=lambda principal, model: policy)
>>> req = Request(model="digits", inputs={"input": np.zeros((15, 64), np.float32)},
...               principal=Principal("alice"))
>>> _ = guard.before(req)      # 15 rows of a burst of 20
>>> guard.before(req)          # 15 more do not fit
Traceback (most recent call last):
...
atlasguard.runtime.pipeline.Denied: rate limit exceeded for 'digits': slow down; retry after 1 s
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from atlasguard.errors import ConfigurationError, UsageError
from atlasguard.runtime.pipeline import Denied, Limit, Principal, Request, Response
from atlasguard.runtime.settings import DAY, QuotaSettings, parse_daily, parse_rate

if TYPE_CHECKING:
    from atlasguard.runtime._quota_memory import MemoryQuotaStore
    from atlasguard.runtime._quota_redis import RedisQuotaStore

__all__ = [
    "MemoryQuotaStore",
    "QuotaBackendError",
    "QuotaDecision",
    "QuotaGuard",
    "QuotaPolicy",
    "QuotaSettings",
    "QuotaStore",
    "RedisQuotaStore",
    "Resolver",
    "decide",
    "parse_daily",
    "parse_rate",
    "settings_policy",
]

ANONYMOUS = Principal("anonymous")


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """The limits of one (principal, model): ``None`` means no such limit.

    ``rate`` is ``(amount, period_seconds)``; ``burst`` is the bucket size in cost
    units (defaults to the rate's amount).
    """

    rate: tuple[int, float] | None = None
    burst: int | None = None
    daily: int | None = None
    lifetime: int | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and (self.rate[0] <= 0 or self.rate[1] <= 0):
            raise UsageError(f"invalid rate {self.rate!r}")
        for name in ("burst", "daily", "lifetime"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be positive, got {value}")

    @classmethod
    def parse(
        cls, *, rate: str = "", burst: int = 0, daily: str | int = "", lifetime: int = 0
    ) -> QuotaPolicy:
        """Build a policy from policy-file strings; ``""`` or ``0`` means no limit."""
        parsed = parse_rate(rate) if rate else None
        return cls(
            rate=parsed,
            burst=(burst or parsed[0]) if parsed else None,
            daily=parse_daily(daily) if daily else None,
            lifetime=lifetime or None,
        )

    @property
    def interval_us(self) -> float:
        """Microseconds one cost unit takes to refill (0 without a rate)."""
        if self.rate is None:
            return 0.0
        return self.rate[1] * 1e6 / self.rate[0]

    @property
    def capacity(self) -> int:
        """The bucket size: what can ever be admitted at once by the rate limit."""
        if self.rate is None:
            return 0
        return self.burst or self.rate[0]

    def impossible(self, cost: int) -> str | None:
        """Why a request of ``cost`` could never be admitted, or ``None``."""
        if self.rate is not None and cost > self.capacity:
            return f"a request of cost {cost} exceeds the burst of {self.capacity}"
        if self.daily is not None and cost > self.daily:
            return f"a request of cost {cost} exceeds the daily quota of {self.daily}"
        if self.lifetime is not None and cost > self.lifetime:
            return f"a request of cost {cost} exceeds the lifetime quota of {self.lifetime}"
        return None


Resolver = Callable[[Principal, str], QuotaPolicy | None]


class QuotaBackendError(ConfigurationError):
    """The quota store could not be reached or answered wrongly.

    The guard refuses requests meanwhile (503): quotas fail closed.
    """


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """The outcome of one admission: ``reason`` names the limit that refused it."""

    admitted: bool
    reason: Literal["ok", "rate", "daily", "lifetime"]
    retry_after: float
    windows: tuple[Limit, ...]


@runtime_checkable
class QuotaStore(Protocol):
    """Where the counters live. ``acquire`` checks and charges every limit atomically.

    A store that cannot answer raises :class:`QuotaBackendError`, never admits.
    ``shared`` is true for a store other processes see too (over the network).
    """

    shared: bool

    def acquire(self, principal: str, model: str, policy: QuotaPolicy, cost: int) -> QuotaDecision:
        """Admit ``cost`` units against all limits of ``policy`` or none of them."""
        ...


def decide(
    *,
    now_us: float,
    tat_us: float | None,
    used_today: int,
    used_total: int,
    policy: QuotaPolicy,
    cost: int,
) -> tuple[QuotaDecision, float | None]:
    """The admission rule every backend implements (the Redis script mirrors it).

    Returns the decision and the new theoretical arrival time (GCRA) to store when
    admitted. Time is in microseconds; ``used_today`` must already be zero when the
    stored day is not today.
    """
    interval = policy.interval_us
    capacity = policy.capacity
    # A microsecond of slack absorbs float rounding of non-integral intervals (3/second).
    eps = 1.0
    reason: Literal["ok", "rate", "daily", "lifetime"] = "ok"
    retry = 0.0
    tat = max(tat_us if tat_us is not None else now_us, now_us)
    new_tat = tat + cost * interval
    if policy.lifetime is not None and used_total + cost > policy.lifetime:
        reason = "lifetime"
    elif policy.daily is not None and used_today + cost > policy.daily:
        reason, retry = "daily", _seconds_to_midnight(now_us) * 1e6
    elif interval and new_tat - capacity * interval > now_us + eps:
        reason, retry = "rate", new_tat - capacity * interval - now_us
    admitted = reason == "ok"
    if admitted:
        used_today += cost
        used_total += cost
    windows: list[Limit] = []
    if interval:
        held = (new_tat if admitted else tat) - now_us
        remaining = max(0, math.floor((capacity * interval - held + eps) / interval))
        windows.append(Limit("rate", capacity, remaining, held / 1e6, capacity * interval / 1e6))
    if policy.daily is not None:
        windows.append(
            Limit(
                "daily",
                policy.daily,
                max(0, policy.daily - used_today),
                _seconds_to_midnight(now_us),
                float(DAY),
            )
        )
    if policy.lifetime is not None:
        windows.append(
            Limit("lifetime", policy.lifetime, max(0, policy.lifetime - used_total), None, None)
        )
    decision = QuotaDecision(admitted, reason, retry / 1e6, tuple(windows))
    return decision, (new_tat if admitted and interval else None)


def _seconds_to_midnight(now_us: float) -> float:
    now_s = now_us / 1e6
    return (math.floor(now_s / DAY) + 1) * DAY - now_s


class QuotaGuard:
    """The pipeline guard: charges each request's cost, refuses with 429 when over.

    ``resolve(principal, model)`` returns the :class:`QuotaPolicy` that applies
    (``None`` = unlimited), so per-principal limits from API keys plug in later.
    Requests without a principal share the ``anonymous`` principal's limits.
    """

    name = "quotas"
    mitigates = frozenset({"AML.M0004"})

    def __init__(self, *, store: QuotaStore, resolve: Resolver) -> None:
        self.store = store
        self.resolve = resolve
        # A shared store answers over the network: never on an event loop.
        self.blocking = store.shared

    @classmethod
    def from_settings(
        cls,
        settings: QuotaSettings,
        *,
        overrides: Resolver | None = None,
        store: QuotaStore | None = None,
        redis_url: str = "",
        default_prefix: str = "atlasguard:quota",
    ) -> QuotaGuard:
        """The guard a policy's ``[controls.quotas]`` table describes.

        ``overrides`` may return a principal-specific policy (from its API key); when
        it returns ``None`` the table's limits apply. ``store`` defaults to Redis when
        ``redis_url`` (the deployment's) is set, else process memory.
        """
        default = settings_policy(settings)
        if store is None:
            if redis_url:
                from atlasguard.runtime._quota_redis import RedisQuotaStore

                prefix = settings.key_prefix or default_prefix
                store = RedisQuotaStore.from_url(redis_url, prefix=prefix)
            else:
                from atlasguard.runtime._quota_memory import MemoryQuotaStore

                store = MemoryQuotaStore()

        def resolve(principal: Principal, model: str) -> QuotaPolicy | None:
            if overrides is not None:
                specific = overrides(principal, model)
                if specific is not None:
                    return specific
            return default

        return cls(store=store, resolve=resolve)

    def before(self, request: Request) -> Request:
        principal = request.principal or ANONYMOUS
        policy = self.resolve(principal, request.model)
        if policy is None:
            return request
        cost = request.cost
        why = policy.impossible(cost)
        if why is not None:
            raise Denied(
                f"quota for {request.model!r} can never admit this request: {why}; "
                "send fewer rows per request",
                reason="over-limit",
            )
        try:
            decision = self.store.acquire(principal.name, request.model, policy, cost)
        except QuotaBackendError as exc:
            raise Denied("quota store unavailable; try again later", reason="unavailable") from exc
        if not decision.admitted:
            raise _denied(request.model, decision)
        return request.with_limits(decision.windows)

    def after(self, request: Request, response: Response) -> Response:
        return response


def _denied(model: str, decision: QuotaDecision) -> Denied:
    retry: float | None = None
    if decision.reason == "rate":
        message = f"rate limit exceeded for {model!r}: slow down"
    elif decision.reason == "daily":
        message = f"daily quota exhausted for {model!r}: it resets at 00:00 UTC"
    else:
        message = f"lifetime quota exhausted for {model!r}: it does not reset"
    if decision.reason != "lifetime":
        # Whole seconds, rounded up so a client that obeys is admitted, and never 0
        # (which invites an immediate retry storm).
        retry = float(max(1, math.ceil(decision.retry_after)))
        message += f"; retry after {retry:g} s"
    return Denied(
        message,
        reason="rate" if decision.reason == "rate" else "quota",
        retry_after=retry,
        limits=decision.windows,
    )


def settings_policy(settings: QuotaSettings) -> QuotaPolicy | None:
    """The limits a ``[controls.quotas]`` table describes, or ``None`` when it sets none."""
    policy = QuotaPolicy.parse(
        rate=settings.rate, burst=settings.burst, daily=settings.daily, lifetime=settings.lifetime
    )
    return None if policy == QuotaPolicy() else policy


def __getattr__(name: str) -> object:
    # The backends import this module; load them on first use to avoid a cycle and to
    # keep ``redis`` out of processes that never use it.
    if name == "MemoryQuotaStore":
        from atlasguard.runtime._quota_memory import MemoryQuotaStore

        return MemoryQuotaStore
    if name == "RedisQuotaStore":
        from atlasguard.runtime._quota_redis import RedisQuotaStore

        return RedisQuotaStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
