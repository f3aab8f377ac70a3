"""``divrec serve``: recommendations over HTTP (FastAPI + uvicorn), micro-batched, with metrics, hot reload and a
durable feedback log.

Endpoints: ``POST /recommend`` (``{"history": [raw item ids], "k": 10}`` or ``{"user": "<raw id>", "k": 10}``, plus
optional ``exclude_seen`` and ``rerank``), ``POST /feedback`` (one event or ``{"events": [...]}``, committed before
the reply), ``POST /reload`` (optional ``{"ckpt_path": ...}``), ``GET /health`` and ``GET /metrics`` (Prometheus).
Every bad request gets a 4xx and a one-line ``{"error": ...}``, and the server keeps serving. A reload is atomic:
the batch being scored finishes on the old model, later ones use the new one, and a checkpoint that cannot be
loaded is refused while the old model keeps serving. ``ckpt_path=<file>.onnx`` serves a ``divrec export`` file on
onnxruntime instead (``onnx_recommender.py``: histories only, k up to the exported k), and reloads ``.onnx`` files.

Speed on small machines: one uvicorn worker, one model thread fed by the micro-batcher (``batching.py``), plain
Starlette routes whose bodies are parsed and validated in one pydantic call, responses serialised once, a pure ASGI
middleware for the body cap and the metrics, no per-request logging above DEBUG.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from divrec.errors import UserError
from divrec.serving.batching import MicroBatcher
from divrec.serving.store import EVENT_CHARS, ID_CHARS, FeedbackEvent, FeedbackStore, safe_url
from divrec.serving.telemetry import Telemetry, log, now

ENDPOINTS = {"/recommend", "/feedback", "/reload", "/health", "/metrics"}
ENV_TOKEN = "DIVREC_SERVE_TOKEN"
# keys of conf/serve.yaml that configure the server, not the model (the other overrides go to the checkpoint)
SERVER_KEYS = {"ckpt_path", "host", "port", "device", "threads", "token", "log_user_ids", "log_level", "k",
               "batch", "limits", "feedback", "task_name", "seed", "hydra"}
HISTORY, USER = "history", "user"


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for: each is refused (413 / 422) with its name, never truncated."""

    max_body_bytes: int = 1 << 20
    max_history: int = 2000
    max_k: int = 1000
    max_feedback_events: int = 1000


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs besides the model (``conf/serve.yaml``; see its comments)."""

    ckpt_path: str | None = None  # what a bare POST /reload loads again
    token: str | None = None  # bearer token for /feedback and /reload; None = open
    feedback_url: str | None = None  # SQLAlchemy URL of the feedback log; None = /feedback answers 503
    feedback_synchronous: str = "FULL"
    default_k: int = 10
    log_user_ids: bool = False
    batch_max_size: int = 64
    batch_max_wait_ms: float = 0.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        caps = {"batch.max_size": self.batch_max_size, **{f"limits.{k}": v for k, v in vars(self.limits).items()}}
        for key, value in caps.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{key}={value!r}: must be a positive integer")
        if not 1 <= self.default_k <= self.limits.max_k:
            raise UserError(f"k={self.default_k}: the default list length must be in 1..limits.max_k")
        if self.batch_max_wait_ms < 0:
            raise UserError(f"batch.max_wait_ms={self.batch_max_wait_ms}: must be >= 0 (0 = never wait)")


def settings_from_config(cfg: DictConfig) -> ServerSettings:
    """The server settings of a composed ``conf/serve.yaml``."""
    limits = Limits(**OmegaConf.to_container(cfg.limits))  # type: ignore[arg-type]
    return ServerSettings(
        ckpt_path=str(cfg.ckpt_path), token=cfg.get("token") or None, feedback_url=cfg.feedback.get("url"),
        feedback_synchronous=str(cfg.feedback.get("synchronous", "FULL")), default_k=int(cfg.k),
        log_user_ids=bool(cfg.log_user_ids), batch_max_size=cfg.batch.max_size,
        batch_max_wait_ms=float(cfg.batch.max_wait_ms), limits=limits,
    )


# --- request bodies ------------------------------------------------------------------------------------------------
def _raw_id(value: object) -> str:
    """Raw ids are strings; integers are accepted and read as their decimal string (``5`` is ``"5"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError("an id must be a string or an integer")


RawId = Annotated[str, BeforeValidator(_raw_id)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    history: list[RawId] | None = None
    user: RawId | None = None
    k: StrictInt | None = None
    exclude_seen: StrictBool = True
    rerank: StrictStr | None = None  # a conf/rerank/<name>.yaml option; None = the checkpoint's own re-ranker


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: RawId
    item: RawId
    event: Annotated[StrictStr, Field(min_length=1, max_length=EVENT_CHARS)] = "click"
    timestamp: Finite | None = None  # unix seconds; None = when the server receives it


class EventsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventBody]


class ReloadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ckpt_path: StrictStr | None = None


RECOMMEND_HINT = 'send {"history": [item ids], "k": 10} or {"user": "<id>", "k": 10}'
FEEDBACK_HINT = 'send {"user": ..., "item": ..., "event": "click", "timestamp": <unix s>} or {"events": [...]}'


def validation_line(err: ValidationError, hint: str) -> str:
    """One line for the first problem pydantic found."""
    first = err.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"the request body is not valid JSON ({first['msg']}); {hint}"
    where = ".".join(str(part) for part in first["loc"]) or "body"
    got = repr(first.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return f"{where}: {first['msg']} (got {got}); {hint}"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"error": message}), status, headers, media_type="application/json")


