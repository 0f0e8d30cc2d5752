"""Project set-up (``atlasguard init DIR [--demo]``) and the demo model.

:func:`init_project` writes ``DIR/atlasguard.toml`` (the default policy, with
state under ``DIR/state`` and a signing key pair under ``DIR/keys``), and
``DIR/.gitignore``. With ``demo=True`` it also trains a digits classifier on
scikit-learn's bundled digits (pixels scaled to [0, 1]), exports it to ONNX
(one input ``input``, FP32 ``[N, 64]``; outputs ``label`` and
``probabilities``), signs its directory, scans it, declares it as model
``digits``, and creates two principals: ``admin`` (an admin) and ``demo``
(role ``user`` on ``digits``), whose keys it returns once.

>>> trained = train_digits()
>>> trained.accuracy > 0.9
True
>>> trained.x_test.shape[1], float(trained.x_test.max()) <= 1.0
(64, True)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.keys import load_private_key, write_signing_keypair
from atlasguard.errors import UnsafeArtifactError, UsageError
from atlasguard.policy import (
    DEFAULT_POLICY_NAME,
    load_policy,
    load_policy_text,
    render_default_policy,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "DEMO_CALIBRATION_PATH",
    "DEMO_MODEL",
    "DEMO_MODEL_PATH",
    "DEMO_REFERENCE_PATH",
    "DemoModel",
    "Project",
    "TrainedDigits",
    "curl_example",
    "demo_model_table",
    "export_onnx",
    "init_project",
    "project_policy",
    "train_digits",
    "write_demo_model",
]

DEMO_MODEL = "digits"
DEMO_MODEL_PATH = "models/digits/model.onnx"
DEMO_REFERENCE_PATH = "reference/digits.npy"
DEMO_CALIBRATION_PATH = "reference/digits-held-out.npy"
_OUTPUTS = ("label", "probabilities")


@dataclass(frozen=True)
class TrainedDigits:
    """A fitted classifier and the held-out digits it was scored on."""

    model: Any
    x_test: npt.NDArray[np.float64]
    y_test: npt.NDArray[np.int64]
    accuracy: float
    x_train: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 64)))


@dataclass(frozen=True)
class DemoModel:
    """The demo model on disk: ONNX file, its signature, accuracy, one held-out digit."""

    path: Path
    signature: Path
    accuracy: float  # held out, as served (behind the demo's input restoration)
    sample: tuple[float, ...]
    sample_label: int
    unrestored_accuracy: float | None = None  # the model alone


@dataclass(frozen=True)
class Project:
    """What :func:`init_project` wrote. The keys are the only copies: show them once."""

    policy_path: Path
    private_key: Path
    public_key: Path
    demo: DemoModel | None = None
    admin_key: str | None = field(default=None, repr=False)
    demo_key: str | None = field(default=None, repr=False)


def train_digits(*, random_state: int = 0) -> TrainedDigits:
    """Logistic regression on scikit-learn's bundled digits, pixels divided by 16."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=random_state, stratify=y
    )
    model = LogisticRegression(max_iter=2000, random_state=random_state).fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    return TrainedDigits(model, x_test, y_test.astype(np.int64), accuracy, x_train)


def export_onnx(model: Any, path: Path) -> None:
    """Write ``model`` as ONNX: input ``input`` FP32 ``[N, 64]``, outputs label, probabilities.

    The ZipMap is left out, so ``probabilities`` is a plain ``[N, 10]`` tensor.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, 64]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    names = tuple(o.name for o in onx.graph.output)
    if names != _OUTPUTS:  # skl2onnx's names; the policy and clients rely on them
        raise UsageError(f"exported outputs are {names}, expected {_OUTPUTS}")
    Path(path).write_bytes(onx.SerializeToString())


def write_demo_model(
    directory: Path, key: ec.EllipticCurvePrivateKey, *, random_state: int = 0
) -> DemoModel:
    """Train, export to ``directory/models/digits/model.onnx``, sign the directory, scan it."""
    from atlasguard.artifacts.scan import scan_path
    from atlasguard.artifacts.signing import sign_model

    trained = train_digits(random_state=random_state)
    path = Path(directory) / DEMO_MODEL_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(trained.model, path)
    signature = sign_model(path.parent, key)
    findings = [f for r in scan_path(path.parent) for f in r.findings if f.severity >= Severity.LOW]
    if findings:
        raise UnsafeArtifactError(f"the demo model does not scan clean: {findings[0].message}")
    # Clean inputs for the query monitor (what natural queries look like): training rows,
    # beside the model's signed directory, not in it.
    reference = Path(directory) / DEMO_REFERENCE_PATH
    reference.parent.mkdir(parents=True, exist_ok=True)
    np.save(reference, trained.x_train.astype(np.float32), allow_pickle=False)
    # Held-out digits the model never trained on: the input detectors' thresholds.
    np.save(
        Path(directory) / DEMO_CALIBRATION_PATH,
        trained.x_test.astype(np.float32),
        allow_pickle=False,
    )
    # What clients get is the model behind the demo's input restoration: its accuracy,
    # and an example digit it answers rightly.
    served = trained.model.predict(demo_restoration()(trained.x_test))
    right = served == trained.y_test
    first = int(np.argmax(right)) if right.any() else 0
    return DemoModel(
        path=path,
        signature=signature,
        accuracy=float(right.mean()),
        sample=tuple(float(v) for v in trained.x_test[first]),
        sample_label=int(trained.y_test[first]),
        unrestored_accuracy=trained.accuracy,
    )


DEMO_RESTORATION_BITS = 2


def demo_restoration() -> Any:
    """The input restoration the demo policy gives the digits (2 bits per pixel)."""
    from atlasguard.runtime.restoration import Restorer
    from atlasguard.runtime.settings import RestoreStep

    return Restorer.build(
        [RestoreStep(op="bit_depth", bits=DEMO_RESTORATION_BITS)],
        kind="image",
        shape=(8, 8),
        value_range=(0.0, 1.0),
    )


def demo_model_table(path: str = DEMO_MODEL_PATH) -> str:
    """The ``[models.digits]`` table of the demo policy."""
    return f"""
