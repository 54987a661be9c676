"""What the babblelm architectures share: the one place that absorbs differences between transformers
releases, building blocks, the decoding cache, and the model glue.

- transformers releases: babblelm's modeling code, and every exported folder that carries it, runs
  on every transformers from the official BabyLM pipeline's pin (4.51.3, with huggingface-hub
  0.31) to the newest 5.x. What differs between them is resolved at the top of this file, once, by
  feature detection (never by parsing version numbers): the config base class (`PretrainedConfig`
  before 5.0), the weight-initialisation functions (`transformers.initialization` since 5.0, which
  skip tensors already loaded; torch's in-place ones before), and `CACHE_ARG`, the name under which
  a decoding cache travels between `generate` and `forward` (`cache` in recent releases,
  `past_key_values` before). It lives here rather than in a module of its own because transformers
  4.x copies only the files an architecture module imports directly into its remote-code cache.
- Configs: `BabbleConfig`, the base of every architecture's config, and `MultiHeadConfig`, the base
  of those split into heads (`head_dim` and its checks).
- Blocks: RMSNorm, the SwiGLU feed-forward block, rotary position embeddings (extended on the fly
  past the trained length), and the helpers that turn a 2-D padding mask into position ids and into
  a boolean attention mask (`token_positions`, `causal_mask`; `attention_inputs`, the start of an
  attention decoder's `embed`).
- `BabbleCache`: the one decoding state every architecture keeps (per-layer tensors, shared
  tensors, `seen_tokens`), updated in place by each forward pass; `SlotCache`: the same state for
  many sequences of different lengths at once, in slots allocated once (a server's continuous
  batching). An architecture keeps every entry at one size per sequence, except those that grow
  along time, which it writes through `extend`; its `embed` takes `past` as an int or as one count
  per row (`new_positions`, `total_length`, `causal_mask`).
- `BabblePreTrainedModel`, `BabbleDecoder`, `CausalLMHead`: the parts of a Hugging Face model that
  do not depend on the architecture: weight initialisation, argument checks, the layer loop with
  gradient checkpointing, hidden states, the vocabulary head and loss, and the decoding contract
  with `generate` (which cache, which tokens to feed, which mask). An architecture supplies its
  config, its layers and one `embed` method.

Export copies this file next to each architecture module, so it imports only torch and transformers.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils import logging

try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers < 5
    from transformers import PretrainedConfig as PreTrainedConfig

try:
    from transformers import initialization as init
except ImportError:  # transformers < 5

    def _copy_(tensor: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return tensor.copy_(source)

    init = SimpleNamespace(normal_=torch.nn.init.normal_, ones_=torch.nn.init.ones_, zeros_=torch.nn.init.zeros_,
                           constant_=torch.nn.init.constant_, copy_=_copy_)

CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

logger = logging.get_logger(__name__)


def check_positive(config, *names: str) -> None:
    """Raise ValueError naming the first of the config's `names` that is below 1."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")


class BabbleConfig(PreTrainedConfig):
    """Base of the architectures' configs (Hugging Face style: every setting a typed keyword argument
    of the subclass's `__init__`, which hands its `locals()` here). Each setting becomes an attribute,
    transformers' own arguments go to its base class, then `check_settings` validates the whole."""

    def __init__(self, settings: dict, **kwargs):
        own = {k: v for k, v in settings.items() if k not in ("self", "kwargs", "__class__", "tie_word_embeddings")}
        for name, value in own.items():
            setattr(self, name, value)
        super().__init__(tie_word_embeddings=settings["tie_word_embeddings"], **kwargs)
        self.check_settings()

    def check_settings(self) -> None:
        """Raise ValueError naming the field whose value cannot build a model."""
        check_positive(self, "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size")
        for name in ("rope_theta", "rms_norm_eps", "initializer_range"):
            if getattr(self, name, 1) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def check_divides(config, *names: str) -> None:
    """Raise ValueError naming the first of the config's `names` that does not divide hidden_size."""
    for name in names:
        if config.hidden_size % getattr(config, name):
            raise ValueError(f"hidden_size ({config.hidden_size}) must be divisible by {name} ({getattr(config, name)})")


