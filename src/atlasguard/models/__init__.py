"""Models for evaluation: attacks (never in the request path)."""
