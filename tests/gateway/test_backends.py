from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LinearRegression, LogisticRegression

from atlasguard.errors import UnsafeArtifactError
from atlasguard.gateway.backends import Backend, BackendError, OutputMeta, load_backend
from atlasguard.gateway.backends.sklearn import trusted_types
from atlasguard.gateway.backends.upstream import UpstreamBackend
from atlasguard.gateway.demo import TrainedDigits, export_onnx, train_digits
from atlasguard.gateway.http import STATUS
from atlasguard.gateway.oip import InvalidInput
from atlasguard.policy import ModelSpec, TensorSpec
from atlasguard.runtime.pipeline import Denied

DIGITS_INPUT = (TensorSpec(name="input", datatype="FP32", shape=(-1, 64), min=0.0, max=1.0),)


@pytest.fixture(scope="module")
def digits() -> TrainedDigits:
    return train_digits()


@pytest.fixture(scope="module")
def onnx_dir(digits: TrainedDigits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("onnx")
    (d / "digits").mkdir()
    export_onnx(digits.model, d / "digits" / "model.onnx")
    return d


# -- ONNX Runtime -------------------------------------------------------------------------------


def test_onnx_backend_serves_digits(digits: TrainedDigits, onnx_dir: Path) -> None:
    spec = ModelSpec(path="digits/model.onnx", inputs=DIGITS_INPUT)
    backend = load_backend("digits", spec, onnx_dir)
    assert isinstance(backend, Backend)
    assert backend.outputs == (
        OutputMeta("label", "INT64", (-1,)),
        OutputMeta("probabilities", "FP32", (-1, 10)),
    )
    out = backend.predict({"input": digits.x_test.astype(np.float32)})
    assert out["label"].dtype == np.int64
    assert out["probabilities"].shape == (len(digits.y_test), 10)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-4)
    assert float((out["label"] == digits.y_test).mean()) > 0.9
    backend.close()


def test_onnx_path_may_be_the_model_directory(onnx_dir: Path) -> None:
    spec = ModelSpec(path="digits", inputs=DIGITS_INPUT)
    assert load_backend("digits", spec, onnx_dir, threads=2).name == "digits"


def test_onnx_model_path_overrides_spec(onnx_dir: Path, tmp_path: Path) -> None:
    spec = ModelSpec(path="nowhere.onnx", inputs=DIGITS_INPUT)
    backend = load_backend("d", spec, tmp_path, model_path=onnx_dir / "digits" / "model.onnx")
    assert [o.name for o in backend.outputs] == ["label", "probabilities"]


