"""The tamper-evident audit log: an append-only Merkle tree with signed checkpoints."""
