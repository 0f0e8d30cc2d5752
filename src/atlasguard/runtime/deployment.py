"""The composition root: one deployment, opened once per process from its policy.

A :class:`Deployment` owns the database engine, the identity store, the one
audit log (behind the one :class:`~atlasguard.runtime.auditor.Auditor`), the
access checks, the guards the policy enables, the load gate and the registry.
The gateway, :func:`atlasguard.protect` and the command line are handed one;
none of them opens a store of its own, so one process writes one audit log
through one writer.

It builds exactly the parts :func:`~atlasguard.runtime.plan.plan` lists for the
policy, so what coverage reports is what runs.

>>> import pathlib, tempfile
>>> from atlasguard.policy import load_policy_text
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> policy = load_policy_text("[controls.access]\\nenabled = true\\n", path=root / "p.toml")
>>> with Deployment.open(policy) as deployment:
...     [p.name for p in deployment.parts]
['access']
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

from atlasguard.errors import ConfigurationError
from atlasguard.policy import Policy
from atlasguard.runtime.access import Access
from atlasguard.runtime.auditor import Auditor
from atlasguard.runtime.pipeline import Arrays, Guard, Principal
from atlasguard.runtime.plan import Part, plan
from atlasguard.runtime.protect import Protected
from atlasguard.runtime.settings import AccessSettings, OutputSettings, QuotaSettings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from atlasguard.artifacts.load_gate import LoadGate
    from atlasguard.audit.checkpoint import CheckpointVerifier
    from atlasguard.audit.log import AuditLog
    from atlasguard.identity.store import IdentityStore
    from atlasguard.identity.tokens import JwtVerifier
    from atlasguard.registry.service import Registry
    from atlasguard.runtime.admin import Admin
    from atlasguard.runtime.quotas import QuotaPolicy
    from atlasguard.runtime.suspensions import SuspensionStore

__all__ = ["Deployment", "state_prefix"]

logger = logging.getLogger("atlasguard")


class Deployment:
    """Everything one process of a deployment shares, built from its policy."""

    def __init__(
        self,
        *,
        policy: Policy,
        engine: Engine,
        identity: IdentityStore,
        audit: AuditLog,
        verifier: CheckpointVerifier | None = None,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.identity = identity
        self.audit = audit
        self.verifier = verifier
        self.auditor = Auditor(audit)
        self.access = Access(identity, tokens=_tokens(policy))
        self.parts: tuple[Part, ...] = plan(policy)

    @classmethod
    def open(cls, policy: Policy, *, passphrase: bytes | None = None) -> Deployment:
        """Open the deployment's database (migrated), identity store and audit log.

        ``passphrase`` unlocks an encrypted ``[keys] signing_key`` (audit checkpoints).
        """
        from atlasguard.audit.log import open_audit_log
        from atlasguard.db.engine import connect, database_url
        from atlasguard.identity.store import IdentityStore

        engine = connect(database_url(policy.deployment.database_url, policy.state_dir))
        identity = IdentityStore.create(engine)
        audit, verifier = open_audit_log(policy, passphrase=passphrase, engine=engine)
        return cls(policy=policy, engine=engine, identity=identity, audit=audit, verifier=verifier)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def mitigates(self) -> frozenset[str]:
        """Every ATLAS mitigation some part of this deployment implements."""
        out: frozenset[str] = frozenset()
        for part in self.parts:
            out |= part.mitigates
        return out

    def has(self, part: str) -> bool:
        return any(p.name == part for p in self.parts)

    # -- what the parts are ---------------------------------------------------------

    @cached_property
    def guards(self) -> tuple[Guard, ...]:
        """The guards the policy enables, in order, shared by every model served."""
        guards: list[Guard] = []
        if self.has("quotas"):
            from atlasguard.runtime.quotas import QuotaGuard

            settings = self.policy.settings("quotas")
            if not isinstance(settings, QuotaSettings):  # pragma: no cover - plan() checked
                raise ConfigurationError("controls.quotas: unexpected settings")
            guards.append(
                QuotaGuard.from_settings(
                    settings,
                    overrides=_grant_quotas(self.identity, settings),
                    redis_url=self.policy.deployment.redis_url,
                    default_prefix=self.quota_prefix,
                )
            )
        if self.has("output"):
            from atlasguard.runtime.obfuscation import OutputGuard

            out = self.policy.settings("output")
            if not isinstance(out, OutputSettings):  # pragma: no cover - plan() checked
                raise ConfigurationError("controls.output: unexpected settings")
            guards.append(OutputGuard.from_settings(out))
        if self.has("monitor"):
            from atlasguard.runtime.monitor import QueryMonitor

            # last: its `after` runs first and sees the scores before they are obfuscated
            guards.append(
                QueryMonitor.from_policy(self.policy, on_alarm=self._alarm, store=self.suspensions)
            )
        return tuple(guards)

    def _alarm(self, principal: str, model: str, why: str) -> None:
        """A query-monitor alarm: one admin record in the audit log, and a log line."""
        import threading

        from atlasguard.runtime.auditor import Outcome

        logger.warning("query monitor: principal %r on %r: %s", principal, model, why)
        outcome = Outcome(
            action="monitor.alarm",
            model=model,
            principal=principal,
            decision="deny",
            reason="suspended",
            details={"why": why},
        )
        # Not on the request's path (which may be an event loop): a thread writes it.
        threading.Thread(target=self._record_quietly, args=(outcome,), daemon=True).start()

    def _record_quietly(self, outcome: object) -> None:
        from atlasguard.runtime.auditor import Outcome
        from atlasguard.runtime.pipeline import Denied

        if isinstance(outcome, Outcome):
            try:
                self.auditor.record(outcome)
            except Denied:
                logger.error("the audit log could not record a query-monitor alarm")

    @property
    def quota_prefix(self) -> str:
        """The Redis key prefix of this deployment's quotas, unless the policy names one.

        Its name and a digest of where its state lives (the database URL, or the
        state directory): every worker and replica of one deployment shares it,
        two deployments on one Redis never do.
        """
        return state_prefix(self.policy, "quota")

    @cached_property
    def load_gate(self) -> LoadGate:
        """The gate every model passes before it is loaded or stored."""
        from atlasguard.artifacts.load_gate import LoadGate

        return LoadGate.from_policy(self.policy)

    @cached_property
    def registry(self) -> Registry:
        """The registry of models and data sets (``[controls.registry] enabled``)."""
        if not self.has("registry"):
            raise ConfigurationError(
                f"{self.policy.where('controls.registry')}: the registry is off; "
                "set [controls.registry] enabled = true"
            )
        from atlasguard.registry.service import Registry

        return Registry.open(self)

    @cached_property
    def admin(self) -> Admin:
        """Keys, grants and groups, each change audited before it is made."""
        from atlasguard.runtime.admin import Admin

        return Admin(self.identity, self.auditor, suspensions=self.suspensions)

    @cached_property
    def suspensions(self) -> SuspensionStore:
        """Principals the query monitor suspended, shared by every worker and restart."""
        from atlasguard.runtime.suspensions import SuspensionStore

        return SuspensionStore(self.engine)

    def protect(self, predict: Callable[[Arrays], Arrays], *, name: str) -> Protected:
        """``predict`` as model ``name``, behind the deployment's access, guards and auditor.

        The policy must declare ``[models.<name>]`` (its inputs are checked) and
        enable ``[controls.access]``.
        """
        spec = self.policy.models.get(name)
        if spec is None:
            raise ConfigurationError(
                f"{self.policy.label}: no [models.{name}] table declares its inputs"
            )
        if not self.has("access"):
            raise ConfigurationError(
                f"{self.policy.where('controls.access')}: a model is never served without "
                "access control; set [controls.access] enabled = true"
            )
        return Protected(
            name=name,
            spec=spec,
            predict=predict,
            guards=self.guards + self.model_guards(name, predict),
            access=self.access,
            auditor=self.auditor,
        )

    def model_guards(self, name: str, predict: Callable[[Arrays], Arrays]) -> tuple[Guard, ...]:
        """The guards of one model, after the shared ones: detectors, then restoration.

        The detectors need the model (feature squeezing asks it again) and judge
        the input as the client sent it; restoration runs last, on what the model
        will see.
        """
        guards: list[Guard] = []
        if self.has("detectors"):
            from atlasguard.runtime.detectors import DetectorGuard

            found = DetectorGuard.for_model(self.policy, name, predict, on_alarm=_log_detection)
            if found is not None:
                guards.append(found)
        if self.has("drift"):
            from atlasguard.runtime.drift import DriftGuard

            drift = DriftGuard.from_policy(self.policy, {name: predict}, on_drift=self._drift)
            if drift is not None:
                guards.append(drift)
                self._closing.append(drift)
        if self.has("restoration"):
            guards.append(self.restoration)
        return tuple(guards)

    @cached_property
    def _closing(self) -> list[Any]:
        """Per-model guards with a thread to stop at close."""
        return []

    def _drift(self, model: str, why: str) -> None:
        """A drifted window of a model's traffic: one audit record, and a log line."""
        from atlasguard.runtime.auditor import Outcome

        logger.warning("drift: model %r: %s", model, why)
        outcome = Outcome(action="drift.alarm", model=model, principal="atlasguard")
        outcome.details["why"] = why
        self._record_quietly(outcome)

    @cached_property
    def restoration(self) -> Guard:
        """Input restoration per model (``[controls.restoration]``), shared by every model."""
        from atlasguard.runtime.restoration import RestorationGuard

        return RestorationGuard.from_policy(self.policy)

    def close(self, *, sign_head: bool = False) -> None:
        """Write what the audit log holds, release the database.

        ``sign_head`` also signs the log's head (a server's graceful shutdown), so
        ``atlasguard audit verify`` covers every record written.
        """
        for guard in (*self.__dict__.get("guards", ()), *self.__dict__.get("_closing", ())):
            close = getattr(guard, "close", None)
            if callable(close):
                close()
        self.auditor.close(sign_head=sign_head)
        self.engine.dispose()


