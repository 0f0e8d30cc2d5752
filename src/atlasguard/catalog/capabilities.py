"""What atlasguard does (or will do) for each of the twenty seed mitigations.

This is descriptive text for people (``atlasguard catalog show``). Whether a
mitigation is *implemented* is never read from here: coverage comes from the
controls the package really declares (:mod:`atlasguard.controls`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAPABILITIES", "Capability"]


@dataclass(frozen=True, slots=True)
class Capability:
    """The atlasguard capability behind one mitigation and its entry point."""

    summary: str
    entry_point: str


CAPABILITIES: dict[str, Capability] = {
    "AML.M0000": Capability(
        "Release gate: finds weights, data sets, notebooks with outputs, internal endpoints, "
        "configured disclosure terms and image metadata in a directory, wheel, archive or git "
        "history.",
        "atlasguard release-check PATH",
    ),
    "AML.M0001": Capability(
        "Release gate: refuses a public release that carries model artifacts or data.",
        "atlasguard release-check PATH",
    ),
    "AML.M0002": Capability(
        "Output policies per role: top-k, rounding, label-only, calibrated noise.",
        "[controls.output] in atlasguard.toml, served by atlasguard serve",
    ),
    "AML.M0003": Capability(
        "Adversarial training (PGD, TRADES) and distillation; exports a hardened ONNX model.",
        "atlasguard harden",
    ),
    "AML.M0004": Capability(
        "Per identity and model: rate, burst, daily and lifetime quotas, cost-weighted; "
        "in memory or Redis.",
        "[controls.quotas] in atlasguard.toml, served by atlasguard serve",
    ),
    "AML.M0005": Capability(
        "Registry of models and data sets with roles, per-object grants and an audited read "
        "path; encrypted at rest.",
        "atlasguard registry",
    ),
    "AML.M0006": Capability(
        "Heterogeneous ensembles with voting; disagreement as a detection signal.",
        "[controls.ensemble] in atlasguard.toml",
    ),
    "AML.M0007": Capability(
        "Label-error, poison and backdoor-sample detection, near-duplicate and outlier detection, "
        "text content policy; incremental for active learning.",
        "atlasguard data audit",
    ),
    "AML.M0008": Capability(
        "Backdoor trigger search, fairness tests, data and prediction drift monitors.",
        "atlasguard validate, atlasguard drift",
    ),
    "AML.M0009": Capability(
        "k-of-n consensus over models fed by different sensors; alerts on disagreement.",
        "[controls.consensus] in atlasguard.toml",
    ),
    "AML.M0010": Capability(
        "Bit-depth reduction, median and Gaussian smoothing, JPEG re-encoding, range clipping; "
        "Unicode normalisation for text.",
        "[controls.restoration] in atlasguard.toml",
    ),
    "AML.M0011": Capability(
        "Safe loaders: an allow-list unpickler, refusal of code-bearing formats unless allowed.",
        "atlasguard.artifacts.safe_load(path); [controls.safe_load] in atlasguard.toml",
    ),
    "AML.M0012": Capability(
        "Streaming authenticated envelope encryption of artifacts, key rotation.",
        "atlasguard encrypt / decrypt / rekey; [controls.encryption] in atlasguard.toml",
    ),
    "AML.M0013": Capability(
        "Signatures over model directories in the OpenSSF model-signing format; load refused "
        "without a valid one when policy says so.",
        "atlasguard sign / verify; [controls.signing] in atlasguard.toml",
    ),
    "AML.M0014": Capability(
        "Manifests of per-file digests, fast and parallel; any change, addition or removal "
        "detected.",
        "atlasguard hash; [controls.verify] in atlasguard.toml",
    ),
    "AML.M0015": Capability(
        "Per-input detectors (feature squeezing, distance-to-training), per-client "
        "query-sequence detectors (extraction, decision-based attacks).",
        "[controls.detectors] (per input) and [controls.monitor] (query sequences) in "
        "atlasguard.toml",
    ),
    "AML.M0016": Capability(
        "Scanner for every common model format, by content not extension, never executing "
        "what it reads.",
        "atlasguard scan PATH; [controls.scan] in atlasguard.toml",
    ),
    "AML.M0017": Capability(
        "Serving keeps the model and its preprocessing on the server; the release gate finds "
        "models bundled into client packages.",
        "atlasguard serve",
    ),
    "AML.M0018": Capability(
        "Labs: each attack run against an unprotected and a protected target, with the "
        "measured difference; `atlasguard catalog show` explains every mitigation.",
        "atlasguard labs",
    ),
    "AML.M0019": Capability(
        "Per-principal API keys (stored hashed) and JWT/OIDC, deny by default, every request in "
        "a tamper-evident audit log, usage reports.",
        "[controls.auth] in atlasguard.toml, atlasguard keys, atlasguard audit",
    ),
}
