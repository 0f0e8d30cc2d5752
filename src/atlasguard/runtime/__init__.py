"""The guard pipeline around a predict function, shared by ``protect`` and the gateway.

See :mod:`atlasguard.runtime.pipeline` for the contract every guard follows.
"""
