"""The parts of a lab: its figures, its result, its quiz; rendering and plotting."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Lab", "LabResult", "Question", "completion", "plot", "render"]


@dataclass(frozen=True)
class Question:
    text: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    why: str


@dataclass(frozen=True)
class Figure:
    """One measured figure, without and with the mitigation."""

    what: str
    without: float
    with_: float
    unit: str = ""  # "%" for rates in [0, 1], else a count or seconds

    def shown(self, value: float) -> str:
        if self.unit == "%":
            return f"{value:.0%}"
        if self.unit == "yes/no":
            return "yes" if value else "no"
        return f"{value:g}{(' ' + self.unit) if self.unit else ''}"


@dataclass
class LabResult:
    """What a run measured, and the story of it with the measured numbers in."""

    figures: list[Figure]
    story: str
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "figures": [
                {"what": f.what, "without": f.without, "with": f.with_, "unit": f.unit}
                for f in self.figures
            ],
            "story": self.story,
            "seconds": round(self.seconds, 1),
            "details": self.details,
        }


@dataclass(frozen=True)
class Lab:
    name: str
    title: str
    family: str
    techniques: tuple[str, ...]
    mitigations: tuple[str, ...]
    summary: str
    run: Callable[[bool], LabResult]  # quick -> result
    quiz: tuple[Question, ...]


def render(lab: Lab, result: LabResult) -> str:
    """The lab's outcome as text: the figures side by side, then the explanation."""
    width = max(len(f.what) for f in result.figures)
    lines = [
        f"{lab.title}",
        f"ATLAS: {', '.join(lab.techniques)}  |  mitigation: {', '.join(lab.mitigations)}",
        "",
        f"{'':<{width}}  {'unprotected':>12}  {'protected':>12}",
    ]
    for f in result.figures:
        lines.append(f"{f.what:<{width}}  {f.shown(f.without):>12}  {f.shown(f.with_):>12}")
    lines += ["", result.story, "", f"(measured just now, in {result.seconds:.0f} s)"]
    return "\n".join(lines)


def plot(lab: Lab, result: LabResult, path: Any) -> bool:
    """A bar chart of the figures, as PNG (the rates, or the counts when a lab has no
    rates); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    import textwrap

    import numpy as np

    rates = [f for f in result.figures if f.unit == "%"]
    counts = [f for f in result.figures if f.unit == ""]
    shown = rates or counts  # one scale per plot: rates when there are any, else counts
    if not shown:
        return False
    top = 1.0 if rates else max(1.0, *(max(f.without, f.with_) for f in counts))
    y = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(9, 0.9 * len(shown) + 1.6))
    for offset, values, label, colour in (
        (-0.2, [f.without for f in shown], "unprotected", "#c0392b"),
        (0.2, [f.with_ for f in shown], f"with {', '.join(lab.mitigations)}", "#27ae60"),
    ):
        bars = ax.barh(y + offset, values, 0.4, label=label, color=colour)
        ax.bar_label(
            bars,
            labels=[f.shown(v) for f, v in zip(shown, values, strict=True)],
            fontsize=8,
            padding=2,
        )
    ax.set_yticks(y, [textwrap.fill(f.what, 40) for f in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15 * top)
    ax.set_title(
        f"{lab.title} ({', '.join(lab.techniques)})\nmeasured by: atlasguard labs run {lab.name}",
        fontsize=9,
        loc="left",
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def completion(lab: Lab, result: LabResult, score: int | None, who: str) -> dict[str, str]:
    """The details of a ``labs.completed`` audit record."""
    return {
        "lab": lab.name,
        "who": who,
        "quiz": "not taken" if score is None else f"{score}/{len(lab.quiz)}",
        "mitigations": ",".join(lab.mitigations),
        "figures": json.dumps(
            {f.what: [round(f.without, 4), round(f.with_, 4)] for f in result.figures}
        ),
    }
