"""An OpenAI-compatible completions server (FastAPI + uvicorn, the `serve` extra).

    babble serve runs/demo --port 8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"prompt": "the dog", "max_tokens": 10}'

Endpoints: `GET /health` (with the generations active and queued), `GET /v1/models`,
`POST /v1/completions` (prompt, max_tokens, temperature (below 1e-5: greedy, and n greedy choices are
the one greedy answer n times), top_p, top_k, stop, n, stream via server-sent events, logprobs, seed).

Every request is checked before any work starts, and every refusal is a 4xx in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` whose message names the field or place and what
was expected: the body must be a JSON object (`Content-Type: application/json`, UTF-8, each key
once) of at most `max_body_bytes` (413); fields have strict types (no strings for numbers, no
booleans or floats for integers, no NaN or Infinity); prompt length and max_tokens are checked
against the model's context, and the choices of one request (prompts x n) against `max_choices`.
Unknown paths get 404, wrong methods 405, malformed HTTP 400, and a connection that does not send
a whole request within `request_timeout` seconds is answered 408 (if it sent part of one) and closed.

Concurrency: `max_active` generations run at once, each in a worker thread that holds its slot
until it ends, so the event loop stays responsive; up to `max_queue` more requests wait, any
further one gets 503 at once. A client that disconnects gives up its place in the queue, or has
its generation stopped within one decoding step.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from .generate import Generation, Sampling, TextDecoder, context_length

ROUTES = "GET /health, GET /v1/models and POST /v1/completions"
GREEDY_BELOW = 1e-5  # a lower temperature decodes greedily (dividing the logits by it would overflow)


@dataclass
class Limits:
    """The server's bounds (`babble serve --max-...`); None means the default named beside it, and a value
    that would serve nothing (0, a negative or non-finite number) is refused, never read as the default."""

    max_body_bytes: int = 64 * 1024
    max_prompt_tokens: int | None = None  # default: the model's context
    max_tokens: int | None = None  # default: the model's context (or 1024 without a context limit)
    max_n: int = 8
    max_choices: int | None = None  # prompts x n in one request; default: max_n
    max_active: int = 1
    max_queue: int = 16
    request_timeout: float = 10.0  # seconds a connection may take to send one request in full

    def __post_init__(self):
        for name, low in (("max_body_bytes", 1), ("max_prompt_tokens", 1), ("max_tokens", 1), ("max_n", 1),
                          ("max_choices", 1), ("max_active", 1), ("max_queue", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                default = " (leave it out for the default)" if self.__dataclass_fields__[name].default is None else ""
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}{default}, got {value}")
        if not 0 < self.request_timeout < math.inf:
            raise ValueError(f"--request-timeout must be a positive number of seconds, got {self.request_timeout}")


def _unicode(value: Any, expected: str, item: int | None = None) -> str:
    """`value` if it is a string of valid Unicode (no unpaired surrogates: tokenizers refuse them)."""
    at = "" if item is None else f" (item {item})"
    if not isinstance(value, str):
        got = "" if item is None else f" (item {item} is {_json_kind(value)})"
        raise PydanticCustomError("item_type" if got else "string_type", "Input should be {expected}{got}",
                                  {"expected": expected, "got": got})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("unicode", "Input should be valid Unicode, without unpaired surrogates{at}",
                                  {"at": at}) from None
    return value


def _text(value: Any) -> str:
    return _unicode(value, "a string")


def _text_or_texts(value: Any) -> str | list[str]:
    """A string or a list of strings, each valid Unicode."""
    expected = "a string or a list of strings"
    if isinstance(value, list):
        return [_unicode(v, expected, item=i) for i, v in enumerate(value)]
    return _unicode(value, expected)


Text = Annotated[str, PlainValidator(_text)]
TextOrTexts = Annotated[str | list[str], PlainValidator(_text_or_texts)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The `/v1/completions` body: strict types, and unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    model: Text | None = None
    prompt: TextOrTexts
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    stop: TextOrTexts | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    seed: int | None = Field(None, ge=0, le=2**64 - 1)
    echo: bool = False
    user: Text | None = None


def _error_body(status: int, message: str, param: str | None = None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _error(status: int, message: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(_error_body(status, message, param), status_code=status, headers=headers)


def _raw_error(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for use below the application."""
    body = json.dumps(_error_body(status, message)).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class _Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class _ClientGone(Exception):
    """The client disconnected: nobody will read the response."""


