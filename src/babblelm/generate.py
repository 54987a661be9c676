"""Text generation through Hugging Face `generate`, streamed token by token.

Works for every registered architecture: each one implements the standard causal-LM interface
(KV cache for the Transformer, recurrent state for the others), so this module only drives
`model.generate` and reads its tokens as they come::

    model, tokenizer = load_for_generation("runs/demo")             # run folder, checkpoint or export
    for piece in stream_text(model, tokenizer, "the dog", Sampling(max_new_tokens=20)):
        print(piece, end="", flush=True)

`Generation` is the engine under `babble generate` and `babble serve`: `generate` runs in a
background thread; a streamer hands each step's tokens (and, on request, their log-probabilities
under the model's unmodified distribution) to the reading thread; rows can be stopped one by one.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.generation.streamers import BaseStreamer


def load_for_generation(path: str | Path, checkpoint: str | None = None, device: str = "auto",
                        trust_remote_code: bool = False):
    """(model, tokenizer) from a run folder (final or `checkpoint`), a checkpoint folder or an exported folder,
    checked (modelfolder.py); `trust_remote_code` lets a folder of a foreign architecture run its own code."""
    from .eval.load import load_model_and_tokenizer
    from .rundir import resolve_checkpoint

    return load_model_and_tokenizer(resolve_checkpoint(path, checkpoint), device=device,
                                    trust_remote_code=trust_remote_code)


def context_length(model) -> int | None:
    """The longest sequence the model accepts, or None for architectures without a limit (recurrent state)."""
    return getattr(model.config, "max_position_embeddings", None)


@dataclass
class Sampling:
    """How to pick tokens. `temperature` 0 means greedy; `top_k` / `top_p` None mean no truncation."""

    max_new_tokens: int = 40
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def check(self, prompt_tokens: int, context: int | None) -> None:
        """Raise ValueError naming the bad setting."""
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if context is not None and prompt_tokens + self.max_new_tokens > context:
            raise ValueError(f"the prompt ({prompt_tokens} tokens) plus max_new_tokens ({self.max_new_tokens}) "
                             f"exceeds the model's context of {context} tokens")

    def warpers(self) -> list[LogitsProcessor]:
        if self.temperature == 0:
            return []
        out: list[LogitsProcessor] = [TemperatureLogitsWarper(self.temperature)]
        if self.top_k is not None:
            out.append(TopKLogitsWarper(self.top_k))
        if self.top_p is not None and self.top_p < 1:
            out.append(TopPLogitsWarper(self.top_p))
        return out


@dataclass
class Token:
    """One generated token of one row (a returned sequence)."""

    row: int
    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # the `n` most likely (id, logprob) at this step


class _LogprobRecorder(LogitsProcessor):
    """Keeps each step's log-softmax of the raw scores, before temperature and truncation."""

    def __init__(self):
        self.steps: queue.SimpleQueue[torch.Tensor] = queue.SimpleQueue()

    def __call__(self, input_ids, scores):
        self.steps.put(torch.log_softmax(scores.float(), dim=-1).cpu())
        return scores


class _RowStop(StoppingCriteria):
    """Stops the rows flagged in `done` (set from the reading thread); a sequence decoded once for
    `copies` rows stops when all of them are done."""

    def __init__(self, done: torch.Tensor, copies: int = 1):
        self.done, self.copies = done, copies

    def __call__(self, input_ids, scores, **kwargs):
        return self.done.view(-1, self.copies).all(dim=1).to(input_ids.device, copy=True)


