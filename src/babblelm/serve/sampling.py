"""Picking the next token of many sequences at once, each with its own settings.

`Sampling` is one request's settings; each sequence gets a `Sampler` (those settings, its own random
stream and how many log-probabilities to report) and `pick` chooses a token for every row of a batch
of logits in a few vectorised operations: greedy rows take the argmax; sampled rows divide by their
temperature, keep their top-k, then their top-p (as transformers' warpers, in that order), and draw
by inverting the cumulative distribution at one uniform number from their own stream. A sequence's
tokens therefore depend only on its own logits and its own stream, never on the other rows of the
batch: a seeded request gives the same text alone or among others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

GREEDY_BELOW = 1e-5  # a lower temperature decodes greedily (dividing the logits by it would overflow)


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


class Sampler:
    """One sequence's settings and random stream. With a seed, choice `index` of a request draws from
    a stream of its own (seed and index), so the request's text does not depend on its company."""

    def __init__(self, sampling: Sampling, index: int = 0, logprobs: int | None = None):
        self.temperature = sampling.temperature if sampling.temperature >= GREEDY_BELOW else 0.0
        self.top_k, self.logprobs = sampling.top_k, logprobs
        self.top_p = sampling.top_p if sampling.top_p is not None and sampling.top_p < 1 else None
        self.rng = random.Random(f"{sampling.seed}/{index}") if sampling.seed is not None else random.Random()


@dataclass
class Pick:
    """A chosen token; with logprobs, its log-probability under the model's unmodified distribution
    and the `logprobs` most likely (id, log-probability) pairs."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


def pick(logits: torch.Tensor, samplers: list[Sampler]) -> list[Pick]:
    """One token for each row of `logits` (rows, vocab), row i with `samplers[i]`."""
    logits = logits.float()
    sampled = [i for i, s in enumerate(samplers) if s.temperature > 0]
    if len(sampled) == len(samplers):  # every row samples
        temperature = torch.tensor([s.temperature for s in samplers], device=logits.device)
        ids = _draw(logits / temperature[:, None], samplers)
    else:
        ids = logits.argmax(-1)
        if sampled:
            rows = torch.tensor(sampled, device=logits.device)
            temperature = torch.tensor([samplers[i].temperature for i in sampled], device=logits.device)
            ids[rows] = _draw(logits[rows] / temperature[:, None], [samplers[i] for i in sampled])
    picks = [Pick(i) for i in ids.tolist()]
    wanted = [i for i, s in enumerate(samplers) if s.logprobs is not None]
    if wanted:
        rows = torch.tensor(wanted, device=logits.device)
        logp = torch.log_softmax(logits[rows], dim=-1)
        chosen = logp.gather(1, ids[rows, None])[:, 0].tolist()
        most = max(samplers[i].logprobs for i in wanted)
        top_lp, top_id = logp.topk(min(most, logp.shape[-1]), dim=-1) if most else (logp[:, :0], logp[:, :0])
        for k, i in enumerate(wanted):
            n = samplers[i].logprobs
            picks[i].logprob = chosen[k]
            picks[i].top = list(zip(top_id[k, :n].tolist(), top_lp[k, :n].tolist()))
    return picks


def _draw(scores: torch.Tensor, samplers: list[Sampler]) -> torch.Tensor:
    """A sampled token per row of tempered `scores`, after each row's top-k and top-p."""
    vocab = scores.shape[-1]
    uniform = [s.rng.random() for s in samplers]
    out = torch.empty(len(samplers), dtype=torch.long, device=scores.device)
    plain = [i for i, s in enumerate(samplers) if s.top_k is None and s.top_p is None]
    cut = [i for i, s in enumerate(samplers) if s.top_k is not None or s.top_p is not None]
    if len(plain) == len(samplers):
        return _invert(torch.softmax(scores, dim=-1), uniform)
    if plain:
        index = torch.tensor(plain, device=scores.device)
        out[index] = _invert(torch.softmax(scores[index], dim=-1), [uniform[i] for i in plain])
    if cut:
        index = torch.tensor(cut, device=scores.device)
        values, order = scores[index].sort(dim=-1, descending=True)
        rank = torch.arange(vocab, device=scores.device)
        top_k = torch.tensor([min(samplers[i].top_k or vocab, vocab) for i in cut], device=scores.device)
        probs = torch.softmax(values.masked_fill(rank >= top_k[:, None], float("-inf")), dim=-1)
        top_p = torch.tensor([samplers[i].top_p or float("inf") for i in cut], device=scores.device)
        above = probs.cumsum(-1) - probs  # keep while the mass above < p; the most likely token always
        probs = probs.masked_fill((above >= top_p[:, None]) & (rank > 0), 0.0)
        chosen = _invert(probs, [uniform[i] for i in cut])
        out[index] = order.gather(1, chosen[:, None])[:, 0]
    return out


def _invert(probs: torch.Tensor, uniform: list[float]) -> torch.Tensor:
    """Per row, the token at which the cumulative (unnormalised) distribution passes u x its total."""
    cumulative = probs.cumsum(-1)
    target = torch.tensor(uniform, dtype=torch.float64, device=probs.device) * cumulative[:, -1].double()
    index = torch.searchsorted(cumulative, target.to(cumulative.dtype)[:, None], right=True)[:, 0]
    past = index >= probs.shape[-1]
    if bool(past.any()):  # u x total rounded up to the total: the last token with any probability
        index = torch.where(past, probs.shape[-1] - 1 - (probs > 0).flip(-1).int().argmax(-1), index)
    return index
