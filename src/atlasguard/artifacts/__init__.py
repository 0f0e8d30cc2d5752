"""Model artifacts: scanning, safe loading, manifests, signing and encryption.

The public entry points live in the submodules (``scan``, ``safe_load``,
``manifest``, ``signing``, ``encryption``); none imports torch or a web framework.
"""
