"""Prometheus metrics of the gateway, with labels from a closed set.

Every label value comes from the deployment or the code, never from a request:
``model`` is a served model's name or ``-`` (anything else a URL named),
``action`` one of the routes' actions, ``decision`` and ``reason`` the
auditor's. So no client can grow the number of series.

Each app has its own registry (never the process-wide default), so several
apps can live in one process. With ``metrics_dir`` (``atlasguard serve
--workers N`` sets it) the samples go through prometheus_client's
multiprocess mode and a scrape adds up every worker's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from atlasguard.errors import ConfigurationError
from atlasguard.runtime.auditor import Outcome

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Request counts by action, model, decision and reason; inference latency by model."""

    def __init__(self, served: Iterable[str], *, metrics_dir: Path | None = None) -> None:
        if metrics_dir is not None:
            _check_multiprocess()
        self.served = frozenset(served)
        self.metrics_dir = metrics_dir
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "atlasguard_requests_total",
            "Requests by action, served model, decision and reason",
            ["action", "model", "decision", "reason"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str, str], Any] = {}
        self._latency = Histogram(
            "atlasguard_request_seconds",
            "Inference latency by served model, audit record included",
            ["model"],
            registry=self.registry,
            buckets=_BUCKETS,
        )

    def count(self, action: str, outcome: Outcome) -> None:
        """Count one finished request (and its latency, for an inference)."""
        model = outcome.model if outcome.model in self.served else "-"
        key = (action, model, outcome.decision, outcome.reason)
        child = self._children.get(key)
        if child is None:  # the label space is closed, so this cache is bounded
            child = self._children[key] = self._requests.labels(*key)
        child.inc()
        if action == "infer" and model != "-":
            self._latency.labels(model).observe(time.perf_counter() - outcome.started)

    def scrape(self) -> bytes:
        """The Prometheus text exposition: this process's, or every worker's."""
        if self.metrics_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        # A fresh registry per scrape: the collector reads every worker's files anew.
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def started(self) -> None:
        """At a worker's start: drop the live gauges of workers that died unannounced."""
        if self.metrics_dir is None:
            return
        from prometheus_client import multiprocess

        pids = set()
        for file in self.metrics_dir.glob("*_*.db"):
            digits = file.stem.rpartition("_")[2]
            if digits.isdigit() and int(digits) != os.getpid():
                pids.add(int(digits))
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            except PermissionError:  # alive, someone else's
                continue

    def stopped(self) -> None:
        """At a worker's clean shutdown: say so, for the live gauges."""
        if self.metrics_dir is None:
            return
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(self.metrics_dir))  # type: ignore[no-untyped-call]


def _check_multiprocess() -> None:
    from prometheus_client import values

    # prometheus_client picks its value class once, at import, from PROMETHEUS_MULTIPROC_DIR.
    if values.ValueClass is values.MutexValue:
        raise ConfigurationError(
            "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR set before prometheus_client "
            "is imported (atlasguard serve --workers N sets it)"
        )