def _log_detection(principal: str, model: str, why: str) -> None:
    """A per-input detection: a log line (the request's own audit record tells of it)."""
    logger.info("input detectors: principal %r on %r: %s", principal, model, why)


def state_prefix(policy: Policy, kind: str) -> str:
    """The Redis key prefix of one kind of this deployment's shared state (``quota``,
    ``monitor``): its name and a digest of where its state lives, so every worker
    and replica of one deployment shares it and two deployments on one Redis never do."""
    import hashlib

    where = policy.deployment.database_url or str(policy.state_dir)
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return f"atlasguard:{kind}:{policy.deployment.name}:{digest}"


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


def _grant_quotas(
    identity: IdentityStore, settings: QuotaSettings
) -> Callable[[Principal, str], QuotaPolicy | None]:
    """Per-grant limits (``keys create --rate --quota``) override the policy's table.

    They come with the principal from its authorization (``Principal.grant_limits``);
    a principal built by hand is looked up.
    """
    from functools import lru_cache

    from atlasguard.identity.store import PrincipalRecord
    from atlasguard.runtime.quotas import QuotaPolicy

    @lru_cache(maxsize=1024)
    def parsed(rate: str, quota: str) -> QuotaPolicy:
        # A grant's own rate means what it says: its burst is the rate's amount.
        return QuotaPolicy.parse(
            rate=rate or settings.rate,
            burst=0 if rate else settings.burst,
            daily=quota or settings.daily,
            lifetime=settings.lifetime,
        )

    def resolve(principal: Principal, model: str) -> QuotaPolicy | None:
        limits = principal.grant_limits
        if limits is None and not principal.roles:  # not from Access: look it up
            record = PrincipalRecord(principal.name, False, 0.0, principal.groups)
            limits = next(
                ((g.rate, g.quota) for g in identity.authorize(record, model) if g.rate or g.quota),
                None,
            )
        return None if limits is None else parsed(*limits)

    return resolve
