"""The malicious corpus: one sample per known trick, each payload harmless.

Every payload, were it ever run, would only create the canary file (or act on paths inside
the canary's folder), so a test proves nothing ran by checking the canary is still absent.
Pickles are assembled from raw opcodes; nothing here is ever unpickled.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> samples = build_pickle_tricks(d / "m", d / "canary")
>>> all(s.kind == "malicious" for s in samples)
True
"""

from __future__ import annotations

import base64
import json
import marshal
import os
import pickle
import shlex
import struct
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.corpus import _build as b
from tests.corpus._build import MALICIOUS, Sample
from tests.corpus._pickle_programs import PICKLE_PROGRAMS, pickle_env

__all__ = [
    "build_archive_tricks",
    "build_extension_games",
    "build_framework_tricks",
    "build_malicious",
    "build_pickle_tricks",
]


class _Payload:
    """The harmless commands every trick carries."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)
        self.cmd = f"touch {shlex.quote(self.canary)}"
        self.py = f"open({self.canary!r}, 'a').close()"
        self.argv = ["touch", self.canary]
        self.dir = str(canary.parent)


def _os_system(p: _Payload, proto: int = 2) -> bytes:
    return b.call_global("os", "system", b.text(p.cmd), proto=proto)


# --------------------------------------------------------------------------- raw pickles
def _pickle_tricks(p: _Payload) -> dict[str, tuple[str, bytes]]:
    """trick -> (minimum severity, pickle bytes)."""
    env = pickle_env(
        cmd=p.cmd,
        py=p.py,
        canary=p.canary,
        argv=p.argv,
        evil=_os_system(p),
        sentinel=os.path.join(p.dir, "sentinel-dir"),
    )
    return {t: (sev, b.assemble(prog, **env)) for t, (sev, prog) in PICKLE_PROGRAMS.items()}


def build_pickle_tricks(out: Path, canary: Path) -> list[Sample]:
    """Raw pickle files, one per opcode-level trick."""
    p = _Payload(canary)
    samples = []
    for trick, (severity, data) in _pickle_tricks(p).items():
        path = b.write(out / "pickle" / f"{trick}.pkl", data)
        samples.append(Sample(path, MALICIOUS, trick, "pickle", severity, "pickle"))
    return samples


# --------------------------------------------------------------------------- frameworks
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def _keras_lambda_code(p: _Payload) -> str:
    module = compile(f"lambda x: __import__('os').system({p.cmd!r}) or x", "<lambda>", "eval")
    fn_code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    return base64.b64encode(marshal.dumps(fn_code)).decode()


def _keras_configs(p: _Payload) -> dict[str, dict[str, Any]]:
    code = _keras_lambda_code(p)
    dense = {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu"}}
    lambda2 = {
        "class_name": "Lambda",
        "config": {
            "name": "lambda",
            "function": [code, None, None],
            "function_type": "lambda",
            "output_shape": None,
            "arguments": {},
        },
    }
    lambda3 = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "registered_name": None,
        "config": {
            "name": "lambda",
            "function": {
                "class_name": "__lambda__",
                "config": {"code": code, "defaults": None, "closure": None},
            },
        },
    }
    top = {"class_name": "Sequential", "config": {"name": "seq", "layers": [dense, lambda2]}}
    inner_seq = {
        "class_name": "Sequential",
        "name": "inner",
        "config": {"name": "inner", "layers": [dense, lambda3]},
        "inbound_nodes": [[["input_1", 0, 0, {}]]],
    }
    nested = {
        "class_name": "Functional",
        "config": {
            "name": "outer",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "name": "input_1",
                    "config": {"batch_input_shape": [None, 4], "name": "input_1"},
                    "inbound_nodes": [],
                },
                inner_seq,
            ],
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["inner", 0, 0]],
        },
    }
    custom = {
        "module": "keras",
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": [
                {
                    "module": "os",
                    "class_name": "system",
                    "registered_name": "Custom>system",
                    "config": {"name": "c", "command": p.cmd},
                },
                {
                    "module": "mypkg.layers",
                    "class_name": "DoIt",
                    "registered_name": "mypkg>DoIt",
                    "config": {"name": "d"},
                },
            ],
        },
    }
    return {"lambda-top": top, "lambda-nested": nested, "custom-module": custom}


def _torch_tricks(out: Path, p: _Payload) -> list[Sample]:
    evil = _os_system(p)
    benign = pickle.dumps({"weight": [0.0, 1.0]}, protocol=2)
    base = [("archive/version", b"3\n"), ("archive/byteorder", b"little")]
    d = out / "pytorch"
    items: list[tuple[str, str, bytes, str]] = [
        (
            "torch-zip-data-pkl",
            "model.pt",
            b.zip_bytes([("archive/data.pkl", evil), *base]),
            "pytorch-zip",
        ),
        (
            "torch-zip-extra-member",
            "model.pt",
            b.zip_bytes([("archive/data.pkl", benign), ("archive/extra.pkl", evil), *base]),
            "pytorch-zip",
        ),
        (
            "torch-zip-constants-pkl",
            "model.pt",
            b.zip_bytes([("archive/data.pkl", benign), ("archive/constants.pkl", evil), *base]),
            "pytorch-zip",
        ),
        (
            "torch-zip-member-no-extension",
            "model.pt",
            b.zip_bytes([("archive/data.pkl", benign), ("archive/data/0", evil), *base]),
            "pytorch-zip",
        ),
        (
            "torch-zip-renamed-top-dir",
            "model.pt",
            b.zip_bytes([("resnet50_final/data.pkl", evil), ("resnet50_final/version", b"3\n")]),
            "pytorch-zip",
        ),
        (
            "zip-encryption-flag",
            "model.pt",
            b.raw_zip([("archive/data.pkl", evil), ("archive/version", b"3\n")], flags=0x1),
            "zip",
        ),
        (
            "zip-crc-mismatch",
            "model.pt",
            b.raw_zip([("archive/data.pkl", evil), ("archive/version", b"3\n")], bad_crc=True),
            "zip",
        ),
        (
            "zip-local-central-names-differ",
            "model.pt",
            b.raw_zip(
                [("archive/data.pkl", evil), ("archive/version", b"3\n")],
                central_names=["archive/data.txt", "archive/version"],
            ),
            "zip",
        ),
        (
            "zip-in-zip",
            "bundle.zip",
            b.zip_bytes(
                [
                    ("inner/model.pt", b.zip_bytes([("archive/data.pkl", evil), *base])),
                    ("README.md", b"weights\n"),
                ]
            ),
            "zip",
        ),
        (
            "torch-legacy-object-pickle",
            "model.bin",
            b"".join(
                [
                    pickle.dumps(_TORCH_MAGIC, protocol=2),
                    pickle.dumps(1001, protocol=2),
                    pickle.dumps(
                        {
                            "protocol_version": 1001,
                            "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4},
                        },
                        protocol=2,
                    ),
                    evil,
                    pickle.dumps([], protocol=2),
                ]
            ),
            "pytorch-legacy",
        ),
        (
            "torch-legacy-storage-keys-pickle",
            "model.bin",
            b"".join(
                [
                    pickle.dumps(_TORCH_MAGIC, protocol=2),
                    pickle.dumps(1001, protocol=2),
                    pickle.dumps({"protocol_version": 1001}, protocol=2),
                    pickle.dumps({"w": 1}, protocol=2),
                    evil,
                ]
            ),
            "pytorch-legacy",
        ),
        (
            "torch-legacy-tar",
            "model.tar",
            b.tar_bytes(
                [
                    ("sys_info", pickle.dumps({"protocol_version": 1000}, protocol=2)),
                    ("pickle", evil),
                    ("storages", pickle.dumps(0, protocol=2)),
                    ("tensors", pickle.dumps(0, protocol=2)),
                ]
            ),
            "pytorch-tar",
        ),
    ]
    samples = []
    for trick, name, data, fmt in items:
        path = b.write(d / trick / name, data)
        samples.append(Sample(path, MALICIOUS, trick, fmt, "high", "pytorch"))
    return samples


class _EvilReduce:
    """Pickles as ``os.system(cmd)``; only ever dumped, never loaded."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (self.cmd,))


