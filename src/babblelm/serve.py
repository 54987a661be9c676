"""An OpenAI-compatible completions server (FastAPI + uvicorn, the `serve` extra).

    babble serve runs/demo --port 8000
    curl http://127.0.0.1:8000/v1/completions -d '{"prompt": "the dog", "max_tokens": 10}'

Endpoints: `GET /health`, `GET /v1/models`, `POST /v1/completions` (prompt, max_tokens,
temperature, top_p, top_k, stop, n, stream via server-sent events, logprobs, seed). Every
request is checked against `Limits`: body size (413), prompt length and max_tokens against the
model's context (400), and concurrency: `max_active` generations run at once, up to `max_queue`
more wait, and any further request is refused with 503 at once. Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`. Generation runs in worker threads through
`babblelm.generate.Generation`, so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .generate import Generation, Sampling, TextDecoder, context_length


@dataclass
class Limits:
    max_body_bytes: int = 64 * 1024
    max_prompt_tokens: int | None = None  # default: the model's context
    max_tokens: int | None = None  # default: the model's context (or 1024 without a context limit)
    max_n: int = 8
    max_active: int = 1
    max_queue: int = 16


class CompletionRequest(BaseModel):
    """The `/v1/completions` body; unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: dict | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    seed: int | None = None
    echo: bool = False
    user: str | None = None


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status_code=status)


