"""``/v1/registry``: the registry over HTTP, for the gateway's own principals.

Thin routes over :class:`atlasguard.registry.service.Registry`: the caller is
authenticated exactly like an inference request (API key or JWT) and every
decision — allow or deny, reads included — is the registry's and is audited by
it. Refusals never say whether an object exists.

``POST /v1/registry/{name}`` pushes a new version: the body is one file
(``application/octet-stream``) or an uncompressed tar of a directory
(``application/x-tar``), streamed to a private temporary directory under a size
limit (413 past it). A tar is unpacked by :func:`_safe_untar`, which takes
nothing but regular files and directories under plain relative names (400 for
anything else); the registry then decides, scans (422 with the findings),
hashes, stores and audits, as for ``atlasguard registry push``. A directory
carries its signature inside (``model.sig``); a single file's signature (what
``FILE.sig`` holds beside it for the command line) travels base64-encoded in the
``X-Atlasguard-Signature`` header.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from atlasguard.errors import UsageError
from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.http import body_chunks, gateway_of, read_body
from atlasguard.registry.model import Kind, check_name, parse_ref
from atlasguard.runtime.pipeline import Denied

if TYPE_CHECKING:
    from atlasguard.registry.service import Registry

__all__ = ["router"]

_MAX_MEMBERS = 100_000
_MAX_NAME = 1024  # characters in a member's name
_MAX_DEPTH = 64  # directories deep: deeper trees overflow recursive copies
_BINARY = {"schema": {"type": "string", "format": "binary"}}
# The body is streamed raw (bounded); this only documents it.
_PUSH_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/octet-stream": _BINARY, "application/x-tar": _BINARY},
}
_TAR = "application/x-tar"
_FILE = "application/octet-stream"
_MAX_PROMOTE_BYTES = 4096
P = TypeVar("P", bound=BaseModel)


class PromoteRequest(BaseModel):
    alias: str = Field(min_length=1, max_length=100)


_PROMOTE_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": PromoteRequest.model_json_schema()}},
}


def _plain(value: Any) -> Any:
    data = dataclasses.asdict(value)
    return {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v)
        for k, v in data.items()
    }


def _safe_untar(archive: Path, dest: Path, *, max_bytes: int) -> None:
    """Unpack the uncompressed tar ``archive`` into the empty directory ``dest``, or refuse.

    Member names are never trusted: only regular files and directories are
    taken, under relative names without ``..``, each written once, by this code
    (not ``tarfile.extract``) with ``O_EXCL | O_NOFOLLOW``. Links, devices,
    FIFOs, sparse files, absolute or escaping names, duplicates, more than
    100 000 members or more than ``max_bytes`` of content raise
    :class:`UsageError`; whatever was written before stays in ``dest`` for the
    caller to delete.
    """
    seen: set[PurePosixPath] = set()
    total = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > _MAX_MEMBERS:
                    raise UsageError(f"the archive holds more than {_MAX_MEMBERS} members")
                rel = _member_path(member)
                if rel is None:  # the archive's own root, "." or "./"
                    continue
                if rel in seen:
                    raise UsageError(f"archive member {member.name!r} appears twice")
                seen.add(rel)
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(mode=0o700, parents=True, exist_ok=True)
                    continue
                total += member.size
                if total > max_bytes:
                    raise UsageError(f"the archive unpacks to more than {max_bytes} bytes")
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    raise UsageError(f"archive member {member.name!r} has no data")
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with source, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except UsageError:
        raise
    except OSError as exc:  # a name clash on disk; never echo the server's paths
        raise UsageError(f"the archive cannot be unpacked as it is: {exc.strerror}") from None
    except (tarfile.TarError, EOFError, UnicodeError, ValueError, RecursionError) as exc:
        raise UsageError(f"not a valid tar archive: {exc.__class__.__name__}") from None
    if not any(p.is_file() for p in dest.rglob("*")):
        raise UsageError("the archive holds no regular file")


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    name = member.name
    if not (member.isreg() or member.isdir()) or member.issparse():
        kind = "a link" if member.issym() or member.islnk() else "not a regular file"
        raise UsageError(f"archive member {name!r} is {kind}: refused")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("an archive member's name is not UTF-8: refused") from None
    if len(name) > _MAX_NAME or name.count("/") > _MAX_DEPTH:
        raise UsageError(f"archive member {name[:80]!r}… is too long or too deep: refused")
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p != "."]
    if path.is_absolute() or ".." in parts or "\\" in name or "\0" in name:
        raise UsageError(f"archive member {name!r} has an unsafe name: refused")
    if not parts:
        if member.isdir():
            return None
        raise UsageError(f"archive member {name!r} has no name: refused")
    return PurePosixPath(*parts)


def _source_of(unpacked: Path) -> Path:
    # The shape /content sends back: one top-level directory holding the object.
    entries = list(unpacked.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected KEY=VALUE, not {item!r}")
        pairs[key] = value
    return pairs


def _signature(header: str | None, media: str) -> bytes | None:
    if header is None:
        return None
    if media == _TAR:
        raise UsageError("a directory carries its signature inside (model.sig), not in a header")
    try:
        return base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("X-Atlasguard-Signature: expected base64") from None


router = APIRouter(prefix="/v1/registry")


async def _caller(call: Call) -> tuple[str, Registry]:
    """The caller, and the registry as it sees it (with the groups its token asserts)."""
    record = await call.authenticate()
    registry = call.gateway.registry
    if registry is None:  # pragma: no cover - the router is mounted only with a registry
        raise Denied("the registry is off", reason="not-found")
    view = registry.acting_with_groups(record.groups) if record.groups else registry
    return record.name, view


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind | None = None


class PushParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = "model"
    description: str = Field(default="", max_length=1000)
    framework: str = Field(default="", max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=100)
    lineage: list[str] = Field(default_factory=list, max_length=100)
    metadata: list[str] = Field(default_factory=list, max_length=100)


def _params(request: Request, model: type[P]) -> P:
    """Query parameters, validated only once the caller is authenticated."""
    lists = {n for n, f in model.model_fields.items() if f.annotation == list[str]}
    raw: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        raw[key] = values if key in lists else values[-1]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "query"
        raise Denied(f"query {where}: {first['msg']}", reason="malformed") from None


def _documented(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI ``parameters`` for a query model (validated by the route, not the framework)."""
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


