"""The policy tables of the runtime's controls: access, serving, quotas, output.

Declarations only (pydantic models and :class:`~atlasguard.controls.Control`
values), so that reading a policy imports no server, database or numpy; the
guards that act on these settings live in :mod:`atlasguard.runtime.access`,
:mod:`~atlasguard.runtime.quotas` and :mod:`~atlasguard.runtime.obfuscation`.

>>> parse_rate("10/second"), parse_rate("100 per 2 minutes")
((10, 1.0), (100, 120.0))
>>> output_steps("top_k+round")
('top_k', 'round')
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from atlasguard.controls import Control, ControlSettings
from atlasguard.errors import UsageError

__all__ = [
    "CONTROLS",
    "DAY",
    "DEFAULT_SCORE_OUTPUTS",
    "STEPS",
    "AccessSettings",
    "ConsensusSettings",
    "DetectorSettings",
    "EnsembleSettings",
    "MonitorSettings",
    "OutputSettings",
    "QuotaSettings",
    "RestorationSettings",
    "RestoreStep",
    "RestoredInput",
    "ServingSettings",
    "Step",
    "output_steps",
    "parse_daily",
    "parse_rate",
]

DAY = 86_400
_PERIODS = {
    "second": 1,
    "minute": 60,
    "hour": 3_600,
    "day": DAY,
    "month": 30 * DAY,
    "year": 360 * DAY,
}
# The rate-limit string notation of the `limits` library: "10/second", "100 per minute",
# "5/2 hours"; case-insensitive, plural units allowed.
_RATE = re.compile(
    r"^\s*(\d+)\s*(?:/|per)\s*(?:(\d+)\s*)?(second|minute|hour|day|month|year)s?\s*$",
    re.IGNORECASE,
)


def parse_rate(text: str) -> tuple[int, float]:
    """``"10/second"`` -> ``(10, 1.0)``: an amount and its period in seconds."""
    match = _RATE.match(text)
    if match is None:
        raise UsageError(
            f"not a rate: {text!r} (expected e.g. '10/second', '100 per minute', '5/2 hours')"
        )
    amount, multiple, unit = match.groups()
    if int(amount) <= 0 or (multiple is not None and int(multiple) <= 0):
        raise UsageError(f"rate {text!r} must allow at least one unit per period")
    return int(amount), float(int(multiple or 1) * _PERIODS[unit.lower()])


def parse_daily(text: str | int) -> int:
    """``"1000/day"`` (or ``1000``) -> ``1000``; any other period is refused."""
    if isinstance(text, int) or text.strip().isdigit():
        amount = int(text)
    else:
        amount, period = parse_rate(text)
        if period != DAY:
            raise UsageError(f"daily quota {text!r} must be per day, e.g. '1000/day'")
    if amount <= 0:
        raise UsageError(f"daily quota {text!r} must be positive")
    return amount


Step = Literal["full", "top_k", "round", "label", "noise"]
STEPS: tuple[Step, ...] = ("full", "top_k", "round", "label", "noise")
# Output names skl2onnx, scikit-learn wrappers and common exporters give probabilities.
DEFAULT_SCORE_OUTPUTS: tuple[str, ...] = ("probabilities", "output_probability", "scores")


def output_steps(text: str) -> tuple[Step, ...]:
    """``"top_k+round"`` -> ``("top_k", "round")``, checked: ``full`` alone, ``label`` last."""
    steps: list[Step] = []
    for part in text.split("+"):
        step = next((s for s in STEPS if s == part.strip()), None)
        if step is None:
            raise UsageError(f"unknown output policy {part.strip()!r}; expected {STEPS}")
        steps.append(step)
    if "full" in steps and len(steps) > 1:
        raise UsageError("'full' cannot be combined with other output policies")
    if "label" in steps[:-1]:
        raise UsageError("'label' leaves no scores: it can only be the last step")
    return tuple(steps)


class AccessSettings(ControlSettings):
    """``[controls.access]``: API keys always; JWT bearer tokens when an issuer is set."""

    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwks_file: str = ""
    jwks_url: str = ""
    jwt_principal_claim: str = "sub"
    jwt_groups_claim: str = ""  # e.g. "groups": each becomes a group:<name> principal


class ServingSettings(ControlSettings):
    """``[controls.serving]``: how the gateway takes requests."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    console: bool = Field(
        default=True, description="Serve the console at /console, to admin principals only."
    )
    console_session_minutes: int = Field(
        default=30, gt=0, le=24 * 60, description="How long a console sign-in lasts."
    )
    console_results: str = Field(
        default="results",
        description="Directory of bench and lab results (JSON, PNG) the console's efficacy "
        "page shows, relative to this file.",
    )
    console_tighten_rate: str = Field(
        default="10/minute", description="The rate the console's 'tighten quota' proposes."
    )
    console_tighten_quota: str = Field(
        default="100/day", description="The daily quota the console's 'tighten quota' proposes."
    )
    console_oidc_client_id: str = Field(
        default="",
        description="Console sign-in through [controls.access]'s jwt_issuer (OpenID Connect, "
        "code flow with PKCE): this client's id; empty = admin keys only.",
    )
    console_oidc_authorize_url: str = Field(
        default="", description="The issuer's authorization endpoint."
    )
    console_oidc_token_url: str = Field(default="", description="The issuer's token endpoint.")
    console_oidc_redirect_url: str = Field(
        default="",
        description="The callback registered with the issuer; empty = this server's "
        "/console/oidc/callback as the browser reaches it.",
    )
    console_oidc_admin_group: str = Field(
        default="",
        description="A group (in the token's jwt_groups_claim) whose members are console "
        "admins; principals marked admin in the store (jwt:<sub>) are too.",
    )

    @field_validator("console_tighten_rate")
    @classmethod
    def _check_tighten_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("console_tighten_quota")
    @classmethod
    def _check_tighten_quota(cls, value: str) -> str:
        parse_daily(value)
        return value