class _Refused(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class _Gate:
    """At most `active` holders at once and `queue` waiters; beyond that, refuse."""

    def __init__(self, active: int, queue: int):
        self.sem, self.max_queue, self.waiting = asyncio.Semaphore(active), queue, 0

    async def acquire(self) -> None:
        if self.sem.locked() and self.waiting >= self.max_queue:
            raise _Refused(503, f"server busy: {self.waiting} requests already queued; retry later")
        self.waiting += 1
        try:
            await self.sem.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self.sem.release()


class StopScanner:
    """Cuts a row's text at the first stop string, holding back text that may start one."""

    def __init__(self, stops: list[str]):
        self.stops, self.pending, self.stopped = stops, "", False

    def feed(self, text: str) -> str:
        """The text that is safe to emit now; sets `stopped` once a stop string has appeared."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending, self.stopped = self.pending[: min(hits)], "", True
            return out
        keep = max((k for s in self.stops for k in range(1, len(s)) if self.pending.endswith(s[:k])), default=0)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class _Choice:
    """One returned sequence: text, finish reason, OpenAI-style logprobs."""

    def __init__(self, index: int, tokenizer, stops: list[str], offset: int, logprobs: bool):
        self.index, self.tokenizer, self.decoder, self.scanner = index, tokenizer, TextDecoder(tokenizer), StopScanner(stops)
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
        return piece

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


class Server:
    """The model, its tokenizer and the request limits; `app` is the FastAPI application."""

    def __init__(self, model, tokenizer, name: str, limits: Limits | None = None):
        self.model, self.tokenizer, self.name, self.limits = model, tokenizer, name, limits or Limits()
        ctx = context_length(model)
        self.context = ctx
        self.max_prompt = self.limits.max_prompt_tokens or ctx
        self.max_tokens = self.limits.max_tokens or ctx or 1024
        self.created = int(time.time())
        self.gate: _Gate | None = None
        self.app = self._build_app()

    def _build_app(self) -> FastAPI:
        app = FastAPI(title=f"babblelm: {self.name}")

        @app.exception_handler(_Refused)
        async def refused(_, err: _Refused):
            return _error(err.status, err.message, err.param)

        @app.exception_handler(HTTPException)
        async def http_error(_, err: HTTPException):
            return _error(err.status_code, str(err.detail))

        @app.exception_handler(RequestValidationError)
        async def invalid(_, err: RequestValidationError):
            return _error(400, _describe(err.errors()))

        @app.get("/health")
        async def health():
            gate = self._gate()
            return {"status": "ok", "model": self.name, "queued": gate.waiting}

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                                "owned_by": "babblelm"}]}

        @app.post("/v1/completions")
        async def completions(request: Request):
            req = self._parse(await self._read_body(request))
            prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
            encoded = [self._encode(p) for p in prompts]
            sampling = Sampling(req.max_tokens, req.temperature, req.top_k, req.top_p, req.seed)
            for ids in encoded:
                try:
                    sampling.check(len(ids), self.context)
                except ValueError as err:
                    raise _Refused(400, str(err), "max_tokens") from None
            gate = self._gate()
            await gate.acquire()
            if req.stream:
                return StreamingResponse(self._stream(req, prompts, encoded, sampling, gate), media_type="text/event-stream")
            try:
                return await asyncio.to_thread(self._complete, req, prompts, encoded, sampling)
            finally:
                gate.release()

        return app

    def _gate(self) -> _Gate:
        if self.gate is None:  # created inside the server's event loop
            self.gate = _Gate(self.limits.max_active, self.limits.max_queue)
        return self.gate

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refused(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Refused(413, f"request body exceeds the limit of {limit} bytes")
        return bytes(body)

    def _parse(self, body: bytes) -> CompletionRequest:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _Refused(400, f"request body is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise _Refused(400, f"request body must be a JSON object, got {type(data).__name__}")
        try:
            req = CompletionRequest.model_validate(data)
        except ValidationError as err:
            raise _Refused(400, _describe(err.errors())) from None
        if req.model not in (None, self.name):
            raise _Refused(404, f"model {req.model!r} not found; this server serves {self.name!r}", "model")
        checks = [
            (req.echo, "echo is not supported", "echo"),
            (isinstance(req.prompt, list) and not req.prompt, "prompt must not be an empty list", "prompt"),
            (req.n > self.limits.max_n, f"n must be <= {self.limits.max_n}, got {req.n}", "n"),
            (req.max_tokens > self.max_tokens, f"max_tokens must be <= {self.max_tokens}, got {req.max_tokens}", "max_tokens"),
            (isinstance(req.stop, list) and len(req.stop) > 4, "stop takes at most 4 strings", "stop"),
            (any(not s for s in _stops(req)), "stop strings must not be empty", "stop"),
        ]
        for failed, message, param in checks:
            if failed:
                raise _Refused(400, message, param)
        return req

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt).input_ids
        if self.max_prompt is not None and len(ids) > self.max_prompt:
            raise _Refused(400, f"prompt is {len(ids)} tokens; the limit is {self.max_prompt}", "prompt")
        return ids

    def _generation(self, req, ids: list[int], sampling: Sampling) -> Generation:
        return Generation(self.model, self.tokenizer, ids, sampling, n=req.n, logprobs=req.logprobs)

    def _run(self, req, prompt: str, generation: Generation, first_index: int):
        """Read `req.n` samples of one prompt, yielding (choice, text piece, first new logprob, closing)."""
        choices = [_Choice(first_index + r, self.tokenizer, _stops(req), len(prompt), req.logprobs is not None)
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

    def _complete(self, req, prompts, encoded, sampling) -> dict:
        choices = []
        for k, (prompt, ids) in enumerate(zip(prompts, encoded)):
            events = self._run(req, prompt, self._generation(req, ids, sampling), k * req.n)
            choices += [c for c, _, _, closing in events if closing]
        body = [{"index": c.index, "text": c.text, "logprobs": c.logprobs_since(0), "finish_reason": c.finish_reason}
                for c in choices]
        usage = _usage(sum(map(len, encoded)), sum(c.tokens for c in choices))
        return {**self._head(), "choices": body, "usage": usage}

    async def _stream(self, req, prompts, encoded, sampling, gate: _Gate):
        """Server-sent events: a chunk per new piece of text, a closing chunk per choice, then `[DONE]`."""
        head, completion_tokens = self._head(), 0
        try:
            for k, (prompt, ids) in enumerate(zip(prompts, encoded)):
                generation = self._generation(req, ids, sampling)
                events = self._run(req, prompt, generation, k * req.n)
                try:
                    while (item := await asyncio.to_thread(next, events, None)) is not None:
                        choice, piece, start, closing = item
                        if closing:
                            completion_tokens += choice.tokens
                        elif not piece and req.logprobs is None:
                            continue
                        chunk = {"index": choice.index, "text": piece, "logprobs": choice.logprobs_since(start),
                                 "finish_reason": choice.finish_reason if closing else None}
                        yield _sse({**head, "choices": [chunk]})
                finally:  # also when the client went away: stop generating
                    generation.stop_all()
                    with contextlib.suppress(ValueError):  # still running in a worker thread: it ends by itself
                        events.close()
            if (req.stream_options or {}).get("include_usage"):
                yield _sse({**head, "choices": [], "usage": _usage(sum(map(len, encoded)), completion_tokens)})
            yield "data: [DONE]\n\n"
        except Exception as err:  # the response has started: report in-band, never crash the server
            yield _sse({"error": {"message": f"generation failed: {err}", "type": "server_error", "param": None, "code": 500}})
        finally:
            gate.release()

    def _head(self) -> dict:
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": self.name}


def _stops(req: CompletionRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _describe(errors) -> str:
    """Pydantic errors as one line: `field: problem; field: problem`."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)


def serve(model_path, checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, device: str = "auto", name: str | None = None) -> None:
    """Load a model and serve it until interrupted."""
    import uvicorn

    from .generate import load_for_generation

    model, tokenizer = load_for_generation(model_path, checkpoint, device=device)
    name = name or Path(model_path).resolve().name + (f"@{checkpoint}" if checkpoint else "")
    server = Server(model, tokenizer, name, limits)
    print(f"serving {server.name} on http://{host}:{port}/v1 (context {server.context}, "
          f"{server.limits.max_active} at once, {server.limits.max_queue} queued)")
    uvicorn.run(server.app, host=host, port=port, log_level="warning")
