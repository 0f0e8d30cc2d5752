"""Static model of the unpickler: reads opcodes, never unpickles.

The :class:`Machine` follows the C unpickler (``_pickle.c``) opcode by opcode:
a stack, a mark stack and a memo, with values kept only as far as the
analysis needs them (strings, small bytes, small tuples, imports, call
results); every other value is one shared :data:`UNKNOWN` placeholder, so
memory does not grow with the data. Frames are read linearly, as the C
unpickler does, so a frame whose length lies cannot hide opcodes.

A run of simple fixed-width data opcodes (small ints, floats, booleans,
``None``, frames) followed by an opcode that pops to the mark is skipped by a
precompiled regular expression, in C, and stands on the stack as a single
placeholder: a pickle of twenty million integers costs a few thousand Python
steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from atlasguard.artifacts.formats._pickle_reader import CHUNK, Malformed, Reader
from atlasguard.artifacts.formats._pickle_text import load_int, load_long, memo_key

__all__ = [
    "UNKNOWN",
    "CallSite",
    "Global",
    "Guarded",
    "Machine",
    "Malformed",
    "Obj",
    "PickleDict",
    "Reader",
    "Unknown",
]

KEEP_STR = 1 << 16  # longer strings become UNKNOWN (an import naming one is unresolved)
KEEP_BYTES = 1 << 20  # longer bytes are skipped, not read into memory
KEEP_TOTAL = 32 << 20  # all kept strings and bytes of one stream together
KEEP_TUPLE = 256
KEEP_DICT = 64
MEMO_KEEP = 300_000  # memo entries whose value is kept (others read back as UNKNOWN)
MAX_STACK = 1_000_000
FAST_MIN = 48  # shorter runs go through the exact path (tuples of ints stay exact)
MAX_RUN = 4 << 20
TIME_CHECK = 1 << 15


class Unknown:
    """A value the analysis does not track (numbers, lists, arrays...)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()
COLLAPSED = Unknown()  # a skipped run of data opcodes: stands for one or more items


@dataclass(slots=True, eq=False)
class Global:
    """An import: ``module``/``name`` as written, after ``fix_imports``."""

    module: str
    name: str
    offset: int


@dataclass(slots=True, eq=False)
class Guarded(Global):
    """An import judged where it is used (``getattr``, ``functools.partial``...).

    The machine counts every push of it onto the stack, so the analysis can tell
    whether each one was consumed where it could be checked.
    """

    pushes: int = 0
    checked: int = 0


@dataclass(slots=True, eq=False)
class Obj:
    """The result of calling an import (kept with its arguments when needed)."""

    factory: Global
    args: object = None
    state: object = None


@dataclass(slots=True, eq=False)
class PickleDict:
    """A small dict with string keys (joblib wrapper state, dtype fields)."""

    items: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallSite:
    """One call the unpickler would make."""

    kind: str  # REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD
    callable: object
    args: object
    offset: int


class _Memo:
    """The unpickler's memo: exact key bookkeeping, values kept only when useful."""

    __slots__ = ("far", "present", "size", "values")

    def __init__(self) -> None:
        self.values: dict[int, object] = {}
        self.present = bytearray()
        self.far: set[int] = set()
        self.size = 0

    def _has(self, key: int) -> bool:
        if key < len(self.present) * 8:
            return bool(self.present[key >> 3] & (1 << (key & 7)))
        return key in self.far

    def put(self, key: int, value: object, offset: int) -> None:
        if key < 0:
            raise Malformed("negative memo key", offset)
        if not self._has(key):
            self.size += 1
            if key < (1 << 27):
                need = (key >> 3) + 1
                if need > len(self.present):
                    self.present.extend(bytes(max(need - len(self.present), 4096)))
                self.present[key >> 3] |= 1 << (key & 7)
            else:
                if len(self.far) > 1_000_000:
                    raise Malformed("memo keys beyond any real pickle", offset)
                self.far.add(key)
        if _worth_keeping(value) and (key in self.values or len(self.values) < MEMO_KEEP):
            self.values[key] = value
        else:
            self.values.pop(key, None)

    def get(self, key: int, offset: int) -> object:
        value = self.values.get(key)
        if value is not None:
            return value
        if self._has(key):
            return UNKNOWN
        raise Malformed(f"memo key {key} was never stored", offset)