def _joblib_tricks(out: Path, p: _Payload) -> list[Sample]:
    try:
        import joblib
    except ImportError:  # pragma: no cover - joblib is a dev dependency
        return []
    samples = []
    for compressor in (None, *b.joblib_compressors()):
        name = compressor or "none"
        path = out / "joblib" / f"joblib-{name}.joblib"
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": _EvilReduce(p.cmd), "version": "1.0"}
        if compressor is None:
            joblib.dump(payload, path)
        else:
            joblib.dump(payload, path, compress=(compressor, 3))
        samples.append(Sample(path, MALICIOUS, f"joblib-{name}", "joblib", "critical", "joblib"))
    return samples


def _numpy_tricks(out: Path, p: _Payload) -> list[Sample]:
    evil_list = b.asm(
        b.PROTO(2),
        b.GLOBAL("os", "system"),
        b.text(p.cmd),
        b.TUPLE1,
        b.REDUCE,
        b.POP,
        b.EMPTY_LIST,
        b.STOP,
    )
    npy = b.npy_bytes("|O", (1,), evil_list)
    benign_npy = b.npy_bytes("<f4", (2,), struct.pack("<2f", 1.0, 2.0))
    return [
        Sample(
            b.write(out / "numpy" / "object.npy", npy),
            MALICIOUS,
            "npy-object-dtype",
            "npy",
            "critical",
            "numpy",
        ),
        Sample(
            b.write(
                out / "numpy" / "arrays.npz",
                b.zip_bytes([("w.npy", benign_npy), ("meta.npy", npy)]),
            ),
            MALICIOUS,
            "npz-object-member",
            "npz",
            "critical",
            "numpy",
        ),
    ]


