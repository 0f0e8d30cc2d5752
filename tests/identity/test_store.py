from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from atlasguard.db.schema import api_keys
from atlasguard.errors import UsageError
from atlasguard.identity.store import AuthenticationError, IdentityStore
from tests.dbfixtures import database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as eng:
        yield eng


def test_key_is_shown_once_and_stored_only_hashed(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    issued = store.create_key("alice")
    assert issued.secret.startswith(f"agk_{issued.key_id}_")
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).one()
    stored = b"".join(
        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row
    )
    secret_part = issued.secret.rsplit("_", 1)[1]
    assert secret_part.encode() not in stored and issued.secret.encode() not in stored
    assert store.authenticate(issued.secret).name == "alice"


@pytest.mark.parametrize(
    "bad", [None, "", "Bearer x", "agk_zz_short", "agk_0123456789abcdef_" + "A" * 43]
)
def test_bad_credentials_are_refused(engine: Engine, bad: str | None) -> None:
    store = IdentityStore.create(engine)
    store.create_key("alice")
    with pytest.raises(AuthenticationError):
        store.authenticate(bad)


def test_a_wrong_secret_for_a_real_key_id_is_refused(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    issued = store.create_key("alice")
    store.authenticate(issued.secret)  # warm the cache with the good secret
    forged = issued.secret[:-4] + ("AAAA" if not issued.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError, match="invalid API key"):
        store.authenticate(forged)


def test_revocation_and_expiry(engine: Engine) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    issued = store.create_key("alice")
    store.authenticate(issued.secret)
    store.revoke_key(issued.key_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        store.authenticate(issued.secret)
    with pytest.raises(UsageError):
        store.revoke_key(issued.key_id)
    old = store.create_key("bob", expires_at=time.time() - 1)
    with pytest.raises(AuthenticationError, match="revoked or expired"):
        store.authenticate(old.secret)


def test_revocation_reaches_another_process_within_the_refresh(engine: Engine) -> None:
    a = IdentityStore.create(engine, refresh_seconds=0.0)
    b = IdentityStore(engine, refresh_seconds=0.0)  # another worker on the same database
    issued = a.create_key("alice")
    assert b.authenticate(issued.secret).name == "alice"
    a.revoke_key(issued.key_id)
    with pytest.raises(AuthenticationError):
        b.authenticate(issued.secret)


def test_deny_by_default_and_patterns(engine: Engine) -> None:
    store = IdentityStore.create(engine, refresh_seconds=0.0)
    alice = store.authenticate(store.create_key("alice").secret)
    assert store.authorize(alice, "digits") == []
    store.grant("alice", "digits", "user", rate="5/second", quota="100/day")
    store.grant("alice", "fraud-*", "reader")
    assert [g.role for g in store.authorize(alice, "digits")] == ["user"]
    assert store.authorize(alice, "digits")[0].rate == "5/second"
    assert [g.role for g in store.authorize(alice, "fraud-v2")] == ["reader"]
    assert store.authorize(alice, "digitsX") == []
    with pytest.raises(UsageError, match="already holds"):
        store.grant("alice", "digits", "user")
    with pytest.raises(UsageError, match="unknown role"):
        store.grant("alice", "digits", "root")
    assert store.revoke_grant("alice", "digits") == 1
    assert store.authorize(alice, "digits") == []


def test_admin_flag_and_names(engine: Engine) -> None:
    store = IdentityStore.create(engine)
    assert store.ensure_principal("root@ops", admin=True).is_admin
    assert store.ensure_principal("root@ops").is_admin  # never lowered implicitly
    with pytest.raises(UsageError, match="invalid principal name"):
        store.ensure_principal("bad name; drop")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_credentials_never_authenticate(credential: str) -> None:
    from atlasguard.db import connect

    store = _SHARED.get("store")
    if store is None:
        store = IdentityStore.create(connect("sqlite://"))
        store.create_key("alice")
        _SHARED["store"] = store
    with pytest.raises(AuthenticationError):
        store.authenticate(credential)


_SHARED: dict[str, IdentityStore] = {}


# -- rejections cost one HMAC, whatever the key id -------------------------------------


def test_no_rejection_runs_the_slow_hash(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bogus keys, for unknown ids and for known (even just used) ids, never run scrypt."""
    import atlasguard.identity.store as store_module

    store = IdentityStore.create(engine)
    good = store.create_key("alice").secret
    assert store.authenticate(good).name == "alice"  # now "recently used"
    calls: list[int] = []
    monkeypatch.setattr(store_module, "_scrypt", lambda *a: calls.append(1) or b"\0" * 32)
    known_id = good.split("_")[1]
    for bogus in (
        f"agk_{known_id}_" + "x" * 43,  # a known, recently used id, wrong secret
        "agk_0123456789abcdef_" + "x" * 43,  # an id that does not exist
    ):
        with pytest.raises(AuthenticationError, match="invalid API key"):
            store.authenticate(bogus)
        assert store.cached_principal(bogus) is None
    assert calls == []


def test_a_key_from_before_the_hmac_is_moved_to_it_on_first_use(engine: Engine) -> None:
    import hashlib
    import secrets as s

    from sqlalchemy import update

    store = IdentityStore.create(engine)
    issued = store.create_key("old")
    secret = issued.secret.split("_", 2)[2]  # the secret itself may hold "_"
    salt = s.token_bytes(16)
    old_hash = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    with engine.begin() as conn:  # what a key made before migration 0006 looks like
        conn.execute(update(api_keys).values(salt=salt, hash=old_hash, scheme="scrypt"))
    fresh = IdentityStore(engine)
    with pytest.raises(AuthenticationError, match="second look"):
        fresh.authenticate(issued.secret, slow=False)  # a throttled client: refused for now
    assert fresh.authenticate(issued.secret).name == "old"
    with engine.connect() as conn:
        assert conn.execute(select(api_keys.c.scheme)).scalar_one() == "hmac-sha256"
    assert IdentityStore(engine).authenticate(issued.secret).name == "old"


def test_failed_authentications_are_throttled_per_client_not_valid_keys() -> None:
    from atlasguard.db import connect
    from atlasguard.runtime.access import Access, FailureLimiter
    from atlasguard.runtime.pipeline import Denied

    store = IdentityStore.create(connect("sqlite://"))
    good = store.create_key("alice").secret
    access = Access(store, limiter=FailureLimiter(per_client=1, per_client_burst=3))
    reasons = []
    for _ in range(6):
        with pytest.raises(Denied) as info:
            access.authenticate("agk_0123456789abcdef_" + "x" * 43, client="10.0.0.9")
        reasons.append(info.value.reason)
    assert reasons[:3] == ["unauthenticated"] * 3
    assert set(reasons[3:]) == {"throttled"}
    assert access.authenticate(good, client="10.0.0.9").name == "alice"  # still served
    with pytest.raises(Denied) as other:
        access.authenticate("agk_0123456789abcdef_" + "x" * 43, client="10.0.0.10")
    assert other.value.reason == "unauthenticated"  # another client has its own budget


def test_valid_keys_pass_while_other_threads_reload_the_key_table(engine: Engine) -> None:
    """Every check re-reads the table (refresh 0) from 4 threads: a valid key never fails."""
    from concurrent.futures import ThreadPoolExecutor

    store = IdentityStore.create(engine, refresh_seconds=0.0)
    keys = [store.create_key(f"user{i}").secret for i in range(4)]

    def check(i: int) -> str:
        return store.authenticate(keys[i % 4], slow=False).name

    with ThreadPoolExecutor(4) as pool:
        names = list(pool.map(check, range(200)))
    assert names == [f"user{i % 4}" for i in range(200)]
