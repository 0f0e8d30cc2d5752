"""The allow-list: exact entries, tight patterns, the deny table, user entries."""

from __future__ import annotations

import pytest

from atlasguard.artifacts.allowlist import AllowList, parse_allow_entry, resolve_import
from atlasguard.artifacts.findings import Severity
from atlasguard.errors import UsageError

ALLOWED = [
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "float32"),
    ("torch", "device"),
    ("torch", "Size"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.parameter", "Parameter"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),
    ("datetime", "datetime"),
    ("decimal", "Decimal"),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("sklearn.tree._tree", "Tree"),
    ("sklearn.pipeline", "Pipeline"),
    ("sklearn.preprocessing._data", "StandardScaler"),
]

CRITICAL = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("importlib", "import_module"),
    ("runpy", "run_path"),
    ("pty", "spawn"),
    ("code", "InteractiveInterpreter"),
    ("ctypes", "CDLL"),
    ("socket", "socket"),
    ("shutil", "rmtree"),
    ("webbrowser", "open"),
    ("pydoc", "locate"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("functools", "partial"),
    ("timeit", "timeit"),
    ("cProfile", "run"),
    ("pdb", "run"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("dill", "loads"),
    ("marshal", "loads"),
    ("types", "FunctionType"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("numpy", "load"),
    ("torch.hub", "load"),
    ("torch.jit", "load"),
    ("torch._inductor.codecache", "compile"),
    ("asyncio.subprocess", "create_subprocess_shell"),
    ("_posixsubprocess", "fork_exec"),
    ("multiprocessing.util", "spawnv_passfds"),
    ("urllib.request", "urlopen"),
    ("http.client", "HTTPConnection"),
    ("requests", "get"),
    ("sys", "modules"),
    ("torch", "os.system"),
    ("numpy", "testing._private.utils.os.system"),
    ("torch.storage", "_load_from_bytes"),
]


@pytest.mark.parametrize(("module", "name"), ALLOWED)
def test_allowed(module: str, name: str) -> None:
    verdict = AllowList().verdict(module, name)
    assert verdict.allowed and verdict.severity is None


@pytest.mark.parametrize(("module", "name"), CRITICAL)
def test_critical(module: str, name: str) -> None:
    verdict = AllowList().verdict(module, name)
    assert not verdict.allowed
    assert verdict.severity is Severity.CRITICAL, verdict


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("mypkg", "Model"),
        ("torch.nn.modules.linear", "Linear.forward"),
        ("torch", "nn.modules.linear.Linear"),
        ("sklearn.utils._testing", "TempMemmap"),
        ("sklearn.datasets", "Fetcher"),
        ("torch.nn.modules", "Popen"),
        ("builtins", "print"),
        ("sklearn.utils", "helper"),
        ("collections", "namedtuple"),
    ],
)
def test_not_allowed_is_at_least_high(module: str, name: str) -> None:
    verdict = AllowList().verdict(module, name)
    assert not verdict.allowed
    assert verdict.severity is not None and verdict.severity >= Severity.HIGH


def test_dotted_walk_target() -> None:
    assert AllowList().verdict("torch", "os.system").target == "os.system"


def test_user_entries_widen_exactly() -> None:
    allow = AllowList(["mypkg.models.Net"])
    assert allow.verdict("mypkg.models", "Net").allowed
    assert not allow.verdict("mypkg.models", "Net2").allowed
    assert not allow.verdict("mypkg", "models.Net.os").allowed


@pytest.mark.parametrize("bad", ["", "os", "a..b", "1x.y", "a.b c"])
def test_bad_user_entries(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_allow_entry(bad)


def test_resolve_import_fix_imports() -> None:
    assert resolve_import("__builtin__", "set", protocol=2) == ("builtins", "set")
    assert resolve_import("__builtin__", "xrange", protocol=0) == ("builtins", "range")
    assert resolve_import("exceptions", "ValueError", protocol=1) == ("builtins", "ValueError")
    assert resolve_import("__builtin__", "set", protocol=3) == ("__builtin__", "set")
