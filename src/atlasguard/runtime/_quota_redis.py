"""Quota counters in Redis, shared by every worker and replica.

One Lua script checks and charges the rate, daily and lifetime counters of a
(principal, model) together, so concurrent requests from any number of processes
never over-admit, and a request refused by one limit consumes none of the others.
The ``limits`` library checks one limit per call, which cannot give that guarantee
when several limits must hold together. The script reads the time with Redis's
``TIME``, so clients with skewed clocks still share one count.

Keys (one hash tag per pair, so they land in one Redis Cluster slot)::

    {PREFIX:PRINCIPAL:MODEL}:rate      GCRA theoretical arrival time (µs); expires when idle
    {PREFIX:PRINCIPAL:MODEL}:daily     hash {day, used}; expires an hour after its UTC day
    {PREFIX:PRINCIPAL:MODEL}:lifetime  counter; never expires

>>> from atlasguard.runtime._quota_redis import RedisQuotaStore
>>> store = RedisQuotaStore.from_url("redis://127.0.0.1:6379/0", prefix="doctest")
>>> store.keys("alice", "digits")[0]
'{doctest:alice:digits}:rate'
"""

from __future__ import annotations

from typing import Any, Literal, cast
from urllib.parse import quote

import redis

from atlasguard.runtime.pipeline import Limit
from atlasguard.runtime.quotas import (
    QuotaBackendError,
    QuotaDecision,
    QuotaPolicy,
)
from atlasguard.runtime.settings import DAY

__all__ = ["RedisQuotaStore"]

# KEYS: rate, daily, lifetime. ARGV: cost, interval_us (0 = no rate), capacity,
# daily (0 = none), lifetime (0 = none). Mirrors atlasguard.runtime.quotas.decide.
_SCRIPT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000000 + tonumber(t[2])
local day = math.floor(sec / 86400)
local to_midnight = (day + 1) * 86400 * 1000000 - now
local cost = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local daily = tonumber(ARGV[4])
local lifetime = tonumber(ARGV[5])
local eps = 1

local tat = now
if interval > 0 then
  local stored = tonumber(redis.call('GET', KEYS[1]))
  if stored and stored > now then tat = stored end
end
local new_tat = tat + cost * interval

local used_today = 0
if daily > 0 then
  local h = redis.call('HMGET', KEYS[2], 'day', 'used')
  if tonumber(h[1]) == day then used_today = tonumber(h[2]) or 0 end
end
local used_total = 0
if lifetime > 0 then
  used_total = tonumber(redis.call('GET', KEYS[3])) or 0
end

local reason = 0
local retry = 0
if lifetime > 0 and used_total + cost > lifetime then
  reason = 3
elseif daily > 0 and used_today + cost > daily then
  reason = 2
  retry = to_midnight
elseif interval > 0 and new_tat - capacity * interval > now + eps then
  reason = 1
  retry = new_tat - capacity * interval - now
end

local held = tat - now
if reason == 0 then
  held = new_tat - now
  if interval > 0 then
    redis.call('SET', KEYS[1], string.format('%.3f', new_tat),
               'PX', math.ceil(held / 1000) + 1000)
  end
  if daily > 0 then
    used_today = used_today + cost
    redis.call('HSET', KEYS[2], 'day', day, 'used', used_today)
    redis.call('EXPIREAT', KEYS[2], (day + 1) * 86400 + 3600)
  end
  if lifetime > 0 then
    used_total = redis.call('INCRBY', KEYS[3], cost)
  end
end
return {reason, string.format('%.3f', retry), string.format('%.3f', held),
        used_today, used_total, string.format('%.3f', to_midnight)}
"""

_REASONS: tuple[Literal["ok", "rate", "daily", "lifetime"], ...] = (
    "ok",
    "rate",
    "daily",
    "lifetime",
)


class RedisQuotaStore:
    """Counters in Redis, checked and charged by one atomic script per request."""

    shared = True  # every worker and replica sees the same counts, over the network

    def __init__(self, client: redis.Redis, *, prefix: str = "atlasguard:quota") -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "atlasguard:quota") -> RedisQuotaStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``); connects lazily."""
        return cls(redis.Redis.from_url(url), prefix=prefix)

    def keys(self, principal: str, model: str) -> tuple[str, str, str]:
        """The rate, daily and lifetime keys of one (principal, model)."""
        # Quoting keeps ':' and braces in names from splitting keys or hash tags.
        tag = f"{{{self.prefix}:{quote(principal, safe='')}:{quote(model, safe='')}}}"
        return f"{tag}:rate", f"{tag}:daily", f"{tag}:lifetime"

    def acquire(self, principal: str, model: str, policy: QuotaPolicy, cost: int) -> QuotaDecision:
        """Admit ``cost`` units against every limit of ``policy``, or none of them."""
        args = (
            cost,
            repr(policy.interval_us),
            policy.capacity,
            policy.daily or 0,
            policy.lifetime or 0,
        )
        try:
            raw = cast(list[Any], self._script(keys=self.keys(principal, model), args=args))
        except redis.RedisError as exc:
            # Fail closed: the guard turns this into a refused request, never a free pass.
            raise QuotaBackendError(f"quota store unavailable: {exc}") from exc
        code, retry, held, used_today, used_total, to_midnight = raw
        reason = _REASONS[int(code)]
        held_us = float(held)
        windows: list[Limit] = []
        interval = policy.interval_us
        if interval:
            capacity = policy.capacity
            remaining = max(0, int((capacity * interval - held_us + 1.0) // interval))
            windows.append(
                Limit("rate", capacity, remaining, held_us / 1e6, capacity * interval / 1e6)
            )
        if policy.daily is not None:
            windows.append(
                Limit(
                    "daily",
                    policy.daily,
                    max(0, policy.daily - int(used_today)),
                    float(to_midnight) / 1e6,
                    float(DAY),
                )
            )
        if policy.lifetime is not None:
            windows.append(
                Limit(
                    "lifetime",
                    policy.lifetime,
                    max(0, policy.lifetime - int(used_total)),
                    None,
                    None,
                )
            )
        return QuotaDecision(reason == "ok", reason, float(retry) / 1e6, tuple(windows))

    def reset(self, principal: str, model: str) -> None:
        """Forget every count of one (principal, model)."""
        self.client.delete(*self.keys(principal, model))
