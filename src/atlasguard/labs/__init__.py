"""Hands-on labs (AML.M0018 User Training): ``atlasguard labs list`` / ``labs run NAME``.

Each lab runs a real attack, from the same code the benchmarks measure
(:mod:`atlasguard.models.attacks`, :mod:`~atlasguard.models.poisoning`, the
scanner, the release gate), against an unprotected target and then against the
same target with an atlasguard mitigation on, and shows the measured
difference: a table, a plot, and a plain-language explanation tied to the
ATLAS technique and mitigation. Every figure is measured when the lab runs;
nothing is written into a lab. A short quiz closes it; a completion can be
recorded in a deployment's audit log, so training is evidence too.

>>> sorted(LABS)[:2]
['evasion', 'hidden-code']
"""

from __future__ import annotations

from typing import Any

from atlasguard.labs.base import Figure, Lab, LabResult, Question, completion, plot, render

__all__ = ["LABS", "Figure", "Lab", "LabResult", "Question", "completion", "plot", "render"]

LABS: dict[str, Lab]  # name -> lab, built on first use (the exercises need numpy)


def __getattr__(name: str) -> Any:
    if name == "LABS":
        from atlasguard.labs.exercises import EXERCISES

        labs = {lab.name: lab for lab in EXERCISES}
        globals()["LABS"] = labs
        return labs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