class _QueueStreamer(BaseStreamer):
    """Turns each step's tokens into `Token` lists on a queue, each decoded sequence as `copies` rows;
    the first `put` (the prompt) is skipped."""

    def __init__(self, out: queue.Queue, recorder: _LogprobRecorder | None, top_n: int, copies: int = 1):
        self.out, self.recorder, self.top_n, self.copies, self.prompt_seen = out, recorder, top_n, copies, False

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        ids = value.reshape(-1).repeat_interleave(self.copies)
        if self.recorder is None:
            self.out.put([Token(r, int(i)) for r, i in enumerate(ids.tolist())])
            return
        logp = self.recorder.steps.get().repeat_interleave(self.copies, dim=0)
        chosen = logp.gather(1, ids[:, None].long()).squeeze(1).tolist()
        if self.top_n:
            top_lp, top_id = logp.topk(self.top_n, dim=-1)
            tops = [list(zip(i, v)) for i, v in zip(top_id.tolist(), top_lp.tolist())]
        else:
            tops = [[] for _ in chosen]
        self.out.put([Token(r, int(i), lp, t) for r, (i, lp, t) in enumerate(zip(ids.tolist(), chosen, tops))])

    def end(self):
        pass


_END = object()


class Generation:
    """One `generate` call for `n` samples of one prompt, read step by step.

    Iterating yields lists of `Token` (one per row still running). A row ends at EOS (its id is in
    `eos_rows`, the EOS token is not yielded), at `max_new_tokens`, or when `stop_row` is called.
    Greedy decoding (temperature 0) has one answer, so `n` greedy rows are that one sequence, decoded
    once and yielded `n` times.
    """

    def __init__(self, model, tokenizer, prompt_ids: list[int], sampling: Sampling, n: int = 1,
                 logprobs: int | None = None):
        sampling.check(len(prompt_ids), context_length(model))
        self.n = n
        self.done = torch.zeros(n, dtype=torch.bool)
        self.eos_rows: set[int] = set()
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._queue: queue.Queue = queue.Queue()
        recorder = _LogprobRecorder() if logprobs is not None else None
        processors = LogitsProcessorList(([recorder] if recorder else []) + sampling.warpers())
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=model.device)
        copies = n if sampling.temperature == 0 else 1  # each decoded sequence stands for `copies` rows
        kwargs = dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=sampling.max_new_tokens,
            do_sample=sampling.temperature > 0, num_return_sequences=n // copies,
            logits_processor=processors, stopping_criteria=StoppingCriteriaList([_RowStop(self.done, copies)]),
            streamer=_QueueStreamer(self._queue, recorder, logprobs or 0, copies),
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0),
        )
        if sampling.temperature > 0:  # our warpers replace any defaults from generation_config.json
            kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
        self._thread = threading.Thread(target=self._run, args=(model, kwargs, sampling.seed), daemon=True)
        self._thread.start()

    def _run(self, model, kwargs, seed):
        try:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                model.generate(**kwargs)
            self._queue.put(_END)
        except BaseException as err:  # hand the error to the reading thread
            self._queue.put(err)

    def __iter__(self):
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                live = []
                for tok in item:
                    if self.done[tok.row] or tok.row in self.eos_rows:
                        continue
                    if tok.id in self.eos_ids:
                        self.eos_rows.add(tok.row)
                    else:
                        live.append(tok)
                if live:
                    yield live
        finally:
            self.cancel()

    def stop_row(self, row: int) -> None:
        self.done[row] = True

    def stop_all(self) -> None:
        """Ask every row to stop (returns at once)."""
        self.done[:] = True

    def cancel(self) -> None:
        """Stop every row and wait for the generating thread to finish."""
        self.stop_all()
        self._thread.join()


class TextDecoder:
    """Incremental detokenization: `push(id)` returns the newly completed text (holds back split UTF-8)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.emitted = tokenizer, [], 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
            return ""
        new, self.emitted = text[self.emitted:], len(text)
        return new

    def flush(self) -> str:
        """Whatever is held back (an incomplete character decodes as U+FFFD)."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        new, self.emitted = text[self.emitted:], len(text)
        return new


def stream_text(model, tokenizer, prompt: str, sampling: Sampling):
    """An iterator over the continuation of `prompt`, piece by piece (one sample); checks settings at once."""
    generation = Generation(model, tokenizer, tokenizer(prompt).input_ids, sampling)
    decoder = TextDecoder(tokenizer)

    def pieces():
        for step in generation:
            yield decoder.push(step[0].id)
        yield decoder.flush()

    return (piece for piece in pieces() if piece)
