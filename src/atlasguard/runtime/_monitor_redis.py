"""The query monitor's state in Redis, shared by every worker and replica.

With ``[deployment] redis_url`` and ``[controls.monitor] state = "redis"``, what the
monitor remembers of each (principal or group, model) lives in Redis instead of
the process, so an attack spread by the load balancer over workers and replicas
is seen whole, and a restart forgets nothing. One Lua script per query does what
the in-process memory does (:class:`~atlasguard.runtime.monitor.PrincipalState`):
the exact-repeat check, the fingerprint lookup through a hash table (never a
scan of the history), the near-copy and off-distribution windows. The PRADA
distances take a second round trip (the nearest earlier query of the class is
computed here, from the last ``history`` rows Redis returns).

Keys (one hash tag per pair, one Redis Cluster slot), each expiring ``ttl``
seconds after the pair's last query::

    {PREFIX:WHO:MODEL}:n        next query id
    {PREFIX:WHO:MODEL}:exact    sorted set: digests of recent queries, by last use (:tick)
    {PREFIX:WHO:MODEL}:t0, :t1  hash -> recent query ids (two generations: the
                                older is dropped every ``capacity`` queries, so
                                the tables stay bounded)
    {PREFIX:WHO:MODEL}:recent   the near-copy window, one '0'/'1' per query
    {PREFIX:WHO:MODEL}:out      the off-distribution window, likewise
    {PREFIX:WHO:MODEL}:bnd      the decision-boundary window, likewise
    {PREFIX:WHO:MODEL}:win      the last rows (float64), for their spread
    {PREFIX:WHO:MODEL}:seen     queries counted
    {PREFIX:WHO:MODEL}:alarm    "time|why" once a detector alarmed
    {PREFIX:WHO:MODEL}:d:CLASS  the last ``history`` rows of that class (float32)
    {PREFIX:WHO:MODEL}:dist     the last distances; :low the latest statistic

>>> RedisMonitorStates.keyspace("p", ("alice", "digits"))
'{p:alice:digits}'
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

if TYPE_CHECKING:
    from atlasguard.runtime.monitor import Counts, DistanceNormality, Seen

__all__ = ["RedisMonitorStates"]

# KEYS[1]: the pair's base. ARGV: digest, capacity, per_hash, window, off_window,
# outside (-1 not watched, 0, 1), match, ttl, boundary (likewise), boundary window,
# spread window (0 not watched), the row (float64 bytes), then the fingerprint's
# hashes. Returns {1} for a repeat, else {0, near_copies, recent, outside,
# outside_window, seen, boundary, boundary_window, the last rows, the alarm or ''}.
_OBSERVE = """
local base = KEYS[1]
local digest = ARGV[1]
local capacity = tonumber(ARGV[2])
local per_hash = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local off_window = tonumber(ARGV[5])
local outside = tonumber(ARGV[6])
local match = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local boundary = tonumber(ARGV[9])
local boundary_size = tonumber(ARGV[10])
local spread_size = tonumber(ARGV[11])
local row = ARGV[12]
local nh = #ARGV - 12
local qid = tonumber(redis.call('GET', base .. ':n') or '0')
local exact = base .. ':exact'
-- every touch of a digest (a new query or a repeat) is ranked by recency
local tick = redis.call('INCR', base .. ':tick')
redis.call('EXPIRE', base .. ':tick', ttl)
if redis.call('ZSCORE', exact, digest) then
  redis.call('ZADD', exact, tick, digest)
  return {1}
end
local function window_push(key, bit, size)
  local s = (redis.call('GET', key) or '') .. bit
  if #s > size then s = string.sub(s, #s - size + 1) end
  redis.call('SET', key, s, 'EX', ttl)
  local ones = 0
  for _ in string.gmatch(s, '1') do ones = ones + 1 end
  return ones, #s
