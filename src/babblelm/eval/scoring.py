"""Batched log-probability scoring of text with a causal LM, exactly as the official BabyLM pipeline scores it.

An item is a (context, completion) pair. The text context+completion is tokenized with the
tokenizer's normal call (so a BOS post-processor adds BOS) and its score is the SUM of the
log-softmax log-probabilities (temperature 1) of the tokens whose character span overlaps the
completion: a token straddling the boundary counts as completion. Targets are tokens 1..n-1, so
the first token is never scored. Log-probabilities are computed and summed in float32, as the
official pipeline does for a float32 model.

Items are sorted by length, right-padded and run in batches, one forward pass each; only the
log-probabilities of scored tokens are computed from the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


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
) -> list[float]:
    """Sum of log-probs of each item's completion tokens, in input order (see module docstring).

    `device`: where to run; the model is moved there. Default: the device the model is on.
    Identical items are scored once, so they always get identical scores.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_items(items)
    if not items:
        return []
    unique = list(dict.fromkeys(items))
    encoded = encode_items(tokenizer, unique)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    pad_id = _pad_id(tokenizer)

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids), reverse=True)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    scores = torch.zeros(len(encoded), dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc="scoring", disable=not progress):
                scores[batch] = _score_batch(model, [encoded[i] for i in batch], pad_id, device)
    finally:
        model.train(was_training)
    score_of = dict(zip(unique, scores.tolist()))
    return [score_of[item] for item in items]


def sentence_logprobs(
    model, tokenizer, sentences: list[str], batch_size: int = 64, device=None, progress: bool = False
) -> list[float]:
    """Whole-sentence scores: every token after the first is scored."""
    items = [("", sentence) for sentence in sentences]
    return score_continuations(model, tokenizer, items, batch_size=batch_size, device=device, progress=progress)


def _pad_id(tokenizer) -> int:
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
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    ends = torch.full((len(batch), width), -1, dtype=torch.long)  # padding never overlaps the completion
    for row, item in enumerate(batch):
        ids[row, : len(item.ids)] = torch.tensor(item.ids)
        ends[row, : len(item.ends)] = torch.tensor(item.ends)
    starts = torch.tensor([item.completion_start for item in batch])
    scored = ends[:, 1:] > starts[:, None]  # target positions 1..n-1 that overlap the completion
    attention_mask = torch.arange(width - 1)[None, :] < lengths[:, None]

    output = model(input_ids=ids[:, :-1].to(device), attention_mask=attention_mask.long().to(device))
    logits = output.logits if hasattr(output, "logits") else output[0]
    targets = ids[:, 1:].to(device)
    scored = scored.to(device)
    picked = logits[scored].float()  # (n_scored, vocab): only the positions we score
    token_logprobs = picked.gather(1, targets[scored][:, None]).squeeze(1) - picked.logsumexp(dim=-1)

    per_token = torch.zeros(scored.shape, dtype=torch.float32, device=device)
    per_token[scored] = token_logprobs
    return per_token.sum(dim=1).cpu()
