"""What a deployment runs, read from its policy without opening anything.

:func:`plan` lists the parts a policy makes the deployment build — each guard,
the load gate's checks, the registry — with the ATLAS mitigations each one
implements and the setting that turns it on. The composition root
(:class:`~atlasguard.runtime.deployment.Deployment`) builds exactly these parts,
and coverage (:mod:`atlasguard.catalog.coverage`) counts a mitigation only
through them: a flag that no code reads claims nothing.

>>> from atlasguard.policy import Policy
>>> sorted(p.name for p in plan(Policy.default()))  # no models declared: no load gate
['access', 'output', 'quotas', 'registry', 'registry-load-gate']
"""

from __future__ import annotations

from dataclasses import dataclass

from atlasguard.policy import Policy

__all__ = ["Part", "plan"]


@dataclass(frozen=True, slots=True)
class Part:
    """One acting part of a deployment: what it is, what it mitigates, why it is on."""

    name: str
    mitigates: frozenset[str]
    summary: str
    setting: str  # the policy key that turns it on, e.g. "controls.quotas.enabled"
    location: str  # file:line of that key, or the policy's name


def _at(policy: Policy, key: str) -> str:
    return policy.where(key) if policy.lines.get(key) else policy.where(key.rpartition(".")[0])


def plan(policy: Policy) -> tuple[Part, ...]:
    """The parts ``policy`` makes a deployment (the gateway and its registry) run."""
    from atlasguard.runtime.settings import OutputSettings, QuotaSettings, output_steps

    parts: list[Part] = []

    def add(name: str, mitigates: set[str], summary: str, setting: str) -> None:
        parts.append(Part(name, frozenset(mitigates), summary, setting, _at(policy, setting)))

    if policy.enabled("access"):
        add(
            "access",
            {"AML.M0019"},
            "every call authenticated (API key or JWT), authorized by a grant, and audited",
            "controls.access.enabled",
        )
    quotas = policy.settings("quotas")
    if (
        policy.enabled("quotas")
        and isinstance(quotas, QuotaSettings)
        and (quotas.rate or quotas.daily or quotas.lifetime)
    ):
        add(
            "quotas",
            {"AML.M0004"},
            "rate, daily and lifetime quotas per principal and model",
            "controls.quotas.enabled",
        )
    monitor = policy.settings("monitor")
    if (
        policy.enabled("monitor")
        and policy.models
        and any(
            getattr(monitor, flag, False)
            for flag in ("fingerprints", "distances", "off_distribution")
        )
    ):
        add(
            "monitor",
            {"AML.M0015", "AML.M0004"},
            "each principal's query sequence watched for near-copies and unnatural distances",
            "controls.monitor.enabled",
        )
    detectors = policy.settings("detectors")
    if (
        policy.enabled("detectors")
        and policy.models
        and any(getattr(detectors, flag, False) for flag in ("squeezing", "mahalanobis", "knn"))
    ):
        add(
            "detectors",
            {"AML.M0015"},
            "each input judged on its own: distance to clean inputs, feature squeezing",
            "controls.detectors.enabled",
        )
    if policy.enabled("detectors") and policy.models and getattr(detectors, "strip", False):
        add(
            "strip",
            {"AML.M0008"},
            "each input tested for a backdoor trigger (STRIP: its answer survives blending)",
            "controls.detectors.strip",
        )
    watched = [n for n, spec in policy.models.items() if spec.reference or spec.calibration]
    if policy.enabled("drift") and watched:
        add(
            "drift",
            {"AML.M0008"},
            f"served inputs and scores tested for drift in sliding windows ({', '.join(watched)})",
            "controls.drift.enabled",
        )
    for kind, mitigation, what in (
        ("ensemble", "AML.M0006", "models of different families vote behind one name"),
        ("consensus", "AML.M0009", "one decision from several sensors' models, k of n agreeing"),
    ):
        voting = [name for name, spec in policy.models.items() if spec.backend == kind]
        if policy.enabled(kind) and voting:
            add(kind, {mitigation}, f"{what} ({', '.join(voting)})", f"models.{voting[0]}")
    restoration = policy.settings("restoration")
    if policy.enabled("restoration") and getattr(restoration, "models", None):
        add(
            "restoration",
            {"AML.M0010"},
            "inputs restored (squeezed, smoothed, normalised) before the model sees them",
            "controls.restoration.models",
        )
    output = policy.settings("output")
    if (
        policy.enabled("output")
        and isinstance(output, OutputSettings)
        and any(
            output_steps(text) != ("full",)
            for text in (output.default, *(output.roles or {}).values())
        )
    ):
        add(
            "output",
            {"AML.M0002"},
            "score outputs obfuscated per role",
            "controls.output.default",
        )
    served = list(policy.models)
    stored = policy.enabled("registry")
    signing = policy.settings("signing")
    signed = bool(getattr(signing, "enabled", False) and getattr(signing, "require", False))
    gate = {"AML.M0016", "AML.M0011"} | ({"AML.M0013", "AML.M0014"} if signed else set())
    what = "scanned (nothing that would import code beyond the allow-list is loaded)"
    if signed:
        what += ", signature and every file's digest verified"
    if served:
        add(
            "load-gate",
            gate,
            f"every served model {what} before it loads",
            "controls.signing.require" if signed else f"models.{served[0]}",
        )
        add(
            "serving",
            {"AML.M0017"},
            "models and their preprocessing stay on the server; clients see declared "
            "inputs and outputs only",
            f"models.{served[0]}",
        )
    if stored:
        add(
            "registry",
            {"AML.M0005"},
            "models and data sets at rest behind grants; every read and write audited",
            "controls.registry.enabled",
        )
        add(
            "registry-load-gate",
            gate,
            f"every push {what} before it is stored",
            "controls.signing.require" if signed else "controls.registry.enabled",
        )
        if getattr(policy.settings("registry"), "encrypt", False):
            add(
                "registry-encryption",
                {"AML.M0012"},
                "stored blobs encrypted (AES-256-GCM) with the deployment's keyring",
                "controls.registry.encrypt",
            )
    return tuple(parts)
