"""The deployment policy file, ``atlasguard.toml``, parsed into frozen objects.

One file describes a deployment: where its state lives, which database and
Redis it uses, where its keys are, and which controls are on with their
settings (``[controls.<key>]``, one table per control of
:mod:`atlasguard.controls`). Every error names the file, the line or key, and
what was expected, and is raised as :class:`~atlasguard.errors.PolicyError`.

>>> from atlasguard.policy import Policy, load_policy_text
>>> p = load_policy_text('[deployment]\\nname = "demo"\\n')
>>> p.deployment.name
'demo'
>>> Policy.default().enabled_controls() == tuple(
...     c.key for c in __import__("atlasguard.controls").controls.implemented_controls())
True
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlasguard.controls import Control, ControlSettings, control_by_key, implemented_controls
from atlasguard.errors import PolicyError

__all__ = [
    "DEFAULT_POLICY_NAME",
    "MAX_POLICY_BYTES",
    "Deployment",
    "KeyFiles",
    "ModelSpec",
    "Policy",
    "PreprocessStep",
    "TensorSpec",
    "load_policy",
    "load_policy_text",
    "render_default_policy",
]

DEFAULT_POLICY_NAME = "atlasguard.toml"
MAX_POLICY_BYTES = 1024 * 1024


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Deployment(_Table):
    """``[deployment]``: what this deployment is called and where its state lives."""

    name: str = Field(default="atlasguard", min_length=1, description="Name shown in reports.")
    state_dir: str = Field(
        default=".atlasguard",
        min_length=1,
        description="Directory for keys, databases and artifacts, relative to this file.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means SQLite in state_dir, e.g. "
        '"postgresql+psycopg://127.0.0.1:5432/test".',
    )
    redis_url: str = Field(
        default="",
        description="Redis URL for shared quotas; empty means in-process, "
        'e.g. "redis://127.0.0.1:6379/0".',
    )
    audit_durability: Literal["power-loss", "process-crash"] = Field(
        default="power-loss",
        description="What an acknowledged audit record survives: power-loss (synced to "
        "stable storage before the answer) or process-crash (written to the operating "
        "system; a power cut may lose the last records).",
    )


class KeyFiles(_Table):
    """``[keys]``: paths to key files (never the keys themselves), relative to this file."""

    signing_key: str = Field(default="", description="PEM private key for signing.")
    public_key: str = Field(default="", description="PEM public key for verification.")
    keyring: str = Field(default="", description="Key-encryption keyring for encryption at rest.")


class TensorSpec(_Table):
    """One declared model input: name, Open Inference Protocol datatype, shape, value range."""

    name: str = Field(min_length=1, description='Input name, e.g. "input".')
    datatype: Literal[
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    ] = Field(default="FP32", description="Open Inference Protocol datatype.")
    shape: tuple[int, ...] = Field(
        default=(-1,), description="Dimensions; -1 for any size (the first is the batch)."
    )
    min: float | None = Field(default=None, description="Smallest value allowed.")
    max: float | None = Field(default=None, description="Largest value allowed.")


class PreprocessStep(_Table):
    """A preprocessing step run on the server before the model (never sent to clients)."""

    op: Literal["scale", "clip", "standardize"] = Field(description="What the step does.")
    factor: float = Field(default=1.0, description="scale: multiply by this.")
    min: float | None = Field(default=None, description="clip: lower bound.")
    max: float | None = Field(default=None, description="clip: upper bound.")
    mean: tuple[float, ...] = Field(default=(), description="standardize: per-feature mean.")
    std: tuple[float, ...] = Field(default=(), description="standardize: per-feature std.")


class ModelSpec(_Table):
    """``[models.<name>]``: one model the gateway serves and how to reach it."""

    backend: Literal["onnx", "sklearn", "upstream", "ensemble", "consensus"] = Field(
        default="onnx",
        description="onnx (ONNX Runtime), sklearn (skops file), upstream, or ensemble / "
        "consensus over other declared models (members).",
    )
    path: str = Field(default="", description="Model file or directory, relative to this file.")
    url: str = Field(
        default="", description="upstream: base URL of an Open Inference Protocol server."
    )
    upstream_model: str = Field(default="", description="upstream: the model's name there.")
    version: str = Field(default="1", description="Version reported in metadata.")
    inputs: tuple[TensorSpec, ...] = Field(default=(), description="Declared inputs.")
    outputs: tuple[str, ...] = Field(default=(), description="Outputs returned (all if empty).")
    preprocess: tuple[PreprocessStep, ...] = Field(default=(), description="Server-side steps.")
    max_batch: int = Field(default=1024, ge=1, description="Largest batch (rows) accepted.")
    members: tuple[str, ...] = Field(
        default=(), description="ensemble, consensus: the declared models that vote."
    )
    voting: Literal["soft", "hard"] = Field(
        default="soft", description="ensemble: average probabilities, or majority of labels."
    )
    agree: int = Field(default=2, ge=1, description="consensus: members that must agree.")
    withhold: bool = Field(
        default=True, description="consensus: answer -1 (no decision) when too few agree."
    )
    expose: bool = Field(
        default=True, description="Served under its own name (false: only as a member)."
    )
    reference: str = Field(
        default="",
        description="Clean inputs (.npy, no pickles) the monitor, detectors and restoration "
        "learn natural inputs from.",
    )
    calibration: str = Field(
        default="",
        description="Clean inputs the model was not trained on (.npy): the detectors' "
        "thresholds (else out-of-fold on the reference).",
    )


_TOP_LEVEL = ("deployment", "keys", "controls", "models")
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``path`` is ``None`` for the built-in default."""

    deployment: Deployment = field(default_factory=Deployment)
    keys: KeyFiles = field(default_factory=KeyFiles)
    controls: Mapping[str, ControlSettings] = field(default_factory=dict)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    path: Path | None = None
    lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def default(cls) -> Policy:
        """The policy ``atlasguard policy init`` writes: every implemented control on."""
        return load_policy_text(render_default_policy(), source="<default policy>")

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "default policy"

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the policy are resolved against."""
        return self.path.parent if self.path else Path.cwd()

    @property
    def state_dir(self) -> Path:
        return (self.base_dir / self.deployment.state_dir).resolve()

    def settings(self, key: str) -> ControlSettings:
        """The settings of control ``key`` (its defaults, disabled, when the policy is silent)."""
        if key in self.controls:
            return self.controls[key]
        control = control_by_key().get(key)
        if control is None:
            raise PolicyError(f"{self.label}: no control named {key!r} is implemented")
        return control.settings()

    def enabled(self, key: str) -> bool:
        """True when ``[controls.<key>] enabled = true``."""
        return key in self.controls and self.controls[key].enabled

    def enabled_controls(self) -> tuple[str, ...]:
        return tuple(k for k in sorted(self.controls) if self.controls[k].enabled)

    def where(self, dotted_key: str) -> str:
        """``file:line`` of a key for evidence and error messages (``file`` alone if unknown)."""
        line = self.lines.get(dotted_key)
        return f"{self.label}:{line}" if line else self.label


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise :class:`PolicyError` on any problem."""
    p = Path(path)
    try:
        if p.is_dir():
            raise PolicyError(
                f"{p}: is a directory, expected a policy file ({DEFAULT_POLICY_NAME})"
            )
        with p.open("rb") as fh:
            raw = fh.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError(
            f"{p}: no such policy file (create one with `atlasguard policy init {p}`)"
        ) from None
    except OSError as exc:
        raise PolicyError(f"{p}: cannot read policy file: {exc.strerror or exc}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{p}: policy file larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{p}: not UTF-8 text (byte {exc.start}); expected a TOML file") from None
    return load_policy_text(text, source=str(p), path=p)


