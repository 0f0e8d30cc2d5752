"""Which imports a pickle may make: the allow-list, and the deny table that words findings.

Security comes from the allow-list: an import that is not on it is at least a
``high`` finding, whatever its name. The deny table only decides which of those
are ``critical`` (known code-execution, file, network, process and import
primitives) and what the message says.

A known name is rated by what it can do (the table is in
``docs/mitigations/AML.M0016.md``): constructors of the supported libraries are
allowed silently (most derived mechanically from the libraries' own pickles, see
:mod:`atlasguard.artifacts._allowlist_derived`); plain value types and pure
built-in functions are allowed but reported at ``info`` or ``low``; classes of the
author's training script (``__main__``) are ``medium``, since loading needs the
author's code; TorchScript types (``__torch__``) are ``info``.

User entries are ``module.Name`` (allow that import) or ``sha256:<hex>`` (allow
the code a model folder names, by the digest a ``model-code`` finding reports).

Allow entries are exact ``(module, qualname)`` pairs, or tightly scoped
patterns: a module prefix plus a single CapWords class name (no further dots),
so ``torch`` + ``os.system`` can never match an entry by prefix.

>>> from atlasguard.artifacts.allowlist import AllowList, resolve_import
>>> allow = AllowList()
>>> allow.verdict("torch._utils", "_rebuild_tensor_v2").allowed
True
>>> v = allow.verdict(*resolve_import("__builtin__", "eval", protocol=2))
>>> (v.allowed, v.severity.label)
(False, 'critical')
>>> allow.verdict("torch", "os.system").target
'os.system'
>>> v = allow.verdict("argparse", "Namespace")
>>> (v.allowed, v.severity.label)
(True, 'info')
"""

from __future__ import annotations

import _compat_pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass

from atlasguard.artifacts._allowlist_derived import DERIVED
from atlasguard.artifacts.findings import Severity
from atlasguard.errors import UsageError


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


__all__ = [
    "DANGEROUS_MODULES",
    "DIGEST_PREFIX",
    "LOADERS",
    "AllowList",
    "Verdict",
    "digest_entries",
    "importable_module",
    "parse_allow_entry",
    "rated_names",
    "resolve_import",
]

DIGEST_PREFIX = "sha256:"

# Modules whose mere presence on an import path means code execution, file,
# process, network or import power. A dotted path that walks through one of
# these (``torch`` + ``os.system``) resolves into it.
DANGEROUS_MODULES: frozenset[str] = frozenset(
    _words(
        """
os posix nt subprocess _posixsubprocess sys builtins __builtin__ importlib runpy
socket _socket ssl shutil ctypes _ctypes pty code codeop webbrowser pydoc timeit
cProfile profile pdb bdb trace multiprocessing urllib http requests httpx ftplib
smtplib telnetlib poplib imaplib nntplib pickle _pickle cPickle dill cloudpickle
marshal shelve dbm tempfile glob pathlib io _io zipimport pkgutil site sysconfig
distutils setuptools pip asyncio threading _thread signal resource fcntl mmap select
selectors platform gc inspect types operator functools copyreg copy_reg linecache
tokenize compileall py_compile venv ensurepip xmlrpc socketserver wsgiref logging
smtpd asynchat asyncore _winapi winreg msvcrt _osx_support joblib
"""
    )
)

# Callables that load a pickle (or worse) from bytes or a file: a nested pickle.
LOADERS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pickle", "loads"),
        ("pickle", "load"),
        ("_pickle", "loads"),
        ("_pickle", "load"),
        ("pickle", "_loads"),
        ("pickle", "_load"),
        ("dill", "loads"),
        ("dill", "load"),
        ("cloudpickle", "loads"),
        ("cloudpickle", "load"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("numpy", "loads"),
        ("numpy.core.numeric", "loads"),
        ("joblib", "load"),
        ("joblib.numpy_pickle", "load"),
    }
)

_BUILTINS_CRITICAL = frozenset(
    _words(
        """
eval exec compile __import__ open getattr setattr delattr globals locals vars
breakpoint input exit quit help memoryview __loader__ __build_class__ classmethod
staticmethod property super type print dir id hasattr callable license copyright
credits
"""
    )
)

