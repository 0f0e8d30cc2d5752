from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atlasguard.policy import load_policy
from atlasguard.runtime.deployment import Deployment


def test_create_list_revoke(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "atlasguard.toml"
    config.write_text('[deployment]\nstate_dir = "state"\n', encoding="utf-8")
    res = cli(
        "keys",
        "create",
        "--config",
        str(config),
        "--principal",
        "alice",
        "--models",
        "digits, fraud-*",
        "--rate",
        "10/second",
        "--quota",
        "1000/day",
    )
    assert res.exit_code == 0, res.stderr
    key = res.stdout.strip().splitlines()[-1]
    assert key.startswith("agk_")
    store = Deployment.open(load_policy(config)).identity
    alice = store.authenticate(key)
    assert [g.models for g in store.authorize(alice, "digits")] == ["digits"]
    assert store.authorize(alice, "digits")[0].quota == "1000/day"

    listed = json.loads(cli("keys", "list", "--config", str(config), "--json").stdout)
    assert listed[0]["principal"] == "alice" and listed[0]["active"]
    assert key not in json.dumps(listed)

    assert cli("keys", "revoke", listed[0]["key_id"], "--config", str(config)).exit_code == 0
    again = cli("keys", "revoke", listed[0]["key_id"], "--config", str(config))
    assert again.exit_code == 2 and "no active key" in again.stderr


def test_bad_role_and_name_are_usage_errors(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "atlasguard.toml"
    config.write_text('[deployment]\nstate_dir = "state"\n', encoding="utf-8")
    res = cli(
        "keys",
        "create",
        "--config",
        str(config),
        "--principal",
        "x",
        "--models",
        "m",
        "--role",
        "root",
    )
    assert res.exit_code == 2 and "unknown role" in res.stderr
    res = cli("keys", "create", "--config", str(config), "--principal", "a b")
    assert res.exit_code == 2 and "invalid principal name" in res.stderr
