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
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from atlasguard.errors import UnsafeArtifactError, UsageError, VerificationError
from atlasguard.registry.model import Kind, check_name, parse_ref
from atlasguard.runtime.pipeline import Denied

if TYPE_CHECKING:
    from atlasguard.gateway.service import Gateway
    from atlasguard.registry.service import Registry

__all__ = ["DEFAULT_MAX_PUSH_BYTES", "registry_router"]

DEFAULT_MAX_PUSH_BYTES = 2 << 30
"""The largest body ``POST /v1/registry/{name}`` reads (2 GiB)."""

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
# Where the registry's private snapshot lived: not the caller's business.
_SNAPSHOT = re.compile(r"\S*/atlasguard-(?:push|upload)-[^/\s]+/")


class PromoteRequest(BaseModel):
    alias: str = Field(min_length=1, max_length=100)


def _plain(value: Any) -> Any:
    data = dataclasses.asdict(value)
    return {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v)
        for k, v in data.items()
    }


def _clean(message: str) -> str:
    """A refusal fit to send: no server temporary paths, only encodable characters."""
    return _SNAPSHOT.sub("", message).encode("utf-8", "backslashreplace").decode("utf-8")


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


def registry_router(
    gateway: Gateway,
    registry: Registry,
    credential_of: Any,
    *,
    max_push_bytes: int = DEFAULT_MAX_PUSH_BYTES,
) -> APIRouter:
    """The routes, bound to one gateway (for authentication) and its registry."""
    from atlasguard.gateway.app import _body_chunks
    from atlasguard.identity.store import AuthenticationError
    from atlasguard.registry.access import AccessDeniedError

    router = APIRouter(prefix="/v1/registry")

    def refused(principal: str, action: str, ref: str, reason: str) -> None:
        """Audit a refusal decided here, before the registry (which audits its own)."""
        from atlasguard.audit.records import AuditRecord

        gateway.audit.append(
            AuditRecord(
                time=time.time(),
                principal=principal,
                action=f"registry.{action}",
                decision="deny",
                reason=reason,
                model=ref[:200],
            )
        )

    def who(request: Request, action: str, ref: str = "*") -> tuple[str, Registry]:
        """The caller, and the registry as it sees it (with the groups its token asserts)."""
        try:
            record = gateway.access.authenticate(credential_of(request))
        except AuthenticationError as exc:
            refused("-", action, ref, "unauthenticated")
            raise Denied(
                f"authentication failed: {exc}",
                status=401,
                reason="unauthenticated",
                headers={"WWW-Authenticate": 'Bearer realm="atlasguard"'},
            ) from None
        view = registry.acting_with_groups(record.groups) if record.groups else registry
        return record.name, view

    def call(fn: Any, *args: Any) -> Any:  # the registry's refusals, as HTTP answers
        try:
            return fn(*args)
        except AccessDeniedError as exc:
            raise Denied(str(exc), status=403, reason="forbidden") from None

    @router.get("")
    async def list_objects(request: Request, kind: Kind | None = None) -> list[dict[str, Any]]:
        principal, reg = await run_in_threadpool(who, request, "list")

        def listing() -> list[Any]:
            return list(call(lambda: reg.list(principal, kind=kind)))

        return [_plain(o) for o in await run_in_threadpool(listing)]

    @router.get("/{ref}")
    async def show(ref: str, request: Request) -> dict[str, Any]:
        principal, reg = await run_in_threadpool(who, request, "show", ref)
        obj, version = await run_in_threadpool(call, reg.show, principal, ref)
        return {"object": _plain(obj), "version": _plain(version)}

    @router.post("/{ref}/promote")
    async def promote(ref: str, body: PromoteRequest, request: Request) -> dict[str, Any]:
        principal, reg = await run_in_threadpool(who, request, "promote", ref)
        version = await run_in_threadpool(call, reg.promote, principal, ref, body.alias)
        return {"alias": body.alias, "version": _plain(version)}

    @router.get("/{ref}/content")
    async def content(ref: str, request: Request) -> StreamingResponse:
        principal, reg = await run_in_threadpool(who, request, "pull", ref)

        def pull_as_tar() -> tempfile.SpooledTemporaryFile[bytes]:
            with tempfile.TemporaryDirectory(prefix="atlasguard-pull-") as tmp:
                dest = Path(tmp) / "object"
                call(reg.pull, principal, ref, dest)  # re-verified before it leaves
                # closed by the response's generator once streamed
                spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=16 << 20
                )
                with tarfile.open(fileobj=spool, mode="w") as tar:
                    tar.add(dest, arcname=ref.split("@", 1)[0])
                spool.seek(0)
                return spool

        spool = await run_in_threadpool(pull_as_tar)

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

    @router.post("/{name}", status_code=201, openapi_extra={"requestBody": _PUSH_BODY})
    async def push(
        name: str,
        request: Request,
        kind: Kind = "model",
        description: Annotated[str, Query(max_length=1000)] = "",
        framework: Annotated[str, Query(max_length=100)] = "",
        tags: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006 - FastAPI copies
        lineage: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006
        metadata: Annotated[list[str], Query(max_length=100)] = [],  # noqa: B006
        signature: Annotated[str | None, Header(alias="X-Atlasguard-Signature")] = None,
    ) -> Any:
        # Authenticate and check what is cheap before reading a byte of the body.
        principal, reg = await run_in_threadpool(who, request, "push", name)
        try:
            return await push_body(
                request,
                principal,
                reg,
                name,
                kind,
                description,
                framework,
                tags,
                lineage,
                metadata,
                signature,
            )
        except (Denied, UsageError) as exc:
            # Refusals decided here (bad parameters, body type or size, a bad tar) are
            # audited here; the registry audits its own (grants, findings, signatures).
            if not isinstance(exc, Denied) or exc.reason == "invalid-input":
                reason = "invalid-input" if isinstance(exc, Denied) else "bad-request"
                await run_in_threadpool(refused, principal, "push", name, reason)
            raise

    async def push_body(
        request: Request,
        principal: str,
        reg: Registry,
        name: str,
        kind: Kind,
        description: str,
        framework: str,
        tags: list[str],
        lineage: list[str],
        metadata: list[str],
        signature: str | None,
    ) -> Any:
        check_name(name)
        for ref in lineage:
            parse_ref(ref)
        meta = _pairs(metadata, "metadata")
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in (_FILE, _TAR):
            raise Denied(
                f"the body must be {_FILE} (one file) or {_TAR} (a directory)",
                status=415,
                reason="invalid-input",
            )
        bundle = _signature(signature, media)
        try:  # refused (and audited) before a byte of the upload is accepted
            await run_in_threadpool(reg.check_push, principal, name)
        except AccessDeniedError:
            raise Denied(
                f"{principal} may not push {name}", status=403, reason="forbidden"
            ) from None
        work = Path(tempfile.mkdtemp(prefix="atlasguard-upload-"))  # 0700
        try:
            upload = work / ("body.tar" if media == _TAR else name)
            if bundle is not None:  # where the registry looks for a file's signature
                upload.with_name(f"{name}.sig").write_bytes(bundle)
            with upload.open("wb") as out:
                async for chunk in _body_chunks(request, max_push_bytes):
                    out.write(chunk)  # page-cache writes: brief next to the network read

            def unpack() -> Path:
                if media != _TAR:
                    return upload
                unpacked = work / "unpacked"
                unpacked.mkdir(mode=0o700)
                _safe_untar(upload, unpacked, max_bytes=max_push_bytes)
                upload.unlink()
                return _source_of(unpacked)

            source = await run_in_threadpool(unpack)

            def store() -> Any:
                return reg.push(
                    principal,
                    name,
                    source,
                    kind,
                    description=description,
                    framework=framework,
                    tags=tags,
                    metadata=meta,
                    lineage=lineage,
                )

            try:
                version = await run_in_threadpool(store)
            except AccessDeniedError:
                # One answer whether or not the object exists (create vs push).
                raise Denied(
                    f"{principal} may not push {name}", status=403, reason="forbidden"
                ) from None
            except UnsafeArtifactError as exc:
                head, *lines = str(exc).splitlines()
                return JSONResponse(
                    {
                        "error": head.rstrip(":"),
                        "reason": "unsafe",
                        "findings": [_clean(line) for line in lines],
                    },
                    status_code=422,
                )
            except VerificationError as exc:  # a missing or bad signature, a symbolic link
                message = _clean(str(exc))
                raise Denied(f"refused {name}: {message}", status=422, reason="refused") from None
            except UsageError as exc:  # the registry refused (and audited) it, e.g. wrong kind
                raise Denied(_clean(str(exc)), status=400, reason="refused") from None
        finally:
            await run_in_threadpool(shutil.rmtree, work, True)
        return {"version": _plain(version)}

    return router
