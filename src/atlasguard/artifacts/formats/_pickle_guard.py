"""Imports judged where they are used, not where they are named.

Three primitives appear in ordinary pickles with their targets in plain sight:

* ``builtins.getattr(<class>, "<name>")``: how protocols 2 and 3 spell a nested
  name (``CyclicLR._triangular_scale_fn``); ``torch.save`` writes protocol 2.
  Judged as the import of the dotted name it spells.
* ``functools.partial(<function>)`` with its state: how pandas 1.x pickled a
  block (``partial(new_block, ndim=2)``). As dangerous as its function, which
  is itself an import judged on its own; calling the partial calls it.
* ``torch.storage._load_from_bytes(<bytes>)``: how a tensor pickled with plain
  ``pickle`` carries its storage, a whole ``torch.save`` file. The bytes are
  scanned as the nested file they are.

Each such import is a :class:`Guarded` value: the machine counts every push of
it, and every push must be consumed by a call whose arguments the analysis
sees and approves. A call it cannot follow is ``critical`` at once; a push that
was never consumed that way (stored in a container, passed as an argument, left
on the stack) makes the import ``critical`` at the end, as the deny table rates
it. So a use the analysis cannot see is never a bypass.
"""

from __future__ import annotations

import io
from typing import Protocol

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._pickle_ops import UNKNOWN, CallSite, Global, Guarded, Obj
from atlasguard.artifacts.formats.base import LimitExceeded, ScanContext, limit_finding

__all__ = ["GUARDED", "NOT_HANDLED", "Guards"]

GUARDED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "getattr"),
        ("functools", "partial"),
        ("torch.storage", "_load_from_bytes"),
    }
)
"""``(module, name)`` of the imports judged where they are used."""

_GETATTR = ("builtins", "getattr")
_PARTIAL = ("functools", "partial")
_REBUILD_FROM_TYPE = ("torch._tensor", "_rebuild_from_type_v2")
# Allowed classes whose constructor opens the model file its arguments name; their
# ordinary pickles rebuild them with NEWOBJ and BUILD, never by calling them.
_READS_FILES = frozenset({("xgboost.core", "Booster"), ("lightgbm.basic", "Booster")})
_MAX_DOTTED = 8  # nested names deeper than any real class

NOT_HANDLED = object()
"""Returned by :meth:`Guards.on_call` for a call that is not its business."""


class _Analysis(Protocol):
    ctx: ScanContext

    def add(
        self, rule: str, key: str, severity: Severity, message: str, offset: int | None
    ) -> None: ...

    def on_import(self, module: str, name: str, offset: int, proto: int) -> object: ...

    def on_call(self, site: CallSite) -> object: ...

    def extend(self, findings: list[Finding]) -> None: ...