def load_policy_text(text: str, *, source: str = "<policy>", path: Path | None = None) -> Policy:
    """Parse policy TOML ``text``; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    lines = _key_lines(text)

    def fail(key: str, message: str) -> PolicyError:
        line = lines.get(key) or lines.get(key.rpartition(".")[0])
        where = f"{source}:{line}" if line else source
        return PolicyError(f"{where}: {key}: {message}")

    unknown = [k for k in data if k not in _TOP_LEVEL]
    if unknown:
        raise fail(unknown[0], _unknown_key_message(unknown[0], _TOP_LEVEL, "table"))

    deployment = _validate(Deployment, data.get("deployment", {}), "deployment", fail)
    keys = _validate(KeyFiles, data.get("keys", {}), "keys", fail)

    raw_controls = data.get("controls", {})
    if not isinstance(raw_controls, dict):
        raise fail("controls", "expected a table of [controls.<name>] tables")
    known = control_by_key()
    controls: dict[str, ControlSettings] = {}
    for key, table in raw_controls.items():
        control = known.get(key)
        if control is None:
            raise fail(f"controls.{key}", _unknown_key_message(key, tuple(known), "control"))
        controls[key] = _validate(control.settings, table, f"controls.{key}", fail)

    raw_models = data.get("models", {})
    if not isinstance(raw_models, dict):
        raise fail("models", "expected a table of [models.<name>] tables")
    models: dict[str, ModelSpec] = {}
    for name, table in raw_models.items():
        if not _MODEL_NAME.match(name):
            raise fail(f"models.{name}", "a model name is letters, digits and _.- (max 100)")
        models[name] = _validate(ModelSpec, table, f"models.{name}", fail)

    return Policy(
        deployment=deployment, keys=keys, controls=controls, models=models, path=path, lines=lines
    )


def _validate(model: type[_M], table: object, prefix: str, fail: Any) -> _M:
    if not isinstance(table, dict):
        raise fail(prefix, f"expected a table, got {_type_name(table)}")
    try:
        return model.model_validate(_tuples(table))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int))
        key = f"{prefix}.{loc}" if loc else prefix
        if err["type"] == "extra_forbidden":
            name = str(err["loc"][-1])
            raise fail(key, _unknown_key_message(name, tuple(model.model_fields), "key")) from None
        message = _describe(err, model, loc)
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise fail(key, message + suffix) from None


def _describe(err: Mapping[str, Any], model: type[BaseModel], loc: str) -> str:
    got = err.get("input")
    expected = err["msg"]
    expected = expected[0].lower() + expected[1:] if expected else "a valid value"
    expected = expected.replace("input should be", "expected")
    field_info = model.model_fields.get(loc.split(".")[0])
    hint = f" — {field_info.description}" if field_info and field_info.description else ""
    return f"{expected}, got {_show(got)}{hint}"


def _show(value: object) -> str:
    text = repr(value) if not isinstance(value, (dict, list, tuple)) else _type_name(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    return {
        dict: "a table",
        list: "an array",
        tuple: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _unknown_key_message(name: str, choices: Sequence[str], kind: str) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(choices) if choices else "none"
    return f"unknown {kind} {name!r}{hint}; expected one of: {listing}"


def _tuples(value: Any) -> Any:
    # TOML arrays arrive as lists; settings are frozen, so they hold tuples.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _normalise_key(text: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key -> line number, for the common layouts (tables and plain keys).

    tomllib reports no positions for keys, so this light scan finds them for
    error messages and coverage evidence; keys it cannot place get no line.
    """
    lines: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("[["):
            table = _normalise_key(header.group(1))
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = _normalise_key(assign.group(1))
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _render_table(name: str, model: type[BaseModel], values: Mapping[str, Any]) -> list[str]:
    out = [f"[{name}]"]
    for key, info in model.model_fields.items():
        if info.description:
            out.append(f"# {info.description}")
        value = values.get(key, info.default)
        if value is None:
            out.append(f"# {key} =")
        else:
            out.append(f"{key} = {_toml_value(value)}")
    return out


def render_default_policy(controls: Sequence[Control] | None = None) -> str:
    """The commented default policy: every implemented control turned on."""
    controls = implemented_controls() if controls is None else controls
    lines = [
        "# atlasguard policy: one file describes one deployment.",
        "# Check it with `atlasguard policy check atlasguard.toml`;",
        "# see the ATLAS mitigations it enables: `atlasguard coverage --policy atlasguard.toml`.",
        "",
        *_render_table("deployment", Deployment, {}),
        "",
        *_render_table("keys", KeyFiles, {}),
    ]
    for control in controls:
        mitigates = ", ".join(sorted(control.mitigates))
        lines += ["", f"# {control.title} ({mitigates})", f"# {control.summary}"]
        lines += _render_table(f"controls.{control.key}", control.settings, {"enabled": True})
    return "\n".join(lines) + "\n"
