"""The console: ``/console``, web pages for the admins who run and answer for a gateway.

Coverage (the ATLAS matrix from the live policy), traffic, alerts with
actions, the audit log and its Merkle chain, the registry, and measured
efficacy; server-rendered, with one style sheet and one small script, all
served by the gateway itself. :mod:`~atlasguard.gateway.console.base` holds
what every route shares (who is asking, sessions, CSRF, the security
headers); :mod:`~atlasguard.gateway.console.routes` and
:mod:`~atlasguard.gateway.console.audit_pages` add their routes to its router.
"""

from atlasguard.gateway.console import audit_pages, oidc, routes
from atlasguard.gateway.console.base import router

__all__ = ["audit_pages", "oidc", "router", "routes"]