class _Gate:
    """At most `limit` slots held at once and `max_queue` requests waiting for one; beyond that, 503.

    A released slot passes straight to the longest waiter. A waiter whose client leaves gives up its place.
    """

    def __init__(self, limit: int, max_queue: int):
        self.limit, self.max_queue, self.active = limit, max_queue, 0
        self.queue: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self, gone: asyncio.Future) -> bool:
        """True once a slot is held; False (holding none) if `gone` completes first."""
        if self.active < self.limit and not self.queue:
            self.active += 1
            return True
        if len(self.queue) >= self.max_queue:
            raise _Refused(503, f"server busy: {len(self.queue)} requests already queued; retry later")
        turn = asyncio.get_running_loop().create_future()
        self.queue.append(turn)
        held = False
        try:
            await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
            held = turn.done() and not gone.done()
            return held
        finally:
            if not turn.done():
                self.queue.remove(turn)
                turn.cancel()
            elif not held:
                self.release()

    def release(self) -> None:
        if self.queue:
            self.queue.popleft().set_result(None)
        else:
            self.active -= 1


class _Job:
    """One request's generations, run in a worker thread; `cancel` (from any thread) stops them within a step."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.generation: Generation | None = None

    def follow(self, generation: Generation) -> Generation:
        """Track the running generation so that `cancel` reaches it."""
        self.generation = generation
        if self.cancelled.is_set():
            generation.stop_all()
        return generation

    def cancel(self) -> None:
        self.cancelled.set()
        if self.generation is not None:
            self.generation.stop_all()


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (or the response is complete); the body must have been read."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _prefix_table(s: str) -> list[int]:
    """Knuth-Morris-Pratt: table[k] is the longest proper prefix of s[:k + 1] that is also its suffix."""
    table, k = [0] * len(s), 0
    for i in range(1, len(s)):
        while k and s[i] != s[k]:
            k = table[k - 1]
        if s[i] == s[k]:
            k += 1
        table[i] = k
    return table


class StopScanner:
    """Cuts a row's text before the first stop string to be completed (the longest, if several end at once),
    holding back the longest tail that may begin one.

    One Knuth-Morris-Pratt matcher per stop string: each new character costs O(1) amortized per stop string,
    however long the stop strings and the text, and the result does not depend on how the text is split.
    """

    def __init__(self, stops: list[str], tables: list[list[int]] | None = None):
        self.stops, self.tables = stops, tables if tables is not None else [_prefix_table(s) for s in stops]
        self.matched = [0] * len(stops)
        self.held: collections.deque[str] = collections.deque()
        self.stopped = False

    def fresh(self) -> StopScanner:
        """A new scanner for the same stop strings (the tables are shared)."""
        return StopScanner(self.stops, self.tables)

    def feed(self, text: str) -> str:
        """The text that is safe to emit now; sets `stopped` once a stop string has appeared."""
        if self.stopped:
            return ""
        for ch in text:
            self.held.append(ch)
            ended = [len(s) for k, s in enumerate(self.stops) if self._advance(k, ch)]
            if ended:
                self.stopped = True
                return self._emit(len(self.held) - max(ended), clear=True)
        return self._emit(len(self.held) - max(self.matched, default=0))

    def flush(self) -> str:
        return self._emit(len(self.held), clear=True)

    def _advance(self, k: int, ch: str) -> bool:
        """Feed one character to stop string k's matcher; True when the stop string is complete."""
        s, table, m = self.stops[k], self.tables[k], self.matched[k]
        while m and s[m] != ch:
            m = table[m - 1]
        m += s[m] == ch
        if m == len(s):
            self.matched[k] = table[m - 1]
            return True
        self.matched[k] = m
        return False

    def _emit(self, count: int, clear: bool = False) -> str:
        out = "".join(self.held.popleft() for _ in range(count))
        if clear:
            self.held.clear()
        return out


