"""Batched log-probability scoring of text with a causal LM, exactly as the official BabyLM pipeline scores it.

An item is a (context, completion) pair. The text context+completion is tokenized with the
tokenizer's normal call (so a BOS post-processor adds BOS) and its score is the SUM of the
log-softmax log-probabilities (temperature 1) of the tokens whose character span overlaps the
completion: a token straddling the boundary counts as completion. Targets are tokens 1..n-1, so
the first token is never scored. Log-probabilities are computed and summed in float32, as the
official pipeline does for a float32 model.

Items are sorted by length, right-padded and run in batches, one forward pass each; only the
log-probabilities of scored tokens are computed from the logits.

Shared prefixes: items given the same `groups` id (the options of one task item) are tokenized as
usual, then their longest common token prefix (up to the first scored token) runs once with a KV
cache and only the continuations run per option. Groups go in chunks of `batch_size`, sorted by
length: one forward pass runs the chunk's prefixes (each cut to the shortest of them, so there is no
padding), then the continuations run `batch_size` items a pass, each row a copy of its group's cache
row. A chunk whose cached run would compute no fewer token positions than its whole texts (short
prefixes) is scored the plain way. The result is the same sum of the same log-probabilities (up to
float rounding, ~1e-6). Any cache with `reorder_cache` works (transformers' caches and the recurrent
states of the babblelm architectures); a model whose forward returns none falls back to the plain
batched path. No forward pass has more than `batch_size` rows.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..models.layers import CACHE_ARG


@dataclass(frozen=True)
class Encoded:
    """One tokenized item: token ids, the end character of each token, where the completion starts."""

    ids: list[int]
    ends: list[int]
    completion_start: int


def check_items(items) -> None:
    """Raise a TypeError naming the first item that is not a (context, completion) pair of strings."""
    for index, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise TypeError(f"items[{index}]: expected a (context, completion) tuple of two strings, got {item!r}")


def encode_items(tokenizer, items: list[tuple[str, str]]) -> list[Encoded]:
    """Tokenize context+completion for every item and note which characters are completion."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"scoring needs a fast tokenizer (character offsets); got {type(tokenizer).__name__}")
    encoding = tokenizer([context + completion for context, completion in items], return_offsets_mapping=True)
    return [
        Encoded(ids, [end for _, end in offsets], _completion_start(context, offsets))
        for (context, _), ids, offsets in zip(items, encoding["input_ids"], encoding["offset_mapping"])
    ]


def _completion_start(context: str, offsets: list[tuple[int, int]]) -> int:
    """First completion character; like the official pipeline, shifted by the first token's start (0 with a BOS)."""
    return len(context) + (offsets[0][0] if offsets else 0)


def score_continuations(
    model,
    tokenizer,
    items: list[tuple[str, str]],
    batch_size: int = 64,
    device=None,
    progress: bool = False,
    groups: list | None = None,
) -> list[float]:
    """Sum of log-probs of each item's completion tokens, in input order (see module docstring).

    `device`: where to run; the model is moved there. Default: the device the model is on.
    `groups`: one id per item; items sharing an id share their context (run once, KV cache).
    Identical items are scored once, so they always get identical scores.
    """
    check_items(items)
    if groups is not None and len(groups) != len(items):
        raise ValueError(f"groups has {len(groups)} ids for {len(items)} items")
    if not items:
        return []
    first_group = {}
    for index, item in enumerate(items):
        first_group.setdefault(item, None if groups is None else groups[index])
    unique = list(first_group)
    scores = score_encoded(
        model, encode_items(tokenizer, unique), pad_id_of(tokenizer), batch_size=batch_size, device=device,
        progress=progress, groups=None if groups is None else list(first_group.values()),
    )
    score_of = dict(zip(unique, scores))
    return [score_of[item] for item in items]


