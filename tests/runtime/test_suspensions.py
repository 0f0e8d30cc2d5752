"""Suspensions by the query monitor: in the database, shared, kept over restarts, lifted
by an administrator (audited). SQLite and the machine's PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from atlasguard.db.migrate import migrate
from atlasguard.errors import UsageError
from atlasguard.policy import Policy, load_policy_text
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.monitor import QueryMonitor
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.suspensions import SuspensionStore
from tests.dbfixtures import database

pytest.importorskip("sklearn")
pytest.importorskip("scipy")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        migrate(eng)
        yield eng


def test_the_store_suspends_renews_expires_and_lifts(engine: Engine) -> None:
    store = SuspensionStore(engine)
    store.suspend("mallory", "digits", since=0.0, until=100.0, why="near-copies")
    store.suspend("mallory", "digits", since=10.0, until=200.0, why="again")  # renewed
    store.suspend("mallory", "wine", since=0.0, until=50.0, why="off-distribution")
    store.suspend("eve", "digits", since=0.0, until=100.0, why="x" * 900)
    active = {(s.principal, s.model): s for s in store.active(now=60.0)}
    assert set(active) == {("mallory", "digits"), ("eve", "digits")}  # wine ended at 50
    assert active[("mallory", "digits")].why == "again"
    assert len(active[("eve", "digits")].why) == 500
    assert store.lift("mallory", "wine") == 1
    assert store.lift("mallory") == 1
    assert [s.principal for s in store.active(now=60.0)] == ["eve"]


MODEL = (
    '[models.digits]\ninputs = [{ name = "input", datatype = "FP32", shape = [-1, 64], '
    "min = 0.0, max = 1.0 }]\n"
)


def _policy(tmp_path: Path, engine: Engine) -> Policy:
    url = engine.url.render_as_string(hide_password=False)
    text = (
        f'[deployment]\ndatabase_url = "{url}"\n'
        "[controls.access]\nenabled = true\n[controls.monitor]\nenabled = true\n" + MODEL
    )
    return load_policy_text(text, path=tmp_path / "atlasguard.toml")


def _predict(inputs: Any) -> dict[str, np.ndarray]:
    x = np.asarray(inputs["input"], np.float32)
    return {"probabilities": np.tile(np.linspace(0.0, 1.0, 10, dtype=np.float32), (len(x), 1))}


class Worker:
    """One process's view: a deployment, its protected model, the monitor, a key."""

    def __init__(self, policy: Policy, key: str | None = None) -> None:
        self.deployment = Deployment.open(policy)
        (self.monitor,) = [g for g in self.deployment.guards if isinstance(g, QueryMonitor)]
        self.monitor.refresh_seconds = 0.0
        if key is None:
            key = self.deployment.identity.create_key("mallory").secret
            self.deployment.identity.grant("mallory", "digits")
        self.key = key
        self.model = self.deployment.protect(_predict, name="digits")

    def ask(self, x: np.ndarray) -> str:
        try:
            self.model({"input": x[None].astype(np.float32)}, credential=self.key)
        except Denied as denied:
            return denied.reason
        return "ok"

    def close(self) -> None:
        self.deployment.close()


def _probe(worker: Worker, n: int = 8) -> list[str]:
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, 64)
    return [worker.ask(np.clip(x + rng.normal(0, 0.01, 64), 0, 1)) for _ in range(n)]


def _wait_for(store: SuspensionStore, principal: str) -> None:
    for _ in range(100):  # the alarm's row is written by a thread
        if any(s.principal == principal for s in store.active(now=time.time())):
            return
        time.sleep(0.02)
    raise AssertionError("the suspension never reached the database")


def test_a_suspension_is_shared_kept_over_a_restart_and_lifted(
    tmp_path: Path, engine: Engine
) -> None:
    policy = _policy(tmp_path, engine)
    first = Worker(policy)
    second = Worker(policy, first.key)  # another worker of the same deployment
    try:
        assert _probe(first)[-1] == "suspended"
        _wait_for(first.deployment.suspensions, "mallory")
        assert second.ask(np.full(64, 0.3)) == "suspended"  # never saw the attack itself
    finally:
        first.close()
        second.close()
    restarted = Worker(policy, first.key)
    try:
        assert restarted.ask(np.full(64, 0.3)) == "suspended"
        with pytest.raises(UsageError, match="not suspended"):
            restarted.deployment.admin.lift_suspension("local:ops", "alice")
        assert restarted.deployment.admin.lift_suspension("local:ops", "mallory") == 1
        assert restarted.ask(np.full(64, 0.3)) == "ok"
        assert restarted.ask(np.full(64, 0.6)) == "ok"  # its history was forgotten
    finally:
        restarted.close()
    with Deployment.open(policy) as reader:
        lifts = [
            (r.decision, r.details.get("target"))
            for _, r in reader.audit.records()
            if r.action == "admin.monitor.lift"
        ]
    assert lifts == [("deny", "alice"), ("allow", "mallory")]


def test_cli_lists_and_lifts(tmp_path: Path, engine: Engine, cli: Any) -> None:
    policy = _policy(tmp_path, engine)
    (tmp_path / "atlasguard.toml").write_text(
        f'[deployment]\ndatabase_url = "{engine.url.render_as_string(hide_password=False)}"\n'
        "[controls.access]\nenabled = true\n[controls.monitor]\nenabled = true\n" + MODEL
    )
    worker = Worker(policy)
    try:
        _probe(worker)
        _wait_for(worker.deployment.suspensions, "mallory")
    finally:
        worker.close()
    config = str(tmp_path / "atlasguard.toml")
    listed = cli("monitor", "list", "--format", "json", "--config", config)
    assert listed.exit_code == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["principal"], row["model"]) == ("mallory", "digits") and "near-copies" in row["why"]
    assert cli("monitor", "list", "--config", config).exit_code == 0
    lifted = cli("monitor", "lift", "mallory", "--config", config)
    assert lifted.exit_code == 0 and "lifted 1" in lifted.stdout
    again = cli("monitor", "lift", "mallory", "--config", config)
    assert again.exit_code == 2 and "not suspended" in again.stderr


def test_a_lift_and_another_workers_suspension_are_seen_without_traffic(engine: Engine) -> None:
    from atlasguard.runtime.monitor import QueryFingerprints, Watch
    from atlasguard.runtime.pipeline import Principal

    store = SuspensionStore(engine)
    now = time.time()
    store.suspend("mallory", "digits", since=now, until=now + 600, why="near-copies")
    watch = Watch(QueryFingerprints(value_range=(0.0, 1.0)).fit(np.zeros((2, 64))), None)
    monitor = QueryMonitor(watches={"digits": watch}, store=store, refresh_seconds=0.05)
    monitor.start()
    try:
        assert monitor.suspended(Principal("mallory"), "digits") == "near-copies"
        store.lift("mallory")
        store.suspend("eve", "digits", since=now, until=now + 600, why="off-distribution")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            monitor.suspended(Principal("mallory"), "digits") is not None
            or monitor.suspended(Principal("eve"), "digits") is None
        ):
            time.sleep(0.02)
        assert monitor.suspended(Principal("mallory"), "digits") is None
        assert monitor.suspended(Principal("eve"), "digits") == "off-distribution"
    finally:
        monitor.close()
    assert monitor._refresher is not None
    monitor._refresher.join(1.0)
    assert not monitor._refresher.is_alive()