class _Choice:
    """One returned sequence: text, finish reason, OpenAI-style logprobs."""

    def __init__(self, index: int, tokenizer, scanner: StopScanner, offset: int, logprobs: bool):
        self.index, self.tokenizer, self.decoder, self.scanner = index, tokenizer, TextDecoder(tokenizer), scanner
        self.text, self.offset, self.tokens, self.finish_reason = "", offset, 0, None
        self.logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} if logprobs else None

    def add(self, token) -> str:
        """Take one token; return the text it makes safe to emit."""
        self.tokens += 1
        piece = self.scanner.feed(self.decoder.push(token.id))
        if self.logprobs is not None:
            lp, decode = self.logprobs, self.tokenizer.decode
            lp["tokens"].append(decode([token.id]))
            lp["token_logprobs"].append(token.logprob)
            lp["top_logprobs"].append({decode([i]): v for i, v in token.top} if token.top else None)
            lp["text_offset"].append(self.offset + len(self.text))
        self.text += piece
        if self.scanner.stopped:
            self.finish_reason = "stop"
            self._drop_unreturned_logprobs()
        return piece

    def _drop_unreturned_logprobs(self) -> None:
        """After a stop string: leave out the logprobs of the tokens that added nothing to the returned text
        (the stop string's own tokens), so `logprobs.tokens` matches `text`."""
        lp = self.logprobs
        while lp is not None and lp["text_offset"] and lp["text_offset"][-1] >= self.offset + len(self.text):
            for values in lp.values():
                values.pop()

    def close(self, eos: bool) -> str:
        """End the choice (EOS or length, unless a stop string ended it); return the held-back text."""
        if self.finish_reason is not None:
            return ""
        tail = self.scanner.feed(self.decoder.flush())
        tail += "" if self.scanner.stopped else self.scanner.flush()
        self.finish_reason = "stop" if eos or self.scanner.stopped else "length"
        self.text += tail
        return tail

    def logprobs_since(self, start: int) -> dict | None:
        return None if self.logprobs is None else {k: v[start:] for k, v in self.logprobs.items()}

    def chunk(self, piece: str, start: int, closing: bool) -> dict:
        """A streamed choice: the new text piece, its logprobs, and the finish reason when closing."""
        return {"index": self.index, "text": piece, "logprobs": self.logprobs_since(start),
                "finish_reason": self.finish_reason if closing else None}


_END = object()


