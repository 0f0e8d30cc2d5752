"""Keras configs (.keras zip, bare JSON, HDF5): Lambda and custom objects at any depth."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.artifacts.findings import Finding, Severity
from atlasguard.artifacts.formats.hdf5 import SCANNERS as HDF5_SCANNERS
from atlasguard.artifacts.formats.keras import SCANNERS, config_problems

Scan = Callable[..., list[Finding]]


def rules(findings: list[Finding], at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in findings if f.severity >= at_least}


def k3(module: str, cls: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"module": module, "class_name": cls, "config": config, "registered_name": None, **extra}


DENSE3 = k3(
    "keras.layers",
    "Dense",
    {
        "name": "dense",
        "units": 4,
        "activation": "relu",
        "kernel_initializer": k3("keras.initializers", "GlorotUniform", {"seed": None}),
        "dtype": k3("keras", "DTypePolicy", {"name": "float32"}),
    },
    build_config={"input_shape": [None, 3]},
)
KERAS3 = k3(
    "keras",
    "Sequential",
    {
        "name": "sequential",
        "trainable": True,
        "layers": [
            k3("keras.layers", "InputLayer", {"batch_shape": [None, 3], "name": "in"}),
            DENSE3,
        ],
    },
    compile_config={
        "optimizer": k3("keras.optimizers", "Adam", {"learning_rate": 0.001}),
        "loss": "mse",
    },
)
KERAS2 = {
    "class_name": "Sequential",
    "keras_version": "2.13.1",
    "backend": "tensorflow",
    "config": {
        "name": "sequential",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3]}},
            {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu"}},
        ],
    },
}
LAMBDA3 = k3(
    "keras.layers",
    "Lambda",
    {
        "name": "evil",
        "function": {
            "class_name": "__lambda__",
            "config": {"code": "4wEAAAAAAAAA", "defaults": None},
        },
    },
)
LAMBDA2 = {
    "class_name": "Lambda",
    "config": {
        "name": "evil",
        "function": ["4wEAAAAA", None, None],
        "function_type": "lambda",
        "output_shape_type": "raw",
    },
}


def nested(inner: dict[str, Any]) -> dict[str, Any]:
    """``inner`` wrapped in TimeDistributed, in a Functional model, in a Sequential."""
    wrapper = k3("keras.layers", "TimeDistributed", {"name": "td", "layer": inner})
    functional = k3(
        "keras",
        "Functional",
        {"name": "f", "layers": [{"class_name": "InputLayer", "config": {}}, wrapper]},
    )
    outer = copy.deepcopy(KERAS3)
    outer["config"]["layers"].append(functional)
    return outer


def test_benign_configs_clean() -> None:
    assert config_problems(KERAS3) == []
    assert config_problems(KERAS2) == []


@pytest.mark.parametrize("lam", [LAMBDA3, LAMBDA2])
def test_lambda_at_depth(lam: dict[str, Any]) -> None:
    problems = config_problems(nested(lam))
    assert [(r, s) for r, s, _m in problems] == [("keras-lambda", Severity.CRITICAL)]


@pytest.mark.parametrize(
    ("obj", "severity"),
    [
        (k3("my_package.layers", "MyLayer", {}), Severity.HIGH),
        (k3("os", "system", {}), Severity.CRITICAL),
        (k3("builtins", "function", "eval"), Severity.CRITICAL),  # type: ignore[arg-type]
        ({"class_name": "X", "config": {}, "registered_name": "evilpkg>X"}, Severity.HIGH),
        (k3("keras_hub.src.models", "Backbone", {}), Severity.LOW),
    ],
)
def test_custom_objects(obj: dict[str, Any], severity: Severity) -> None:
    problems = config_problems(nested(obj))
    assert [(r, s) for r, s, _m in problems] == [("keras-custom-object", severity)]


def test_tfop_lambda() -> None:
    bad = {"class_name": "TFOpLambda", "config": {"name": "t", "function": "io.write_file"}}
    good = {"class_name": "TFOpLambda", "config": {"name": "t", "function": "math.add"}}
    assert [r for r, _s, _m in config_problems(nested(bad))] == ["keras-tfop-lambda"]
    assert config_problems(nested(good)) == []


def keras_zip(config: dict[str, Any], tmp_path: Path) -> bytes:
    h5py = pytest.importorskip("h5py")
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=[[1.0, 2.0]])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "metadata.json", json.dumps({"keras_version": "3.5.0", "date_saved": "2026-01-01"})
        )
        zf.writestr("config.json", json.dumps(config))
        zf.write(weights, "model.weights.h5")
    return buf.getvalue()


def test_dot_keras_zip(scan: Scan, tmp_path: Path) -> None:
    assert scan(keras_zip(KERAS3, tmp_path)) == []
    found = scan(keras_zip(nested(LAMBDA3), tmp_path))
    assert [(f.rule, f.location.member) for f in found] == [("keras-lambda", "config.json")]


def h5_model(tmp_path: Path, config: Any, *, userblock: int = 0, raw: bytes | None = None) -> bytes:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "model.h5"
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.attrs["model_config"] = raw if raw is not None else json.dumps(config).encode()
        f.attrs["training_config"] = json.dumps({"loss": "mse"}).encode()
        f.attrs["keras_version"] = b"2.13.1"
        f.create_dataset("model_weights/dense/kernel:0", data=[[0.5] * 4] * 3)
    return path.read_bytes()


def test_hdf5_benign_and_lambda(scan: Scan, tmp_path: Path) -> None:
    assert scan(h5_model(tmp_path, KERAS2)) == []
    found = scan(h5_model(tmp_path, nested(LAMBDA2)))
    assert rules(found) == {"keras-lambda"}
    assert found[0].location.offset is not None


def test_hdf5_with_userblock_and_escaped_json(scan: Scan, tmp_path: Path) -> None:
    text = json.dumps(nested(LAMBDA2)).replace('"Lambda"', '"\\u004cambda"')
    text = text.replace('"class_name"', '"\\u0063lass_name"', 1)
    data = h5_model(tmp_path, None, userblock=1024, raw=text.encode())
    assert [s.name for s in HDF5_SCANNERS if s.sniff(data[:4096])] == ["hdf5"]
    assert rules(scan(data)) == {"keras-lambda"}


def test_hdf5_unreadable_config_reported(scan: Scan, tmp_path: Path) -> None:
    found = scan(h5_model(tmp_path, None, raw=b"not json at all"))
    assert rules(found, Severity.HIGH) == {"unreadable"}


def test_bare_json_scanner(scan: Scan) -> None:
    assert scan(json.dumps(KERAS3).encode()) == []
    assert rules(scan(json.dumps(nested(LAMBDA3)).encode())) == {"keras-lambda"}
    assert rules(scan(b'{"class_name": "X", "config": {')) == {"unreadable"}
    assert scan(b'{"module": "torch.nn", "x": 1}') == []
    padded = {"aaa": "x" * 6000, **nested(LAMBDA3)}
    assert rules(scan(json.dumps(padded).encode())) == {"keras-lambda"}


@settings(max_examples=150, deadline=2000)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from(["Lambda", "keras", "os", "lambda", "x>y", "TFOpLambda", "io.read_file"]),
        lambda kids: (
            st.lists(kids, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "class_name",
                        "module",
                        "config",
                        "registered_name",
                        "function",
                        "function_type",
                        "layers",
                        "layer",
                        "name",
                    ]
                ),
                kids,
                max_size=5,
            )
        ),
        max_leaves=30,
    )
)
def test_random_documents_never_raise(document: Any) -> None:
    config_problems(document)


SEED = json.dumps(nested(LAMBDA3)).encode()


@settings(max_examples=100, deadline=2000)
@given(st.data())
def test_mutated_json_never_raises(
    run_scanner: Callable[..., list[Finding]], data: st.DataObject
) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    run_scanner(SCANNERS[0], bytes(raw))
    run_scanner(HDF5_SCANNERS[0], b"\x89HDF\r\n\x1a\n" + bytes(raw) + b"model_config")


def test_large_user_block_found(tmp_path: Path) -> None:
    from atlasguard.artifacts.formats.hdf5 import find_signature

    data = h5_model(tmp_path, nested(LAMBDA2), userblock=8192)
    assert not HDF5_SCANNERS[0].sniff(data[:4096])  # beyond the sniffed head...
    assert find_signature(io.BytesIO(data)) == 8192  # ...but found by the helper
    assert find_signature(io.BytesIO(b"x" * 10000)) is None
