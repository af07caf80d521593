"""``xlt-predict serve``: the predictor as a JSON HTTP API (FastAPI on uvicorn), loaded once.

Why a service: every ``xlt-predict`` command is a fresh process that loads the predictor
again; an application asking many questions keeps one process and asks over HTTP.

Routes (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``POST /predict`` -- one request object (the answer, or 422 with its error) or a list
  of them (a list of answers, position i answering item i; a bad item gets
  ``{"id", "error"}`` and never fails the others). Fields and per-item rules are
  ``xlt-predict batch``'s: each item goes through :func:`predictor.serving.batch.answer_batch`;
* ``POST /recommend`` -- the arguments of ``xlt-predict recommend`` as an object;
* ``GET /languages`` (``?q=`` searches names and codes), ``GET /model`` (the card's
  summary), ``GET /health``.

Every 4xx answer is ``{"error": "..."}`` naming the problem; an unexpected failure is a
500 with no traceback (the traceback goes to the server's log). Bodies over
``max_body_bytes`` get 413, lists over ``max_items`` 422.

Why one worker and batching: the predictor is not meant to be called from several
threads at once, and a prediction costs ~5 ms alone but ~12 ms for 16 rows together. So
one worker owns it; requests that arrive while it computes wait in a queue and are
answered together in one vectorised call (each answer is the same as alone), and while
requests keep arriving the worker lets the event loop read them for up to 3 ms before it
starts. With 16 concurrent clients on 2 cores this keeps p95 near 30 ms instead of 16
single predictions' worth (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr,
                      ValidationError)
from starlette.exceptions import HTTPException as StarletteHTTPException

from measure.knowledge.coverage import pretraining_class
from measure.knowledge.languages import Language, get_language, known_codes, search_languages
from predictor import persist
from predictor.formatting import protocol_label
from predictor.serving.answers import ranking_json
from predictor.serving.batch import answer_batch
from predictor.serving.predictor import Predictor
from predictor.serving.recommend import MAX_COMBINATIONS
from predictor.serving.requests import PredictionInputError

log = logging.getLogger("xlt.serve")

#: defaults of ``xlt-predict serve --max-body-kb / --max-items``
MAX_BODY_BYTES = 1 << 20
MAX_ITEMS = 1000
#: the most request items the worker predicts in one call (one batch's latency bound)
MAX_BATCH_ITEMS = 2048
#: how long a prediction call waits for more requests while they keep arriving
BATCH_WINDOW_S = 0.003
MAX_TOP = 1000

_LINE_PREFIX = re.compile(r"^line \d+: ")


class ApiError(Exception):
    """A request the API refuses: its HTTP status and the one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- the worker that owns the predictor ------------------------------------------------------
@dataclass
class _Job:
    lines: list[str] | None
    call: Callable[[], Any] | None
    future: asyncio.Future = field(repr=False)