# Function names that are critical in any module (``numpy.testing...os.system``).
_CRITICAL_NAMES = frozenset(
    _words(
        """
system popen popen2 popen3 popen4 execv execve execl execle execlp execlpe execvp
execvpe spawnl spawnle spawnlp spawnlpe spawnv spawnve spawnvp spawnvpe posix_spawn
posix_spawnp startfile fork forkpty kill killpg remove unlink rmdir removedirs
rename replace rmtree chmod chown symlink link truncate putenv unsetenv eval exec
compile __import__ import_module run_module run_path check_output check_call call
run Popen getoutput getstatusoutput loads load attrgetter methodcaller itemgetter
partial reduce getattr setattr delattr open write_text write_bytes locate spawn
create_subprocess_exec create_subprocess_shell FunctionType CodeType LambdaType
MethodType CDLL PyDLL WinDLL cdll pydll dlopen urlopen urlretrieve create_connection
socket interact compile_command timeit repeat runctx runcall set_trace post_mortem
hub jit _inductor modules _getframe settrace setprofile
"""
    )
)

_FIX_NAME = _compat_pickle.NAME_MAPPING
_FIX_MODULE = _compat_pickle.IMPORT_MAPPING

_CAPWORDS = re.compile(r"[A-Z][A-Za-z0-9_]*\Z")

# Names that a CapWords pattern must never admit, even when re-exported by a
# framework module (``from subprocess import Popen`` in some helper module).
_PATTERN_NAME_DENY = frozenset(
    _words(
        """
Popen CDLL PyDLL WinDLL OleDLL LibraryLoader FileIO BufferedWriter BufferedRandom
TextIOWrapper ZipFile TarFile NamedTemporaryFile TemporaryFile SpooledTemporaryFile
TemporaryDirectory Process Pool Thread Timer Manager Listener Client Connection
Socket SocketType HTTPConnection HTTPSConnection Request Session Path PosixPath
WindowsPath Pickler Unpickler Shelf MemoryCachedArray TempMemmap Memory Parallel
FunctionType CodeType ModuleType Interpreter
"""
    )
)

# (module prefix, forbidden module segments): a CapWords class name defined
# in such a module is allowed; test helpers and dataset downloaders are not.
_PATTERNS: tuple[tuple[str, frozenset[str]], ...] = (
    ("torch.nn.modules.", frozenset({"_functions"})),
    (
        "sklearn.",
        frozenset(
            _words(
                """
_testing tests datasets externals _show_versions conftest _build_utils _config
parallel _joblib _mocking estimator_checks _pprint _param_validation
"""
            )
        ),
    ),
)

_TORCH_STORAGES = tuple(
    _words(
        """
FloatStorage DoubleStorage HalfStorage LongStorage IntStorage ShortStorage
CharStorage ByteStorage BoolStorage BFloat16Storage ComplexFloatStorage
ComplexDoubleStorage QUInt8Storage QInt8Storage QInt32Storage QUInt4x2Storage
QUInt2x4Storage UntypedStorage TypedStorage
"""
    )
)
_TORCH_DTYPES = tuple(
    _words(
        """
float32 float float64 double float16 half bfloat16 int8 uint8 int16 short int32 int
int64 long bool complex32 complex64 complex128 cfloat cdouble chalf quint8 qint8
qint32 quint4x2 quint2x4 uint16 uint32 uint64 float8_e4m3fn float8_e5m2
float8_e4m3fnuz float8_e5m2fnuz strided sparse_coo sparse_csr sparse_csc sparse_bsr
sparse_bsc _mkldnn contiguous_format channels_last channels_last_3d preserve_format
per_tensor_affine per_channel_affine per_tensor_symmetric per_channel_symmetric
"""
    )
)

