"""An OpenAI-compatible completions server (FastAPI + uvicorn, the `serve` extra) over a continuous-batching
engine that `babble generate` uses too.

    babble serve runs/demo --port 8000
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"prompt": "the dog", "max_tokens": 10}'

Endpoints: `GET /health` (the sequences holding slots and those waiting for one), `GET /v1/models`,
`POST /v1/completions` (prompt, max_tokens, temperature (below 1e-5: greedy, and n greedy choices are the one
greedy answer n times), top_p, top_k, stop, n, stream via server-sent events, logprobs, seed).

One file per job; only schema, admission, protocol and app import FastAPI, uvicorn or pydantic, so `babble
generate` runs without the extra:

- engine.py: the step scheduler. One thread owns the model; every step one forward pass decodes all running
  sequences of all requests, one token each, in the slots of the model's SlotCache (models/layers.py);
  prompts are prefilled between steps, in chunks; finished sequences free their slots for waiting ones.
- foreign.py: a model of an architecture babblelm does not implement, decoded by the same engine one slot at
  a time (its own cache per slot).
- sampling.py: each sequence's settings and random stream; the batch's tokens picked at once.
- stops.py: stop strings, found as the text streams.
- choices.py: a request's choices from the engine's events (text, stop strings, logprobs, finish reasons),
  and the JSON and server-sent-event shapes they are returned in.
- schema.py: the request body: a JSON object of strictly typed fields; refusals in OpenAI's error shape.
- admission.py: the server's limits and the checks of one request against them (choices, tokens, context).
- protocol.py: HTTP/1.1 with a deadline per request; malformed HTTP answered in OpenAI's error shape.
- app.py: the FastAPI application and `serve`.

Every request is checked before any work starts, and every refusal is a 4xx in OpenAI's shape
`{"error": {"message", "type", "param", "code"}}` whose message names the field or place and what was
expected. `max_batch` sequences decode at once (the slots, allocated when the server starts); requests whose
sequences find no free slot wait, up to `max_queue` of them, and any further one gets 503 at once. A client
that disconnects leaves the queue at once, or has its sequences retired at the engine's next step.
"""
