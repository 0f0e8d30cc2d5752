"""Input restoration (AML.M0010): squeeze what an attacker added out of every input.

Each step declares the kinds of input it applies to (``image``, ``tabular``,
``text``); ``[controls.restoration]`` picks steps per model, and the
:class:`RestorationGuard` runs them on the model's input before the model sees
it. Image and tabular steps work on float inputs, the batch first:

* ``bit_depth`` (image, tabular): ``bits`` bits over the input's value range;
* ``median`` / ``gaussian`` (image): smoothing with a ``size`` x ``size``
  median or a Gaussian of ``sigma`` pixels, per channel;
* ``jpeg`` (image): JPEG re-encoding at ``quality`` (Pillow);
* ``clip`` (image, tabular): to ``[min, max]``, or, with neither given, to each
  feature's range in the model's clean reference inputs (the training range);
* ``quantize`` (tabular): to a grid of ``step`` (absolute) per feature.

Text steps work on ``BYTES`` inputs (UTF-8): ``nfkc`` (Unicode NFKC: full-width,
ligature and mathematical letters become plain ones), ``invisible`` (zero-width,
bidirectional-control, tag and other format characters removed) and
``homoglyphs`` (Cyrillic, Greek and Armenian letters that look Latin, inside a
word that also has Latin letters, become the Latin letter).

>>> import numpy as np
>>> r = Restorer.build([RestoreStep(op="bit_depth", bits=1)], kind="image", shape=(2, 2),
...                    value_range=(0.0, 1.0))
>>> r(np.array([[0.2, 0.7, 0.4, 0.9]]))
array([[0., 1., 0., 1.]])
>>> clean_text("p\\u0430y\\u200bpal \\uff41dmin")
'paypal admin'
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from atlasguard.errors import ConfigurationError
from atlasguard.runtime.pipeline import Arrays, Denied, Request, Response
from atlasguard.runtime.settings import RestoreStep

if TYPE_CHECKING:
    from atlasguard.policy import Policy

__all__ = [
    "KINDS",
    "RestorationGuard",
    "RestoreStep",
    "Restorer",
    "clean_text",
]

Kind = Literal["image", "tabular", "text"]
FloatArray = npt.NDArray[np.float64]

KINDS: Mapping[str, frozenset[Kind]] = {
    "bit_depth": frozenset({"image", "tabular"}),
    "median": frozenset({"image"}),
    "gaussian": frozenset({"image"}),
    "jpeg": frozenset({"image"}),
    "clip": frozenset({"image", "tabular"}),
    "quantize": frozenset({"tabular"}),
    "nfkc": frozenset({"text"}),
    "invisible": frozenset({"text"}),
    "homoglyphs": frozenset({"text"}),
}
"""What input kinds each step applies to."""


# -- text ---------------------------------------------------------------------------

# Letters of other scripts drawn like a Latin letter (Unicode's confusables, the
# unambiguous single-letter ones). Applied only inside a word that mixes them with
# Latin letters, so Greek or Russian text is left as it is.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j",
    "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ь": "b",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "І": "I", "Ї": "I", "Ј": "J", "К": "K",
    "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X",
    "Ѕ": "S", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q", "Ս": "U", "Օ": "O",
}  # fmt: skip
_CONFUSABLE = str.maketrans(_HOMOGLYPHS)


def _invisible(ch: str) -> bool:
    """Zero-width, bidirectional-control, tag and other format characters (category Cf)."""
    return unicodedata.category(ch) == "Cf" or 0xFE00 <= ord(ch) <= 0xFE0F


def _homoglyphs(text: str) -> str:
    out = []
    for word in text.split(" "):
        if any(c in _HOMOGLYPHS for c in word) and any(
            "a" <= c.lower() <= "z" for c in word if c.isascii()
        ):
            word = word.translate(_CONFUSABLE)
        out.append(word)
    return " ".join(out)


_TEXT_STEPS: Mapping[str, Callable[[str], str]] = {
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
    "invisible": lambda s: "".join(c for c in s if not _invisible(c)),
    "homoglyphs": _homoglyphs,
}


def clean_text(text: str, steps: Sequence[str] = ("nfkc", "invisible", "homoglyphs")) -> str:
    """``text`` after the text restoration ``steps`` (all three by default), in order.

    With ``nfkc``, the result is normalised once more at the end: removing an
    invisible character can bring together two that NFKC composes, and the
    result should not change if restored again.
    """
    for step in steps:
        text = _TEXT_STEPS[step](text)
    if "nfkc" in steps:
        text = unicodedata.normalize("NFKC", text)
    return text


# -- images and tables ----------------------------------------------------------------


def bit_depth(x: FloatArray, bits: int, low: float, high: float) -> FloatArray:
    """``x`` with ``bits`` bits over ``[low, high]``."""
    levels = 2**bits - 1
    span = high - low if high > low else 1.0
    return np.asarray(np.round((np.clip(x, low, high) - low) / span * levels) / levels * span + low)


def _windows(images: FloatArray, size: int) -> FloatArray:
    """Every ``size`` x ``size`` neighbourhood of every pixel (edges repeated)."""
    lo = size // 2
    pad = [(0, 0), (lo, size - 1 - lo), (lo, size - 1 - lo)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))


def median_smooth(images: FloatArray, size: int) -> FloatArray:
    """Each pixel the median of its ``size`` x ``size`` neighbourhood (``[n, h, w(, c)]``)."""
    windows = _windows(images, size)
    return np.median(windows.reshape(*windows.shape[:-2], -1), axis=-1)


def _gaussian(images: FloatArray, sigma: float) -> FloatArray:
    radius = max(1, round(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = images
    for axis in (1, 2):  # separable: rows, then columns
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(taps), axis=axis)
        out = windows @ taps
    return out


def _jpeg(images: FloatArray, quality: int, low: float, high: float) -> FloatArray:
    try:
        from PIL import Image
    except ModuleNotFoundError as exc:  # pragma: no cover - the onnx extra brings Pillow
        raise ConfigurationError(
            "restoration step 'jpeg' needs Pillow: pip install 'atlasguard[onnx]'"
        ) from exc
    span = high - low if high > low else 1.0
    pixels = np.round((np.clip(images, low, high) - low) / span * 255).astype(np.uint8)
    out = np.empty(images.shape, np.float64)
    for i, image in enumerate(pixels):
        mode = "RGB" if image.ndim == 3 and image.shape[-1] == 3 else "L"
        squeezed = image if mode == "RGB" else image.reshape(image.shape[:2])
        buffer = io.BytesIO()
        Image.fromarray(squeezed, mode=mode).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert(mode), np.float64).reshape(image.shape)
    return out / 255.0 * span + low


@dataclass(frozen=True)
class Restorer:
    """Compiled restoration steps for one input of one model.

    ``shape`` is an image's shape without the batch (``(8, 8)``, ``(28, 28, 1)``,
    ``(32, 32, 3)``); ``value_range`` the input's declared range; ``feature_range``
    each feature's ``(min, max)`` in the clean reference (for ``clip`` without
    bounds).
    """

    steps: tuple[RestoreStep, ...]
    kind: Kind
    shape: tuple[int, ...] = ()
    value_range: tuple[float, float] | None = None
    feature_range: tuple[FloatArray, FloatArray] | None = None

    @classmethod
    def build(
        cls,
        steps: Sequence[RestoreStep],
        *,
        kind: Kind,
        shape: Sequence[int] = (),
        value_range: tuple[float, float] | None = None,
        reference: FloatArray | None = None,
        where: str = "[controls.restoration]",
    ) -> Restorer:
        """Check that every step fits ``kind`` and has what it needs; compile them."""
        for i, step in enumerate(steps):
            at = f"{where} steps[{i}] ({step.op})"
            if kind not in KINDS[step.op]:
                allowed = ", ".join(sorted(KINDS[step.op]))
                raise ConfigurationError(f"{at}: applies to {allowed} inputs, not to {kind} inputs")
            if step.op in ("bit_depth", "jpeg") and value_range is None:
                raise ConfigurationError(
                    f"{at}: needs the input's range: declare min and max on the model's input"
                )
            if step.op == "clip" and step.min is None and step.max is None and reference is None:
                raise ConfigurationError(
                    f"{at}: give min and max, or a reference (clean inputs) for the model "
                    "so it clips to the training range"
                )
            if step.op == "quantize" and not step.step > 0:
                raise ConfigurationError(f"{at}: step must be positive")
        if kind == "image" and len(shape) not in (2, 3):
            raise ConfigurationError(
                f"{where}: an image input needs its shape, e.g. shape = [8, 8] or [32, 32, 3]"
            )
        features = None
        if reference is not None:
            flat = reference.reshape(len(reference), -1)
            features = (flat.min(axis=0), flat.max(axis=0))
        return cls(tuple(steps), kind, tuple(shape), value_range, features)

    def __call__(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The restored batch (same shape and dtype); text as an object array of bytes."""
        if self.kind == "text":
            return self._text(batch)
        rows = np.asarray(batch, np.float64)
        n = rows.shape[0] if rows.ndim else 1
        flat = rows.reshape(n, -1)
        for step in self.steps:
            flat = self._step(step, flat)
        return flat.reshape(rows.shape).astype(batch.dtype, copy=False)

    def _step(self, step: RestoreStep, flat: FloatArray) -> FloatArray:
        low, high = self.value_range or (0.0, 1.0)
        if step.op == "bit_depth":
            return bit_depth(flat, step.bits, low, high)
        if step.op == "clip":
            if step.min is None and step.max is None and self.feature_range is not None:
                lo, hi = self.feature_range
                if lo.shape[0] == flat.shape[1]:
                    return np.clip(flat, lo, hi)
                return flat
            return np.clip(flat, step.min, step.max)
        if step.op == "quantize":
            return np.round(flat / step.step) * step.step
        images = flat.reshape(len(flat), *self.shape)
        if step.op == "median":
            images = median_smooth(images, step.size)
        elif step.op == "gaussian":
            images = _gaussian(images, step.sigma)
        else:  # jpeg
            images = _jpeg(images, step.quality, low, high)
        return images.reshape(len(flat), -1)

    def _text(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        names = [s.op for s in self.steps]
        out = np.empty(batch.shape, dtype=object)
        for index, value in np.ndenumerate(batch):
            if isinstance(value, bytes | bytearray):
                text = bytes(value).decode("utf-8", errors="replace")
                out[index] = clean_text(text, names).encode("utf-8")
            elif isinstance(value, str):
                out[index] = clean_text(value, names)
            else:
                out[index] = value
        return out


@dataclass
class RestorationGuard:
    """The guard: each configured model's input restored before the model runs.

    ``restorers`` maps a model to ``(input name or "" for every input, restorer)``.
    """

    restorers: dict[str, tuple[str, Restorer]] = field(default_factory=dict)
    name: str = "restoration"
    mitigates: frozenset[str] = frozenset({"AML.M0010"})
    blocking: bool = False

    @classmethod
    def from_policy(cls, policy: Policy) -> RestorationGuard:
        """The restorations ``[controls.restoration.models.<name>]`` describe."""
        from atlasguard.runtime.reference import reference_inputs
        from atlasguard.runtime.settings import RestorationSettings

        settings = policy.settings("restoration")
        if not isinstance(settings, RestorationSettings):  # pragma: no cover - plan() checked
            raise ConfigurationError("controls.restoration: unexpected settings")
        restorers: dict[str, tuple[str, Restorer]] = {}
        for model, table in (settings.models or {}).items():
            where = policy.where(f"controls.restoration.models.{model}")
            spec = policy.models.get(model)
            if spec is None:
                raise ConfigurationError(f"{where}: no [models.{model}] is declared")
            declared = next(
                (t for t in spec.inputs if not table.input or t.name == table.input), None
            )
            if declared is None:
                raise ConfigurationError(
                    f"{where}: model {model!r} declares no input named {table.input!r}"
                )
            shape = tuple(table.shape) or tuple(d for d in declared.shape[1:])
            value_range = (
                (declared.min, declared.max)
                if declared.min is not None and declared.max is not None
                else None
            )
            needs_reference = any(
                s.op == "clip" and s.min is None and s.max is None for s in table.steps
            )
            reference = reference_inputs(policy, model) if needs_reference else None
            restorers[model] = (
                table.input,
                Restorer.build(
                    table.steps,
                    kind=table.kind,
                    shape=shape if table.kind == "image" else (),
                    value_range=value_range,
                    reference=reference,
                    where=where,
                ),
            )
        return cls(restorers)

    def before(self, request: Request) -> Request:
        found = self.restorers.get(request.model)
        if found is None:
            return request
        name, restorer = found
        inputs: dict[str, npt.NDArray[Any]] = dict(request.inputs)
        for key, array in request.inputs.items():
            if name and key != name:
                continue
            text = array.dtype.kind in "OSU"
            if text != (restorer.kind == "text") or (not text and array.dtype.kind not in "fiu"):
                continue
            try:
                inputs[key] = restorer(array)
            except ValueError as exc:
                raise Denied(
                    f"input {key!r} does not fit the model's declared restoration "
                    f"({exc}); send inputs of the declared shape",
                    reason="invalid-input",
                ) from None
        return request.with_inputs(_arrays(inputs))

    def after(self, request: Request, response: Response) -> Response:
        return response


def _arrays(inputs: dict[str, npt.NDArray[Any]]) -> Arrays:
    return inputs