_EXACT: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch._utils", n)
        for n in tuple(
            _words(
                """
_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter
_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor
_rebuild_nested_tensor _rebuild_meta_tensor_no_storage
_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor
_rebuild_wrapper_subclass
"""
            )
        )
    }
    | {
        ("torch", n)
        for n in (
            *_TORCH_STORAGES,
            *_TORCH_DTYPES,
            "device",
            "Size",
            "dtype",
            "Tensor",
            "finfo",
            "iinfo",
            "layout",
            "memory_format",
            "qscheme",
        )
    }
    | {
        ("torch.storage", n)
        for n in ("UntypedStorage", "TypedStorage", "_TypedStorage", "_UntypedStorage")
    }
    | {
        # TorchScript's pickles build lists with these identity functions
        ("torch.jit._pickle", n)
        for n in tuple(
            _words(
                """
build_intlist build_tensorlist build_doublelist build_boollist build_complexlist
build_tensor_from_id restore_type_tag
"""
            )
        )
    }
    | {
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.serialization", "_get_layout"),
        ("torch.nn.parameter", "Parameter"),
        ("torch.nn.parameter", "Buffer"),
        ("torch.nn.parameter", "UninitializedParameter"),
        ("torch.nn.parameter", "UninitializedBuffer"),
        ("torch._utils", "_element_size"),
        ("torch.nn.modules.module", "Module"),
        ("torch._C", "_nn"),
    }
    | {
        (m, n)
        for m in ("numpy.core.multiarray", "numpy._core.multiarray")
        for n in ("_reconstruct", "scalar")
    }
    | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}
    | {
        ("numpy", n)
        for n in tuple(
            _words(
                """
ndarray dtype bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16
float32 float64 complex64 complex128 longdouble str_ bytes_ void datetime64
timedelta64 ma matrix
"""
            )
        )
    }
    | {
        ("numpy.dtypes", n)
        for n in tuple(
            _words(
                """
BoolDType Int8DType Int16DType Int32DType Int64DType UInt8DType UInt16DType
UInt32DType UInt64DType Float16DType Float32DType Float64DType LongDoubleDType
Complex64DType Complex128DType ObjectDType StrDType BytesDType VoidDType
DateTime64DType TimeDelta64DType StringDType
"""
            )
        )
    }
    | {("numpy.ma.core", n) for n in ("MaskedArray", "_mareconstruct", "MaskedConstant")}
    | {
        ("numpy.random._pickle", n)
        for n in (
            "__randomstate_ctor",
            "__bit_generator_ctor",
            "__generator_ctor",
        )
    }
    | {("numpy.random.mtrand", "RandomState"), ("numpy.random._generator", "Generator")}
    | {
        (f"numpy.random._{m.lower()}", m)
        for m in ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")
    }
    | {("numpy.random.bit_generator", n) for n in ("SeedSequence", "__pyx_unpickle_SeedSequence")}
    | {
        ("torch.nn.functional", n)
        for n in tuple(
            _words(
                """
relu relu6 gelu silu elu selu celu leaky_relu sigmoid tanh softmax log_softmax mish
hardswish hardsigmoid glu softplus
"""
            )
        )
    }
    | {("collections", n) for n in ("OrderedDict", "defaultdict", "Counter", "deque")}
    | {
        ("builtins", n)
        for n in tuple(
            _words(
                """
set frozenset bytearray bytes slice complex range object list dict tuple int float
bool str NoneType Ellipsis NotImplemented
"""
            )
        )
    }
    | {("copyreg", "_reconstructor"), ("_codecs", "encode")}
    | {("datetime", n) for n in ("datetime", "date", "time", "timedelta", "timezone")}
    | {
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
        ("fractions", "Fraction"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("joblib.numpy_pickle", "NDArrayWrapper"),
    }
    | {("sklearn.tree._tree", "Tree"), ("sklearn.utils._bunch", "Bunch")}
    # pandas 1.3-1.4 pickled a block as partial(new_block, ndim=...)(values, placement);
    # those versions have no wheels for the Pythons the derivation runs on.
    | {("pandas.core.internals.blocks", "new_block")}
    # pandas with pyarrow installed keeps strings in Arrow arrays (pandas 3's default):
    # the array class, a type named by its alias, a buffer over the pickle's own bytes.
    # The array itself is rebuilt by _restore_array, rated below.
    | {
        ("pandas.arrays", "ArrowStringArray"),
        ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
        ("pyarrow.lib", "type_for_alias"),
        ("pyarrow.lib", "py_buffer"),
    }
)

