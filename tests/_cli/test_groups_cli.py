from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from atlasguard.policy import load_policy
from atlasguard.runtime.deployment import Deployment


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "atlasguard.toml"
    config.write_text(
        '[deployment]\nstate_dir = "state"\n[controls.registry]\nenabled = true\n',
        encoding="utf-8",
    )
    return config


def test_add_list_remove(cli: Any, tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    res = cli("groups", "add", "ml", "alice", "--config", config)
    assert res.exit_code == 0, res.stderr
    assert "added alice to group:ml" in res.stdout
    assert cli("groups", "add", "group:ml", "bob", "--config", config).exit_code == 0
    assert cli("groups", "add", "ops", "bob", "--config", config).exit_code == 0
    store = Deployment.open(load_policy(Path(config))).identity
    store.grant("group:ml", "digits", "reader")

    listed = json.loads(cli("groups", "list", "--config", config, "--format", "json").stdout)
    assert listed == [
        {"group": "group:ml", "members": ["alice", "bob"], "grants": ["reader:digits"]},
        {"group": "group:ops", "members": ["bob"], "grants": []},
    ]
    one = json.loads(cli("groups", "list", "ml", "--config", config, "--format", "json").stdout)
    assert [g["group"] for g in one] == ["group:ml"]
    table = cli("groups", "list", "--config", config)
    assert table.exit_code == 0 and "group:ml" in table.stdout and "alice, bob" in table.stdout

    assert cli("groups", "remove", "ml", "alice", "--config", config).exit_code == 0
    assert store.members("ml") == ["bob"]
    again = cli("groups", "remove", "ml", "alice", "--config", config)
    assert again.exit_code == 2 and "not a member" in again.stderr


def test_nested_and_invalid_groups_are_usage_errors(cli: Any, tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    nested = cli("groups", "add", "ml", "group:ops", "--config", config)
    assert nested.exit_code == 2 and "do not nest" in nested.stderr
    bad = cli("groups", "add", "ml team", "alice", "--config", config)
    assert bad.exit_code == 2 and "invalid group name" in bad.stderr
    assert cli("groups", "list", "--format", "xml", "--config", config).exit_code == 2


def test_keys_create_for_a_group_grants_and_issues_no_key(cli: Any, tmp_path: Path) -> None:
    config = _config(tmp_path)
    res = cli(
        "keys", "create", "--config", str(config), "--principal", "group:ml", "--models", "digits"
    )
    assert res.exit_code == 0, res.stderr
    assert "agk_" not in res.stdout + res.stderr
    assert "groups hold no keys" in " ".join(res.stderr.split())
    store = Deployment.open(load_policy(config)).identity
    assert [(g.principal, g.models, g.role) for g in store.grants_of("group:ml")] == [
        ("group:ml", "digits", "user")
    ]
    assert store.list_keys() == []
    for extra in (("--models", "digits", "--admin"), ()):
        refused = cli("keys", "create", "--config", str(config), "--principal", "group:ml", *extra)
        assert refused.exit_code == 2, refused.stdout


def test_registry_grant_to_a_group(cli: Any, tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = Deployment.open(load_policy(config)).identity
    store.ensure_principal("ops", admin=True)
    res = cli(
        "registry",
        "grant",
        "group:ml",
        "digits*",
        "--role",
        "reader",
        "--config",
        str(config),
        "--principal",
        "ops",
    )
    assert res.exit_code == 0, res.stderr
    assert cli("groups", "add", "ml", "ann", "--config", str(config)).exit_code == 0
    assert [(g.principal, g.role) for g in store.grants_of("ann")] == [("group:ml", "reader")]
