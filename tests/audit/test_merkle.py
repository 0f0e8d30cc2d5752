from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasguard.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from atlasguard.errors import IntegrityError

# The eight leaves of the RFC 6962 reference tests (certificate-transparency).
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]


def _mth(data: list[bytes]) -> bytes:
    """The definition of RFC 6962 §2.1, written recursively as the RFC states it."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(data[:k]) + _mth(data[k:])).digest()


def _tree(records: list[bytes]) -> MerkleTree:
    tree = MerkleTree()
    for r in records:
        tree.append(r)
    return tree


def test_reference_root_of_eight_leaves() -> None:
    tree = _tree(RFC_LEAVES)
    assert tree.root().hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert MerkleTree().root() == EMPTY_ROOT


def test_leaf_and_node_hashing_are_distinct() -> None:
    # A two-leaf tree's head must differ from a single leaf holding the concatenation.
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert root_of([a, b]) != leaf_hash(a + b)


@pytest.mark.parametrize("n", range(40))
def test_root_matches_the_definition(n: int) -> None:
    records = [i.to_bytes(2, "big") for i in range(n)]
    tree = _tree(records)
    for size in range(n + 1):
        assert tree.root(size) == _mth(records[:size])


@pytest.mark.parametrize("n", range(1, 34))
def test_every_inclusion_and_consistency_proof_verifies(n: int) -> None:
    records = [bytes([i]) for i in range(n)]
    tree = _tree(records)
    for size in range(1, n + 1):
        root = tree.root(size)
        for i in range(size):
            verify_inclusion(leaf_hash(records[i]), i, size, tree.inclusion_proof(i, size), root)
        for old in range(size + 1):
            proof = tree.consistency_proof(old, size)
            verify_consistency(old, size, tree.root(old), root, proof)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=8), min_size=2, max_size=40),
    st.data(),
)
def test_any_change_to_a_record_or_proof_is_detected(
    records: list[bytes], data: st.DataObject
) -> None:
    tree = _tree(records)
    n = len(records)
    i = data.draw(st.integers(0, n - 1))
    root = tree.root()
    proof = tree.inclusion_proof(i)
    # a different record at the same index
    other = data.draw(st.binary(max_size=8).filter(lambda b: b != records[i]))
    with pytest.raises(IntegrityError):
        verify_inclusion(leaf_hash(other), i, n, proof, root)
    # a flipped bit anywhere in the proof
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ (1 << (bit % 8))]) + bad[j][1:]
        with pytest.raises(IntegrityError):
            verify_inclusion(leaf_hash(records[i]), i, n, bad, root)
    # an edited earlier record breaks consistency with the old checkpoint
    old = data.draw(st.integers(1, n - 1))
    edited = list(records)
    k = data.draw(st.integers(0, old - 1))
    edited[k] = records[k] + b"!"
    forged = _tree(edited)
    with pytest.raises(IntegrityError):
        verify_consistency(old, n, tree.root(old), forged.root(), forged.consistency_proof(old))


def test_reordered_records_change_the_head() -> None:
    records = [b"a", b"b", b"c", b"d"]
    assert _tree(records).root() != _tree([b"b", b"a", b"c", b"d"]).root()


def test_bad_arguments() -> None:
    tree = _tree([b"a", b"b"])
    with pytest.raises(ValueError, match="not in a tree"):
        tree.inclusion_proof(2)
    with pytest.raises(ValueError, match="leaves"):
        tree.root(3)
    with pytest.raises(IntegrityError):
        verify_inclusion(leaf_hash(b"a"), 5, 2, [], tree.root())
    with pytest.raises(IntegrityError):
        verify_consistency(3, 2, b"", b"", [])


def test_frontier_root_matches_the_tree_at_every_size() -> None:
    from atlasguard.audit.merkle import Frontier

    frontier = Frontier()
    leaves: list[bytes] = []
    assert frontier.root() == EMPTY_ROOT
    for i in range(70):
        leaf = leaf_hash(i.to_bytes(2, "big"))
        frontier.push(leaf)
        leaves.append(leaf)
        assert frontier.size == len(leaves)
        assert frontier.root() == root_of(leaves)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 40))
def test_a_stored_frontier_resumes_the_same_tree(n: int, more: int) -> None:
    from atlasguard.audit.merkle import Frontier

    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(n + more)]
    frontier = Frontier()
    for leaf in leaves[:n]:
        frontier.push(leaf)
    resumed = Frontier.from_bytes(n, frontier.to_bytes())
    assert resumed.size == n and resumed.root() == root_of(leaves[:n])
    for leaf in leaves[n:]:
        resumed.push(leaf)
    assert resumed.root() == root_of(leaves)


@given(st.integers(-5, 300), st.binary(max_size=400))
def test_a_frontier_of_the_wrong_shape_is_refused(size: int, data: bytes) -> None:
    from atlasguard.audit.merkle import Frontier

    expected = 32 * bin(size).count("1") if size >= 0 else -1
    if len(data) == expected:
        assert Frontier.from_bytes(size, data).size == size
    else:
        with pytest.raises(IntegrityError):
            Frontier.from_bytes(size, data)
