"""The query monitor (AML.M0015, AML.M0004): detectors, the guard, the policy, the demo.

Data: scikit-learn's digits, split three ways and never mixed: the detectors are
fitted on one part, thresholds checked on benign streams of another, attacks and
held-out benign streams run on the third.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.errors import ConfigurationError
from atlasguard.models.attacks import jacobian_extraction, simba
from atlasguard.models.data import digits_splits
from atlasguard.policy import load_policy, load_policy_text
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.monitor import (
    DistanceNormality,
    OffDistribution,
    QueryFingerprints,
    QueryMonitor,
    Watch,
    _FingerprintMemory,
)
from atlasguard.runtime.pipeline import Denied, Pipeline, Principal, Request
from atlasguard.runtime.plan import plan

pytest.importorskip("sklearn")
pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    d = digits_splits()
    model = LogisticRegression(max_iter=2000, random_state=0).fit(d.x_fit, d.y_fit)
    return {"fit": d.x_fit, "tune": d.x_tune, "eval": d.x_eval, "y_eval": d.y_eval, "model": model}


# -- the estimator contract --------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (QueryFingerprints, {"levels": 8, "window": 6, "top": 16, "threshold": 5}),
        (DistanceNormality, {"min_queries": 10, "window": 50, "threshold": 0.8}),
        (OffDistribution, {"clusters": 8, "window": 30, "min_queries": 10}),
    ],
)
def test_detectors_follow_the_estimator_contract(
    cls: type[Any], params: dict[str, Any], digits: dict[str, Any]
) -> None:
    detector = cls(**params)
    for name, value in params.items():
        assert getattr(detector, name) == value  # stored unchanged, no work in __init__
    assert not [a for a in vars(detector) if a.endswith("_")]
    assert detector.fit(digits["fit"]) is detector
    assert [a for a in vars(detector) if a.endswith("_") and not a.startswith("_")]
    stream = digits["tune"][:60]
    scores = detector.score_samples(stream)
    assert scores.shape == (60,)
    flags = detector.predict(stream)
    assert flags.dtype == bool and flags.shape == (60,)
    streams = [digits["tune"][i : i + 60] for i in range(0, 240, 60)]
    assert detector.calibrate(streams, fpr=0.05) is detector


def test_fingerprint_calibration_holds_its_false_positive_rate(digits: dict[str, Any]) -> None:
    fp = QueryFingerprints(value_range=(0.0, 1.0)).fit(digits["fit"])
    rng = np.random.default_rng(0)
    tune = [digits["tune"][rng.permutation(len(digits["tune"]))] for _ in range(4)]
    fp.calibrate(tune, fpr=0.01)
    held_out = np.concatenate([fp.predict(digits["eval"][rng.permutation(300)]) for _ in range(4)])
    assert held_out.mean() <= 0.03  # held-out benign queries, disjoint from the tuning ones


# -- the detectors -------------------------------------------------------------------


def test_near_copies_share_many_hashes_distinct_digits_few(digits: dict[str, Any]) -> None:
    fp = QueryFingerprints(value_range=(0.0, 1.0)).fit(digits["fit"])
    rng = np.random.default_rng(1)
    x = digits["eval"][0]
    copies = np.stack([np.clip(x + rng.normal(0, 0.02, 64), 0, 1) for _ in range(5)])
    assert fp.score_samples(copies)[1:].min() >= fp.threshold_
    distinct = fp.score_samples(digits["eval"][:300])
    assert (distinct >= fp.threshold_).mean() < 0.01


def test_exact_repeats_and_blank_inputs_are_not_near_copies(digits: dict[str, Any]) -> None:
    fp = QueryFingerprints(value_range=(0.0, 1.0)).fit(digits["fit"])
    x = digits["eval"][0]
    assert fp.score_samples(np.stack([x] * 5)).tolist() == [0] * 5  # a retry teaches nothing
    assert fp.fingerprint(np.zeros(64)) == frozenset()  # no informative window


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 20),
    per_hash=st.integers(1, 4),
    queries=st.lists(st.frozensets(st.integers(0, 30), max_size=6), max_size=60),
)
def test_the_fingerprint_memory_stays_bounded_and_consistent(
    capacity: int, per_hash: int, queries: list[frozenset[int]]
) -> None:
    """Against a brute force over every query so far: the same answers, bounded state."""
    memory = _FingerprintMemory(capacity=capacity, per_hash=per_hash)
    history: list[frozenset[int]] = []
    for i, fingerprint in enumerate(queries):
        oldest = max(0, len(history) - capacity)
        counts: dict[int, int] = {}
        for h in fingerprint:
            had = [q for q, old in enumerate(history) if h in old][-per_hash:]
            for q in had:
                if q >= oldest:
                    counts[q] = counts.get(q, 0) + 1
        expected = max(counts.values(), default=0)
        assert memory.add(fingerprint, i.to_bytes(4, "little")) == expected
        history.append(fingerprint)
        assert len(memory.queries) <= capacity and len(memory.exact) <= capacity
        assert len(memory.table) <= max(4096, 2 * memory.live) + len(fingerprint)
        assert all(0 < len(ids) <= per_hash for ids in memory.table.values())


def test_distances_of_synthetic_queries_are_not_natural(digits: dict[str, Any]) -> None:
    model = digits["model"]
    dn = DistanceNormality().fit(digits["fit"])
    asked: list[np.ndarray] = []

    def scores(x: np.ndarray) -> np.ndarray:
        asked.extend(x)
        return np.asarray(model.predict_proba(x))

    jacobian_extraction(scores, digits["eval"][:10], budget=150, lam=0.1)
    stream = np.array(asked)
    flags = dn.predict(stream, model.predict(stream))
    assert flags.any() and int(np.argmax(flags)) < 100
    natural = digits["eval"][:400]
    assert not dn.predict(natural, model.predict(natural)).any()


# -- the guard -----------------------------------------------------------------------


def _monitor(digits: dict[str, Any], **kwargs: Any) -> QueryMonitor:
    watch = Watch(
        QueryFingerprints(value_range=(0.0, 1.0)).fit(digits["fit"]),
        DistanceNormality().fit(digits["fit"]),
        OffDistribution().fit(digits["fit"]),
    )
    return QueryMonitor(watches={"digits": watch}, **kwargs)


def _pipeline(monitor: QueryMonitor, model: Any) -> Any:
    pipe = Pipeline(
        guards=(monitor,),
        predict=lambda inputs: {
            "probabilities": model.predict_proba(inputs["input"]).astype(np.float32)
        },
    )

    def client(name: str) -> Any:
        def scores(x: np.ndarray) -> np.ndarray:
            request = Request(
                model="digits",
                inputs={"input": np.asarray(x, np.float32)},
                principal=Principal(name),
            )
            return np.asarray(pipe(request).outputs["probabilities"], float)

        return scores

    return client


def test_simba_is_stopped_within_five_queries(digits: dict[str, Any]) -> None:
    alarms: list[tuple[str, str, str]] = []
    monitor = _monitor(digits, on_alarm=lambda *a: alarms.append(a))
    client = _pipeline(monitor, digits["model"])
    x, y = digits["eval"][3], int(digits["y_eval"][3])
    result = simba(client("mallory"), x, label=y, epsilon=0.2, max_queries=500)
    assert not result.success and result.queries <= 5
    assert "attack in progress" in result.stopped
    assert [(p, m) for p, m, _ in alarms] == [("mallory", "digits")]
    with pytest.raises(Denied) as refused:
        client("mallory")(x[None])
    assert refused.value.reason == "suspended"
    client("alice")(x[None])  # another principal is not affected


def test_jacobian_extraction_is_stopped_early(digits: dict[str, Any]) -> None:
    client = _pipeline(_monitor(digits), digits["model"])
    result = jacobian_extraction(client("mallory"), digits["eval"][:10], budget=1500, lam=0.1)
    assert result.queries < 100 and "attack in progress" in result.stopped


def test_a_benign_client_with_thousands_of_real_digits_is_not_stopped(
    digits: dict[str, Any],
) -> None:
    client = _pipeline(_monitor(digits), digits["model"])("alice")
    rng = np.random.default_rng(7)
    pool = np.concatenate([digits["tune"], digits["eval"]])  # never fitted on
    for row in pool[rng.choice(len(pool), 2000, replace=True)]:  # repeats included
        client(row[None])


def test_random_input_extraction_is_stopped(digits: dict[str, Any]) -> None:
    from atlasguard.models.attacks import random_extraction

    client = _pipeline(_monitor(digits), digits["model"])
    result = random_extraction(client("mallory"), n_features=64, budget=500)
    assert result.queries <= 25 and "outside the model's input distribution" in result.stopped


def test_off_distribution_stays_quiet_on_held_out_digits(digits: dict[str, Any]) -> None:
    off = OffDistribution().fit(digits["fit"])
    assert not off.predict(digits["eval"]).any()
    noise = np.random.default_rng(0).random((40, 64))
    assert off.predict(noise)[off.min_queries - 1]


def test_label_action_withholds_scores_after_the_alarm(digits: dict[str, Any]) -> None:
    client = _pipeline(_monitor(digits, action="label"), digits["model"])("mallory")
    x = digits["eval"][0]
    rng = np.random.default_rng(2)
    outs = [client(np.clip(x + rng.normal(0, 0.02, 64), 0, 1)[None]) for _ in range(6)]
    assert outs[0].shape == (1, 10)
    assert outs[-1].shape == (1,)  # labels only, never refused


def test_log_action_never_refuses_and_a_block_expires(digits: dict[str, Any]) -> None:
    now = [1000.0]
    monitor = _monitor(digits, suspend_seconds=60.0, clock=lambda: now[0])
    client = _pipeline(monitor, digits["model"])("mallory")
    x = digits["eval"][0]
    rng = np.random.default_rng(3)
    refused = []
    for _ in range(10):
        try:
            client(np.clip(x + rng.normal(0, 0.02, 64), 0, 1)[None])
        except Denied as denied:
            refused.append(denied.reason)
    assert refused and set(refused) == {"suspended"}
    now[0] += 61.0
    client(digits["eval"][1][None])  # the suspension ended
    logging = _pipeline(_monitor(digits, action="log"), digits["model"])("mallory")
    for _ in range(10):
        logging(np.clip(x + rng.normal(0, 0.02, 64), 0, 1)[None])


def test_state_stays_bounded_in_principals(digits: dict[str, Any]) -> None:
    monitor = _monitor(digits, max_principals=5)
    client = _pipeline(monitor, digits["model"])
    for i in range(20):
        client(f"p{i}")(digits["eval"][i][None])
    assert len(monitor._states) == 5


# -- the policy and the deployment ---------------------------------------------------

MODEL = (
    '[models.digits]\ninputs = [{ name = "input", datatype = "FP32", shape = [-1, 64], '
    "min = 0.0, max = 1.0 }]\n"
)


def _policy_text(reference: str = "") -> str:
    ref = f'reference = {{ digits = "{reference}" }}\n' if reference else ""
    return "[controls.access]\nenabled = true\n[controls.monitor]\nenabled = true\n" + ref + MODEL


def test_the_plan_lists_the_monitor_only_with_models(tmp_path: Path) -> None:
    policy = load_policy_text(_policy_text(), path=tmp_path / "atlasguard.toml")
    assert "monitor" in [p.name for p in plan(policy)]
    bare = load_policy_text(
        "[controls.monitor]\nenabled = true\n", path=tmp_path / "atlasguard.toml"
    )
    assert "monitor" not in [p.name for p in plan(bare)]


def test_the_deployment_builds_it_records_the_alarm_and_refuses(
    tmp_path: Path, digits: dict[str, Any]
) -> None:
    np.save(tmp_path / "ref.npy", digits["fit"].astype(np.float32))
    policy = load_policy_text(_policy_text("ref.npy"), path=tmp_path / "atlasguard.toml")
    model = digits["model"]

    def predict(inputs: Any) -> dict[str, np.ndarray]:
        return {"probabilities": model.predict_proba(inputs["input"]).astype(np.float32)}

    with Deployment.open(policy) as deployment:
        (monitor,) = [g for g in deployment.guards if isinstance(g, QueryMonitor)]
        watch = monitor.watches["digits"]
        assert watch.fingerprints is not None and watch.distances is not None
        assert watch.off is not None
        key = deployment.identity.create_key("mallory").secret
        deployment.identity.grant("mallory", "digits")
        protected = deployment.protect(predict, name="digits")
        x = digits["eval"][0]
        rng = np.random.default_rng(4)
        reasons = []
        for _ in range(8):
            try:
                protected(
                    {"input": np.clip(x + rng.normal(0, 0.02, 64), 0, 1)[None].astype(np.float32)},
                    credential=key,
                )
            except Denied as denied:
                reasons.append(denied.reason)
        assert reasons and set(reasons) == {"suspended"}
    records = _records(policy)
    assert any(r["action"] == "monitor.alarm" and r["principal"] == "mallory" for r in records)
    assert any(r["reason"] == "suspended" and r["action"] == "infer" for r in records)


def _records(policy: Any) -> list[dict[str, Any]]:
    import time

    with Deployment.open(policy) as deployment:
        for _ in range(50):  # the alarm is written by a thread: give it a moment
            rows = [r.to_dict() for _idx, r in deployment.audit.records()]
            if any(r["action"] == "monitor.alarm" for r in rows):
                return rows
            time.sleep(0.05)
        return rows


def test_an_unreadable_reference_is_a_clear_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "ref.npy").write_bytes(b"not numpy")
    policy = load_policy_text(_policy_text("ref.npy"), path=tmp_path / "atlasguard.toml")
    with pytest.raises(ConfigurationError, match=r"cannot read ref\.npy") as err:
        QueryMonitor.from_policy(policy)
    assert str(tmp_path) not in str(err.value)


def test_the_demo_policy_watches_the_digits_model(tmp_path: Path) -> None:
    from atlasguard.gateway.demo import init_project

    project = init_project(tmp_path / "demo", demo=True)
    policy = load_policy(project.policy_path)
    assert "monitor" in [p.name for p in plan(policy)]
    monitor = QueryMonitor.from_policy(policy)
    watch = monitor.watches["digits"]
    assert watch.fingerprints is not None and watch.distances is not None
    assert monitor.action == "block"


def test_the_queries_remembered_over_all_principals_stay_bounded(digits: dict[str, Any]) -> None:
    monitor = _monitor(digits, max_queries=120, action="log")
    client = _pipeline(monitor, digits["model"])
    rows = digits["eval"]
    for p in range(6):
        ask = client(f"p{p}")
        for row in rows[p * 50 : p * 50 + 50]:
            ask(row[None])
        assert monitor._remembered == sum(
            len(s.fingerprints.queries) for s in monitor._states.values()
        )
        assert monitor._remembered <= 120 + 50  # one principal's request may overshoot once
    assert len(monitor._states) < 6  # the oldest principals were forgotten


def test_decision_based_probing_is_caught_on_the_boundary_even_with_noise(
    digits: dict[str, Any],
) -> None:
    # HopSkipJump with fresh noise on every query (the fingerprints' adaptive answer):
    # its queries still sit on the decision boundary
    from atlasguard.models.attacks import hop_skip_jump
    from atlasguard.runtime.monitor import BoundaryProbing

    scores = digits["model"].predict_proba
    edge = BoundaryProbing().fit(scores(digits["fit"]))
    assert edge.clean_rate_ < 0.05
    assert not edge.predict(scores(digits["eval"])).any()  # a benign stream, in order
    watch = Watch(None, None, None, edge)
    monitor = QueryMonitor(watches={"digits": watch})
    client = _pipeline(monitor, digits["model"])("mallory")
    rng = np.random.default_rng(5)

    def noisy(x: np.ndarray) -> np.ndarray:
        return client(np.clip(x + rng.normal(0, 0.03, np.shape(x)), 0, 1))  # type: ignore[no-any-return]

    x, y = digits["eval"][4], int(digits["y_eval"][4])
    result = hop_skip_jump(noisy, x, label=y, max_queries=3000)
    assert "decision boundary" in result.stopped and result.queries <= 200
    benign = _pipeline(QueryMonitor(watches={"digits": watch}), digits["model"])("alice")
    for row in digits["eval"][rng.choice(len(digits["eval"]), 1000)]:
        benign(row[None])


def test_noisy_probing_is_caught_by_its_concentration_and_one_class_clients_are_not(
    digits: dict[str, Any],
) -> None:
    # NES hides near-copies behind large Gaussian probes, but they all surround one point
    from atlasguard.models.attacks import nes
    from atlasguard.runtime.monitor import QueryConcentration

    conc = QueryConcentration().fit(digits["fit"])
    assert conc.score_samples(digits["tune"][:60])[48] == np.inf  # not enough yet
    assert conc.calibrate([digits["tune"][:200]], fpr=0.05) is conc
    conc = QueryConcentration().fit(digits["fit"])
    monitor = QueryMonitor(watches={"digits": Watch(None, None, None, None, conc)})
    x, y = digits["eval"][2], int(digits["y_eval"][2])
    result = nes(_pipeline(monitor, digits["model"])("mallory"), x, label=y, sigma=0.1)
    assert "cluster around one point" in result.stopped and result.queries <= 60
    # a client with real digits of one class only: their spread is still natural
    labels = digits["model"].predict(digits["eval"])
    for c in range(10):
        client = _pipeline(monitor, digits["model"])(f"class{c}")
        for row in digits["eval"][labels == c]:
            client(row[None])
