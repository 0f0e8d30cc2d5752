"""The poison detector on digits: finds planted triggers it was not shown, stays quiet on
clean data and on plain label noise. Design and settings came from ``tune``/``eval``; these
run on the ``fit`` part."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from atlasguard.data.poison import PoisonDetector
from atlasguard.models import poisoning
from atlasguard.models.data import digits_splits


@pytest.fixture(scope="module")
def fit_part() -> tuple[np.ndarray, np.ndarray]:
    d = digits_splits()
    return d.x_fit, d.y_fit


def _precision_recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = len(np.intersect1d(found, truth))
    return hits / max(len(found), 1), hits / len(truth)


def test_badnets_corner_ten_percent_is_found_without_the_rate(fit_part) -> None:
    x, y = fit_part
    attack = poisoning.badnets(x, y, rate=0.1, target=0, random_state=1)
    found = PoisonDetector(random_state=0).fit(attack.x, attack.y).rows_
    precision, recall = _precision_recall(found, attack.rows)
    assert precision >= 0.95 and recall >= 0.95


def test_a_blended_trigger_at_another_target_is_found(fit_part) -> None:
    x, y = fit_part
    attack = poisoning.blended(x, y, rate=0.05, target=6, alpha=0.2, random_state=21)
    detector = PoisonDetector(random_state=0).fit(attack.x, attack.y)
    precision, recall = _precision_recall(detector.rows_, attack.rows)
    assert precision >= 0.9 and recall >= 0.9
    assert {c.label for c in detector.clusters_ if c.poisoned} == {6}


def test_an_all_to_all_trigger_is_found_across_classes(fit_part) -> None:
    """y -> y + 1 moves only each poisoned row's own source class, so the transplant test
    cannot see it; the offset the poison of every class shares can (a 2x2 patch, not the
    3x3 corner the setting was chosen with)."""
    x, y = fit_part
    attack = poisoning.badnets(x, y, rate=0.1, mode="all-to-all", size=2, random_state=4)
    detector = PoisonDetector(random_state=0).fit(attack.x, attack.y)
    precision, recall = _precision_recall(detector.rows_, attack.rows)
    assert precision >= 0.95 and recall >= 0.85
    assert len({c.label for c in detector.clusters_ if c.poisoned}) >= 3
    # without the cross-class step the same data passes as clean
    alone = PoisonDetector(random_state=0, min_shared=1.01).fit(attack.x, attack.y)
    assert len(alone.rows_) == 0


def test_clean_data_and_label_noise_are_not_called_poison(fit_part) -> None:
    x, y = fit_part
    assert len(PoisonDetector(random_state=0).fit(x, y).rows_) == 0
    flips = poisoning.flip_labels(x, y, rate=0.1, random_state=3)
    assert len(PoisonDetector(random_state=0).fit(flips.x, flips.y).rows_) == 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        PoisonDetector().fit(np.zeros(5), np.zeros(5))