def json_response(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), media_type="application/json")


# --- the served model ----------------------------------------------------------------------------------------------
def checkpoint_version(path: str | Path) -> str:
    """``<file name>@<first 12 hex digits of its SHA-256>``: which checkpoint answered (a retrained file at the same
    path gets a new version)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such file; give the path of a .ckpt (or exported .onnx) file")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.name}@{digest.hexdigest()[:12]}"


class ModelSlot:
    """The served ``Recommender`` and its version. ``score`` and ``reload`` hold one lock, so a batch is scored
    wholly by one model, and a reload waits for the batch in progress and is seen by every later one."""

    def __init__(self, recommender: Any, path: str | None) -> None:
        self.recommender = recommender
        self.path = path
        self.version = checkpoint_version(path) if path and Path(path).is_file() else "in-memory"
        self.loaded_at = time.time()
        self.reloads = 0
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one reload at a time (hashing the file runs outside the model lock)

    def score(self, key: tuple[str, int, bool, str | None], payloads: list[Any]) -> list[tuple[Any, str]]:
        """One ``recommend`` / ``recommend_users`` call for requests that share ``key``; each result with the
        version of the model that produced it. Runs on the batcher's thread."""
        kind, k, exclude_seen, rerank = key
        with self._lock:  # the Recommender runs under torch.inference_mode itself
            method = self.recommender.recommend_users if kind == USER else self.recommender.recommend
            recs = method(payloads, k=k, exclude_seen=exclude_seen, rerank=rerank)
            version = self.version
        return [(rec, version) for rec in recs]

    def reload(self, path: str) -> str:
        """Load ``path`` into the served model (``Recommender.load_state``: a bad file raises and changes nothing);
        the new version."""
        with self._reload_lock:
            version = checkpoint_version(path)
            with self._lock:
                self.recommender.load_state(path)
                self.path, self.version, self.loaded_at = path, version, time.time()
                self.reloads += 1
        return version


# --- middleware: body cap + metrics --------------------------------------------------------------------------------
class BodyTooLarge(HTTPException):
    def __init__(self, cap: int) -> None:
        super().__init__(413, f"the request body is larger than limits.max_body_bytes={cap}; send less per request")


Message = dict[str, Any]
ASGIApp = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