def _keras_tricks(out: Path, p: _Payload) -> list[Sample]:
    samples = []
    configs = _keras_configs(p)
    for name, cfg in configs.items():
        keras_zip = b.zip_bytes(
            [
                ("metadata.json", b.json_bytes({"keras_version": "3.4.1"})),
                ("config.json", b.json_bytes(cfg)),
            ]
        )
        path = b.write(out / "keras" / f"keras-{name}.keras", keras_zip)
        samples.append(Sample(path, MALICIOUS, f"keras-{name}", "keras", "high", "keras"))
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py ships in the dev venv
        return samples
    for name, cfg in configs.items():
        path = out / "keras" / f"h5-{name}.h5"
        with h5py.File(path, "w") as f:
            f.attrs["model_config"] = json.dumps(cfg)
            f.attrs["keras_version"] = "2.15.0"
            f.attrs["backend"] = "tensorflow"
            f.create_group("model_weights")
        samples.append(Sample(path, MALICIOUS, f"h5-{name}", "keras-h5", "high", "keras"))
    return samples


def _savedmodel_tricks(out: Path) -> list[Sample]:
    items = {
        "savedmodel-pyfunc": ([("x", "Placeholder"), ("evil", "PyFunc")], False),
        "savedmodel-eager-pyfunc": ([("x", "Placeholder"), ("evil", "EagerPyFunc")], False),
        "savedmodel-readfile": ([("x", "Placeholder"), ("read", "ReadFile")], False),
        "savedmodel-writefile": ([("x", "Placeholder"), ("write", "WriteFile")], False),
        "savedmodel-pyfunc-in-function-library": ([("evil", "PyFuncStateless")], True),
    }
    samples = []
    for trick, (nodes, lib) in items.items():
        root = out / "savedmodel" / trick
        b.write(root / "saved_model.pb", b.saved_model_bytes(nodes, in_library=lib))
        (root / "variables").mkdir(exist_ok=True)
        samples.append(Sample(root, MALICIOUS, trick, "tf-savedmodel", "high", "tensorflow"))
    return samples


