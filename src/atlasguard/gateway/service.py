"""The gateway without HTTP: models loaded behind the load gate, guards, identity, audit.

:class:`Gateway` is built from a policy (:meth:`Gateway.from_policy`). Before a
model is served, the scanner runs on it and, when ``[controls.signing] require``
is set, its signature is verified with ``[keys] public_key``; a model that fails
is not served (it is listed, with the reason, in :attr:`Gateway.refused`).
Each served model is a :class:`~atlasguard.runtime.protect.Protected`: access,
validation, quotas and output policy, and one audit record per request.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlasguard.controls import Control, ControlSettings
from atlasguard.errors import AtlasguardError, ConfigurationError
from atlasguard.policy import ModelSpec, Policy
from atlasguard.runtime.access import AccessGuard
from atlasguard.runtime.pipeline import Arrays, Denied, Guard, Principal, Response
from atlasguard.runtime.protect import Protected
from atlasguard.runtime.validate import ValidateGuard

if TYPE_CHECKING:
    from atlasguard.audit.log import AuditLog
    from atlasguard.gateway.backends.base import Backend
    from atlasguard.identity.store import IdentityStore
    from atlasguard.identity.tokens import JwtVerifier
    from atlasguard.registry.service import Registry
    from atlasguard.runtime.quotas import QuotaPolicy

__all__ = ["CONTROLS", "Gateway", "ServedModel", "ServingSettings", "build_guards"]

logger = logging.getLogger("atlasguard.gateway")


class AccessSettings(ControlSettings):
    """``[controls.access]``: API keys always; JWT bearer tokens when an issuer is set."""

    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwks_file: str = ""
    jwks_url: str = ""
    jwt_principal_claim: str = "sub"
    jwt_groups_claim: str = ""  # e.g. "groups": each becomes a group:<name> principal


class ServingSettings(ControlSettings):
    """``[controls.serving]``: serve models from the server only, behind the guards."""

    max_body_bytes: int = 8 * 1024 * 1024


CONTROLS = (
    Control(
        key="access",
        title="Authenticated, granted access to models",
        mitigates=frozenset({"AML.M0019"}),
        summary="Per-principal API keys (scrypt-hashed), deny by default: a principal reaches "
        "a model only through a grant; every request is a record in the tamper-evident audit log.",
        enable="[controls.access] enabled = true; atlasguard keys create --principal P --models M",
        settings=AccessSettings,
    ),
    Control(
        key="serving",
        title="Server-side model serving",
        mitigates=frozenset({"AML.M0017"}),
        summary="Models and their preprocessing stay on the server; clients only ever see "
        "declared inputs and outputs (Open Inference Protocol).",
        enable="[controls.serving] enabled = true; atlasguard serve --config atlasguard.toml",
        settings=ServingSettings,
    ),
)


@dataclass
class ServedModel:
    name: str
    spec: ModelSpec
    backend: Backend
    protected: Protected


@dataclass
class Gateway:
    """Everything a gateway process serves, built once per worker."""

    policy: Policy
    identity: IdentityStore
    audit: AuditLog
    models: dict[str, ServedModel]
    access: AccessGuard
    registry: Registry | None = None
    refused: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_policy(cls, policy: Policy, *, passphrase: bytes | None = None) -> Gateway:
        """Open the deployment's stores and load every declared model through the load gate."""
        from atlasguard.audit.log import open_audit_log
        from atlasguard.identity.store import open_identity_store

        if not policy.enabled("access"):
            raise ConfigurationError(
                f"{policy.where('controls.access')}: the gateway never serves without access "
                "control; set [controls.access] enabled = true"
            )
        identity = open_identity_store(policy)
        audit, _ = open_audit_log(policy, passphrase=passphrase)
        serving = policy.settings("serving")
        max_body = getattr(serving, "max_body_bytes", 8 * 1024 * 1024)
        guards = build_guards(policy, identity, max_body_bytes=max_body)
        registry = None
        if policy.enabled("registry"):
            from atlasguard.registry.service import open_registry

            registry = open_registry(policy, passphrase=passphrase)
        models: dict[str, ServedModel] = {}
        refused: dict[str, str] = {}
        for name, spec in policy.models.items():
            try:
                backend, predict = _load_model(policy, name, spec, registry)
            except AtlasguardError as exc:
                logger.error("model %s is not served: %s", name, exc)
                refused[name] = str(exc)
                continue
            models[name] = ServedModel(
                name=name,
                spec=spec,
                backend=backend,
                protected=Protected(name=name, predict=predict, guards=guards, audit=audit),
            )
        access = next(g for g in guards if isinstance(g, AccessGuard))
        return cls(
            registry=registry,
            policy=policy,
            identity=identity,
            audit=audit,
            models=models,
            access=access,
            refused=refused,
            max_body_bytes=max_body,
        )

    def infer(
        self,
        model: str,
        body: bytes,
        *,
        credential: str | None,
        client: str | None = None,
        request_id: str | None = None,
    ) -> Response:
        """Serve one Open Inference Protocol request; raises :class:`Denied` on refusal."""
        served = self.models.get(model)
        if served is None:
            # Same answers as for a model that exists: authenticate, then "no grant".
            self.require(model, credential)
            raise Denied("model is not being served", status=404, reason="not-found")
        return served.protected(
            body=body, credential=credential, client=client, request_id=request_id
        )

    def require(self, model: str, credential: str | None) -> Principal:
        """Authenticate and authorize without running a model (metadata, readiness)."""
        from atlasguard.runtime.pipeline import Request

        guard = self.access
        request = guard.before(Request(model=model, inputs={}, credential=credential))
        if request.principal is None:  # the guard sets it or raises; never serve anonymously
            raise Denied("authentication failed", status=401, reason="unauthenticated")
        return request.principal

    def close(self) -> None:
        """Release the models; finish the audit log and sign its head (graceful shutdown).

        Signing at shutdown means ``atlasguard audit verify`` covers every record
        the gateway wrote, not only those up to the last periodic checkpoint.
        """
        for served in self.models.values():
            served.backend.close()
        self.audit.close()
        if self.audit.signs_checkpoints:
            from atlasguard.audit.log import AuditWriteError

            try:
                self.audit.checkpoint()
            except AuditWriteError:
                logger.exception("could not sign the audit log's head at shutdown")