class PredictorWorker:
    """Runs every predictor call, one at a time, in a thread beside the event loop; the
    prediction requests waiting in its queue are answered together (see the module doc)."""

    def __init__(self, predictor: Predictor, max_batch: int = MAX_BATCH_ITEMS) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.answered = 0       # request items answered
        self.batches = 0        # predictor calls made for them
        self.busy_s = 0.0       # seconds the predictor worked

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def predict(self, lines: list[str]) -> list[dict[str, Any]]:
        """Batch answers (dicts) to JSON request lines, in order."""
        return await self._submit(_Job(lines, None, asyncio.get_running_loop().create_future()))

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the worker (anything else that touches the predictor)."""
        return await self._submit(_Job(None, fn, asyncio.get_running_loop().create_future()))

    async def _submit(self, job: _Job) -> Any:
        assert self.queue is not None, "the worker is not started"
        await self.queue.put(job)
        return await job.future

    async def _run(self) -> None:
        assert self.queue is not None
        pending: list[_Job] = []
        while True:
            job = pending.pop(0) if pending else await self.queue.get()
            if job.call is not None:
                await self._finish([job], lambda fn=job.call: [fn()])
                continue
            batch = await self._gather(job, pending)
            await self._finish(batch, lambda b=batch: self._answer(b))

    async def _gather(self, first: _Job, pending: list[_Job]) -> list[_Job]:
        """``first`` and the prediction jobs queued behind it, for one predictor call. While
        new requests keep arriving, the event loop gets a few turns (at most
        ``BATCH_WINDOW_S``) to read them: a bigger batch costs little more than a small one,
        so under load fewer, fuller calls answer everyone sooner; alone, a request waits
        one loop turn. A non-prediction job ends the batch (it runs next, alone)."""
        assert self.queue is not None
        batch, n = [first], len(first.lines or [])
        deadline = time.perf_counter() + BATCH_WINDOW_S
        while n < self.max_batch:
            if self.queue.empty():
                before = self.queue.qsize()
                await asyncio.sleep(0)
                if self.queue.qsize() == before or time.perf_counter() > deadline:
                    break
                continue
            nxt = self.queue.get_nowait()
            if nxt.call is not None:
                pending.append(nxt)
                break
            batch.append(nxt)
            n += len(nxt.lines or [])
        return batch

    def _answer(self, batch: list[_Job]) -> list[list[dict[str, Any]]]:
        t0 = time.perf_counter()
        lines = [line for job in batch for line in job.lines or []]
        answers = [json.loads(a) for a in
                   answer_batch(self.predictor, "\n".join(lines).encode("utf-8")).lines]
        self.batches += 1
        self.busy_s += time.perf_counter() - t0
        out, i = [], 0
        for job in batch:
            out.append(answers[i:i + len(job.lines or [])])
            i += len(job.lines or [])
        self.answered += len(lines)
        return out

    async def _finish(self, jobs: list[_Job], work: Callable[[], list[Any]]) -> None:
        try:
            results = await asyncio.to_thread(work)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the failure
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, res in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(res)


# -- requests ---------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON; 413 past ``max_bytes`` (stops reading there), 400 when
    it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"request body of {int(declared):,} bytes is over the limit of "
                            f"{max_bytes:,}: send fewer items per request (xlt-predict batch "
                            "takes files of any size)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is over the limit of {max_bytes:,} bytes: send "
                                "fewer items per request (xlt-predict batch takes files of "
                                "any size)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(400, "empty request body: send a JSON object (or a list of them)")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON (nested too deeply)") from None
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON ({exc})") from None


def _answer_text(answer: dict[str, Any]) -> dict[str, Any]:
    """A batch answer with its line-number prefix dropped: over HTTP the position in the
    list says which item an answer belongs to."""
    if "error" in answer:
        answer = {**answer, "error": _LINE_PREFIX.sub("", str(answer["error"]))}
    return answer


class RecommendRequest(BaseModel):
    """The arguments of ``xlt-predict recommend`` (the same names, JSON types)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(description="multilingual model id, e.g. xlmr, me5-small")
    targets: list[StrictStr] | StrictStr = Field(
        description="target language codes: a list or 'sw,ur'")
    pool: list[StrictStr] | StrictStr = Field(description="candidate source languages")
    k: StrictInt = Field(ge=1, description="languages per source set")
    method: StrictStr | None = None
    objective: StrictStr = Field("mean", description="'mean' or 'worst' over the targets")
    n_per_language: StrictInt | None = Field(None, ge=1)
    top: StrictInt = Field(5, ge=1, le=MAX_TOP)
    include_targets: StrictBool = False
    max_combinations: StrictInt = Field(MAX_COMBINATIONS, ge=1, le=MAX_COMBINATIONS)


def _codes(value: list[str] | str) -> list[str]:
    return [c.strip() for c in (value.split(",") if isinstance(value, str) else value)
            if c.strip()]


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


# -- what the GET routes answer ------------------------------------------------------------------
def language_record(lang: Language, models: list[str], measured: dict[str, list[str]]
                    ) -> dict[str, Any]:
    """One language: its codes, name, script, pretraining class per model, and the systems
    that measured it."""
    return {"code": lang.code, "name": lang.name, "iso639_3": lang.iso639_3,
            "script": lang.script, "in_registry": lang.in_registry,
            "pretraining": {m: pretraining_class(lang.code, m) for m in models},
            "measured_by": list(dict.fromkeys(measured.get(lang.code, [])
                                              + measured.get(lang.iso639_3, [])))}


