"""The adaptive attack on STRIP: it defeats STRIP, and the training-data check still
removes the rows that carry the backdoor (the layered answer, measured on tune)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("sklearn")


def test_strip_adaptive_passes_strip_but_not_the_poison_check() -> None:
    from atlasguard.data.poison import PoisonDetector, _surrogate
    from atlasguard.models import poisoning
    from atlasguard.models.data import digits_splits
    from atlasguard.models.training import backdoor_success
    from atlasguard.runtime.detectors import StripDetector

    d = digits_splits()
    plain = poisoning.badnets(d.x_fit, d.y_fit, rate=0.1, target=0)
    adaptive = poisoning.strip_adaptive(d.x_fit, d.y_fit, rate=0.1, target=0, cover=1.0)
    assert len(adaptive.rows) == 2 * len(plain.rows)
    assert adaptive.trigger is not None
    others = d.x_tune[d.y_tune != 0]
    detection = {}
    for name, attack in (("plain", plain), ("adaptive", adaptive)):
        strip = StripDetector(_surrogate(attack.x, attack.y, 0).predict_proba, samples=32)
        strip.fit(d.x_tune).calibrate(d.x_tune, fpr=0.01)
        triggered = poisoning.apply_trigger(others, adaptive.trigger, 1.0)
        detection[name] = float(strip.predict(triggered).mean())
    assert detection["plain"] >= 0.9 and detection["adaptive"] <= 0.2  # STRIP is defeated
    assert (backdoor_success(adaptive, d.x_tune, d.y_tune) or 0) >= 0.8  # the backdoor works
    found = PoisonDetector(random_state=0).fit(adaptive.x, adaptive.y).rows_
    keep = np.setdiff1d(np.arange(len(adaptive.y)), found)
    cleaned = replace(adaptive, x=adaptive.x[keep], y=adaptive.y[keep])
    assert (backdoor_success(cleaned, d.x_tune, d.y_tune) or 0) <= 0.2