def _tokens(policy: Policy) -> JwtVerifier | None:
    """The JWT verifier ``[controls.access]`` describes, if it names an issuer."""
    settings = policy.settings("access")
    if not isinstance(settings, AccessSettings) or not settings.jwt_issuer:
        return None
    from atlasguard.identity.tokens import JwtVerifier

    common: dict[str, Any] = {
        "issuer": settings.jwt_issuer,
        "audience": settings.jwt_audience,
        "principal_claim": settings.jwt_principal_claim,
        "groups_claim": settings.jwt_groups_claim,
    }
    if settings.jwks_file:
        return JwtVerifier.from_file(policy.base_dir / settings.jwks_file, **common)
    return JwtVerifier(jwks_url=settings.jwks_url or None, **common)


def build_guards(
    policy: Policy, identity: IdentityStore, *, max_body_bytes: int = 8 * 1024 * 1024
) -> tuple[Guard, ...]:
    """The guards a policy enables, in order: access, validate, quotas, output."""
    guards: list[Guard] = [
        AccessGuard(identity, tokens=_tokens(policy)),
        ValidateGuard(policy.models, max_body_bytes=max_body_bytes),
    ]
    if policy.enabled("quotas"):
        from atlasguard.runtime.quotas import QuotaGuard, QuotaSettings

        settings = policy.settings("quotas")
        if not isinstance(settings, QuotaSettings):
            raise ConfigurationError("controls.quotas: unexpected settings type")
        guards.append(
            QuotaGuard.from_settings(
                settings,
                overrides=_grant_quotas(identity, settings),
                redis_url=policy.deployment.redis_url,
            )
        )
    if policy.enabled("output"):
        from atlasguard.runtime.obfuscation import OutputGuard, OutputSettings

        out = policy.settings("output")
        if not isinstance(out, OutputSettings):
            raise ConfigurationError("controls.output: unexpected settings type")
        guards.append(OutputGuard.from_settings(out))
    return tuple(guards)