class ServeMiddleware:
    """Pure ASGI (no per-request task, unlike BaseHTTPMiddleware): refuses a body over the cap from its
    Content-Length before reading any of it (or as soon as a chunked body passes the cap), and records each
    request's status and latency."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, max_body_bytes: int) -> None:
        self.app, self.telemetry, self.cap = app, telemetry, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = now(), [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.cap:
                too_large = BodyTooLarge(self.cap)
                await error_response(413, str(too_large.detail), {"Connection": "close"})(scope, receive, send_status)
                return
            await self.app(scope, self._capped(receive), send_status)
        finally:
            self.telemetry.observe(scope["path"], status[0], now() - start)

    def _capped(self, receive: Any) -> Any:
        seen = [0]

        async def capped() -> dict[str, Any]:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.cap:
                raise BodyTooLarge(self.cap)
            return message

        return capped


# --- the app -------------------------------------------------------------------------------------------------------
@dataclass
class ServerState:
    slot: ModelSlot
    settings: ServerSettings
    telemetry: Telemetry
    batcher: MicroBatcher[Any, Any, Any]
    store: FeedbackStore | None


def create_app(recommender: Any, settings: ServerSettings, store: FeedbackStore | None = None) -> FastAPI:
    """The FastAPI app serving ``recommender`` (a ``divrec.serving.recommender.Recommender``); the feedback
    ``store`` is opened from ``settings.feedback_url`` unless given."""
    slot = ModelSlot(recommender, settings.ckpt_path)
    telemetry = Telemetry(ENDPOINTS, settings.log_user_ids)
    telemetry.model_loaded_at.set(slot.loaded_at)
    if store is None and settings.feedback_url:
        store = FeedbackStore(settings.feedback_url, settings.feedback_synchronous)
    batcher = MicroBatcher(
        slot.score, settings.batch_max_size, settings.batch_max_wait_ms, on_batch=telemetry.batch_size.observe
    )
    state = ServerState(slot, settings, telemetry, batcher, store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()
        if store is not None:
            store.close()

    app = FastAPI(title="divrec", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.divrec = state
    app.add_middleware(ServeMiddleware, telemetry=telemetry, max_body_bytes=settings.limits.max_body_bytes)
    _add_routes(app, state)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, err: HTTPException) -> Response:
        message = str(err.detail)
        if err.status_code in (404, 405):
            message = f"{message}: the endpoints are POST /recommend /feedback /reload, GET /health /metrics"
        return error_response(err.status_code, message, dict(err.headers or {}))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, err: Exception) -> Response:
        log.error("internal error: %s", type(err).__name__, exc_info=err)
        return error_response(500, f"internal error ({type(err).__name__}); see the server log")

    async def recommend(request: Request) -> Response:
        return await _recommend(state, await request.body())

    async def feedback(request: Request) -> Response:
        return _unauthorized() if not _authorized(request, state) else await _feedback(state, await request.body())

    async def reload(request: Request) -> Response:
        return _unauthorized() if not _authorized(request, state) else await _reload(state, await request.body())

    async def health(_request: Request) -> Response:
        rec, slot = state.slot.recommender, state.slot
        return json_response({
            "status": "ok", "model": slot.version, "ckpt_path": slot.path, "reloads": slot.reloads,
            "loaded_at": slot.loaded_at, "n_items": int(rec.n_items), "max_len": int(rec.max_len),
            "feedback": state.store is not None,
        })

    async def metrics(_request: Request) -> Response:
        body, content_type = state.telemetry.exposition()
        return Response(body, media_type=content_type)

    # Plain Starlette routes: each endpoint parses its body itself (one pydantic call, one-line errors), so
    # FastAPI's per-request dependency machinery (~0.2 ms of CPU a request) would buy nothing
    for path, endpoint, method in (("/recommend", recommend, "POST"), ("/feedback", feedback, "POST"),
                                   ("/reload", reload, "POST"), ("/health", health, "GET"),
                                   ("/metrics", metrics, "GET")):
        app.add_route(path, endpoint, methods=[method], include_in_schema=False)


def _authorized(request: Request, state: ServerState) -> bool:
    token = state.settings.token
    if not token:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _unauthorized() -> Response:
    return error_response(
        401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' (the server's token= setting or "
        f"${ENV_TOKEN})", {"WWW-Authenticate": "Bearer"},
    )


async def _recommend(state: ServerState, raw: bytes) -> Response:
    try:
        body = RecommendBody.model_validate_json(raw)
    except ValidationError as err:
        return error_response(422, validation_line(err, RECOMMEND_HINT))
    limits = state.settings.limits
    k = state.settings.default_k if body.k is None else body.k
    if not 1 <= k <= limits.max_k:
        return error_response(422, f"k={k}: must be between 1 and limits.max_k={limits.max_k}")
    if (body.history is None) == (body.user is None):
        return error_response(422, f"send exactly one of history and user; {RECOMMEND_HINT}")
    if body.history is not None:
        if len(body.history) > limits.max_history:
            return error_response(
                422, f"history has {len(body.history)} items, over limits.max_history={limits.max_history}; send "
                "the most recent ones (the model reads only its last max_len)"
            )
        kind, payload = HISTORY, body.history
    else:
        kind, payload = USER, body.user
        if len(payload) > ID_CHARS or not state.slot.recommender.knows_user(payload):
            log.debug("unknown user %s", state.telemetry.user_ref(payload))
            why = getattr(state.slot.recommender, "no_users_reason", None) or "not in the data it was trained on"
            return error_response(
                404, f"user {payload[:ID_CHARS]!r} is unknown to the model ({why}); send its history instead"
            )
    try:
        rec, version = await state.batcher.run((kind, k, body.exclude_seen, body.rerank), payload)
    except UserError as err:
        return error_response(422, str(err))
    return json_response(_recommendation(rec, version))


def _recommendation(rec: Any, version: str) -> dict[str, Any]:
    items = [
        {"item": item, "score": float(score) if math.isfinite(score) else None, "rank": rank}
        for rank, (item, score) in enumerate(zip(rec.items, rec.scores, strict=True), start=1)
    ]
    return {"items": items, "unknown_items": list(rec.unknown_items), "fallback": rec.fallback, "model": version}


async def _feedback(state: ServerState, raw: bytes) -> Response:
    if state.store is None:
        return error_response(503, "no feedback store: start the server with feedback.url=<SQLAlchemy URL>")
    try:
        parsed = json.loads(raw)
        many = isinstance(parsed, dict) and "events" in parsed
        events = EventsBody.model_validate(parsed).events if many else [EventBody.model_validate(parsed)]
    except ValueError as err:  # json.JSONDecodeError and pydantic's ValidationError are both ValueErrors
        message = validation_line(err, FEEDBACK_HINT) if isinstance(err, ValidationError) else (
            f"the request body is not valid JSON ({err}); {FEEDBACK_HINT}")
        return error_response(422, message)
    cap = state.settings.limits.max_feedback_events
    if len(events) > cap:
        return error_response(413, f"{len(events)} events, over limits.max_feedback_events={cap}; send them in parts")
    too_long = next((e for e in events if len(e.user) > ID_CHARS or len(e.item) > ID_CHARS), None)
    if too_long is not None:
        return error_response(422, f"a user or item id is longer than {ID_CHARS} characters; send the raw id")
    rows = [FeedbackEvent(e.user, e.item, e.event, e.timestamp) for e in events]
    stored = await run_in_threadpool(state.store.append, rows)  # committed (and fsynced) before we answer
    state.telemetry.feedback_events.inc(stored)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("stored %d feedback events from %s", stored, sorted({state.telemetry.user_ref(r.user) for r in rows}))
    return json_response({"stored": stored})


async def _reload(state: ServerState, raw: bytes) -> Response:
    try:
        body = ReloadBody.model_validate_json(raw) if raw.strip() else ReloadBody()
    except ValidationError as err:
        return error_response(422, validation_line(err, 'send {"ckpt_path": "<file>"} or nothing'))
    path = body.ckpt_path or state.settings.ckpt_path
    if not path:
        return error_response(422, 'no checkpoint to reload: send {"ckpt_path": "<file>"}')
    old = state.slot.version
    try:
        version = await run_in_threadpool(state.slot.reload, path)
    except FileNotFoundError as err:
        state.telemetry.reloads.labels("refused").inc()
        return error_response(404, f"reload refused, still serving {old}: {err}")
    except Exception as err:
        state.telemetry.reloads.labels("refused").inc()
        user_error = isinstance(err, UserError)
        log.warning("reload of %s refused, still serving %s: %s", path, old, err, exc_info=not user_error)
        line = " ".join(str(err).split()) or type(err).__name__
        return error_response(422 if user_error else 500, f"reload refused, still serving {old}: {line}")
    state.telemetry.reloads.labels("ok").inc()
    state.telemetry.model_loaded_at.set(state.slot.loaded_at)
    log.info("reloaded %s: now serving %s (was %s)", path, version, old)
    return json_response({"model": version, "previous": old, "ckpt_path": path})


# --- the command ---------------------------------------------------------------------------------------------------
def model_overrides(overrides: Sequence[str]) -> list[str]:
    """The command-line overrides that concern the checkpoint's config (data paths, re-ranker, ...), not the
    server."""
    return [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] not in SERVER_KEYS]


def check_address(host: str, port: object) -> None:
    """A ``UserError`` unless ``host:port`` can be bound now."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"port={port!r}: must be an integer in 0..65535, e.g. port=8000")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise UserError(f"host={host} port={port}: cannot listen there ({err.strerror}); pick another port= "
                        "or stop the process using it") from err


