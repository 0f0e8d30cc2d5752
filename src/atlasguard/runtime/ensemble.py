"""Ensembles (AML.M0006) and multi-sensor consensus (AML.M0009) behind one model name.

An :class:`Ensemble` asks several models (ideally of different families: a
linear model, a network, a tree ensemble) the same question and answers with
their vote: ``soft`` averages their probabilities, ``hard`` takes the majority
label. An input crafted against one family transfers less well to another, so
the vote is harder to move; and how much the members disagree is exported as
a detection signal (``disagreement``, the mean L1 distance of each member's
probabilities to their mean; see also
:class:`~atlasguard.runtime.detectors.DisagreementDetector`).

A :class:`Consensus` takes one decision from several models, each fed by a
different sensor or view of the same scene (a camera and a lidar, two crops,
two feature sets): the label that at least ``agree`` of them give is the
answer; when no label reaches ``agree`` the decision is withheld (``label``
-1) and the row is flagged, so that an attacker must fool several sensors at
once.

Both are predict functions (``Arrays -> Arrays``): they run behind the same
guard pipeline in-process and in the gateway (``backend = "ensemble"`` or
``"consensus"`` in ``[models.<name>]``, with ``members``).

>>> import numpy as np
>>> one = lambda x: {"probabilities": np.array([[0.9, 0.1]])}
>>> two = lambda x: {"probabilities": np.array([[0.2, 0.8]])}
>>> Ensemble([one, two, one])({"input": np.zeros((1, 2))})["label"]
array([0])
>>> c = Consensus([(one, ("a",)), (two, ("b",))], agree=2)
>>> c({"a": np.zeros((1, 2)), "b": np.zeros((1, 2))})["label"]
array([-1])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from atlasguard.runtime.obfuscation import score_array
from atlasguard.runtime.pipeline import Arrays, Response
from atlasguard.runtime.settings import DEFAULT_SCORE_OUTPUTS

__all__ = ["Consensus", "Ensemble", "member_scores"]

Predict = Callable[[Arrays], Arrays]
FloatArray = npt.NDArray[np.float64]


def member_scores(outputs: Arrays, names: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS) -> FloatArray:
    """One member's probabilities ``[n, classes]``; a label-only member as one-hot."""
    found = score_array(Response(outputs), names)
    if found is not None:
        return np.asarray(found, np.float64)
    for array in outputs.values():
        if array.dtype.kind in "iu" and array.ndim >= 1:
            labels = array.reshape(len(array), -1)[:, 0].astype(np.int64)
            width = int(labels.max()) + 1 if len(labels) else 1
            return np.asarray(np.eye(max(width, 2))[labels], np.float64)
    raise ValueError(f"a member returned no scores or labels (outputs {sorted(outputs)})")


def _stack(answers: list[FloatArray]) -> FloatArray:
    """Members' scores as one ``[members, n, classes]`` array (widest class count)."""
    width = max(a.shape[1] for a in answers)
    return np.stack([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in answers])


@dataclass(frozen=True)
class Ensemble:
    """Several models, one answer: ``probabilities``, ``label`` and ``disagreement``."""

    members: Sequence[Predict]
    voting: Literal["soft", "hard"] = "soft"
    score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")

    def __call__(self, inputs: Arrays) -> Arrays:
        answers = _stack([member_scores(m(inputs), self.score_outputs) for m in self.members])
        mean = answers.mean(axis=0)
        if self.voting == "hard":
            votes = np.zeros_like(mean)
            for member in answers:
                votes[np.arange(len(mean)), member.argmax(axis=1)] += 1
            probabilities = votes / len(answers)
        else:
            probabilities = mean
        disagreement = np.abs(answers - mean).sum(axis=-1).mean(axis=0)
        return {
            "label": probabilities.argmax(axis=1).astype(np.int64),
            "probabilities": probabilities.astype(np.float32),
            "disagreement": disagreement.astype(np.float32),
        }


@dataclass(frozen=True)
class Consensus:
    """k-of-n agreement over models that each see their own view of the scene.

    ``members`` pairs each model with the input names it reads (its sensor's
    view). ``label`` is the label at least ``agree`` members give, else -1 (the
    decision withheld); ``agreement`` how many members gave the winning label;
    ``probabilities`` the mean of the members' probabilities (zeros where the
    decision is withheld, when ``withhold``).
    """

    members: Sequence[tuple[Predict, tuple[str, ...]]]
    agree: int = 2
    withhold: bool = True
    score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("a consensus needs at least two members")
        if not 1 <= self.agree <= len(self.members):
            raise ValueError(f"agree must be between 1 and {len(self.members)}")

    def __call__(self, inputs: Arrays) -> Arrays:
        answers = []
        for predict, names in self.members:
            view: Mapping[str, npt.NDArray[np.generic]] = {n: inputs[n] for n in names}
            answers.append(member_scores(predict(view), self.score_outputs))
        stacked = _stack(answers)
        n, classes = stacked.shape[1], stacked.shape[2]
        votes = np.zeros((n, classes), np.int64)
        for member in stacked:
            votes[np.arange(n), member.argmax(axis=1)] += 1
        winner = votes.argmax(axis=1)
        count = votes[np.arange(n), winner]
        agreed = count >= self.agree
        label = np.where(agreed, winner, -1).astype(np.int64)
        probabilities = stacked.mean(axis=0)
        if self.withhold:
            probabilities = np.where(agreed[:, None], probabilities, 0.0)
        return {
            "label": label if self.withhold else winner.astype(np.int64),
            "probabilities": probabilities.astype(np.float32),
            "agreement": count.astype(np.int64),
        }
