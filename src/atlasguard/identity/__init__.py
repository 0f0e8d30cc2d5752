"""Principals, API keys and grants: one identity system for the gateway and the registry.

>>> from atlasguard.db import connect
>>> from atlasguard.identity.store import IdentityStore
>>> store = IdentityStore.create(connect("sqlite://"))
>>> key = store.create_key("alice")
>>> store.authenticate(key.secret).name
'alice'
"""
