"""Pickle streams (protocols 0-5), joblib dumps and legacy PyTorch saves, by allow-list.

Every import a pickle makes is resolved to the module and attribute path
``pickle`` itself would resolve (``fix_imports`` for protocols below 3, dotted
names walked through modules) and judged by
:class:`~atlasguard.artifacts.allowlist.AllowList`: anything not on it is at
least ``high``. Calls whose callable cannot be resolved statically, extension
registry references and BUILD applied to a class are findings too. Bytes
handed to a loader (``pickle.loads``, ``torch.load``...), compressed or
encoded by constant-folded calls, are decoded (bounded) and scanned as nested
pickles.

Every pickle in the stream is read until the end of the file: concatenated
pickles, the five pickles of a legacy PyTorch save (the raw storage bytes
after them are skipped), the raw array bytes joblib writes after each
``NumpyArrayWrapper`` (skipped by their exact size; object arrays are read as
the nested pickles they are).

>>> import io, pickle
>>> from atlasguard.artifacts.formats.pickle import analyze_pickle
>>> [f.rule for f in analyze_pickle(io.BytesIO(b"cos\\nsystem\\n(S'true'\\ntR."))]
['pickle-import']
>>> analyze_pickle(io.BytesIO(pickle.dumps({"weights": [1.0, 2.0]})))
[]
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import replace
from typing import BinaryIO

from atlasguard.artifacts.allowlist import LOADERS, AllowList, importable_module, resolve_import
from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats._pickle_decode import DECODERS, decode, dtype_size
from atlasguard.artifacts.formats._pickle_guard import GUARDED, NOT_HANDLED, Guards
from atlasguard.artifacts.formats._pickle_ops import (
    UNKNOWN,
    CallSite,
    Global,
    Machine,
    Malformed,
    Obj,
    PickleDict,
    Reader,
    Unknown,
)
from atlasguard.artifacts.formats.base import (
    FormatScanner,
    LimitExceeded,
    Limits,
    ScanContext,
)

__all__ = ["SCANNERS", "PickleScanner", "analyze_pickle", "looks_like_pickle"]

_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_NESTED_MAX_DEPTH = 4
_MAX_FINDINGS = 200


class _Analysis:
    """One stream's analysis: the machine's callbacks and the findings they raise."""

    def __init__(self, ctx: ScanContext, allow: AllowList, *, depth: int, origin: str) -> None:
        self.ctx = ctx
        self.allow = allow
        self.depth = depth
        self.origin = origin  # prefix naming a nested pickle in messages
        self.findings: dict[tuple[str, str], Finding] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.kind = "pickle"
        self.machine: Machine | None = None
        self.guards = Guards(self)

    # -- findings -----------------------------------------------------------
    def add(
        self, rule: str, key: str, severity: Severity, message: str, offset: int | None
    ) -> None:
        k = (rule, key)
        if k in self.findings:
            self.counts[k] += 1
            return
        if len(self.findings) >= _MAX_FINDINGS:
            return
        self.counts[k] = 1
        self.findings[k] = Finding(
            rule=rule,
            severity=severity,
            message=self.origin + message,
            location=self.ctx.location(offset),
        )

    def extend(self, findings: Iterable[Finding]) -> None:
        for f in findings:
            self.findings.setdefault((f.rule, f"{f.location}:{f.message}"), f)
            self.counts.setdefault((f.rule, f"{f.location}:{f.message}"), 1)

    def result(self) -> list[Finding]:
        self.guards.finish()
        out = []
        for k, f in self.findings.items():
            n = self.counts.get(k, 1)
            if n > 1:
                f = replace(f, message=f"{f.message} ({n} times)")
            out.append(f)
        return out

    # -- machine callbacks --------------------------------------------------
    def on_import(self, module: str, name: str, offset: int, proto: int) -> object:
        mod, qual = resolve_import(module, name, protocol=proto)
        if (mod, qual) in GUARDED and f"{mod}.{qual}" not in self.allow.extra:
            return self.guards.new(mod, qual, offset)
        verdict = self.allow.verdict(mod, qual)
        if verdict.severity is not None:
            shown = f"{mod}.{qual}"
            via = f" (resolves to {verdict.target})" if verdict.target != shown else ""
            self.add(
                verdict.rule,
                shown,
                verdict.severity,
                f"imports {shown}{via}: {verdict.reason}",
                offset,
            )
        return Global(mod, qual, offset)

    def on_unresolved_import(self, why: str, offset: int) -> None:
        self.add(
            "pickle-import-unresolved",
            why,
            Severity.HIGH,
            f"import the analysis cannot resolve: {why}",
            offset,
        )

    def on_ext(self, code: int, offset: int) -> None:
        self.add(
            "pickle-ext",
            str(code),
            Severity.HIGH,
            f"imports extension-registry code {code} (copyreg), not resolvable statically",
            offset,
        )

    def tick(self, opcodes: int) -> None:
        self.ctx.check_time()
        if opcodes > self.ctx.limits.max_pickle_opcodes:
            raise LimitExceeded(
                f"more than {self.ctx.limits.max_pickle_opcodes} pickle opcodes",
                self.ctx.location(),
            )

    def on_call(self, site: CallSite) -> object:
        guarded = self.guards.on_call(site)
        if guarded is not NOT_HANDLED:
            return guarded
        func = site.callable
        if not isinstance(func, Global):
            what = "an extension-registry object" if func is UNKNOWN else _describe(func)
            self.add(
                "pickle-call-unresolved",
                f"{site.kind}@{site.offset}",
                Severity.HIGH,
                f"{site.kind} calls {what}, which the analysis cannot resolve to an import",
                site.offset,
            )
            return UNKNOWN
        key = (func.module, func.name)
        if key == ("copyreg", "_reconstructor"):
            self._check_reconstructor(site)
        if key in LOADERS or self.allow.verdict(*key).target in (f"{m}.{n}" for m, n in LOADERS):
            self._nested(site, f"{func.module}.{func.name}")
            return UNKNOWN
        if key in DECODERS:
            return decode(key, site.args)
        if key == ("numpy", "dtype") or key[1] == "NumpyArrayWrapper":
            return Obj(func, site.args)
        return Obj(func)

    def _check_reconstructor(self, site: CallSite) -> None:
        args = site.args
        cls = args[0] if isinstance(args, tuple) and args else None
        if isinstance(cls, Global):
            return  # its import was judged on its own
        self.add(
            "pickle-call-unresolved",
            f"reconstructor@{site.offset}",
            Severity.HIGH,
            "copyreg._reconstructor builds a class the analysis cannot resolve",
            site.offset,
        )

    def on_build(self, target: object, state: object, offset: int) -> None:
        self.guards.on_build(target, state, offset)
        if isinstance(target, Global):
            self.add(
                "pickle-build-global",
                f"{target.module}.{target.name}",
                Severity.HIGH,
                f"BUILD sets attributes on {target.module}.{target.name} itself "
                "(monkey-patching a class, function or module)",
                offset,
            )
            return
        if not isinstance(target, Obj):
            return
        name = target.factory.name
        if name == "dtype":
            target.state = state
        elif name == "NumpyArrayWrapper" and target.factory.module == "joblib.numpy_pickle":
            self.kind = "joblib"
            self._skip_joblib_array(state, offset)
        elif name == "NDArrayWrapper" and target.factory.module == "joblib.numpy_pickle":
            self.kind = "joblib"
            self._external_array(state, offset)

    def _external_array(self, state: object, offset: int) -> None:
        """joblib's old ``NDArrayWrapper``: ``joblib.load`` calls
        ``numpy.load(<folder>/<filename>, allow_pickle=True)``, which unpickles that
        file. Named anything but a plain file beside this one, it is ``high``; a
        plain sibling is ``high`` too until :func:`atlasguard.artifacts.scan.settle_siblings`
        sees it scanned in the same run."""
        items = state.items if isinstance(state, PickleDict) else {}
        filename = items.get("filename")
        loads = "joblib.load opens it with numpy.load(allow_pickle=True), which unpickles it"
        if not isinstance(filename, str):
            self.add(
                "joblib-external-file",
                f"unknown@{offset}",
                Severity.HIGH,
                f"joblib NDArrayWrapper names a file the analysis cannot reconstruct; {loads}",
                offset,
            )
            return
        plain = filename not in ("", ".", "..") and not any(c in filename for c in "/\\\0:")
        if not plain or self.ctx.member is not None:
            self.add(
                "joblib-external-file",
                filename,
                Severity.HIGH,
                f"joblib NDArrayWrapper names {filename!r}, not a plain file beside this one; "
                f"{loads}",
                offset,
            )
            return
        k = ("joblib-sibling-file", filename)
        if k not in self.findings and len(self.findings) < _MAX_FINDINGS:
            self.counts[k] = 1
            self.findings[k] = Finding(
                rule="joblib-sibling-file",
                severity=Severity.HIGH,
                message=f"{self.origin}joblib NDArrayWrapper names {filename!r} beside this "
                f"file; {loads}: scan the folder so that file is scanned with this one",
                location=self.ctx.location(offset),
                subject=filename,
            )

    # -- joblib ---------------------------------------------------------------
    def _skip_joblib_array(self, state: object, offset: int) -> None:
        machine = self.machine
        if machine is None:  # pragma: no cover - set before running
            return
        items = state.items if isinstance(state, PickleDict) else {}
        shape, dtype = items.get("shape"), items.get("dtype")
        itemsize, has_object = dtype_size(dtype)
        if has_object:
            machine.run_nested()
        else:
            if (
                not isinstance(shape, tuple)
                or not all(isinstance(d, int) and d >= 0 for d in shape)
                or itemsize is None
            ):
                raise Malformed("cannot tell the size of a joblib inline array", offset)
            count = 1
            for d in shape:
                count *= d
            reader = machine.r
            nbytes = count * itemsize
            alignment = items.get("numpy_array_alignment_bytes")
            if alignment is not None:
                # pickle.load (not joblib) reads on from the padding's length byte
                self._check_pickle_view(reader, 1 + 255 + nbytes)
                at = reader.offset
                padding = reader.take(reader.take(1)[0])
                too_long = not isinstance(alignment, int) or len(padding) > alignment
                if too_long or padding.strip(b"\xff"):
                    self.add(
                        "joblib-padding",
                        f"padding@{at}",
                        Severity.HIGH,
                        f"joblib alignment padding at offset {at} is not what joblib writes "
                        f"({len(padding)} bytes, not all 0xff, or longer than the alignment): "
                        "bytes joblib skips unread, hiding data from it",
                        at,
                    )
            elif nbytes:
                self._check_pickle_view(reader, nbytes)
            reader.skip(nbytes)
        # joblib replaces the wrapper on the stack by the array it read
        if machine.stack:
            machine.stack[-1] = UNKNOWN

    def _check_pickle_view(self, reader: Reader, nbytes: int) -> None:
        """Array bytes that ``pickle.load`` (not joblib) would run as opcodes."""
        start = reader.offset
        window = min(nbytes, 1 << 20)
        reader.fill(min(window, 4096))
        if not looks_like_pickle(reader.buf[reader.pos : reader.pos + min(window, 4096)]):
            return
        reader.fill(window)
        data = reader.buf[reader.pos : reader.pos + window]
        inner = _Analysis(
            self.ctx,
            self.allow,
            depth=self.depth + 1,
            origin=f"{self.origin}joblib array data at offset {start}, "
            "run as opcodes if loaded with pickle instead of joblib: ",
        )
        inner.run(io.BytesIO(data), len(data))
        self.extend(f for f in inner.result() if f.rule.startswith("pickle-"))

    # -- nested pickles -------------------------------------------------------
    def _nested(self, site: CallSite, loader: str) -> None:
        payload = site.args[0] if isinstance(site.args, tuple) and site.args else None
        if isinstance(payload, str):
            payload = payload.encode("latin-1", "replace")
        if not isinstance(payload, bytes):
            self.add(
                "pickle-nested",
                f"{loader}@{site.offset}",
                Severity.CRITICAL,
                f"calls {loader} on data the analysis cannot reconstruct (nested unpickling)",
                site.offset,
            )
            return
        self.add(
            "pickle-nested",
            f"{loader}@{site.offset}",
            Severity.CRITICAL,
            f"calls {loader} on {len(payload)} bytes of embedded data (nested unpickling)",
            site.offset,
        )
        if self.depth >= _NESTED_MAX_DEPTH:
            self.add(
                "limit-exceeded",
                f"nested@{site.offset}",
                Severity.HIGH,
                "nested pickles deeper than the analysis follows",
                site.offset,
            )
            return
        inner = _Analysis(
            self.ctx,
            self.allow,
            depth=self.depth + 1,
            origin=f"{self.origin}nested pickle at offset {site.offset}: ",
        )
        inner.run(io.BytesIO(payload), len(payload))
        self.extend(inner.result())

    # -- driving ----------------------------------------------------------------
    def run(self, stream: BinaryIO, size: int) -> None:
        reader = Reader(stream, 0, size)
        machine = Machine(
            reader,
            on_import=self.on_import,
            on_call=self.on_call,
            on_build=self.on_build,
            on_ext=self.on_ext,
            on_unresolved_import=self.on_unresolved_import,
            tick=self.tick,
        )
        self.machine = machine
        count = 0
        legacy = False
        while not reader.at_eof():
            # torch.load unpickles a legacy file's first five pickles whatever they start with
            strict = count == 0 or (legacy and count < 5) or _strong_start(reader)
            before = len(self.findings)
            try:
                value = machine.run()
            except Malformed as exc:
                if strict or len(self.findings) > before:
                    self.add(
                        "unreadable",
                        "parse",
                        Severity.HIGH,
                        f"pickle stream unreadable at offset {exc.offset}: {exc} "
                        "(every import before this point would have run)",
                        exc.offset,
                    )
                return
            count += 1
            if count == 1 and value == _LEGACY_TORCH_MAGIC and type(value) is int:
                legacy = True
                self.kind = "pytorch-legacy"
            if legacy and count == 5:
                return  # the rest is raw storage data, read by torch, not unpickled


def _strong_start(reader: Reader) -> bool:
    """A stream after a STOP that begins with PROTO is certainly another pickle."""
    reader.fill(2)
    buf = reader.buf
    return len(buf) - reader.pos >= 2 and buf[reader.pos] == 0x80 and buf[reader.pos + 1] <= 5


def _describe(value: object) -> str:
    if isinstance(value, Obj):
        return f"the result of {value.factory.module}.{value.factory.name}(...)"
    if isinstance(value, Unknown):
        return "a value"
    return f"a {type(value).__name__} value"


def analyze_pickle(
    stream: BinaryIO, ctx: ScanContext | None = None, *, allow: Iterable[str] = ()
) -> list[Finding]:
    """Findings for a pickle stream (several pickles, joblib, legacy PyTorch).

    Raises :class:`LimitExceeded` when a limit or the deadline is hit; a
    malformed stream is an ``unreadable`` finding, reported with every finding
    from the opcodes before the error.
    """
    if ctx is None:
        ctx = _standalone_context(allow)
    findings, _ = _analyze(stream, ctx)
    return findings


def _standalone_context(allow: Iterable[str]) -> ScanContext:
    def no_dispatch(_stream: BinaryIO, _ctx: ScanContext) -> list[Finding]:
        return []

    return ScanContext(limits=Limits(), allow=frozenset(allow), dispatch=no_dispatch)


def _analyze(stream: BinaryIO, ctx: ScanContext) -> tuple[list[Finding], str]:
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    analysis = _Analysis(ctx, AllowList(ctx.allow), depth=0, origin="")
    try:
        analysis.run(stream, size)
    except LimitExceeded as exc:
        # report what was found before the limit, then the limit itself
        analysis.add("limit-exceeded", "limit", Severity.HIGH, f"scan stopped: {exc.what}", None)
    return analysis.result(), analysis.kind


_START_OPS = frozenset(b"()]}cNIJKLMFGSTUVXBCP\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x95\x96")


def looks_like_pickle(head: bytes) -> bool:
    """True when ``head`` starts like a pickle an unpickler would start running.

    The head must parse as opcodes the way the unpickler would and reach an
    import, or STOP, or the end of the head: an unpickler stops at the first
    bad opcode, so bytes that fail before any import cannot run anything
    (raw tensor bytes such as the int64 ``128``, ``\\x80\\x00...``, are not a
    pickle). Without PROTO (protocols 0 and 1) a head cut short must also
    hold a few opcodes.

    >>> looks_like_pickle(b"cos\\nsystem\\n")
    True
    >>> looks_like_pickle(b"Hello, world")
    False
    """
    proto = len(head) >= 2 and head[0] == 0x80 and head[1] <= 5
    if not proto and (not head or head[0] not in _START_OPS):
        return False
    seen: list[bool] = []

    def note_import(_m: str, _n: str, offset: int, _p: int) -> object:
        # No module has a name that is not a dotted identifier, so pickle.load stops
        # at such an import: text that starts with "class X(Base):" is no pickle.
        if importable_module(_m):
            seen.append(True)
        return Global(_m, _n, offset)

    # only imports make a pickle dangerous: a call on junk (an int) fails when loaded,
    # and raw tensor bytes must not pass for a pickle because they happen to parse a while
    def note_call(_site: CallSite) -> object:
        return UNKNOWN

    def note_ext(_code: int, _offset: int) -> None:
        return None

    def note_unresolved(_why: str, _offset: int) -> None:
        seen.append(True)

    def nothing_build(_target: object, _state: object, _offset: int) -> None:
        return None

    def nothing_tick(_opcodes: int) -> None:
        return None

    machine = Machine(
        Reader(io.BytesIO(head), 0, len(head)),
        on_import=note_import,
        on_call=note_call,
        on_build=nothing_build,
        on_ext=note_ext,
        on_unresolved_import=note_unresolved,
        tick=nothing_tick,
    )
    try:
        machine.run()
    except Malformed as exc:
        if seen:
            return True
        if "truncated" not in str(exc):
            return False
        return proto or (machine.opcodes >= 8 and len(head) >= 256)
    return machine.opcodes >= 1


class PickleScanner:
    """The pickle format: raw pickles, joblib dumps, legacy PyTorch saves."""

    name = "pickle"

    def sniff(self, head: bytes) -> bool:
        """True for anything an unpickler would start running."""
        return looks_like_pickle(head)

    def scan(self, stream: BinaryIO, ctx: ScanContext) -> Iterable[Finding]:
        """The findings of every pickle in ``stream``."""
        findings, kind = _analyze(stream, ctx)
        if (
            kind != "pickle"
            and ctx.depth == 0
            and ctx.formats_seen
            and ctx.formats_seen[0] == self.name
        ):
            ctx.formats_seen[0] = kind
        return findings


SCANNERS: tuple[FormatScanner, ...] = (PickleScanner(),)