# The demo model: a digits classifier (8x8 pixels scaled to [0, 1]) in ONNX, signed.
[models.{DEMO_MODEL}]
backend = "onnx"
path = "{path}"
version = "1"
inputs = [{{ name = "input", datatype = "FP32", shape = [-1, 64], min = 0.0, max = 1.0 }}]
outputs = ["label", "probabilities"]
preprocess = [{{ op = "clip", min = 0.0, max = 1.0 }}]
max_batch = 1024
# Clean inputs (training rows) the query monitor and the input detectors learn from, and
# held-out ones the detectors' thresholds are calibrated on.
reference = "{DEMO_REFERENCE_PATH}"
calibration = "{DEMO_CALIBRATION_PATH}"
"""


def curl_example(key: str, sample: Sequence[float], *, url: str = "http://127.0.0.1:8000") -> str:
    """A ``curl`` command that asks the demo model about one digit.

    >>> print(curl_example("agk_x", [0.5] * 2).splitlines()[1])
      -H "Authorization: Bearer agk_x" \\
    """
    body = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, len(sample)], "datatype": "FP32", "data": sample}
            ]
        },
        separators=(",", ":"),
    )
    return (
        f"curl -s -X POST {url}/v2/models/{DEMO_MODEL}/infer \\\n"
        f'  -H "Authorization: Bearer {key}" \\\n'
        f'  -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )


def _set_value(text: str, table: str, key: str, value: str) -> str:
    """Replace ``key = ...`` inside ``[table]`` of the rendered default policy."""
    start = text.index(f"[{table}]\n")
    end = text.find("\n[", start + 1)
    end = len(text) if end == -1 else end
    line = re.compile(rf"^(# )?{re.escape(key)} =.*$", re.MULTILINE)
    match = line.search(text, start, end)
    if match is None:
        raise UsageError(f"the default policy has no {table}.{key} to set")
    return text[: match.start()] + f"{key} = {value}" + text[match.end() :]


def project_policy(*, demo: bool) -> str:
    """The policy ``init`` writes: state in ``state/``, keys in ``keys/``, and the demo model."""
    text = render_default_policy()
    text = _set_value(text, "deployment", "state_dir", '"state"')
    text = _set_value(text, "keys", "signing_key", '"keys/private.pem"')
    text = _set_value(text, "keys", "public_key", '"keys/public.pem"')
    if demo:
        # The demo model is signed, so the demo refuses to serve it unsigned; what its
        # registry stores is sealed with the keyring init writes beside the signing keys.
        text = _set_value(text, "controls.signing", "require", "true")
        text = _set_value(text, "keys", "keyring", '"keys/kek.json"')
        text = _set_value(text, "controls.registry", "encrypt", "true")
        # Input restoration for the digits (8x8 images in [0, 1]): 2 bits per pixel, chosen
        # on the tuning split (bench/efficacy/restoration.py): it undoes part of a small
        # gradient attack for under a point of clean accuracy.
        text = _set_value(
            text,
            "controls.restoration",
            "models",
            f'{{ {DEMO_MODEL} = {{ kind = "image", shape = [8, 8], steps = '
            f'[{{ op = "bit_depth", bits = {DEMO_RESTORATION_BITS} }}] }} }}',
        )
        text += demo_model_table()
    return text


def _write_new(path: Path, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _gitignore(path: Path) -> None:
    wanted = ["state/", "keys/"]
    existing = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    missing = [w for w in wanted if w not in existing]
    if missing:
        with path.open("a", encoding="utf-8") as fh:
            if existing and existing[-1] != "":
                fh.write("\n")
            fh.write("".join(f"{w}\n" for w in missing))


def init_project(directory: str | os.PathLike[str], *, demo: bool = False) -> Project:
    """Set up a deployment in ``directory``; refuse if it already holds a policy."""
    root = Path(directory)
    policy_path = root / DEFAULT_POLICY_NAME
    if policy_path.exists():
        raise UsageError(f"{policy_path} exists; refusing to overwrite a project")
    root.mkdir(parents=True, exist_ok=True)
    private, public = write_signing_keypair(root / "keys")
    (root / "state").mkdir(exist_ok=True)
    _gitignore(root / ".gitignore")
    model = None
    if demo:
        from atlasguard.artifacts.keys import create_keyring

        create_keyring(root / "keys" / "kek.json")
        model = write_demo_model(root, load_private_key(private))
    text = project_policy(demo=demo)
    load_policy_text(text, source=str(policy_path), path=policy_path)  # never write a bad file
    _write_new(policy_path, text)
    project = Project(policy_path=policy_path, private_key=private, public_key=public, demo=model)
    if not demo:
        return project
    from atlasguard.runtime.deployment import Deployment

    with Deployment.open(load_policy(policy_path)) as deployment:
        admin = deployment.admin.create_key("atlasguard-init", "admin", admin=True)
        user = deployment.admin.create_key("atlasguard-init", "demo", models=[DEMO_MODEL])
    if admin is None or user is None:  # pragma: no cover - principals, not groups
        raise UsageError("the demo principals could not be given keys")
    return Project(
        policy_path=policy_path,
        private_key=private,
        public_key=public,
        demo=model,
        admin_key=admin.secret,
        demo_key=user.secret,
    )
