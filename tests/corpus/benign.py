"""The benign corpus: ordinary model files written by the real libraries.

A scanner must flag none of these at ``high`` or above. Optional stacks (torch, sklearn,
h5py, onnx, py7zr) are skipped when missing, so the corpus builds in a minimal venv.

>>> import tempfile
>>> from pathlib import Path
>>> samples = build_plain_pickles(Path(tempfile.mkdtemp()))
>>> {s.kind for s in samples}
{'benign'}
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.corpus import _build as b
from tests.corpus._build import BENIGN, Sample

__all__ = [
    "build_archives",
    "build_benign",
    "build_gguf",
    "build_keras",
    "build_numpy",
    "build_onnx",
    "build_plain_pickles",
    "build_sklearn",
    "build_torch",
]


def _sample(path: Path, trick: str, fmt: str, group: str) -> Sample:
    return Sample(path, BENIGN, trick, fmt, None, group)


def build_plain_pickles(out: Path) -> list[Sample]:
    """Ordinary data pickled with every protocol."""
    data: dict[str, object] = {
        "dict": {"lr": 0.01, "layers": [64, 32], "name": "mlp", "flag": True, "none": None},
        "list": [1, 2.5, "three", b"four", (5, 6), {7, 8}, frozenset({9}), 1 + 2j],
        "ordereddict": collections.OrderedDict([("a", 1), ("b", [1, 2])]),
        "datetime": {
            "created": dt.datetime(2024, 5, 1, 12, 30),
            "day": dt.date(2024, 5, 1),
            "took": dt.timedelta(seconds=42),
        },
        "nested": {"vocab": {f"tok{i}": i for i in range(200)}, "merges": [["a", "b"]] * 20},
        "counter-defaultdict": {
            "c": collections.Counter("abracadabra"),
            "d": collections.defaultdict(list, {"x": [1]}),
        },
    }
    try:
        import numpy as np

        data["numpy"] = {
            "w": np.arange(12, dtype=np.float32).reshape(3, 4),
            "i": np.int64(7),
            "f": np.float64(0.5),
            "dt": np.dtype("int16"),
        }
    except ImportError:  # pragma: no cover
        pass
    samples = []
    for name, obj in data.items():
        for proto in range(6):
            path = b.write(out / "pickle" / f"{name}-p{proto}.pkl", pickle.dumps(obj, proto))
            samples.append(_sample(path, f"pickle-{name}-p{proto}", "pickle", "pickle"))
    return samples


def _torch_layers(torch: Any) -> dict[str, Any]:
    nn = torch.nn
    torch.manual_seed(0)
    return {
        "linear": nn.Linear(8, 4),
        "conv2d": nn.Conv2d(3, 8, 3),
        "batchnorm2d": nn.BatchNorm2d(8),
        "lstm": nn.LSTM(8, 16, num_layers=2),
        "embedding": nn.Embedding(100, 16),
        "sequential": nn.Sequential(
            nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2), nn.Softmax(dim=-1)
        ),
        "transformer-encoder-layer": nn.TransformerEncoderLayer(
            d_model=16, nhead=2, dim_feedforward=32
        ),
        "layernorm-gelu": nn.Sequential(nn.LayerNorm(8), nn.GELU(), nn.Flatten()),
    }


def build_torch(out: Path) -> list[Sample]:
    """State dicts, full ``nn.Module`` saves, legacy-format saves and optimizer states."""
    try:
        import torch
    except ImportError:
        return []
    d = out / "pytorch"
    d.mkdir(parents=True, exist_ok=True)
    samples = []
    layers = _torch_layers(torch)
    for name, module in layers.items():
        path = d / f"state-dict-{name}.pt"
        torch.save(module.state_dict(), path)
        samples.append(_sample(path, f"torch-state-dict-{name}", "pytorch-zip", "pytorch"))
        path = d / f"module-{name}.pt"
        torch.save(module, path)
        samples.append(_sample(path, f"torch-module-{name}", "pytorch-zip", "pytorch"))
    for name in ("linear", "sequential", "lstm"):
        path = d / f"legacy-state-dict-{name}.bin"
        torch.save(layers[name].state_dict(), path, _use_new_zipfile_serialization=False)
        samples.append(
            _sample(path, f"torch-legacy-state-dict-{name}", "pytorch-legacy", "pytorch")
        )
    path = d / "legacy-module-sequential.bin"
    torch.save(layers["sequential"], path, _use_new_zipfile_serialization=False)
    samples.append(_sample(path, "torch-legacy-module-sequential", "pytorch-legacy", "pytorch"))
    model = layers["sequential"]
    for opt_name, opt in (
        ("adam", torch.optim.Adam(model.parameters(), lr=1e-3)),
        ("sgd-momentum", torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)),
    ):
        loss = model(torch.randn(4, 8)).sum()
        loss.backward()
        opt.step()
        path = d / f"optimizer-{opt_name}.pt"
        torch.save(opt.state_dict(), path)
        samples.append(_sample(path, f"torch-optimizer-{opt_name}", "pytorch-zip", "pytorch"))
    path = d / "checkpoint.pt"
    torch.save(
        {
            "epoch": 3,
            "model": model.state_dict(),
            "best_acc": 0.91,
            "args": {"lr": 0.1, "name": "run-7"},
        },
        path,
    )
    samples.append(_sample(path, "torch-training-checkpoint", "pytorch-zip", "pytorch"))
    path = d / "tensors-bf16-int8.pt"
    torch.save(
        {
            "bf16": torch.ones(4, dtype=torch.bfloat16),
            "i8": torch.arange(4).to(torch.int8),
            "bool": torch.ones(2, dtype=torch.bool),
        },
        path,
    )
    samples.append(_sample(path, "torch-tensor-dtypes", "pytorch-zip", "pytorch"))
    return samples


def _sklearn_models() -> dict[str, Any]:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    models: dict[str, Any] = {
        "logistic-regression": LogisticRegression(),
        "random-forest": RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0),
        "pipeline-scaler-lr": Pipeline(
            [("scale", StandardScaler()), ("clf", LogisticRegression())]
        ),
        "gradient-boosting": GradientBoostingClassifier(n_estimators=5, random_state=0),
        "svc": SVC(probability=False),
        "kmeans": KMeans(n_clusters=2, n_init=2, random_state=0),
        "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on a toy set are expected
        for model in models.values():
            model.fit(x, y)
    return models


def build_sklearn(out: Path) -> list[Sample]:
    """scikit-learn estimators via joblib (plain and each compressor) and via pickle."""
    try:
        import joblib

        models = _sklearn_models()
    except ImportError:
        return []
    d = out / "sklearn"
    d.mkdir(parents=True, exist_ok=True)
    samples = []
    for name, model in models.items():
        path = d / f"{name}.joblib"
        joblib.dump(model, path)
        samples.append(_sample(path, f"sklearn-joblib-{name}", "joblib", "sklearn"))
        path = b.write(d / f"{name}.pkl", pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        samples.append(_sample(path, f"sklearn-pickle-{name}", "pickle", "sklearn"))
    for compressor in b.joblib_compressors():
        path = d / f"pipeline-{compressor}.joblib"
        joblib.dump(models["pipeline-scaler-lr"], path, compress=(compressor, 3))
        samples.append(_sample(path, f"sklearn-joblib-{compressor}", "joblib", "sklearn"))
    path = d / "random-forest-bundle.joblib"
    joblib.dump(
        {"model": models["random-forest"], "features": ["a", "b", "c", "d"]}, path, compress=3
    )
    samples.append(_sample(path, "sklearn-joblib-bundle-dict", "joblib", "sklearn"))
    return samples


def build_numpy(out: Path) -> list[Sample]:
    """Numeric ``.npy``/``.npz`` files and safetensors."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return []
    d = out / "numpy"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "float32": rng.normal(size=(16, 8)).astype(np.float32),
        "int64": np.arange(100, dtype=np.int64),
        "bool": np.array([True, False, True]),
        "complex64": np.ones(4, dtype=np.complex64),
        "structured": np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8")]),
        "fortran": np.asfortranarray(rng.normal(size=(4, 3))),
    }
    samples = []
    for name, arr in arrays.items():
        path = d / f"{name}.npy"
        np.save(path, arr)
        samples.append(_sample(path, f"npy-{name}", "npy", "numpy"))
    numeric = {k: v for k, v in arrays.items() if k != "structured"}
    np.savez(d / "arrays.npz", **numeric)
    np.savez_compressed(d / "arrays-compressed.npz", **numeric)
    samples += [
        _sample(d / "arrays.npz", "npz-plain", "npz", "numpy"),
        _sample(d / "arrays-compressed.npz", "npz-compressed", "npz", "numpy"),
    ]
    try:
        from safetensors.numpy import save_file
    except ImportError:  # pragma: no cover
        return samples
    path = d / "model.safetensors"
    save_file(
        {k: np.ascontiguousarray(v) for k, v in numeric.items() if k != "complex64"},
        str(path),
        metadata={"format": "np"},
    )
    samples.append(_sample(path, "safetensors-numpy", "safetensors", "safetensors"))
    path = d / "empty-and-scalar.safetensors"
    save_file(
        {"empty": np.zeros((0, 4), np.float32), "scalar": np.array(3.0, np.float64)}, str(path)
    )
    samples.append(_sample(path, "safetensors-empty-scalar", "safetensors", "safetensors"))
    try:
        import torch
        from safetensors.torch import save_file as save_torch
    except ImportError:
        return samples
    path = d / "torch-model.safetensors"
    save_torch(_torch_layers(torch)["transformer-encoder-layer"].state_dict(), str(path))
    samples.append(_sample(path, "safetensors-torch", "safetensors", "safetensors"))
    return samples