def score_encoded(
    model, encoded: list[Encoded], pad_id: int, batch_size: int = 64, device=None, progress: bool = False,
    groups: list | None = None,
) -> list[float]:
    """The scoring core: a float32 score per tokenized item (see module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    scores = torch.zeros(len(encoded), dtype=torch.float32)
    chunks, plain = _shared_chunks(encoded, groups, batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            bar = tqdm(total=len(chunks) + math.ceil(len(plain) / batch_size), desc="scoring", disable=not progress)
            for done, chunk in enumerate(chunks):
                try:
                    scores[chunk.members] = _score_chunk(model, [encoded[i] for i in chunk.members], chunk.owners,
                                                         chunk.split, pad_id, device, batch_size)
                except _NoCache:  # not a KV-cache model: score the chunks left the plain way
                    plain += [i for rest in chunks[done:] for i in rest.members]
                    bar.total = done + math.ceil(len(plain) / batch_size)
                    break
                bar.update()
            for batch in _plain_batches(encoded, plain, batch_size):
                scores[batch] = _score_batch(model, [encoded[i] for i in batch], pad_id, device)
                bar.update()
            bar.close()
    finally:
        model.train(was_training)
    return scores.tolist()


def sentence_logprobs(
    model, tokenizer, sentences: list[str], batch_size: int = 64, device=None, progress: bool = False
) -> list[float]:
    """Whole-sentence scores: every token after the first is scored."""
    items = [("", sentence) for sentence in sentences]
    return score_continuations(model, tokenizer, items, batch_size=batch_size, device=device, progress=progress)


def pad_id_of(tokenizer) -> int:
    """Padding is masked out, so any valid id works: pad, else EOS (as the official pipeline), else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def _score_batch(model, batch: list[Encoded], pad_id: int, device) -> torch.Tensor:
    """One forward pass over a right-padded batch -> float32 score per item (on CPU)."""
    lengths = torch.tensor([len(item.ids) for item in batch])
    width = int(lengths.max())
    if width < 2:  # nothing after the first token
        return torch.zeros(len(batch))
    ids, scored = _targets(batch, 0, width, pad_id)
    attention_mask = torch.arange(width - 1)[None, :] < lengths[:, None]
    output = model(input_ids=ids[:, :-1].to(device), attention_mask=attention_mask.long().to(device))
    return _sum_scored(_logits(output), ids[:, 1:], scored[:, 1:], device)


