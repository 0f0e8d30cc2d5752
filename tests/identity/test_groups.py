"""Groups: ``group:<name>`` principals whose grants reach their members (issues 5 and 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm
from sqlalchemy import Engine, inspect, select, text

from atlasguard.db.migrate import migrate
from atlasguard.db.schema import api_keys, group_members, metadata
from atlasguard.errors import UsageError
from atlasguard.identity.store import (
    AuthenticationError,
    IdentityStore,
    PrincipalRecord,
    group_name,
)
from atlasguard.identity.tokens import MAX_GROUPS, JwtVerifier, parse_groups_claim
from atlasguard.policy import load_policy_text
from atlasguard.runtime.access import Access
from atlasguard.runtime.pipeline import Denied
from tests.dbfixtures import database

ISS, AUD = "https://idp.example", "atlasguard"
KEY = ec.generate_private_key(ec.SECP256R1())
JWKS = {"keys": [ECAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": "k1"}]}


def _token(**claims: Any) -> str:
    body = {"sub": "alice", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 60} | claims
    return jwt.encode(body, KEY, "ES256", headers={"kid": "k1"})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        yield eng


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier(jwks=JWKS, issuer=ISS, audience=AUD, groups_claim="groups")


def _record(name: str, *groups: str) -> PrincipalRecord:
    return PrincipalRecord(name=name, is_admin=False, created_at=0.0, groups=groups)


# -- membership ----------------------------------------------------------------------


def test_membership_is_kept_listed_and_ended(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    store.add_member("ml", "alice")
    store.add_member("group:ml", "bob")
    store.add_member("ops", "alice")
    assert store.members("ml") == ["alice", "bob"]
    assert store.members("group:ml") == ["alice", "bob"]
    assert store.groups_of("alice") == ["group:ml", "group:ops"]
    assert store.principal("group:ml") is not None and store.principal("bob") is not None
    with pytest.raises(UsageError, match="already a member"):
        store.add_member("ml", "alice")
    store.remove_member("ml", "alice")
    assert store.members("ml") == ["bob"]
    assert store.groups_of("alice") == ["group:ops"]
    with pytest.raises(UsageError, match="not a member"):
        store.remove_member("ml", "alice")
    store.grant("group:empty", "digits", "user")  # a group with a grant and no member
    assert store.list_groups() == {
        "group:empty": [],
        "group:ml": ["bob"],
        "group:ops": ["alice"],
    }


def test_groups_do_not_nest_hold_no_keys_and_are_never_admins(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    with pytest.raises(UsageError, match="do not nest"):
        store.add_member("ml", "group:ops")
    with pytest.raises(UsageError, match="hold no keys"):
        store.create_key("group:ml")
    with pytest.raises(UsageError, match="never admins"):
        store.ensure_principal("group:ml", admin=True)
    with engine.connect() as conn:
        assert conn.execute(select(group_members)).first() is None
        assert conn.execute(select(api_keys)).first() is None


@pytest.mark.parametrize("bad", ["", "group:", "ml team", "group:a:b", "-ml", "a/b", "x" * 195])
def test_invalid_group_names_are_usage_errors(engine: Engine, bad: str) -> None:
    store = IdentityStore.create(engine)
    with pytest.raises(UsageError, match="invalid group name"):
        store.add_member(bad, "alice")
    with pytest.raises(UsageError):
        store.members(bad)


def test_group_name_normalises_and_bounds_names() -> None:
    assert group_name("ml") == group_name("group:ml") == "group:ml"
    assert len(group_name("x" * 194)) == 200  # the principals column's length


# -- grants through groups -----------------------------------------------------------


def test_grants_of_counts_own_member_and_token_groups(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    store.grant("alice", "own", "user")
    store.grant("group:ml", "digits-*", "reader")
    store.grant("group:sso", "fraud", "user")
    store.grant("bob", "bobs", "admin")
    assert [g.models for g in store.grants_of("alice")] == ["own"]
    store.add_member("ml", "alice")
    got = store.grants_of("alice", groups=("group:sso", "group:ml"))
    assert [(g.principal, g.models) for g in got] == [
        ("alice", "own"),
        ("group:ml", "digits-*"),
        ("group:sso", "fraud"),
    ]
    # Only group names may ride along: another principal's grants never do.
    with pytest.raises(UsageError, match="not a group"):
        store.grants_of("alice", groups=("bob",))
    assert [g.models for g in store.grants_of("carol")] == []


def test_authorize_sees_membership_changes_and_keeps_token_groups_apart(engine: Engine) -> None:
    store = IdentityStore.create(engine, refresh_seconds=60.0)
    store.grant("group:ml", "digits", "reader")
    alice = _record("alice")
    assert store.authorize(alice, "digits") == []
    store.add_member("ml", "alice")  # this process: at once
    assert [g.role for g in store.authorize(alice, "digits")] == ["reader"]
    store.remove_member("ml", "alice")
    assert store.authorize(alice, "digits") == []
    # The cache is per principal name: a token's groups never leak to the next request.
    assert [g.principal for g in store.authorize(_record("alice", "group:ml"), "digits")] == [
        "group:ml"
    ]
    assert store.authorize(alice, "digits") == []
    assert store.authorize(_record("alice", "group:other"), "digits") == []


def test_membership_changes_reach_another_worker_within_the_refresh(engine: Engine) -> None:
    a = IdentityStore.create(engine, refresh_seconds=0.0)
    b = IdentityStore(engine, refresh_seconds=0.3)  # another worker on the same database
    a.grant("group:ml", "digits", "user")
    alice = _record("alice")
    assert b.authorize(alice, "digits") == []
    a.add_member("ml", "alice")
    time.sleep(0.35)
    assert [g.principal for g in b.authorize(alice, "digits")] == ["group:ml"]
    a.remove_member("ml", "alice")
    time.sleep(0.35)
    assert b.authorize(alice, "digits") == []
    a.add_member("ml", "alice")
    a.revoke_grant("group:ml", "digits")
    time.sleep(0.35)
    assert b.authorize(alice, "digits") == []


def test_a_group_grant_reaches_a_model_through_the_access_guard(engine: Engine) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    access = Access(store)
    alice, bob = store.create_key("alice").secret, store.create_key("bob").secret
    store.grant("group:ml", "digits", "reader")
    store.add_member("ml", "alice")
    assert access.resolve(alice, "digits").roles == frozenset({"reader"})
    for credential, model in ((bob, "digits"), (alice, "fraud")):
        with pytest.raises(Denied) as info:
            access.resolve(credential, model)
        assert info.value.reason == "forbidden"


# -- token groups --------------------------------------------------------------------


@pytest.mark.parametrize("claim", [["ml", "ops"], ["ml", "ops", "ml"]])
def test_token_groups_are_read_from_a_list(verifier: JwtVerifier, claim: Any) -> None:
    assert verifier.identity(_token(groups=claim)) == ("jwt:alice", ("group:ml", "group:ops"))


def test_a_string_groups_claim_is_one_name_never_split(verifier: JwtVerifier) -> None:
    assert verifier.identity(_token(groups="ml")) == ("jwt:alice", ("group:ml",))
    # "Sales Ops" is no valid group name: skipped, and never read as "Sales" and "Ops".
    assert verifier.identity(_token(groups="Sales Ops")) == ("jwt:alice", ())


def test_token_group_names_that_no_grant_can_name_are_skipped(verifier: JwtVerifier) -> None:
    got = verifier.identity(_token(groups=["/ml", "ML Team", "ops", "group:ml"]))
    assert got == ("jwt:alice", ("group:ops", "group:ml"))


def test_without_the_claim_or_the_setting_a_token_has_no_groups(verifier: JwtVerifier) -> None:
    assert verifier.identity(_token()) == ("jwt:alice", ())
    assert verifier.identity(_token(groups=None)) == ("jwt:alice", ())
    plain = JwtVerifier(jwks=JWKS, issuer=ISS, audience=AUD)
    assert plain.identity(_token(groups=["ml"])) == ("jwt:alice", ())


@pytest.mark.parametrize(
    "claim",
    [7, True, {"ml": True}, ["ml", 3], [["ml"]], ["ml", None], ["x"] * (MAX_GROUPS + 1)],
)
def test_malformed_groups_claims_refuse_the_token(verifier: JwtVerifier, claim: Any) -> None:
    with pytest.raises(AuthenticationError, match="groups"):
        verifier.identity(_token(groups=claim))


def test_malformed_groups_claim_is_a_401_at_the_guard(
    engine: Engine, verifier: JwtVerifier
) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    store.grant("jwt:alice", "digits", "user")
    access = Access(store, tokens=verifier)
    with pytest.raises(Denied) as info:
        access.resolve(_token(groups=[1, 2]), "digits")
    assert info.value.reason == "unauthenticated"


def test_a_subject_cannot_pose_as_a_group() -> None:
    bare = JwtVerifier(jwks=JWKS, issuer=ISS, audience=AUD, prefix="", groups_claim="groups")
    with pytest.raises(AuthenticationError, match="names a group"):
        bare.identity(_token(sub="group:ml"))
    assert bare.identity(_token(sub="alice")) == ("alice", ())


def test_token_groups_reach_a_model_and_never_make_an_admin(
    engine: Engine, verifier: JwtVerifier
) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    store.grant("group:ml", "digits", "user")
    access = Access(store, tokens=verifier)
    member = _token(groups=["ml"])
    record = access.authenticate(member)
    assert record == PrincipalRecord("jwt:alice", False, 0.0, ("group:ml",))
    assert access.resolve(member, "digits").name == "jwt:alice"
    for credential in (_token(), _token(groups=["ops"]), _token(sub="bob", groups="sales")):
        with pytest.raises(Denied) as info:
            access.resolve(credential, "digits")
        assert info.value.reason == "forbidden"
    # Even a group literally named "admin", holding the admin role, makes no admin principal.
    store.grant("group:admin", "*", "admin")
    assert not access.authenticate(_token(groups=["admin"])).is_admin
    with pytest.raises(Denied):
        access.admin(_token(groups=["admin"]))


def test_a_store_membership_of_a_token_principal_counts_too(
    engine: Engine, verifier: JwtVerifier
) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    store.grant("group:ml", "digits", "user")
    store.add_member("ml", "jwt:alice")
    assert Access(store, tokens=verifier).resolve(_token(), "digits").name == "jwt:alice"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(_JSON)
def test_groups_claim_parser_returns_group_names_or_refuses(value: Any) -> None:
    try:
        got = parse_groups_claim(value)
    except AuthenticationError:
        assert not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        return
    assert isinstance(value, str | list)
    assert len(set(got)) == len(got)
    for name in got:
        assert name.startswith("group:") and group_name(name) == name


@given(st.lists(st.text(alphabet="abcXYZ019_.@-:/ ", max_size=12), max_size=20))
def test_groups_claim_parser_keeps_every_valid_name(items: list[str]) -> None:
    got = parse_groups_claim(items)
    expected = []
    for item in items:
        try:
            name = group_name(item)
        except UsageError:
            continue
        if name not in expected:
            expected.append(name)
    assert list(got) == expected


def test_the_access_settings_turn_the_groups_claim_on(tmp_path: Path) -> None:
    from atlasguard.runtime.deployment import Deployment

    (tmp_path / "jwks.json").write_text(json.dumps(JWKS), encoding="utf-8")
    policy = load_policy_text(
        "[controls.access]\nenabled = true\n"
        f'jwt_issuer = "{ISS}"\njwt_audience = "{AUD}"\njwks_file = "jwks.json"\n'
        'jwt_groups_claim = "roles"\n',
        path=tmp_path / "atlasguard.toml",
    )
    with Deployment.open(policy) as deployment:
        access = deployment.access
        assert access.authenticate(_token(roles="ml")).groups == ("group:ml",)
        assert access.authenticate(_token(groups="ml")).groups == ()


# -- migration -----------------------------------------------------------------------


def _alembic(engine: Engine, step: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", "atlasguard.db:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, step)(cfg, revision)


def test_migration_0004_upgrades_a_0003_database_and_matches_the_schema(engine: Engine) -> None:
    migrate(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO principals (name, created_at, is_admin) VALUES ('alice', 1, false)")
        )
    assert "group_members" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "group_members" in inspect(engine).get_table_names()
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if "group_members" in repr(d)] == []
    store = IdentityStore(engine)
    store.add_member("ml", "alice")
    assert store.groups_of("alice") == ["group:ml"]
    _alembic(engine, "downgrade", "0003")
    assert "group_members" not in inspect(engine).get_table_names()
    _alembic(engine, "upgrade", "head")
    assert IdentityStore(engine).members("ml") == []


def test_membership_needs_principals_in_the_database(engine: Engine) -> None:
    IdentityStore.create(engine)
    from sqlalchemy.exc import IntegrityError as DBIntegrityError

    with pytest.raises(DBIntegrityError), engine.begin() as conn:
        conn.execute(group_members.insert().values(group="group:x", member="y", created_at=0.0))