class Server:
    """The model, its tokenizer and the request limits; `app` is the FastAPI application."""

    def __init__(self, model, tokenizer, name: str, limits: Limits | None = None):
        self.model, self.tokenizer, self.name, self.limits = model, tokenizer, name, limits or Limits()
        ctx = context_length(model)
        self.context = ctx
        self.max_prompt = self.limits.max_prompt_tokens if self.limits.max_prompt_tokens is not None else ctx
        self.max_tokens = self.limits.max_tokens if self.limits.max_tokens is not None else ctx or 1024
        self.max_choices = self.limits.max_choices if self.limits.max_choices is not None else self.limits.max_n
        self.created = int(time.time())
        self.gate: _Gate | None = None
        self.workers = ThreadPoolExecutor(self.limits.max_active, thread_name_prefix="babble-serve")  # one a slot
        self.app = self._build_app()

    def uvicorn_config(self, host: str = "127.0.0.1", port: int = 8000, **options) -> uvicorn.Config:
        """uvicorn settings for this app: h11 with a deadline per request and OpenAI-shaped errors, no WebSockets."""
        protocol = functools.partial(_DeadlineH11Protocol, timeout=self.limits.request_timeout)
        return uvicorn.Config(self.app, host=host, port=port, http=protocol, ws="none",
                              **{"log_level": "warning", **options})

    def _build_app(self) -> FastAPI:
        app = FastAPI(title=f"babblelm: {self.name}", docs_url=None, redoc_url=None, openapi_url=None,
                      redirect_slashes=False)

        @app.exception_handler(_Refused)
        async def refused(_, err: _Refused):
            return _error(err.status, err.message, err.param)

        @app.exception_handler(_ClientGone)
        async def client_gone(_, err: _ClientGone):
            return Response(status_code=499)

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, err: HTTPException):
            return _error(err.status_code, _http_message(request, err), headers=err.headers)

        @app.exception_handler(Exception)
        async def crashed(_, err: Exception):
            return _error(500, f"internal error ({type(err).__name__}); the server logged it")

        @app.get("/health")
        async def health():
            gate = self._gate()
            return {"status": "ok", "model": self.name, "active": gate.active, "queued": len(gate.queue)}

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                                "owned_by": "babblelm"}]}

        @app.post("/v1/completions")
        async def completions(request: Request):
            req = self._parse(await self._read_body(request))
            prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
            encoded = [self._encode(p) for p in prompts]
            temperature = req.temperature if req.temperature >= GREEDY_BELOW else 0.0
            sampling = Sampling(req.max_tokens, temperature, req.top_k, req.top_p, req.seed)
            for ids in encoded:
                try:
                    sampling.check(len(ids), self.context)
                except ValueError as err:
                    raise _Refused(400, str(err), "max_tokens") from None
            plan = (req, prompts, encoded, sampling)
            return await (self._stream(request, *plan) if req.stream else self._complete(request, *plan))

        return app

    def _gate(self) -> _Gate:
        if self.gate is None:  # created inside the server's event loop
            self.gate = _Gate(self.limits.max_active, self.limits.max_queue)
        return self.gate

    async def _read_body(self, request: Request) -> bytes:
        media = request.headers.get("content-type", "")
        if media.split(";")[0].strip().lower() != "application/json":
            raise _Refused(415, f"Content-Type must be application/json, got {media[:80]!r}")
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _Refused(413, f"request body exceeds the limit of {limit} bytes")
        except ClientDisconnect:
            raise _ClientGone from None
        return bytes(body)

    def _parse(self, body: bytes) -> CompletionRequest:
        data = _json_object(body)
        try:
            req = CompletionRequest.model_validate(data)
        except ValidationError as err:
            raise _Refused(400, *_describe(err.errors())) from None
        if req.model not in (None, self.name):
            raise _Refused(404, f"model {req.model[:100]!r} not found; this server serves {self.name!r}", "model")
        choices = (1 if isinstance(req.prompt, str) else len(req.prompt)) * req.n
        checks = [
            (req.echo, "echo is not supported", "echo"),
            (isinstance(req.prompt, list) and not req.prompt, "prompt must not be an empty list", "prompt"),
            (req.n > self.limits.max_n, f"n must be <= {self.limits.max_n}, got {req.n}", "n"),
            (choices > self.max_choices, f"prompts x n must be <= {self.max_choices} choices per request, "
                                         f"got {choices}", "prompt"),
            (req.max_tokens > self.max_tokens, f"max_tokens must be <= {self.max_tokens}, got {req.max_tokens}",
             "max_tokens"),
            (isinstance(req.stop, list) and len(req.stop) > 4, "stop takes at most 4 strings", "stop"),
            (any(not s for s in _stops(req)), "stop strings must not be empty", "stop"),
            (req.stream_options is not None and not req.stream, "stream_options needs stream: true", "stream_options"),
        ]
        for failed, message, param in checks:
            if failed:
                raise _Refused(400, message, param)
        return req

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt).input_ids
        if self.max_prompt is not None and len(ids) > self.max_prompt:
            raise _Refused(400, f"prompt is {len(ids)} tokens; the limit is {self.max_prompt}", "prompt")
        if not ids:
            raise _Refused(400, "prompt must hold at least one token", "prompt")
        return ids

    async def _launch(self, request: Request, work: Callable[[_Job], Any]) -> tuple[_Job, asyncio.Future]:
        """Wait for a slot (503 if the queue is full), then run `work(job)` in a worker thread that holds it.

        The slot is released when the thread ends. If the client disconnects, it gives up its place in the queue
        (`_ClientGone`), or its job is cancelled.
        """
        gate, job, loop = self._gate(), _Job(), asyncio.get_running_loop()
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            held = await gate.acquire(gone)
        except BaseException:
            gone.cancel()
            raise
        if not held:
            raise _ClientGone
        gone.add_done_callback(lambda f: f.cancelled() or f.exception() or job.cancel())

        def finish():
            gone.cancel()
            gate.release()

        def run():
            try:
                return work(job)
            finally:
                loop.call_soon_threadsafe(finish)

        return job, loop.run_in_executor(self.workers, run)

    def _generation(self, req, ids: list[int], sampling: Sampling) -> Generation:
        return Generation(self.model, self.tokenizer, ids, sampling, n=req.n, logprobs=req.logprobs)

    def _events(self, job: _Job, req, prompts, encoded, sampling):
        """(choice, text piece, first new logprob, closing) for every choice, prompt after prompt (worker thread)."""
        scanner = StopScanner(_stops(req))
        for k, (prompt, ids) in enumerate(zip(prompts, encoded)):
            if job.cancelled.is_set():
                return
            yield from self._run(req, prompt, job.follow(self._generation(req, ids, sampling)), k * req.n, scanner)

    def _run(self, req, prompt: str, generation: Generation, first_index: int, scanner: StopScanner):
        """Read `req.n` samples of one prompt, yielding (choice, text piece, first new logprob, closing)."""
        choices = [_Choice(first_index + r, self.tokenizer, scanner.fresh(), len(prompt), req.logprobs is not None)
                   for r in range(req.n)]
        for step in generation:
            for tok in step:
                choice, start = choices[tok.row], choices[tok.row].tokens
                piece = choice.add(tok)
                if choice.finish_reason == "stop":
                    generation.stop_row(tok.row)
                yield choice, piece, start, False
        for r, choice in enumerate(choices):
            yield choice, choice.close(eos=r in generation.eos_rows), choice.tokens, True

    async def _complete(self, request: Request, req, prompts, encoded, sampling) -> dict:
        def work(job: _Job) -> list[_Choice]:
            return [c for c, _, _, closing in self._events(job, req, prompts, encoded, sampling) if closing]

        job, done = await self._launch(request, work)
        try:
            choices = await done
        except asyncio.CancelledError:
            job.cancel()
            raise
        except Exception as err:
            raise _Refused(500, f"generation failed: {err}") from None
        if job.cancelled.is_set():
            raise _ClientGone
        body = [{"index": c.index, "text": c.text, "logprobs": c.logprobs_since(0), "finish_reason": c.finish_reason}
                for c in choices]
        usage = _usage(sum(map(len, encoded)), sum(c.tokens for c in choices))
        return {**self._head(), "choices": body, "usage": usage}

    async def _stream(self, request: Request, req, prompts, encoded, sampling) -> StreamingResponse:
        """Server-sent events: a chunk per new piece of text, a closing chunk per choice, then `[DONE]`."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()

        def put(item) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        def work(job: _Job) -> None:
            try:
                for choice, piece, start, closing in self._events(job, req, prompts, encoded, sampling):
                    if closing or piece or req.logprobs is not None:
                        put((choice.chunk(piece, start, closing), choice.tokens if closing else 0))
            except Exception as err:
                put(err)
            finally:
                put(_END)

        job, _ = await self._launch(request, work)
        return StreamingResponse(self._sse(job, events, req, sum(map(len, encoded))),
                                 media_type="text/event-stream")

    async def _sse(self, job: _Job, events: asyncio.Queue, req, prompt_tokens: int):
        """The events the worker thread puts on `events`, as server-sent events; cancels the job when it ends."""
        head, completion_tokens = self._head(), 0
        try:
            while (item := await events.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                chunk, tokens = item
                completion_tokens += tokens
                yield _sse({**head, "choices": [chunk]})
            if req.stream_options is not None and req.stream_options.include_usage:
                yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})
            yield "data: [DONE]\n\n"
        except Exception as err:  # the response has started: report in-band
            yield _sse(_error_body(500, f"generation failed: {err}"))
        finally:  # also when the client went away
            job.cancel()

    def _head(self) -> dict:
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.name}


class _DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol where each request must arrive in full within `timeout` seconds of the connection's
    start, the previous response or the request's first byte. Past that, a connection that sent part of a request
    is answered 408 and closed, an idle one is closed. Malformed HTTP is answered 400 in OpenAI's error shape."""

    def __init__(self, *args, timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout, self.deadline = timeout, None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._arm()  # the first byte of a new request
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_raw_error(400, "malformed HTTP/1.1 request: expected a request line, headers and a "
                                             "body framed by Content-Length or chunked encoding"))
        self.transport.close()

    def _arm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return  # the request arrived in full: its response is the application's business
        partial = self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]
        if partial and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no response started
            message = f"the request did not arrive in full within {self.timeout:g} seconds"
            self.transport.write(_raw_error(408, message))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application's reads see a disconnect; its writes go nowhere
            self.cycle.message_event.set()
        self.transport.close()


