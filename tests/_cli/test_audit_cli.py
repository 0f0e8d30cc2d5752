from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from atlasguard.audit.log import open_audit_log
from atlasguard.audit.records import AuditRecord
from atlasguard.policy import load_policy


def _deployment(tmp_path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "audit-private.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    (tmp_path / "audit-public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = tmp_path / "atlasguard.toml"
    config.write_text(
        '[deployment]\nname = "t"\nstate_dir = "state"\n\n[keys]\n'
        'signing_key = "audit-private.pem"\npublic_key = "audit-public.pem"\n',
        encoding="utf-8",
    )
    log, _ = open_audit_log(load_policy(config), passphrase=b"s3cret")
    for i in range(5):
        log.append(
            AuditRecord(
                time=1.8e9 + i,
                principal="alice" if i < 3 else "bob",
                action="infer",
                decision="allow" if i != 1 else "deny",
                reason="" if i != 1 else "rate",
                model="digits",
            )
        )
    return config


def test_checkpoint_verify_prove_report(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    config = _deployment(tmp_path)
    monkeypatch.setenv("ATLASGUARD_KEY_PASSPHRASE", "s3cret")
    exported = tmp_path / "cp.json"
    res = cli("audit", "checkpoint", "--config", str(config), "--output", str(exported))
    assert res.exit_code == 0, res.stderr
    res = cli("audit", "verify", "--config", str(config), "--checkpoint", str(exported))
    assert res.exit_code == 0, res.stderr
    assert "5 records" in res.stdout
    proof = json.loads(cli("audit", "prove", "3", "--config", str(config)).stdout)
    assert proof["index"] == 3 and proof["tree_size"] == 5 and proof["record"]["principal"] == "bob"
    rows = json.loads(cli("audit", "report", "--config", str(config), "--json").stdout)
    assert {r["principal"]: r["denied"] for r in rows} == {"alice": 1, "bob": 0}
    only = json.loads(
        cli(
            "audit", "report", "--config", str(config), "--json", "--since", "2027-01-15T08:00:03"
        ).stdout
    )
    assert [r["principal"] for r in only] == ["bob"]

    log, _ = open_audit_log(load_policy(config), passphrase=b"s3cret")
    with log._engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET body = replace(body, 'bob', 'eve')"))
    res = cli("audit", "verify", "--config", str(config))
    assert res.exit_code == 1
    assert "was changed" in res.stderr


def test_missing_key_is_a_configuration_error(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "atlasguard.toml"
    config.write_text('[deployment]\nstate_dir = "s"\n', encoding="utf-8")
    res = cli("audit", "checkpoint", "--config", str(config))
    assert res.exit_code == 2
    assert "keys.signing_key is not set" in res.stderr
    assert cli("audit", "report", "--config", str(config), "--since", "yesterday").exit_code == 2
