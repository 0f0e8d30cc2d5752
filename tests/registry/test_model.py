from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.errors import UsageError
from atlasguard.registry.model import ObjectRef, check_alias, parse_ref

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", ObjectRef("digits")),
        ("digits@3", ObjectRef("digits", version=3)),
        (f"digits@sha256:{DIGEST}", ObjectRef("digits", digest=DIGEST)),
        ("digits@production", ObjectRef("digits", alias="production")),
        ("iris-v2.csv@staging", ObjectRef("iris-v2.csv", alias="staging")),
    ],
)
def test_parse_ref_round_trips(text: str, expected: ObjectRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid object name"),
        ("@3", "invalid object name"),
        ("a b", "invalid object name"),
        ("../etc", "invalid object name"),
        ("digits@0", "invalid version"),
        ("digits@03", "invalid version"),
        ("digits@3x", "invalid version"),
        ("digits@", "invalid reference"),
        ("digits@sha256:" + "AB" * 32, "invalid digest"),
        ("digits@sha256:abc", "invalid digest"),
        ("digits@Prod", "invalid reference"),
        ("digits@1@2", "invalid version"),
        ("digits@prod@2", "invalid reference"),
        ("digits@sha256", "invalid reference"),
    ],
)
def test_bad_refs_say_why(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_ref(text)


def test_alias_cannot_be_sha256() -> None:
    with pytest.raises(UsageError):
        check_alias("sha256")


_REF_LIKE = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda n, r: f"{n}@{r}",
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.one_of(
            st.integers(-5, 10**12).map(str),
            st.from_regex(r"sha256:[0-9a-fA-F]{0,70}", fullmatch=True),
            st.text(max_size=30),
        ),
    ),
)


@settings(max_examples=300, deadline=200)
@given(_REF_LIKE)
def test_parse_ref_raises_only_usage_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except UsageError as exc:
        assert str(exc)
        return
    # Whatever parses prints back to itself and parses to the same value.
    assert parse_ref(str(ref)) == ref
    assert sum(x is not None for x in (ref.version, ref.digest, ref.alias)) <= 1