def _measured(p: Predictor) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in p.models:
        for t in s.get("targets", []):
            out.setdefault(str(t), []).append(f"{s['model']}/{s['method']}")
    return out


def model_summary(p: Predictor) -> dict[str, Any]:
    """The card in brief: systems, validation protocols, interval coverage per group, the
    training data's fingerprint, and how far the card is vouched for."""
    card = p.card
    baselines = set(card.get("baselines", []))
    protocols = []
    for proto in dict.fromkeys(r["protocol"] for r in card.get("cv", [])):
        rows = [r for r in card["cv"] if r["protocol"] == proto]
        learned = [r for r in rows if r["model"] not in baselines]
        base = [r for r in rows if r["model"] in baselines]
        if not learned:
            continue
        best = min(base, key=lambda r: r["mae"]) if base else None
        protocols.append({"protocol": proto, "label": protocol_label(proto),
                          "basis": learned[0].get("basis"), "folds": learned[0].get("folds"),
                          "rows": learned[0].get("rows"), "mae": learned[0].get("mae"),
                          "spearman": learned[0].get("spearman"),
                          "best_baseline": best and {"name": best["model"], "mae": best["mae"]}})
    iv = card["intervals"]
    td = card.get("training_data", {})
    return {"task": card.get("task"), "score_scale": card.get("score_scale"),
            "systems": [{k: s.get(k) for k in ("model", "method", "origin", "metric", "rows",
                                                "typical_n_per_language", "max_k")}
                        | {"measured_targets": len(s.get("targets", []))} for s in p.models],
            "protocols": protocols,
            "intervals": {"level": round(1 - iv["alpha"], 4), "coverage": iv.get("coverage", {})},
            "training_data": {"fingerprint_sha256": td.get("fingerprint_sha256"),
                              "rows": td.get("rows"), "by_origin": td.get("by_origin")},
            "model_sha256": card.get("model_sha256"), "card_sha256": card.get("card_sha256"),
            "signature": persist.signature_status(card),
            "created_unix": card.get("created_unix")}


# -- the app ---------------------------------------------------------------------------------------
_PREDICT_ITEM = {
    "type": "object", "required": ["model", "train_config", "target"],
    "properties": {
        "id": {"description": "echoed in the answer"},
        "model": {"type": "string", "example": "me5-small"},
        "method": {"type": "string", "description": "default: the model's only method"},
        "task": {"type": "string", "default": "xnli"},
        "train_config": {"type": "object", "additionalProperties": {"type": "integer"},
                         "example": {"en": 2490, "de": 2490}},
        "target": {"type": "string", "example": "sw"}}}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [_PREDICT_ITEM, {"type": "array", "items": _PREDICT_ITEM}]}}}}}
_RECOMMEND_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": RecommendRequest.model_json_schema()}}}}


def create_app(predictor: Predictor, *, max_body_bytes: int = MAX_BODY_BYTES,
               max_items: int = MAX_ITEMS, source: str = "") -> FastAPI:
    """The API over one loaded predictor (``source``: where it was loaded from, for
    ``/health``)."""
    worker = PredictorWorker(predictor)
    started = time.time()
    models = sorted({s["model"] for s in predictor.models})
    measured = _measured(predictor)
    summary = model_summary(predictor)
    registry = [language_record(get_language(c), models, measured) for c in known_codes()]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        yield
        await worker.stop()

    app = FastAPI(title="xlt prediction API", version="1", lifespan=lifespan,
                  description="Zero-shot cross-lingual NLI scores with intervals, from the "
                              "predictor fitted by `xlt-predict fit`. Errors: {\"error\": ...}.")
    _error_handlers(app)
    _prediction_routes(app, predictor, worker, max_body_bytes, max_items)

    @app.get("/languages", summary="Languages: codes, names, ISO 639-3, pretraining class")
    async def languages(q: str | None = None) -> Any:
        if q is not None and len(q) > 100:
            raise ApiError(422, "q: at most 100 characters")
        found = registry if not q else [language_record(x, models, measured)
                                        for x in search_languages(q)]
        return {"models": models, "languages": found,
                "note": "other ISO 639-3 codes URIEL knows are accepted as targets too: "
                        "search them with ?q="}

    @app.get("/model", summary="The model card in brief")
    async def model() -> Any:
        return summary

    @app.get("/health", summary="Liveness and what is loaded")
    async def health() -> Any:
        return {"status": "ok", "predictor": source,
                "model_sha256": predictor.card.get("model_sha256"),
                "uptime_s": round(time.time() - started, 1), "answered": worker.answered,
                "batches": worker.batches, "predictor_busy_s": round(worker.busy_s, 2)}

    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": ...}``: the API's own, unknown routes and methods, bad
    query parameters, and anything unexpected (500, the traceback only in the log)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        what = {404: f"no route {request.url.path}: the routes are /predict, /recommend, "
                     "/languages, /model, /health (see /docs)",
                405: f"{request.method} is not allowed on {request.url.path} (see /docs)"}
        return JSONResponse({"error": what.get(exc.status_code, str(exc.detail))},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error answering this request (the server's "
                                      "log has the details)"}, status_code=500)


