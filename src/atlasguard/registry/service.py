"""The registry of models and data sets under access control (AML.M0005).

Deny by default: every action is decided by :func:`atlasguard.registry.access.decide`
from the identity store's principals and grants (one identity system with the
gateway), and every decision, allowed or refused, is an audit record
(``registry.push``, ``registry.pull``...) written before anything happens, so
an audit log that cannot be written stops the action (fail closed).

Nothing unsafe gets in: a push passes the deployment's load gate
(:class:`~atlasguard.artifacts.load_gate.LoadGate`, the same one the gateway
loads models through: scanned and refused at or above ``[controls.scan]
fail_on``, its signature verified when ``[controls.signing] require = true``),
and it is hashed into a manifest kept with the version. Nothing altered gets
out: a pull rebuilds the object in a temporary directory beside the
destination, re-verifies it against the stored manifest, and only then renames
it into place.

>>> import tempfile, pathlib
>>> from atlasguard.policy import load_policy_text
>>> from atlasguard.runtime.deployment import Deployment
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> policy = load_policy_text("[controls.registry]\\nenabled = true\\n", path=root / "p.toml")
>>> reg = Deployment.open(policy).registry
>>> _ = reg.identity.ensure_principal("ops", admin=True)
>>> _ = (root / "data.csv").write_text("x,y\\n1,2\\n")
>>> reg.push("ops", "iris", root / "data.csv", "dataset").number
1
>>> reg.pull("ops", "iris@1", root / "copy.csv").read_text()
'x,y\\n1,2\\n'
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, RowMapping, func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from atlasguard.artifacts.manifest import Manifest, hash_model, verify_manifest
from atlasguard.db.schema import registry_aliases, registry_objects, registry_versions
from atlasguard.errors import (
    ConfigurationError,
    IntegrityError,
    UnsafeArtifactError,
    UsageError,
    VerificationError,
)
from atlasguard.identity.store import IdentityStore
from atlasguard.registry._blobs import rebuild, snapshot_of, store_blobs, total_size
from atlasguard.registry.access import (
    DEFAULT_POLICY,
    AccessDeniedError,
    Action,
    Decision,
    Rule,
    Subject,
    Target,
    decide,
)
from atlasguard.registry.model import (
    KINDS,
    Kind,
    ObjectRef,
    RegistryObject,
    Version,
    check_alias,
    check_name,
    parse_ref,
)
from atlasguard.registry.settings import CONTROLS, RegistrySettings
from atlasguard.registry.stores import Store
from atlasguard.runtime.auditor import Outcome

if TYPE_CHECKING:
    from atlasguard.artifacts.keys import Keyring
    from atlasguard.artifacts.load_gate import LoadGate
    from atlasguard.audit.log import AuditLog
    from atlasguard.policy import Policy
    from atlasguard.runtime.auditor import Auditor
    from atlasguard.runtime.deployment import Deployment

__all__ = ["CONTROLS", "Registry", "RegistrySettings", "UnknownObjectError"]


class UnknownObjectError(UsageError, LookupError):
    """No such object, version or alias (said only to principals allowed to read it)."""


def _loads(text: str) -> Any:
    return json.loads(text) if text else None


class Registry:
    """Objects, versions and aliases in the metadata database, bytes in a :class:`Store`."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        identity: IdentityStore,
        auditor: Auditor,
        load_gate: LoadGate,
        keyring: Keyring | None = None,
        policy: Rule = DEFAULT_POLICY,
    ) -> None:
        self._engine = engine
        self.store = store
        self.identity = identity
        self.auditor = auditor
        self.load_gate = load_gate
        self.keyring = keyring  # encryption at rest, when [controls.registry] encrypt
        self.policy = policy
        self._token_groups: tuple[str, ...] = ()

    # -- decisions and audit ---------------------------------------------------------

    @property
    def audit(self) -> AuditLog:
        """The audit log this registry records every decision in."""
        if self.auditor.log is None:
            raise ConfigurationError("this registry records nothing: it has no audit log")
        return self.auditor.log

    @classmethod
    def open(cls, deployment: Deployment) -> Registry:
        """The registry of ``deployment``: its database, identities, auditor and load gate.

        Blobs live in ``<state_dir>/<[controls.registry] store>``, or in a bucket
        when ``store = "s3://BUCKET/PREFIX"``; with ``encrypt = true`` they are
        sealed with ``[keys] keyring``, which must not lie inside a local store
        (keys never beside the data).
        """
        from atlasguard.artifacts.keys import load_keyring
        from atlasguard.registry.stores.local import LocalStore

        policy = deployment.policy
        raw = policy.settings("registry")
        settings = raw if isinstance(raw, RegistrySettings) else RegistrySettings()
        store = _open_store(policy, settings)
        keyring = None
        if settings.encrypt:
            if not policy.keys.keyring:
                raise ConfigurationError(
                    f"{policy.where('controls.registry.encrypt')}: encrypt = true needs "
                    "[keys] keyring"
                )
            ring_path = (policy.base_dir / policy.keys.keyring).resolve()
            if isinstance(store, LocalStore) and ring_path.is_relative_to(store.root):
                raise ConfigurationError(
                    f"{policy.where('keys.keyring')}: the keyring lies inside the registry "
                    f"store {store.root}: keep keys apart from the data they protect"
                )
            keyring = load_keyring(ring_path)
        return cls(
            deployment.engine,
            store,
            identity=deployment.identity,
            auditor=deployment.auditor,
            load_gate=deployment.load_gate,
            keyring=keyring,
        )

    def acting_with_groups(self, groups: Sequence[str]) -> Registry:
        """This registry for a caller whose credential asserts ``groups`` (a token's claim).

        The groups (``group:<name>``) add their grants to the caller's own for
        every decision the returned view makes; they never make anyone an admin.
        """
        view = copy.copy(self)
        view._token_groups = tuple(groups)
        return view

    def _subject(self, principal: str) -> Subject:
        # Read fresh (not the gateway's cache): a revoked grant stops the next action.
        grants = tuple(self.identity.grants_of(principal, self._token_groups))
        record = self.identity.principal(principal)
        return Subject(
            name=principal, is_admin=record is not None and record.is_admin, grants=grants
        )

    def _record(
        self,
        principal: str,
        action: Action,
        decision: Decision,
        ref: str,
        details: Mapping[str, str] | None = None,
    ) -> None:
        outcome = Outcome(
            action=f"registry.{action}", model=ref, principal=principal, details=dict(details or {})
        )
        if decision.allowed:
            outcome.reason = decision.reason
        else:
            outcome.refuse(decision.reason)
        self.auditor.record(outcome)

    def _check(
        self, principal: str, action: Action, target: Target, ref: str
    ) -> tuple[Subject, Decision]:
        subject = self._subject(principal)
        decision = decide(subject, action, target, policy=self.policy)
        if not decision.allowed:
            self._record(principal, action, decision, ref)
            raise AccessDeniedError(f"{principal} may not {action} {ref} ({decision.reason})")
        return subject, decision

    def _refuse(
        self, principal: str, action: Action, ref: str, reason: str, error: Exception
    ) -> Exception:
        self._record(principal, action, Decision(False, reason), ref)
        return error

    # -- reading the database --------------------------------------------------------

    def _object(self, name: str) -> RegistryObject | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(registry_objects).where(registry_objects.c.name == name)
            ).first()
            if row is None:
                return None
            latest = conn.execute(
                select(func.max(registry_versions.c.number)).where(registry_versions.c.name == name)
            ).scalar()
            aliases = {
                a.alias: a.number
                for a in conn.execute(
                    select(registry_aliases).where(registry_aliases.c.name == name)
                )
            }
        return RegistryObject(
            name=row.name,
            kind=cast(Kind, row.kind),
            owner=row.owner,
            description=row.description,
            framework=row.framework,
            tags=tuple(_loads(row.tags) or ()),
            created_at=row.created_at,
            latest=int(latest or 0),
            aliases=aliases,
        )

    def _version_row(self, obj: RegistryObject, ref: ObjectRef) -> RowMapping:
        query = select(registry_versions).where(registry_versions.c.name == obj.name)
        if ref.digest is not None:
            query = query.where(registry_versions.c.digest == ref.digest)
        else:
            number = ref.version or obj.latest
            if ref.alias is not None:
                if ref.alias not in obj.aliases:
                    raise UnknownObjectError(f"{obj.name} has no alias {ref.alias!r}")
                number = obj.aliases[ref.alias]
            query = query.where(registry_versions.c.number == number)
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise UnknownObjectError(f"no version {ref}")
        return row

    def _find(
        self, principal: str, action: Action, obj: RegistryObject, ref: ObjectRef
    ) -> RowMapping:
        try:
            return self._version_row(obj, ref)
        except UnknownObjectError as exc:
            raise self._refuse(principal, action, str(ref), "not-found", exc) from None

    @staticmethod
    def _version(obj: RegistryObject, row: RowMapping) -> Version:
        return Version(
            name=obj.name,
            number=int(row["number"]),
            digest=row["digest"],
            kind=obj.kind,
            layout=row["layout"],
            size=int(row["size"]),
            encrypted=bool(row["encrypted"]),
            created_by=row["created_by"],
            created_at=row["created_at"],
            lineage=tuple(_loads(row["lineage"]) or ()),
            metadata=dict(_loads(row["meta"]) or {}),
        )

    def _resolve(
        self, principal: str, action: Action, ref: ObjectRef | str
    ) -> tuple[ObjectRef, RegistryObject]:
        try:
            parsed = parse_ref(ref) if isinstance(ref, str) else ref
        except UsageError as exc:  # refused, and recorded, like any other refusal
            raise self._refuse(principal, action, str(ref)[:200], "malformed", exc) from None
        obj = self._object(parsed.name)
        # Decide before saying whether the object exists: a refusal reveals nothing.
        self._check(principal, action, Target(parsed.name, obj.owner if obj else None), str(parsed))
        if obj is None:
            raise self._refuse(
                principal,
                action,
                str(parsed),
                "not-found",
                UnknownObjectError(f"no object named {parsed.name!r}"),
            )
        return parsed, obj

    # -- writes ----------------------------------------------------------------------

    def check_push(self, principal: str, name: str) -> None:
        """Refuse (audited) a principal that may not push to ``name``, before any upload.

        Raises :class:`AccessDeniedError` whether or not ``name`` exists (the
        message is the same for a new object and an existing one).
        """
        check_name(name)
        try:
            self._check_write(principal, name)
        except AccessDeniedError:
            raise AccessDeniedError(f"{principal} may not push {name}") from None

    def _check_write(self, principal: str, name: str) -> tuple[RegistryObject | None, Action]:
        """Decide (audited) a push to ``name``: ``create`` if it is new, else ``push``."""
        obj = self._object(name)
        action: Action = "create" if obj is None else "push"
        self._check(principal, action, Target(name, obj.owner if obj else None), name)
        return obj, action

    def push(
        self,
        principal: str,
        name: str,
        path: str | os.PathLike[str],
        kind: Kind = "model",
        *,
        description: str = "",
        framework: str = "",
        tags: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        lineage: Iterable[str] = (),
    ) -> Version:
        """Scan, hash (verify the signature if required) and store a new version of ``name``.

        The first push creates the object, owned by ``principal``. Pushing content
        already stored under ``name`` returns the existing version.
        """
        check_name(name)
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}: expected model or dataset")
        source = Path(path)
        if not (source.is_file() or source.is_dir()) or source.is_symlink():
            raise UsageError(f"{source}: not a regular file or directory")
        lineage_refs = tuple(str(parse_ref(r)) for r in lineage)
        obj, action = self._check_write(principal, name)
        if obj is not None and obj.kind != kind:
            raise self._refuse(
                principal,
                action,
                name,
                "wrong-kind",
                UsageError(f"{name} is a {obj.kind}, not a {kind}"),
            )
        # Scan, hash and store one private copy, so the bytes checked are the bytes kept
        # even if the source changes meanwhile.
        with tempfile.TemporaryDirectory(prefix="atlasguard-push-") as tmp:
            snapshot = snapshot_of(source, Path(tmp))
            return self._accept(
                principal,
                action,
                obj,
                name,
                kind,
                snapshot,
                description=description,
                framework=framework,
                tags=tags,
                metadata=metadata,
                lineage=lineage_refs,
            )

    def _accept(
        self,
        principal: str,
        action: Action,
        obj: RegistryObject | None,
        name: str,
        kind: Kind,
        source: Path,
        *,
        description: str,
        framework: str,
        tags: Iterable[str],
        metadata: Mapping[str, str] | None,
        lineage: tuple[str, ...],
    ) -> Version:
        self._screen(principal, action, name, source)
        try:
            manifest = hash_model(source)
        except IntegrityError as exc:  # symbolic links, unreadable files
            raise self._refuse(principal, action, name, "manifest", exc) from None
        digest = manifest.root_digest()
        if obj is not None:
            existing = self._existing(obj, digest)
            if existing is not None:
                self._record(principal, action, Decision(True, "unchanged"), str(existing.ref))
                return existing
        if obj is None:  # the owner must be a principal, also one a token named
            self.identity.ensure_principal(principal)
        blobs = store_blobs(self.store, source, manifest, self.keyring)
        try:
            return self._commit(
                principal,
                action,
                obj,
                name,
                kind,
                source,
                manifest,
                blobs,
                description=description,
                framework=framework,
                tags=tags,
                metadata=metadata,
                lineage=lineage,
            )
        except BaseException:
            # Nothing stays behind a refused write, and the log says it was refused.
            self._drop_blobs(blobs.values())
            with contextlib.suppress(Exception):  # the write failed; so may the log
                self._record(principal, action, Decision(False, "not-stored"), name)
            raise

    def _drop_blobs(self, keys: Iterable[str]) -> None:
        """Delete the blobs of a refused write that no stored version refers to."""
        with self._engine.connect() as conn:
            used = {
                key
                for (text,) in conn.execute(select(registry_versions.c.blobs))
                for key in (_loads(text) or {}).values()
            }
        for key in set(keys) - used:
            with contextlib.suppress(Exception):
                self.store.delete(key)

    def _commit(
        self,
        principal: str,
        action: Action,
        obj: RegistryObject | None,
        name: str,
        kind: Kind,
        source: Path,
        manifest: Manifest,
        blobs: dict[str, str],
        *,
        description: str,
        framework: str,
        tags: Iterable[str],
        metadata: Mapping[str, str] | None,
        lineage: tuple[str, ...],
    ) -> Version:
        """Record the accepted write, then store its rows (the blobs are stored already)."""
        digest = manifest.root_digest()
        details = {"digest": digest, "kind": kind}
        self._record(principal, action, Decision(True, "accepted"), name, details)
        now = time.time()
        new_object = None
        if obj is None:
            new_object = {
                "name": name,
                "kind": kind,
                "owner": principal,
                "description": description,
                "framework": framework,
                "tags": json.dumps(sorted(set(tags))),
                "created_at": now,
            }
        version = {
            "name": name,
            "digest": digest,
            "layout": "dir" if source.is_dir() else "file",
            "manifest": manifest.to_json(),
            "blobs": json.dumps(blobs, sort_keys=True),
            "size": total_size(source),
            "encrypted": self.keyring is not None,
            "lineage": json.dumps(lineage),
            "meta": json.dumps(dict(metadata or {}), sort_keys=True),
            "created_by": principal,
            "created_at": now,
        }
        try:
            with self._engine.begin() as conn:
                if new_object is not None:
                    conn.execute(registry_objects.insert().values(**new_object))
                number = 1 + int(
                    conn.execute(
                        select(func.coalesce(func.max(registry_versions.c.number), 0)).where(
                            registry_versions.c.name == name
                        )
                    ).scalar_one()
                )
                conn.execute(registry_versions.insert().values(number=number, **version))
        except DBIntegrityError:
            # Two pushes raced for the same name or number; the loser changes nothing.
            raise UsageError(f"{name} was changed by a concurrent push: try again") from None
        created = self._object(name)
        if created is None:  # pragma: no cover - just inserted
            raise UsageError(f"{name} vanished")
        return self._version(created, self._version_row(created, ObjectRef(name, number)))

    def _existing(self, obj: RegistryObject, digest: str) -> Version | None:
        try:
            return self._version(obj, self._version_row(obj, ObjectRef(obj.name, digest=digest)))
        except UnknownObjectError:
            return None

    def _screen(self, principal: str, action: Action, name: str, source: Path) -> None:
        try:
            self.load_gate.screen(source, name=name)
        except UnsafeArtifactError as exc:
            raise self._refuse(principal, action, name, "unsafe", exc) from None
        except VerificationError as exc:  # worded by the gate: no private path in it
            raise self._refuse(principal, action, name, "signature", exc) from None

    def promote(self, principal: str, ref: ObjectRef | str, alias: str) -> Version:
        """Point ``alias`` (``production``, ``staging``...) at the version ``ref`` names."""
        try:
            check_alias(alias)
        except UsageError as exc:
            raise self._refuse(principal, "promote", str(ref)[:200], "malformed", exc) from None
        parsed, obj = self._resolve(principal, "promote", ref)
        version = self._version(obj, self._find(principal, "promote", obj, parsed))
        details = {"alias": alias, "version": str(version.number), "digest": version.digest}
        self._record(principal, "promote", Decision(True, "promoted"), str(parsed), details)
        with self._engine.begin() as conn:
            conn.execute(
                registry_aliases.delete().where(
                    registry_aliases.c.name == obj.name, registry_aliases.c.alias == alias
                )
            )
            conn.execute(
                registry_aliases.insert().values(
                    name=obj.name,
                    alias=alias,
                    number=version.number,
                    updated_by=principal,
                    updated_at=time.time(),
                )
            )
        return version

    def grant(self, principal: str, grantee: str, pattern: str, role: str) -> None:
        """Give ``grantee`` ``role`` on an object name or pattern (manager or owner only)."""
        self._grant_check(principal, "grant", pattern, role)
        self.identity.grant(grantee, pattern, role)

    def revoke(self, principal: str, grantee: str, pattern: str, role: str | None = None) -> int:
        """Remove ``grantee``'s grants on exactly ``pattern``; returns how many."""
        self._grant_check(principal, "revoke", pattern, role)
        return self.identity.revoke_grant(grantee, pattern, role)

    def _grant_check(self, principal: str, action: Action, pattern: str, role: str | None) -> None:
        if not pattern:
            raise UsageError("a grant needs an object name or pattern")
        obj = self._object(pattern)
        subject, _ = self._check(
            principal, action, Target(pattern, obj.owner if obj else None), pattern
        )
        if role == "admin" and not subject.is_admin:
            raise self._refuse(
                principal,
                action,
                pattern,
                "admin-only",
                AccessDeniedError(f"only an admin may {action} the admin role"),
            )
        self._record(principal, action, Decision(True, f"role:{role or '*'}"), pattern)

    # -- reads -----------------------------------------------------------------------

    def list(self, principal: str, *, kind: Kind | None = None) -> list[RegistryObject]:
        """The objects ``principal`` may list (one audit record for the listing)."""
        subject = self._subject(principal)
        with self._engine.connect() as conn:
            names = [r.name for r in conn.execute(select(registry_objects.c.name))]
        visible: list[RegistryObject] = []
        for name in sorted(names):
            obj = self._object(name)
            if obj is None or (kind is not None and obj.kind != kind):
                continue
            if decide(subject, "list", Target(name, obj.owner), policy=self.policy).allowed:
                visible.append(obj)
        self._record(
            principal,
            "list",
            Decision(True, "filtered"),
            "*",
            {"shown": str(len(visible)), "kind": kind or "*"},
        )
        return visible

    def show(self, principal: str, ref: ObjectRef | str) -> tuple[RegistryObject, Version]:
        """An object and the version ``ref`` names (latest by default)."""
        parsed, obj = self._resolve(principal, "show", ref)
        version = self._version(obj, self._find(principal, "show", obj, parsed))
        self._record(principal, "show", Decision(True, "allowed"), str(version.ref))
        return obj, version

    def versions(self, principal: str, name: str) -> builtins.list[Version]:
        """Every version of ``name``, oldest first (needs ``show``)."""
        _, obj = self._resolve(principal, "show", name)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(registry_versions)
                .where(registry_versions.c.name == obj.name)
                .order_by(registry_versions.c.number)
            ).mappings()
            found = [self._version(obj, r) for r in rows]
        self._record(principal, "show", Decision(True, "versions"), obj.name)
        return found

    def pull(self, principal: str, ref: ObjectRef | str, dest: str | os.PathLike[str]) -> Path:
        """Write the version ``ref`` names to ``dest`` (which must not exist), verified.

        The bytes are rebuilt in a temporary directory beside ``dest`` and
        checked against the stored manifest; a stored object that was altered
        raises :class:`IntegrityError` and nothing reaches ``dest``.
        """
        target = Path(dest)
        if target.exists() or target.is_symlink():
            raise UsageError(f"{target}: already exists")
        parsed, obj = self._resolve(principal, "pull", ref)
        row = self._find(principal, "pull", obj, parsed)
        version = self._version(obj, row)
        where = str(version.ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".atlasguard-pull-", dir=target.parent))
        try:
            payload = work / "payload"
            try:
                blobs: dict[str, str] = _loads(row["blobs"]) or {}
                rebuild(
                    self.store,
                    blobs,
                    payload,
                    directory=row["layout"] == "dir",
                    keyring=self.keyring,
                    encrypted=bool(row["encrypted"]),
                )
                verify_manifest(payload, Manifest.from_json(row["manifest"]))
            except IntegrityError as exc:
                raise self._refuse(
                    principal,
                    "pull",
                    where,
                    "integrity",
                    IntegrityError(f"stored {where} failed verification: {exc}"),
                ) from None
            self._record(
                principal, "pull", Decision(True, "verified"), where, {"digest": version.digest}
            )
            os.replace(payload, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return target


def _open_store(policy: Policy, settings: RegistrySettings) -> Store:
    """The store ``[controls.registry] store`` names: a local directory or an S3 bucket."""
    from atlasguard.registry.stores.local import LocalStore

    if "://" in settings.store:
        from atlasguard.registry.stores.s3 import S3Store, parse_s3_url

        try:
            bucket, prefix = parse_s3_url(settings.store)
        except UsageError as exc:
            raise ConfigurationError(f"{policy.where('controls.registry.store')}: {exc}") from None
        # Credentials come from boto3's chain (environment, profile), never from the policy.
        return S3Store(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
        )
    if settings.s3_endpoint_url or settings.s3_region:
        raise ConfigurationError(
            f"{policy.where('controls.registry.store')}: s3_endpoint_url and s3_region "
            'need store = "s3://BUCKET/PREFIX"'
        )
    return LocalStore((policy.state_dir / settings.store).resolve())
