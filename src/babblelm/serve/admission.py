"""The server's limits and whether one parsed request fits them: the model it names, how many choices it asks
for (prompts x n), its prompts' token counts and max_tokens against the context. A request that passes becomes
a `Plan` for the engine; one that does not is refused (400, 404) naming the field."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .sampling import GREEDY_BELOW, Sampling
from .schema import CompletionRequest, Refused, stop_strings


@dataclass
class Limits:
    """The server's bounds (`babble serve --max-...`); None means the default named beside it, and a value
    that would serve nothing (0, a negative or non-finite number) is refused, never read as the default."""

    max_body_bytes: int = 64 * 1024
    max_prompt_tokens: int | None = None  # default: the context
    max_tokens: int | None = None  # default: the context (or 1024 without a context limit)
    max_n: int = 8
    max_choices: int | None = None  # prompts x n in one request; default: max_n
    max_batch: int = 16  # slots: sequences decoded together
    max_context: int | None = None  # positions per slot; default: the trained length (Engine)
    prefill_chunk: int = 128  # prompt tokens per prefill pass
    max_queue: int = 16  # requests waiting for slots; more get 503
    request_timeout: float = 10.0  # seconds a connection may take to send one request in full

    def __post_init__(self):
        for name, low in (("max_body_bytes", 1), ("max_prompt_tokens", 1), ("max_tokens", 1), ("max_n", 1),
                          ("max_choices", 1), ("max_batch", 1), ("max_context", 1), ("prefill_chunk", 1),
                          ("max_queue", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                default = " (leave it out for the default)" if self.__dataclass_fields__[name].default is None else ""
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}{default}, got {value}")
        if not 0 < self.request_timeout < math.inf:
            raise ValueError(f"--request-timeout must be a positive number of seconds, got {self.request_timeout}")


@dataclass
class Plan:
    """An admitted request: its prompts, their token ids and the sampling settings."""

    req: CompletionRequest
    prompts: list[str]
    encoded: list[list[int]]
    sampling: Sampling

    @property
    def prompt_tokens(self) -> int:
        return sum(map(len, self.encoded))


class Admission:
    """The checks a parsed request must pass before it reaches the engine."""

    def __init__(self, name: str, tokenizer, limits: Limits, context: int | None):
        self.name, self.tokenizer, self.limits, self.context = name, tokenizer, limits, context
        self.max_prompt = limits.max_prompt_tokens if limits.max_prompt_tokens is not None else context
        self.max_tokens = limits.max_tokens if limits.max_tokens is not None else context or 1024
        self.max_choices = limits.max_choices if limits.max_choices is not None else limits.max_n

    def plan(self, req: CompletionRequest) -> Plan:
        if req.model not in (None, self.name):
            raise Refused(404, f"model {req.model[:100]!r} not found; this server serves {self.name!r}", "model")
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
            (any(not s for s in stop_strings(req)), "stop strings must not be empty", "stop"),
            (req.stream_options is not None and not req.stream, "stream_options needs stream: true", "stream_options"),
        ]
        for failed, message, param in checks:
            if failed:
                raise Refused(400, message, param)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        encoded = [self._encode(p) for p in prompts]
        temperature = req.temperature if req.temperature >= GREEDY_BELOW else 0.0
        sampling = Sampling(req.max_tokens, temperature, req.top_k, req.top_p, req.seed)
        for ids in encoded:
            try:
                sampling.check(len(ids), self.context)
            except ValueError as err:
                raise Refused(400, str(err), "max_tokens") from None
        return Plan(req, prompts, encoded, sampling)

    def _encode(self, prompt: str) -> list[int]:
        ids = self.tokenizer(prompt).input_ids
        if self.max_prompt is not None and len(ids) > self.max_prompt:
            raise Refused(400, f"prompt is {len(ids)} tokens; the limit is {self.max_prompt}", "prompt")
        if not ids:
            raise Refused(400, "prompt must hold at least one token", "prompt")
        return ids
