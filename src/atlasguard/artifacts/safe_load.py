"""Load pickle-based model files without running what they carry (AML.M0011).

:func:`safe_load` first scans the file statically; a file holding anything
above the allow-list is refused before a single byte is unpickled. What
passes is then loaded through a restricted unpickler whose ``find_class``
imports only allow-listed names (the same allow-list as the scanner), so a
file the scan misjudged still cannot import anything else.
:func:`safe_torch_load` does the same for PyTorch checkpoints with
``torch.load(weights_only=True)``; torch is imported only inside it.

``allow_unsafe=True`` skips both guards and loads with the framework's own
loader: it logs a warning, and the name says what it is.

>>> import os, pickle, tempfile
>>> from atlasguard.artifacts.safe_load import safe_load
>>> path = os.path.join(tempfile.mkdtemp(), "weights.pkl")
>>> with open(path, "wb") as f:
...     pickle.dump({"w": [1.0, 2.0]}, f)
>>> safe_load(path)
{'w': [1.0, 2.0]}
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
from collections.abc import Iterable
from typing import IO, Any

from atlasguard.artifacts.allowlist import AllowList, resolve_import
from atlasguard.artifacts.findings import FileReport, Severity
from atlasguard.artifacts.scan import scan_path
from atlasguard.controls import Control
from atlasguard.errors import UnsafeArtifactError, UsageError

__all__ = ["CONTROLS", "RestrictedUnpickler", "safe_load", "safe_torch_load"]

logger = logging.getLogger("atlasguard")

CONTROLS = (
    Control(
        key="safe_load",
        title="Allow-list model loading",
        mitigates=frozenset({"AML.M0011"}),
        summary="Loads pickle, joblib and PyTorch files through an allow-list unpickler after a "
        "static scan; code-bearing files are refused unless explicitly allowed.",
        enable="load models with atlasguard.artifacts.safe_load.safe_load(path)",
    ),
)

_TORCH_FORMATS = frozenset({"zip", "pytorch-zip", "pytorch", "pytorch-legacy"})
# joblib reads these compressions itself (``joblib.dump(..., compress=...)``)
_COMPRESSED = frozenset({"gzip", "bz2", "xz", "lzma", "zlib", "lz4"})


def _find_allowed(allow: AllowList, module: str, name: str) -> Any:
    # Map Python 2 names ourselves and import exactly what was checked.
    mod, qual = resolve_import(module, name, protocol=2)
    verdict = allow.verdict(mod, qual)
    if not verdict.allowed:
        raise UnsafeArtifactError(
            f"refused to load {mod}.{qual}: {verdict.reason}"
            + (f" (resolves to {verdict.target})" if verdict.target != f"{mod}.{qual}" else "")
        )
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` that imports only allow-listed names.

    >>> import io, pickle
    >>> RestrictedUnpickler(io.BytesIO(b"cos\\nsystem\\n.")).load()
    Traceback (most recent call last):
    ...
    atlasguard.errors.UnsafeArtifactError: refused to load os.system: operating-system access
    """

    def __init__(self, file: IO[bytes], *, allow: Iterable[str] = ()) -> None:
        super().__init__(file)
        self._allow = AllowList(allow)

    def find_class(self, module: str, name: str) -> Any:
        return _find_allowed(self._allow, module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeArtifactError("refused to load a persistent reference (not a plain pickle)")


def _prescan(path: str | os.PathLike[str], allow: Iterable[str], allow_unsafe: bool) -> FileReport:
    reports = scan_path(path, allow=allow)
    if len(reports) != 1:
        raise UsageError(f"{os.fspath(path)} is not a single file")
    report = reports[0]
    bad = [f for f in report.findings if f.severity >= Severity.HIGH]
    if bad and not allow_unsafe:
        listed = "; ".join(f"{f.message} ({f.location})" for f in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnsafeArtifactError(f"refused to load {report.path}: {listed}{more}")
    if bad:
        logger.warning(
            "loading %s despite %d finding(s) because allow_unsafe=True", report.path, len(bad)
        )
    return report


def safe_load(
    path: str | os.PathLike[str], *, allow: Iterable[str] = (), allow_unsafe: bool = False
) -> Any:
    """Load a pickle, joblib or PyTorch file, refusing anything outside the allow-list.

    ``allow`` adds ``module.Name`` entries to the allow-list. Raises
    :class:`UnsafeArtifactError` when the file would import or run anything
    else, :class:`UsageError` for a format this function does not load.
    """
    allow = tuple(allow)
    if allow_unsafe:
        logger.warning(
            "safe_load(%s, allow_unsafe=True): loading without the allow-list", os.fspath(path)
        )
    report = _prescan(path, allow, allow_unsafe)
    fmt = report.format
    if fmt in _TORCH_FORMATS:
        return safe_torch_load(path, allow=allow, allow_unsafe=allow_unsafe, _prescanned=True)
    if fmt == "joblib" or fmt in _COMPRESSED:
        return _load_joblib(path, allow, allow_unsafe)
    if fmt == "pickle":
        with open(path, "rb") as f:
            if allow_unsafe:
                return pickle.load(f)  # noqa: S301 - the caller asked for it, and it was logged
            return RestrictedUnpickler(f, allow=allow).load()
    if fmt == "numpy":
        import numpy as np

        return np.load(path, allow_pickle=allow_unsafe)
    raise UsageError(
        f"safe_load does not load {fmt} files: scan them with `atlasguard scan` "
        "and load them with the framework's own loader"
    )


def _load_joblib(path: str | os.PathLike[str], allow: tuple[str, ...], allow_unsafe: bool) -> Any:
    import joblib
    from joblib import numpy_pickle

    if allow_unsafe:
        return joblib.load(path)
    allowlist = AllowList(allow)

    class _Restricted(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            return _find_allowed(allowlist, module, name)

        def persistent_load(self, pid: Any) -> Any:
            raise UnsafeArtifactError("refused to load a persistent reference")

    filename = os.fspath(path)
    with (
        open(filename, "rb") as f,
        numpy_pickle._validate_fileobject_and_memmap(f, filename, None) as (fobj, _),
    ):
        return _Restricted(filename, fobj, True).load()


def safe_torch_load(
    path: str | os.PathLike[str],
    *,
    allow: Iterable[str] = (),
    allow_unsafe: bool = False,
    map_location: str = "cpu",
    _prescanned: bool = False,
) -> Any:
    """Load a PyTorch checkpoint (zip or legacy) with ``weights_only=True`` after a scan.

    torch is imported here and only here (it is an optional extra); nothing
    the file names is imported. ``allow`` entries are passed to torch's
    ``safe_globals``.
    """
    allow = tuple(allow)
    if not _prescanned:
        _prescan(path, allow, allow_unsafe)
    try:
        # Imported here only, by name, so the core never imports torch at module load.
        torch = importlib.import_module("torch")
    except ModuleNotFoundError as exc:  # pragma: no cover - torch is installed in CI
        raise UsageError("safe_torch_load needs PyTorch: pip install 'atlasguard[torch]'") from exc
    if allow_unsafe:
        logger.warning(
            "safe_torch_load(%s, allow_unsafe=True): weights_only is off", os.fspath(path)
        )
        return torch.load(path, map_location=map_location, weights_only=False)  # nosec
    allowlist = AllowList(allow)
    names = set(allowlist.extra) | set(_torch_globals(torch, path))
    # every global torch would refuse must be on our allow-list; only those are imported
    extra = [_find_allowed(allowlist, *name.rsplit(".", 1)) for name in sorted(names)]
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeArtifactError(f"refused by torch's weights-only loader: {exc}") from exc


def _torch_globals(torch: Any, path: str | os.PathLike[str]) -> list[str]:
    """Globals of a zip checkpoint that torch's weights-only loader does not know."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (AttributeError, ValueError, RuntimeError):  # legacy format, or an older torch
        return []
    return [n for n in names if "." in n]