@router.get("", openapi_extra={"parameters": _documented(ListParams)})
async def list_objects(request: Request) -> Response:
    async def work(call: Call) -> Response:
        principal, reg = await _caller(call)
        kind = _params(request, ListParams).kind
        found = await call.delegate(reg.list, principal, kind=kind)
        return JSONResponse([_plain(o) for o in found])

    return await audited(request, "registry.list", None, work)


@router.get("/{ref}")
async def show(ref: str, request: Request) -> Response:
    async def work(call: Call) -> Response:
        principal, reg = await _caller(call)
        obj, version = await call.delegate(reg.show, principal, ref)
        return JSONResponse({"object": _plain(obj), "version": _plain(version)})

    return await audited(request, "registry.show", ref, work)


@router.post("/{ref}/promote", openapi_extra={"requestBody": _PROMOTE_BODY})
async def promote(ref: str, request: Request) -> Response:
    async def work(call: Call) -> Response:
        principal, reg = await _caller(call)  # before the body: its shape is not for strangers
        raw = await read_body(request, _MAX_PROMOTE_BYTES)
        try:
            body = PromoteRequest.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            raise Denied(f"{where}: {first['msg']}", reason="invalid-input") from None
        version = await call.delegate(reg.promote, principal, ref, body.alias)
        return JSONResponse({"alias": body.alias, "version": _plain(version)})

    return await audited(request, "registry.promote", ref, work)


@router.get("/{ref}/content")
async def content(ref: str, request: Request) -> Response:
    async def work(call: Call) -> Response:
        principal, reg = await _caller(call)

        def pull_as_tar() -> tempfile.SpooledTemporaryFile[bytes]:
            with tempfile.TemporaryDirectory(prefix="atlasguard-pull-") as tmp:
                dest = Path(tmp) / "object"
                reg.pull(principal, ref, dest)  # re-verified before it leaves
                # closed by the response's generator once streamed
                spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=16 << 20
                )
                with tarfile.open(fileobj=spool, mode="w") as tar:
                    tar.add(dest, arcname=ref.split("@", 1)[0])
                spool.seek(0)
                return spool

        spool = await call.delegate(pull_as_tar)

        def chunks() -> Iterator[bytes]:
            try:
                while block := spool.read(1 << 20):
                    yield block
            finally:
                spool.close()

        name = ref.replace("@", "-").replace(":", "-")
        return StreamingResponse(
            chunks(),
            media_type="application/x-tar",
            headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
        )

    return await audited(request, "registry.pull", ref, work)


_SIGNATURE_HEADER = {
    "name": "X-Atlasguard-Signature",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
}


@router.post(
    "/{name}",
    status_code=201,
    openapi_extra={
        "requestBody": _PUSH_BODY,
        "parameters": [*_documented(PushParams), _SIGNATURE_HEADER],
    },
)
async def push(name: str, request: Request) -> Response:
    limit = getattr(gateway_of(request).policy.settings("registry"), "max_push_bytes", 2 << 30)

    async def work(call: Call) -> Response:
        # Authenticate and check what is cheap before reading a byte of the body.
        principal, reg = await _caller(call)
        params = _params(request, PushParams)
        signature = request.headers.get("x-atlasguard-signature")
        try:
            check_name(name)
            for ref in params.lineage:
                parse_ref(ref)
            meta = _pairs(params.metadata, "metadata")
            media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media not in (_FILE, _TAR):
                raise Denied(
                    f"the body must be {_FILE} (one file) or {_TAR} (a directory)",
                    reason="unsupported-media",
                )
            bundle = _signature(signature, media)
        except UsageError as exc:
            raise Denied(str(exc), reason="malformed") from None
        # refused (and recorded by the registry) before a byte of the upload is accepted
        await call.delegate(reg.check_push, principal, name)
        call.delegated = False  # what follows until the push is decided here
        work_dir = Path(tempfile.mkdtemp(prefix="atlasguard-upload-"))  # 0700
        try:
            upload = work_dir / ("body.tar" if media == _TAR else name)
            if bundle is not None:  # where the registry looks for a file's signature
                upload.with_name(f"{name}.sig").write_bytes(bundle)
            with upload.open("wb") as out:
                async for chunk in body_chunks(request, limit):
                    out.write(chunk)  # page-cache writes: brief next to the network read

            def unpack() -> Path:
                if media != _TAR:
                    return upload
                unpacked = work_dir / "unpacked"
                unpacked.mkdir(mode=0o700)
                _safe_untar(upload, unpacked, max_bytes=limit)
                upload.unlink()
                return _source_of(unpacked)

            try:
                source = await run_in_threadpool(unpack)
            except UsageError as exc:
                raise Denied(str(exc), reason="malformed") from None
            version = await call.delegate(
                reg.push,
                principal,
                name,
                source,
                params.kind,
                description=params.description,
                framework=params.framework,
                tags=params.tags,
                metadata=meta,
                lineage=params.lineage,
            )
        finally:
            await run_in_threadpool(shutil.rmtree, work_dir, True)
        return JSONResponse({"version": _plain(version)}, status_code=201)

    return await audited(request, "registry.push", name, work)
