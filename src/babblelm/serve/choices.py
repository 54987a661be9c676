"""A request's choices, assembled from the engine's events: incremental text, stop strings, OpenAI-style
logprobs and finish reasons, and the JSON and server-sent-event shapes they are returned in.

`Completion.feed` takes one step's events of a request (engine.Token, engine.Finished, or an
exception from the engine) and returns what they add: (choice, new text, index of its first new
logprob, closing). A choice whose stop string appears is closed there and its sequence stopped in
the engine (the ticket's `stop`); the other choices close at EOS or at max_tokens.
"""

from __future__ import annotations

import json
import time
import uuid

from .engine import Finished, Ticket, Token
from .stops import StopScanner


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


class Choice:
    """One returned sequence: text, finish reason, OpenAI-style logprobs."""

    def __init__(self, index: int, tokenizer, scanner: StopScanner, offset: int, logprobs: bool):
        self.index, self.tokenizer, self.decoder, self.scanner = index, tokenizer, TextDecoder(tokenizer), scanner
        self.text, self.offset, self.tokens, self.finish_reason = "", offset, 0, None
        self.logprobs = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} if logprobs else None

    def add(self, token: Token) -> str:
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

    def body(self) -> dict:
        """The whole choice, for a response that is not streamed."""
        return {"index": self.index, "text": self.text, "logprobs": self.logprobs_since(0),
                "finish_reason": self.finish_reason}


class Completion:
    """The choices of one request (prompts x n, choice k * n + r is sample r of prompt k)."""

    def __init__(self, tokenizer, prompts: list[str], n: int, stops: list[str], logprobs: bool):
        scanner = StopScanner(stops)
        self.choices = [Choice(k * n + r, tokenizer, scanner.fresh(), len(prompt), logprobs)
                        for k, prompt in enumerate(prompts) for r in range(n)]
        self.ticket: Ticket | None = None  # set once the request is in the engine
        self.open = len(self.choices)

    @property
    def done(self) -> bool:
        return self.open == 0

    def feed(self, events: list) -> list[tuple[Choice, str, int, bool]]:
        """(choice, text piece, index of its first new logprob, closing) for each event; raises the engine's
        error if the events carry one."""
        out = []
        for event in events:
            if isinstance(event, Exception):
                raise event
            choice = self.choices[event.row]
            if choice.finish_reason is not None:  # closed by a stop string; the engine had not seen it yet
                continue
            if isinstance(event, Token):
                start = choice.tokens
                out.append((choice, choice.add(event), start, False))
                if choice.finish_reason is not None:
                    self.ticket.stop(event.row)
                    out.append(self._closed(choice, ""))
            elif isinstance(event, Finished):
                out.append(self._closed(choice, choice.close(event.eos)))
        return out

    def _closed(self, choice: Choice, tail: str) -> tuple[Choice, str, int, bool]:
        self.open -= 1
        return choice, tail, choice.tokens, True

    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)


def head(model: str) -> dict:
    """The fields every completion object and chunk starts with."""
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": model}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(payload: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(payload)}\n\n"
