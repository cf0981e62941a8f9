"""The HTTP face of a serving process: every route wired in `create_app`, every error answered by
`error_response`.

A route reads what it needs from the request (the body, refused with 413 past the size limit; the
bearer token where the route wants one) and hands plain values to the `Server` or its `Scorer`,
which know nothing of HTTP. Whatever a route raises becomes a response in one place: a
`RequestError` its JSON answer and status, anything else a logged, counted JSON 500, never a
traceback page. Running the app (one process or several workers) is `serving.run`.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.serving.errors import RequestError, read_object
from mlops_pipeline.serving.openapi import FEEDBACK_SCHEMA, json_body, predict_schema
from mlops_pipeline.serving.server import Server
from mlops_pipeline.serving.settings import ServeSettings
from mlops_pipeline.spec import DatasetSpec, load_spec

log = logging.getLogger(__name__)

#: A route's work once the token is checked: (server, request, when it arrived) -> response.
Handler = Callable[[Server, Request, float], Awaitable[Response]]

#: The error kind of a request whose client went away before its body was complete (it hung up
#: mid-body, or sent a malformed chunked body the HTTP server dropped): the client's fault.
CLIENT_DISCONNECT = "client_disconnect"


def error_response(server: Server, exc: Exception, with_kind: bool = False) -> Response:
    """The one place an error becomes a response, counted by kind in `mlops_errors_total` (every
    5xx too). A `RequestError` is answered as it says; a client that went away mid-body is a
    client error (`client_disconnect`, logged at INFO without a traceback: nobody reads the
    answer); anything else nothing anticipated is logged with its traceback and answered 500
    `internal`. `with_kind` adds the kind to the body, for the callers that act on it (the CLI's
    rollback)."""
    if isinstance(exc, ClientDisconnect):
        log.info("client disconnected before its request body was complete")
        exc = RequestError(400, "client disconnected before the request body was complete",
                           kind=CLIENT_DISCONNECT)
    elif not isinstance(exc, RequestError):
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        exc = RequestError(500, f"internal error: {type(exc).__name__}", kind="internal")
    server.metrics.errors.labels(exc.kind).inc()
    body = exc.body()
    if with_kind:
        body["kind"] = exc.kind
    return JSONResponse(body, status_code=exc.status)


def check_token(request: Request, token: str, required: bool) -> None:
    """The bearer token, compared in constant time: 401 when it is wrong or missing; with no
    token configured, 403 for the routes that require one and nothing for the others."""
    if not token:
        if required:
            raise RequestError(403, "admin endpoints are disabled: set MLOPS_SERVE_TOKEN", kind="forbidden")
        return
    header = request.headers.get("authorization", "")
    if not hmac.compare_digest(header.encode("utf-8", "surrogateescape"),
                               f"Bearer {token}".encode("utf-8", "surrogateescape")):
        raise RequestError(401, "missing or wrong bearer token", kind="unauthorized")


def require_json(request: Request) -> None:
    """415 unless the body is declared `application/json` (parameters such as `charset` allowed).
    A browser sends `text/plain`, form and multipart bodies cross-site without a CORS preflight;
    JSON it only sends after one, which this server never answers (it sets no CORS headers)."""
    declared = request.headers.get("content-type", "")
    if declared.split(";", 1)[0].strip().lower() != "application/json":
        raise RequestError(415, f"Content-Type must be application/json, got {declared or 'none'!r}",
                           kind="unsupported_media_type")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 before any parsing work once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body is larger than {limit} bytes", kind="body_too_large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body is larger than {limit} bytes", kind="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


# ---- what each route does with a request ---------------------------------------------------------

async def _predict(server: Server, request: Request, received: float) -> Response:
    body = await read_body(request, server.settings.max_body_bytes)
    answer = await server.scorer.predict(body, request.headers.get("x-request-key"), received)
    return Response(answer, media_type="application/json")


async def _invocations(server: Server, request: Request, received: float) -> Response:
    """MLflow's scoring protocol (`serving.invocations`), through the /predict scoring path."""
    from mlops_pipeline.serving.invocations import invocations_answer, predict_body

    body = predict_body(await read_body(request, server.settings.max_body_bytes))
    answer = await server.scorer.predict(body, request.headers.get("x-request-key"), received)
    content, headers = invocations_answer(answer)
    return Response(content, media_type="application/json", headers=headers)


def _v2_model(server: Server, request: Request) -> None:
    name = request.path_params.get("model_name")
    if name != server.model_name:
        raise RequestError(404, f"this server serves {server.model_name!r}, not {name!r}", kind="not_found")


async def _v2_infer(server: Server, request: Request, received: float) -> Response:
    """The Open Inference Protocol's infer (`serving.v2`), through the /predict scoring path."""
    from mlops_pipeline.serving.v2 import infer_answer, predict_body

    _v2_model(server, request)
    body, rid = predict_body(await read_body(request, server.settings.max_body_bytes))
    answer = await server.scorer.predict(body, request.headers.get("x-request-key"), received)
    return Response(infer_answer(answer, rid), media_type="application/json")


async def _v2_metadata(server: Server, request: Request, received: float) -> Response:
    from mlops_pipeline.serving.v2 import model_metadata

    _v2_model(server, request)
    return JSONResponse(model_metadata(server.model_name, server.watcher.champion, server.checker.fields))


async def _v2_server(server: Server, request: Request, received: float) -> Response:
    return JSONResponse({"name": "mlops-pipeline", "version": "2", "extensions": []})


async def _v2_live(server: Server, request: Request, received: float) -> Response:
    return JSONResponse({"live": True})


async def _v2_ready(server: Server, request: Request, received: float) -> Response:
    if "model_name" in request.path_params:
        _v2_model(server, request)
    ready = server.readiness()["ready"]
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


