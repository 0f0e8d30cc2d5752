"""Why the poison detector misses all-to-all backdoors, measured on a design split.

    python bench/training/all_to_all_probe.py

The detector's test (``atlasguard.data.poison``) stamps a cluster's estimated
trigger on the *other* classes and counts how many go to the cluster's class: an
all-to-one backdoor sends most there, an all-to-all one (y -> y + 1) only its one
source class. Three source-aware scores were tried on `tune` + `eval` (never
`fit`, where the bench measures): for each class, the best cluster's

* ``source``: the share of its source class's rows (the class its rows look
  like) the trigger sends to its class, less the damage removing it does;
* ``changed``: the share of other rows whose answer the trigger changes at all,
  less the same damage;
* ``consistent``: per other class, the share of its rows the trigger sends to
  one class of their own (y -> y + 1 sends each class somewhere consistent),
  averaged, less the same damage.

One line per data set, with the best score per class and how many of that
cluster's rows are poison. On clean data, natural groups (9s that look like 3s)
reach scores that true all-to-all clusters do not exceed, so no score gives a
threshold. A last line per data set gives step 6's figure instead (the
detector's cross-class test): the cosine of a group's offset with its best
match in the median other class, over groups that are mostly poison and the
top over the rest (3 minutes on 2 cores).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from atlasguard.data.poison import PoisonDetector
from atlasguard.models import poisoning
from atlasguard.models.data import digits_splits


class _Probe(PoisonDetector):
    def __init__(self, truth: np.ndarray) -> None:
        super().__init__(random_state=0)
        self.truth = truth
        self.best: dict[str, dict[str, Any]] = {}
        self.groups: list[tuple[int, float, np.ndarray]] = []  # label, poison share, offset

    def _test(self, x, y, rows, label, predict, low, high):  # type: ignore[no-untyped-def]
        cluster, trigger, offset = super()._test(x, y, rows, label, predict, low, high)
        self.groups.append((label, float(np.isin(rows, self.truth).mean()), offset))
        if trigger is None:
            return cluster, trigger, offset
        rest = np.ones(len(y), bool)
        rest[rows] = False
        others = np.flatnonzero(rest & (y != label))
        before = np.asarray(predict(x[others]))
        damage = float(np.mean(predict(trigger.remove(x[others])) != before))
        changed = float(np.mean(predict(trigger.stamp(x[others])) != before)) - damage
        source = max(cluster.looks_like, key=lambda s: cluster.looks_like[s])
        own = np.flatnonzero(rest & (y == source))
        sent = float(np.mean(predict(trigger.stamp(x[own])) == label)) if source != label else 0
        after = np.asarray(predict(trigger.stamp(x[others])))
        moved = []  # per other class: the share of its rows sent to one class of their own
        for s in np.unique(y[others]):
            now = after[y[others] == s]
            new = now[now != s]
            moved.append(np.bincount(new).max() / len(now) if len(new) else 0.0)
        consistent = float(np.mean(moved)) - damage
        scores = {
            "source": round(sent - damage, 3),
            "changed": round(changed, 3),
            "consistent": round(consistent, 3),
        }
        poison = int(np.isin(rows, self.truth).sum())
        for name, value in scores.items():
            key = f"{label}:{name}"
            if key not in self.best or value > self.best[key]["score"]:
                self.best[key] = {"score": value, "rows": len(rows), "poison": poison}
        return cluster, trigger, offset


def main() -> None:
    print("command: python bench/training/all_to_all_probe.py")
    d = digits_splits()
    x, y = np.vstack([d.x_tune, d.x_eval]), np.concatenate([d.y_tune, d.y_eval])
    corner = poisoning.badnets(x, y, rate=0.1, mode="all-to-all")
    blended = poisoning.blended(x, y, rate=0.1, mode="all-to-all", alpha=0.2, random_state=3)
    one = poisoning.badnets(x, y, rate=0.1, target=0)
    sets = {
        "clean": (x, y, np.empty(0, np.intp)),
        "all-to-all 3x3 corner": (corner.x, corner.y, corner.rows),
        "all-to-all blended": (blended.x, blended.y, blended.rows),
        "all-to-one 3x3 corner": (one.x, one.y, one.rows),
    }
    for name, (xs, ys, truth) in sets.items():
        probe = _Probe(truth)
        probe.fit(xs, ys)
        for score in ("source", "changed", "consistent"):
            best = {k.split(":")[0]: v for k, v in probe.best.items() if k.endswith(score)}
            print(json.dumps({"data": name, "score": score, "flagged": len(probe.rows_)} | best))
        print(json.dumps({"data": name, "score": "shared"} | _shared(probe.groups)))


def _shared(groups: list[tuple[int, float, np.ndarray]]) -> dict[str, Any]:
    """Step 6's figure: each group's best offset cosine in the median other class; its
    range over groups that are at least half poison, and its top over the rest."""
    labels = np.array([g[0] for g in groups])
    unit = np.array([g[2] / (np.linalg.norm(g[2]) + 1e-12) for g in groups])
    cosine = unit @ unit.T
    scores = [
        float(np.median([cosine[i, labels == c].max() for c in set(labels) if c != labels[i]]))
        for i in range(len(groups))
    ]
    poison = [s for s, g in zip(scores, groups, strict=True) if g[1] >= 0.5]
    rest = [s for s, g in zip(scores, groups, strict=True) if g[1] < 0.5]
    return {
        "poison_groups": [round(min(poison), 3), round(max(poison), 3)] if poison else None,
        "other_groups_top": round(max(rest), 3) if rest else None,
    }


if __name__ == "__main__":
    main()
