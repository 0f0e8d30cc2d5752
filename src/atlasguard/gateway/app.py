"""The ASGI application: the gateway's routers over one :class:`Gateway`.

Routes live in their own modules and only translate between HTTP and the
library: :mod:`~atlasguard.gateway.inference` (the Open Inference Protocol),
:mod:`~atlasguard.gateway.admin_api` (``/v1/admin``) and
:mod:`~atlasguard.gateway.registry_api` (``/v1/registry``). Each finds the
gateway in ``app.state``; authentication, auditing and the translation of
refusals to statuses (:data:`~atlasguard.gateway.http.STATUS`) are done once,
in :mod:`~atlasguard.gateway.calls` and :mod:`~atlasguard.gateway.http`.

``/metrics`` (Prometheus text) needs an admin credential, like the admin API:
it tells which models are served and how much each is used. ``/console``
(:mod:`~atlasguard.gateway.console`) serves web pages to admin principals,
unless ``[controls.serving] console = false``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from atlasguard import __version__
from atlasguard.gateway import admin_api, inference, registry_api
from atlasguard.gateway.calls import Call, audited
from atlasguard.gateway.http import refusal
from atlasguard.gateway.metrics import Metrics
from atlasguard.gateway.service import Gateway
from atlasguard.runtime.pipeline import Denied
from atlasguard.runtime.settings import ServingSettings

__all__ = ["create_app"]


_INFER = re.compile(r"/v2/models/([^/]+)/infer")


class GatewayApp(FastAPI):
    """FastAPI, with a fast lane for the one hot route.

    ``POST /v2/models/{model}/infer`` goes straight to its handler
    (:func:`atlasguard.gateway.inference.infer`), past the framework's routing,
    middleware stack and parameter machinery, which cost more than every guard
    together (see docs/ARCHITECTURE.md). The route is declared as usual too, so
    the OpenAPI document and any other path to it stay the same; the handler
    catches everything itself, as the middleware would.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _INFER.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self
                scope["path_params"] = {"model": match[1]}
                response = await inference.infer(match[1], Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics

    async def work(call: Call) -> Response:
        await call.admin()
        text = await run_in_threadpool(metrics.scrape)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return await audited(request, "metrics", None, work)


def create_app(gateway: Gateway, *, metrics_dir: Path | None = None) -> FastAPI:
    """The ASGI application serving ``gateway``.

    ``metrics_dir`` switches ``/metrics`` to Prometheus multiprocess mode: every
    worker writes its samples there and a scrape adds them up, whichever worker
    answers. It must be the directory in ``PROMETHEUS_MULTIPROC_DIR`` when
    prometheus_client was first imported.
    """
    metrics = Metrics(gateway.models, metrics_dir=metrics_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        metrics.started()
        yield
        await run_in_threadpool(gateway.close)
        metrics.stopped()

    app = GatewayApp(
        title="atlasguard gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.state.metrics = metrics

    @app.exception_handler(Denied)
    async def _denied(_request: Request, exc: Denied) -> JSONResponse:
        return refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Parameters from the URL (query, headers): say which, never echo the value.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())) or "request"
        return refusal(Denied(f"{where}: {first.get('msg', 'invalid')}", reason="malformed"))

    app.include_router(inference.router)
    app.include_router(admin_api.router)
    if gateway.registry is not None:
        app.include_router(registry_api.router)
    serving = gateway.policy.settings("serving")
    if not isinstance(serving, ServingSettings) or serving.console:
        from atlasguard.gateway.console import router as console_router
        from atlasguard.gateway.console.sessions import SessionStore

        app.state.console_sessions = SessionStore(gateway.deployment.engine)
        app.include_router(console_router)
    app.add_api_route("/metrics", _metrics, methods=["GET"])
    return app
