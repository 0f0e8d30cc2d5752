"""Proxy to an Open Inference Protocol server a team already runs (Triton, KServe, MLServer).

The gateway authenticates, limits, validates and audits; the upstream server
only runs the model. Requests go to ``{spec.url}/v2/models/{model}/infer``
with ``model`` = ``spec.upstream_model`` or the gateway's name for it. Any
upstream failure (unreachable, timeout, non-200, malformed or oversized
answer) becomes :class:`~atlasguard.runtime.pipeline.Denied` with reason
``upstream`` (HTTP 502) and a short message of our own: the upstream's body is
never passed on, since it may describe the upstream's internals.

>>> from atlasguard.gateway.backends.upstream import upstream_error
>>> err = upstream_error("timed out")
>>> (err.reason, str(err))
('upstream', 'upstream model server: timed out')
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy.typing as npt

from atlasguard.gateway.backends.base import BackendError, OutputMeta
from atlasguard.gateway.oip import DATATYPES, InvalidInput, decode_tensor, encode_tensor
from atlasguard.policy import ModelSpec
from atlasguard.runtime.pipeline import Denied

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_RESPONSE_BYTES", "UpstreamBackend", "load", "upstream_error"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 5.0


def upstream_error(what: str) -> Denied:
    """The refusal every upstream failure becomes (reason ``upstream``, HTTP 502)."""
    return Denied(f"upstream model server: {what}", reason="upstream")


class UpstreamBackend:
    """A model served by another Open Inference Protocol server, reached over HTTP."""

    blocking = True

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        model: str,
        outputs: tuple[OutputMeta, ...],
        *,
        requested: tuple[str, ...] = (),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.name = name
        self.outputs = outputs
        self._client = client
        self._path = f"/v2/models/{quote(model, safe='')}/infer"
        self._requested = requested
        self._max_response = max_response_bytes

    def predict(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        import httpx

        body: dict[str, Any] = {"inputs": [encode_tensor(n, a) for n, a in inputs.items()]}
        if self._requested:
            body["outputs"] = [{"name": n} for n in self._requested]
        payload = json.dumps(body, allow_nan=False).encode()
        headers = {"Content-Type": "application/json"}
        try:
            with self._client.stream("POST", self._path, content=payload, headers=headers) as r:
                if r.status_code != 200:
                    raise upstream_error(f"answered HTTP {r.status_code}")
                data = _read_capped(r, self._max_response)
        except httpx.TimeoutException:
            raise upstream_error("timed out") from None
        except httpx.HTTPError:
            raise upstream_error("unreachable") from None
        return _decode_outputs(data)

    def close(self) -> None:
        self._client.close()


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise upstream_error(f"answer larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_outputs(data: bytes) -> dict[str, npt.NDArray[Any]]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise upstream_error("answer is not JSON") from None
    raw = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(raw, list):
        raise upstream_error('answer has no "outputs" list')
    out: dict[str, npt.NDArray[Any]] = {}
    for i, item in enumerate(raw):
        try:
            name, array = decode_tensor(item, where=f"outputs[{i}]")
        except InvalidInput as exc:
            raise upstream_error(f"malformed answer ({exc})") from None
        out[name] = array
    return out


def _metadata_outputs(client: httpx.Client, model: str, name: str) -> tuple[OutputMeta, ...]:
    import httpx

    try:
        r = client.get(f"/v2/models/{quote(model, safe='')}")
    except httpx.HTTPError as exc:
        raise BackendError(
            f"model {name}: upstream server unreachable: {type(exc).__name__}"
        ) from None
    if r.status_code != 200:
        raise BackendError(f"model {name}: upstream metadata request answered HTTP {r.status_code}")
    try:
        doc = r.json()
    except ValueError:
        raise BackendError(f"model {name}: upstream metadata is not JSON") from None
    metas: list[OutputMeta] = []
    raw = doc.get("outputs", []) if isinstance(doc, dict) else None
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        out_name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(out_name, str) or datatype not in DATATYPES:
            continue
        dims = (
            tuple(d if type(d) is int and d >= 0 else -1 for d in shape)
            if isinstance(shape, list)
            else (-1,)
        )
        metas.append(OutputMeta(out_name, str(datatype), dims))
    if not metas:
        raise BackendError(f"model {name}: upstream metadata lists no usable outputs")
    return tuple(metas)


def load(
    name: str,
    spec: ModelSpec,
    base_dir: Path,
    *,
    model_path: Path | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
) -> UpstreamBackend:
    """Connect to ``spec.url`` and read the model's output metadata from it."""
    del base_dir, model_path, threads, allow  # nothing is loaded locally
    import httpx

    if not spec.url.startswith(("http://", "https://")):
        raise BackendError(f"model {name}: upstream url must be http:// or https://")
    model = spec.upstream_model or name
    client = httpx.Client(
        base_url=spec.url.rstrip("/"),
        timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
        follow_redirects=False,
        trust_env=False,  # no proxy or .netrc credentials picked up from the environment
    )
    try:
        outputs = _metadata_outputs(client, model, name)
    except BackendError:
        client.close()
        raise
    return UpstreamBackend(name, client, model, outputs, requested=tuple(spec.outputs))
