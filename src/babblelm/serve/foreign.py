"""A model of an architecture babblelm does not implement (transformers' own model of another shape, or a
folder's own code run with --trust-remote-code), behind what the engine decodes through: `slot_cache` and
a forward pass over the selected slots.

Such a model keeps its decoding state in its own cache (`past_key_values`), whose layout babblelm does not
know, so it cannot hold rows at different lengths in one tensor: each selected slot keeps the model's own
cache and runs its own forward pass, one after another. The engine's scheduling, limits, cancellation and
answers (the same alone or in company) hold; the batching does not, and the caches grow with the text
instead of being allocated up front.
"""

from __future__ import annotations

import copy
import inspect
from types import SimpleNamespace

import torch


class ForeignSlots:
    """One cache of the model's own per slot (None: fresh), with the SlotCache calls the engine makes."""

    def __init__(self, slots: int):
        self.slots = slots
        self.caches: list = [None] * slots
        self.rows = slice(0, 0)

    def select(self, start: int, stop: int) -> ForeignSlots:
        self.rows = slice(start, stop)
        return self

    def copy_slot(self, source: int, target: int) -> None:
        if source != target:
            self.caches[target] = copy.deepcopy(self.caches[source])

    def free(self, slot: int) -> None:
        self.caches[slot] = None


class ForeignModel:
    """`model` (a causal language model of transformers' interface) decoded one slot at a time."""

    def __init__(self, model):
        self.model, self.config, self.generation_config = model, model.config, model.generation_config
        takes = inspect.signature(model.forward).parameters  # the cache's name: `cache` in recent transformers
        self.cache_arg = "cache" if "cache" in takes else "past_key_values"

    @property
    def device(self) -> torch.device:
        return self.model.device

    def slot_cache(self, slots: int, max_length: int | None) -> ForeignSlots:
        return ForeignSlots(slots)

    def __call__(self, input_ids: torch.Tensor, cache: ForeignSlots, **_) -> SimpleNamespace:
        """The last logits (rows, 1, vocab) of the selected slots fed `input_ids` (rows, tokens)."""
        logits = []
        for row, slot in enumerate(range(cache.rows.start, cache.rows.stop)):
            out = self.model(input_ids=input_ids[row:row + 1], use_cache=True, **{self.cache_arg: cache.caches[slot]})
            cache.caches[slot] = out[self.cache_arg]
            logits.append(out.logits[:, -1:])
        return SimpleNamespace(logits=torch.cat(logits))
