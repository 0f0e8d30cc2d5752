"""Malicious and benign corpora for the model-file scanner, built by checked-in code.

``build_corpus(out_dir, canary)`` writes every sample under ``out_dir`` and returns
their metadata; ``python -m tests.corpus.generate OUT_DIR`` does the same from a shell
and writes ``manifest.json``. Malicious payloads would only create ``canary`` if run.

>>> import tempfile
>>> from pathlib import Path
>>> from tests.corpus import build_corpus
>>> d = Path(tempfile.mkdtemp())
>>> corpus = build_corpus(d / "corpus", d / "canary" / "CANARY", kinds=("malicious",))
>>> all(s.kind == "malicious" for s in corpus)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.corpus._build import BENIGN, MALICIOUS, Corpus, Sample

__all__ = ["BENIGN", "MALICIOUS", "Corpus", "Sample", "build_corpus"]


def build_corpus(
    out_dir: Path, canary: Path, *, kinds: Sequence[str] = (MALICIOUS, BENIGN)
) -> Corpus:
    """Write the corpus under ``out_dir``; see :func:`tests.corpus.generate.build_corpus`."""
    # Imported here so ``python -m tests.corpus.generate`` does not import itself twice.
    from tests.corpus.generate import build_corpus as build

    return build(out_dir, canary, kinds=kinds)
