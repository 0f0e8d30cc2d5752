from __future__ import annotations

import pytest

from atlasguard.db import connect
from atlasguard.identity.store import IdentityStore
from atlasguard.runtime.access import Access
from atlasguard.runtime.pipeline import Denied


@pytest.fixture
def store() -> IdentityStore:
    return IdentityStore.create(connect("sqlite://"), refresh_seconds=0.0)


def test_granted_principal_passes_with_roles(store: IdentityStore) -> None:
    key = store.create_key("alice").secret
    store.grant("alice", "digits", "user")
    store.grant("alice", "dig*", "reader")
    principal = Access(store).resolve(key, "digits")
    assert principal.name == "alice"
    assert principal.roles == {"user", "reader"}


@pytest.mark.parametrize("credential", [None, "", "agk_bad", "agk_0123456789abcdef_" + "x" * 43])
def test_missing_or_bad_credentials_are_refused(
    store: IdentityStore, credential: str | None
) -> None:
    with pytest.raises(Denied) as info:
        Access(store).resolve(credential, "digits")
    assert info.value.reason == "unauthenticated"


def test_no_grant_is_forbidden_and_says_nothing_about_existence(store: IdentityStore) -> None:
    key = store.create_key("bob").secret
    store.grant("bob", "other", "user")
    messages = set()
    for model in ("digits", "no-such-model"):
        with pytest.raises(Denied) as info:
            Access(store).resolve(key, model)
        assert info.value.reason == "forbidden"
        messages.add(str(info.value))
    assert len(messages) == 1


def test_the_cached_path_answers_only_what_memory_can() -> None:
    store = IdentityStore.create(connect("sqlite://"), refresh_seconds=60.0)
    access = Access(store)
    key = store.create_key("alice").secret
    store.grant("alice", "digits", "user")
    assert access.authenticate_cached(key) is None  # never checked: the slow path decides
    record = access.authenticate(key)
    assert access.authenticate_cached(key) == record
    assert access.authenticate_cached(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert access.authorize_cached(record, "digits") is None  # grants not read yet
    access.authorize(record, "digits")
    principal = access.authorize_cached(record, "digits")
    assert principal is not None and principal.roles == {"user"}
    with pytest.raises(Denied) as info:  # decidable from memory: refused at once
        access.authorize_cached(record, "other")
    assert info.value.reason == "forbidden"


def test_only_admin_keys_pass_the_admin_check(store: IdentityStore) -> None:
    access = Access(store)
    assert access.admin(store.create_key("root", admin=True).secret).name == "root"
    with pytest.raises(Denied) as info:
        access.admin(store.create_key("alice").secret)
    assert info.value.reason == "forbidden"


def test_the_groups_a_principal_reaches_a_model_through_come_with_it(
    store: IdentityStore,
) -> None:
    # the query monitor watches a group's members together: it must know the groups
    key = store.create_key("alice").secret
    store.grant("group:acme", "digits", "user")
    store.add_member("acme", "alice")
    store.grant("alice", "other", "user")
    access = Access(store)
    assert access.resolve(key, "digits").groups == ("group:acme",)
    assert access.resolve(key, "other").groups == ()