def _json_object(body: bytes) -> dict:
    """The body as a JSON object (UTF-8, no duplicate keys), else 400 saying what is wrong. NaN and Infinity parse
    here, and every field refuses them."""
    if not body.strip():
        raise _Refused(400, "request body is empty; expected a JSON object")
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as err:
        raise _Refused(400, f"request body is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise _Refused(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, integers of over 4300 digits, _no_duplicates
        raise _Refused(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise _Refused(400, f"request body must be a JSON object, got {_json_kind(data)}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {key[:100]!r} appears more than once in an object; expected each key once")
        seen.add(key)
    return dict(pairs)


def _json_kind(value: Any) -> str:
    """How a JSON value reads in a message: `true`, `null`, `-1`, `a 400-digit number`, `a string`, `an array`..."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else f"a {len(text)}-digit number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


_SAYS_WHAT_IT_GOT = {"missing", "extra_forbidden", "item_type", "unicode"}  # error types whose message is enough


def _describe(errors: list[dict]) -> tuple[str, str | None]:
    """Pydantic errors as one line, `field: problem (got ...); ...`, and the first field."""
    def where(loc) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"

    def one(e: dict) -> str:
        got = "" if e["type"] in _SAYS_WHAT_IT_GOT else f" (got {_json_kind(e['input'])})"
        return f"{where(e['loc'])}: {e['msg']}{got}"

    text = "; ".join(one(e) for e in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    loc = errors[0]["loc"] if errors else ()
    return text, str(loc[0]) if loc else None


def _http_message(request: Request, err: HTTPException) -> str:
    path = request.url.path[:200]
    if err.status_code == 404:
        return f"unknown path {path!r}; this server serves {ROUTES}"
    if err.status_code == 405:
        allowed = (err.headers or {}).get("Allow", "")
        return f"method {request.method} is not allowed on {path!r}; expected {allowed or 'another method'}"
    return str(err.detail)


def _stops(req: CompletionRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def serve(model_path, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, device: str = "auto", name: str | None = None,
          trust_remote_code: bool = False) -> None:
    """Load a model and serve it until interrupted."""
    from .generate import load_for_generation

    model, tokenizer = load_for_generation(model_path, checkpoint, device=device, trust_remote_code=trust_remote_code)
    name = name or Path(model_path).resolve().name + (f"@{checkpoint}" if checkpoint else "")
    server = Server(model, tokenizer, name, limits)
    print(f"serving {server.name} on http://{host}:{port}/v1 (context {server.context}, "
          f"{server.limits.max_active} at once, {server.limits.max_queue} queued)")
    uvicorn.Server(server.uvicorn_config(host, port)).run()