def serve(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Load ``cfg.ckpt_path`` (a checkpoint or an exported ``.onnx`` file) and serve it on ``cfg.host:cfg.port``
    until stopped (Ctrl-C / SIGTERM)."""
    import uvicorn

    from divrec.serving.onnx_recommender import load_recommender

    settings = settings_from_config(cfg)
    check_address(str(cfg.host), cfg.port)  # before the model loads: a busy port or bad URL fails at once
    store = FeedbackStore(settings.feedback_url, settings.feedback_synchronous) if settings.feedback_url else None
    recommender = load_recommender(str(cfg.ckpt_path), model_overrides(overrides), str(cfg.device), int(cfg.threads),
                                   settings.default_k)
    app = create_app(recommender, settings, store)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        log.warning("host=%s without a token: anyone who can reach it may POST /feedback and /reload", cfg.host)
    log.info(
        "serving %s (%d items) on http://%s:%d; feedback to %s", app.state.divrec.slot.version,
        recommender.n_items, cfg.host, cfg.port, safe_url(settings.feedback_url) if settings.feedback_url else None,
    )
    # Everything loaded so far (torch, Lightning, Hydra, the model) lives as long as the server: keep it out of the
    # garbage collector's full passes, which otherwise stall every request in flight for ~0.5 s now and then
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app, host=str(cfg.host), port=int(cfg.port), log_level=str(cfg.log_level), access_log=False,
        log_config=None, timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