end
local near, recent = 0, 0
if nh > 0 then
  local gen = math.floor(qid / capacity)
  local cur = base .. ':t' .. (gen % 2)
  local old = base .. ':t' .. ((gen + 1) % 2)
  if qid > 0 and qid % capacity == 0 then redis.call('DEL', cur) end
  local hashes = {}
  for i = 1, nh do hashes[i] = ARGV[12 + i] end
  local found_cur = redis.call('HMGET', cur, unpack(hashes))
  local found_old = redis.call('HMGET', old, unpack(hashes))
  local oldest = qid - capacity
  local counts, best = {}, 0
  local updates = {}
  local function parse(v)
    local out = {}
    if v then
      for id in string.gmatch(v, '%d+') do out[#out + 1] = tonumber(id) end
    end
    return out
  end
  for i = 1, nh do
    -- the hash's last `per_hash` queries over both generations (as the memory keeps)
    local ids = parse(found_cur[i])
    local older = parse(found_old[i])
    local taken = 0
    for _, list in ipairs({ids, older}) do
      for k = #list, 1, -1 do
        if taken < per_hash then
          taken = taken + 1
          local n = list[k]
          if n >= oldest then
            local c = (counts[n] or 0) + 1
            counts[n] = c
            if c > best then best = c end
          end
        end
      end
    end
    ids[#ids + 1] = qid
    while #ids > per_hash do table.remove(ids, 1) end
    updates[#updates + 1] = hashes[i]
    updates[#updates + 1] = table.concat(ids, ',')
  end
  redis.call('HSET', cur, unpack(updates))
  redis.call('EXPIRE', cur, ttl)
  redis.call('EXPIRE', old, ttl)
  local copy = '0'
  if best >= match then copy = '1' end
  near, recent = window_push(base .. ':recent', copy, window)
end
local outs, out_window = 0, 0
if outside >= 0 then
  outs, out_window = window_push(base .. ':out', tostring(outside), off_window)
end
local bnd, bnd_window = 0, 0
if boundary >= 0 then
  bnd, bnd_window = window_push(base .. ':bnd', tostring(boundary), boundary_size)
end
redis.call('SET', base .. ':n', qid + 1, 'EX', ttl)
redis.call('ZADD', exact, tick, digest)
if redis.call('ZCARD', exact) > capacity then
  redis.call('ZREMRANGEBYRANK', exact, 0, -capacity - 1)
end
redis.call('EXPIRE', exact, ttl)
local seen = redis.call('INCR', base .. ':seen')
redis.call('EXPIRE', base .. ':seen', ttl)
local spread = {}
if spread_size > 0 then
  redis.call('LPUSH', base .. ':win', row)
  redis.call('LTRIM', base .. ':win', 0, spread_size - 1)
  redis.call('EXPIRE', base .. ':win', ttl)
  spread = redis.call('LRANGE', base .. ':win', 0, -1)
end
local alarm = redis.call('GET', base .. ':alarm') or ''
return {0, near, recent, outs, out_window, seen, bnd, bnd_window, spread, alarm}
"""

_SUFFIXES = (
    ":n",
    ":exact",
    ":t0",
    ":t1",
    ":recent",
    ":out",
    ":bnd",
    ":win",
    ":seen",
    ":alarm",
    ":dist",
    ":low",
)


class RedisMonitorStates:
    """Every pair's state in one Redis (a small handle per pair, nothing kept here)."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        capacity: int = 10_000,
        per_hash: int = 4,
        ttl: float = 86_400.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.capacity = capacity
        self.per_hash = per_hash
        self.ttl = max(1, int(ttl))
        self._observe = client.register_script(_OBSERVE)
        self.distances: dict[str, DistanceNormality] = {}  # per model, set by the monitor

    @classmethod
    def from_url(cls, url: str, prefix: str, **options: Any) -> RedisMonitorStates:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix, **options)

    @staticmethod
    def keyspace(prefix: str, key: tuple[str, str]) -> str:
        return "{" + f"{prefix}:{quote(key[0], safe='')}:{quote(key[1], safe='')}" + "}"

    @staticmethod
    def is_unavailable(exc: BaseException) -> bool:
        """Whether ``exc`` says Redis cannot be reached or answered wrongly."""
        import redis

        return isinstance(exc, redis.RedisError)

    def state(self, key: tuple[str, str]) -> RedisState:
        return RedisState(self, self.keyspace(self.prefix, key), key[1])

    def close(self) -> None:
        self.client.close()


class RedisState:
    """One pair's state in Redis, with the interface of the in-process state."""

    def __init__(self, states: RedisMonitorStates, base: str, model: str) -> None:
        self.states = states
        self.base = base
        self.model = model
        self.lock = threading.Lock()  # in-process only: Redis's script is the atomic part
        self._alarm: tuple[float, str] | None = None
        self._known = False  # whether _alarm is what Redis said during this request

    def size(self) -> int:
        return 0  # nothing remembered in this process

    def observe(self, seen: Seen, *, window: int, off_window: int) -> Counts | None:
        from atlasguard.runtime.monitor import Counts

        states = self.states
        hashes = sorted(seen.fingerprint) if seen.fingerprint is not None else []
        outside = -1 if seen.outside is None else int(seen.outside)
        detector = states.distances.get(self.model)
        pipe = states.client.pipeline(transaction=False)
        states._observe(
            keys=[self.base],
            args=[
                seen.digest.hex(),
                states.capacity,
                states.per_hash,
                window,
                max(1, off_window),
                outside,
                seen.match,
                states.ttl,
                -1 if seen.boundary is None else int(seen.boundary),
                max(1, seen.boundary_window),
                seen.spread_window,
                np.asarray(seen.row, np.float64).tobytes() if seen.spread_window else b"",
                *hashes,
            ],
            client=pipe,
        )
        if detector is not None:
            pipe.lrange(f"{self.base}:d:{seen.cls}", 0, detector.history - 1)
            pipe.get(f"{self.base}:low")
        answers = pipe.execute()
        got = answers[0]
        if int(got[0]) == 1:
            return None
        low = 1.0
        if detector is not None:
            low = self._distance(detector, seen, answers[1], answers[2], int(got[5]))
        radius = float("inf")
        self._alarm, self._known = _parse_alarm(got[9] or None), True
        last_rows: list[bytes] = list(got[8])
        if seen.spread_window and len(last_rows) >= seen.spread_window:
            rows = np.frombuffer(b"".join(last_rows), np.float64).reshape(len(last_rows), -1)
            centred = rows - rows.mean(axis=0)
            radius = float(np.sqrt((centred**2).sum(axis=1).mean()))
        return Counts(
            int(got[1]),
            int(got[2]),
            int(got[3]),
            int(got[4]),
            int(got[5]),
            low,
            int(got[6]),
            int(got[7]),
            radius,
        )

    def _distance(
        self, detector: DistanceNormality, seen: Seen, rows: list[bytes], last: Any, count: int
    ) -> float:
        """PRADA's step: the nearest earlier query of the class, then maybe the test."""
        from atlasguard.runtime.monitor import _shapiro

        low = float(last) if last is not None else 1.0
        x = np.asarray(seen.row, np.float32).ravel()
        client = self.states.client
        ttl = self.states.ttl
        key = f"{self.base}:d:{seen.cls}"
        if rows:
            stored = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), -1)
            if stored.shape[1] == x.size:
                diff = stored - x
                nearest = float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))
                if nearest <= detector.near * detector.scale_:
                    return low  # a near-copy: the fingerprints' job
                pipe = client.pipeline(transaction=False)
                pipe.lpush(f"{self.base}:dist", repr(nearest))
                pipe.ltrim(f"{self.base}:dist", 0, detector.window - 1)
                pipe.expire(f"{self.base}:dist", ttl)
                pipe.lrange(f"{self.base}:dist", 0, -1)
                distances = pipe.execute()[3]
                if len(distances) >= detector.min_queries and count % detector.every == 0:
                    low = _shapiro(np.array([float(d) for d in distances]))
                    client.set(f"{self.base}:low", repr(low), ex=ttl)
        pipe = client.pipeline(transaction=False)
        pipe.lpush(key, x.tobytes())
        pipe.ltrim(key, 0, detector.history - 1)
        pipe.expire(key, ttl)
        pipe.sadd(f"{self.base}:classes", str(seen.cls))
        pipe.expire(f"{self.base}:classes", ttl)
        pipe.execute()
        return low

    def alarm(self) -> tuple[float, str] | None:
        """The pair's alarm, read now."""
        self._alarm, self._known = _parse_alarm(self.states.client.get(f"{self.base}:alarm")), True
        return self._alarm

    def last_alarm(self) -> tuple[float, str] | None:
        """The alarm as this handle's last script or write saw it (no round trip): what
        the monitor checks between the queries of one request."""
        return self._alarm if self._known else self.alarm()

    def raise_alarm(self, now: float, why: str) -> bool:
        """Set the alarm once for every worker; True for the one that set it."""
        key, ttl = f"{self.base}:alarm", self.states.ttl
        won = bool(self.states.client.set(key, f"{now}|{why}", nx=True, ex=ttl))
        self._alarm, self._known = ((now, why), True) if won else (None, False)
        return won

    def forget(self) -> None:
        self._alarm, self._known = None, True
        client = self.states.client
        classes = client.smembers(f"{self.base}:classes") or set()
        names = [self.base + s for s in _SUFFIXES]
        names += [f"{self.base}:d:{c.decode()}" for c in classes]
        client.delete(*names, f"{self.base}:classes")


def _parse_alarm(raw: bytes | None) -> tuple[float, str] | None:
    """``time|why``, as Redis keeps an alarm, or ``None``."""
    if not raw:
        return None
    at, _, why = raw.decode().partition("|")
    return float(at), why
