"""Text generation through babblelm's engine (serve/engine.py): continuous batching of sequences over
the model's SlotCache, for every architecture, the engine `babble serve` runs too::

    model, tokenizer = load_for_generation("runs/demo")             # run folder, checkpoint or export
    for piece in stream_text(model, tokenizer, "the dog", Sampling(max_new_tokens=20)):
        print(piece, end="", flush=True)
    for record in generate_lines(model, tokenizer, ["the dog", "a cat"], Sampling(max_new_tokens=20)):
        print(record["text"])

`babble generate MODEL PROMPT` streams one continuation; `babble generate MODEL --prompts FILE`
continues every line of FILE in one engine (up to `--max-batch` sequences at once) and writes one
JSON object per line, in the file's order. With a seed, each prompt's text is the text it gets alone.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .serve.choices import Completion
from .serve.engine import Engine, eos_ids
from .serve.sampling import Sampling


def load_for_generation(path: str | Path, checkpoint: str | None = None, device: str = "auto",
                        trust_remote_code: bool = False):
    """(model, tokenizer) from a run folder (final or `checkpoint`), a checkpoint folder or an exported folder,
    checked (modelfolder.py); `trust_remote_code` lets a folder of a foreign architecture run its own code. A
    native export (Llama, GPT-2) is loaded back as babblelm's model, whose SlotCache the engine decodes."""
    from .eval.load import load_model_and_tokenizer
    from .models.native import from_native
    from .rundir import resolve_checkpoint

    model, tokenizer = load_model_and_tokenizer(resolve_checkpoint(path, checkpoint), device=device,
                                                trust_remote_code=trust_remote_code)
    return from_native(model), tokenizer


class _Request:
    """One prompt's completion, fed by the engine as it steps in this thread."""

    def __init__(self, engine: Engine, tokenizer, prompt: str, ids: list[int], sampling: Sampling, stops: list[str]):
        self.completion, self.pieces, self.error = Completion(tokenizer, [prompt], 1, stops, False), [], None
        self.completion.ticket = engine.submit([ids], sampling, deliver=self.take)

    def take(self, events: list) -> None:
        try:
            self.pieces += [piece for _, piece, _, _ in self.completion.feed(events) if piece]
        except Exception as err:  # the engine's error: raised to the caller
            self.error = err

    def result(self) -> dict:
        if self.error is not None:
            raise self.error
        choice = self.completion.choices[0]
        return {"text": choice.text, "finish_reason": choice.finish_reason, "completion_tokens": choice.tokens}


def _encode(tokenizer, prompt: str, sampling: Sampling, context: int | None) -> list[int]:
    ids = tokenizer(prompt).input_ids
    if not ids:
        raise ValueError("the prompt holds no token")
    sampling.check(len(ids), context)
    return ids


def stream_text(model, tokenizer, prompt: str, sampling: Sampling, stops: list[str] = ()) -> Iterator[str]:
    """An iterator over the continuation of `prompt`, piece by piece; checks the settings at once."""
    engine = Engine(model, eos_ids(model, tokenizer), max_batch=1)
    request = _Request(engine, tokenizer, prompt, _encode(tokenizer, prompt, sampling, engine.context), sampling,
                       list(stops))

    def pieces():
        while engine.step():
            yield from request.pieces
            request.pieces.clear()
        request.result()  # raises the engine's error, if any

    return pieces()


def generate_lines(model, tokenizer, prompts: list[str], sampling: Sampling, max_batch: int = 16,
                   stops: list[str] = (), where: str = "prompt") -> Iterator[dict]:
    """{"index", "prompt", "text", "finish_reason", "completion_tokens"} for each prompt, in order, each as
    soon as it and those before it are done. Every prompt is checked first: a bad one is a ValueError
    naming `where` and its number (from 1)."""
    engine = Engine(model, eos_ids(model, tokenizer), max_batch=max_batch)
    encoded = []
    for number, prompt in enumerate(prompts, 1):
        try:
            encoded.append(_encode(tokenizer, prompt, sampling, engine.context))
        except ValueError as err:
            raise ValueError(f"{where} {number}: {err}") from None
    requests = [_Request(engine, tokenizer, p, ids, sampling, list(stops)) for p, ids in zip(prompts, encoded)]
    done = 0
    while done < len(requests):
        more = engine.step()
        while done < len(requests) and (requests[done].completion.done or not more):
            yield {"index": done, "prompt": prompts[done], **requests[done].result()}
            done += 1


def generate_file(model, tokenizer, path: str | Path, sampling: Sampling, out: str | Path | None = None,
                  max_batch: int = 16, stops: list[str] = ()) -> int:
    """Continue every line of the UTF-8 file `path` (one prompt per line) and write JSON lines to `out`
    (default: standard output); returns the number of prompts."""
    path = Path(path)
    try:
        prompts = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, prompt in enumerate(prompts, 1):
        if not prompt.strip():
            raise ValueError(f"{path}:{number}: empty line; expected one prompt per line")
    records = generate_lines(model, tokenizer, prompts, sampling, max_batch, stops, where=f"{path}: line")
    with open(out, "w", encoding="utf-8") if out is not None else contextlib.nullcontext(sys.stdout) as sink:
        for record in records:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
    return len(prompts)