class QuotaSettings(ControlSettings):
    """``[controls.quotas]``: per principal and model limits; ``""`` or ``0`` = no limit."""

    rate: str = "10/second"
    burst: int = 20
    daily: str = "10000/day"
    lifetime: int = 0
    # Redis is the deployment's: [deployment] redis_url. Empty: derived from the
    # deployment's name and database, so two deployments on one Redis never share counts.
    key_prefix: str = ""

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        if value:
            parse_rate(value)
        return value

    @field_validator("daily")
    @classmethod
    def _check_daily(cls, value: str) -> str:
        if value:
            parse_daily(value)
        return value

    @field_validator("burst", "lifetime")
    @classmethod
    def _check_non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class OutputSettings(ControlSettings):
    """``[controls.output]``: what each role may see of a model's scores."""

    default: str = "round"
    decimals: int = 2
    top_k: int = 3
    noise_scale: float = 0.02
    noise: Literal["laplace", "gaussian"] = "laplace"
    roles: dict[str, str] | None = None
    score_outputs: tuple[str, ...] = DEFAULT_SCORE_OUTPUTS
    models: dict[str, tuple[str, ...]] | None = None

    # Refuse a bad policy name when the policy file is read, not at the first request.
    @field_validator("default")
    @classmethod
    def _check_default(cls, value: str) -> str:
        output_steps(value)
        return value

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for role, name in (value or {}).items():
            try:
                output_steps(name)
            except UsageError as exc:
                raise ValueError(f"role {role!r}: {exc}") from None
        return value

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("top_k must be positive")
        return value

    @field_validator("decimals")
    @classmethod
    def _check_decimals(cls, value: int) -> int:
        if value < 0:
            raise ValueError("decimals must be 0 or more")
        return value

    @field_validator("noise_scale")
    @classmethod
    def _check_noise_scale(cls, value: float) -> float:
        if not value >= 0:  # also refuses NaN
            raise ValueError("noise_scale must be 0 or more")
        return value