# Module roots that the deny table calls critical; the messages name the family.
_CRITICAL_ROOTS: dict[str, str] = {
    "os": "operating-system access",
    "posix": "operating-system access",
    "nt": "operating-system access",
    "subprocess": "process execution",
    "_posixsubprocess": "process execution",
    "pty": "process execution",
    "multiprocessing": "process execution",
    "sys": "interpreter internals",
    "importlib": "module import",
    "runpy": "module execution",
    "zipimport": "module import",
    "pkgutil": "module import",
    "code": "code execution",
    "codeop": "code execution",
    "ctypes": "native code loading",
    "_ctypes": "native code loading",
    "socket": "network access",
    "_socket": "network access",
    "ssl": "network access",
    "shutil": "file-system access",
    "tempfile": "file-system access",
    "webbrowser": "process execution",
    "timeit": "code execution",
    "cProfile": "code execution",
    "profile": "code execution",
    "pdb": "code execution",
    "bdb": "code execution",
    "trace": "code execution",
    "urllib": "network access",
    "http": "network access",
    "requests": "network access",
    "httpx": "network access",
    "ftplib": "network access",
    "smtplib": "network access",
    "telnetlib": "network access",
    "poplib": "network access",
    "imaplib": "network access",
    "xmlrpc": "network access",
    "socketserver": "network access",
    "_pickle": "nested unpickling",
    "pickle": "nested unpickling",
    "dill": "nested unpickling",
    "cloudpickle": "nested unpickling",
    "marshal": "code object loading",
    "shelve": "nested unpickling",
    "types": "code object construction",
    "asyncio": "process execution",
    "threading": "thread creation",
    "_thread": "thread creation",
    "signal": "interpreter internals",
    "gc": "interpreter internals",
    "inspect": "interpreter internals",
    "linecache": "file-system access",
    "glob": "file-system access",
    "pathlib": "file-system access",
    "io": "file-system access",
    "_io": "file-system access",
    "_winapi": "process execution",
    "winreg": "registry access",
    "site": "module import",
    "compileall": "code execution",
    "py_compile": "code execution",
    "venv": "process execution",
    "ensurepip": "process execution",
    "pip": "process execution",
    "setuptools": "process execution",
    "distutils": "process execution",
}
_CRITICAL_PAIRS: dict[tuple[str, str], str] = {
    ("pydoc", "locate"): "arbitrary import",
    ("pydoc", "pipepager"): "process execution",
    ("pydoc", "tempfilepager"): "process execution",
    ("operator", "attrgetter"): "attribute access chain",
    ("operator", "methodcaller"): "method call",
    ("operator", "itemgetter"): "item access",
    ("functools", "partial"): "deferred call",
    ("functools", "reduce"): "deferred call",
    ("numpy", "load"): "nested unpickling",
    ("numpy", "loads"): "nested unpickling",
    ("numpy.lib.npyio", "load"): "nested unpickling",
    ("joblib", "load"): "nested unpickling",
    ("copyreg", "__newobj__"): "object construction",
    ("copyreg", "__newobj_ex__"): "object construction",
    # NumPy 1.x's ufunc reconstructor imports any module.attribute its arguments name
    ("numpy.core", "_ufunc_reconstruct"): "arbitrary import",
    ("numpy._core", "_ufunc_reconstruct"): "arbitrary import",
    ("numpy.core._internal", "_ufunc_reconstruct"): "arbitrary import",
}
_CRITICAL_TORCH_PREFIXES = tuple(
    _words(
        """
torch.hub torch.jit torch._inductor torch.serialization torch.utils.cpp_extension
torch._dynamo torch.package torch.distributed torch.utils.data.datapipes
torch._export torch.export torch.fx
"""
    )
)


_VALUE = "a plain value type: building one runs no code and touches no file"
_PATH = "a path value: building one touches no file (its methods are separate names)"
_PURE = "a pure built-in function, called only with the pickle's own data"
_FUTURE = "a __future__ feature flag: a constant"

# Known names that are data or pure functions: allowed, reported for the record.
_RATED: dict[tuple[str, str], tuple[Severity, str]] = {
    ("types", "SimpleNamespace"): (Severity.INFO, _VALUE),
    ("argparse", "Namespace"): (Severity.INFO, _VALUE),
    **{
        (m, n): (Severity.INFO, _PATH)
        for m in ("pathlib", "pathlib._local")
        for n in _words("Path PurePath PosixPath WindowsPath PurePosixPath PureWindowsPath")
    },
    **{
        ("__future__", n): (Severity.INFO, _FUTURE)
        for n in _words(
            """
annotations division absolute_import print_function unicode_literals generators
nested_scopes with_statement generator_stop barry_as_FLUFL _Feature
"""
        )
    },
    ("pyarrow.lib", "_restore_array"): (
        Severity.MEDIUM,
        "rebuilds an Arrow array from the pickle's buffers without validating them "
        "(pyarrow's MakeArray): a crafted pickle can make an array that reads outside its "
        "buffers when used; it runs no code. Loads pass at the default fail_on = high; "
        "set fail_on = medium to refuse them",
    ),
    **{
        ("builtins", n): (Severity.LOW, _PURE)
        for n in _words(
            """
len abs min max sum round divmod pow sorted reversed enumerate zip chr ord bin hex
oct hash repr ascii format isinstance issubclass all any
"""
        )
    },
}

