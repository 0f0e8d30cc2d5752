from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from atlasguard.policy import load_policy
from atlasguard.runtime.deployment import Deployment


def _deployment(tmp_path: Path) -> Path:
    config = tmp_path / "atlasguard.toml"
    config.write_text(
        '[deployment]\nstate_dir = "state"\n[controls.registry]\nenabled = true\n',
        encoding="utf-8",
    )
    store = Deployment.open(load_policy(config)).identity
    store.ensure_principal("ops", admin=True)
    store.grant("ann", "digits", "reader")
    return config


def test_push_list_show_promote_pull(cli: Any, tmp_path: Path) -> None:
    config = str(_deployment(tmp_path))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07" + b"0" * 64)
    common = ("--config", config, "--principal", "ops")
    res = cli("registry", "push", "digits", str(model), *common, "--meta", "acc=0.9")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("digits@1 sha256:")
    assert cli("registry", "promote", "digits@1", "production", *common).exit_code == 0
    listed = json.loads(cli("registry", "list", *common, "--format", "json").stdout)
    assert [(o["name"], o["aliases"]) for o in listed] == [("digits", {"production": 1})]
    shown = json.loads(
        cli(
            "registry",
            "show",
            "digits@production",
            "--config",
            config,
            "-p",
            "ann",
            "--format",
            "json",
        ).stdout
    )
    assert shown["version"]["metadata"] == {"acc": "0.9"}
    out = tmp_path / "out.onnx"
    res = cli("registry", "pull", "digits@production", str(out), "--config", config, "-p", "ann")
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes() == model.read_bytes()


def test_refusals_exit_1(cli: Any, tmp_path: Path) -> None:
    config = str(_deployment(tmp_path))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(eval, protocol=2)[:-1] + b"(S'1'\ntR.")
    res = cli("registry", "push", "evil", str(evil), "--config", config, "-p", "ops")
    assert res.exit_code == 1
    assert "refused evil" in res.stderr
    res = cli("registry", "push", "x", str(evil), "--config", config, "-p", "ann")
    assert res.exit_code == 1
    assert "may not create" in res.stderr
    res = cli("registry", "grant", "bob", "*", "--config", config, "-p", "ann")
    assert res.exit_code == 1
    res = cli("registry", "show", "digits@0", "--config", config, "-p", "ops")
    assert res.exit_code == 2
    assert "invalid version" in res.stderr


def test_reads_are_in_the_audit_log_and_it_verifies(cli: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "audit.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = _deployment(tmp_path)
    config.write_text('[keys]\nsigning_key = "audit.pem"\n' + config.read_text(), encoding="utf-8")
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    c = ("--config", str(config))
    res = cli("registry", "push", "digits", str(data), "--kind", "dataset", *c, "-p", "ops")
    assert res.exit_code == 0, res.stderr
    assert cli("registry", "pull", "digits", str(tmp_path / "o"), *c, "-p", "ann").exit_code == 0
    assert cli("registry", "pull", "digits", str(tmp_path / "p"), *c, "-p", "eve").exit_code == 1
    assert cli("registry", "list", *c, "-p", "ann").exit_code == 0
    report = json.loads(cli("audit", "report", *c, "--json").stdout)
    assert {r["principal"]: (r["allowed"], r["denied"]) for r in report} == {
        "ops": (1, 0),
        "ann": (2, 0),
        "eve": (0, 1),
    }
    assert cli("audit", "checkpoint", *c).exit_code == 0
    res = cli("audit", "verify", *c)
    assert res.exit_code == 0, res.stderr
    assert "4 records" in res.stdout


def test_a_new_deployment_says_how_to_get_a_grant_and_the_steps_work(
    cli: Any, tmp_path: Path
) -> None:
    """init prints the bootstrap step; a refused push says how to get a grant; both work."""
    import re
    import shlex

    res = cli("init", str(tmp_path / "new"))
    assert res.exit_code == 0, res.stderr
    config = str(tmp_path / "new" / "atlasguard.toml")
    steps = [shlex.split(s) for s in re.findall(r"`atlasguard ([^`]*)`", res.stderr)]
    assert [s[:2] for s in steps] == [
        ["keys", "create"],
        ["registry", "push"],
        ["registry", "grant"],
    ]
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07" + b"0" * 64)
    refused = cli("registry", "push", "digits", str(model), "--config", config, "-p", "ann")
    assert refused.exit_code == 1 and "no-grant-for-create" in refused.stderr
    assert "atlasguard registry grant" in refused.stderr and "--admin" in refused.stderr
    assert cli(*steps[0]).exit_code == 0  # keys create ... --admin, as printed
    assert steps[1][2:4] == ["NAME", "PATH"]
    res = cli(*steps[1][:2], "digits", str(model), *steps[1][4:])
    assert res.exit_code == 0, res.stderr
    grant = [{"PRINCIPAL": "ann", "PATTERN": "digits"}.get(a, a) for a in steps[2]]
    assert cli(*grant).exit_code == 0
    res = cli("registry", "show", "digits", "--config", config, "-p", "ann")
    assert res.exit_code == 0, res.stderr
