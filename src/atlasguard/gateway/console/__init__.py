"""The console: ``/console``, web pages for the admins who run and answer for a gateway.

Coverage (the ATLAS matrix from the live policy), traffic, alerts with
actions, the audit log and its Merkle chain, the registry, and measured
efficacy; server-rendered, with one style sheet and one small script, all
served by the gateway itself. See :mod:`atlasguard.gateway.console.routes`.
"""

from atlasguard.gateway.console.routes import router

__all__ = ["router"]
