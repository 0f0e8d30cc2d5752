"""A registry on a fresh database (SQLite, or the machine's PostgreSQL) for the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine

from atlasguard.artifacts.findings import Severity
from atlasguard.artifacts.keys import Keyring
from atlasguard.artifacts.load_gate import LoadGate
from atlasguard.audit.checkpoint import CheckpointSigner
from atlasguard.audit.log import AuditLog
from atlasguard.identity.store import IdentityStore
from atlasguard.registry.service import Registry
from atlasguard.registry.stores.local import LocalStore
from atlasguard.runtime.auditor import Auditor
from tests.dbfixtures import database


def make_registry(
    engine: Engine,
    root: Path,
    *,
    keyring: Keyring | None = None,
    signature_key: ec.EllipticCurvePublicKey | None = None,
    fail_on: Severity = Severity.HIGH,
    allow: tuple[str, ...] = (),
    **kwargs: object,
) -> Registry:
    signer = CheckpointSigner(ec.generate_private_key(ec.SECP256R1()))
    return Registry(
        engine,
        LocalStore(root / "blobs"),
        identity=IdentityStore.create(engine),
        auditor=Auditor(AuditLog.create(engine, signer=signer)),
        load_gate=LoadGate(fail_on=fail_on, allow=allow, signature_key=signature_key),
        keyring=keyring,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    """A registry on SQLite (and on PostgreSQL, marked ``services``) with one admin, ``ops``."""
    with database(request.param, tmp_path) as engine:
        reg = make_registry(engine, tmp_path)
        reg.identity.ensure_principal("ops", admin=True)
        yield reg
        reg.audit.close()