def test_zipmap_output_becomes_dense(digits: TrainedDigits, tmp_path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(digits.model, initial_types=[("input", FloatTensorType([None, 64]))])
    (tmp_path / "zip.onnx").write_bytes(onx.SerializeToString())
    backend = load_backend("z", ModelSpec(path="zip.onnx", inputs=DIGITS_INPUT), tmp_path)
    meta = {o.name: o for o in backend.outputs}
    assert meta["output_probability"] == OutputMeta("output_probability", "FP32", (-1, -1))
    x = digits.x_test[:5].astype(np.float32)
    out = backend.predict({"input": x})
    assert out["output_probability"].dtype == np.float32
    np.testing.assert_allclose(out["output_probability"], digits.model.predict_proba(x), atol=1e-4)
    assert backend.predict({"input": x[:0]})["output_probability"].shape == (0, 0)


def test_onnx_load_errors(onnx_dir: Path, tmp_path: Path) -> None:
    wrong = ModelSpec(path="digits/model.onnx", inputs=(TensorSpec(name="pixels", shape=(-1, 64)),))
    with pytest.raises(
        BackendError, match=r"declares inputs \['pixels'\], the model takes \['input'\]"
    ):
        load_backend("digits", wrong, onnx_dir)
    with pytest.raises(BackendError, match="no such model file"):
        load_backend("m", ModelSpec(path="missing.onnx"), tmp_path)
    with pytest.raises(BackendError, match="no path given"):
        load_backend("m", ModelSpec(), tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match="ONNX Runtime cannot load"):
        load_backend("m", ModelSpec(path="bad.onnx"), tmp_path)
    (tmp_path / "two").mkdir()
    for n in ("a.onnx", "b.onnx"):
        (tmp_path / "two" / n).write_bytes(b"")
    with pytest.raises(BackendError, match=r"exactly one \*.onnx file, found 2"):
        load_backend("m", ModelSpec(path="two"), tmp_path)


def test_onnx_run_failure_is_a_422(onnx_dir: Path) -> None:
    spec = ModelSpec(path="digits/model.onnx", inputs=DIGITS_INPUT)
    backend = load_backend("digits", spec, onnx_dir)
    with pytest.raises(InvalidInput) as info:
        backend.predict({"input": np.zeros((1, 63), dtype=np.float32)})
    assert STATUS[info.value.reason] == 422 and "cannot run on this input" in str(info.value)


# -- scikit-learn with skops ----------------------------------------------------------------------


class Custom(ClassifierMixin, BaseEstimator):  # a type no allow-list knows
    def fit(self, x: Any, y: Any) -> Custom:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        return np.full(len(x), self.classes_[0])


def test_sklearn_classifier(digits: TrainedDigits, tmp_path: Path) -> None:
    skops.io.dump(digits.model, tmp_path / "model.skops")
    spec = ModelSpec(backend="sklearn", path="model.skops", inputs=DIGITS_INPUT)
    backend = load_backend("digits", spec, tmp_path)
    assert backend.outputs == (
        OutputMeta("label", "INT64", (-1,)),
        OutputMeta("probabilities", "FP32", (-1, 10)),
    )
    out = backend.predict({"input": digits.x_test.astype(np.float32)})
    assert out["label"].dtype == np.int64 and out["probabilities"].dtype == np.float32
    assert float((out["label"] == digits.y_test).mean()) > 0.9
    with pytest.raises(InvalidInput, match="cannot run"):
        backend.predict({"input": np.zeros((1, 3), dtype=np.float32)})
    backend.close()


def test_sklearn_string_classes_and_regressor(tmp_path: Path) -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    skops.io.dump(LogisticRegression().fit(x, ["no", "no", "yes", "yes"]), tmp_path / "c.skops")
    skops.io.dump(LinearRegression().fit(x, [0.0, 2.0, 4.0, 6.0]), tmp_path / "r.skops")
    x_in = (TensorSpec(name="x", shape=(-1, 1)),)
    c = load_backend("c", ModelSpec(backend="sklearn", path="c.skops", inputs=x_in), tmp_path)
    assert c.outputs[0] == OutputMeta("label", "BYTES", (-1,))
    assert c.predict({"x": np.array([[3.0]], np.float32)})["label"].tolist() == ["yes"]
    r = load_backend("r", ModelSpec(backend="sklearn", path="r.skops", inputs=x_in), tmp_path)
    assert r.outputs == (OutputMeta("prediction", "FP32", (-1,)),)
    np.testing.assert_allclose(
        r.predict({"x": np.array([[5.0]], np.float32)})["prediction"], [10.0]
    )


def test_sklearn_refuses_types_outside_the_allow_list(tmp_path: Path) -> None:
    skops.io.dump(Custom().fit(None, [1, 2]), tmp_path / "custom.skops")
    spec = ModelSpec(
        backend="sklearn", path="custom.skops", inputs=(TensorSpec(name="x", shape=(-1, 1)),)
    )
    with pytest.raises(
        UnsafeArtifactError, match=r"outside the allow-list: .*test_backends\.Custom"
    ):
        load_backend("m", spec, tmp_path)
    # Allowed explicitly (as [controls.scan] allow would), the same file loads.
    allowed = f"{Custom.__module__}.Custom"
    backend = load_backend("m", spec, tmp_path, allow=[allowed])
    assert backend.predict({"x": np.zeros((2, 1))})["label"].tolist() == [1, 1]


def test_trusted_types_never_widens() -> None:
    assert trusted_types([]) == []
    with pytest.raises(UnsafeArtifactError, match=r"builtins\.eval, os\.system"):
        trusted_types(["numpy.dtype", "os.system", "builtins.eval"])
    with pytest.raises(UnsafeArtifactError):
        trusted_types(["nodots"])


def test_sklearn_load_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.skops").write_bytes(b"PK\x03\x04 junk")
    spec = ModelSpec(backend="sklearn", path="junk.skops", inputs=(TensorSpec(name="x"),))
    with pytest.raises(BackendError, match="not a readable skops file"):
        load_backend("m", spec, tmp_path)
    two = ModelSpec(
        backend="sklearn", path="junk.skops", inputs=(TensorSpec(name="a"), TensorSpec(name="b"))
    )
    with pytest.raises(BackendError, match="takes one input"):
        load_backend("m", two, tmp_path)


# -- upstream Open Inference Protocol server ------------------------------------------------------


def _upstream_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v2/models/{name}")
    def metadata(name: str) -> Any:
        if name not in ("doubler", "broken", "garbage", "slow", "huge"):
            return JSONResponse({"error": "no such model"}, status_code=404)
        return {
            "name": name,
            "versions": ["1"],
            "platform": "test",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [
                {"name": "doubled", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "bad", "datatype": "NOPE", "shape": [1]},
            ],
        }

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Any:
        doc = await request.json()
        if name == "broken":
            return PlainTextResponse("Traceback: secret internals at /srv/model", status_code=500)
        if name == "garbage":
            return PlainTextResponse("{not json")
        if name == "huge":
            return PlainTextResponse("x" * 5000)
        if name == "slow":
            import asyncio

            await asyncio.sleep(1.0)
        x = doc["inputs"][0]
        outputs = [
            {
                "name": "doubled",
                "datatype": "FP32",
                "shape": x["shape"],
                "data": [2 * v for v in x["data"]],
            },
            {
                "name": "label",
                "datatype": "INT64",
                "shape": [x["shape"][0]],
                "data": [7] * x["shape"][0],
            },
        ]
        wanted = [o["name"] for o in doc.get("outputs", [])]
        return {
            "model_name": name,
            "outputs": [o for o in outputs if not wanted or o["name"] in wanted],
        }

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_upstream_app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("upstream test server did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _spec(url: str, model: str = "", outputs: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(
        backend="upstream",
        url=url,
        upstream_model=model,
        inputs=(TensorSpec(name="x", shape=(-1, 2)),),
        outputs=outputs,
    )


def test_upstream_round_trip(upstream: str, tmp_path: Path) -> None:
    backend = load_backend("mine", _spec(upstream, "doubler"), tmp_path)
    assert backend.outputs == (OutputMeta("doubled", "FP32", (-1, 2)),)
    out = backend.predict({"x": np.array([[1.5, -2.0], [0.25, 4.0]], dtype=np.float32)})
    assert out["doubled"].dtype == np.float32
    assert out["doubled"].tolist() == [[3.0, -4.0], [0.5, 8.0]]
    assert out["label"].dtype == np.int64 and out["label"].tolist() == [7, 7]
    backend.close()


def test_upstream_uses_the_gateway_name_and_requested_outputs(
    upstream: str, tmp_path: Path
) -> None:
    backend = load_backend("doubler", _spec(upstream, outputs=("label",)), tmp_path)
    out = backend.predict({"x": np.zeros((3, 2), dtype=np.float32)})
    backend.close()
    assert list(out) == ["label"]


@pytest.mark.parametrize(
    ("model", "fragment"),
    [("broken", "answered HTTP 500"), ("garbage", "not JSON"), ("huge", "larger than 1000 bytes")],
)
def test_upstream_failures_are_502_without_the_upstream_body(
    upstream: str, model: str, fragment: str
) -> None:
    client = httpx.Client(base_url=upstream, timeout=5.0, trust_env=False)
    backend = UpstreamBackend("m", client, model, (), max_response_bytes=1000)
    with pytest.raises(Denied) as info:
        backend.predict({"x": np.zeros((1, 2), dtype=np.float32)})
    backend.close()
    assert (STATUS[info.value.reason], info.value.reason) == (502, "upstream")
    assert fragment in str(info.value)
    assert "secret" not in str(info.value) and "Traceback" not in str(info.value)


def test_upstream_timeout_is_502(upstream: str) -> None:
    client = httpx.Client(base_url=upstream, timeout=0.2, trust_env=False)
    backend = UpstreamBackend("m", client, "slow", ())
    with pytest.raises(Denied, match="timed out") as info:
        backend.predict({"x": np.zeros((1, 2), dtype=np.float32)})
    backend.close()
    assert STATUS[info.value.reason] == 502


def test_upstream_unreachable(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there now
    with pytest.raises(BackendError, match="unreachable"):
        load_backend("m", _spec(url), tmp_path)
    backend = UpstreamBackend("m", httpx.Client(base_url=url, trust_env=False), "m", ())
    with pytest.raises(Denied, match="unreachable") as info:
        backend.predict({"x": np.zeros((1, 2), dtype=np.float32)})
    backend.close()
    assert STATUS[info.value.reason] == 502


def test_upstream_load_errors(upstream: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="answered HTTP 404"):
        load_backend("unknown-model", _spec(upstream), tmp_path)
    with pytest.raises(BackendError, match="must be http"):
        load_backend("m", _spec("file:///etc/passwd"), tmp_path)


def test_heavy_dependencies_load_only_with_their_backend() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import atlasguard.gateway.oip, atlasguard.gateway.backends, atlasguard.gateway.preprocess\n"
        "import atlasguard.gateway.demo, atlasguard._cli.init\n"
        "heavy = {'onnxruntime', 'onnx', 'skops', 'httpx', 'sklearn', 'skl2onnx', 'fastapi', 'torch'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