class MultiHeadConfig(BabbleConfig):
    """Base of the configs whose hidden states split into `num_attention_heads` heads of `head_dim`
    channels. `rotary_heads`: the heads carry rotary positions, so `head_dim` must be even."""

    rotary_heads = False

    def __init__(self, settings: dict, **kwargs):
        # its own __init__: transformers 5 gives a config class without one a keyword-only constructor
        super().__init__(settings, **kwargs)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def check_settings(self) -> None:
        super().check_settings()
        check_positive(self, "num_attention_heads")
        check_divides(self, "num_attention_heads")
        if self.rotary_heads and self.head_dim % 2:
            raise ValueError(f"hidden_size / num_attention_heads must be even for rotary embeddings, got {self.head_dim}")


def scale_residual_init(config, *projections: nn.Linear, branches: int = 2) -> None:
    """Initialise projections whose outputs add to the residual stream with std / sqrt(branches x
    layers) (read by `_init_weights`), so the stream's variance does not grow with depth."""
    for projection in projections:
        projection.init_std = config.initializer_range / math.sqrt(branches * config.num_hidden_layers)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SwiGLU(nn.Module):
    """Gated feed-forward block: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: cos/sin tables for positions 0..max_positions-1.

    Positions past the table (texts longer than the model was trained on) are computed on the fly,
    with one warning per model. The tables are non-persistent buffers (never saved); `tables()`
    recomputes them, which the weight initialisation uses after loading on the meta device.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got {head_dim}")
        self.head_dim, self.max_positions, self.theta = head_dim, max_positions, theta
        self.warned = False
        cos, sin = self.tables()
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def tables(self, positions: int | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (positions, head_dim) in float32; positions defaults to max_positions."""
        n = self.max_positions if positions is None else positions
        inv_freq = self.theta ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device) / self.head_dim)
        angles = torch.outer(torch.arange(n, dtype=torch.float64, device=device), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().float(), angles.sin().float()

    def forward(self, position_ids: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Position ids (batch, seq), all below `length` -> cos, sin of shape (batch, 1, seq, head_dim)."""
        cos, sin = self.cos, self.sin
        if length > cos.shape[0]:
            if not self.warned:
                logger.warning(f"{length} positions exceed max_position_embeddings={self.max_positions}, the length "
                               "the model was trained on: rotary positions are extended past it")
                self.warned = True
            cos, sin = self.tables(length, cos.device)
        return cos[position_ids].unsqueeze(1), sin[position_ids].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) features; pairs are (i, i + head_dim/2)."""
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def position_ids_from_mask(attention_mask: torch.Tensor, q_len: int) -> torch.Tensor:
    """Positions of the last `q_len` columns of a (batch, kv_len) 0/1 padding mask.

    Each real token's position counts the real tokens before it, so left padding does not
    shift positions; padding columns get position 0 (or repeat the last real one).
    """
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    return positions[:, -q_len:]


def new_positions(past, seq: int, device) -> torch.Tensor:
    """Positions (1 or batch, seq) of `seq` new tokens after `past` seen ones: an int (every row the
    same) or a (batch,) LongTensor of one count per row (a `SlotCache`)."""
    if isinstance(past, int):
        return torch.arange(past, past + seq, device=device)[None]
    return past[:, None] + torch.arange(seq, device=device)


def total_length(past, seq: int) -> int:
    """Tokens of the longest row once `seq` more follow `past` (an int or one count per row)."""
    return (past if isinstance(past, int) else int(past.max())) + seq


def token_positions(attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None, past, seq: int,
                    device) -> tuple[torch.Tensor, int]:
    """(position ids of `seq` new tokens, a bound on them: the largest plus one for given ones, else
    the total length, which needs no read of the device). Given `position_ids` are kept; else they
    count the real tokens of the padding mask (left padding does not shift them) or, without a
    mask, follow `past`."""
    if position_ids is not None:
        return position_ids, int(position_ids.max()) + 1
    if attention_mask is None:
        return new_positions(past, seq, device), total_length(past, seq)
    return position_ids_from_mask(attention_mask, seq), total_length(past, seq)


def attention_inputs(embed_tokens: nn.Embedding, input_ids, inputs_embeds, attention_mask, position_ids,
                     past) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
    """The start of an attention decoder's `embed`: (token embeddings, the new tokens' position ids
    and their bound (`token_positions`), the SDPA mask: None on the is_causal fast path (no padding,
    nothing cached), else `causal_mask`)."""
    hidden = embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
    seq = hidden.shape[1]
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding
    position_ids, length = token_positions(attention_mask, position_ids, past, seq, hidden.device)
    start = attention_mask is None and total_length(past, 0) == 0
    return hidden, position_ids, length, None if start else causal_mask(attention_mask, seq, past, hidden.device)


def causal_mask(attention_mask: torch.Tensor | None, q_len: int, past_len, device: torch.device) -> torch.Tensor:
    """Boolean SDPA mask (batch or 1, 1, q_len, keys); True means "may attend".

    Query i of a row sits at key index past_len + i (an int, or one count per row, whose keys
    then span the longest row) and sees keys up to there that the padding mask marks real. Every
    query may also see itself, so rows of padding are never empty (an empty row would turn into
    NaN and leak through the value vectors of later layers).
    """
    kv_len = total_length(past_len, q_len)
    query_index = new_positions(past_len, q_len, device)[:, None, :, None]
    key_index = torch.arange(kv_len, device=device).view(1, 1, 1, kv_len)
    allowed = key_index <= query_index
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()
    return allowed | (key_index == query_index)


class LayerState(dict):
    """What one layer of a `BabbleCache` keeps: named tensors or tuples of tensors."""

    def extend(self, name: str, new: torch.Tensor, dim: int) -> torch.Tensor:
        """Append `new` along `dim` (time: keys, values) to the entry `name`; return the whole entry."""
        if name in self:
            new = torch.cat([self[name], new], dim)
        self[name] = new
        return new


def _size(value) -> int:
    return sum(_size(v) for v in value) if isinstance(value, tuple) else value.numel() * value.element_size()


class BabbleCache:
    """The decoding state of every babblelm architecture, updated in place by each forward pass.

    `layers[i]`: what layer i keeps (a `LayerState` of tensors or tuples of tensors: keys and values,
    a recurrent state, a convolution tail); `shared`: state all layers read (same form);
    `seen_tokens`: how many positions (padding included) the model has been fed, the same for
    every row. An entry that grows with the text grows through `extend`; every other entry keeps
    one size per sequence (so that a `SlotCache` can hold it).
    """

    is_compileable = False

    def __init__(self, num_layers: int):
        self.layers: list[LayerState] = [LayerState() for _ in range(num_layers)]
        self.shared = LayerState()
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def past(self, batch: int):
        """Positions every row has seen (`embed`'s `past`)."""
        return self.seen_tokens

    def advance(self, seq: int) -> None:
        """Count `seq` more positions fed (after a forward pass)."""
        self.seen_tokens += seq

    def _stores(self):
        return [*self.layers, self.shared]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep (or repeat) the rows `beam_idx` of every tensor, in place (beam search, shared prefixes)."""
        def pick(value):
            if isinstance(value, tuple):
                return tuple(pick(v) for v in value)
            return value.index_select(0, beam_idx.to(value.device))

        for store in self._stores():
            for key, value in store.items():
                store[key] = pick(value)

    def nbytes(self) -> int:
        """Bytes held, to check that the memory per sequence stays flat for recurrent models."""
        return sum(_size(value) for store in self._stores() for value in store.values())


def _apply(fn, *values):
    """fn over tensors, or over the tensors of (nested) tuples side by side."""
    if isinstance(values[0], tuple):
        return tuple(_apply(fn, *parts) for parts in zip(*values))
    return fn(*values)


class SlotState:
    """One layer's entries (or the shared ones) of a `SlotCache`, read and written like a
    `LayerState`: reading gives the selected rows, writing copies into them."""

    def __init__(self, cache: SlotCache):
        self.cache = cache
        self.tensors: dict = {}  # name -> tensor or tuple, with a first dimension of cache.slots
        self.time_dims: dict[str, int] = {}  # entries written through extend: their time dimension

    def __contains__(self, name: str) -> bool:
        return name in self.tensors and not self.cache.fresh

    def __getitem__(self, name: str):
        if name not in self:
            raise KeyError(name)
        rows = self.cache.rows
        return _apply(lambda t: t[rows], self.tensors[name])

    def get(self, name: str, default=None):
        return self[name] if name in self else default

    def values(self):
        return self.tensors.values()

    def __setitem__(self, name: str, value) -> None:
        if name in self.time_dims:
            raise ValueError(f"slot entry {name!r} grows along time: write it with extend")
        if name not in self.tensors:  # the first write allocates every slot at once
            self.tensors[name] = _apply(lambda v: v.new_zeros(self.cache.slots, *v.shape[1:]), value)
        rows = self.cache.rows

        def write(store, new):
            target = store[rows]
            if tuple(new.shape) != tuple(target.shape):
                raise ValueError(f"slot entry {name!r}: got shape {tuple(new.shape)} for slots of shape "
                                 f"{tuple(target.shape)}; an entry outside extend must keep one size per sequence")
            if new.data_ptr() != target.data_ptr() or new.stride() != target.stride():  # not the slots themselves
                target.copy_(new)

        _apply(write, self.tensors[name], value)

    def extend(self, name: str, new: torch.Tensor, dim: int) -> torch.Tensor:
        """Write `new` along `dim` (time) after each row's own length; return the entry of the selected
        rows up to the longest one (a row's keys past its own length are stale: masks exclude them)."""
        cache, seq = self.cache, new.shape[dim]
        end = cache.longest + seq
        if cache.max_length is None or end > cache.max_length:
            raise ValueError(f"slot entry {name!r} grows to {end} positions; the slots hold "
                             f"{cache.max_length or 0} (SlotCache max_length)")
        if name not in self.tensors:
            shape = [cache.slots, *new.shape[1:]]
            shape[dim] = cache.max_length
            self.tensors[name], self.time_dims[name] = new.new_zeros(shape), dim
        rows = self.tensors[name][cache.rows]
        if cache.uniform:
            rows.narrow(dim, cache.longest, seq).copy_(new)
        else:
            at = cache.past_tensor(new.device)[:, None] + torch.arange(seq, device=new.device)
            batch = torch.arange(at.shape[0], device=new.device)[:, None]
            rows.movedim(dim, 1)[batch, at] = new.movedim(dim, 1)
        return rows.narrow(dim, 0, end)

    def copy_slot(self, source: int, target: int, length: int) -> None:
        for name, value in self.tensors.items():
            dim = self.time_dims.get(name)

            def copy(t):
                src, dst = t[source], t[target]
                if dim is not None:  # only the positions the source has seen
                    src, dst = src.narrow(dim - 1, 0, length), dst.narrow(dim - 1, 0, length)
                dst.copy_(src)

            _apply(copy, value)


class SlotCache(BabbleCache):
    """The decoding state of up to `slots` sequences at once, each in a fixed slot, for a step
    scheduler (serve/engine.py) that decodes many sequences of different lengths in one forward pass.

    Each entry a layer keeps is allocated once, for all slots, on its first write: an entry of one
    size per sequence (a recurrent state, a convolution tail, a window, a table) as (slots, ...), an
    entry that grows along time (`extend`: keys and values) as (slots, ..., max_length, ...).
    `lengths[s]`: the positions slot s has seen.

    A forward pass runs over the contiguous slots chosen by `select(start, stop)`. Its rows may sit
    at different lengths (`past` is then one count per row), but they must all start fresh (length
    0: the layers find no state and make their own, overwriting what a previous sequence left) or
    all continue. Between passes, `copy_slot` moves a sequence to another slot (to keep the busy
    slots contiguous) or forks one prompt's state into the slots of its n samples, and `free`
    returns a slot.
    """

    def __init__(self, num_layers: int, slots: int, max_length: int | None, device=None):
        if slots < 1:
            raise ValueError(f"a SlotCache needs at least 1 slot, got {slots}")
        self.slots, self.max_length, self.device = slots, max_length, device
        self.lengths = [0] * slots
        self.layers = [SlotState(self) for _ in range(num_layers)]
        self.shared = SlotState(self)
        self.select(0, 0)

    def select(self, start: int, stop: int) -> SlotCache:
        """Make slots [start, stop) the rows of the next forward pass."""
        if not 0 <= start <= stop <= self.slots:
            raise ValueError(f"slots [{start}, {stop}) are not within the cache's {self.slots} slots")
        self.rows = slice(start, stop)
        seen = self.lengths[start:stop]
        if any(seen) and not all(seen):
            raise ValueError(f"slots [{start}, {stop}) mix fresh and continuing sequences ({seen})")
        self.fresh = not any(seen)
        self.longest = max(seen, default=0)
        self.uniform = len(set(seen)) <= 1
        return self

    def past_tensor(self, device=None) -> torch.Tensor:
        return torch.tensor(self.lengths[self.rows], dtype=torch.long, device=device or self.device)

    def past(self, batch: int):
        """The selected rows' lengths: an int when they agree, else a (batch,) tensor."""
        rows = self.rows.stop - self.rows.start
        if batch != rows:
            raise ValueError(f"the forward pass has {batch} rows; the selected slots are {rows}")
        return self.longest if self.uniform else self.past_tensor()

    def advance(self, seq: int) -> None:
        for slot in range(self.rows.start, self.rows.stop):
            self.lengths[slot] += seq
        self.select(self.rows.start, self.rows.stop)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.longest

    def copy_slot(self, source: int, target: int) -> None:
        """Give slot `target` the state and length of slot `source`."""
        if source != target:
            for store in self._stores():
                store.copy_slot(source, target, self.lengths[source])
            self.lengths[target] = self.lengths[source]

    def free(self, slot: int) -> None:
        """Mark `slot` fresh: its next sequence starts from no state."""
        self.lengths[slot] = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        raise NotImplementedError("a SlotCache rearranges its sequences with copy_slot")


class BabblePreTrainedModel(PreTrainedModel):
    """Weight initialisation and generation settings shared by every babblelm model class."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _is_stateful = True  # the cache cannot be rewound, so generate refuses assisted decoding

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate must not build a transformers cache: the model makes its BabbleCache

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, initializer_range), or a module's own `init_std` (projections whose outputs add
        to the residual stream); biases at 0; norms (RMSNorm, LayerNorm) at gain 1, bias 0; rotary
        tables recomputed. Modules of an architecture's own kind go to its `_init_module`. Called per
        module, leaves first."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", self.config.initializer_range))
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (RMSNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, RotaryEmbedding):
            cos, sin = module.tables()
            init.copy_(module.cos, cos)
            init.copy_(module.sin, sin)
        else:
            self._init_module(module)

    def _init_module(self, module) -> None:
        """An architecture's initialisation of its own module kinds (default: nothing)."""


class BabbleDecoder(BabblePreTrainedModel):
    """The bare decoder of every architecture: `embed` -> `layers` -> `norm`; returns hidden states.

    A subclass builds `embed_tokens`, `layers` and `norm` and defines `embed`, which turns the inputs
    into the first hidden states and a `context` that every layer receives (rotary tables, masks,
    ...). Each layer is called as `layer(hidden, context, layer_cache)` and returns new hidden
    states, reading and updating its dict of the cache when one is given.
    """

    def __init__(self, config):
        super().__init__(config)
        self.gradient_checkpointing = False

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def embed(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, past):
        """(first hidden states (batch, seq, hidden), context for the layers). `attention_mask` is
        None or a 0/1 (batch, past + seq) tensor; `past` is how many positions the cache has seen:
        an int, or a (batch,) tensor of one count per row for a `SlotCache` (see `new_positions`,
        `total_length`, `causal_mask`; no attention_mask then)."""
        raise NotImplementedError

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, cache=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None, return_dict=None, **kwargs):
        """`attention_mask`: 0/1 padding mask of shape (batch, past + new tokens); `cache` (or its older
        name `past_key_values`): the BabbleCache to continue from. Other keyword arguments
        (token_type_ids, cache_position, ...) are ignored."""
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        batch, seq = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if use_cache is None:
            use_cache = not self.training
        if cache is None and use_cache:
            cache = BabbleCache(len(self.layers))
        if cache is not None and not isinstance(cache, BabbleCache):
            raise TypeError(f"{type(self).__name__} keeps its own BabbleCache; got a {type(cache).__name__}")
        past = cache.past(batch) if cache is not None else 0
        if attention_mask is not None and not isinstance(past, int):
            raise ValueError("rows at different lengths (a SlotCache) hold no padding: pass no attention_mask")
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, past + seq):
            raise ValueError(f"attention_mask must be a 0/1 tensor of shape (batch, past + new tokens) = "
                             f"{(batch, past + seq)}, got shape {tuple(attention_mask.shape)}")
        hidden, context = self.embed(input_ids, inputs_embeds, attention_mask, position_ids, cache, past)

        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        all_hidden = []
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(hidden)
            if cache is None and self.gradient_checkpointing and self.training:
                hidden = self._gradient_checkpointing_func(layer.__call__, hidden, context, None)
            else:
                hidden = layer(hidden, context, cache.layers[i] if cache is not None else None)
        if cache is not None:
            cache.advance(seq)
        hidden = self.norm(hidden)
        out = BaseModelOutputWithPast(last_hidden_state=hidden, **{CACHE_ARG: cache if use_cache else None},
                                      hidden_states=(*all_hidden, hidden) if output_hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


class CausalLMHead:
    """What every `...ForCausalLM` class shares (mixed in before its PreTrainedModel base): `self.model`,
    a `decoder_class` built from the config, returns hidden states; `self.lm_head` maps them to the
    vocabulary (tied to the input embeddings when the config says so). It also owns the decoding
    contract with `generate`: the model's own cache, fed only the tokens it has not seen."""

    decoder_class: type  # set by each architecture
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = self.decoder_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def slot_cache(self, slots: int, max_length: int | None) -> SlotCache:
        """A `SlotCache` for this model: `slots` sequences at once, each of up to `max_length`
        positions (the bound of entries that grow along time; None for a model without any)."""
        return SlotCache(len(self.model.layers), slots, max_length, self.device)

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, cache=None,
                inputs_embeds=None, labels=None, use_cache=None, logits_to_keep: int = 0, output_hidden_states=None,
                return_dict=None, **kwargs) -> CausalLMOutputWithPast:
        """Logits for every position (or the last `logits_to_keep`); with `labels`, the mean
        cross-entropy of predicting labels[:, 1:] from positions [:, :-1] (-100 is ignored).
        Arguments a model does not use (position_ids for a model without positions, token_type_ids,
        cache_position, ...) are ignored."""
        if labels is not None and logits_to_keep:
            raise ValueError("labels need logits for every position; leave logits_to_keep at 0")
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache if cache is not None else past_key_values, inputs_embeds=inputs_embeds,
                         use_cache=use_cache, output_hidden_states=output_hidden_states)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten().to(logits.device), ignore_index=-100
            )
        result = CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_ARG: out.get(CACHE_ARG)},
                                        hidden_states=out.hidden_states)
        return result if return_dict is not False else result.to_tuple()

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, use_cache=None, logits_to_keep=None, **kwargs):
        """The next forward's inputs during `generate`: the tokens the cache has not seen (all of
        them at the start, or `inputs_embeds` when given), the whole padding mask and the cache.
        Positions come from the mask inside the model, so left-padded prompts need nothing more."""
        cache = cache if cache is not None else past_key_values
        seen = cache.seen_tokens if cache is not None else 0
        inputs = {CACHE_ARG: cache, "attention_mask": attention_mask, "use_cache": use_cache}
        if inputs_embeds is not None and seen == 0:
            inputs["inputs_embeds"] = inputs_embeds
        else:  # input_ids hold only the generated tokens when the prompt came as embeddings
            total = attention_mask.shape[1] if attention_mask is not None else input_ids.shape[1]
            inputs["input_ids"] = input_ids[:, input_ids.shape[1] - (total - seen):]
        if logits_to_keep is not None:
            inputs["logits_to_keep"] = logits_to_keep
        return inputs
