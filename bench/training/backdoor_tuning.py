"""The tuning models Neural Cleanse's thresholds were set on (never the bench's).

    python bench/training/backdoor_tuning.py [--black-box] [--count N]

10 CNNs with a BadNets patch drawn with seed 7 and 10 clean ones, training seeds
7000-7009 (the bench's models: trigger seed 2026, training seeds 100-109). One line
per model with its anomaly index and smallest/median mask ratio, then the range of
each figure over the clean and the backdoored models, from which
``atlasguard.models.validation`` takes its thresholds (6 minutes on 2 cores).
``--black-box`` searches each model as ``atlasguard validate MODEL.onnx`` does
(ONNX Runtime, estimated gradients; about 70 s a model).
"""

from __future__ import annotations

import argparse
import json
import statistics

from atlasguard.models.data import digits_splits
from atlasguard.models.training import backdoor_models


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--black-box", action="store_true")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    flags = (" --black-box" if args.black_box else "") + f" --count {args.count}"
    print("command: python bench/training/backdoor_tuning.py" + flags)
    rows = backdoor_models(
        digits_splits(),
        print,
        seed=7,
        count=args.count,
        first_model_seed=7000,
        black_box=args.black_box,
    )
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
