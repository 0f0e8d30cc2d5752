"""The tuning models Neural Cleanse's thresholds were set on (never the bench's).

    python bench/training/backdoor_tuning.py

10 CNNs with a BadNets patch drawn with seed 7 and 10 clean ones, training seeds
7000-7009 (the bench's models: trigger seed 2026, training seeds 100-109). One line
per model with its anomaly index and smallest/median mask ratio, then the range of
each figure over the clean and the backdoored models, from which
``atlasguard.models.validation`` takes its thresholds (6 minutes on 2 cores).
"""

from __future__ import annotations

import json
import statistics

from atlasguard.models.data import digits_splits
from atlasguard.models.training import backdoor_models


def main() -> None:
    print("command: python bench/training/backdoor_tuning.py")
    rows = backdoor_models(digits_splits(), print, seed=7, first_model_seed=7000)
    for kind, chosen in (
        ("clean", [r for r in rows if r["planted"] == "-"]),
        ("backdoored", [r for r in rows if r["planted"] != "-"]),
    ):
        ratios = [r["ratio"] for r in chosen]
        indices = [r["anomaly_index"] for r in chosen]
        summary = {
            "models": kind,
            "ratio": [min(ratios), max(ratios)],
            "ratio_mean": round(statistics.mean(ratios), 3),
            "ratio_sd": round(statistics.stdev(ratios), 3),
            "anomaly_index": [min(indices), max(indices)],
            "flagged": sum(r["flagged"] for r in chosen),
            "right_label": sum(str(r["label"]) == r["planted"] for r in chosen),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