def _onnx_tricks(out: Path, p: _Payload) -> list[Sample]:
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:  # pragma: no cover
        return []

    def model(initializer: Any, node_domain: str = "") -> bytes:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        if node_domain:
            node = helper.make_node("Exec", ["x"], ["y"], domain=node_domain)
            opsets = [helper.make_opsetid("", 17), helper.make_opsetid(node_domain, 1)]
        else:
            node = helper.make_node("Add", ["x", "w"], ["y"])
            opsets = [helper.make_opsetid("", 17)]
        graph = helper.make_graph(
            [node], "g", [x], [y], initializer=[initializer] if initializer else []
        )
        m = helper.make_model(graph, opset_imports=opsets)
        return bytes(m.SerializeToString())

    def external(location: str) -> Any:
        t = onnx.TensorProto()
        t.name = "w"
        t.data_type = TensorProto.FLOAT
        t.dims.extend([1, 2])
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "8")):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        return t

    d = out / "onnx"
    return [
        Sample(
            b.write(d / "external-parent" / "model.onnx", model(external("../../secret.bin"))),
            MALICIOUS,
            "onnx-external-data-parent-traversal",
            "onnx",
            "high",
            "onnx",
        ),
        Sample(
            b.write(d / "external-absolute" / "model.onnx", model(external(p.canary))),
            MALICIOUS,
            "onnx-external-data-absolute",
            "onnx",
            "high",
            "onnx",
        ),
        Sample(
            b.write(d / "custom-domain" / "model.onnx", model(None, "com.evil.ops")),
            MALICIOUS,
            "onnx-custom-op-domain",
            "onnx",
            "high",
            "onnx",
        ),
    ]


def _gguf_tricks(out: Path, p: _Payload) -> list[Sample]:
    cmd = p.cmd
    templates = {
        "gguf-ssti-class-mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "gguf-ssti-attr-filter-globals": (
            "{% for m in messages %}{{ m.content }}{% endfor %}"
            "{{ (cycler|attr('__init__')|attr('__globals__'))['os'].popen('" + cmd + "') }}"
        ),
        "gguf-ssti-tilde-concat": (
            "{% set a = '__cla' ~ 'ss__' %}{% set g = '__glo' ~ 'bals__' %}"
            "{{ (joiner|attr('__init__')|attr(g))['__buil' ~ 'tins__']['__imp' ~ 'ort__']"
            "('o' ~ 's').system('" + cmd + "') }}"
        ),
        "gguf-ssti-request-application": (
            "{{ request.application.__globals__.__builtins__.__import__('os')"
            ".popen('" + cmd + "').read() }}"
        ),
        "gguf-ssti-cycler-globals-os": (
            "{{ cycler.__init__.__globals__.os.popen('" + cmd + "').read() }}"
        ),
        "gguf-ssti-lipsum-globals": "{{ lipsum.__globals__['os'].popen('" + cmd + "') }}",
        "gguf-ssti-hex-escapes": (
            "{{ ''['\\x5f\\x5fclass\\x5f\\x5f']['\\x5f\\x5fmro\\x5f\\x5f'][1]"
            "['\\x5f\\x5fsubclasses\\x5f\\x5f']() }}"
        ),
        "gguf-ssti-namespace-init": (
            "{{ namespace.__init__.__globals__['__builtins__']['eval']"
            "(\"__import__('os').system('" + cmd + "')\") }}"
        ),
    }
    samples = []
    for trick, template in templates.items():
        data = b.gguf_bytes(
            [
                ("general.architecture", "llama"),
                ("general.name", "tiny"),
                ("tokenizer.chat_template", template),
                ("general.file_type", 1),
            ]
        )
        path = b.write(out / "gguf" / f"{trick}.gguf", data)
        samples.append(Sample(path, MALICIOUS, trick, "gguf", "high", "gguf"))
    hidden = b.gguf_bytes(
        [
            ("general.architecture", "llama"),
            ("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"),
            ("tokenizer.chat_template.tool_use", templates["gguf-ssti-lipsum-globals"]),
        ]
    )
    samples.append(
        Sample(
            b.write(out / "gguf" / "gguf-ssti-named-template.gguf", hidden),
            MALICIOUS,
            "gguf-ssti-named-template",
            "gguf",
            "high",
            "gguf",
        )
    )
    return samples


