"""The gateway without HTTP: a deployment's models, loaded through its load gate.

:class:`Gateway` is built over a :class:`~atlasguard.runtime.deployment.Deployment`
(:meth:`Gateway.from_policy` opens one). Before a model is served it passes the
deployment's load gate (verify, decrypt, scan); a model that fails is not
served (it is listed, with the reason, in :attr:`Gateway.refused`). Each
served model is a :class:`~atlasguard.runtime.protect.Protected`: access,
guards, the model, one audit record per request.

:class:`Placement` decides, per request, whether a model's call may run on the
server's event loop (short, never waiting on the network) or must go to a
worker thread.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atlasguard.errors import AtlasguardError, ConfigurationError
from atlasguard.policy import ModelSpec, Policy
from atlasguard.runtime.deployment import Deployment
from atlasguard.runtime.pipeline import Arrays
from atlasguard.runtime.protect import Protected
from atlasguard.runtime.settings import ServingSettings
from atlasguard.runtime.validate import numpy_dtype

if TYPE_CHECKING:
    from atlasguard.gateway.backends.base import Backend
    from atlasguard.registry.service import Registry

__all__ = ["GATEWAY_PRINCIPAL", "REGISTRY_PREFIX", "Gateway", "Placement", "ServedModel"]

logger = logging.getLogger("atlasguard.gateway")

REGISTRY_PREFIX = "registry:"
GATEWAY_PRINCIPAL = "atlasguard-gateway"
"""The principal the gateway pulls registry models as: grant it ``reader`` on them."""


@dataclass
class Placement:
    """Where a model's calls run: on the event loop while they are short, else a thread.

    A call runs inline only when nothing in it may wait on the network
    (``blocking``: an upstream model, a shared quota store) and its expected CPU
    time — the moving average of past calls' time per row, times the rows — is
    within ``budget`` seconds. A call that overran moves the model off the loop
    until calls are short again, so a slow model never holds other requests up
    for long; until a model has been measured, its calls go to threads.
    """

    blocking: bool
    budget: float = 0.0005
    per_row: float | None = None  # seconds of CPU per row, moving average
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inline(self, rows: int) -> bool:
        per_row = self.per_row
        return not self.blocking and per_row is not None and per_row * max(1, rows) <= self.budget

    def observe(self, seconds: float, rows: int) -> None:
        """Record that a call of ``rows`` rows took ``seconds`` of CPU."""
        sample = seconds / max(1, rows)
        with self._lock:
            old = self.per_row
            self.per_row = sample if old is None else 0.9 * old + 0.1 * max(sample, 0.0)
            if sample * max(1, rows) > 4 * self.budget:
                self.per_row = max(self.per_row, sample)  # an overrun counts at once


@dataclass
class ServedModel:
    name: str
    spec: ModelSpec
    backend: Backend
    protected: Protected
    placement: Placement


class Gateway:
    """Everything a gateway process serves, built once per worker over one deployment."""

    def __init__(
        self,
        deployment: Deployment,
        models: dict[str, ServedModel],
        refused: dict[str, str] | None = None,
    ) -> None:
        self.deployment = deployment
        self.models = models
        self.refused = dict(refused or {})
        self.backends: list[Backend] = []  # every backend loaded, members included
        serving = deployment.policy.settings("serving")
        self.max_body_bytes = (
            serving.max_body_bytes if isinstance(serving, ServingSettings) else 8 << 20
        )

    @classmethod
    def from_policy(cls, policy: Policy, *, passphrase: bytes | None = None) -> Gateway:
        """Open the deployment and load every declared model through its load gate."""
        if not policy.enabled("access"):
            raise ConfigurationError(
                f"{policy.where('controls.access')}: the gateway never serves without access "
                "control; set [controls.access] enabled = true"
            )
        return cls.over(Deployment.open(policy, passphrase=passphrase))

    @classmethod
    def over(cls, deployment: Deployment) -> Gateway:
        """The gateway of an open deployment: its models loaded through its load gate."""
        policy = deployment.policy
        registry = deployment.registry if deployment.has("registry") else None
        models: dict[str, ServedModel] = {}
        refused: dict[str, str] = {}
        loaded: dict[str, tuple[Backend, Callable[[Arrays], Arrays]]] = {}
        composite = ("ensemble", "consensus")
        # plain models first: an ensemble or a consensus is built over its loaded members
        ordered = sorted(policy.models.items(), key=lambda item: item[1].backend in composite)
        for name, spec in ordered:
            try:
                if spec.backend in composite:
                    loaded[name] = _compose(name, spec, policy, loaded, refused)
                else:
                    loaded[name] = _load_model(deployment, name, spec, registry)
            except AtlasguardError as exc:
                logger.error("model %s is not served: %s", name, exc)
                refused[name] = str(exc)
                continue
            if not spec.expose:
                continue  # a member only: loaded through the gate, never served by name
            backend, predict = loaded[name]
            protected = deployment.protect(predict, name=name)
            placement = Placement(blocking=backend.blocking or protected.pipeline.blocking)
            models[name] = ServedModel(name, spec, backend, protected, placement)
            _warm_up(models[name])
        gateway = cls(deployment, models, refused)
        gateway.backends = [backend for backend, _ in loaded.values()]
        return gateway

    @property
    def policy(self) -> Policy:
        return self.deployment.policy

    @property
    def registry(self) -> Registry | None:
        return self.deployment.registry if self.deployment.has("registry") else None

    def close(self) -> None:
        """Release the models; write what the audit log holds and sign its head."""
        for backend in self.backends or [s.backend for s in self.models.values()]:
            backend.close()
        self.deployment.close(sign_head=True)


def _warm_up(served: ServedModel) -> None:
    """Measure the model on zeros of its declared shape (one row), if it has one."""
    inputs: dict[str, np.ndarray] = {}
    for tensor in served.spec.inputs:
        dims = tensor.shape[1:]
        if tensor.datatype == "BYTES" or any(d < 0 for d in dims):
            return  # no shape to make up: the first real calls measure it
        inputs[tensor.name] = np.zeros((1, *dims), dtype=numpy_dtype(tensor.datatype))
    if served.placement.blocking or not inputs:
        return
    predict = served.protected.pipeline.predict
    try:
        for _ in range(5):
            start = time.thread_time()
            predict(inputs)
            served.placement.observe(time.thread_time() - start, 1)
    except Exception:  # a model that refuses zeros is measured by its first real calls
        served.placement.per_row = None


def _compose(
    name: str,
    spec: ModelSpec,
    policy: Policy,
    loaded: dict[str, tuple[Backend, Callable[[Arrays], Arrays]]],
    refused: dict[str, str],
) -> tuple[Backend, Callable[[Arrays], Arrays]]:
    """An ensemble or a consensus over members already loaded through the load gate."""
    from atlasguard.gateway.backends.composite import CompositeBackend
    from atlasguard.runtime.ensemble import Consensus, Ensemble
    from atlasguard.runtime.settings import OutputSettings

    where = policy.where(f"models.{name}")
    if not policy.enabled(spec.backend):
        raise ConfigurationError(
            f"{where}: {spec.backend} models are served only with "
            f"[controls.{spec.backend}] enabled = true"
        )
    if len(spec.members) < 2:
        raise ConfigurationError(f"{where}: {spec.backend} {name} needs at least two members")
    for member in spec.members:
        if member not in policy.models:
            raise ConfigurationError(f"{where}: member {member!r} is not a declared model")
        if policy.models[member].backend in ("ensemble", "consensus"):
            raise ConfigurationError(f"{where}: member {member!r} is itself an {spec.backend}")
        if member not in loaded:
            why = refused.get(member, "not loaded")
            raise ConfigurationError(f"{where}: member {member!r} is not served ({why})")
    output = policy.settings("output")
    names = output.score_outputs if isinstance(output, OutputSettings) else None
    extra = {"score_outputs": names} if names else {}
    predicts = [loaded[m][1] for m in spec.members]
    backends = [loaded[m][0] for m in spec.members]
    if spec.backend == "ensemble":
        predict: Callable[[Arrays], Arrays] = Ensemble(predicts, voting=spec.voting, **extra)
        outputs = ("label", "probabilities", "disagreement")
    else:
        declared = {t.name for t in spec.inputs}
        views = []
        for member, member_predict in zip(spec.members, predicts, strict=True):
            reads = tuple(t.name for t in policy.models[member].inputs)
            missing = [r for r in reads if r not in declared]
            if not reads or missing:
                raise ConfigurationError(
                    f"{where}: declare the inputs of member {member!r} "
                    f"({', '.join(missing) or 'none declared'}) in [models.{name}] inputs"
                )
            views.append((member_predict, reads))
        if spec.agree > len(views):
            raise ConfigurationError(f"{where}: agree = {spec.agree} exceeds the members")
        predict = Consensus(views, agree=spec.agree, withhold=spec.withhold, **extra)
        outputs = ("label", "probabilities", "agreement")
    return CompositeBackend.over(name, backends, outputs), predict


def _load_model(
    deployment: Deployment, name: str, spec: ModelSpec, registry: Registry | None
) -> tuple[Backend, Callable[[Arrays], Arrays]]:
    from atlasguard.gateway.backends import load_backend
    from atlasguard.gateway.preprocess import Preprocessor

    policy = deployment.policy
    gate = deployment.load_gate
    if spec.backend == "upstream":
        backend = load_backend(name, spec, policy.base_dir, allow=gate.allow)
    else:
        staging = Path(tempfile.mkdtemp(prefix="atlasguard-load-"))  # mode 0700
        try:
            source = _model_file(policy, name, spec, registry, staging)
            checked = gate.stage(source, staging, name=name)
            backend = load_backend(
                name, spec, policy.base_dir, allow=gate.allow, model_path=checked
            )
        finally:
            # the backend holds the model in memory: no plaintext copy stays on disk
            shutil.rmtree(staging, ignore_errors=True)
    preprocess = Preprocessor.from_spec(spec.preprocess)

    def predict(inputs: Arrays) -> Arrays:
        return backend.predict(preprocess(inputs))

    return backend, predict


def _model_file(
    policy: Policy, name: str, spec: ModelSpec, registry: Registry | None, staging: Path
) -> Path:
    """Where the model file is: under the policy's directory, or pulled from the registry.

    ``path = "registry:digits@production/model.onnx"`` pulls that version (as
    :data:`GATEWAY_PRINCIPAL`, verified against its stored manifest, audited) and
    names the file inside it; a single-file object needs no ``/member``.
    """
    if not spec.path:
        raise ConfigurationError(f"models.{name}.path is not set")
    if not spec.path.startswith(REGISTRY_PREFIX):
        return policy.base_dir / spec.path
    if registry is None:
        raise ConfigurationError(
            f"models.{name}: a registry path needs [controls.registry] enabled = true"
        )
    ref, _, member = spec.path[len(REGISTRY_PREFIX) :].partition("/")
    pulled = registry.pull(GATEWAY_PRINCIPAL, ref, staging / "pulled")
    return pulled / member if member else pulled
