"""Derive the allow-list of the supported libraries from their own pickles (issue 12).

Every object of :mod:`tests.corpus.benign_libs` is pickled (protocols 2 to 5, and
``torch.save`` for PyTorch objects) and the names each pickle imports are collected by
the scanner's own opcode machine, so they are exactly the names the scanner judges.
Names the built-in tables already allow, or rate as harmless, are left out; a name the
deny table calls critical is never derived (it is reported, for a person to handle).

``python -m tests.corpus.derive_allowlist`` rewrites
``src/atlasguard/artifacts/_allowlist_derived.py`` as the union of what it holds and
what the installed versions derive, so names of older library versions stay. Run it
after upgrading a library; ``tests/artifacts/test_allowlist_derived.py`` fails until
then.

>>> sorted(imports_of(b"cos\\nsystem\\n(S'x'\\ntR."))
[('os', 'system')]
"""

from __future__ import annotations

import argparse
import ast
import io
import pickle
import sys
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from atlasguard.artifacts.allowlist import AllowList, resolve_import
from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.formats._pickle_guard import GUARDED
from atlasguard.artifacts.formats._pickle_ops import (
    UNKNOWN,
    CallSite,
    Global,
    Machine,
    Malformed,
    Reader,
)
from tests.corpus.benign_libs import _quiet, library_objects, library_versions

__all__ = ["DERIVED_FILE", "derive", "imports_of", "main", "pickles_of", "read_derived"]

DERIVED_FILE = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "atlasguard"
    / "artifacts"
    / "_allowlist_derived.py"
)


def imports_of(data: bytes) -> set[tuple[str, str]]:
    """``(module, name)`` of every import in the pickles of ``data``, as pickle resolves them."""
    found: set[tuple[str, str]] = set()

    def on_import(module: str, name: str, offset: int, proto: int) -> object:
        found.add(resolve_import(module, name, protocol=proto))
        return Global(module, name, offset)

    def on_call(site: CallSite) -> object:
        # getattr(<class>, "<name>") spells a nested name, as the scanner reads it
        args = site.args
        if (
            isinstance(site.callable, Global)
            and (site.callable.module, site.callable.name)
            in (("builtins", "getattr"), ("__builtin__", "getattr"))
            and isinstance(args, tuple)
            and len(args) == 2
            and isinstance(args[0], Global)
            and isinstance(args[1], str)
        ):
            module, name = resolve_import(args[0].module, args[0].name, protocol=4)
            found.add((module, f"{name}.{args[1]}"))
            return Global(module, f"{name}.{args[1]}", site.offset)
        return UNKNOWN

    machine = Machine(
        Reader(io.BytesIO(data), 0, len(data)),
        on_import=on_import,
        on_call=on_call,
        on_build=lambda _t, _s, _o: None,
        on_ext=lambda _c, _o: None,
        on_unresolved_import=lambda _w, _o: None,
        tick=lambda _n: None,
    )
    while not machine.r.at_eof():
        try:
            machine.run()
        except Malformed:
            break  # legacy torch files end in raw storage bytes
    return found


def pickles_of(lib: str, obj: Any) -> Iterable[bytes]:
    """Every pickle stream ``obj``'s users would write."""
    for proto in (2, 3, 4, 5):
        try:
            yield pickle.dumps(obj, protocol=proto)
        except Exception:  # not every object pickles under every protocol
            continue
    if lib == "torch":
        import torch

        buf = io.BytesIO()
        try:
            with _quiet():
                torch.save(obj, buf)
        except Exception:
            return
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            for name in zf.namelist():
                if name.endswith(".pkl"):
                    yield zf.read(name)


def derive(
    *, exhaustive: bool = True, only: Sequence[str] | None = None
) -> tuple[dict[str, set[tuple[str, str]]], set[str]]:
    """``(library -> names to allow, names the deny table refuses)`` for the installed versions."""
    base = AllowList(use_derived=False)
    derived: dict[str, set[tuple[str, str]]] = {}
    refused: set[str] = set()
    for lib, objs in library_objects(only, exhaustive=exhaustive).items():
        names = derived.setdefault(lib, set())
        for obj in objs.values():
            for data in pickles_of(lib, obj):
                for module, name in imports_of(data):
                    verdict = base.verdict(module, name)
                    if verdict.allowed or (module, name) in GUARDED:
                        continue
                    if verdict.severity is not None and verdict.severity >= Severity.CRITICAL:
                        refused.add(f"{module}.{name} ({lib}): {verdict.reason}")
                        continue
                    if verdict.severity is not None and verdict.severity < Severity.HIGH:
                        continue  # a rated kind of its own (``__main__``, TorchScript types)
                    names.add((module, name))
    return derived, refused


def read_derived(
    path: Path = DERIVED_FILE,
) -> tuple[dict[str, set[tuple[str, str]]], dict[str, set[str]]]:
    """The names and versions a derived file holds (empty when it does not exist)."""
    if not path.exists():
        return {}, {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            values[node.target.id] = ast.literal_eval(node.value)
    names = {
        lib: {tuple(entry.split(":", 1)) for entry in entries}  # type: ignore[misc]
        for lib, entries in values.get("DERIVED", {}).items()
    }
    versions = {lib: set(v) for lib, v in values.get("VERSIONS", {}).items()}
    return names, versions  # type: ignore[return-value]


def render(names: dict[str, set[tuple[str, str]]], versions: dict[str, set[str]]) -> str:
    """The text of the derived module."""
    lines = [
        '"""Names the supported libraries\' own pickles import: generated, do not edit.',
        "",
        "Written by ``python -m tests.corpus.derive_allowlist``, which pickles ordinary",
        "objects of each library (fitted estimators, boosters, results, frames, modules,",
        "optimizers...) with every protocol and records the imports. Each run adds the",
        "names of the installed versions to those already here; ``VERSIONS`` lists the",
        "versions derived from. A name the deny table calls critical is never derived.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        '__all__ = ["DERIVED", "VERSIONS"]',
        "",
        "VERSIONS: dict[str, tuple[str, ...]] = {",
    ]
    for lib in sorted(versions):
        vs = ", ".join(f'"{v}"' for v in sorted(versions[lib]))
        lines.append(f'    "{lib}": ({vs},),')
    lines += ["}", "", "DERIVED: dict[str, tuple[str, ...]] = {"]
    for lib in sorted(names):
        if not names[lib]:
            continue
        lines.append(f'    "{lib}": (')
        lines += [f'        "{m}:{n}",' for m, n in sorted(names[lib])]
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Derive, merge into the shipped file, report refused names."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report missing names")
    parser.add_argument("--only", nargs="*", help="derive only these libraries")
    args = parser.parse_args(argv)
    derived, refused = derive(only=args.only)
    names, versions = read_derived()
    missing = {lib: found - names.get(lib, set()) for lib, found in derived.items()}
    for lib, new in missing.items():
        for module, name in sorted(new):
            print(f"new: {lib}: {module}.{name}")
    for line in sorted(refused):
        print(f"refused (deny table): {line}", file=sys.stderr)
    if args.check:
        return 1 if any(missing.values()) else 0
    for lib, found in derived.items():
        names.setdefault(lib, set()).update(found)
    for lib, version in library_versions(args.only).items():
        versions.setdefault(lib, set()).add(version)
    DERIVED_FILE.write_text(render(names, versions), encoding="utf-8")
    print(f"wrote {DERIVED_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