def _plain_batches(encoded: list[Encoded], indices: list[int], batch_size: int) -> list[list[int]]:
    """`indices` sorted longest first, in batches of `batch_size`."""
    order = sorted(indices, key=lambda i: len(encoded[i].ids), reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class _NoCache(Exception):
    """The model's forward returned no cache that can be copied per option."""


@dataclass(frozen=True)
class _Chunk:
    """Groups scored together: their items (longest first), each item's group as a row of the prefix
    batch, and the prefix length they share."""

    members: list[int]
    owners: list[int]
    split: int


def _shared_chunks(encoded: list[Encoded], groups, batch_size: int) -> tuple[list[_Chunk], list[int]]:
    """(chunks to score with cached prefixes, indices to score the plain way).

    Groups of two or more items are sorted by their longest text (then their shared prefix) and
    packed `batch_size` groups to a chunk; a chunk's prefix is the shortest of its groups'. A chunk
    whose cached run would compute no fewer token positions than its whole texts goes to the plain path.
    """
    if groups is None:
        return [], list(range(len(encoded)))
    by_group = defaultdict(list)
    for index, group in enumerate(groups):
        by_group[group].append(index)
    candidates, plain = [], []
    for members in by_group.values():
        split = _shared_length([encoded[i] for i in members]) if len(members) > 1 else 0
        if split >= 2:
            candidates.append((max(len(encoded[i].ids) for i in members), split, members))
        else:
            plain += members
    candidates.sort(key=lambda candidate: candidate[:2], reverse=True)
    chunks = []
    for start in range(0, len(candidates), batch_size):
        chunk = _chunk(encoded, candidates[start : start + batch_size])
        if _shared_cost(encoded, chunk, batch_size) < sum(len(encoded[i].ids) - 1 for i in chunk.members):
            chunks.append(chunk)
        else:
            plain += chunk.members
    return chunks, plain


def _chunk(encoded: list[Encoded], packed: list[tuple[int, int, list[int]]]) -> _Chunk:
    """The chunk of (longest text, shared length, items) groups: items longest first, the shortest prefix."""
    rows = sorted(((row, i) for row, (*_, members) in enumerate(packed) for i in members),
                  key=lambda pair: len(encoded[pair[1]].ids), reverse=True)
    return _Chunk([i for _, i in rows], [row for row, _ in rows], min(split for _, split, _ in packed))


def _shared_cost(encoded: list[Encoded], chunk: _Chunk, batch_size: int) -> int:
    """Token positions of a chunk's cached run: every prefix once, then the padded continuations,
    `batch_size` items a pass."""
    lengths = [len(encoded[i].ids) for i in chunk.members]  # longest first
    parts = [lengths[start : start + batch_size] for start in range(0, len(lengths), batch_size)]
    continuations = sum(len(part) * max(part[0] - chunk.split - 1, 0) for part in parts)
    return (chunk.owners[-1] + 1) * chunk.split + continuations


def _shared_length(batch: list[Encoded]) -> int:
    """Common token prefix of the items, ending before the first scored token of any item."""
    split = min(len(item.ids) for item in batch)
    first = batch[0].ids
    for item in batch[1:]:
        same = next((k for k, (a, b) in enumerate(zip(first, item.ids)) if a != b), split)
        split = min(split, same)
    for item in batch:
        scored = next((k for k in range(1, len(item.ids)) if item.ends[k] > item.completion_start), len(item.ids))
        split = min(split, scored)
    return split


def _score_chunk(model, batch: list[Encoded], owners: list[int], split: int, pad_id: int, device,
                 batch_size: int) -> torch.Tensor:
    """Run each group's ids[:split] once, one row per group, with a KV cache; then score the items
    `batch_size` at a time against copies of their groups' rows (`owners`: each item's row)."""
    cache, last = _run_prefixes(model, batch, owners, split, device)
    scores = []
    for start in range(0, len(batch), batch_size):
        end = start + batch_size
        part_cache = cache if end >= len(batch) else copy.deepcopy(cache)  # the last part may consume it
        scores.append(_score_shared(model, batch[start:end], owners[start:end], split, part_cache, last, pad_id,
                                    device))
    return torch.cat(scores)


def _run_prefixes(model, batch: list[Encoded], owners: list[int], split: int, device):
    """(the cache of each group's ids[:split], one row per group; the logits that predict token `split`)."""
    first = {}
    for item, owner in zip(batch, owners):
        first.setdefault(owner, item)
    prefix = torch.tensor([first[row].ids[:split] for row in range(len(first))], device=device)
    output = model(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True)
    cache = output.get(CACHE_ARG) if hasattr(output, "get") else None
    if not hasattr(cache, "reorder_cache"):
        raise _NoCache
    return cache, _logits(output)[:, -1:]


def _score_shared(model, batch: list[Encoded], owners: list[int], split: int, cache, last: torch.Tensor,
                  pad_id: int, device) -> torch.Tensor:
    """Score ids[split:] of every item after its group's cached prefix: the `cache` rows `owners` are
    copied to the items (the cache is consumed), then one forward pass; `last`: the prefixes' last logits."""
    rows = torch.tensor(owners, device=device)
    logits = last.index_select(0, rows)
    lengths = torch.tensor([len(item.ids) - split for item in batch])  # targets per item
    width = int(lengths.max())
    ids, scored = _targets(batch, split, width, pad_id)
    if width > 1:
        cache.reorder_cache(rows)
        mask = torch.cat([torch.ones(len(batch), split, dtype=torch.long),
                          (torch.arange(width - 1)[None, :] < lengths[:, None] - 1).long()], dim=1)
        more = model(input_ids=ids[:, :-1].to(device), attention_mask=mask.to(device), use_cache=True,
                     **{CACHE_ARG: cache})
        logits = torch.cat([logits, _logits(more)], dim=1)
    return _sum_scored(logits, ids, scored, device)


def _targets(batch: list[Encoded], start: int, width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids[start:start+width] and whether each position overlaps the completion."""
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    ends = torch.full((len(batch), width), -1, dtype=torch.long)  # padding never overlaps the completion
    for row, item in enumerate(batch):
        ids[row, : len(item.ids) - start] = torch.tensor(item.ids[start:])
        ends[row, : len(item.ends) - start] = torch.tensor(item.ends[start:])
    starts = torch.tensor([item.completion_start for item in batch])
    scored = ends > starts[:, None]
    if start == 0:
        scored[:, 0] = False  # the first token is never scored
    return ids, scored


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output[0]


def _sum_scored(logits: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor, device) -> torch.Tensor:
    """Sum over scored positions of log-softmax(logits)[target], in float32 -> (batch,) on CPU."""
    targets, scored = targets.to(device), scored.to(device)
    picked = logits[scored].float()  # (n_scored, vocab): only the positions we score
    token_logprobs = picked.gather(1, targets[scored][:, None]).squeeze(1) - picked.logsumexp(dim=-1)
    per_token = torch.zeros(scored.shape, dtype=torch.float32, device=device)
    per_token[scored] = token_logprobs
    return per_token.sum(dim=1).cpu()