def build_onnx(out: Path) -> list[Sample]:
    """ONNX exports from skl2onnx and, when it works offline, ``torch.onnx.export``."""
    samples: list[Sample] = []
    d = out / "onnx"
    d.mkdir(parents=True, exist_ok=True)
    try:
        from skl2onnx import to_onnx

        models = _sklearn_models()
        import numpy as np

        x = np.zeros((1, 4), dtype=np.float32)
        for name in ("logistic-regression", "pipeline-scaler-lr", "random-forest"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                onx = to_onnx(models[name], x, target_opset=17)
            path = b.write(d / f"skl2onnx-{name}.onnx", onx.SerializeToString())
            samples.append(_sample(path, f"onnx-skl2onnx-{name}", "onnx", "onnx"))
    except ImportError:  # pragma: no cover
        pass
    try:
        # A model whose weights live in external data next to it, as large exports do.
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.ones((1, 2), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
            initializer=[w],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        ext = d / "external-data"
        ext.mkdir(exist_ok=True)
        onnx.save_model(
            model,
            str(ext / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.bin",
            size_threshold=0,
        )
        samples.append(_sample(ext / "model.onnx", "onnx-external-data-sibling", "onnx", "onnx"))
    except ImportError:  # pragma: no cover
        pass
    samples += _torch_onnx(d)
    return samples


def _torch_onnx(d: Path) -> list[Sample]:
    try:
        import torch
    except ImportError:
        return []
    path = d / "torch-export.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.nn.Sequential(
                torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
            )
            torch.onnx.export(model, (torch.zeros(1, 4),), str(path), dynamo=False)
    except Exception:
        return []
    return [_sample(path, "onnx-torch-export", "onnx", "onnx")]


def _keras_config() -> dict[str, object]:
    return {
        "class_name": "Sequential",
        "config": {
            "name": "cnn",
            "layers": [
                {
                    "class_name": "InputLayer",
                    "config": {"batch_input_shape": [None, 28, 28, 1], "name": "input"},
                },
                {
                    "class_name": "Conv2D",
                    "config": {
                        "name": "conv",
                        "filters": 8,
                        "kernel_size": [3, 3],
                        "activation": "relu",
                        "padding": "same",
                    },
                },
                {"class_name": "MaxPooling2D", "config": {"name": "pool", "pool_size": [2, 2]}},
                {"class_name": "Flatten", "config": {"name": "flatten"}},
                {
                    "class_name": "Dense",
                    "config": {
                        "name": "dense",
                        "units": 10,
                        "activation": "softmax",
                        "kernel_initializer": {
                            "class_name": "GlorotUniform",
                            "config": {"seed": None},
                        },
                    },
                },
            ],
        },
    }


def build_keras(out: Path) -> list[Sample]:
    """Keras-style HDF5 and ``.keras`` files with standard layers only."""
    d = out / "keras"
    d.mkdir(parents=True, exist_ok=True)
    cfg = _keras_config()
    keras3 = {
        "module": "keras",
        "class_name": "Sequential",
        "registered_name": None,
        "config": {
            "name": "mlp",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Dense",
                    "registered_name": None,
                    "config": {"name": "d1", "units": 4, "activation": "relu"},
                }
            ],
        },
    }
    path = b.write(
        d / "model.keras",
        b.zip_bytes(
            [
                ("metadata.json", b.json_bytes({"keras_version": "3.4.1"})),
                ("config.json", b.json_bytes(keras3)),
            ]
        ),
    )
    samples = [_sample(path, "keras-v3-dense", "keras", "keras")]
    try:
        import h5py
        import numpy as np
    except ImportError:  # pragma: no cover
        return samples
    path = d / "cnn.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg)
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["training_config"] = json.dumps(
            {"loss": "categorical_crossentropy", "optimizer_config": {"class_name": "Adam"}}
        )
        g = f.create_group("model_weights/dense/dense")
        g.create_dataset("kernel:0", data=np.zeros((1568, 10), np.float32))
        g.create_dataset("bias:0", data=np.zeros(10, np.float32))
    samples.append(_sample(path, "keras-h5-cnn", "keras-h5", "keras"))
    path = d / "weights-only.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layer0/kernel", data=np.ones((4, 4), np.float32))
    samples.append(_sample(path, "h5-weights-only", "hdf5", "keras"))
    return samples