async def _ping(server: Server, request: Request, received: float) -> Response:
    """`mlflow models serve`'s liveness check: 200 once a model is loaded, else 503."""
    return Response("\n", status_code=200 if server.watcher.champion is not None else 503)


async def _feedback(server: Server, request: Request, received: float) -> Response:
    payload = read_object(await read_body(request, server.settings.max_body_bytes), "{request_id, label}")
    return JSONResponse(await server.feedback(payload))


async def _reload(server: Server, request: Request, received: float) -> Response:
    return JSONResponse(await server.reload())


async def _rollback(server: Server, request: Request, received: float) -> Response:
    payload = read_object(await read_body(request, server.settings.max_body_bytes), "{model_name, registry}")
    return JSONResponse(await server.rollback(payload))


async def _health(server: Server, request: Request, received: float) -> Response:
    return JSONResponse(server.health_body())


async def _ready(server: Server, request: Request, received: float) -> Response:
    body = server.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


async def _metrics(server: Server, request: Request, received: float) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(server.metrics_text(), media_type=CONTENT_TYPE_LATEST)


class Route(NamedTuple):
    """One route: `token` None (no token), False (checked when one is configured) or True
    (required); `latency` the label its server-side latency is observed under; `with_kind` puts
    the error's kind in error bodies; `json` refuses any body not declared `application/json`
    (415). `name` keeps /openapi.json's operation ids."""

    method: str
    path: str
    name: str
    handler: Handler
    token: bool | None = None
    latency: str | None = None
    with_kind: bool = False
    json: bool = False
    #: Answered straight from the ASGI call (`ServingApp`), without FastAPI's routing and request
    #: machinery; only for fixed paths. The route stays in /openapi.json.
    hot: bool = False


ROUTES = (
    Route("POST", "/predict", "predict", _predict, latency="predict", json=True, hot=True),
    Route("POST", "/invocations", "invocations", _invocations, latency="invocations", json=True, hot=True),
    Route("GET", "/ping", "ping", _ping, hot=True),
    Route("POST", "/v2/models/{model_name}/infer", "v2_infer", _v2_infer, latency="v2_infer", json=True),
    Route("GET", "/v2/models/{model_name}", "v2_model_metadata", _v2_metadata),
    Route("GET", "/v2/models/{model_name}/ready", "v2_model_ready", _v2_ready),
    Route("GET", "/v2", "v2_server_metadata", _v2_server),
    Route("GET", "/v2/health/live", "v2_live", _v2_live),
    Route("GET", "/v2/health/ready", "v2_ready", _v2_ready),
    Route("POST", "/feedback", "feedback", _feedback, token=False, latency="feedback", json=True),
    Route("POST", "/admin/reload", "reload", _reload, token=True),
    Route("POST", "/admin/rollback", "rollback", _rollback, token=True, with_kind=True, json=True),
    Route("GET", "/health", "health", _health, hot=True),
    Route("GET", "/ready", "ready", _ready, hot=True),
    Route("GET", "/metrics", "metrics", _metrics),
)


def _endpoint(handler: Handler, token: bool | None, latency: str | None, with_kind: bool,
              json: bool = False) -> Any:
    """`handler` as a FastAPI endpoint: the token checked first, then the content type, errors
    through `error_response`, the server-side latency observed (see `Route`)."""

    async def endpoint(request: Request) -> Response:
        server: Server = request.app.state.server
        received = time.perf_counter()
        try:
            if token is not None:
                check_token(request, server.settings.token, required=token)
            if json:
                require_json(request)
            return await handler(server, request, received)
        except Exception as exc:
            return error_response(server, exc, with_kind)
        finally:
            if latency is not None:
                server.metrics.latency.labels(latency).observe(time.perf_counter() - received)

    return endpoint


class ServingApp(FastAPI):
    """FastAPI for everything but the hot routes (`Route.hot`: /predict and the other fixed-path
    scoring and probe routes), which are answered straight from the ASGI call: the same endpoint
    (token, content type, errors, latency), without routing, dependency solving and the middleware
    stack per request. Everything else, lifespan and /openapi.json included, is FastAPI's."""

    hot: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.hot.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self  # what `request.app` reads
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: ServeSettings,
    spec: DatasetSpec | None = None,
    registry: Any = None,
    store: PredictionStore | None = None,
) -> ServingApp:
    """The app of one serving process. `spec` defaults to the configured dataset's, `registry` to
    the MLflow of `MLFLOW_TRACKING_URI` (else the embedded one), `store` to `predictions_url`'s;
    tests inject stand-ins. The `Server` is built and started in the lifespan, stopped after the
    last request."""
    bodies: dict[str, dict[str, Any]] = {"predict": {}, "feedback": {}}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from mlops_pipeline.deployment.tracking import MLflow

        reg = registry or MLflow(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""))
        server = Server(settings, spec or load_spec(), reg,
                        store or PredictionStore(settings.predictions_url or None))
        server.start()
        app.state.server = server
        # The request bodies, declared from the contract (read when /openapi.json is first built).
        bodies["predict"].update(json_body(predict_schema(server.checker, settings.max_records)))
        bodies["feedback"].update(json_body(FEEDBACK_SCHEMA))
        await server.ready_to_serve()
        try:
            yield
        finally:
            await server.stop()

    app = ServingApp(title="mlops-pipeline serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.hot = {}
    for route in ROUTES:
        endpoint = _endpoint(route.handler, route.token, route.latency, route.with_kind, route.json)
        app.add_api_route(route.path, endpoint, methods=[route.method], name=route.name,
                          openapi_extra=bodies.get(route.name))
        if route.hot:
            app.hot[(route.method, route.path)] = endpoint
    return app
