from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlasguard.controls import implemented_controls
from atlasguard.errors import PolicyError
from atlasguard.policy import (
    Policy,
    load_policy,
    load_policy_text,
    render_default_policy,
)


def test_default_policy_round_trips_and_enables_every_control() -> None:
    text = render_default_policy()
    tomllib.loads(text)
    policy = load_policy_text(text)
    assert policy.enabled_controls() == tuple(c.key for c in implemented_controls())
    assert policy == Policy.default()


def test_values_are_frozen_and_relative_paths_resolve_to_the_file(tmp_path: Path) -> None:
    f = tmp_path / "a.toml"
    f.write_text('[deployment]\nname = "x"\nstate_dir = "state"\n', encoding="utf-8")
    policy = load_policy(f)
    assert policy.state_dir == (tmp_path / "state").resolve()
    with pytest.raises(ValueError, match="frozen"):
        policy.deployment.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[deploymnt]\nname = 'x'\n",
            r"x\.toml:1: deploymnt: unknown table .*did you mean 'deployment'",
        ),
        (
            "[deployment]\nnmae = 'x'\n",
            r"x\.toml:2: deployment\.nmae: unknown key .*did you mean 'name'",
        ),
        (
            "[deployment]\nname = 3\n",
            r"x\.toml:2: deployment\.name: expected a valid string, got 3",
        ),
        ("[deployment]\n\nname = ''\n", r"x\.toml:3: deployment\.name: .*at least 1 character"),
        (
            "[keys]\nkeyring = ['a']\n",
            r"x\.toml:2: keys\.keyring: expected a valid string, got an array",
        ),
        ("deployment = 3\n", r"x\.toml:1: deployment: expected a table, got an integer"),
        ("[controls.nope]\nenabled = true\n", r"x\.toml:1: controls\.nope: unknown control 'nope'"),
        ("controls = []\n", r"x\.toml:1: controls: expected a table"),
        ("[deployment\n", r"x\.toml: not valid TOML: .*line 1"),
        ("a = 1\na = 2\n", r"x\.toml: not valid TOML"),
    ],
)
def test_errors_name_file_line_key_and_expectation(text: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=expected):
        load_policy_text(text, source="x.toml")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="is a directory"):
        load_policy(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (1024 * 1024 + 10))
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(huge)


def test_a_control_table_is_validated_by_its_own_settings() -> None:
    controls = implemented_controls()
    if not controls:
        pytest.skip("no control implemented in this build")
    key = controls[0].key
    with pytest.raises(PolicyError, match=rf"controls\.{key}\.enabled: expected a valid boolean"):
        load_policy_text(f"[controls.{key}]\nenabled = 'yes'\n", source="x.toml")
    with pytest.raises(PolicyError, match=rf"controls\.{key}\.bogus: unknown key"):
        load_policy_text(f"[controls.{key}]\nbogus = 1\n", source="x.toml")


_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
_keys = st.sampled_from(
    [
        "name",
        "state_dir",
        "database_url",
        "redis_url",
        "signing_key",
        "keyring",
        "enabled",
        "fail_on",
        "allow",
        "bogus",
        "nmae",
    ]
)
_tables = st.sampled_from(
    ["deployment", "keys", "controls.scan", "controls.signing", "controls.zzz", "deploymnt"]
)


def _render(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return repr(value)


@st.composite
def _policies(draw: st.DrawFn) -> str:
    lines = []
    for table in draw(st.lists(_tables, max_size=4, unique=True)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(_keys, max_size=4, unique=True)):
            lines.append(f"{key} = {_render(draw(_scalars))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policies())
def test_generated_policies_either_load_or_fail_with_one_clear_line(text: str) -> None:
    try:
        load_policy_text(text, source="gen.toml")
    except PolicyError as exc:
        message = str(exc)
        assert message.startswith("gen.toml")
        assert "\n" not in message


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    try:
        load_policy_text(text, source="gen.toml")
    except PolicyError as exc:
        assert "\n" not in str(exc)
