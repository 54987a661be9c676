"""`babble serve` under good, bad and hostile input: the official `openai` client on 127.0.0.1, raw sockets for
what clients do not send (half requests, dropped connections, malformed HTTP), and a seeded fuzz of bad requests
that must all get a 4xx in OpenAI's error shape while the server keeps serving."""

import collections
import contextlib
import http.client
import json
import random
import socket
import threading
import time

import pytest

from babblelm.config import load_config
from babblelm.generate import load_for_generation
from babblelm.serve.app import Limits, Server
from babblelm.serve.stops import StopScanner
from babblelm.train.launch import train
from conftest import tiny_raw

REQUEST_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def run_dir(small_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("serve") / "run"
    train(load_config(raw=tiny_raw(small_corpus, run, train={"epochs": 0.2})), progress=False)
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pace:
    """A hook on the model: `slow(seconds)` makes each decoding step take that long and never end at EOS."""

    def __init__(self, model, eos_id: int):
        self.delay, self.eos_id = 0.0, eos_id
        model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if self.delay:
            time.sleep(self.delay)
            output.logits[..., self.eos_id] = float("-inf")
        return output

    @contextlib.contextmanager
    def slow(self, seconds: float):
        self.delay = seconds
        try:
            yield
        finally:
            self.delay = 0.0


@pytest.fixture(scope="module")
def server(run_dir):
    """The server on 127.0.0.1 in a thread; 1 sequence at a time and 1 request waiting, so overload is testable."""
    import uvicorn

    model, tok = load_for_generation(run_dir, device="cpu")
    server = Server(model, tok, "tiny", Limits(max_batch=1, max_queue=1, max_body_bytes=4096,
                                               request_timeout=REQUEST_TIMEOUT))
    server.pace = Pace(model, tok.eos_token_id)
    port = _free_port()
    uv = uvicorn.Server(server.uvicorn_config("127.0.0.1", port))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 300  # only a server that never starts fails here
    while not uv.started:
        assert time.time() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    server.url, server.port = f"http://127.0.0.1:{port}", port
    yield server
    uv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def call(server, method: str, path: str, body: bytes | None = None, content_type: str | None = "application/json",
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        head = {"Content-Type": content_type} if content_type is not None else {}
        conn.request(method, path, body=body, headers={**head, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post(server, payload) -> tuple[int, dict]:
    status, _, body = call(server, "POST", "/v1/completions", json.dumps(payload).encode())
    return status, json.loads(body)


def refused(server, payload, *mentions: str) -> dict:
    """The error of a completion request that must be refused."""
    status, _, body = call(server, "POST", "/v1/completions", json.dumps(payload).encode())
    return assert_openai_error(status, body, *mentions)


def health(server) -> dict:
    return json.loads(call(server, "GET", "/health")[2])


def assert_openai_error(status: int, body: bytes, *mentions: str) -> dict:
    """A 4xx whose body is exactly OpenAI's error shape, naming each of `mentions`, without a traceback."""
    assert 400 <= status < 500, (status, body[:300])
    assert b"Traceback" not in body and b'File "' not in body, body[:300]
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error" and error["code"] == status, error
    assert isinstance(error["message"], str) and 0 < len(error["message"]) < 1000, error
    for mention in mentions:
        assert mention in error["message"], (mention, error)
    return error


def wait_for(condition, seconds: float) -> None:
    """Wait until `condition()` holds; fail after `seconds` (only a hung server fails here)."""
    start = time.perf_counter()
    while not condition():
        assert time.perf_counter() - start < seconds, f"not within {seconds} s"
        time.sleep(0.02)


def raw_request(server, payload: dict) -> socket.socket:
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    sock.settimeout(seconds)
    start, data = time.perf_counter(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.perf_counter() - start


# --- the OpenAI client: completions, errors, overload ---------------------------------------------------------


def test_server_completions(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    greedy = client.completions.create(model="tiny", prompt="the dog", max_tokens=6, temperature=0, logprobs=2)
    choice = greedy.choices[0]
    assert choice.finish_reason in ("length", "stop") and greedy.usage.prompt_tokens >= 2
    assert greedy.usage.completion_tokens == len(choice.logprobs.tokens) <= 6
    assert all(lp <= 0 and len(top) == 2 for lp, top in zip(choice.logprobs.token_logprobs, choice.logprobs.top_logprobs))
    again = client.completions.create(model="tiny", prompt="the dog", max_tokens=6, temperature=0)
    assert again.choices[0].text == choice.text

    many = client.completions.create(model="tiny", prompt=["the dog", "a cat"], max_tokens=5, n=2, temperature=1.0,
                                     top_p=0.9, seed=5)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]

    stopped = client.completions.create(model="tiny", prompt="the dog", max_tokens=20, temperature=0, stop=[" "],
                                        logprobs=1)
    text, lp = stopped.choices[0].text, stopped.choices[0].logprobs
    assert " " not in text and stopped.choices[0].finish_reason == "stop"
    assert "".join(lp.tokens).startswith(text) and all(o < len("the dog") + len(text) for o in lp.text_offset)

    chunks = list(client.completions.create(model="tiny", prompt="the dog", max_tokens=6, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == choice.text and chunks[-1].usage.completion_tokens == greedy.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason


def test_server_rejects_bad_requests(client, server):
    import openai
    import urllib.error
    import urllib.request

    cases = [(dict(max_tokens=500), 400, "max_tokens must be <= 32"), (dict(top_p=3), 400, "top_p"),
             (dict(n=50), 400, "n must be <= 8"), (dict(model="other"), 404, "not found"),
             (dict(extra_body={"bogus": 1}), 400, "bogus: Extra inputs"),
             (dict(prompt="the dog " * 40), 400, "prompt is")]
    for change, status, message in cases:
        with pytest.raises(openai.APIStatusError) as err:
            client.completions.create(**{"model": "tiny", "prompt": "x", **change})
        assert err.value.status_code == status and message in err.value.message, change
    for body, status, message in [(b"{not json", 400, "not valid JSON"), (b"[1]", 400, "JSON object"),
                                  (b"{}", 400, "prompt: Field required"), (b"x" * 5000, 413, "exceeds the limit")]:
        request = urllib.request.Request(server.url + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=60)
        assert err.value.code == status and message in json.loads(err.value.read())["error"]["message"]
    assert json.loads(urllib.request.urlopen(server.url + "/health", timeout=60).read())["status"] == "ok"


def test_server_refuses_beyond_queue(client, server):
    """1 running + 1 queued: of 6 simultaneous requests some get 503 at once, the others complete."""
    import openai

    outcomes = []

    def call_once():
        try:
            client.completions.create(model="tiny", prompt="the dog", max_tokens=25, temperature=1.0)
            outcomes.append(200)
        except openai.APIStatusError as err:
            outcomes.append(err.status_code)

    threads = [threading.Thread(target=call_once) for _ in range(6)]
    with server.pace.slow(0.01):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(set(outcomes)) == [200, 503] and outcomes.count(200) >= 2
    assert client.completions.create(model="tiny", prompt="the dog", max_tokens=2).choices  # still serving


# --- bounds on the work one request may ask for -------------------------------------------------------------------


def test_greedy_n_returns_n_copies_of_the_greedy_choice(server):
    """temperature 0 (or below 1e-5) has one answer: n > 1 returns it n times, streamed or not, never a 500."""
    payload = {"prompt": "the dog", "max_tokens": 5, "temperature": 0}
    status, one = post(server, payload)
    assert status == 200, one
    status, body = post(server, {**payload, "n": 3})
    assert status == 200, body
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == \
        [(i, one["choices"][0]["text"], one["choices"][0]["finish_reason"]) for i in range(3)]
    assert body["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]
    stream = {**payload, "n": 2, "temperature": 1e-6, "stream": True, "logprobs": 1}
    status, _, raw = call(server, "POST", "/v1/completions", json.dumps(stream).encode())
    events = [json.loads(line[len("data: "):]) for line in raw.decode().splitlines() if line.startswith("data: {")]
    assert status == 200 and not any("error" in e for e in events), events
    texts = {i: "".join(c["text"] for e in events for c in e["choices"] if c["index"] == i) for i in range(2)}
    assert texts == {0: one["choices"][0]["text"], 1: one["choices"][0]["text"]}


@pytest.mark.parametrize("limit, value", [("max_tokens", 0), ("max_prompt_tokens", 0), ("max_choices", 0), ("max_n", 0),
                                          ("max_batch", 0), ("max_context", 0), ("prefill_chunk", 0),
                                          ("max_body_bytes", 0), ("max_queue", -1),
                                          ("request_timeout", -1), ("request_timeout", 0.0),
                                          ("request_timeout", float("nan"))])
def test_limits_that_would_serve_nothing_are_refused(limit, value):
    """0 never silently means "the default" (None does), and a limit that would refuse or drop every request is
    refused before the model loads."""
    with pytest.raises(ValueError, match=f"--{limit.replace('_', '-')} must be"):
        Limits(**{limit: value})


def test_serve_refuses_a_zero_limit_on_one_line(run_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "babblelm.cli", "serve", str(run_dir), "--max-tokens", "0", "--port",
                           str(_free_port())], capture_output=True, text=True, env=env, timeout=120)  # never serves
    assert proc.returncode == 2 and proc.stderr == "error: --max-tokens must be >= 1 (leave it out for the default), got 0\n"


def test_choices_per_request_are_bounded(server):
    """prompts x n is bounded (by max_n unless max_choices says otherwise): a list prompt cannot bypass it."""
    for prompts, n in [(["a"] * 9, 1), (["a"] * 3, 3), (["a"] * 400, 2)]:
        error = refused(server, {"prompt": prompts, "n": n, "max_tokens": 1}, "prompts x n must be <= 8",
                        f"got {len(prompts) * n}")
        assert error["param"] == "prompt"
    status, body = post(server, {"prompt": ["a", "b", "c", "d"], "n": 2, "max_tokens": 1})
    assert status == 200 and len(body["choices"]) == 8
    model, tok = server.model, server.tokenizer
    assert Server(model, tok, "x", Limits(max_n=2, max_choices=6)).admission.max_choices == 6
    assert Server(model, tok, "x", Limits(max_n=3)).admission.max_choices == 3


def test_strict_types(server):
    """No coercion: strings are not numbers, booleans are not integers, floats are not integers, nulls are not
    values; each refusal names the field and what it expected."""
    cases = [("max_tokens", "3", "valid integer"), ("max_tokens", True, "valid integer"),
             ("max_tokens", 3.0, "valid integer"), ("n", "2", "valid integer"), ("n", False, "valid integer"),
             ("temperature", "0.5", "valid number"), ("temperature", True, "valid number"),
             ("top_k", "5", "valid integer"), ("logprobs", True, "valid integer"), ("seed", "7", "valid integer"),
             ("stream", "true", "valid boolean"), ("stream", 1, "valid boolean"), ("echo", 0, "valid boolean"),
             ("prompt", 7, "a string or a list of strings"), ("stop", 3, "a string or a list of strings"),
             ("model", 1, "a string"), ("max_tokens", None, "valid integer"), ("temperature", float("nan"), "finite"),
             ("top_p", float("inf"), "finite")]
    for field, value, expected in cases:
        error = refused(server, {"prompt": "the dog", "max_tokens": 2, field: value}, f"{field}: ", expected)
        assert error["param"] == field
    status, body = post(server, {"prompt": "the dog", "max_tokens": 2, "temperature": 0, "top_p": 1})
    assert status == 200  # JSON integers are numbers


def test_unknown_paths_and_methods(server):
    for method, path in [("GET", "/v1/chat/completions"), ("POST", "/v1/completion"), ("GET", "/docs"),
                         ("GET", "/openapi.json"), ("POST", "/v1/completions/")]:
        status, _, body = call(server, method, path, b"{}")
        assert status == 404
        assert_openai_error(status, body, f"unknown path '{path}'", "POST /v1/completions")
    for method, path, allowed in [("GET", "/v1/completions", "POST"), ("DELETE", "/v1/models", "GET"),
                                  ("PUT", "/health", "GET")]:
        status, headers, body = call(server, method, path, b"{}")
        assert status == 405 and headers.get("allow") == allowed
        assert_openai_error(status, body, f"method {method} is not allowed on '{path}'", f"expected {allowed}")


def test_extreme_valid_values_are_served(server):
    """Valid values at the edges are served, not crashed on: a near-zero temperature decodes greedily."""
    greedy = post(server, {**BASE, "temperature": 0})[1]["choices"][0]["text"]
    assert post(server, {**BASE, "temperature": 1e-300})[1]["choices"][0]["text"] == greedy
    for change in [{"top_k": 10**30}, {"top_p": 1e-300}, {"seed": 2**64 - 1}, {"seed": 0}, {"logprobs": 0},
                   {"prompt": ""}, {"prompt": ["", "\x00"]}, {"stop": "x" * 1000}, {"user": "u" * 1000},
                   {"max_tokens": 1}, {"n": 8, "max_tokens": 1}, {"prompt": "\u00e9\u4e2d\U0001F600"}]:
        status, body = post(server, {**BASE, **change})
        assert status == 200 and body["choices"], (change, body)


# --- many clients at once: continuous batching --------------------------------------------------------------------


@pytest.fixture(scope="module")
def batched(run_dir):
    """A second server on its own copy of the model: 64 sequences at once, 64 requests queued."""
    import uvicorn

    model, tok = load_for_generation(run_dir, device="cpu")
    server = Server(model, tok, "tiny", Limits(max_batch=64, max_queue=64, prefill_chunk=4))
    server.pace = Pace(model, tok.eos_token_id)
    port = _free_port()
    uv = uvicorn.Server(server.uvicorn_config("127.0.0.1", port))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        assert thread.is_alive(), "server did not start"
        time.sleep(0.05)
    server.url, server.port = f"http://127.0.0.1:{port}", port
    yield server
    uv.should_exit = True
    thread.join(timeout=30)


def streamed(server, payload: dict) -> dict:
    """A streamed completion reassembled: {index: (text, finish_reason, tokens with logprobs)}."""
    status, _, body = call(server, "POST", "/v1/completions", json.dumps({**payload, "stream": True}).encode())
    assert status == 200, body[:300]
    events = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    choices = collections.defaultdict(lambda: ["", None, []])
    for event in map(json.loads, events[:-1]):
        for c in event["choices"]:
            choices[c["index"]][0] += c["text"]
            choices[c["index"]][1] = c["finish_reason"] or choices[c["index"]][1]
            choices[c["index"]][2] += (c["logprobs"] or {}).get("tokens", [])
    return {k: tuple(v[:2]) + (tuple(v[2]),) for k, v in choices.items()}


def completed(server, payload: dict) -> dict:
    status, body = post(server, payload)
    assert status == 200, body
    return {c["index"]: (c["text"], c["finish_reason"], tuple((c["logprobs"] or {}).get("tokens", [])))
            for c in body["choices"]}


def test_concurrent_requests_get_what_each_gets_alone(batched):
    """16 clients at once, streamed or not, with different prompt lengths (some prefilled in several chunks),
    n, stop strings, logprobs, greedy or sampled with a seed: each gets exactly what it gets alone."""
    words = "the little dog sees where the red ball is and a cat says she likes it on the mat".split()
    requests = []
    for i in range(16):
        payload = {"prompt": " ".join(words[: 1 + (i * 5) % 8]), "max_tokens": 4 + i % 10, "n": 1 + i % 4,
                   "temperature": 0 if i % 2 else 0.9, "seed": i}
        if i % 3 == 0:
            payload["stop"] = [" the", "."]
        if i % 5 == 0:
            payload["logprobs"] = 2
        requests.append((streamed if i % 4 < 2 else completed, payload))
    alone = [ask(batched, payload) for ask, payload in requests]
    together = [None] * len(requests)

    def client(i):
        ask, payload = requests[i]
        together[i] = ask(batched, payload)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert {reason for choices in alone for _, reason, _ in choices.values()} >= {"stop", "length"}
    assert health(batched) == {"status": "ok", "model": "tiny", "active": 0, "queued": 0}


def test_disconnect_mid_stream_frees_its_slot(batched):
    """Three streams run together; one client disconnects mid-stream: its slot is freed while the others still
    run (they end together, so only the disconnect takes the slots from 3 to 2), and they run to the end."""
    long = {"prompt": "the dog", "max_tokens": 25, "temperature": 0, "stream": True}
    with batched.pace.slow(0.1):
        socks = [raw_request(batched, long) for _ in range(3)]
        wait_for(lambda: health(batched)["active"] == 3, 60)
        socks[0].settimeout(30)
        data = b""
        while b"data: " not in data:
            data += socks[0].recv(65536)
        socks[0].close()
        wait_for(lambda: health(batched)["active"] == 2, 60)
        assert len(batched.engine.running) == 2
        for sock in socks[1:]:
            data = b""
            sock.settimeout(30)
            while b"data: [DONE]" not in data:
                chunk = sock.recv(65536)
                assert chunk, data[-300:]
                data += chunk
            sock.close()
            assert data.count(b'"finish_reason": "length"') == 1
    wait_for(lambda: health(batched)["active"] == 0, 60)


# --- clients that go away, stall or speak bad HTTP ----------------------------------------------------------------


def test_disconnect_cancels_generation(server):
    """A dropped client gives up its place in the queue at once and has its generation stopped at the engine's
    next step, so the next request is served without waiting for the abandoned one (25 steps; counted in engine
    steps, not seconds)."""
    long = {"prompt": "the dog", "max_tokens": 25, "temperature": 0}
    with server.pace.slow(0.25):
        running = raw_request(server, long)
        wait_for(lambda: health(server)["active"] == 1, 60)
        started = server.engine.steps
        queued = raw_request(server, long)
        wait_for(lambda: health(server)["queued"] == 1, 60)
        queued.close()
        wait_for(lambda: health(server)["queued"] == 0, 60)
        wait_for(lambda: server.engine.steps >= started + 2, 60)
        assert health(server)["active"] == 1  # still generating
        running.close()
        wait_for(lambda: health(server)["active"] == 0, 60)
        assert server.engine.steps - started < 20  # stopped long before its 25 tokens
        status, body = post(server, {**long, "max_tokens": 1})
        assert status == 200 and body["choices"]
        assert health(server)["active"] == 0

        started = server.engine.steps
        stream = raw_request(server, {**long, "stream": True})
        stream.settimeout(30)
        assert b"data: " in stream.recv(65536) + stream.recv(65536)
        stream.close()
        wait_for(lambda: health(server)["active"] == 0, 60)
        assert server.engine.steps - started < 20


def test_idle_or_half_sent_connections_are_closed(server):
    """Every connection must send a whole request within the timeout: past it, one that sent part of a request is
    answered 408 (OpenAI's shape) and closed, an idle one (fresh or kept alive) is closed."""
    head = b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    half = {"idle": b"", "half head": head[:30], "half body": head + b'{"prompt": "the', "kept alive": None}
    socks = {}
    for name, data in half.items():
        socks[name] = sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if data is None:  # one whole request, then silence
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        else:
            sock.sendall(data)
    for name, sock in socks.items():
        data, seconds = read_until_closed(sock, 3 * REQUEST_TIMEOUT)
        sock.close()
        assert seconds < 2 * REQUEST_TIMEOUT, name
        if name.startswith("half"):
            status, _, body = data.partition(b"\r\n\r\n")
            assert status.startswith(b"HTTP/1.1 408"), (name, data)
            assert_openai_error(408, body, "did not arrive in full within 2 seconds")
        elif name == "idle":
            assert data == b""
        else:
            assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1") == 1
    assert health(server)["status"] == "ok"


def test_malformed_http_gets_openai_error(server):
    for request in [b"GARBAGE\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
                    b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
                    b"GET /health HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
                    b"GET /he alth HTTP/1.1\r\nHost: t\r\n\r\n",
                    b"GET /health HTTP/1.1\r\n\r\n",  # no Host
                    b"POST /v1/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            data, _ = read_until_closed(sock, 3 * REQUEST_TIMEOUT)
        status, _, body = data.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 400"), (request, data)
        assert_openai_error(400, body, "malformed HTTP/1.1 request")


# --- stop strings ---------------------------------------------------------------------------------------------------


def reference_cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """The text before the first stop string to be completed (the longest of those ending together)."""
    for end in range(1, len(text) + 1):
        ended = [len(s) for s in stops if text[:end].endswith(s)]
        if ended:
            return text[: end - max(ended)], True
    return text, False


def test_stop_scanner_matches_reference():
    """Whatever the stop strings and however the text is split into pieces, the output is the reference cut,
    and only text that may begin a stop string is held back."""
    rng = random.Random(7)
    for _ in range(600):
        stops = ["".join(rng.choices("ab ", k=rng.randint(1, 5))) for _ in range(rng.randint(1, 4))]
        text = "".join(rng.choices("ab c", k=rng.randint(0, 30)))
        scanner, out, fed = StopScanner(stops), "", 0
        while fed < len(text) and not scanner.stopped:
            size = rng.randint(0, 4)
            out += scanner.feed(text[fed: fed + size])
            fed += size
            seen = text[:fed]
            if not scanner.stopped:
                held = len(seen) - len(out)
                assert seen.startswith(out)
                assert held == max((k for s in stops for k in range(len(s)) if k and seen.endswith(s[:k])), default=0)
        if not scanner.stopped:
            out += scanner.flush()
        assert (out, scanner.stopped) == reference_cut(text, stops), (text, stops)


class CountingTable(list):
    """A prefix table that counts how often the scanner reads it: its matchers' fallback steps."""

    reads = 0

    def __getitem__(self, index):
        CountingTable.reads += 1
        return super().__getitem__(index)


def test_stop_scanning_is_linear():
    """Long stop strings cost O(1) per character, not O(length^2): 4 stop strings of 20,000 characters over
    20,000 characters fed one at a time, of which all but the first are held back as a possible stop's start.
    Counted in prefix-table reads, not seconds, so a busy machine cannot fail it."""
    from babblelm.serve.stops import _prefix_table

    stops = ["a" * 19_999 + tail for tail in "bcde"]
    CountingTable.reads = 0
    scanner, out = StopScanner(stops, [CountingTable(_prefix_table(s)) for s in stops]), ""
    for _ in range(20_000):
        out += scanner.feed("a")
    assert out == "a" and not scanner.stopped
    assert scanner.feed("c") == "" and scanner.stopped
    assert CountingTable.reads <= 2 * len(stops) * 20_001  # amortized: at most one fallback per character fed


def test_long_stop_strings_through_the_server(server):
    status, body = post(server, {"prompt": "the dog", "max_tokens": 20, "stop": ["x" * 900, "y" * 900, "z" * 900, "w"]})
    assert status == 200 and body["choices"][0]["finish_reason"] in ("length", "stop")
    refused(server, {"prompt": "the dog", "stop": ["a", "b", "c", "d", "e"]}, "stop takes at most 4 strings")


# --- the fuzz ---------------------------------------------------------------------------------------------------------


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return (is_int(v) or isinstance(v, float)) and v == v and abs(v) != float("inf")


def text(v) -> bool:
    return isinstance(v, str) and not any("\ud800" <= c <= "\udfff" for c in v)


def short(v) -> bool:
    return text(v) and len(v) <= 20  # a prompt of a few tokens


VALID = {  # what each field accepts when the rest of the request is BASE
    "model": lambda v: v is None or v == "tiny",
    "prompt": lambda v: short(v) or isinstance(v, list) and 0 < len(v) <= 8 and all(map(short, v)),
    "max_tokens": lambda v: is_int(v) and 1 <= v <= 20,
    "temperature": lambda v: is_number(v) and 0 <= v <= 2,
    "top_p": lambda v: is_number(v) and 0 < v <= 1,
    "top_k": lambda v: v is None or is_int(v) and v >= 1,
    "stop": lambda v: v is None or text(v) and v != "" or isinstance(v, list) and len(v) <= 4 and all(
        text(s) and s for s in v),
    "n": lambda v: is_int(v) and 1 <= v <= 8,
    "stream": lambda v: isinstance(v, bool),
    "stream_options": lambda v: v is None,
    "logprobs": lambda v: v is None or is_int(v) and 0 <= v <= 5,
    "seed": lambda v: v is None or is_int(v) and 0 <= v < 2**64,
    "echo": lambda v: v is False,
    "user": lambda v: v is None or text(v),
}
BASE = {"prompt": "the dog", "max_tokens": 2}


def random_value(rng: random.Random, depth: int = 0):
    """A random JSON value: scalars of every kind (huge, negative, non-finite, long, odd Unicode) and nesting."""
    kinds = ["int", "big", "float", "inf", "str", "long", "bool", "null", "list", "dict"]
    kind = rng.choice(kinds[:-2] if depth > 2 else kinds)
    if kind == "int":
        return rng.choice([-1, 0, 1, 2, 7, 33, -(2**31)]) + rng.randint(-3, 3)
    if kind == "big":
        return rng.choice([1, -1]) * 10 ** rng.randint(10, 400)
    if kind == "float":
        return rng.choice([-0.5, 0.0, 0.5, 1.5, 2.5, 1e-300, 1e300, -1e300]) * rng.choice([1, 3])
    if kind == "inf":
        return rng.choice([float("nan"), float("inf"), float("-inf")])
    if kind == "str":
        return rng.choice(["", "3", "true", "null", "the dog", "\ud800", "\u00e9\u4e2d\U0001F600", "\x00\n\t"])
    if kind == "long":
        return rng.choice("xé ") * rng.randint(200, 1200)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["a", "include_usage", "prompt", ""]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def sized(kind: str, payload, mentions: list[str]) -> tuple[str, bytes, list[str]]:
    """(kind, body, mentions), or a "too large" case where the body exceeds the test server's 4096 bytes."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return (kind, body, mentions) if len(body) <= 4096 else ("too large", body, ["exceeds the limit of 4096 bytes"])


def field_values(rng: random.Random, per_field: int, valid: bool):
    """(field, value): `per_field` random values per field that it accepts (`valid`) or refuses."""
    for field, accepts in VALID.items():
        found = [v for v in (random_value(rng) for _ in range(300)) if accepts(v) == valid][:per_field]
        assert len(found) == per_field or valid, field
        yield from ((field, v) for v in found)


def bad_bodies(rng: random.Random):
    """(kind, body, mentions) for problems of the body as a whole."""
    for _ in range(20):
        extra = "".join(rng.choices("abcxyz_", k=rng.randint(1, 12)))
        yield sized("extra field", {**BASE, extra: random_value(rng)}, [f"{extra}: Extra inputs"])
        others = rng.choice([{}, {"max_tokens": 2}, {"n": 1, "stop": "."}])
        yield sized("missing prompt", others, ["prompt: Field required"])
        yield "non-UTF-8", bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) + b"\xff\xfe", ["UTF-8"]
        valid = json.dumps({**BASE, "stop": ["x"], "user": "u"}).encode()
        yield "truncated JSON", valid[: rng.randint(1, len(valid) - 1)], ["not valid JSON"]
        depth = rng.randint(1200, 2000)
        yield "deep arrays", b"[" * depth + b"]" * depth, ["nested too deeply"]
        depth = rng.randint(100, 600)
        yield "deep objects", b'{"a":' * depth + b"1" + b"}" * depth, ["a: Extra inputs"]
        field, nested = rng.choice(list(VALID)), random_value(rng)
        for _ in range(rng.randint(5, 40)):
            nested = [nested] if rng.random() < 0.5 else {"prompt": nested}
        yield sized("nested garbage", {**BASE, field: nested}, [field])
        top = rng.choice([[], [BASE], "prompt", 3, None, True, 1.5])
        yield "not an object", json.dumps(top).encode(), ["must be a JSON object"]
        key = rng.choice(["prompt", "n", "max_tokens"])
        twice = b'{"prompt": "a", "max_tokens": 2, "n": 1, "%s": 1}' % key.encode()
        yield "duplicate key", twice, [f"'{key}' appears more than once"]
        yield "empty body", rng.choice([b"", b" ", b"\n\t "]), ["empty"]
        yield "too large", json.dumps({"prompt": "a" * rng.randint(4100, 9000)}).encode(), ["exceeds the limit"]
        yield "long prompt", json.dumps({**BASE, "prompt": "the dog " * rng.randint(40, 400)}).encode(), ["prompt is"]
        yield "too many choices", json.dumps({**BASE, "prompt": ["a"] * rng.randint(9, 500)}).encode(), ["prompts x n"]
        yield "unpaired surrogate", json.dumps({**BASE, "prompt": ["ok", "\udc00x"]}).encode(), ["prompt", "Unicode"]


def bad_requests(rng: random.Random):
    """(kind, method, path, content type, body, mentions) for every kind of bad request."""
    fields = [sized(f"bad {field}", {**BASE, field: value}, [field]) for field, value in field_values(rng, 18, False)]
    for kind, body, mentions in [*fields, *bad_bodies(rng)]:
        yield kind, "POST", "/v1/completions", "application/json", body, mentions
    good = json.dumps(BASE).encode()
    for _ in range(20):
        media = rng.choice([None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                            "application/jsonx", "json", "application/xml; charset=utf-8"])
        yield "content type", "POST", "/v1/completions", media, good, ["Content-Type must be application/json"]
        path = "/" + "/".join("".join(rng.choices("abv1_-.%20", k=rng.randint(1, 8))) for _ in range(rng.randint(1, 4)))
        if path not in ("/health", "/v1/models", "/v1/completions"):
            yield "unknown path", rng.choice(["GET", "POST"]), path, "application/json", good, ["unknown path"]
        method, path = rng.choice([("GET", "/v1/completions"), ("PUT", "/v1/completions"), ("PATCH", "/v1/completions"),
                                   ("DELETE", "/v1/completions"), ("POST", "/health"), ("POST", "/v1/models"),
                                   ("OPTIONS", "/v1/completions")])
        yield "wrong method", method, path, "application/json", good, ["not allowed", path]


def test_fuzzed_bad_requests_get_openai_errors(server):
    """Hundreds of seeded bad requests of every kind: each gets a 4xx in OpenAI's error shape naming the field
    or place, never a 500 or a traceback; valid requests are served throughout and afterwards."""
    rng = random.Random(2024)
    requests = list(bad_requests(rng))
    kinds = {kind for kind, *_ in requests}
    assert len(requests) >= 500 and len(kinds) >= 30, (len(requests), len(kinds))
    for field, value in field_values(rng, 3, True):  # extreme but valid values are served
        status, _, reply = call(server, "POST", "/v1/completions", json.dumps({**BASE, field: value}).encode())
        assert status == 200, (field, value, reply[:300])
    for i, (kind, method, path, media, body, mentions) in enumerate(requests):
        status, _, reply = call(server, method, path, body, media)
        try:
            assert_openai_error(status, reply, *mentions)
        except AssertionError as err:
            raise AssertionError(f"{kind}: {method} {path} {media!r} {body[:200]!r}") from err
        if i % 100 == 0:
            assert post(server, BASE)[0] == 200
    status, body = post(server, BASE)
    assert status == 200 and body["choices"][0]["finish_reason"] in ("length", "stop")
    assert health(server) == {"status": "ok", "model": "tiny", "active": 0, "queued": 0}