class Guards:
    """The guarded imports of one pickle stream and the checks on their uses."""

    def __init__(self, analysis: _Analysis) -> None:
        self.analysis = analysis
        self.seen: list[Guarded] = []

    def new(self, module: str, name: str, offset: int) -> Guarded:
        """The value an import of a guarded name pushes."""
        g = Guarded(module, name, offset)
        if len(self.seen) < 10_000:
            self.seen.append(g)
        else:  # too many to follow: judge it as the deny table does
            self._critical(g, "imported more often than the analysis follows", offset)
        return g

    # -- calls ----------------------------------------------------------------
    def on_call(self, site: CallSite) -> object:
        """The value a call on a guarded import (or a partial) pushes, or NOT_HANDLED."""
        func = site.callable
        if type(func) is Global:
            self._check_plain_call(func, site)
            return NOT_HANDLED
        if isinstance(func, Obj) and (func.factory.module, func.factory.name) == _PARTIAL:
            return self._call_partial(func, site)
        if not isinstance(func, Guarded):
            return NOT_HANDLED
        args = site.args if isinstance(site.args, tuple) else None
        key = (func.module, func.name)
        result: object = NOT_HANDLED
        if key == _GETATTR and site.kind == "REDUCE":
            result = self._getattr(args, site.offset)
        elif key == _PARTIAL and site.kind in ("REDUCE", "NEWOBJ"):
            if args and type(args[0]) is Global:
                result = Obj(func, args)
        elif key == ("torch.storage", "_load_from_bytes") and site.kind == "REDUCE":
            result = self._load_from_bytes(args, site.offset)
        if result is NOT_HANDLED:
            self._critical(
                func, f"{site.kind} with arguments the analysis cannot follow", site.offset
            )
            return UNKNOWN
        func.checked += 1
        return result

    def _check_plain_call(self, func: Global, site: CallSite) -> None:
        key = (func.module, func.name)
        args = site.args
        if key == _REBUILD_FROM_TYPE and isinstance(args, tuple) and len(args) >= 3:
            # torch calls args[0](*args[2]): judge that call as if written directly
            if isinstance(args[0], (Global, Obj)):
                self.analysis.on_call(CallSite("REDUCE", args[0], args[2], site.offset))
            return
        if key in _READS_FILES and site.kind in ("REDUCE", "INST", "OBJ") and args != ():
            self.analysis.add(
                "pickle-call-args",
                f"{key}@{site.offset}",
                Severity.HIGH,
                f"calls {func.module}.{func.name} with arguments: its constructor reads the "
                "file they name (ordinary pickles rebuild it without calling it)",
                site.offset,
            )

    def _getattr(self, args: tuple[object, ...] | None, offset: int) -> object:
        if (
            not args
            or len(args) != 2
            or type(args[0]) is not Global
            or not isinstance(args[1], str)
        ):
            return NOT_HANDLED
        parent, attr = args[0], args[1]
        if not attr.isidentifier() or parent.name.count(".") >= _MAX_DOTTED:
            return NOT_HANDLED
        # the same import protocol 4 spells as one dotted name, judged as such
        return self.analysis.on_import(parent.module, f"{parent.name}.{attr}", offset, 4)

    def _load_from_bytes(self, args: tuple[object, ...] | None, offset: int) -> object:
        payload = args[0] if args and len(args) == 1 else None
        if not isinstance(payload, bytes):
            return NOT_HANDLED
        name = f"<torch.storage._load_from_bytes@{offset}>"
        self.analysis.extend(_scan_nested(self.analysis.ctx, payload, name))
        self.analysis.add(  # one record for all the tensors of a pickle
            "pickle-nested",
            "load_from_bytes",
            Severity.INFO,
            "torch.storage._load_from_bytes loads embedded PyTorch data (a tensor pickled "
            "with pickle); each payload is scanned as the nested file it is",
            offset,
        )
        return UNKNOWN

    def _call_partial(self, partial: Obj, site: CallSite) -> object:
        target = _partial_target(partial)
        if target is None:
            self.analysis.add(
                "pickle-call-unresolved",
                f"partial@{site.offset}",
                Severity.CRITICAL,
                "calls a functools.partial whose function the analysis cannot resolve",
                site.offset,
            )
            return UNKNOWN
        return Obj(target)  # a call of its function, itself an import judged on its own

    # -- state ------------------------------------------------------------------
    def on_build(self, target: object, state: object, offset: int) -> None:
        """BUILD on a partial replaces its function: that one must be resolvable too."""
        if not isinstance(target, Obj) or (target.factory.module, target.factory.name) != _PARTIAL:
            return
        func = state[0] if isinstance(state, tuple) and state else None
        if type(func) is Global:
            target.state = func
            return
        target.state = UNKNOWN
        self.analysis.add(
            "pickle-call-unresolved",
            f"partial-state@{offset}",
            Severity.CRITICAL,
            "sets a functools.partial's function to a value the analysis cannot resolve",
            offset,
        )

    # -- the end ------------------------------------------------------------------
    def finish(self) -> None:
        """Make every guarded import with a use the analysis did not check ``critical``."""
        for g in self.seen:
            if g.pushes > g.checked:
                self._critical(g, "used where the analysis cannot follow it", g.offset)

    def _critical(self, g: Guarded, why: str, offset: int) -> None:
        shown = f"{g.module}.{g.name}"
        self.analysis.add(
            "pickle-import",
            f"guarded:{shown}",
            Severity.CRITICAL,
            f"imports {shown}: {_WHAT[(g.module, g.name)]}, {why}",
            offset,
        )


_WHAT = {
    _GETATTR: "attribute access primitive",
    _PARTIAL: "deferred call",
    ("torch.storage", "_load_from_bytes"): "nested unpickling",
}


def _scan_nested(ctx: ScanContext, payload: bytes, name: str) -> list[Finding]:
    """Scan ``payload`` as a file of any format, with the real dispatcher.

    Not ``ctx.scan_member``: a standalone analysis has no dispatcher, and a payload
    left unscanned would pass for harmless.
    """
    from atlasguard.artifacts.scan import dispatch  # the dispatcher imports this module

    try:
        child = ctx.child(name)
    except LimitExceeded as exc:
        return [limit_finding(exc)]
    child.dispatch = dispatch  # members of the nested file too
    return dispatch(io.BytesIO(payload), child)


def _partial_target(partial: Obj) -> Global | None:
    """The function a partial calls: its BUILD state's when set, else its argument's."""
    if partial.state is not None:
        return partial.state if type(partial.state) is Global else None
    args = partial.args
    if isinstance(args, tuple) and args and type(args[0]) is Global:
        return args[0]
    return None