def _prediction_routes(app: FastAPI, predictor: Predictor, worker: PredictorWorker,
                       max_body_bytes: int, max_items: int) -> None:
    """POST /predict and /recommend, both answered by the ``worker``."""

    @app.post("/predict", openapi_extra=_PREDICT_BODY,
              summary="Predict one configuration (an object) or many (a list)")
    async def predict(request: Request) -> Any:
        body = await read_json(request, max_body_bytes)
        items = body if isinstance(body, list) else [body]
        if len(items) > max_items:
            raise ApiError(422, f"{len(items):,} items in one request; the limit is "
                                f"{max_items:,} (split the list, or use xlt-predict batch)")
        if not items:
            return []
        answers = [_answer_text(a) for a in await worker.predict(
            [json.dumps(item, ensure_ascii=False) for item in items])]
        if isinstance(body, list):
            return answers
        if "error" in answers[0]:
            raise ApiError(422, answers[0]["error"])
        return answers[0]

    @app.post("/recommend", openapi_extra=_RECOMMEND_BODY,
              summary="The best source-language sets for targets")
    async def recommend(request: Request) -> Any:
        body = await read_json(request, max_body_bytes)
        if not isinstance(body, dict):
            raise ApiError(422, f"expected a JSON object of recommend arguments, got "
                                f"{type(body).__name__}")
        try:
            req = RecommendRequest.model_validate(body)
        except ValidationError as exc:
            raise ApiError(422, _validation_message(exc)) from None
        if req.objective not in ("mean", "worst"):
            raise ApiError(422, f"objective must be 'mean' or 'worst', got {req.objective!r}")

        def run() -> dict[str, Any]:
            df = predictor.recommend(req.model, _codes(req.targets), _codes(req.pool), req.k,
                                     method=req.method, objective=req.objective,
                                     n_per_language=req.n_per_language, top=req.top,
                                     include_targets=req.include_targets,
                                     max_combinations=req.max_combinations)
            return ranking_json(predictor, df)
        try:
            return await worker.call(run)
        except PredictionInputError as exc:
            raise ApiError(422, str(exc)) from None


# -- running it --------------------------------------------------------------------------------
class BindError(ValueError):
    """The address cannot be listened on (unknown host, port in use, no permission)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening -- before the predictor is loaded, so
    a port in use fails at once, and a client that connects early waits in the backlog
    instead of being refused; port 0 picks a free one (``sock.getsockname()`` says which)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise BindError(f"--host {host}: not an address this machine has ({exc})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"--port {port} is in use on {host}: pick another (--port 0 "
                            "picks a free one)") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"--port {port}: permission denied (ports below 1024 need root); "
                            "pick a port above 1024") from None
        raise BindError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def is_loopback(sock: socket.socket) -> bool:
    """Whether the socket listens on this machine only (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(sock.getsockname()[0]).is_loopback
    except ValueError:
        return False


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_server(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGINT/SIGTERM (uvicorn, one process:
    the predictor is loaded once, and one worker owns it)."""
    import uvicorn
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5,
                            limit_concurrency=512)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