class MonitorSettings(ControlSettings):
    """``[controls.monitor]``: watch each principal's query sequence for attacks in progress."""

    action: Literal["log", "label", "block"] = Field(
        default="block",
        description="On an alarm: log it, withhold scores (labels only), or block the principal.",
    )
    fingerprints: bool = Field(
        default=True, description="Blacklight-style: many near-copies of earlier queries."
    )
    distances: bool = Field(
        default=True,
        description="PRADA-style: unnatural distances between queries (needs a reference).",
    )
    off_distribution: bool = Field(
        default=True,
        description="Many queries outside the inputs' distribution (needs a reference).",
    )
    boundary: bool = Field(
        default=True,
        description="Many queries on a decision boundary (decision-based probing).",
    )
    boundary_margin: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Top score minus the second under which..."
    )
    boundary_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="...a share of the last 50 queries alarms."
    )
    concentration: bool = Field(
        default=True,
        description="The last 50 queries clustered around one point (noisy probing).",
    )
    concentration_fraction: float = Field(
        default=0.35, gt=0.0, lt=1.0, description="Alarm under this share of natural spread."
    )
    off_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Share of the last 50 queries that alarms."
    )
    match: int = Field(default=19, ge=1, description="Hashes (of top) one near-copy shares.")
    top: int = Field(default=48, ge=1, description="Hashes kept per query fingerprint.")
    levels: int = Field(default=16, ge=2, le=256, description="Quantisation steps of inputs.")
    window: int = Field(default=4, ge=1, description="Input values per hashed window.")
    alarm_after: int = Field(default=3, ge=1, description="Near-copies that raise the alarm...")
    alarm_window: int = Field(default=50, ge=1, description="...among this many last queries.")
    normality: float = Field(
        default=0.75, gt=0.0, lt=1.0, description="Shapiro-Wilk statistic under which to alarm."
    )
    min_queries: int = Field(default=20, ge=3, description="Distances before the first test.")
    suspend_seconds: float = Field(default=86_400.0, gt=0.0, description="How long a block lasts.")
    reference: dict[str, str] | None = Field(
        default=None,
        description='Clean inputs per model (.npy), e.g. { digits = "reference/digits.npy" }; '
        "or reference in the model's own table.",
    )
    groups: bool = Field(
        default=True,
        description="Also watch each group a principal reaches a model through, as one client "
        "(keys spread over a tenant's principals add up).",
    )
    state: Literal["auto", "memory", "redis"] = Field(
        default="auto",
        description="Where the monitor remembers queries: redis (every worker and replica "
        "shares it; needs [deployment] redis_url), memory (this process), or auto (redis "
        "when redis_url is set).",
    )


class RestoreStep(BaseModel):
    """One input-restoration step (see :mod:`atlasguard.runtime.restoration`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal[
        "bit_depth", "median", "gaussian", "jpeg", "clip", "quantize", "nfkc", "invisible",
        "homoglyphs",
    ] = Field(description="What the step does.")  # fmt: skip
    bits: int = Field(default=3, ge=1, le=16, description="bit_depth: bits kept.")
    size: int = Field(default=2, ge=2, le=15, description="median: window side, pixels.")
    sigma: float = Field(default=0.5, gt=0.0, le=10.0, description="gaussian: pixels.")
    quality: int = Field(default=75, ge=1, le=95, description="jpeg: quality.")
    min: float | None = Field(default=None, description="clip: lower bound.")
    max: float | None = Field(default=None, description="clip: upper bound.")
    step: float = Field(default=0.0, ge=0.0, description="quantize: grid step.")


class RestoredInput(BaseModel):
    """``[controls.restoration.models.<name>]``: what kind of input, and the steps run on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["image", "tabular", "text"] = Field(description="What the input is.")
    input: str = Field(default="", description="The input's name (every input if empty).")
    shape: tuple[int, ...] = Field(
        default=(), description="image: its shape without the batch, e.g. [8, 8]."
    )
    steps: tuple[RestoreStep, ...] = Field(default=(), description="Run in order.")


