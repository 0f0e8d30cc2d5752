"""In-process quota counters: one dictionary behind one lock.

The default backend, for a single worker process. Several workers or replicas each
keep their own counts here; use the Redis backend to share one count.

>>> from atlasguard.runtime._quota_memory import MemoryQuotaStore
>>> from atlasguard.runtime.quotas import QuotaPolicy
>>> clock = iter([0.0, 0.0, 0.5]).__next__
>>> store = MemoryQuotaStore(clock=clock)
>>> policy = QuotaPolicy.parse(rate="2/second", burst=2)
>>> [store.acquire("alice", "m", policy, 2).admitted for _ in range(3)]
[True, False, False]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from atlasguard.runtime.quotas import QuotaDecision, QuotaPolicy, decide
from atlasguard.runtime.settings import DAY

__all__ = ["MemoryQuotaStore"]


@dataclass(slots=True)
class _State:
    tat_us: float | None = None
    day: int = -1
    used_today: int = 0
    used_total: int = 0


class MemoryQuotaStore:
    """Thread-safe counters per (principal, model) in this process.

    ``clock`` returns seconds since the Unix epoch (UTC days are counted from it);
    tests inject a fake one.
    """

    shared = False  # this process only; never waits on anything but its lock

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._states: dict[tuple[str, str], _State] = {}
        # One lock for every key: a decision is a few microseconds of arithmetic, so
        # contention is lower than the cost of managing a lock per key.
        self._lock = threading.Lock()

    def acquire(self, principal: str, model: str, policy: QuotaPolicy, cost: int) -> QuotaDecision:
        """Admit ``cost`` units against every limit of ``policy``, or none of them."""
        with self._lock:
            now_us = float(round(self.clock() * 1e6))
            day = int(now_us // (DAY * 1_000_000))
            state = self._states.setdefault((principal, model), _State())
            if state.day != day:
                state.day, state.used_today = day, 0
            decision, new_tat = decide(
                now_us=now_us,
                tat_us=state.tat_us,
                used_today=state.used_today,
                used_total=state.used_total,
                policy=policy,
                cost=cost,
            )
            if decision.admitted:
                state.used_today += cost
                state.used_total += cost
                if new_tat is not None:
                    state.tat_us = new_tat
            return decision

    def reset(self, principal: str | None = None) -> None:
        """Forget the counts of one principal (every model), or of everyone."""
        with self._lock:
            if principal is None:
                self._states.clear()
            else:
                for key in [k for k in self._states if k[0] == principal]:
                    del self._states[key]