def _grant_quotas(
    identity: IdentityStore, settings: Any
) -> Callable[[Principal, str], QuotaPolicy | None]:
    """Per-grant limits (``keys create --rate --quota``) override the policy's table."""
    from atlasguard.identity.store import PrincipalRecord
    from atlasguard.runtime.quotas import QuotaPolicy

    def resolve(principal: Principal, model: str) -> QuotaPolicy | None:
        record = PrincipalRecord(
            name=principal.name, is_admin=False, created_at=0.0, groups=principal.groups
        )
        for grant in identity.authorize(record, model):
            if grant.rate or grant.quota:
                # A grant's own rate means what it says: its burst is the rate's amount.
                return QuotaPolicy.parse(
                    rate=grant.rate or settings.rate,
                    burst=0 if grant.rate else settings.burst,
                    daily=grant.quota or settings.daily,
                    lifetime=settings.lifetime,
                )
        return None

    return resolve


REGISTRY_PREFIX = "registry:"
GATEWAY_PRINCIPAL = "atlasguard-gateway"
"""The principal the gateway pulls registry models as: grant it ``reader`` on them."""


def _load_model(
    policy: Policy, name: str, spec: ModelSpec, registry: Registry | None = None
) -> tuple[Backend, Callable[[Arrays], Arrays]]:
    from atlasguard.gateway.backends import load_backend
    from atlasguard.gateway.preprocess import Preprocessor

    scan = policy.settings("scan")
    allow = tuple(getattr(scan, "allow", ()))
    if spec.backend == "upstream":
        backend = load_backend(name, spec, policy.base_dir, allow=allow)
    else:
        staging = Path(tempfile.mkdtemp(prefix="atlasguard-load-"))  # mode 0700
        try:
            source = _model_file(policy, name, spec, registry, staging)
            checked = _load_gate(policy, name, source, staging)
            backend = load_backend(name, spec, policy.base_dir, allow=allow, model_path=checked)
        finally:
            # the backend holds the model in memory: no plaintext copy stays on disk
            shutil.rmtree(staging, ignore_errors=True)
    preprocess = Preprocessor.from_spec(spec.preprocess)

    def predict(inputs: Arrays) -> Arrays:
        return backend.predict(preprocess(inputs))

    return backend, predict


def _is_encrypted(path: Path) -> bool:
    from atlasguard.artifacts._enc_header import MAGIC

    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


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


def _load_gate(policy: Policy, name: str, path: Path, staging: Path) -> Path:
    """The load gate: verify, check, decrypt, scan; return the checked copy to load.

    With ``[controls.signing] require = true`` the model directory's signature
    and every file are verified and the model file is copied and re-checked
    against the signed digest (so a file swapped after the check is never
    loaded). An encrypted model (``atlasguard encrypt``) is decrypted with
    ``[keys] keyring``, fully authenticated first. The plaintext is then scanned;
    anything at or above ``[controls.scan] fail_on`` refuses the model.
    """
    from atlasguard.artifacts.findings import Severity
    from atlasguard.artifacts.scan import scan_path

    if not path.is_file():
        raise ConfigurationError(f"models.{name}: {path} is not a file")
    keyring = None
    if _is_encrypted(path):
        if not policy.keys.keyring:
            raise ConfigurationError(f"models.{name} is encrypted; set [keys] keyring")
        from atlasguard.artifacts.keys import load_keyring

        keyring = load_keyring(policy.base_dir / policy.keys.keyring)
    signing = policy.settings("signing")
    if getattr(signing, "enabled", False) and getattr(signing, "require", False):
        from atlasguard.artifacts.keys import load_public_key
        from atlasguard.artifacts.load_gate import stage_verified
        from atlasguard.artifacts.signing import verify_model

        if not policy.keys.public_key:
            raise ConfigurationError("[controls.signing] require = true needs [keys] public_key")
        key = load_public_key(policy.base_dir / policy.keys.public_key)
        model_dir = path.parent
        signature = model_dir / str(getattr(signing, "signature_name", "model.sig"))
        manifest = verify_model(model_dir, key, signature=signature)
        checked = stage_verified(model_dir, path.name, manifest, staging, key=keyring)
    elif keyring is not None:
        from atlasguard.artifacts.encryption import decrypt_path

        checked = staging / path.name
        decrypt_path(path, checked, keyring)
    else:
        checked = staging / path.name
        shutil.copyfile(path, checked)
    scan = policy.settings("scan")
    threshold = Severity.parse(str(getattr(scan, "fail_on", "high")))
    allow = tuple(getattr(scan, "allow", ()))
    for report in scan_path(checked, allow=allow):
        bad = [f for f in report.findings if f.severity >= threshold]
        if bad:
            raise ConfigurationError(
                f"models.{name}: {path} failed the scan: {bad[0].rule}: {bad[0].message}"
            )
    return checked