def _worth_keeping(value: object) -> bool:
    return isinstance(value, (str, bytes, tuple, Global, Obj))


# Runs of fixed-width data opcodes: BININT, BININT1, BININT2, BINFLOAT, NONE,
# NEWTRUE, NEWFALSE and FRAME (frames carry no value).
_RUN = re.compile(rb"(?:J.{4}|K.|M.{2}|G.{8}|N|\x88|\x89|\x95.{8})+", re.DOTALL)
_RUN_START = frozenset(b"JKMGN\x88\x89")
_MARK_CONSUMERS = frozenset(b"eutld\x90\x911")

_LINE_OPS = {ord("F"), ord("I"), ord("L"), ord("S"), ord("V"), ord("P"), ord("g"), ord("p")}


class Machine:
    """Run the opcodes of one stream, reporting imports and calls to callbacks.

    ``on_import(module, name, offset)`` returns the value pushed for an import;
    ``on_call(site)`` returns the value a call pushes; ``on_build(target,
    state, offset)`` runs after BUILD and may consume inline data (joblib);
    ``on_ext(code, offset)`` reports an extension-registry reference.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        on_import: Callable[[str, str, int, int], object],
        on_call: Callable[[CallSite], object],
        on_build: Callable[[object, object, int], None],
        on_ext: Callable[[int, int], None],
        on_unresolved_import: Callable[[str, int], None],
        tick: Callable[[int], None],
    ) -> None:
        self.r = reader
        self.on_import = on_import
        self.on_call = on_call
        self.on_build = on_build
        self.on_ext = on_ext
        self.on_unresolved_import = on_unresolved_import
        self.tick = tick
        self.opcodes = 0
        self.no_fast_until = -1
        self.kept = 0
        self.proto = 0
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo = _Memo()

    # -- values -------------------------------------------------------------
    def _keep_str(self, data: bytes, offset: int, *, encoding: str = "utf-8") -> object:
        if len(data) > 128 and (len(data) > KEEP_STR or self.kept + len(data) > KEEP_TOTAL):
            return UNKNOWN
        try:
            text = data.decode(encoding, "surrogatepass")
        except UnicodeDecodeError as exc:
            raise Malformed("invalid string data", offset) from exc
        if len(data) > 128:
            self.kept += len(data)
        return text

    def _bytes(self, n: int, offset: int) -> object:
        if n < 0:
            raise Malformed("negative byte count", offset)
        if n > KEEP_BYTES or self.kept + n > KEEP_TOTAL:
            self.r.skip(n)
            return UNKNOWN
        self.kept += n
        return self.r.take(n)

    def _pop(self, offset: int) -> object:
        stack = self.stack
        if not stack or (self.marks and len(stack) <= self.marks[-1]):
            raise Malformed("unpickling stack underflow", offset)
        return stack.pop()

    def _pop_mark(self, offset: int) -> list[object]:
        if not self.marks:
            raise Malformed("could not find MARK", offset)
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def _top(self, offset: int) -> object:
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise Malformed("unpickling stack underflow", offset)
        return self.stack[-1]

    def _push(self, value: object, offset: int) -> None:
        if len(self.stack) >= MAX_STACK:
            raise Malformed(f"stack deeper than {MAX_STACK} items", offset)
        if type(value) is Guarded:
            value.pushes += 1
        self.stack.append(value)

    # -- the run ------------------------------------------------------------
    def run(self) -> object:
        """Read one pickle up to and including STOP; return the value it yields."""
        r = self.r
        self.proto = 0
        self.stack, self.marks, self.memo = [], [], _Memo()
        stack = self.stack
        memo = self.memo
        marks = self.marks
        while True:
            pos = r.pos
            buf = r.buf
            if len(buf) - pos < 300:  # keep the inline cases below within the buffer
                r.fill(300)
                pos, buf = r.pos, r.buf
                if pos >= len(buf):
                    raise Malformed("pickle data was truncated (no STOP)", r.offset)
            op = buf[pos]
            if op in _RUN_START and marks:
                if self._fast_run():
                    continue
                pos, buf = r.pos, r.buf  # the attempt may have refilled the buffer
            offset = r.base + pos
            self.opcodes += 1
            if self.opcodes & (TIME_CHECK - 1) == 0:
                self.tick(self.opcodes)
            # the commonest opcodes inline, read straight from the buffer
            if len(buf) - pos >= 300 and len(stack) < MAX_STACK:
                if op == 0x8C:  # SHORT_BINUNICODE
                    n = buf[pos + 1]
                    r.pos = pos + 2 + n
                    stack.append(self._keep_str(buf[pos + 2 : pos + 2 + n], offset))
                    continue
                if op == 0x94 and stack and (not marks or len(stack) > marks[-1]):  # MEMOIZE
                    r.pos = pos + 1
                    memo.put(memo.size, stack[-1], offset)
                    continue
                if op == 0x71 and stack and (not marks or len(stack) > marks[-1]):  # BINPUT
                    r.pos = pos + 2
                    memo.put(buf[pos + 1], stack[-1], offset)
                    continue
                if op == 0x4B:  # BININT1
                    r.pos = pos + 2
                    stack.append(buf[pos + 1])
                    continue
                if op == 0x28:  # MARK
                    r.pos = pos + 1
                    marks.append(len(stack))
                    continue
            r.pos = pos + 1
            if op == 0x2E:  # STOP
                return self._pop(offset)
            self._step(op, offset, stack)

    def run_nested(self) -> object:
        """Read a pickle embedded in this one (joblib object arrays), then resume."""
        saved = (self.stack, self.marks, self.memo, self.proto, self.no_fast_until)
        try:
            return self.run()
        finally:
            self.stack, self.marks, self.memo, self.proto, self.no_fast_until = saved

    def _fast_run(self) -> bool:
        r = self.r
        if r.offset < self.no_fast_until:
            return False
        r.fill(FAST_MIN + 16)
        m = _RUN.match(r.buf, r.pos)
        if m is None:
            return False
        end = m.end()
        while end >= len(r.buf) - 16 and len(r.buf) - r.pos < MAX_RUN:
            before = len(r.buf) - r.pos
            if not r.fill(before + CHUNK) and len(r.buf) - r.pos == before:
                break
            m = _RUN.match(r.buf, r.pos)
            if m is None:  # pragma: no cover - the prefix matched before
                return False
            end = m.end()
        length = end - r.pos
        if length < FAST_MIN or end >= len(r.buf) or r.buf[end] not in _MARK_CONSUMERS:
            self.no_fast_until = r.base + end
            return False
        self._push(COLLAPSED, r.offset)
        r.pos = end
        self.opcodes += length // 2
        self.tick(self.opcodes)
        return True

    def _step(self, op: int, offset: int, stack: list[object]) -> None:
        r = self.r
        if op == 0x4B:  # BININT1
            self._push(r.take(1)[0], offset)
        elif op == 0x4A:  # BININT
            self._push(int.from_bytes(r.take(4), "little", signed=True), offset)
        elif op == 0x4D:  # BININT2
            self._push(int.from_bytes(r.take(2), "little"), offset)
        elif op in (0x4E, 0x88, 0x89):  # NONE NEWTRUE NEWFALSE
            self._push(None if op == 0x4E else op == 0x88, offset)
        elif op == 0x47:  # BINFLOAT
            r.take(8)
            self._push(UNKNOWN, offset)
        elif op == 0x8C:  # SHORT_BINUNICODE
            self._push(self._keep_str(r.take(r.take(1)[0]), offset), offset)
        elif op == 0x58:  # BINUNICODE
            n = int.from_bytes(r.take(4), "little")
            self._push(self._str_n(n, offset), offset)
        elif op == 0x8D:  # BINUNICODE8
            n = int.from_bytes(r.take(8), "little")
            self._push(self._str_n(n, offset), offset)
        elif op == 0x43:  # SHORT_BINBYTES
            self._push(self._bytes(r.take(1)[0], offset), offset)
        elif op == 0x42:  # BINBYTES
            self._push(self._bytes(int.from_bytes(r.take(4), "little"), offset), offset)
        elif op in (0x8E, 0x96):  # BINBYTES8 BYTEARRAY8
            value = self._bytes(int.from_bytes(r.take(8), "little"), offset)
            self._push(value if op == 0x8E else UNKNOWN, offset)
        elif op == 0x55:  # SHORT_BINSTRING
            self._push(self._keep_str(r.take(r.take(1)[0]), offset, encoding="latin-1"), offset)
        elif op == 0x54:  # BINSTRING
            n = int.from_bytes(r.take(4), "little", signed=True)
            if n < 0:
                raise Malformed("BINSTRING pickle has negative byte count", offset)
            self._push(self._str_n(n, offset, encoding="latin-1"), offset)
        elif op == 0x94:  # MEMOIZE
            self.memo.put(self.memo.size, self._top(offset), offset)
        elif op == 0x71:  # BINPUT
            self.memo.put(r.take(1)[0], self._top(offset), offset)
        elif op == 0x72:  # LONG_BINPUT
            self.memo.put(int.from_bytes(r.take(4), "little"), self._top(offset), offset)
        elif op == 0x68:  # BINGET
            self._push(self.memo.get(r.take(1)[0], offset), offset)
        elif op == 0x6A:  # LONG_BINGET
            self._push(self.memo.get(int.from_bytes(r.take(4), "little"), offset), offset)
        elif op == 0x28:  # MARK
            self.marks.append(len(stack))
        elif op in (0x65, 0x75, 0x90, 0x31):  # APPENDS SETITEMS ADDITEMS POP_MARK
            items = self._pop_mark(offset)
            if op != 0x31:
                target = self._top(offset)
                if op == 0x75:
                    if len(items) % 2 and COLLAPSED not in items:
                        raise Malformed("odd number of items for SETITEMS", offset)
                    if isinstance(target, PickleDict):
                        self._setitems(target, items)
        elif op in (0x61, 0x73):  # APPEND SETITEM
            value = self._pop(offset)
            if op == 0x73:
                key = self._pop(offset)
                target = self._top(offset)
                if isinstance(target, PickleDict):
                    self._setitem(target, key, value)
            else:
                self._top(offset)
        elif op in (0x7D, 0x5D, 0x29, 0x8F):  # EMPTY_DICT EMPTY_LIST EMPTY_TUPLE EMPTY_SET
            self._push(PickleDict() if op == 0x7D else () if op == 0x29 else UNKNOWN, offset)
        elif op in (0x85, 0x86, 0x87):  # TUPLE1 TUPLE2 TUPLE3
            n = op - 0x84
            if len(stack) < n or (self.marks and len(stack) - n < self.marks[-1]):
                raise Malformed("unpickling stack underflow", offset)
            items = stack[-n:]
            del stack[-n:]
            stack.append(tuple(items))
        elif op == 0x74:  # TUPLE
            items = self._pop_mark(offset)
            self._push(tuple(items) if len(items) <= KEEP_TUPLE else UNKNOWN, offset)
        elif op in (0x6C, 0x91):  # LIST FROZENSET
            self._pop_mark(offset)
            self._push(UNKNOWN, offset)
        elif op == 0x64:  # DICT
            items = self._pop_mark(offset)
            if len(items) % 2 and COLLAPSED not in items:
                raise Malformed("odd number of items for DICT", offset)
            d = PickleDict()
            self._setitems(d, items[: 2 * KEEP_DICT])
            self._push(d, offset)
        elif op == 0x95:  # FRAME: read linearly, as the C unpickler does
            r.take(8)
        elif op == 0x80:  # PROTO
            proto = r.take(1)[0]
            if proto > 5:
                raise Malformed(f"unsupported pickle protocol: {proto}", offset)
            self.proto = proto
        elif op == 0x8A:  # LONG1
            data = r.take(r.take(1)[0])
            self._push(int.from_bytes(data, "little", signed=True), offset)
        elif op == 0x8B:  # LONG4
            n = int.from_bytes(r.take(4), "little", signed=True)
            if n < 0:
                raise Malformed("LONG pickle has negative byte count", offset)
            if n <= 64:
                self._push(int.from_bytes(r.take(n), "little", signed=True), offset)
            else:
                r.skip(n)
                self._push(UNKNOWN, offset)
        elif op == 0x30:  # POP
            if stack and (not self.marks or len(stack) > self.marks[-1]):
                stack.pop()
            elif self.marks:
                self.marks.pop()
            else:
                raise Malformed("unpickling stack underflow", offset)
        elif op == 0x32:  # DUP
            self._push(self._top(offset), offset)
        elif op in _LINE_OPS:
            self._line_op(op, offset)
        elif op == 0x63:  # GLOBAL
            module, name = self._line_str(offset), self._line_str(offset)
            self._push(self._import(module, name, offset), offset)
        elif op == 0x69:  # INST
            inst_module, inst_name = self._line_str(offset), self._line_str(offset)
            inst_args = tuple(self._pop_mark(offset))
            cls = self._import(inst_module, inst_name, offset)
            self._push(self.on_call(CallSite("INST", cls, inst_args, offset)), offset)
        elif op == 0x93:  # STACK_GLOBAL
            sg_name = self._pop(offset)
            sg_module = self._pop(offset)
            if isinstance(sg_module, str) and isinstance(sg_name, str):
                self._push(self._import(sg_module, sg_name, offset), offset)
            elif isinstance(sg_module, (str, Unknown, Obj, Global)) and isinstance(
                sg_name, (str, Unknown, Obj, Global)
            ):
                self.on_unresolved_import(
                    "STACK_GLOBAL with names the analysis lost track of", offset
                )
                self._push(UNKNOWN, offset)
            else:
                raise Malformed("STACK_GLOBAL requires str", offset)
        elif op in (0x82, 0x83, 0x84):  # EXT1 EXT2 EXT4
            code = int.from_bytes(
                r.take({0x82: 1, 0x83: 2, 0x84: 4}[op]), "little", signed=op == 0x84
            )
            self.on_ext(code, offset)
            self._push(UNKNOWN, offset)
        elif op == 0x52:  # REDUCE
            args = self._pop(offset)
            func = self._pop(offset)
            self._push(self.on_call(CallSite("REDUCE", func, args, offset)), offset)
        elif op == 0x81:  # NEWOBJ
            args = self._pop(offset)
            cls = self._pop(offset)
            self._push(self.on_call(CallSite("NEWOBJ", cls, args, offset)), offset)
        elif op == 0x92:  # NEWOBJ_EX
            self._pop(offset)
            args = self._pop(offset)
            cls = self._pop(offset)
            self._push(self.on_call(CallSite("NEWOBJ_EX", cls, args, offset)), offset)
        elif op == 0x6F:  # OBJ
            items = self._pop_mark(offset)
            if not items:
                raise Malformed("OBJ without a class", offset)
            self._push(self.on_call(CallSite("OBJ", items[0], tuple(items[1:]), offset)), offset)
        elif op == 0x62:  # BUILD
            state = self._pop(offset)
            target = self._top(offset)
            self.on_build(target, state, offset)
        elif op == 0x51:  # BINPERSID
            pid = self._pop(offset)
            # legacy PyTorch: ('module', <class>, file, source) loads as the class itself
            if (
                isinstance(pid, tuple)
                and len(pid) > 1
                and pid[0] == "module"
                and isinstance(pid[1], Global)
            ):
                self._push(pid[1], offset)
            else:
                self._push(UNKNOWN, offset)
        elif op in (0x97, 0x98):  # NEXT_BUFFER READONLY_BUFFER
            if op == 0x97:
                self._push(UNKNOWN, offset)
            else:
                self._top(offset)
        else:
            raise Malformed(f"invalid load key {bytes([op])!r}", offset)

    def _str_n(self, n: int, offset: int, *, encoding: str = "utf-8") -> object:
        if n > 128 and (n > KEEP_STR or self.kept + n > KEEP_TOTAL):
            self.r.skip(n)
            return UNKNOWN
        return self._keep_str(self.r.take(n), offset, encoding=encoding)

    @classmethod
    def _setitems(cls, target: PickleDict, items: list[object]) -> None:
        # A collapsed run stands for an unknown number of items: past it, keys and
        # values can no longer be paired (an odd count there crashed the scanner).
        for i in range(0, len(items) - 1, 2):
            if items[i] is COLLAPSED or items[i + 1] is COLLAPSED:
                return
            cls._setitem(target, items[i], items[i + 1])

    @staticmethod
    def _setitem(target: PickleDict, key: object, value: object) -> None:
        if isinstance(key, str) and (key in target.items or len(target.items) < KEEP_DICT):
            target.items[key] = value

    def _line_str(self, offset: int) -> str:
        data = self.r.line()
        if data is None:
            raise Malformed("import name longer than any real module", offset)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Malformed("import name is not UTF-8", offset) from exc

    def _line_op(self, op: int, offset: int) -> None:
        data = self.r.line()
        if op in (0x67, 0x70):  # GET PUT
            if data is None:
                raise Malformed("memo key longer than the scanner reads", offset)
            try:
                key = memo_key(data)
            except ValueError as exc:
                raise Malformed(f"invalid memo key: {exc}", offset) from None
            if op == 0x67:
                self._push(self.memo.get(key, offset), offset)
            else:
                self.memo.put(key, self._top(offset), offset)
        elif op == 0x50:  # PERSID
            self._push(UNKNOWN, offset)
        elif op in (0x49, 0x4C):  # INT LONG
            self._push(_text_int(data, offset, load_int if op == 0x49 else load_long), offset)
        elif op == 0x46:  # FLOAT
            self._push(UNKNOWN, offset)
        elif op == 0x53:  # STRING
            self._push(_text_string(data, offset), offset)
        else:  # UNICODE
            if data is None:
                self._push(UNKNOWN, offset)
            else:
                try:
                    self._push(data.decode("raw-unicode-escape"), offset)
                except UnicodeDecodeError as exc:
                    raise Malformed("invalid UNICODE data", offset) from exc

    def _import(self, module: str, name: str, offset: int) -> object:
        return self.on_import(module, name, offset, self.proto)


def _text_int(
    data: bytes | None, offset: int, load: Callable[[bytes], int | bool | None]
) -> object:
    """An INT or LONG argument, parsed as ``_pickle.c`` parses it (see ``_pickle_text``)."""
    if data is None:
        return UNKNOWN
    try:
        value = load(data)
    except ValueError as exc:
        raise Malformed(f"invalid literal for int: {exc}", offset) from None
    return UNKNOWN if value is None else value


def _text_string(data: bytes | None, offset: int) -> object:
    if data is None:
        return UNKNOWN
    if len(data) >= 2 and data[0] == data[-1] and data[:1] in (b"'", b'"'):
        import codecs

        try:
            return codecs.escape_decode(data[1:-1])[0].decode("latin-1")
        except ValueError as exc:
            raise Malformed("invalid STRING data", offset) from exc
    raise Malformed("the STRING opcode argument must be quoted", offset)
