"""Write the scanner corpus: ``python -m tests.corpus.generate OUT_DIR [--canary PATH]``.

Writes ``OUT_DIR/malicious/...``, ``OUT_DIR/benign/...`` and ``OUT_DIR/manifest.json``
(one record per sample: path relative to ``OUT_DIR``, kind, trick, format, minimum
severity, group). The canary defaults to ``OUT_DIR/canary/CANARY`` and must not exist
afterwards; nothing here ever loads a sample.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> samples = build_corpus(d / "c", d / "canary" / "CANARY", kinds=("benign",))
>>> (d / "canary" / "CANARY").exists()
False
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.corpus._build import BENIGN, MALICIOUS, Corpus
from tests.corpus.benign import build_benign
from tests.corpus.malicious import build_malicious

__all__ = ["SENTINEL_DIR", "build_corpus", "main", "write_manifest"]

SENTINEL_DIR = "sentinel-dir"
"""A directory next to the canary that the ``shutil.rmtree`` sample targets; it must survive."""


def build_corpus(
    out_dir: Path, canary: Path, *, kinds: Sequence[str] = (MALICIOUS, BENIGN)
) -> Corpus:
    """Write the corpus under ``out_dir``; payloads name ``canary`` (which is not created)."""
    out_dir = Path(out_dir).resolve()
    canary = Path(canary).resolve()
    canary.parent.mkdir(parents=True, exist_ok=True)
    (canary.parent / SENTINEL_DIR).mkdir(exist_ok=True)
    corpus: Corpus = []
    if MALICIOUS in kinds:
        corpus += build_malicious(out_dir / MALICIOUS, canary)
    if BENIGN in kinds:
        corpus += build_benign(out_dir / BENIGN)
    tricks = [s.trick for s in corpus]
    duplicates = {t for t in tricks if tricks.count(t) > 1}
    if duplicates:
        raise ValueError(f"duplicate trick names: {sorted(duplicates)}")
    return corpus


def write_manifest(corpus: Corpus, out_dir: Path, canary: Path) -> Path:
    """``out_dir/manifest.json``: the samples, with paths relative to ``out_dir``."""
    out_dir = Path(out_dir).resolve()
    path = out_dir / "manifest.json"
    doc = {"canary": str(Path(canary).resolve()), "samples": [s.as_json(out_dir) for s in corpus]}
    path.write_text(json.dumps(doc, indent=1))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--canary", type=Path, default=None)
    parser.add_argument("--kind", choices=(MALICIOUS, BENIGN), action="append")
    args = parser.parse_args(argv)
    canary = args.canary or args.out_dir / "canary" / "CANARY"
    corpus = build_corpus(args.out_dir, canary, kinds=args.kind or (MALICIOUS, BENIGN))
    manifest = write_manifest(corpus, args.out_dir, canary)
    n_mal = sum(s.kind == MALICIOUS for s in corpus)
    print(f"{n_mal} malicious and {len(corpus) - n_mal} benign samples; manifest {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