class RestorationSettings(ControlSettings):
    """``[controls.restoration]``: input restoration per model (what each model's inputs are)."""

    models: dict[str, RestoredInput] | None = Field(
        default=None,
        description='Per model, e.g. { digits = { kind = "image", shape = [8, 8], steps = '
        '[{ op = "bit_depth", bits = 3 }] } }.',
    )


class EnsembleSettings(ControlSettings):
    """``[controls.ensemble]``: models with ``backend = "ensemble"`` are served (a vote of
    their ``members``, with a ``disagreement`` output)."""


class ConsensusSettings(ControlSettings):
    """``[controls.consensus]``: models with ``backend = "consensus"`` are served (k-of-n
    agreement of members that each read their own sensor; the decision withheld otherwise)."""


class DetectorSettings(ControlSettings):
    """``[controls.detectors]``: judge each input on its own (adversarial or out of place)."""

    action: Literal["log", "flag", "label", "block"] = Field(
        default="label",
        description="On a detection: log it, flag it in the response, answer with the label "
        "only (and flag it), or refuse the input. Refusing costs legitimate clients about "
        "fpr of their inputs.",
    )
    fpr: float = Field(
        default=0.01,
        gt=0.0,
        lt=0.5,
        description="False-positive rate on clean inputs the thresholds are calibrated to.",
    )
    squeezing: bool = Field(
        default=False,
        description="Feature squeezing: the answer changes when the input is squeezed "
        "(off by default: on digits it added less than the share of the false-positive "
        "budget it takes; bench/efficacy/tune_detectors.py).",
    )
    squeeze_bits: int = Field(default=3, ge=1, le=16, description="Squeezer: bit depth.")
    squeeze_median: int = Field(
        default=0, ge=0, le=15, description="Squeezer: median window (images; 0 = none)."
    )
    mahalanobis: bool = Field(
        default=True, description="Far from the clean inputs (Mahalanobis distance)."
    )
    shrinkage: float = Field(
        default=0.001, ge=0.0, le=1.0, description="Mahalanobis: covariance shrinkage."
    )
    knn: bool = Field(default=False, description="Far from its nearest clean inputs (k-NN).")
    strip: bool = Field(
        default=False,
        description="STRIP: the answer survives blending with clean inputs (a backdoor "
        "trigger). Costs strip_samples extra rows through the model per input; for models "
        "whose training data you could not audit.",
    )
    strip_samples: int = Field(
        default=16, ge=2, le=256, description="STRIP: clean inputs each input is blended with."
    )
    models: tuple[str, ...] | None = Field(
        default=None, description="Models watched (every model with a reference if unset)."
    )


class DriftSettings(ControlSettings):
    """``[controls.drift]``: test sliding windows of each model's served inputs and scores
    against its reference; a drifted window is an audit record."""

    window: int = Field(default=200, ge=20, le=10_000, description="Rows per window tested.")
    every: int = Field(
        default=100, ge=1, le=10_000, description="Test the last window every this many rows."
    )
    alpha: float = Field(
        default=0.01,
        gt=0.0,
        lt=0.5,
        description="False alarms per window tested (each family Bonferroni-corrected).",
    )
    permutations: int = Field(
        default=200, ge=20, le=5000, description="MMD: permutations for its p-value."
    )
    models: tuple[str, ...] | None = Field(
        default=None, description="Models watched (every model with a reference if unset)."
    )


