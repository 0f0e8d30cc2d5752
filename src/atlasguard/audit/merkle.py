"""An append-only Merkle tree in the style of RFC 6962 / RFC 9162.

Leaves and interior nodes are hashed differently (``0x00 || leaf`` versus
``0x01 || left || right``), so a leaf can never pose as a node. The tree over
``n`` leaves splits at the largest power of two below ``n``. Inclusion and
consistency proofs follow RFC 9162 §2.1.3 and §2.1.4, and their verifiers
raise :class:`~atlasguard.errors.IntegrityError` rather than return False.

>>> from atlasguard.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
>>> tree = MerkleTree()
>>> for record in (b"a", b"b", b"c"):
...     _ = tree.append(record)
>>> proof = tree.inclusion_proof(1, 3)
>>> verify_inclusion(leaf_hash(b"b"), 1, 3, proof, tree.root(3))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from atlasguard.errors import IntegrityError

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The tree head over a sequence of leaf hashes (RFC 6962 MTH)."""
    if not leaves:
        return EMPTY_ROOT
    # Fold with a stack of perfect-subtree roots: O(n) time, O(log n) memory.
    stack: list[tuple[int, bytes]] = []
    for leaf in leaves:
        size, digest = 1, leaf
        while stack and stack[-1][0] == size:
            _, left = stack.pop()
            size, digest = size * 2, node_hash(left, digest)
        stack.append((size, digest))
    _, digest = stack.pop()
    while stack:
        _, left = stack.pop()
        digest = node_hash(left, digest)
    return digest


class MerkleTree:
    """Leaf hashes in order, with tree heads and proofs for any prefix size."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self._leaves: list[bytes] = list(leaves)

    def __len__(self) -> int:
        return len(self._leaves)

    @property
    def leaves(self) -> Sequence[bytes]:
        return tuple(self._leaves)

    def append(self, data: bytes) -> int:
        """Add a record (hashed as a leaf); return its index."""
        self._leaves.append(leaf_hash(data))
        return len(self._leaves) - 1

    def append_hash(self, leaf: bytes) -> int:
        """Add an already hashed leaf; return its index."""
        if len(leaf) != 32:
            raise ValueError("a leaf hash is 32 bytes")
        self._leaves.append(leaf)
        return len(self._leaves) - 1

    def root(self, size: int | None = None) -> bytes:
        """The tree head over the first ``size`` leaves (all by default)."""
        size = len(self._leaves) if size is None else size
        self._check_size(size)
        return root_of(self._leaves[:size])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size])."""
        size = len(self._leaves) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        return _path(index, self._leaves[:size])

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 PROOF(old_size, D[0:new_size])."""
        new_size = len(self._leaves) if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"cannot prove {old_size} consistent with {new_size}")
        if old_size in (0, new_size):
            return []
        return _subproof(old_size, self._leaves[:new_size], True)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self._leaves):
            raise ValueError(f"tree has {len(self._leaves)} leaves, not {size}")


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, leaves[:k]), root_of(leaves[k:])]
    return [*_path(m - k, leaves[k:]), root_of(leaves[:k])]


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_of(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` sits at ``index`` of the tree of ``size`` with head ``root``.

    Raises :class:`IntegrityError` when it does not (RFC 9162 §2.1.3.2).
    """
    if not 0 <= index < size:
        raise IntegrityError(f"inclusion proof: index {index} outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise IntegrityError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise IntegrityError(f"record {index} is not in the tree of size {size} with this head")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` extends the tree of ``old_size`` (append-only).

    Raises :class:`IntegrityError` when the proof fails (RFC 9162 §2.1.4.2).
    """
    if not 0 <= old_size <= new_size:
        raise IntegrityError(f"consistency: old size {old_size} > new size {new_size}")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise IntegrityError("consistency: same size but different heads")
        return
    if old_size == 0:
        if proof:
            raise IntegrityError("consistency: proof from the empty tree must be empty")
        return
    if not proof:
        raise IntegrityError("consistency: empty proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old head starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise IntegrityError("consistency proof is too short")
    if fr != old_root or sr != new_root:
        raise IntegrityError(
            f"log of size {new_size} does not extend the checkpoint of size {old_size}"
        )


class Frontier:
    """The roots of the perfect subtrees of a growing tree: O(log n) state, O(1) amortised push.

    ``root()`` equals :func:`root_of` over every leaf pushed so far, so a log can
    sign a new head by pushing only the leaves added since its last checkpoint.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def push(self, leaf: bytes) -> None:
        size, digest = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            _, left = self._stack.pop()
            size, digest = size * 2, node_hash(left, digest)
        self._stack.append((size, digest))
        self.size += 1

    def to_bytes(self) -> bytes:
        """The subtree roots, largest first (32 bytes each); the size tells their heights."""
        return b"".join(digest for _, digest in self._stack)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        """The frontier of a tree of ``size`` leaves from :meth:`to_bytes`.

        Raises :class:`IntegrityError` if ``data`` cannot be such a frontier;
        whether it is the right one is for the caller to check against a root.
        """
        heights = [
            1 << bit for bit in reversed(range(max(size, 0).bit_length())) if size >> bit & 1
        ]
        if size < 0 or len(data) != 32 * len(heights):
            raise IntegrityError(f"a frontier of {size} leaves has {len(heights)} roots")
        frontier = cls()
        frontier._stack = [(h, data[32 * i : 32 * i + 32]) for i, h in enumerate(heights)]
        frontier.size = size
        return frontier

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest
