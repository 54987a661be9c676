"""The FastAPI application: routes, error handlers, and each completion request's way from its body to the
engine and back (a JSON response, or server-sent events as the tokens come)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .admission import Admission, Limits, Plan
from .choices import Completion, head, sse, usage
from .engine import Engine, QueueFull, eos_ids
from .protocol import DeadlineH11Protocol
from .schema import Refused, error_body, parse_request, stop_strings

ROUTES = "GET /health, GET /v1/models and POST /v1/completions"
_GONE = object()  # put on a request's event queue when its client disconnects


class ClientGone(Exception):
    """The client disconnected: nobody will read the response."""


def _error(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (or the response is complete); the body must have been read."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Server:
    """The model's engine, its tokenizer and the request limits; `app` is the FastAPI application. `run` serves
    on a port with the engine's loop in the calling thread; an app served otherwise starts the loop in a thread
    of its own with its first request. The engine's slots are allocated here."""

    def __init__(self, model, tokenizer, name: str, limits: Limits | None = None):
        self.tokenizer, self.name, self.limits = tokenizer, name, limits or Limits()
        lim = self.limits
        self.engine = Engine(model, eos_ids(model, tokenizer), max_batch=lim.max_batch, max_context=lim.max_context,
                             max_queue=lim.max_queue, prefill_chunk=lim.prefill_chunk)
        self.model, self.context = model, self.engine.context
        self.admission = Admission(name, tokenizer, lim, self.context)
        self.created = int(time.time())
        self.running = False
        self.app = self._build_app()

    def uvicorn_config(self, host: str = "127.0.0.1", port: int = 8000, **options) -> uvicorn.Config:
        """uvicorn settings for this app: h11 with a deadline per request and OpenAI-shaped errors, no WebSockets."""
        protocol = functools.partial(DeadlineH11Protocol, timeout=self.limits.request_timeout)
        return uvicorn.Config(self.app, host=host, port=port, http=protocol, ws="none",
                              **{"log_level": "warning", **options})

    def run(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Serve until interrupted: uvicorn in a thread, the engine's loop in this one (Engine.serve_forever)."""
        uv = uvicorn.Server(self.uvicorn_config(host, port))
        web = threading.Thread(target=uv.run, name="babble-http", daemon=True)
        self.running = True
        web.start()
        threading.Thread(target=lambda: (web.join(), self.engine.close()), daemon=True).start()
        try:
            self.engine.serve_forever()  # until uvicorn stops, however it stops
        except KeyboardInterrupt:
            pass
        finally:
            uv.should_exit = True
            web.join(timeout=30)

    def _build_app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_):
            yield
            self.engine.close()  # the server is shutting down

        app = FastAPI(title=f"babblelm: {self.name}", docs_url=None, redoc_url=None, openapi_url=None,
                      redirect_slashes=False, lifespan=lifespan)

        @app.exception_handler(Refused)
        async def refused(_, err: Refused):
            return _error(err.status, err.message, err.param)

        @app.exception_handler(ClientGone)
        async def client_gone(_, err: ClientGone):
            return Response(status_code=499)

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, err: HTTPException):
            return _error(err.status_code, _http_message(request, err), headers=err.headers)

        @app.exception_handler(Exception)
        async def crashed(_, err: Exception):
            return _error(500, f"internal error ({type(err).__name__}); the server logged it")

        @app.get("/health")
        async def health():
            active, queued = self.engine.load()
            return {"status": "ok", "model": self.name, "active": active, "queued": queued}

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                                "owned_by": "babblelm"}]}

        @app.post("/v1/completions")
        async def completions(request: Request):
            plan = self.admission.plan(parse_request(await self._read_body(request)))
            return await (self._stream(request, plan) if plan.req.stream else self._complete(request, plan))

        return app

    async def _read_body(self, request: Request) -> bytes:
        media = request.headers.get("content-type", "")
        if media.split(";")[0].strip().lower() != "application/json":
            raise Refused(415, f"Content-Type must be application/json, got {media[:80]!r}")
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise Refused(413, f"request body exceeds the limit of {limit} bytes")
        except ClientDisconnect:
            raise ClientGone from None
        return bytes(body)

    def _launch(self, request: Request, plan: Plan) -> tuple[Completion, asyncio.Queue, asyncio.Future]:
        """Submit the request to the engine (503 if its queue is full). Each engine step's events for it arrive
        on the returned queue; if the client disconnects, its sequences leave the engine and `_GONE` arrives."""
        if not self.running:
            self.engine.start()
            self.running = True
        req, loop, events = plan.req, asyncio.get_running_loop(), asyncio.Queue()
        completion = Completion(self.tokenizer, plan.prompts, req.n, stop_strings(req), req.logprobs is not None)
        try:
            ticket = self.engine.submit(plan.encoded, plan.sampling, req.n, req.logprobs,
                                        lambda items: loop.call_soon_threadsafe(events.put_nowait, items))
        except QueueFull as err:
            raise Refused(503, str(err)) from None
        completion.ticket = ticket

        def gone(watch: asyncio.Future) -> None:
            if not (watch.cancelled() or watch.exception()):
                ticket.cancel()
                events.put_nowait(_GONE)

        watch = asyncio.ensure_future(_disconnected(request))
        watch.add_done_callback(gone)
        return completion, events, watch

    async def _complete(self, request: Request, plan: Plan) -> dict:
        completion, events, watch = self._launch(request, plan)
        try:
            while not completion.done:
                items = await events.get()
                if items is _GONE:
                    raise ClientGone
                completion.feed(items)
        except (ClientGone, asyncio.CancelledError):
            raise
        except Exception as err:
            raise Refused(500, f"generation failed: {err}") from None
        finally:
            watch.cancel()
            completion.ticket.cancel()
        usage_ = usage(plan.prompt_tokens, completion.completion_tokens())
        return {**head(self.name), "choices": [c.body() for c in completion.choices], "usage": usage_}

    async def _stream(self, request: Request, plan: Plan) -> StreamingResponse:
        completion, events, watch = self._launch(request, plan)
        return StreamingResponse(self._sse(completion, events, watch, plan), media_type="text/event-stream")

    async def _sse(self, completion: Completion, events: asyncio.Queue, watch: asyncio.Future, plan: Plan):
        """A chunk per new piece of text (per token with logprobs), a closing chunk per choice, then `[DONE]`;
        the request leaves the engine when this ends, also when the client went away."""
        req, first = plan.req, head(self.name)
        try:
            while not completion.done:
                items = await events.get()
                if items is _GONE:
                    return
                for choice, piece, start, closing in completion.feed(items):
                    if closing or piece or req.logprobs is not None:
                        yield sse({**first, "choices": [choice.chunk(piece, start, closing)]})
            if req.stream_options is not None and req.stream_options.include_usage:
                yield sse({**first, "choices": [], "usage": usage(plan.prompt_tokens, completion.completion_tokens())})
            yield "data: [DONE]\n\n"
        except Exception as err:  # the response has started: report in-band
            yield sse(error_body(500, f"generation failed: {err}"))
        finally:
            watch.cancel()
            completion.ticket.cancel()


def _http_message(request: Request, err: HTTPException) -> str:
    path = request.url.path[:200]
    if err.status_code == 404:
        return f"unknown path {path!r}; this server serves {ROUTES}"
    if err.status_code == 405:
        allowed = (err.headers or {}).get("Allow", "")
        return f"method {request.method} is not allowed on {path!r}; expected {allowed or 'another method'}"
    return str(err.detail)


def serve(model_path, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, device: str = "auto", name: str | None = None,
          trust_remote_code: bool = False) -> None:
    """Load a model and serve it until interrupted."""
    from ..generate import load_for_generation

    model, tokenizer = load_for_generation(model_path, checkpoint, device=device, trust_remote_code=trust_remote_code)
    name = name or Path(model_path).resolve().name + (f"@{checkpoint}" if checkpoint else "")
    server = Server(model, tokenizer, name, limits)
    lim, engine = server.limits, server.engine
    slots = (f"in {engine.cache.nbytes() / 2**20:.1f} MiB of slots" if engine.batched else
             f"each in a forward pass of its own ({type(model).__name__} is not a babblelm architecture)")
    print(f"serving {server.name} on http://{host}:{port}/v1 (context {server.context}, {lim.max_batch} sequences "
          f"at once {slots}, {lim.max_queue} requests queued)")
    server.run(host, port)