_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
        "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
        " + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
        "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
        "{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
        "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + "
        "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
        "eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!')"
        " }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for message in messages %}{% if (message['role'] == 'assistant') %}"
        "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
    ),
    "tool-use-namespace": (
        "{%- set ns = namespace(found=false) -%}{%- for message in messages -%}"
        "{%- if message['role'] == 'system' -%}{%- set ns.found = true -%}{%- endif -%}"
        "{%- endfor -%}{%- if tools is defined and tools -%}{{ tools | tojson(indent=2) }}"
        "{%- endif -%}{%- for message in messages -%}{{ message.role | upper }}: "
        "{{ message.content }}\n{%- endfor -%}"
    ),
}


def build_gguf(out: Path) -> list[Sample]:
    """GGUF files with realistic chat templates."""
    samples = []
    for name, template in _TEMPLATES.items():
        data = b.gguf_bytes(
            [
                ("general.architecture", "llama"),
                ("general.name", name),
                ("general.file_type", 1),
                ("tokenizer.ggml.model", "gpt2"),
                ("tokenizer.chat_template", template),
            ]
        )
        path = b.write(out / "gguf" / f"{name}.gguf", data)
        samples.append(_sample(path, f"gguf-template-{name}", "gguf", "gguf"))
    return samples


def build_archives(out: Path) -> list[Sample]:
    """tar, tar.gz, zip and 7z archives of benign files, and a model-repository tree."""
    d = out / "archives"
    members = [
        ("model/config.json", b.json_bytes({"hidden_size": 16, "num_layers": 2})),
        ("model/data.pkl", pickle.dumps({"w": [0.1, 0.2], "b": 0.0}, protocol=4)),
        ("model/README.md", b"# tiny model\n"),
    ]
    try:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.arange(10, dtype=np.float32))
        members.append(("model/w.npy", buf.getvalue()))
    except ImportError:  # pragma: no cover
        pass
    samples = [
        _sample(b.write(d / "model.tar", b.tar_bytes(members)), "archive-tar", "tar", "archives"),
        _sample(
            b.write(d / "model.tar.gz", b.tar_bytes(members, mode="w:gz")),
            "archive-tar-gz",
            "tar",
            "archives",
        ),
        _sample(
            b.write(d / "model.zip", b.zip_bytes(members, compress=True)),
            "archive-zip",
            "zip",
            "archives",
        ),
        _sample(
            b.write(d / "nested.zip", b.zip_bytes([("release/model.tar", b.tar_bytes(members))])),
            "archive-tar-in-zip",
            "zip",
            "archives",
        ),
    ]
    try:
        import py7zr

        path = d / "model.7z"
        with py7zr.SevenZipFile(path, "w") as z:
            for name, data in members:
                z.writestr(data, name)
        samples.append(_sample(path, "archive-7z", "7z", "archives"))
    except ImportError:  # pragma: no cover
        pass
    repo = out / "model-repo"
    b.write(repo / "config.json", b.json_bytes({"architectures": ["TinyModel"]}))
    b.write(repo / "tokenizer.json", b.json_bytes({"model": {"vocab": {"a": 0, "b": 1}}}))
    b.write(repo / "README.md", b"---\nlicense: apache-2.0\n---\n# tiny\n")
    b.write(repo / "notes.txt", b"trained for 3 epochs\n")
    b.write(repo / "training_args.bin", pickle.dumps({"lr": 0.1, "epochs": 3}, protocol=4))
    b.write(repo / "sub" / "vocab.txt", b"a\nb\n")
    samples.append(_sample(repo, "directory-model-repo", "directory", "extensions"))
    return samples


_BUILDERS: tuple[Callable[[Path], list[Sample]], ...] = (
    build_plain_pickles,
    build_torch,
    build_sklearn,
    build_numpy,
    build_onnx,
    build_keras,
    build_gguf,
    build_archives,
)


def build_benign(out: Path) -> list[Sample]:
    """Every benign sample, written under ``out``."""
    samples: list[Sample] = []
    for builder in _BUILDERS:
        samples += builder(out)
    return samples