_MAIN = (
    "a class from the author's training script: needs the author's code to load "
    "(the loading program's own __main__ supplies it)"
)
_TORCHSCRIPT = (
    "a TorchScript type, compiled by torch.jit.load from the archive's own code/ "
    "(no Python module of that name exists)"
)


def rated_names() -> dict[tuple[str, str], tuple[Severity, str]]:
    """The known harmless names and how they are reported (for the documentation table)."""
    return dict(_RATED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the allow-list says of one import.

    ``target`` is the dotted path the import resolves to (``os.system`` for
    ``torch`` + ``os.system``). ``severity`` is ``None`` when nothing is to be
    reported; an allowed name may still carry ``info`` or ``low`` (plain values,
    pure built-ins). ``rule`` names the finding a reported verdict raises.
    """

    target: str
    allowed: bool
    severity: Severity | None
    reason: str
    rule: str = "pickle-import"


def resolve_import(module: str, name: str, *, protocol: int) -> tuple[str, str]:
    """The ``(module, qualname)`` that ``pickle`` resolves, applying ``fix_imports``.

    ``pickle`` maps Python 2 names (``__builtin__`` -> ``builtins``,
    ``copy_reg`` -> ``copyreg``) for protocols below 3.

    >>> resolve_import("copy_reg", "_reconstructor", protocol=2)
    ('copyreg', '_reconstructor')
    >>> resolve_import("copy_reg", "_reconstructor", protocol=3)
    ('copy_reg', '_reconstructor')
    """
    if protocol < 3:
        mapped = _FIX_NAME.get((module, name))
        if mapped is not None:
            return mapped
        module = _FIX_MODULE.get(module, module)
    return module, name


_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def parse_allow_entry(entry: str) -> str:
    """Validate a user allow entry and return it normalised.

    ``module.Name`` allows one pickle import; ``sha256:<64 hex digits>`` allows the
    code of a model folder or archive by the digest a ``model-code`` finding names.

    >>> parse_allow_entry(" SHA256:" + "AB" * 32) == "sha256:" + "ab" * 32
    True
    """
    text = entry.strip()
    if text[: len(DIGEST_PREFIX)].lower() == DIGEST_PREFIX:
        digest = text[len(DIGEST_PREFIX) :].lower()
        if not _HEX64.match(digest):
            raise UsageError(
                f"allow entry {entry!r} is not of the form sha256:<64 hexadecimal digits>"
            )
        return DIGEST_PREFIX + digest
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise UsageError(f"allow entry {entry!r} is not of the form module.Name or sha256:<digest>")
    return text


def digest_entries(entries: Iterable[str]) -> frozenset[str]:
    """The hexadecimal digests among (already normalised) allow entries."""
    return frozenset(e[len(DIGEST_PREFIX) :] for e in entries if e.startswith(DIGEST_PREFIX))


def importable_module(module: str) -> bool:
    """True when ``module`` is a dotted identifier, the only names an import can find.

    >>> importable_module("torch.nn"), importable_module("lass M(Module):")
    (True, False)
    """
    return all(part.isidentifier() for part in module.split("."))


def _walk_target(module: str, qualname: str) -> tuple[str, str | None]:
    """Where a (possibly dotted) import lands, and the dangerous module it walks into."""
    segments = module.split(".") + qualname.split(".")
    for i, seg in enumerate(segments):
        joined = ".".join(segments[: i + 1])
        if i > 0 and (seg in DANGEROUS_MODULES or joined in DANGEROUS_MODULES):
            return ".".join(segments[i:]), seg
        if i == 0 and seg in DANGEROUS_MODULES:
            return ".".join(segments), seg
    return f"{module}.{qualname}", None


class AllowList:
    """The built-in allow-list, widened by explicit ``module.Name`` entries.

    >>> AllowList(["mypkg.Model"]).verdict("mypkg", "Model").allowed
    True
    """

    def __init__(self, extra: Iterable[str] = (), *, use_derived: bool = True) -> None:
        entries = frozenset(parse_allow_entry(e) for e in extra)
        self._extra = frozenset(e for e in entries if not e.startswith(DIGEST_PREFIX))
        self._digests = digest_entries(entries)
        self._derived = _DERIVED_EXACT if use_derived else frozenset()
        self._cache: dict[tuple[str, str], Verdict] = {}

    @property
    def extra(self) -> frozenset[str]:
        """The ``module.Name`` entries the user added."""
        return self._extra

    @property
    def digests(self) -> frozenset[str]:
        """The ``sha256:`` digests the user allowed (hexadecimal, without the prefix)."""
        return self._digests

    def is_allowed(self, module: str, qualname: str) -> bool:
        """True when ``module``/``qualname`` (already resolved) is on the allow-list."""
        return self.verdict(module, qualname).allowed

    def verdict(self, module: str, qualname: str) -> Verdict:
        """Classify an import already resolved with :func:`resolve_import`."""
        key = (module, qualname)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._classify(module, qualname)
            if len(self._cache) < 4096:
                self._cache[key] = cached
        return cached

    def _builtin_allowed(self, module: str, qualname: str) -> bool:
        if (module, qualname) in _EXACT or (module, qualname) in self._derived:
            return True
        if "." in qualname or not _CAPWORDS.match(qualname) or qualname in _PATTERN_NAME_DENY:
            return False
        for prefix, forbidden in _PATTERNS:
            if module.startswith(prefix):
                segments = module.split(".")
                if not any(s in forbidden or s in DANGEROUS_MODULES for s in segments[1:]):
                    return all(s.isidentifier() for s in segments)
        return False

    def _classify(self, module: str, qualname: str) -> Verdict:
        full = f"{module}.{qualname}"
        if full in self._extra:
            return Verdict(full, True, None, "allowed by the user")
        if self._builtin_allowed(module, qualname):
            return Verdict(full, True, None, "on the built-in allow-list")
        rated = _RATED.get((module, qualname))
        if rated is not None:
            return Verdict(full, True, rated[0], rated[1])
        target, via = _walk_target(module, qualname)
        critical = self._critical_reason(module, qualname, target, via)
        if critical is not None:
            return Verdict(target, False, Severity.CRITICAL, critical)
        root = module.split(".", 1)[0]
        if via is None and importable_module(module) and qualname.isidentifier():
            if module == "__main__" and not qualname.startswith("__"):
                return Verdict(full, False, Severity.MEDIUM, _MAIN, "pickle-author-code")
            if root == "__torch__":
                return Verdict(full, False, Severity.INFO, _TORCHSCRIPT)
        return Verdict(target, False, Severity.HIGH, "not on the allow-list")

    @staticmethod
    def _critical_reason(module: str, qualname: str, target: str, via: str | None) -> str | None:
        root = module.split(".")[0]
        last = qualname.rsplit(".", 1)[-1]
        builtin_root = root in ("builtins", "__builtin__")
        if builtin_root and (last in _BUILTINS_CRITICAL or "." in qualname):
            return "code execution or attribute access primitive"
        if (
            via is not None
            and via not in ("builtins", "__builtin__")
            and (root != via or "." in qualname or via in _CRITICAL_ROOTS)
        ):
            reason = _CRITICAL_ROOTS.get(via, "dangerous module")
            return f"{reason} (resolves into {via})" if root != via else reason
        if via in ("builtins", "__builtin__") and root not in ("builtins", "__builtin__"):
            return "walks into builtins"
        pair = _CRITICAL_PAIRS.get((module, qualname))
        if pair is not None:
            return pair
        if any(module == p or module.startswith(p + ".") for p in _CRITICAL_TORCH_PREFIXES):
            return "PyTorch loader, compiler or hub primitive"
        if (module, qualname) in LOADERS:
            return "nested unpickling"
        if last in _CRITICAL_NAMES and (
            via is not None or "." in qualname or last in ("system", "popen", "eval", "exec")
        ):
            return "known dangerous function name"
        if target != f"{module}.{qualname}" and via is not None:
            return "dotted path through a dangerous module"
        return None


_DERIVED_EXACT: frozenset[tuple[str, str]] = frozenset(
    (module, name)
    for entries in DERIVED.values()
    for module, _, name in (entry.partition(":") for entry in entries)
)
