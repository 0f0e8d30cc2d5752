from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from atlasguard.artifacts.keys import load_public_key
from atlasguard.artifacts.signing import verify_model
from atlasguard.policy import load_policy
from atlasguard.runtime.deployment import Deployment


def test_init_demo_prints_keys_and_curl(cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    res = cli("init", str(target), "--demo")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    admin_key, demo_key = lines[0], lines[1]
    assert admin_key.startswith("agk_") and demo_key.startswith("agk_") and admin_key != demo_key
    curl = shlex.split("\n".join(lines[2:]).replace("\\\n", " "))
    assert curl[0] == "curl" and f"Authorization: Bearer {demo_key}" in curl
    assert "held-out accuracy 0.9" in res.stderr
    assert "admin key" in res.stderr and "demo key" in res.stderr

    policy = load_policy(target / "atlasguard.toml")
    assert "digits" in policy.models
    verify_model(target / "models" / "digits", load_public_key(target / "keys" / "public.pem"))
    store = Deployment.open(policy).identity
    assert store.authenticate(admin_key).is_admin
    assert store.authorize(store.authenticate(demo_key), "digits")

    again = cli("init", str(target), "--demo")
    assert again.exit_code == 2
    assert "exists" in again.stderr
    assert again.stdout == ""


def test_init_without_demo(cli: Any, tmp_path: Path) -> None:
    res = cli("init", str(tmp_path / "p"))
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    assert load_policy(tmp_path / "p" / "atlasguard.toml").models == {}
    assert (tmp_path / "p" / "keys" / "public.pem").is_file()
    assert cli("init", str(tmp_path / "p")).exit_code == 2
