from __future__ import annotations

import numpy as np
import pytest

from atlasguard.db import connect
from atlasguard.identity.store import IdentityStore
from atlasguard.runtime.access import AccessGuard
from atlasguard.runtime.pipeline import Denied, Pipeline, Request


@pytest.fixture
def store() -> IdentityStore:
    return IdentityStore.create(connect("sqlite://"), refresh_seconds=0.0)


def _pipe(store: IdentityStore) -> Pipeline:
    return Pipeline(guards=(AccessGuard(store),), predict=lambda x: {"y": x["x"] + 1})


def _req(model: str, credential: str | None) -> Request:
    return Request(model=model, inputs={"x": np.zeros((2, 3), np.float32)}, credential=credential)


def test_granted_principal_passes_with_roles(store: IdentityStore) -> None:
    key = store.create_key("alice").secret
    store.grant("alice", "digits", "user")
    store.grant("alice", "dig*", "reader")
    out = _pipe(store)(_req("digits", key))
    assert out.outputs["y"].shape == (2, 3)


@pytest.mark.parametrize("credential", [None, "", "agk_bad", "agk_0123456789abcdef_" + "x" * 43])
def test_missing_or_bad_credentials_are_401(store: IdentityStore, credential: str | None) -> None:
    with pytest.raises(Denied) as info:
        _pipe(store)(_req("digits", credential))
    assert info.value.status == 401
    assert info.value.reason == "unauthenticated"
    assert "WWW-Authenticate" in info.value.headers


def test_no_grant_is_403_and_says_nothing_about_existence(store: IdentityStore) -> None:
    key = store.create_key("bob").secret
    store.grant("bob", "other", "user")
    messages = set()
    for model in ("digits", "no-such-model"):
        with pytest.raises(Denied) as info:
            _pipe(store)(_req(model, key))
        assert info.value.status == 403
        messages.add(str(info.value))
    assert len(messages) == 1


def test_predict_never_runs_for_a_refused_request(store: IdentityStore) -> None:
    calls: list[int] = []

    def predict(x: object) -> dict[str, np.ndarray]:
        calls.append(1)
        return {}

    pipe = Pipeline(guards=(AccessGuard(store),), predict=predict)  # type: ignore[arg-type]
    with pytest.raises(Denied):
        pipe(_req("digits", None))
    assert calls == []