def _safetensors_tricks(out: Path) -> list[Sample]:
    def st(header: dict[str, object], data: bytes, declared: int | None = None) -> bytes:
        raw = json.dumps(header).encode()
        return struct.pack("<Q", declared if declared is not None else len(raw)) + raw + data

    d = out / "safetensors"
    data = bytes(16)
    return [
        Sample(
            b.write(
                d / "out-of-bounds.safetensors",
                st({"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}}, data),
            ),
            MALICIOUS,
            "safetensors-offset-out-of-bounds",
            "safetensors",
            "high",
            "safetensors",
        ),
        Sample(
            b.write(
                d / "overlap.safetensors",
                st(
                    {
                        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
                    },
                    data,
                ),
            ),
            MALICIOUS,
            "safetensors-overlapping-tensors",
            "safetensors",
            "high",
            "safetensors",
        ),
        Sample(
            b.write(
                d / "huge-header.safetensors",
                st(
                    {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                    data,
                    declared=(100 << 20) + 1,
                ),
            ),
            MALICIOUS,
            "safetensors-header-over-limit",
            "safetensors",
            "high",
            "safetensors",
        ),
        Sample(
            b.write(
                d / "shape-mismatch.safetensors",
                st({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, data),
            ),
            MALICIOUS,
            "safetensors-size-dtype-mismatch",
            "safetensors",
            "high",
            "safetensors",
        ),
    ]


def build_framework_tricks(out: Path, canary: Path) -> list[Sample]:
    """PyTorch, joblib, NumPy, Keras, SavedModel, ONNX, GGUF and safetensors tricks."""
    p = _Payload(canary)
    return [
        *_torch_tricks(out, p),
        *_joblib_tricks(out, p),
        *_numpy_tricks(out, p),
        *_keras_tricks(out, p),
        *_savedmodel_tricks(out),
        *_onnx_tricks(out, p),
        *_gguf_tricks(out, p),
        *_safetensors_tricks(out),
    ]


# --------------------------------------------------------------------------- archives
def build_archive_tricks(out: Path, canary: Path) -> list[Sample]:
    """Malicious pickles inside tar, tar.gz, 7z and zip-in-tar-in-zip."""
    evil = _os_system(_Payload(canary))
    d = out / "archives"
    members = [("model/README.md", b"a model\n"), ("model/weights.pkl", evil)]
    samples = [
        Sample(
            b.write(d / "model.tar", b.tar_bytes(members)),
            MALICIOUS,
            "tar-pickle",
            "tar",
            "critical",
            "archives",
        ),
        Sample(
            b.write(d / "model.tar.gz", b.tar_bytes(members, mode="w:gz")),
            MALICIOUS,
            "tar-gz-pickle",
            "tar",
            "critical",
            "archives",
        ),
        Sample(
            b.write(d / "model.tar.xz", b.tar_bytes(members, mode="w:xz")),
            MALICIOUS,
            "tar-xz-pickle",
            "tar",
            "critical",
            "archives",
        ),
    ]
    inner_tar = b.tar_bytes([("pkg/model.zip", b.zip_bytes([("model.pkl", evil)]))])
    samples.append(
        Sample(
            b.write(
                d / "zip-tar-zip.zip",
                b.zip_bytes([("release/bundle.tar", inner_tar)], compress=True),
            ),
            MALICIOUS,
            "zip-in-tar-in-zip",
            "zip",
            "critical",
            "archives",
        )
    )
    try:
        import py7zr
    except ImportError:  # pragma: no cover
        return samples
    path = d / "model.7z"
    with py7zr.SevenZipFile(path, "w") as z:
        z.writestr(b"a model\n", "model/README.md")
        z.writestr(evil, "model/weights.pkl")
    samples.append(Sample(path, MALICIOUS, "7z-pickle", "7z", "critical", "archives"))
    return samples


def build_extension_games(out: Path, canary: Path) -> list[Sample]:
    """Directories whose one malicious pickle hides behind a misleading name."""
    evil = _os_system(_Payload(canary))
    samples = []
    for trick, rel in (
        ("ext-sav", "models/v1/model.sav"),
        ("ext-model", "weights.model"),
        ("ext-p", "cache/x.p"),
        ("ext-txt", "docs/notes.txt"),
        ("ext-none", "deep/a/b/c/checkpoint"),
        ("ext-json", "config/params.json"),
    ):
        root = out / "extension-games" / trick
        b.write(root / "README.md", b"# a model repository\n")
        b.write(root / "config.yaml", b"lr: 0.1\n")
        b.write(root / rel, evil)
        samples.append(Sample(root, MALICIOUS, trick, "directory", "critical", "extensions"))
    return samples


def build_malicious(out: Path, canary: Path) -> list[Sample]:
    """Every malicious sample, written under ``out``."""
    return [
        *build_pickle_tricks(out, canary),
        *build_framework_tricks(out, canary),
        *build_archive_tricks(out, canary),
        *build_extension_games(out, canary),
    ]