CONTROLS = (
    Control(
        key="access",
        title="Authenticated, granted access to models",
        mitigates=frozenset({"AML.M0019"}),
        summary="Per-principal API keys (scrypt-hashed) and JWTs, deny by default: a principal "
        "reaches a model only through a grant; every request is a record in the "
        "tamper-evident audit log.",
        enable="[controls.access] enabled = true; atlasguard keys create --principal P --models M",
        settings=AccessSettings,
    ),
    Control(
        key="serving",
        title="Server-side model serving",
        mitigates=frozenset({"AML.M0017"}),
        summary="Models and their preprocessing stay on the server; clients only ever see "
        "declared inputs and outputs (Open Inference Protocol).",
        enable="declare [models.NAME] and run atlasguard serve --config atlasguard.toml",
        settings=ServingSettings,
    ),
    Control(
        key="quotas",
        title="Query quotas",
        mitigates=frozenset({"AML.M0004"}),
        summary="Per principal and model: a rate with burst, a daily and a lifetime quota, "
        "weighted by rows; in memory or shared through Redis with one atomic script.",
        enable="[controls.quotas] enabled = true",
        settings=QuotaSettings,
    ),
    Control(
        key="monitor",
        title="Query-sequence monitoring",
        mitigates=frozenset({"AML.M0015", "AML.M0004"}),
        summary="Per principal: near-copies of earlier queries (Blacklight-style fingerprints) "
        "and unnatural query distances (PRADA-style) raise an alarm; the principal is logged, "
        "given labels only, or blocked.",
        enable="[controls.monitor] enabled = true",
        settings=MonitorSettings,
    ),
    Control(
        key="detectors",
        title="Adversarial-input detection",
        mitigates=frozenset({"AML.M0015"}),
        summary="Each input judged on its own: feature-squeezing disagreement and distance to "
        "the clean inputs (Mahalanobis, k-NN), thresholds calibrated to a stated false-positive "
        "rate; a detection is logged, flagged, answered with the label only, or refused.",
        enable="[controls.detectors] enabled = true; a reference for each model",
        settings=DetectorSettings,
    ),
    Control(
        key="drift",
        title="Drift monitoring",
        mitigates=frozenset({"AML.M0008"}),
        summary="Sliding windows of served inputs and scores tested against the model's "
        "held-out reference: per-feature KS / chi-squared with Bonferroni, multivariate MMD, "
        "and black-box shift detection on the scores; each drift is an audit record.",
        enable="[controls.drift] enabled = true; a reference (or calibration) for each model",
        settings=DriftSettings,
    ),
    Control(
        key="ensemble",
        title="Ensembles",
        mitigates=frozenset({"AML.M0006"}),
        summary="Several models of different families behind one model name: soft or hard "
        "vote, and their disagreement as a detection signal.",
        enable='[controls.ensemble] enabled = true; [models.NAME] backend = "ensemble", '
        "members = [...]",
        settings=EnsembleSettings,
    ),
    Control(
        key="consensus",
        title="Multi-sensor consensus",
        mitigates=frozenset({"AML.M0009"}),
        summary="One decision from models that each read their own sensor or view: k-of-n "
        "agreement, the decision withheld and flagged when too few agree.",
        enable='[controls.consensus] enabled = true; [models.NAME] backend = "consensus", '
        "members = [...], agree = K",
        settings=ConsensusSettings,
    ),
    Control(
        key="restoration",
        title="Input restoration",
        mitigates=frozenset({"AML.M0010"}),
        summary="Per model: bit-depth reduction, smoothing, JPEG re-encoding, clipping to the "
        "training range, quantization; for text NFKC, invisible and homoglyph characters.",
        enable="[controls.restoration] enabled = true; models = { NAME = { kind = ..., steps "
        "= [...] } }",
        settings=RestorationSettings,
    ),
    Control(
        key="output",
        title="Output obfuscation",
        mitigates=frozenset({"AML.M0002"}),
        summary="Per role: full scores, top-k, rounded scores, label only or calibrated "
        "noise, keeping the output a valid Open Inference Protocol tensor.",
        enable='[controls.output] enabled = true; default = "round"',
        settings=OutputSettings,
    ),
)
